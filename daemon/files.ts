/**
 * The daemon's file operations: streamed and verified uploads and downloads, directory transfer as tar, and the
 * remote filesystem (`stat`, `list`, `mkdir`, `remove`, `move`, `watch`), optionally confined to a root directory.
 *
 * Transfers travel as binary data frames with credit: an upload is acknowledged as it is written to disk, a
 * download is read from disk only as the controller acknowledges, so memory stays within one window per
 * transfer whatever the file size. Both sides hash the bytes with SHA-256 as they pass and compare.
 *
 * Every operation resolves its path once, to a descriptor (see `_file_paths.ts`): under a root, beneath it with
 * no symlink followed; from then on it acts on descriptors (`fchmod`, `renameat`, `unlinkat`, ... relative to the
 * parent directory's descriptor), so swapping a path component for a symlink mid-operation redirects nothing.
 * Modes from the controller are masked to `0o777`. Only regular files are downloaded.
 *
 * Uploads are atomic: bytes go to an unnamed file in the target's directory (`O_TMPFILE`; where the file system
 * lacks it, a temporary name `.NAME.sandd-RANDOM.part` that file operations refuse and `list` hides), which is
 * fsynced, verified, given a name and renamed over the target. A failed, cancelled or cut upload leaves the
 * target untouched. A transfer that carries a transfer key survives a dropped link: a download keeps its open
 * descriptor (an archive its unacknowledged bytes), an upload its unnamed file and what it received, for
 * `PARK_MS`, and the controller resumes it on its next link (see `_file_streams.ts`); without a key, a cut
 * upload fails and a cut download ends (`from` restarts it). A daemon killed with SIGKILL mid-upload cannot remove its
 * temporary file.
 *
 * @module
 */

import { resolve } from "node:path";
import type { RequestArgs } from "@sandd/protocol/messages";
import type { DaemonOptions } from "./daemon.ts";
import type { Link } from "./_link.ts";
import type { Policy } from "./policy/mod.ts";
import { DaemonRequestError } from "./process_table.ts";
import {
  DownloadSender,
  type DownloadSource,
  fileSource,
  streamSource,
  TRANSFER_IDLE_MS,
  UploadReceiver,
} from "./_file_streams.ts";
import { ParkedTransfers } from "./_parked_transfers.ts";
import { MAX_TRANSFERS, TransferSlots } from "./_transfer_slots.ts";
import { fileError, FilePaths, lstatAtOrNull, TEMP_NAME, tempName } from "./_file_paths.ts";
import { unpackInto } from "./_unpack.ts";
import { list, mkdir, move, remove, removeTree, stat, swapIntoPlace, watch } from "./_fs_ops.ts";
import { packBeneath } from "./_pack.ts";
import {
  acquireFs,
  closeFd,
  fchmod,
  type FileStat,
  type FsError,
  fstat,
  fsync,
  linkFd,
  mkdirAt,
  O,
  openAt,
  pread,
  releaseFs,
  renameAt,
  unlinkAt,
  writeAll,
} from "./ffi/fs.ts";

/** How many bytes an upload writes between background flushes of its file to disk. */
const FLUSH_EVERY = 32 * 1024 * 1024;

