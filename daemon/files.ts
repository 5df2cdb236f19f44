/**
 * The daemon's file operations: streamed and verified uploads and downloads, directory transfer as tar, and the
 * remote filesystem (`stat`, `list`, `mkdir`, `remove`, `move`, `watch`), optionally confined to a root directory.
 *
 * Transfers travel as binary data frames with credit: an upload is acknowledged as it is written to disk, a
 * download is read from disk only as the controller acknowledges, so memory stays within one window per
 * transfer whatever the file size. Both sides hash the bytes with SHA-256 as they pass and compare.
 *
 * Uploads are atomic: bytes go to a temporary file beside the target (`.NAME.sandd-RANDOM.part`), which is
 * fsynced, verified and renamed over the target. A failed, cancelled or cut upload removes the temporary file and
 * leaves the target untouched. An interrupted upload restarts from the beginning (it is not resumed); an
 * interrupted download can be resumed with `from`. A daemon killed with SIGKILL mid-upload cannot remove its
 * temporary file.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { FRAME_HEADER_BYTES } from "../protocol/frame.ts";
import type { RequestArgs } from "../protocol/messages.ts";
import { allocateBinaryMessage } from "./_websocket_client.ts";
import { packDirectory, unpackTar } from "../protocol/tar/mod.ts";
import type { DaemonOptions } from "./daemon.ts";
import type { Link, StreamRoute } from "./_link.ts";
import { confinePath } from "./_path_confine.ts";
import { type Policy, PolicyError } from "./policy.ts";
import { DaemonRequestError } from "./process_table.ts";

/** Largest payload of one data frame a download sends. */
const MAX_FRAME_PAYLOAD = 256 * 1024;
/** How many bytes an upload writes between background flushes of its temporary file to disk. */
const FLUSH_EVERY = 32 * 1024 * 1024;
/** A `list` answer stops growing past this many JSON characters (the text-frame limit is 4 MiB). */
const MAX_LIST_CHARS = 3 * 1024 * 1024;

/** Options of {@linkcode fileHandlers}. */
export interface FileHandlerOptions {
  /**
   * Confine every file operation to this directory: relative paths resolve against it; `..`, absolute paths
   * outside it and symlinks leading out of it are refused with a `POLICY` error (rule `root`).
   *
   * @default {undefined} (no confinement; relative paths resolve against the daemon's working directory)
   */
  root?: string;
  /**
   * A policy whose {@linkcode Policy.confine} resolves every path (its `root` and `noFiles` apply). When both
   * `policy` and `root` are given, the path must pass both.
   *
   * @default {undefined}
   */
  policy?: Policy;
}

/** The handlers {@linkcode fileHandlers} returns: `DaemonOptions["handlers"]`, never undefined. */
export type FileHandlers = NonNullable<DaemonOptions["handlers"]>;

/**
 * Request handlers for `upload`, `download`, `stat`, `list`, `mkdir`, `remove`, `move`, `watch` and `unwatch`,
 * to pass as `DaemonOptions.handlers`.
 *
 * @example Run a daemon confined to a directory
 * ```ts ignore
 * import { Daemon } from "./daemon.ts";
 * import { fileHandlers } from "./files.ts";
 * const daemon = new Daemon({
 *   serverUrl: "ws://127.0.0.1:8765/ws",
 *   handlers: fileHandlers({ root: "/srv/work" }),
 * });
 * await daemon.run();
 * ```
 *
 * @example Make the handlers
 * ```ts
 * import { fileHandlers } from "./files.ts";
 * const handlers = fileHandlers({ root: "/tmp" });
 * console.assert(typeof handlers.upload === "function" && typeof handlers.watch === "function");
 * ```
 *
 * @param options Confinement.
 * @returns The handlers, keyed by operation.
 * @throws {TypeError} If `root` is not a non-empty string without NUL.
 */
