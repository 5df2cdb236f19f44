/**
 * File transfer and the remote filesystem, controller side: `server.upload`, `server.download`,
 * `server.downloadStream`, `server.uploadDir`, `server.downloadDir` and `server.fs(id)`.
 *
 * Bytes travel as binary data frames with credit, in both directions, so memory stays within one window per
 * transfer whatever the size. Both ends hash the bytes with SHA-256 as they pass and compare the digests: an
 * upload is renamed into place only when they match, and a download stream errors with `EINTEGRITY` when they
 * do not. Failures are `FileError`s with the OS-style `code` and the `path`; confinement refusals are
 * `PolicyError`s (rule `root`).
 *
 * Resuming: a transfer cut by a dropped link resumes by itself when the daemon comes back within the server's
 * reconnect grace, like process output: a download from the first byte not received (the daemon re-reads its
 * open descriptor there), an upload from the last byte the daemon has (the controller keeps the unacknowledged
 * window). No byte is lost or doubled and the SHA-256 still covers the whole transfer. Past the grace, or when the
 * daemon restarted, the call fails (`DaemonDisconnectedError`, or a `FileError` `EIO` naming `ESTALE`); an upload
 * then leaves nothing behind on the worker, and a download can be started again at a byte offset (`from`).
 *
 * Memory: a download stream is a byte stream. Read it with a BYOB reader (`getReader({ mode: "byob" })`, one reused
 * buffer) and the controller copies each arriving message into that buffer and frees the message at once, so its
 * memory stays within the 8 MiB window whatever the size. A default reader (`pipeTo`, `for await`) gets chunks
 * the stream allocates (the messages are freed as they are copied into them); they are the reader's, so the
 * garbage collector frees them, at its own pace (V8 lets about 64 MiB of such buffers accumulate). The control
 * API hands each chunk to the HTTP response and frees it as soon as the response has taken it.
 *
 * Length: a third of this file is the public option, result and entry types of the file methods with their
 * documentation; the transfer streams themselves are in `_transfer_streams.ts` (uploads) and
 * `_download_stream.ts` (downloads).
 *
 * @module
 */

import type { FileSystemHandle } from "./controller.ts";
import { basename, dirname, join, resolve } from "node:path";
import type { FsEventMessage } from "@sandd/protocol/messages";
import { packDirectory, unpackTar } from "@sandd/protocol/tar";
import type { Connection } from "./_connection.ts";
import { DaemonDisconnectedError } from "./errors.ts";
import { COALESCE, sendUpload } from "./_transfer_streams.ts";
import { openDownload } from "./_download_stream.ts";
import {
  checkMode,
  checkPath,
  checkTransferOptions,
  checkUpload,
  chunksOf,
} from "./_file_checks.ts";

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
  /**
   * The SHA-256 the bytes must have (64 lowercase hex digits), when the caller knows it: the controller then
   * does not hash them itself, and the daemon refuses bytes with another digest (`EINTEGRITY`, nothing written).
   * A function is called once the stream has ended, for a digest known only then (one a client sends after its
   * body); what it throws fails the upload. @default {undefined} (the controller hashes what it sends)
   */
  sha256?: string | (() => string);
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

// --- uploads ---

/**
 * The chunks of an upload stream. A byte stream (a file's `readable`, or a control API request's body) is read into
 * one reused buffer, filled to a whole frame's size before it is handed on (uploads gather small chunks into frames
 * anyway, so nothing waits longer), so a large upload makes no garbage per chunk and one copy less; other streams are
 * iterated as they are. Stopping early cancels the
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
    while (!done) {
      // Reads fill the buffer (a socket gives 64 KiB or less at a time) before it goes out as one whole frame.
      let filled = 0;
      while (filled < COALESCE) {
        const result = await reader.read(new Uint8Array(buffer, filled));
        if (result.done) {
          done = true;
          // The buffer comes back (empty) with the end, unless the stream was closed before this read.
          if (result.value) buffer = result.value.buffer as ArrayBuffer;
          break;
        }
        // The view's buffer was transferred to the stream and back: keep using the one it came back in.
        buffer = result.value.buffer as ArrayBuffer;
        filled += result.value.length;
      }
      if (filled > 0) yield new Uint8Array(buffer, 0, filled);
    }
  } finally {
    if (!done) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/** Progress and signal alone: a directory's tar has no digest known to its caller (`sha256` is for files). */
function transferOptions(options: UploadDirOptions): {
  onProgress?: (progress: TransferProgress) => void;
  signal?: AbortSignal;
} {
  return {
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  };
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
  checkUpload(path, data, options);
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
  return { bytes: data_.bytes, sha256: data_.sha256 };
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
  checkTransferOptions(options);
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
      transferOptions(options),
    );
    return {
      bytes: data.bytes,
      sha256: data.sha256,
      files: data.files ?? 0,
      directories: data.directories ?? 0,
      symlinks: data.symlinks ?? 0,
    };
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    abort.abort();
  }
}