/** Options of {@linkcode fileHandlers}. */
export interface FileHandlerOptions {
  /**
   * Confine every file operation to this directory: relative paths resolve against it; `..`, absolute paths
   * outside it and any symlink on the way (even one that stays inside) are refused with a `POLICY` error (rule
   * `root`). Each path is resolved once, to a descriptor beneath the root (see daemon/SECURITY.md).
   *
   * @default {undefined} (no confinement; relative paths resolve against the daemon's working directory)
   */
  root?: string;
  /**
   * A policy whose `root`, `noFiles` and `runAs` apply: its root confines like `root` (when both are given, the
   * inner one applies; roots that do not overlap refuse everything); with `runAs` and no root at all, every file
   * operation is refused (they would run as the daemon's user, not as `runAs`).
   *
   * @default {undefined}
   */
  policy?: Policy;
  /**
   * Most transfers (uploads and downloads together) one controller link may run at once; beyond, a transfer is
   * refused with `EMFILE`.
   *
   * @default {MAX_TRANSFERS} (64)
   */
  maxTransfers?: number;
  /**
   * How long a transfer may wait on the controller without progress (a download for an ack, an upload for
   * bytes) before it is reset with `ETIMEDOUT` and its descriptors closed, in milliseconds.
   *
   * @default {TRANSFER_IDLE_MS} (60,000)
   */
  transferIdleMs?: number;
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
 * @throws {RangeError} If `maxTransfers` or `transferIdleMs` is not a positive integer (the deadline at most
 * 2³¹ − 1 ms).
 */
export function fileHandlers(options: FileHandlerOptions = {}): FileHandlers {
  const { root, policy } = options;
  if (root !== undefined && (typeof root !== "string" || root === "" || root.includes("\0"))) {
    throw new TypeError(`root must be a non-empty path without NUL, got ${JSON.stringify(root)}`);
  }
  const maxTransfers = options.maxTransfers ?? MAX_TRANSFERS;
  if (!Number.isSafeInteger(maxTransfers) || maxTransfers < 1) {
    throw new RangeError(`maxTransfers must be a positive integer, got ${maxTransfers}`);
  }
  const idleMs = options.transferIdleMs ?? TRANSFER_IDLE_MS;
  if (!Number.isSafeInteger(idleMs) || idleMs < 1 || idleMs > 2 ** 31 - 1) {
    throw new RangeError(
      `transferIdleMs must be a positive integer of milliseconds up to 2147483647, got ${idleMs}`,
    );
  }
  const paths = new FilePaths(root === undefined ? undefined : resolve(root), policy);
  const parked = new ParkedTransfers();
  const slots = new TransferSlots(maxTransfers, idleMs);
  return {
    upload: (args, link) => withFs(() => keptUpload(paths, parked, slots, args, link)),
    download: (args, link) => withFs(() => download(paths, parked, slots, args, link)),
    stat: (args) => withFs(() => stat(paths, args)),
    list: (args) => withFs(() => list(paths, args)),
    mkdir: (args) => withFs(() => mkdir(paths, args)),
    remove: (args) => withFs(() => remove(paths, args)),
    move: (args) => withFs(() => move(paths, args)),
    watch: (args, link) => withFs(() => watch(paths, args, link)),
    unwatch: (args, link) => {
      link.routes.get(args.wid)?.onReset?.("unwatch");
      return {};
    },
  };
}

// --- the C library binding ---

/**
 * Run a handler with the file-system binding held (released when it settles). A transfer or watch that outlives
 * its handler holds the binding once more until it ends. Loading the binding costs milliseconds: the daemon's
 * main holds it for its whole run, so these holds only count.
 */
function withFs<T>(run: () => T): T {
  acquireFs();
  let result: T;
  try {
    result = run();
  } catch (error) {
    releaseFs();
    throw error;
  }
  if (result instanceof Promise) {
    return result.finally(releaseFs) as T;
  }
  releaseFs();
  return result;
}

function masked(mode: number): number {
  return mode & 0o777;
}

async function syncDirectory(dirFd: number): Promise<void> {
  try {
    await fsync(dirFd);
  } catch {
    // Best effort: some file systems refuse fsync on directories.
  }
}

// --- uploads ---

/** An upload, held under its transfer key (when it has one) so that a dropped link does not end it. */
function keptUpload(
  paths: FilePaths,
  parked: ParkedTransfers,
  slots: TransferSlots,
  args: RequestArgs<"upload">,
  link: Link,
): Promise<Record<string, unknown>> {
  const key = args.transfer;
  if (args.resume) {
    if (key === undefined) {
      return Promise.reject(
        new DaemonRequestError("BAD_REQUEST", "An upload resume needs its transfer key", {
          path: args.path,
        }),
      );
    }
    return parked.resumeUpload(key, args.path, link, args.sid, args.window);
  }
  if (key !== undefined && parked.has(key)) {
    return Promise.reject(
      new DaemonRequestError("EEXIST", `Transfer key '${key}' is in use by another transfer`, {
        path: args.path,
      }),
    );
  }
  let release: () => void;
  try {
    release = slots.take(link, args.path);
  } catch (error) {
    return Promise.reject(error);
  }
  if (key === undefined) {
    const receiver = new UploadReceiver(link, args.sid, args.window, { idleMs: slots.idleMs });
    const result = upload(paths, args, receiver);
    result.then(release, release);
    return result;
  }
  const receiver = new UploadReceiver(link, args.sid, args.window, {
    onDetached: () => parked.park(key),
    idleMs: slots.idleMs,
  });
  const result = upload(paths, args, receiver);
  result.then(release, release);
  parked.addUpload(key, args.path, receiver, result);
  return result;
}

async function upload(
  paths: FilePaths,
  args: RequestArgs<"upload">,
  receiver: UploadReceiver,
): Promise<Record<string, unknown>> {
  // The receiver was bound first, synchronously: data frames follow the request at once.
  let dirFd = -1;
  try {
    const resolved = paths.resolve(args.path);
    if (resolved.parts.length === 0) {
      throw new DaemonRequestError(
        "EISDIR",
        `Cannot upload to '${args.path}': it is the root directory`,
        { path: args.path },
      );
    }
    const entry = paths.entry(resolved, args.mkdirs ?? false);
    dirFd = entry.dirFd;
    const existing = lstatAtOrNull(dirFd, entry.name);
    if (args.archive === "tar") {
      return await uploadTree(receiver, args, dirFd, entry.name, existing);
    }
    if (existing?.kind === "directory") {
      throw new DaemonRequestError("EISDIR", `Cannot upload to '${args.path}': it is a directory`, {
        path: args.path,
      });
    }
    return await uploadFile(receiver, args, dirFd, entry.name, existing);
  } catch (error) {
    throw fileError(error, args.path, "upload", paths.confined);
  } finally {
    closeFd(dirFd);
    receiver.finish();
  }
}

/** A new file for an upload: unnamed (`O_TMPFILE`) where the file system allows, else under a temporary name. */
function createUploadFile(dirFd: number, name: string): { fd: number; temp: string | null } {
  try {
    return { fd: openAt(dirFd, ".", O.TMPFILE | O.WRONLY, 0o600), temp: null };
  } catch (error) {
    const code = (error as FsError).code;
    if (code !== "EOPNOTSUPP" && code !== "EISDIR" && code !== "EINVAL") throw error;
  }
  const temp = tempName(name, "part");
  const fd = openAt(dirFd, temp, O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, 0o600);
  return { fd, temp };
}

async function uploadFile(
  receiver: UploadReceiver,
  args: RequestArgs<"upload">,
  dirFd: number,
  name: string,
  existing: FileStat | null,
): Promise<Record<string, unknown>> {
  const { fd, temp } = createUploadFile(dirFd, name);
  let staged: string | null = temp;
  let placed = false;
  // Flush what is written so far in the background (on a worker thread), so the disk works while the bytes
  // arrive and the final fsync has little left to do.
  let flushing: Promise<void> | null = null;
  try {
    let unflushed = 0;
    while (true) {
      const chunk = await receiver.read();
      if (chunk === null) break;
      writeAll(fd, chunk);
      unflushed += chunk.length;
      receiver.consumed(false, chunk);
      if (unflushed >= FLUSH_EVERY && flushing === null) {
        unflushed = 0;
        // A failure here shows again in the final fsync, which is awaited.
        flushing = fsync(fd, true).catch(() => {}).finally(() => flushing = null);
      }
    }
    receiver.consumed(true);
    const sha256 = receiver.verify(args.path, args.size);
    const mode = masked(args.mode ?? (existing?.kind === "file" ? existing.mode : 0o644));
    fchmod(fd, mode);
    await flushing;
    await fsync(fd);
    if (staged === null) {
      staged = tempName(name, "part");
      linkFd(fd, dirFd, staged);
    }
    renameAt(dirFd, staged, dirFd, name);
    placed = true;
    // The name now holds our file, unless something replaced the staged name in between: refuse that.
    if (lstatAtOrNull(dirFd, name)?.id !== fstat(fd).id) {
      throw new DaemonRequestError(
        "EINTEGRITY",
        `Upload of '${args.path}' was tampered with: another file took its place before it was renamed`,
        { path: args.path },
      );
    }
    await syncDirectory(dirFd);
    return { bytes: receiver.received, sha256 };
  } finally {
    await flushing?.catch(() => {});
    closeFd(fd);
    if (!placed && staged !== null) {
      try {
        unlinkAt(dirFd, staged);
      } catch {
        // gone already
      }
    }
  }
}

async function uploadTree(
  receiver: UploadReceiver,
  args: RequestArgs<"upload">,
  dirFd: number,
  name: string,
  existing: FileStat | null,
): Promise<Record<string, unknown>> {
  if (existing && existing.kind !== "directory") {
    throw new DaemonRequestError(
      "ENOTDIR",
      `Cannot upload a directory to '${args.path}': it exists and is not a directory`,
      { path: args.path },
    );
  }
  const temp = tempName(name, "part");
  mkdirAt(dirFd, temp, 0o700);
  let placed = false;
  let treeFd = -1;
  try {
    treeFd = openAt(dirFd, temp, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
    const source = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const chunk = await receiver.read();
        if (chunk === null) {
          controller.close();
        } else {
          controller.enqueue(chunk);
          receiver.consumed();
        }
      },
    }, { highWaterMark: 0 });
    const result = await unpackInto(source, treeFd);
    // Drain what follows the archive's end marker, up to the end of stream.
    while (true) {
      const chunk = await receiver.read();
      if (chunk === null) break;
      receiver.consumed();
    }
    receiver.consumed(true);
    const sha256 = receiver.verify(args.path, args.size);
    fchmod(treeFd, masked(args.mode ?? 0o755));
    await replaceDirectory(dirFd, temp, name, existing !== null);
    placed = true;
    return {
      bytes: receiver.received,
      sha256,
      files: result.files,
      directories: result.directories,
      symlinks: result.symlinks,
    };
  } finally {
    closeFd(treeFd);
    if (!placed) {
      try {
        removeTree(dirFd, temp);
      } catch {
        // best effort
      }
    }
  }
}