export function fileHandlers(options: FileHandlerOptions = {}): FileHandlers {
  const { root, policy } = options;
  if (root !== undefined && (typeof root !== "string" || root === "" || root.includes("\0"))) {
    throw new TypeError(`root must be a non-empty path without NUL, got ${JSON.stringify(root)}`);
  }
  const paths = new Paths(root === undefined ? undefined : resolve(root), policy);
  return {
    upload: (args, link) => upload(paths, args, link),
    download: (args, link) => download(paths, args, link),
    stat: (args) => stat(paths, args),
    list: (args) => list(paths, args),
    mkdir: (args) => mkdir(paths, args),
    remove: (args) => remove(paths, args),
    move: (args) => move(paths, args),
    watch: (args, link) => watch(paths, args, link),
    unwatch: (args, link) => {
      link.routes.get(args.wid)?.onReset?.("unwatch");
      return {};
    },
  };
}

// --- paths and errors ---

class Paths {
  readonly root: string | undefined;
  readonly #policy: Policy | undefined;

  constructor(root: string | undefined, policy: Policy | undefined) {
    this.root = root;
    this.#policy = policy;
  }

  /** Resolve a path, following symlinks (for reading: download, stat, list, watch). */
  async follow(requested: string): Promise<string> {
    checkPath(requested);
    let path = requested;
    if (this.#policy) path = await this.#policy.confine(path);
    if (this.root !== undefined) return await confinePath(this.root, path);
    return resolve(path);
  }

  /**
   * Resolve a path whose last component is acted on itself (upload target, mkdir, remove, move): the parent is
   * confined with symlinks resolved; the last component is kept, so removing a symlink removes the link.
   */
  async entry(requested: string): Promise<string> {
    checkPath(requested);
    const base = this.root ?? this.#policy?.options.root;
    const lexical = base !== undefined && !isAbsolute(requested)
      ? resolve(base, requested)
      : resolve(requested);
    const name = basename(lexical);
    if (name === "") return await this.follow(lexical);
    const parent = await this.follow(dirname(lexical));
    return join(parent, name);
  }
}

function checkPath(path: string): void {
  if (path.includes("\0")) {
    throw new DaemonRequestError("EINVAL", `Path must not contain NUL: ${JSON.stringify(path)}`, {
      path,
    });
  }
}

const CLASS_CODES: [new (...args: never[]) => Error, string][] = [
  [Deno.errors.NotFound, "ENOENT"],
  [Deno.errors.PermissionDenied, "EACCES"],
  [Deno.errors.NotCapable, "EACCES"], // refused by Deno's own sandbox (e.g. /proc, /sys without --allow-all)
  [Deno.errors.AlreadyExists, "EEXIST"],
  [Deno.errors.IsADirectory, "EISDIR"],
  [Deno.errors.NotADirectory, "ENOTDIR"],
];

/** The wire error for whatever a file operation threw, naming the path the controller asked for. */
function fileError(error: unknown, path: string, verb: string): DaemonRequestError {
  if (error instanceof DaemonRequestError) return error;
  if (error instanceof PolicyError) {
    return new DaemonRequestError("POLICY", error.message, { rule: error.rule, path });
  }
  const raw = (error as { code?: unknown })?.code;
  let code = typeof raw === "string" && /^[A-Z][A-Z0-9_]{1,63}$/.test(raw) ? raw : undefined;
  if (error instanceof TypeError) code ??= "EINVAL";
  code ??= CLASS_CODES.find(([cls]) => error instanceof cls)?.[1] ?? "EIO";
  const message = String((error as Error)?.message ?? error).replace(/ \(os error \d+\).*$/s, "");
  return new DaemonRequestError(code, `Cannot ${verb} '${path}': ${message}`, { path });
}

async function lstatOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

function tempName(target: string, kind: "part" | "old"): string {
  const random = crypto.randomUUID().slice(0, 8);
  return join(dirname(target), `.${basename(target).slice(0, 120)}.sandd-${random}.${kind}`);
}

async function syncDirectory(path: string): Promise<void> {
  try {
    using dir = await Deno.open(path, { read: true });
    await dir.sync();
  } catch {
    // Best effort: some file systems refuse fsync on directories.
  }
}

// --- uploads ---

/** Receives an upload stream: queues at most one window, acknowledges as the bytes are consumed. */
class UploadReceiver {
  readonly hash: Hash = createHash("sha256");
  received = 0;
  #consumed = 0;
  #acked = 0;
  readonly #link: Link;
  readonly #sid: number;
  readonly #window: number;
  readonly #route: StreamRoute;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #eof: { offset: number; sha256: string | undefined } | null = null;
  #error: Error | null = null;
  #wake: (() => void) | null = null;
  #discarding = false;
  #gone = false;