// --- downloads ---

function checkDownload(path: string, options: DownloadOptions): void {
  checkPath("path", path);
  checkTransferOptions(options);
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
  checkTransferOptions(options);
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
    await placeDirectory(temp, target, existing !== null);
    placed = true;
  } finally {
    if (!placed) {
      await (reader ? reader.cancel() : readable.cancel()).catch(() => {});
      await Deno.remove(temp, { recursive: true }).catch(() => {});
    }
  }
}

/**
 * Put a directory unpacked at `temp` (a sibling of `target` whose name ends in `.part`) in place of `target`:
 * an existing target is moved aside, replaced, then removed; if the replacement fails it is moved back.
 *
 * @param temp The unpacked directory.
 * @param target Where it goes.
 * @param existing Whether `target` exists now.
 */
export async function placeDirectory(
  temp: string,
  target: string,
  existing: boolean,
): Promise<void> {
  if (!existing) {
    await Deno.rename(temp, target);
    return;
  }
  const old = `${temp.slice(0, -5)}.old`;
  await Deno.rename(target, old);
  try {
    await Deno.rename(temp, target);
  } catch (error) {
    await Deno.rename(old, target).catch(() => {});
    throw error;
  }
  await Deno.remove(old, { recursive: true });
}

// --- the remote filesystem ---

const watchers: WeakMap<Connection, Map<number, (message: FsEventMessage) => void>> = new WeakMap();

/**
 * @internal Deliver an `fsevent` message to the watch it belongs to.
 *
 * @param conn The connection it arrived on.
 * @param message The event.
 */
// --- stream-based transfers for the control API (the HTTP body is the stream) ---

/**
 * @internal Stream a file from a worker with its size (the control API's download sends it as
 * `Content-Length`). Resolves once the daemon has opened the file. The stream is for an HTTP response body: each
 * chunk's memory is freed when the next one is read (see `openDownload`).
 */
export async function openFileDownload(
  host: FileHost,
  id: string,
  path: string,
  options: DownloadOptions = {},
): Promise<{ readable: ReadableStream<Uint8Array>; size: number | null; mode: number }> {
  checkDownload(path, options);
  options.signal?.throwIfAborted();
  const { readable, info } = await openDownload(
    host,
    host.connection(id),
    path,
    options,
    false,
    true,
  );
  return { readable, size: info.size, mode: info.mode };
}

/**
 * @internal A directory tree on a worker as a tar stream (`GET /api/v1/daemons/{id}/dirs`), for an HTTP
 * response body: each chunk's memory is freed when the next one is read (see `openDownload`).
 */
export async function downloadTarStream(
  host: FileHost,
  id: string,
  remoteDir: string,
  options: DownloadDirOptions = {},
): Promise<ReadableStream<Uint8Array>> {
  checkPath("remoteDir", remoteDir);
  checkTransferOptions(options);
  options.signal?.throwIfAborted();
  return (await openDownload(host, host.connection(id), remoteDir, options, true, true)).readable;
}

/**
 * @internal Unpack a tar stream into a directory on a worker, atomically as `uploadDirectory` does
 * (`PUT /api/v1/daemons/{id}/dirs`).
 */
export async function uploadTarStream(
  host: FileHost,
  id: string,
  remoteDir: string,
  tar: ReadableStream<Uint8Array>,
  options: UploadDirOptions = {},
): Promise<UploadDirResult> {
  checkPath("remoteDir", remoteDir);
  checkMode(options.mode);
  checkTransferOptions(options);
  const data = await sendUpload(
    host,
    host.connection(id),
    {
      path: remoteDir,
      archive: "tar",
      mode: options.mode ?? 0o755,
      ...(options.mkdirs ? { mkdirs: true } : {}),
    },
    streamChunks(tar),
    undefined,
    transferOptions(options),
  );
  return {
    bytes: data.bytes,
    sha256: data.sha256,
    files: data.files ?? 0,
    directories: data.directories ?? 0,
    symlinks: data.symlinks ?? 0,
  };
}

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
export class RemoteFs implements FileSystemHandle {
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
      type: data.type,
      size: data.size,
      mode: data.mode,
      mtime: toDate(data.mtime),
      uid: data.uid,
      gid: data.gid,
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
    return data.entries.map((e) => ({
      path: e.path,
      type: e.type,
      size: e.size,
      mode: e.mode,
      mtime: toDate(e.mtime),
      ...(e.target !== undefined ? { target: e.target } : {}),
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
    checkTransferOptions(options);
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