/** Put the directory `temp` at `name` (both in `dirFd`), swapping out an existing directory there. */
async function replaceDirectory(
  dirFd: number,
  temp: string,
  name: string,
  exists: boolean,
): Promise<void> {
  if (!exists) {
    renameAt(dirFd, temp, dirFd, name);
  } else {
    removeTree(dirFd, swapIntoPlace(dirFd, temp, name));
  }
  await syncDirectory(dirFd);
}

// --- downloads ---

function describeFor(path: string, confined: boolean) {
  return (error: unknown) => fileError(error, path, "read", confined);
}

/** Start sending `source` on the request's stream; with a transfer key, a dropped link parks it for a resume. */
function startSender(
  parked: ParkedTransfers,
  idleMs: number,
  args: RequestArgs<"download">,
  link: Link,
  source: DownloadSource,
  from: number,
  confined: boolean,
  reply: Record<string, unknown>,
): Record<string, unknown> {
  const key = args.transfer;
  const sender: DownloadSender = new DownloadSender(source, {
    window: args.window,
    from,
    describeError: describeFor(args.path, confined),
    idleMs,
    ...(key === undefined ? {} : {
      onDetached: () => parked.park(key),
      onDone: () => parked.remove(key, sender),
    }),
  });
  if (key !== undefined) parked.add(key, args.path, sender, reply);
  sender.bind(link, args.sid);
  setTimeout(() => sender.pump(), 0);
  return reply;
}

