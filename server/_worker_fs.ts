/**
 * `w.fs`: a worker's file system with Deno's names and option shapes (`readFile`, `writeTextFile`, `readDir`,
 * `stat`, `mkdir`, `remove`, `rename`, ...), built on the controller's transfer and file operations, so it works
 * the same over `Server` and the remote `Client`. Errors are Deno's classes (`instanceof Deno.errors.NotFound`),
 * with the OS `code`, the `path` and the `daemonId`.
 *
 * How each call maps (and where it differs from a local call):
 * - `readFile`/`readTextFile`: one download (SHA-256 verified). `writeFile`/`writeTextFile`: one upload, written
 *   beside the target and renamed into place (atomic, verified); an existing file keeps its mode unless `mode` is
 *   given, a new one gets `mode` or 0o644. `create: false` checks that the file exists first (a file removed in
 *   the instant between the check and the rename is created again).
 * - `append: true` and `createNew: true` cannot be an atomic replace: they run `sh -c 'cat >> "$1"'` (O_APPEND,
 *   so concurrent appends never overwrite each other) or `set -C; cat > "$1"` (noclobber: an exclusive create)
 *   from an argv array on the worker, the path a positional parameter (never interpolated). They need a POSIX
 *   shell (not Windows) and a daemon policy that allows running `sh`; a failure part-way leaves what was written.
 * - `lstat`: the daemon's `stat` follows a final symlink, so `lstat` lists the parent directory and reads the
 *   entry (the cost grows with the directory's size). Under a daemon `--root`, `stat` itself does not follow a
 *   final symlink (confinement): `isSymlink` can then be true from `stat`.
 * - `copyFile`: streamed worker → controller → worker (download then atomic upload, mode kept): portable and
 *   confined like every file operation, but the bytes cross the link twice.
 * - `realPath`: runs `realpath -- PATH` (or `readlink -f -- PATH`) from an argv array on the worker.
 * - `FileInfo`: `mode` carries the file-type bits as a local `stat` does (`0o100644`); `atime`, `birthtime`,
 *   `ctime`, `ino`, `nlink`, `rdev`, `blksize`, `blocks` are `null` and `dev` is 0 (the daemon does not report
 *   them).
 *
 * @module
 */

import { posix } from "node:path";
import type { FileEntry, FileStat } from "./files.ts";
import { denoFileError, fileErrorOf } from "./_worker_errors.ts";
import {
  type FsHost,
  shellWritable,
  uploadWritable,
  WorkerFile,
  WorkerFsWatcher,
  writeAllTo,
} from "./_worker_fs_io.ts";
import { checkMode, checkPath } from "./_file_checks.ts";

/** Options of `w.fs.readFile` and `readTextFile`. */
export interface WorkerReadFileOptions {
  /** Cancel the download. @default undefined */
  signal?: AbortSignal;
}

/** Options of `w.fs.writeFile` and `writeTextFile`: `Deno.WriteFileOptions`' fields. */
export interface WorkerWriteFileOptions {
  /** Append to the end instead of replacing the file. @default false */
  append?: boolean;
  /** Create the file when it does not exist (else `NotFound`). @default true */
  create?: boolean;
  /** Fail with `AlreadyExists` when anything exists at the path (exclusive create; `create` is ignored). @default false */
  createNew?: boolean;
  /** Permission bits, applied to the file. @default the replaced file's mode, else 0o644 */
  mode?: number;
  /** Cancel the write (a replace leaves the target untouched). @default undefined */
  signal?: AbortSignal;
}

/** Options of `w.fs.mkdir`: `Deno.MkdirOptions`' fields. */
export interface WorkerMkdirOptions {
  /** Create missing parents; an existing directory is then no error. @default false */
  recursive?: boolean;
  /** Permission bits. @default 0o777 less the daemon's umask */
  mode?: number;
}

