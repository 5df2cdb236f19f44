/**
 * File transfer and the remote filesystem, controller side: `server.upload`, `server.download`,
 * `server.downloadStream`, `server.uploadDir`, `server.downloadDir` and `server.fs(id)`.
 *
 * Bytes travel as binary data frames with credit, in both directions, so memory stays within one window per
 * transfer whatever the size. Both ends hash the bytes with SHA-256 as they pass and compare the digests: an
 * upload is renamed into place only when they match, and a download stream errors with `EINTEGRITY` when they
 * do not. Failures are {@linkcode FileError}s with the OS-style `code` and the `path`; confinement refusals are
 * `PolicyError`s (rule `root`).
 *
 * Resuming: a transfer cut by a dropped link resumes by itself when the daemon comes back within the server's
 * reconnect grace, like process output: a download from the first byte not received (the daemon re-reads its
 * open descriptor there), an upload from the last byte the daemon has (the controller keeps the unacknowledged
 * window). No byte is lost or doubled and the SHA-256 still covers the whole transfer. Past the grace, or when the
 * daemon restarted, the call fails (`DaemonDisconnectedError`, or a `FileError` `EIO` naming `ESTALE`); an upload
 * then leaves nothing behind on the worker, and a download can be started again at a byte offset (`from`).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { basename, dirname, join, resolve } from "node:path";
import type { FsEventMessage, RequestArgs } from "../protocol/messages.ts";
import { packDirectory, unpackTar } from "../protocol/tar/mod.ts";
import type { Connection, InboundRoute } from "./_connection.ts";
import { DaemonDisconnectedError, FileError, remoteError } from "./errors.ts";
import type { DaemonEvent } from "./events.ts";
import { OutboundStream } from "./_outbound_stream.ts";
import { CreditError, CreditReceiver } from "../protocol/stream/credit_receiver.ts";

/** Flow-control window of a file transfer, in bytes. */
const FILE_WINDOW = 8 * 1024 * 1024;
/** Small stream chunks are gathered up to this size before they are sent. */
const COALESCE = 256 * 1024;
/** Chunk size when uploading from a `Uint8Array`. */
const UPLOAD_CHUNK = 1024 * 1024;
/** Fs events queued for a slow consumer before the oldest are dropped. */
const MAX_QUEUED_EVENTS = 10_000;

/** How far a transfer has got. */
export interface TransferProgress {
  /** Bytes transferred so far (for a resumed download: the offset reached in the file). */
  bytes: number;
  /** Total bytes, when known (a stream upload without `size`, or a directory, has none). */
  total: number | undefined;
}

/** Options of `server.upload`. */
export interface UploadOptions {
  /** Permission bits of the file. @default the replaced file's mode, else 0o644 */
  mode?: number;
  /** Create missing parent directories. @default false */
  mkdirs?: boolean;
  /** Bytes a stream will carry; the daemon checks it. @default {undefined} (unchecked) */
  size?: number;
  /** Called as bytes are sent. */
  onProgress?: (progress: TransferProgress) => void;
  /** Cancel the upload; the target stays untouched and the promise rejects with the reason. */
  signal?: AbortSignal;
}

/** What an upload wrote. */
export interface UploadResult {
  /** Bytes written. */
  bytes: number;
  /** SHA-256 of the bytes, lowercase hex, checked by both sides. */
  sha256: string;
}

/** Options of `server.download` and `server.downloadStream`. */
export interface DownloadOptions {
  /** Start at this byte offset (resume an interrupted download). The checksum covers the bytes sent. @default 0 */
  from?: number;
  /** Called as bytes arrive (`bytes` counts from the start of the file). */
  onProgress?: (progress: TransferProgress) => void;
  /** Cancel the download. */
  signal?: AbortSignal;
  /**
   * Most bytes to accept; more fails the download with a `FileError` of code `EFBIG` (at once when the daemon
   * reports a larger size). `download()` holds the whole file in memory, so it has a limit by default;
   * `downloadStream()` has none, its memory being bounded by its reader (the daemon sends only as it reads).
   * @default 1 GiB for `download()`, unlimited for `downloadStream()`
   */
  maxBytes?: number;
}

/** Default `maxBytes` of the in-memory `download()`: 1 GiB. */
export const DEFAULT_DOWNLOAD_MAX_BYTES: number = 1024 * 1024 * 1024;

/** Options of `server.uploadDir`. */
export interface UploadDirOptions {
  /** Permission bits of the target directory. @default the local directory's */
  mode?: number;
  /** Create missing parents of the target. @default false */
  mkdirs?: boolean;
  /** Store what symlinks point to instead of the links. @default false */
  followSymlinks?: boolean;
  /** Called as archive bytes are sent (`total` is unknown). */
  onProgress?: (progress: TransferProgress) => void;
  /** Cancel the upload; the target stays untouched. */
  signal?: AbortSignal;
}

/** Options of `server.downloadDir`. */
export interface DownloadDirOptions {
  /** Called as archive bytes arrive (`total` is unknown). */
  onProgress?: (progress: TransferProgress) => void;
  /** Cancel the download; the local target stays untouched. */
  signal?: AbortSignal;
}