function download(
  paths: FilePaths,
  parked: ParkedTransfers,
  slots: TransferSlots,
  args: RequestArgs<"download">,
  link: Link,
): Record<string, unknown> {
  if (args.resume) return resumeDownload(parked, args, link);
  if (args.transfer !== undefined && parked.has(args.transfer)) {
    throw new DaemonRequestError(
      "EEXIST",
      `Transfer key '${args.transfer}' is in use by another download`,
      { path: args.path },
    );
  }
  // Given back when the source closes (the transfer is over), or below when the download fails to start.
  const release = slots.take(link, args.path);
  let fd = -1;
  try {
    const resolved = paths.resolve(args.path);
    if (args.archive === "tar") {
      if (args.from !== undefined && args.from > 0) {
        throw new DaemonRequestError(
          "EINVAL",
          "A directory download cannot start at an offset (resume it by its transfer key)",
          { path: args.path },
        );
      }
      fd = paths.open(resolved, O.RDONLY | O.NONBLOCK);
      const info = fstat(fd);
      if (info.kind !== "directory") {
        throw new DaemonRequestError(
          "ENOTDIR",
          `Cannot download '${args.path}' as a directory: it is not one`,
          { path: args.path },
        );
      }
      const reader = packBeneath(fd, TEMP_NAME).getReader();
      fd = -1; // the packer owns it now
      acquireFs();
      const source = streamSource(reader, () => {
        release();
        reader.cancel().catch(() => {}).finally(releaseFs);
      });
      return startSender(parked, slots.idleMs, args, link, source, 0, paths.confined, {
        size: null,
        mode: info.mode & 0o7777,
        mtime: info.mtimeMs,
      });
    }
    // Non-blocking: opening a FIFO must not wait for a writer; it is refused below.
    fd = paths.open(resolved, O.RDONLY | O.NONBLOCK);
    const info = fstat(fd);
    if (info.kind === "directory") {
      throw new DaemonRequestError("EISDIR", `Cannot download '${args.path}': it is a directory`, {
        path: args.path,
      });
    }
    if (info.kind !== "file") {
      throw new DaemonRequestError(
        "EINVAL",
        `Cannot download '${args.path}': it is a ${info.kind}, not a regular file`,
        { path: args.path },
      );
    }
    const from = args.from ?? 0;
    if (from > info.size) {
      throw new DaemonRequestError(
        "EINVAL",
        `Cannot resume '${args.path}' from offset ${from}: the file has ${info.size} bytes`,
        { path: args.path },
      );
    }
    const opened = fd;
    fd = -1;
    acquireFs();
    const source = fileSource((buffer, offset) => pread(opened, buffer, offset), () => {
      release();
      closeFd(opened); // before the binding is let go
      releaseFs();
    });
    return startSender(parked, slots.idleMs, args, link, source, from, paths.confined, {
      size: info.size,
      mode: info.mode & 0o7777,
      mtime: info.mtimeMs,
    });
  } catch (error) {
    closeFd(fd);
    release();
    throw fileError(error, args.path, "download", paths.confined);
  }
}

/** Continue a download cut by a dropped link, on the new link, from the offset the controller reached. */
function resumeDownload(
  parked: ParkedTransfers,
  args: RequestArgs<"download">,
  link: Link,
): Record<string, unknown> {
  if (args.transfer === undefined) {
    throw new DaemonRequestError("BAD_REQUEST", "A download resume needs its transfer key", {
      path: args.path,
    });
  }
  return parked.resume(args.transfer, args.path, link, args.sid, args.from ?? 0);
}