/** Options of `w.fs.remove`: `Deno.RemoveOptions`' fields. */
export interface WorkerRemoveOptions {
  /** Remove a non-empty directory and everything in it. @default false */
  recursive?: boolean;
}

/** Options of `w.fs.watchFs`. */
export interface WorkerWatchFsOptions {
  /** Watch subdirectories too. @default true */
  recursive?: boolean;
}

/**
 * Options of `w.fs.open`: `Deno.OpenOptions`' fields where a stream makes sense. A file is opened either for
 * reading or for writing (no random access): writing needs `truncate: true` (the file is replaced when the
 * writable closes), `append: true` or `createNew: true`.
 */
export interface WorkerOpenOptions {
  /** Open for reading. @default true unless a write option is given */
  read?: boolean;
  /** Open for writing (with `truncate: true`). @default false */
  write?: boolean;
  /** Append to the end. @default false */
  append?: boolean;
  /** Replace the contents. @default false */
  truncate?: boolean;
  /** Create the file if missing. @default false */
  create?: boolean;
  /** Create the file, failing if it exists. @default false */
  createNew?: boolean;
  /** Permission bits of a written file. @default the replaced file's mode, else 0o644 */
  mode?: number;
  /** Cancel the transfer. @default undefined */
  signal?: AbortSignal;
}

function checkBooleans(options: object, names: string[]): void {
  for (const name of names) {
    const value = (options as Record<string, unknown>)[name];
    if (value !== undefined && typeof value !== "boolean") {
      throw new TypeError(`${name} must be a boolean, got ${JSON.stringify(value)}`);
    }
  }
}

const TYPE_BITS: Record<string, number> = {
  file: 0o100000,
  directory: 0o040000,
  symlink: 0o120000,
};

function fileInfo(
  s: Pick<FileStat, "type" | "size" | "mode" | "mtime"> & {
    uid?: number | null;
    gid?: number | null;
  },
): Deno.FileInfo {
  return {
    isFile: s.type === "file",
    isDirectory: s.type === "directory",
    isSymlink: s.type === "symlink",
    size: s.size,
    mtime: s.mtime,
    atime: null,
    birthtime: null,
    ctime: null,
    dev: 0,
    ino: null,
    mode: (TYPE_BITS[s.type] ?? 0) | (s.mode & 0o7777),
    nlink: null,
    uid: s.uid ?? null,
    gid: s.gid ?? null,
    rdev: null,
    blksize: null,
    blocks: null,
    isBlockDevice: s.type === "other" ? null : false,
    isCharDevice: s.type === "other" ? null : false,
    isFifo: s.type === "other" ? null : false,
    isSocket: s.type === "other" ? null : false,
  };
}

/**
 * A worker's file system with Deno's names. Get it as `w.fs`. See the module documentation for how each call
 * maps onto the controller and where it differs from a local call.
 *
 * @example Round trip a file and test a missing one like a local error
 * ```ts ignore
 * await w.fs.mkdir("/work/out", { recursive: true });
 * await w.fs.writeTextFile("/work/out/a.txt", "hello\n");
 * await w.fs.writeTextFile("/work/out/a.txt", "more\n", { append: true });
 * console.log(await w.fs.readTextFile("/work/out/a.txt"));
 * for await (const entry of w.fs.readDir("/work/out")) console.log(entry.name, entry.isFile);
 * try {
 *   await w.fs.stat("/work/missing");
 * } catch (error) {
 *   if (!(error instanceof Deno.errors.NotFound)) throw error;
 * }
 * ```
 */
export class WorkerFs {
  readonly #host: FsHost;

  /**
   * @internal Use `w.fs`.
   *
   * @param host The worker.
   */
  constructor(host: FsHost) {
    this.#host = host;
  }

  /** The daemon. */
  get daemonId(): string {
    return this.#host.daemonId;
  }