/** What a directory upload created. */
export interface UploadDirResult extends UploadResult {
  /** Regular files written. */
  files: number;
  /** Directories in the archive. */
  directories: number;
  /** Symlinks created. */
  symlinks: number;
}

/** Kind of a file system entry. */
export type FileType = "file" | "directory" | "symlink" | "other";

/** What `fs.stat` reports (symlinks followed). */
export interface FileStat {
  /** Kind. */
  type: FileType;
  /** Size in bytes. */
  size: number;
  /** Permission bits. */
  mode: number;
  /** Modification time, when the platform reports it. */
  mtime: Date | null;
  /** Owner uid (null on Windows). */
  uid: number | null;
  /** Owner gid (null on Windows). */
  gid: number | null;
}

/** One entry of `fs.list` (symlinks not followed). */
export interface FileEntry {
  /** Path relative to the listed directory, `/`-separated. */
  path: string;
  /** Kind. */
  type: FileType;
  /** Size in bytes. */
  size: number;
  /** Permission bits. */
  mode: number;
  /** Modification time. */
  mtime: Date | null;
  /** Where a symlink points. */
  target?: string;
}

/** Options of {@linkcode RemoteFs.list}. */
export interface ListOptions {
  /** Descend into subdirectories (not through symlinks). @default false */
  recursive?: boolean;
}

/** Options of {@linkcode RemoteFs.mkdir}. */
export interface MkdirOptions {
  /** Create missing parents; an existing directory is not an error. @default false */
  recursive?: boolean;
  /** Permission bits. @default 0o777 less the daemon's umask */
  mode?: number;
}

/** Options of {@linkcode RemoteFs.remove}. */
export interface RemoveOptions {
  /** Remove a directory and everything in it. @default false */
  recursive?: boolean;
}

/** Options of {@linkcode RemoteFs.watch}. */
export interface WatchOptions {
  /** Watch subdirectories too. @default true */
  recursive?: boolean;
  /** Stop watching; the iteration ends. */
  signal?: AbortSignal;
}

/** A change seen by `fs.watch`. `kind` `"overflow"` means events were dropped because nobody read them. */
export interface FsEvent {
  /** `create`, `modify`, `remove`, `rename`, `access`, `any`, `other` or `overflow`. */
  kind: string;
  /** Absolute paths on the worker. */
  paths: string[];
}

/** @internal What the server gives the file functions. */
export interface FileHost {
  /** The live connection to a daemon; throws `DaemonNotFoundError`. */
  connection(id: string): Connection;
  /**
   * Where daemons' `connect` events are dispatched (a {@linkcode DaemonEvent} each). With it and a positive
   * `reconnectGraceMs`, a download cut by a dropped link resumes when the daemon comes back.
   */
  events?: EventTarget;
  /** How long a cut download waits for the daemon to come back. @default 0 (it fails at once) */
  reconnectGraceMs?: number;
  /** Whether the server is closing (a cut download then fails at once). */
  closing?: () => boolean;
}

// --- argument checks ---

function checkPath(name: string, path: unknown): asserts path is string {
  if (typeof path !== "string" || path === "" || path.includes("\0")) {
    throw new TypeError(
      `${name} must be a non-empty string without NUL, got ${JSON.stringify(path)}`,
    );
  }
}

function checkMode(mode: unknown): void {
  if (
    mode !== undefined &&
    (!Number.isInteger(mode) || (mode as number) < 0 || (mode as number) > 0o7777)
  ) {
    throw new RangeError(`mode must be an integer from 0 to 0o7777, got ${mode}`);
  }
}

function checkCommon(options: {
  onProgress?: unknown;
  signal?: unknown;
  mkdirs?: unknown;
}): void {
  if (options.onProgress !== undefined && typeof options.onProgress !== "function") {
    throw new TypeError(`onProgress must be a function, got ${typeof options.onProgress}`);
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new TypeError(`signal must be an AbortSignal, got ${typeof options.signal}`);
  }
  if (options.mkdirs !== undefined && typeof options.mkdirs !== "boolean") {
    throw new TypeError(`mkdirs must be a boolean, got ${typeof options.mkdirs}`);
  }
}

// --- uploads ---

async function* chunksOf(data: Uint8Array): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; at += UPLOAD_CHUNK) {
    yield data.subarray(at, at + UPLOAD_CHUNK);
  }
}

/**
 * The chunks of an upload stream. A byte stream (a file's `readable`, for one) is read into one reused buffer, so
 * a large upload makes no garbage per chunk; other streams are iterated as they are. Stopping early cancels the
 * stream, as `for await` over it would.
 */