  constructor(link: Link, sid: number, window: number) {
    this.#link = link;
    this.#sid = sid;
    this.#window = window;
    this.#route = {
      onData: (offset, payload) => this.#onData(offset, payload),
      onEof: (offset, sha256) => {
        this.#eof ??= { offset, sha256 };
        if (this.#discarding) this.#unbind();
        this.#wakeUp();
      },
      onReset: (reason) => {
        this.#fail(
          new DaemonRequestError("ECANCELED", `The controller cancelled the upload: ${reason}`),
        );
        this.#unbind();
      },
      onClose: () => {
        this.#gone = true;
        this.#fail(new DaemonRequestError("ECONNRESET", "The link closed during the upload"));
      },
    };
    link.bind(sid, this.#route);
  }

  get eof(): { offset: number; sha256: string | undefined } | null {
    return this.#eof;
  }

  #onData(offset: number, payload: Uint8Array): void {
    if (this.#error || this.#eof) return;
    if (offset !== this.received) {
      this.#fail(
        new DaemonRequestError(
          "PROTOCOL",
          `Upload data at offset ${offset}, expected ${this.received}`,
        ),
      );
      return;
    }
    if (this.#queued + payload.length > this.#window + MAX_FRAME_PAYLOAD) {
      this.#fail(
        new DaemonRequestError("PROTOCOL", `Upload exceeded its ${this.#window}-byte window`),
      );
      return;
    }
    this.hash.update(payload);
    this.received += payload.length;
    this.#queue.push(payload);
    this.#queued += payload.length;
    this.#wakeUp();
  }

  #fail(error: Error): void {
    if (this.#error) return;
    this.#error = error;
    this.#queue = [];
    this.#queued = 0;
    this.#wakeUp();
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  #unbind(): void {
    this.#link.unbind(this.#sid, this.#route);
  }

  /** The next chunk; `null` at end of stream. Throws when the stream failed. */
  async read(): Promise<Uint8Array | null> {
    while (true) {
      if (this.#error) throw this.#error;
      const chunk = this.#queue.shift();
      if (chunk) {
        this.#queued -= chunk.length;
        return chunk;
      }
      if (this.#eof) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  /** `n` bytes were written: return credit once an eighth of the window is due (or at once with `flush`). */
  consumed(n: number, flush = false): void {
    this.#consumed += n;
    if (
      this.#consumed > this.#acked && (flush || this.#consumed - this.#acked >= this.#window / 8)
    ) {
      this.#acked = this.#consumed;
      this.#link.send({ t: "ack", sid: this.#sid, offset: this.#consumed });
    }
  }

  /** Check the end of stream against what arrived. */
  verify(path: string, size: number | undefined): string {
    const eof = this.#eof!;
    const digest = this.hash.digest("hex");
    if (eof.offset !== this.received) {
      throw new DaemonRequestError(
        "EINTEGRITY",
        `Upload of '${path}' ended at offset ${eof.offset} but ${this.received} bytes arrived`,
        { path },
      );
    }
    if (size !== undefined && size !== this.received) {
      throw new DaemonRequestError(
        "EINTEGRITY",
        `Upload of '${path}' announced ${size} bytes but sent ${this.received}`,
        { path },
      );
    }
    if (eof.sha256 === undefined) {
      throw new DaemonRequestError("PROTOCOL", `Upload of '${path}' ended without a sha256`, {
        path,
      });
    }
    if (eof.sha256 !== digest) {
      throw new DaemonRequestError(
        "EINTEGRITY",
        `SHA-256 mismatch for '${path}': the controller sent ${eof.sha256}, the daemon received ${digest}`,
        { path },
      );
    }
    return digest;
  }

  /** Done with the stream: unbind now, or once the controller ends or resets it after a failure. */
  finish(): void {
    if (this.#gone || this.#eof || !this.#error) this.#unbind();
    else this.#discarding = true;
  }
}

async function upload(
  paths: Paths,
  args: RequestArgs<"upload">,
  link: Link,
): Promise<Record<string, unknown>> {
  // Bind first, synchronously: data frames follow the request at once.
  const receiver = new UploadReceiver(link, args.sid, args.window);
  try {
    const target = await paths.entry(args.path);
    const existing = await lstatOrNull(target);
    if (args.mkdirs) await Deno.mkdir(dirname(target), { recursive: true });
    if (args.archive === "tar") {
      return await uploadTree(receiver, args, target, existing);
    }
    if (existing?.isDirectory) {
      throw new DaemonRequestError("EISDIR", `Cannot upload to '${args.path}': it is a directory`, {
        path: args.path,
      });
    }
    const temp = tempName(target, "part");
    let renamed = false;
    const file = await Deno.open(temp, { write: true, createNew: true, mode: 0o600 });
    // A second handle on the same file flushes what is written so far in the background, so the disk works
    // while the bytes arrive and the final fsync has little left to do.
    let flusher: Deno.FsFile | null = null;
    let flushing: Promise<void> | null = null;
    try {
      flusher = await Deno.open(temp, { read: true });
      let unflushed = 0;
      while (true) {
        const chunk = await receiver.read();
        if (chunk === null) break;
        for (let at = 0; at < chunk.length;) at += await file.write(chunk.subarray(at));
        receiver.consumed(chunk.length);
        unflushed += chunk.length;
        if (unflushed >= FLUSH_EVERY && flushing === null) {
          unflushed = 0;
          // A failure here shows again in the final fsync, which is awaited.
          flushing = flusher.syncData().catch(() => {}).finally(() => flushing = null);
        }
      }
      receiver.consumed(0, true);
      const sha256 = receiver.verify(args.path, args.size);
      const mode = args.mode ?? (existing?.isFile ? existing.mode! & 0o7777 : 0o644);
      await Deno.chmod(temp, mode);
      await flushing;
      await file.sync();
      file.close();
      await Deno.rename(temp, target);
      renamed = true;
      await syncDirectory(dirname(target));
      return { bytes: receiver.received, sha256 };
    } finally {
      await flushing?.catch(() => {});
      flusher?.close();
      try {
        file.close();
      } catch {
        // closed above
      }
      if (!renamed) await Deno.remove(temp).catch(() => {});
    }
  } catch (error) {
    throw fileError(error, args.path, "upload");
  } finally {
    receiver.finish();
  }
}

async function uploadTree(
  receiver: UploadReceiver,
  args: RequestArgs<"upload">,
  target: string,
  existing: Deno.FileInfo | null,
): Promise<Record<string, unknown>> {
  if (existing && !existing.isDirectory) {
    throw new DaemonRequestError(
      "ENOTDIR",
      `Cannot upload a directory to '${args.path}': it exists and is not a directory`,
      { path: args.path },
    );
  }
  const temp = tempName(target, "part");
  await Deno.mkdir(temp, { mode: 0o700 });
  let placed = false;
  try {
    const source = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const chunk = await receiver.read();
        if (chunk === null) {
          controller.close();
        } else {
          controller.enqueue(chunk);
          receiver.consumed(chunk.length);
        }
      },
    }, { highWaterMark: 0 });
    const result = await unpackTar(source, temp);
    // Drain what follows the archive's end marker, up to the end of stream.
    while (true) {
      const chunk = await receiver.read();
      if (chunk === null) break;
      receiver.consumed(chunk.length);
    }
    receiver.consumed(0, true);
    const sha256 = receiver.verify(args.path, args.size);
    await Deno.chmod(temp, args.mode ?? 0o755);
    await replaceDirectory(temp, target, existing !== null);
    placed = true;
    return {
      bytes: receiver.received,
      sha256,
      files: result.files,
      directories: result.directories,
      symlinks: result.symlinks,
    };
  } finally {
    if (!placed) await Deno.remove(temp, { recursive: true }).catch(() => {});
  }
}

/** Put the directory `temp` at `target`, swapping out an existing directory there. */
async function replaceDirectory(temp: string, target: string, exists: boolean): Promise<void> {
  if (!exists) {
    await Deno.rename(temp, target);
  } else {
    const old = tempName(target, "old");
    await Deno.rename(target, old);
    try {
      await Deno.rename(temp, target);
    } catch (error) {
      await Deno.rename(old, target).catch(() => {});
      throw error;
    }
    await Deno.remove(old, { recursive: true });
  }
  await syncDirectory(dirname(target));
}

// --- downloads ---

/** Sends a download stream as the controller grants credit. */
class DownloadSender {
  readonly #link: Link;
  readonly #sid: number;
  readonly #window: number;
  readonly #read: (buffer: Uint8Array) => Promise<number | null>;
  readonly #close: () => void;
  readonly #hash: Hash = createHash("sha256");
  readonly #route: StreamRoute;
  readonly #path: string;
  #sent: number;
  #acked: number;
  #pumping = false;
  #done = false;

  constructor(
    link: Link,
    args: { sid: number; window: number; path: string },
    from: number,
    read: (buffer: Uint8Array) => Promise<number | null>,
    close: () => void,
  ) {
    this.#link = link;
    this.#sid = args.sid;
    this.#window = args.window;
    this.#path = args.path;
    this.#sent = from;
    this.#acked = from;
    this.#read = read;
    this.#close = close;
    this.#route = {
      onAck: (offset) => {
        if (offset > this.#acked && offset <= this.#sent) this.#acked = offset;
        this.pump();
      },
      onReset: () => this.#stop(),
      onClose: () => this.#stop(),
    };
    link.bind(args.sid, this.#route);
  }

  #stop(): void {
    if (this.#done) return;
    this.#done = true;
    this.#link.unbind(this.#sid, this.#route);
    this.#close();
  }

  async pump(): Promise<void> {
    if (this.#pumping || this.#done) return;
    this.#pumping = true;
    try {
      while (!this.#done) {
        const room = Math.min(MAX_FRAME_PAYLOAD, this.#acked + this.#window - this.#sent);
        if (room <= 0) return;
        // Framed and masked in place by the socket: the file's bytes are copied once, by the read.
        const frame = allocateBinaryMessage(FRAME_HEADER_BYTES + room);
        const n = await this.#read(frame.subarray(FRAME_HEADER_BYTES));
        if (this.#done) return;
        if (n === null) {
          this.#link.send({
            t: "eof",
            sid: this.#sid,
            offset: this.#sent,
            sha256: this.#hash.digest("hex"),
          });
          this.#stop();
          return;
        }
        if (n === 0) continue;
        const view = new DataView(frame.buffer, frame.byteOffset);
        view.setUint8(0, 1);
        view.setUint32(1, this.#sid);
        view.setUint32(5, Math.floor(this.#sent / 0x1_0000_0000));
        view.setUint32(9, this.#sent >>> 0);
        this.#hash.update(frame.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + n));
        this.#link.sendBinary(frame.subarray(0, FRAME_HEADER_BYTES + n));
        this.#sent += n;
      }
    } catch (error) {
      const e = fileError(error, this.#path, "read");
      this.#link.send({ t: "reset", sid: this.#sid, reason: `${e.code}: ${e.message}` });
      this.#stop();
    } finally {
      this.#pumping = false;
    }
  }
}

async function download(
  paths: Paths,
  args: RequestArgs<"download">,
  link: Link,
): Promise<Record<string, unknown>> {
  let file: Deno.FsFile | undefined;
  try {
    const path = await paths.follow(args.path);
    if (args.archive === "tar") {
      if (args.from !== undefined && args.from > 0) {
        throw new DaemonRequestError(
          "EINVAL",
          "A directory download cannot resume from an offset",
          {
            path: args.path,
          },
        );
      }
      const info = await Deno.stat(path);
      if (!info.isDirectory) {
        throw new DaemonRequestError(
          "ENOTDIR",
          `Cannot download '${args.path}' as a directory: it is not one`,
          { path: args.path },
        );
      }
      const reader = packDirectory(path).getReader();
      let pending: Uint8Array = new Uint8Array(0);
      const sender = new DownloadSender(link, args, 0, async (buffer) => {
        if (pending.length === 0) {
          const { done, value } = await reader.read();
          if (done) return null;
          pending = value;
        }
        const n = Math.min(buffer.length, pending.length);
        buffer.set(pending.subarray(0, n));
        pending = pending.subarray(n);
        return n;
      }, () => {
        reader.cancel().catch(() => {});
      });
      setTimeout(() => sender.pump(), 0);
      return { size: null, mode: info.mode! & 0o7777, mtime: info.mtime?.getTime() ?? null };
    }
    file = await Deno.open(path, { read: true });
    const info = await file.stat();
    if (info.isDirectory) {
      throw new DaemonRequestError("EISDIR", `Cannot download '${args.path}': it is a directory`, {
        path: args.path,
      });
    }
    const from = args.from ?? 0;
    if (info.isFile && from > info.size) {
      throw new DaemonRequestError(
        "EINVAL",
        `Cannot resume '${args.path}' from offset ${from}: the file has ${info.size} bytes`,
        { path: args.path },
      );
    }
    if (from > 0) await file.seek(from, Deno.SeekMode.Start);
    const opened = file;
    file = undefined;
    const sender = new DownloadSender(link, args, from, (buffer) => opened.read(buffer), () => {
      try {
        opened.close();
      } catch {
        // closed already
      }
    });
    setTimeout(() => sender.pump(), 0);
    return {
      size: info.isFile ? info.size : null,
      mode: info.mode! & 0o7777,
      mtime: info.mtime?.getTime() ?? null,
    };
  } catch (error) {
    file?.close();
    throw fileError(error, args.path, "download");
  }
}

// --- the remote filesystem ---

function typeOf(info: Deno.FileInfo): "file" | "directory" | "symlink" | "other" {
  if (info.isSymlink) return "symlink";
  if (info.isFile) return "file";
  if (info.isDirectory) return "directory";
  return "other";
}

function describeInfo(info: Deno.FileInfo): Record<string, unknown> {
  return {
    type: typeOf(info),
    size: info.size,
    mode: (info.mode ?? 0) & 0o7777,
    mtime: info.mtime?.getTime() ?? null,
  };
}

async function stat(paths: Paths, args: RequestArgs<"stat">): Promise<Record<string, unknown>> {
  try {
    const path = await paths.follow(args.path);
    const info = await Deno.stat(path);
    return { ...describeInfo(info), uid: info.uid, gid: info.gid };
  } catch (error) {
    throw fileError(error, args.path, "stat");
  }
}

async function list(paths: Paths, args: RequestArgs<"list">): Promise<Record<string, unknown>> {
  try {
    const top = await paths.follow(args.path);
    const info = await Deno.stat(top);
    if (!info.isDirectory) {
      throw new DaemonRequestError("ENOTDIR", `Cannot list '${args.path}': not a directory`, {
        path: args.path,
      });
    }
    const entries: Record<string, unknown>[] = [];
    let chars = 0;
    const pending: string[] = [""];
    while (pending.length) {
      const rel = pending.shift()!;
      const names: string[] = [];
      for await (const entry of Deno.readDir(join(top, rel))) names.push(entry.name);
      names.sort();
      for (const name of names) {
        const path = rel === "" ? name : `${rel}/${name}`;
        const abs = join(top, path);
        const entryInfo = await lstatOrNull(abs);
        if (!entryInfo) continue; // removed meanwhile
        const entry: Record<string, unknown> = { path, ...describeInfo(entryInfo) };
        if (entryInfo.isSymlink) entry.target = await Deno.readLink(abs).catch(() => "");
        chars += JSON.stringify(entry).length + 1;
        if (chars > MAX_LIST_CHARS) {
          throw new DaemonRequestError(
            "E2BIG",
            `Listing '${args.path}' exceeds ${MAX_LIST_CHARS} characters after ${entries.length} entries; list a narrower directory`,
            { path: args.path },
          );
        }
        entries.push(entry);
        if (args.recursive && entryInfo.isDirectory) pending.push(path);
      }
    }
    return { entries };
  } catch (error) {
    throw fileError(error, args.path, "list");
  }
}

async function mkdir(paths: Paths, args: RequestArgs<"mkdir">): Promise<Record<string, unknown>> {
  try {
    const path = await paths.entry(args.path);
    await Deno.mkdir(path, { recursive: args.recursive ?? false, mode: args.mode ?? 0o777 });
    if (args.mode !== undefined) await Deno.chmod(path, args.mode);
    return {};
  } catch (error) {
    throw fileError(error, args.path, "create directory");
  }
}

async function remove(paths: Paths, args: RequestArgs<"remove">): Promise<Record<string, unknown>> {
  try {
    const path = await paths.entry(args.path);
    if (paths.root !== undefined && !isStrictlyInside(paths.root, path)) {
      throw new DaemonRequestError("POLICY", `Refusing to remove the root directory`, {
        path: args.path,
        rule: "root",
      });
    }
    await Deno.remove(path, { recursive: args.recursive ?? false });
    return {};
  } catch (error) {
    throw fileError(error, args.path, "remove");
  }
}

function isStrictlyInside(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel !== "" && rel !== ".." && !rel.startsWith(".." + sep) && !isAbsolute(rel);
}

async function move(paths: Paths, args: RequestArgs<"move">): Promise<Record<string, unknown>> {
  let which = args.from;
  try {
    const from = await paths.entry(args.from);
    which = args.to;
    const to = await paths.entry(args.to);
    which = args.from;
    await Deno.rename(from, to);
    return {};
  } catch (error) {
    throw fileError(error, which, "move");
  }
}

async function watch(
  paths: Paths,
  args: RequestArgs<"watch">,
  link: Link,
): Promise<Record<string, unknown>> {
  let watcher: Deno.FsWatcher;
  try {
    const path = await paths.follow(args.path);
    await Deno.stat(path);
    watcher = Deno.watchFs(path, { recursive: args.recursive ?? true });
  } catch (error) {
    throw fileError(error, args.path, "watch");
  }
  const route: StreamRoute = {
    onReset: () => stop(),
    onClose: () => stop(),
  };
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    link.unbind(args.wid, route);
    try {
      watcher.close();
    } catch {
      // closed already
    }
  };
  link.routes.get(args.wid)?.onReset?.("replaced");
  link.bind(args.wid, route);
  (async () => {
    try {
      for await (const event of watcher) {
        link.send({
          t: "fsevent",
          wid: args.wid,
          kind: event.kind.slice(0, 32),
          paths: event.paths.slice(0, 1024),
        });
      }
    } catch {
      // closed
    }
    if (!stopped) link.send({ t: "reset", sid: args.wid, reason: "the watcher ended" });
    stop();
  })();
  return {};
}