  async #map<T>(path: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw denoFileError(error, this.#host.daemonId, path);
    }
  }

  get #fs() {
    return this.#host.controller.fs(this.#host.daemonId);
  }

  /**
   * Read a whole file (`Deno.readFile`).
   *
   * @param path Path on the worker.
   * @param options Abort signal.
   * @returns The bytes.
   * @throws {Deno.errors.NotFound} When it does not exist (and the like for other OS codes).
   */
  async readFile(path: string, options: WorkerReadFileOptions = {}): Promise<Uint8Array> {
    checkPath("path", path);
    return await this.#map(path, () =>
      this.#host.controller.download(this.#host.daemonId, path, {
        ...(options.signal ? { signal: options.signal } : {}),
      }));
  }

  /**
   * Read a whole file as UTF-8 text (`Deno.readTextFile`).
   *
   * @param path Path on the worker.
   * @param options Abort signal.
   * @returns The text.
   */
  async readTextFile(path: string, options: WorkerReadFileOptions = {}): Promise<string> {
    return new TextDecoder().decode(await this.readFile(path, options));
  }

  /**
   * Write a file (`Deno.writeFile`): replaced atomically by default; see {@linkcode WorkerWriteFileOptions} for
   * `append`, `create` and `createNew`.
   *
   * @param path Path on the worker.
   * @param data The bytes, or a stream of them.
   * @param options Append, create, createNew, mode, signal.
   */
  async writeFile(
    path: string,
    data: Uint8Array | ReadableStream<Uint8Array>,
    options: WorkerWriteFileOptions = {},
  ): Promise<void> {
    checkPath("path", path);
    if (!(data instanceof Uint8Array) && !(data instanceof ReadableStream)) {
      throw new TypeError(`data must be a Uint8Array or a ReadableStream, got ${typeof data}`);
    }
    checkBooleans(options, ["append", "create", "createNew"]);
    checkMode(options.mode);
    options.signal?.throwIfAborted();
    const writable = await this.#writable(path, {
      append: options.append ?? false,
      create: options.create ?? true,
      createNew: options.createNew ?? false,
      truncate: true,
      ...(options.mode !== undefined ? { mode: options.mode } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    await this.#map(path, () => writeAllTo(writable, data));
  }

  /**
   * Write UTF-8 text to a file (`Deno.writeTextFile`).
   *
   * @param path Path on the worker.
   * @param data The text, or a stream of it.
   * @param options As for {@linkcode WorkerFs.writeFile}.
   */
  writeTextFile(
    path: string,
    data: string | ReadableStream<string>,
    options: WorkerWriteFileOptions = {},
  ): Promise<void> {
    if (typeof data === "string") {
      return this.writeFile(path, new TextEncoder().encode(data), options);
    }
    if (data instanceof ReadableStream) {
      return this.writeFile(path, data.pipeThrough(new TextEncoderStream()), options);
    }
    throw new TypeError(`data must be a string or a ReadableStream, got ${typeof data}`);
  }

  async #writable(
    path: string,
    o: {
      append: boolean;
      create: boolean;
      createNew: boolean;
      truncate: boolean;
      mode?: number;
      signal?: AbortSignal;
    },
  ): Promise<WritableStream<Uint8Array>> {
    if (o.append || o.createNew) {
      return await this.#map(path, () => shellWritable(this.#host, path, o));
    }
    if (!o.create) await this.stat(path);
    return uploadWritable(this.#host, path, o);
  }

  /**
   * Open a file for streaming (`Deno.open`'s options): for reading (the default; the download starts now, so a
   * missing file fails here) or for writing (see {@linkcode WorkerOpenOptions}).
   *
   * @param path Path on the worker.
   * @param options What for.
   * @returns The file; dispose of it (or close its stream) when done.
   */
  async open(path: string, options: WorkerOpenOptions = {}): Promise<WorkerFile> {
    checkPath("path", path);
    checkBooleans(options, ["read", "write", "append", "truncate", "create", "createNew"]);
    checkMode(options.mode);
    const writing = options.write === true || options.append === true ||
      options.createNew === true;
    if (writing && options.read) {
      throw new TypeError(
        `Cannot open '${path}' for reading and writing at once: a remote file has no random access; open it twice`,
      );
    }
    if (!writing) {
      const readable = await this.#map(
        path,
        () =>
          this.#host.controller.downloadStream(this.#host.daemonId, path, {
            ...(options.signal ? { signal: options.signal } : {}),
          }),
      );
      return new WorkerFile(path, readable, null);
    }
    if (!options.append && !options.createNew && !options.truncate) {
      throw new TypeError(
        `Cannot open '${path}' for writing in place: a remote file has no random access; pass truncate: true (replaced when the writable closes), append: true or createNew: true`,
      );
    }
    const writable = await this.#writable(path, {
      append: options.append ?? false,
      create: options.create ?? false,
      createNew: options.createNew ?? false,
      truncate: true,
      ...(options.mode !== undefined ? { mode: options.mode } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return new WorkerFile(path, null, writable);
  }

  /**
   * Create (or truncate) a file for streaming writes (`Deno.create`): the file is replaced atomically when its
   * writable closes.
   *
   * @param path Path on the worker.
   * @param options Mode and abort signal.
   * @returns The file.
   */
  async create(
    path: string,
    options: Pick<WorkerOpenOptions, "mode" | "signal"> = {},
  ): Promise<WorkerFile> {
    return await this.open(path, { ...options, write: true, create: true, truncate: true });
  }

  /**
   * List a directory (`Deno.readDir`): an async iterable of `Deno.DirEntry`-shaped entries (symlinks not
   * followed), sorted by name.
   *
   * @param path Directory on the worker.
   * @returns The entries.
   */
  async *readDir(path: string): AsyncGenerator<Deno.DirEntry, void, undefined> {
    checkPath("path", path);
    const entries: FileEntry[] = await this.#map(path, () => this.#fs.list(path));
    for (const e of entries) {
      yield {
        name: e.path,
        isFile: e.type === "file",
        isDirectory: e.type === "directory",
        isSymlink: e.type === "symlink",
      };
    }
  }

  /**
   * Describe a path, following symlinks (`Deno.stat`; see the module documentation about `--root`).
   *
   * @param path Path on the worker.
   * @returns A `Deno.FileInfo`.
   */
  async stat(path: string): Promise<Deno.FileInfo> {
    checkPath("path", path);
    return fileInfo(await this.#map(path, () => this.#fs.stat(path)));
  }

  /**
   * Describe a path without following a final symlink (`Deno.lstat`), from its parent directory's listing.
   *
   * @param path Path on the worker.
   * @returns A `Deno.FileInfo`; `uid`/`gid` are `null` for a symlink.
   */
  async lstat(path: string): Promise<Deno.FileInfo> {
    checkPath("path", path);
    const name = posix.basename(path);
    if (path.endsWith("/") || name === "" || name === "." || name === "..") return this.stat(path);
    const parent = posix.dirname(path);
    const [entries, followed] = await Promise.all([
      this.#map(path, () => this.#fs.list(parent)),
      this.#fs.stat(path).catch(() => null),
    ]);
    const entry = entries.find((e) => e.path === name);
    if (!entry) {
      throw fileErrorOf("ENOENT", "No such file or directory", this.#host.daemonId, path);
    }
    if (entry.type !== "symlink" && followed && followed.type === entry.type) {
      return fileInfo(followed);
    }
    return fileInfo(entry);
  }

  /**
   * Create a directory (`Deno.mkdir`).
   *
   * @param path Directory on the worker.
   * @param options Parents and mode.
   * @throws {Deno.errors.AlreadyExists} When it exists (without `recursive`).
   */
  async mkdir(path: string, options: WorkerMkdirOptions = {}): Promise<void> {
    checkPath("path", path);
    checkBooleans(options, ["recursive"]);
    checkMode(options.mode);
    await this.#map(path, () =>
      this.#fs.mkdir(path, {
        ...(options.recursive ? { recursive: true } : {}),
        ...(options.mode !== undefined ? { mode: options.mode } : {}),
      }));
  }

  /**
   * Remove a file, symlink or directory (`Deno.remove`).
   *
   * @param path Path on the worker.
   * @param options Whether to remove a non-empty directory.
   * @throws {Deno.errors.NotFound} When it does not exist.
   */
  async remove(path: string, options: WorkerRemoveOptions = {}): Promise<void> {
    checkPath("path", path);
    checkBooleans(options, ["recursive"]);
    await this.#map(
      path,
      () => this.#fs.remove(path, options.recursive ? { recursive: true } : {}),
    );
  }

  /**
   * Rename a path (`Deno.rename`); an existing file at `newpath` is replaced.
   *
   * @param oldpath Existing path.
   * @param newpath New path.
   */
  async rename(oldpath: string, newpath: string): Promise<void> {
    checkPath("oldpath", oldpath);
    checkPath("newpath", newpath);
    await this.#map(oldpath, () => this.#fs.move(oldpath, newpath));
  }

  /**
   * Copy a file (`Deno.copyFile`): contents and permission bits, the target replaced atomically. The bytes are
   * streamed through the controller.
   *
   * @param fromPath Source on the worker.
   * @param toPath Target on the worker.
   */
  async copyFile(fromPath: string, toPath: string): Promise<void> {
    checkPath("fromPath", fromPath);
    checkPath("toPath", toPath);
    const info = await this.stat(fromPath);
    if (info.isDirectory) {
      throw fileErrorOf("EISDIR", "Is a directory", this.#host.daemonId, fromPath);
    }
    const source = await this.#map(
      fromPath,
      () => this.#host.controller.downloadStream(this.#host.daemonId, fromPath),
    );
    await this.#map(
      toPath,
      () =>
        this.#host.controller.upload(this.#host.daemonId, toPath, source, {
          mode: (info.mode ?? 0o644) & 0o7777,
        }),
    );
  }

  /**
   * The absolute path with every symlink resolved (`Deno.realPath`), from `realpath` on the worker.
   *
   * @param path Path on the worker.
   * @returns The resolved path.
   * @throws {Deno.errors.NotFound} When it does not exist.
   */
  async realPath(path: string): Promise<string> {
    checkPath("path", path);
    await this.#host.checkPosix();
    const id = this.#host.daemonId;
    // GNU realpath accepts a missing last component; Deno.realPath does not: the stat (run alongside) decides.
    const [exists, first] = await Promise.all([
      this.stat(path).then(() => null, (error: unknown) => error),
      this.#host.controller.exec(id, ["realpath", "--", path]),
    ]);
    if (exists !== null) throw exists;
    const r = first.exitCode === 127
      ? await this.#host.controller.exec(id, ["readlink", "-f", "--", path])
      : first;
    if (r.exitCode === 0 && r.stdout !== "") return r.stdout.replace(/\n$/, "");
    throw fileErrorOf("EIO", r.stderr.trim() || "Cannot resolve the path", id, path);
  }

  /**
   * Watch paths for changes (`Deno.watchFs`). The watch starts at once.
   *
   * @param paths A path or several.
   * @param options Whether to watch subdirectories.
   * @returns An async iterable of `Deno.FsEvent`s; close or dispose of it to stop.
   */
  watchFs(paths: string | string[], options: WorkerWatchFsOptions = {}): WorkerFsWatcher {
    const list = typeof paths === "string" ? [paths] : paths;
    if (!Array.isArray(list) || list.length === 0) {
      throw new TypeError(
        `paths must be a path or a non-empty array of them, got ${JSON.stringify(paths)}`,
      );
    }
    list.forEach((p, i) => checkPath(`paths[${i}]`, p));
    checkBooleans(options, ["recursive"]);
    return new WorkerFsWatcher(this.#fs, [...list], options.recursive ?? true);
  }
}