async function* streamChunks(stream: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  let reader: ReadableStreamBYOBReader;
  try {
    reader = stream.getReader({ mode: "byob" });
  } catch {
    // Not a byte stream.
    yield* stream;
    return;
  }
  let buffer = new ArrayBuffer(COALESCE);
  let done = false;
  try {
    while (true) {
      const result = await reader.read(new Uint8Array(buffer));
      if (result.done) {
        done = true;
        return;
      }
      // The view's buffer was transferred to the stream and back: keep using the one it came back in.
      buffer = result.value.buffer as ArrayBuffer;
      yield result.value;
    }
  } finally {
    if (!done) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/** Whether the host can wait for a daemon to come back (then transfers carry a key to resume by). */
function resumable(host: FileHost): boolean {
  return host.events !== undefined && (host.reconnectGraceMs ?? 0) > 0;
}

/**
 * The reply of an upload: from its request, or, when the link drops, from a resume on the daemon's next link
 * (within the reconnect grace): the daemon acknowledges at once what it has received, and the stream resends from
 * there.
 */
async function uploadReply(
  host: FileHost,
  first: { conn: Connection; sid: number },
  args: Omit<RequestArgs<"upload">, "sid" | "window">,
  out: OutboundStream,
  current: { conn: Connection; sid: number },
  stop: AbortSignal,
): Promise<Record<string, unknown>> {
  let request = first.conn.request("upload", { ...args, sid: first.sid, window: FILE_WINDOW });
  while (true) {
    try {
      return await request;
    } catch (error) {
      if (!(error instanceof DaemonDisconnectedError) || args.transfer === undefined) throw error;
      await Promise.resolve(); // the server marks itself closing right after it closes the links
      if (stop.aborted || host.closing?.()) throw error;
      const conn = await nextConnection(
        host,
        current.conn.info.id,
        current.conn,
        host.reconnectGraceMs ?? 0,
        stop,
      );
      if (!conn) throw error;
      const sid = conn.nextSid();
      current.conn = conn;
      current.sid = sid;
      conn.routes.set(sid, {
        onAck: (offset) => out.bind(conn, sid, offset),
        onReset: (reason) => out.fail(new Error(`Upload reset by the daemon: ${reason}`)),
      });
      request = conn.request("upload", { ...args, sid, window: FILE_WINDOW, resume: true }).catch(
        (cause: Error & { code?: string }) => {
          if (cause.code !== "ESTALE") throw cause;
          conn.routes.delete(sid);
          if (out.acked === 0) {
            // The daemon never took the upload up (the request was lost with the link, or it restarted) and
            // every byte is still here: start it again from the beginning.
            const fresh = conn.nextSid();
            current.sid = fresh;
            const reply = conn.request("upload", { ...args, sid: fresh, window: FILE_WINDOW });
            out.bind(conn, fresh, 0);
            return reply;
          }
          // The daemon no longer holds the upload (it restarted, or the wait ran out): say so.
          throw new FileError(conn.info.id, {
            code: "EIO",
            message:
              `Upload of '${args.path}' could not resume after the link dropped: ESTALE: ${cause.message}`,
            path: args.path,
          }, { cause });
        },
      );
    }
  }
}

async function sendUpload(
  host: FileHost,
  conn: Connection,
  args: Omit<RequestArgs<"upload">, "sid" | "window">,
  source: AsyncIterable<Uint8Array>,
  total: number | undefined,
  options: { onProgress?: (p: TransferProgress) => void; signal?: AbortSignal },
): Promise<Record<string, unknown>> {
  if (resumable(host)) args = { ...args, transfer: transferKey() };
  const first = { conn, sid: conn.nextSid() };
  const current = { ...first };
  const out = new OutboundStream({ window: FILE_WINDOW, daemonId: conn.info.id });
  out.bind(conn, first.sid, 0);
  const stop = new AbortController();
  const response = uploadReply(host, first, args, out, current, stop.signal);
  // A refusal or a link that did not come back answers the request early: stop sending at once.
  let early: Error | null = null;
  response.catch((error: Error) => {
    early = error;
    out.fail(error);
  });
  const onAbort = () => out.fail(options.signal!.reason);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const hash = createHash("sha256");
  let bytes = 0;
  try {
    options.signal?.throwIfAborted();
    // Small chunks (file streams yield 64 KiB) are gathered into full frames: per-frame costs dominate otherwise.
    const buffer = new Uint8Array(COALESCE);
    let filled = 0;
    const flush = async () => {
      const piece = buffer.subarray(0, filled);
      hash.update(piece);
      await out.write(piece);
      bytes += filled;
      filled = 0; // `out.write` has copied the piece: the buffer is free again.
      options.onProgress?.({ bytes, total });
    };
    for await (const chunk of source) {
      if (!(chunk instanceof Uint8Array)) {
        throw new TypeError(`Upload stream chunks must be Uint8Array, got ${typeof chunk}`);
      }
      if (chunk.length >= COALESCE && filled === 0) {
        hash.update(chunk);
        await out.write(chunk);
        bytes += chunk.length;
        options.onProgress?.({ bytes, total });
        continue;
      }
      for (let at = 0; at < chunk.length;) {
        const n = Math.min(COALESCE - filled, chunk.length - at);
        buffer.set(chunk.subarray(at, at + n), filled);
        filled += n;
        at += n;
        if (filled === COALESCE) await flush();
      }
    }
    if (filled > 0) await flush();
    out.end(hash.digest("hex"));
    return await response;
  } catch (error) {
    stop.abort();
    current.conn.send({ t: "reset", sid: current.sid, reason: "upload failed on the controller" });
    out.fail(error as Error);
    // Prefer the daemon's own account of what went wrong.
    throw early ?? error;
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    current.conn.routes.delete(current.sid);
  }
}

/**
 * @internal Upload bytes or a stream to a file on a worker (`server.upload`).
 */
export async function uploadFile(
  host: FileHost,
  id: string,
  path: string,
  data: Uint8Array | ReadableStream<Uint8Array>,
  options: UploadOptions = {},
): Promise<UploadResult> {
  checkPath("path", path);
  if (!(data instanceof Uint8Array) && !(data instanceof ReadableStream)) {
    throw new TypeError(`Upload data must be a Uint8Array or a ReadableStream, got ${typeof data}`);
  }
  checkMode(options.mode);
  checkCommon(options);
  if (options.size !== undefined && (!Number.isSafeInteger(options.size) || options.size < 0)) {
    throw new RangeError(`size must be a non-negative integer, got ${options.size}`);
  }
  const size = data instanceof Uint8Array ? data.length : options.size;
  const conn = host.connection(id);
  const data_ = await sendUpload(
    host,
    conn,
    {
      path,
      ...(options.mode !== undefined ? { mode: options.mode } : {}),
      ...(options.mkdirs ? { mkdirs: true } : {}),
      ...(size !== undefined ? { size } : {}),
    },
    data instanceof Uint8Array ? chunksOf(data) : streamChunks(data),
    size,
    options,
  );
  return { bytes: Number(data_.bytes), sha256: String(data_.sha256) };
}

/**
 * @internal Upload a local directory tree to a worker as a tar stream (`server.uploadDir`).
 */
export async function uploadDirectory(
  host: FileHost,
  id: string,
  localDir: string,
  remoteDir: string,
  options: UploadDirOptions = {},
): Promise<UploadDirResult> {
  checkPath("localDir", localDir);
  checkPath("remoteDir", remoteDir);
  checkMode(options.mode);
  checkCommon(options);
  const info = await Deno.stat(localDir);
  if (!info.isDirectory) throw new TypeError(`localDir must be a directory, got '${localDir}'`);
  const conn = host.connection(id);
  const abort = new AbortController();
  const onAbort = () => abort.abort(options.signal!.reason);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const tar = packDirectory(localDir, {
      followSymlinks: options.followSymlinks ?? false,
      signal: abort.signal,
    });
    const data = await sendUpload(
      host,
      conn,
      {
        path: remoteDir,
        archive: "tar",
        mode: options.mode ?? (info.mode ?? 0o755) & 0o7777,
        ...(options.mkdirs ? { mkdirs: true } : {}),
      },
      tar,
      undefined,
      options,
    );
    return {
      bytes: Number(data.bytes),
      sha256: String(data.sha256),
      files: Number(data.files),
      directories: Number(data.directories),
      symlinks: Number(data.symlinks),
    };
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    abort.abort();
  }
}

// --- downloads ---

/** The request of a download, as first sent (a resume sends it again with `resume`, a new `sid` and `from`). */
type DownloadRequest = Omit<RequestArgs<"download">, "sid" | "window" | "resume">;

/**
 * Wait for a connection to `daemonId` other than `old`, at most `ms`. Resolves null on timeout or abort.
 */
function nextConnection(
  host: FileHost,
  daemonId: string,
  old: Connection,
  ms: number,
  signal: AbortSignal,
): Promise<Connection | null> {
  const current = (): Connection | null => {
    try {
      const conn = host.connection(daemonId);
      return conn !== old && !conn.closed ? conn : null;
    } catch {
      return null;
    }
  };
  const now = current();
  if (now || !host.events || ms <= 0 || signal.aborted) return Promise.resolve(now);
  const events = host.events;
  return new Promise((resolve) => {
    const done = (conn: Connection | null) => {
      clearTimeout(timer);
      events.removeEventListener("connect", onConnect);
      signal.removeEventListener("abort", onAbort);
      resolve(conn);
    };
    const onConnect = (event: Event) => {
      if ((event as DaemonEvent).daemon?.id !== daemonId) return;
      const conn = current();
      if (conn) done(conn);
    };
    const onAbort = () => done(null);
    const timer = setTimeout(() => done(null), ms);
    events.addEventListener("connect", onConnect);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Receives a download: credit returned as the consumer reads (the shared {@linkcode CreditReceiver}: data beyond the
 * window, holes and gaps are refused), SHA-256 checked at the end, at most `maxBytes` taken. When the link drops,
 * it waits (the host's reconnect grace) for the daemon to come back and resumes the download by its transfer key
 * from the first byte it has not received.
 */
class DownloadReceiver {
  readonly readable: ReadableStream<Uint8Array>;
  readonly #host: FileHost;
  readonly #daemonId: string;
  readonly #request: DownloadRequest;
  #conn: Connection;
  #sid: number;
  readonly #path: string;
  #route: InboundRoute | null = null;
  readonly #credit: CreditReceiver;
  readonly #from: number;
  readonly #maxBytes: number;
  readonly #stop = new AbortController();
  #ended = false;
  #error: Error | null = null;
  #reconnecting = false;
  /** Whether the daemon answered the request (or a resume of it). */
  #opened = false;
  readonly #info = Promise.withResolvers<Record<string, unknown>>();
  #wake: (() => void) | null = null;
  total: number | undefined = undefined;
  onProgress: ((p: TransferProgress) => void) | undefined;

  constructor(
    host: FileHost,
    conn: Connection,
    request: DownloadRequest,
    maxBytes: number,
  ) {
    this.#host = host;
    this.#daemonId = conn.info.id;
    this.#request = request;
    this.#conn = conn;
    this.#path = request.path;
    this.#from = request.from ?? 0;
    this.#maxBytes = maxBytes;
    this.#credit = new CreditReceiver({
      window: FILE_WINDOW,
      from: this.#from,
      ackEvery: FILE_WINDOW / 8,
      gaps: false,
      sha256: true,
      ackWhenCaughtUp: false,
      name: `download of '${request.path}'`,
    });
    this.#sid = this.#bind(conn);
    this.#info.promise.catch(() => {});
    this.readable = new ReadableStream<Uint8Array>({
      pull: (controller) => this.#pull(controller),
      cancel: () => {
        if (!this.#ended && !this.#error) {
          this.#conn.send({ t: "reset", sid: this.#sid, reason: "consumer cancelled" });
        }
        this.#error ??= new Error("cancelled");
        this.#stop.abort();
        this.#credit.clear();
        this.#unbind();
      },
    }, { highWaterMark: 0 });
  }

  /**
   * Send the request. Resolves with the daemon's reply: to the request, or, when the link dropped before it came,
   * to the request made again on the daemon's next link.
   */
  open(): Promise<Record<string, unknown>> {
    this.#conn.request("download", { ...this.#request, sid: this.#sid, window: FILE_WINDOW }).then(
      (reply) => this.#open(reply),
      (error) => {
        // A dropped link is the resume's to handle (it fails the download when it cannot).
        if (error instanceof DaemonDisconnectedError && this.#resumable) return;
        this.fail(error);
      },
    );
    return this.#info.promise;
  }

  #open(reply: Record<string, unknown>): void {
    this.#opened = true;
    this.#info.resolve(reply);
  }

  get #resumable(): boolean {
    return this.#request.transfer !== undefined && (this.#host.reconnectGraceMs ?? 0) > 0 &&
      this.#host.events !== undefined;
  }

  /** Route a fresh stream id on `conn` here. */
  #bind(conn: Connection): number {
    this.#unbind();
    const sid = conn.nextSid();
    const route: InboundRoute = {
      onData: (offset, payload) => this.#onData(offset, payload),
      onEof: (offset, sha256) => this.#onEof(offset, sha256),
      onGap: (from, to) => this.#refuse(() => this.#credit.gap(from, to)),
      onReset: (reason) => {
        this.#unbind(); // the daemon ended it: nothing to reset
        this.fail(resetError(this.#daemonId, this.#path, reason));
      },
      onClose: () => {
        if (this.#route !== route) return;
        this.#route = null;
        this.#linkLost(conn);
      },
    };
    this.#conn = conn;
    this.#sid = sid;
    this.#route = route;
    conn.routes.set(sid, route);
    return sid;
  }

  #unbind(): void {
    if (this.#route && this.#conn.routes.get(this.#sid) === this.#route) {
      this.#conn.routes.delete(this.#sid);
    }
    this.#route = null;
  }

  /** The link dropped mid-download: resume on the daemon's next link, or fail. */
  #linkLost(old: Connection): void {
    if (this.#error || this.#ended || this.#reconnecting) return;
    const grace = this.#host.reconnectGraceMs ?? 0;
    if (!this.#resumable) {
      this.fail(new DaemonDisconnectedError(this.#daemonId));
      return;
    }
    this.#reconnecting = true;
    this.#resume(old, Date.now() + grace).finally(() => this.#reconnecting = false);
  }

  async #resume(old: Connection, deadline: number): Promise<void> {
    // The server marks itself closing right after it closes the links (this runs from inside that).
    await Promise.resolve();
    while (!this.#error && !this.#ended) {
      if (this.#host.closing?.()) {
        this.fail(new DaemonDisconnectedError(this.#daemonId, "Server closed"));
        return;
      }
      const conn = await nextConnection(
        this.#host,
        this.#daemonId,
        old,
        deadline - Date.now(),
        this.#stop.signal,
      );
      if (this.#error || this.#ended) return;
      if (!conn) {
        this.fail(new DaemonDisconnectedError(this.#daemonId));
        return;
      }
      const sid = this.#bind(conn);
      const from = this.#credit.rebind(FILE_WINDOW);
      try {
        let reply: Record<string, unknown>;
        try {
          reply = await conn.request("download", {
            ...this.#request,
            sid,
            window: FILE_WINDOW,
            from,
            resume: true,
          });
        } catch (error) {
          if ((error as { code?: string }).code !== "ESTALE" || this.#opened) throw error;
          // The first request was lost with the link (no reply, so no byte either): open it again.
          reply = await conn.request("download", { ...this.#request, sid, window: FILE_WINDOW });
        }
        this.#open(reply);
        return;
      } catch (error) {
        if (error instanceof DaemonDisconnectedError) {
          old = conn; // dropped again: wait for the next link within the same grace
          continue;
        }
        const cause = error as Error & { code?: string };
        this.fail(
          new FileError(this.#daemonId, {
            code: "EIO",
            message: `Download of '${this.#path}' could not resume after the link dropped: ${
              cause.code ? `${cause.code}: ` : ""
            }${cause.message}`,
            path: this.#path,
          }, { cause }),
        );
        return;
      }
    }
  }

  /** Apply one credit rule; a breach resets the stream and fails the download. */
  #refuse(step: () => unknown): boolean {
    try {
      step();
      return true;
    } catch (error) {
      if (!(error instanceof CreditError)) throw error;
      this.fail(error, error.message.slice(0, 200));
      return false;
    }
  }

  #onData(offset: number, payload: Uint8Array): void {
    if (this.#error || this.#ended) return;
    if (!this.#refuse(() => this.#credit.data(offset, payload))) return;
    if (this.#credit.received - this.#from > this.#maxBytes) {
      this.fail(this.#tooLarge(), "download larger than maxBytes");
      return;
    }
    this.#wakeUp();
  }

  #tooLarge(): FileError {
    return new FileError(this.#daemonId, {
      code: "EFBIG",
      message: `Download of '${this.#path}' exceeds maxBytes (${this.#maxBytes} bytes)`,
      path: this.#path,
    });
  }

  #onEof(offset: number, sha256: string | undefined): void {
    if (this.#error || this.#ended) return;
    // The daemon holds a resumable download until it knows the end arrived.
    if (this.#request.transfer !== undefined) {
      this.#conn.send({ t: "ack", sid: this.#sid, offset });
    }
    try {
      this.#credit.eof(offset, sha256);
    } catch (error) {
      this.fail(
        new FileError(this.#daemonId, {
          code: "EINTEGRITY",
          message: (error as Error).message,
          path: this.#path,
        }),
      );
      return;
    }
    this.#ended = true;
    this.#unbind();
    this.#wakeUp();
  }

  /** Give up: fail the stream and, while the link is there, tell the daemon to stop (`reason`). */
  fail(error: Error, reason = "download failed on the controller"): void {
    if (this.#error || this.#ended) return;
    this.#error = error;
    this.#info.reject(error);
    this.#stop.abort();
    this.#credit.clear();
    if (this.#route) this.#conn.send({ t: "reset", sid: this.#sid, reason });
    this.#unbind();
    this.#wakeUp();
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  async #pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    while (true) {
      if (this.#error) {
        controller.error(this.#error);
        return;
      }
      const chunk = this.#credit.take();
      if (chunk) {
        controller.enqueue(chunk);
        const ack = this.#ended ? null : this.#credit.ackDue();
        if (ack !== null) this.#conn.send({ t: "ack", sid: this.#sid, offset: ack });
        this.onProgress?.({ bytes: this.#credit.consumed, total: this.total });
        return;
      }
      if (this.#ended) {
        controller.close();
        return;
      }
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }
}

function resetError(daemonId: string, path: string, reason: string): Error {
  const match = /^([A-Z][A-Z0-9_]{1,63}): (.*)$/s.exec(reason);
  if (match) return remoteError(daemonId, { code: match[1]!, message: match[2]!, path });
  return new FileError(daemonId, {
    code: "EIO",
    message: `Download of '${path}' reset by the daemon: ${reason}`,
    path,
  });
}

/** A fresh transfer key: 128 random bits in hex. */
function transferKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function openDownload(
  host: FileHost,
  conn: Connection,
  path: string,
  options: DownloadOptions,
  archive: boolean,
): Promise<{ readable: ReadableStream<Uint8Array>; info: Record<string, unknown> }> {
  const from = options.from ?? 0;
  const maxBytes = options.maxBytes ?? Infinity;
  const request: DownloadRequest = {
    path,
    ...(from > 0 ? { from } : {}),
    ...(archive ? { archive: "tar" as const } : {}),
    // Only a host that can wait for the daemon to come back asks it to hold the download.
    ...(resumable(host) ? { transfer: transferKey() } : {}),
  };
  const receiver = new DownloadReceiver(host, conn, request, maxBytes);
  let info: Record<string, unknown>;
  try {
    info = await receiver.open();
  } catch (error) {
    receiver.fail(error as Error);
    await receiver.readable.cancel().catch(() => {});
    throw error;
  }
  receiver.total = typeof info.size === "number" ? info.size : undefined;
  if (!archive && receiver.total !== undefined && receiver.total - from > maxBytes) {
    await receiver.readable.cancel().catch(() => {});
    throw new FileError(conn.info.id, {
      code: "EFBIG",
      message: `Download of '${path}' is ${
        receiver.total - from
      } bytes, more than maxBytes (${maxBytes} bytes)`,
      path,
    });
  }
  receiver.onProgress = options.onProgress;
  const signal = options.signal;
  if (signal) {
    const onAbort = () => receiver.fail(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  }
  return { readable: receiver.readable, info };
}

function checkDownload(path: string, options: DownloadOptions): void {
  checkPath("path", path);
  checkCommon(options);
  if (options.from !== undefined && (!Number.isSafeInteger(options.from) || options.from < 0)) {
    throw new RangeError(`from must be a non-negative integer, got ${options.from}`);
  }
  const max = options.maxBytes;
  if (max !== undefined && max !== Infinity && (!Number.isSafeInteger(max) || max < 0)) {
    throw new RangeError(`maxBytes must be a non-negative integer, got ${max}`);
  }
}

/**
 * @internal Stream a file from a worker (`server.downloadStream`). Resolves once the daemon has opened it.
 */
export async function downloadFileStream(
  host: FileHost,
  id: string,
  path: string,
  options: DownloadOptions = {},
): Promise<ReadableStream<Uint8Array>> {
  checkDownload(path, options);
  options.signal?.throwIfAborted();
  const conn = host.connection(id);
  return (await openDownload(host, conn, path, options, false)).readable;
}

/**
 * @internal Download a whole file into memory (`server.download`).
 */
export async function downloadFile(
  host: FileHost,
  id: string,
  path: string,
  options: DownloadOptions = {},
): Promise<Uint8Array> {
  const stream = await downloadFileStream(host, id, path, {
    ...options,
    maxBytes: options.maxBytes ?? DEFAULT_DOWNLOAD_MAX_BYTES,
  });
  const chunks: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of stream) {
    chunks.push(chunk);
    length += chunk.length;
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/**
 * @internal Download a directory tree from a worker into a local directory (`server.downloadDir`). The tree is
 * unpacked into a temporary directory beside `localDir` and renamed into place once complete and verified; an
 * existing `localDir` is replaced.
 */
export async function downloadDirectory(
  host: FileHost,
  id: string,
  remoteDir: string,
  localDir: string,
  options: DownloadDirOptions = {},
): Promise<void> {
  checkPath("remoteDir", remoteDir);
  checkPath("localDir", localDir);
  checkCommon(options);
  options.signal?.throwIfAborted();
  const target = resolve(localDir);
  const existing = await Deno.lstat(target).catch(() => null);
  if (existing && !existing.isDirectory) {
    throw new TypeError(`localDir exists and is not a directory: '${localDir}'`);
  }
  const conn = host.connection(id);
  const { readable, info } = await openDownload(host, conn, remoteDir, options, true);
  const temp = join(
    dirname(target),
    `.${basename(target).slice(0, 120)}.sandd-${crypto.randomUUID().slice(0, 8)}.part`,
  );
  let placed = false;
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  try {
    await Deno.mkdir(temp, { mode: 0o700 });
    // unpackTar may stop at the end marker; drain the rest so the checksum is verified.
    reader = readable.getReader();
    let done = false;
    const source = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const next = await reader!.read();
        if (next.done) {
          done = true;
          controller.close();
        } else {
          controller.enqueue(next.value);
        }
      },
    }, { highWaterMark: 0 });
    await unpackTar(source, temp);
    while (!done) {
      const next = await reader.read();
      done = next.done;
    }
    if (typeof info.mode === "number") await Deno.chmod(temp, info.mode);
    if (existing) {
      const old = `${temp.slice(0, -5)}.old`;
      await Deno.rename(target, old);
      try {
        await Deno.rename(temp, target);
      } catch (error) {
        await Deno.rename(old, target).catch(() => {});
        throw error;
      }
      await Deno.remove(old, { recursive: true });
    } else {
      await Deno.rename(temp, target);
    }
    placed = true;
  } finally {
    if (!placed) {
      await (reader ? reader.cancel() : readable.cancel()).catch(() => {});
      await Deno.remove(temp, { recursive: true }).catch(() => {});
    }
  }
}

// --- the remote filesystem ---

const watchers: WeakMap<Connection, Map<number, (message: FsEventMessage) => void>> = new WeakMap();

/**
 * @internal Deliver an `fsevent` message to the watch it belongs to.
 *
 * @param conn The connection it arrived on.
 * @param message The event.
 */
export function dispatchFsEvent(conn: Connection, message: FsEventMessage): void {
  watchers.get(conn)?.get(message.wid)?.(message);
}

function toDate(value: unknown): Date | null {
  return typeof value === "number" ? new Date(value) : null;
}

/**
 * The file system of one worker. Get it with `server.fs(id)`; every call goes to the daemon's current link, so
 * the handle survives reconnects.
 *
 * @example Look around a worker
 * ```ts ignore
 * const fs = server.fs("worker-1");
 * await fs.mkdir("/work/out", { recursive: true });
 * for (const entry of await fs.list("/work", { recursive: true })) console.log(entry.type, entry.path);
 * const { size } = await fs.stat("/work/out");
 * for await (const event of fs.watch("/work/out")) console.log(event.kind, event.paths);
 * ```
 */
export class RemoteFs {
  /** The daemon. */
  readonly daemonId: string;
  readonly #host: FileHost;

  /**
   * @internal Use `server.fs(id)`.
   *
   * @param host The server's connections.
   * @param daemonId The daemon.
   */
  constructor(host: FileHost, daemonId: string) {
    this.#host = host;
    this.daemonId = daemonId;
  }

  /**
   * Describe a path, following symlinks.
   *
   * @param path Path on the worker.
   * @returns Kind, size, mode, mtime, owner.
   * @throws {FileError} `ENOENT` and the like.
   */
  async stat(path: string): Promise<FileStat> {
    checkPath("path", path);
    const data = await this.#host.connection(this.daemonId).request("stat", { path });
    return {
      type: data.type as FileType,
      size: Number(data.size),
      mode: Number(data.mode),
      mtime: toDate(data.mtime),
      uid: typeof data.uid === "number" ? data.uid : null,
      gid: typeof data.gid === "number" ? data.gid : null,
    };
  }

  /**
   * List a directory, sorted, symlinks reported as links.
   *
   * @param path Directory on the worker.
   * @param options Whether to descend.
   * @returns The entries, paths relative to `path`.
   * @throws {FileError} `ENOENT`, `ENOTDIR`...
   */
  async list(path: string, options: ListOptions = {}): Promise<FileEntry[]> {
    checkPath("path", path);
    if (options.recursive !== undefined && typeof options.recursive !== "boolean") {
      throw new TypeError(`recursive must be a boolean, got ${typeof options.recursive}`);
    }
    const data = await this.#host.connection(this.daemonId).request("list", {
      path,
      ...(options.recursive ? { recursive: true } : {}),
    });
    return (data.entries as Record<string, unknown>[]).map((e) => ({
      path: String(e.path),
      type: e.type as FileType,
      size: Number(e.size),
      mode: Number(e.mode),
      mtime: toDate(e.mtime),
      ...(typeof e.target === "string" ? { target: e.target } : {}),
    }));
  }

  /**
   * Create a directory.
   *
   * @param path Directory on the worker.
   * @param options Parents and mode.
   * @throws {FileError} `EEXIST` (without `recursive`), `ENOENT` (missing parent)...
   */
  async mkdir(path: string, options: MkdirOptions = {}): Promise<void> {
    checkPath("path", path);
    checkMode(options.mode);
    await this.#host.connection(this.daemonId).request("mkdir", {
      path,
      ...(options.recursive ? { recursive: true } : {}),
      ...(options.mode !== undefined ? { mode: options.mode } : {}),
    });
  }

  /**
   * Remove a file, symlink (not its target) or directory.
   *
   * @param path Path on the worker.
   * @param options Whether to remove a non-empty directory.
   * @throws {FileError} `ENOENT`, `ENOTEMPTY`...
   */
  async remove(path: string, options: RemoveOptions = {}): Promise<void> {
    checkPath("path", path);
    await this.#host.connection(this.daemonId).request("remove", {
      path,
      ...(options.recursive ? { recursive: true } : {}),
    });
  }

  /**
   * Rename a path (same file system).
   *
   * @param from Existing path.
   * @param to New path; an existing file there is replaced.
   * @throws {FileError} `ENOENT`, `EXDEV`...
   */
  async move(from: string, to: string): Promise<void> {
    checkPath("from", from);
    checkPath("to", to);
    await this.#host.connection(this.daemonId).request("move", { from, to });
  }

  /**
   * Watch a path for changes. Ends when `signal` aborts or the loop breaks; throws
   * `DaemonDisconnectedError` when the link drops.
   *
   * @param path Path on the worker.
   * @param options Recursion and a stop signal.
   * @returns The events, as they happen.
   */
  async *watch(path: string, options: WatchOptions = {}): AsyncGenerator<FsEvent, void, undefined> {
    checkPath("path", path);
    checkCommon(options);
    const conn = this.#host.connection(this.daemonId);
    const wid = conn.nextSid();
    const queue: FsEvent[] = [];
    let error: Error | null = null;
    let ended = false;
    let wake: (() => void) | null = null;
    const wakeUp = () => {
      const w = wake;
      wake = null;
      w?.();
    };
    let map = watchers.get(conn);
    if (!map) watchers.set(conn, map = new Map());
    map.set(wid, (message) => {
      if (queue.length >= MAX_QUEUED_EVENTS) {
        queue.splice(0, queue.length - MAX_QUEUED_EVENTS + 1, { kind: "overflow", paths: [] });
      }
      queue.push({ kind: message.kind, paths: message.paths });
      wakeUp();
    });
    conn.routes.set(wid, {
      onReset: () => {
        ended = true;
        wakeUp();
      },
      onClose: () => {
        error = new DaemonDisconnectedError(this.daemonId);
        wakeUp();
      },
    });
    const onAbort = () => {
      ended = true;
      wakeUp();
    };
    options.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await conn.request("watch", {
        path,
        wid,
        ...(options.recursive === false ? { recursive: false } : {}),
      });
      while (true) {
        const event = queue.shift();
        if (event) {
          yield event;
          continue;
        }
        if (error) throw error;
        if (ended || options.signal?.aborted) return;
        await new Promise<void>((resolve) => wake = resolve);
      }
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
      map.delete(wid);
      conn.routes.delete(wid);
      if (!conn.closed && !error) await conn.request("unwatch", { wid }).catch(() => {});
    }
  }
}
