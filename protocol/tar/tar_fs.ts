/**
 * Directory trees to and from tar streams: {@linkcode packDirectory} walks a directory and streams it as a tar
 * archive; {@linkcode unpackTar} extracts a tar stream into a directory, refusing anything that would write
 * outside it.
 *
 * Limits that come from Deno: its file system APIs take and return strings, so a file name that is not valid
 * UTF-8 on disk cannot be opened by the name Deno reports (Deno substitutes U+FFFD). Packing such a tree fails
 * with {@linkcode TarPackError} rather than silently leaving the file out, and an archive entry whose name is
 * not valid UTF-8 cannot be created on disk, so unpacking it fails with {@linkcode TarPathError}
 * (`"TAR_PATH_INVALID"`). Symlink mtimes are not restored (Deno has no `lutimes`). Ownership is not recorded.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { readTar, TarWriter } from "./tar.ts";
import { archiveStream } from "./archive_stream.ts";

/**
 * The mode bits unpacking keeps from an archive: permissions only. Setuid, setgid and sticky never come from an
 * archive (a controller must not be able to plant a setuid program on a worker, nor a daemon on the controller).
 */
const PERMISSION_BITS = 0o777;

/** Options for {@linkcode packDirectory}. */
export interface PackOptions {
  /**
   * Follow symlinks and store what they point to. A link that points nowhere is still stored as a link; a
   * link that leads back into one of its own ancestor directories fails with {@linkcode TarPackError}.
   *
   * @default {false} (symlinks are stored as links)
   */
  followSymlinks?: boolean;
  /** Stop packing: the stream errors with the signal's reason and open files are closed. */
  signal?: AbortSignal;
}

/** Options for {@linkcode unpackTar}. */
export interface UnpackOptions {
  /**
   * Keep the permission bits from the archive (without setuid, setgid and sticky bits, which are always
   * dropped). When false, files and directories get the process's default modes (0o666 and 0o777 less umask).
   *
   * @default {true}
   */
  preserveMode?: boolean;
  /**
   * Set files' and directories' modification times from the archive.
   *
   * @default {true}
   */
  preserveMtime?: boolean;
  /** Stop unpacking: the source is cancelled and the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** What {@linkcode unpackTar} created. */
export interface UnpackResult {
  /** Regular files written. */
  files: number;
  /** Directory entries in the archive (directories created implicitly for a file's path are not counted). */
  directories: number;
  /** Symlinks created. */
  symlinks: number;
  /** Bytes of file content written. */
  bytes: number;
}

/**
 * An archive entry's path is not acceptable for extraction. `code` says why:
 * - `"TAR_PATH_ESCAPE"`: the entry would land outside the target directory: an absolute path, a `..`
 *   component, or a path through a symlink (one from the archive or one already in the target directory).
 * - `"TAR_PATH_INVALID"`: the path or link target cannot be created: empty, not valid UTF-8, containing NUL,
 *   or conflicting with what is already there (a file where a directory is needed, or a directory where a
 *   file or symlink would go).
 *
 * @example Catch an escaping entry
 * ```ts
 * import { strict as assert } from "node:assert";
 * import { TarPathError } from "./tar_fs.ts";
 * const error = new TarPathError("TAR_PATH_ESCAPE", 'Tar entry "../x" has a ".." component');
 * assert(error.code === "TAR_PATH_ESCAPE");
 * ```
 */
export class TarPathError extends Error {
  /** Stable error code. */
  readonly code: "TAR_PATH_ESCAPE" | "TAR_PATH_INVALID";
  /**
   * Make a tar path error.
   *
   * @param code Which rule the path broke.
   * @param message The offending path and the rule.
   * @param options Standard error options (`cause`).
   */
  constructor(
    code: "TAR_PATH_ESCAPE" | "TAR_PATH_INVALID",
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "TarPathError";
    this.code = code;
  }
}

/**
 * A directory could not be packed faithfully: a file shrank while it was being read, a name on disk is not
 * valid UTF-8 (see the module notes), or, when following symlinks, a link loops back to its own ancestor.
 *
 * @example Catch a pack error
 * ```ts
 * import { strict as assert } from "node:assert";
 * import { TarPackError } from "./tar_fs.ts";
 * const error = new TarPackError('File "log.txt" shrank while it was packed');
 * assert(error.code === "TAR_PACK");
 * ```
 */
export class TarPackError extends Error {
  /** Stable error code. */
  readonly code: "TAR_PACK" = "TAR_PACK";
  /**
   * Make a pack error.
   *
   * @param message What went wrong, naming the file.
   * @param options Standard error options (`cause`).
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TarPackError";
  }
}

const READ_CHUNK = 256 * 1024;

function checkOptions(options: unknown, fn: string): void {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `${fn} options must be an object, got ${options === null ? "null" : typeof options}`,
    );
  }
}

function checkSignal(signal: unknown): void {
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(`Option 'signal' must be an AbortSignal, got ${typeof signal}`);
  }
}

function checkBoolean(value: unknown, name: string): void {
  if (value !== undefined && typeof value !== "boolean") {
    throw new TypeError(`Option '${name}' must be a boolean, got ${typeof value}`);
  }
}

function checkDir(dir: unknown): asserts dir is string {
  if (typeof dir !== "string" || dir.length === 0) {
    throw new TypeError(`Directory must be a non-empty string, got ${JSON.stringify(dir)}`);
  }
}

function modeOf(info: Deno.FileInfo, fallback: number): number {
  return info.mode === null ? fallback : info.mode & 0o7777;
}

function mtimeOf(info: Deno.FileInfo): number {
  return info.mtime === null ? 0 : Math.floor(info.mtime.getTime() / 1000);
}

/**
 * Stream a directory tree as a tar archive. Entries are relative to `dir` (which itself is not an entry),
 * `/`-separated, in sorted order, each directory before its contents. Regular files, directories and symlinks
 * are stored with their permission bits and mtime; sockets, FIFOs and devices are left out. Files are read in
 * chunks as the consumer pulls, so memory use does not depend on file sizes. Work starts on the first read;
 * cancelling the stream stops the walk and closes any open file.
 *
 * Errors (an unreadable file, a file that shrank, a name Deno cannot open) error the stream: a consumer never
 * receives an archive that silently lacks a file. Limit: Deno reports file names as strings, so a name that
 * is not valid UTF-8 on disk cannot be opened and fails the pack with {@linkcode TarPackError}; every name that
 * is valid UTF-8 (spaces, newlines, leading dashes, any Unicode) is stored exactly.
 *
 * @param dir The directory to pack.
 * @param options Whether to follow symlinks; an abort signal.
 * @returns The archive bytes.
 *
 * @example Pack a directory and list it
 * ```ts
 * import { strict as assert } from "node:assert";
 * import { packDirectory } from "./tar_fs.ts";
 * import { readTar } from "./tar.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/hello.txt`, "hello");
 * const names = [];
 * for await (const entry of readTar(packDirectory(dir))) {
 *   names.push(entry.header.path);
 *   await entry.body.cancel();
 * }
 * assert(names.join() === "hello.txt");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function packDirectory(dir: string, options: PackOptions = {}): ReadableStream<Uint8Array> {
  checkDir(dir);
  checkOptions(options, "packDirectory");
  const { followSymlinks = false, signal } = options;
  checkBoolean(followSymlinks, "followSymlinks");
  checkSignal(signal);
  const tar = new TarWriter();

  async function run(): Promise<void> {
    const onAbort = () => tar.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      signal?.throwIfAborted();
      const root = await Deno.stat(dir);
      if (!root.isDirectory) throw new TypeError(`Cannot pack "${dir}": it is not a directory`);
      await walk(tar, dir, "", followSymlinks, new Set([`${root.dev}:${root.ino}`]), signal);
      await tar.close();
    } catch (error) {
      await tar.abort(error);
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  return archiveStream(tar, { write: run });
}

async function walk(
  tar: TarWriter,
  dirPath: string,
  relDir: string,
  follow: boolean,
  ancestors: Set<string>,
  signal: AbortSignal | undefined,
): Promise<void> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dirPath)) names.push(entry.name);
  names.sort();
  for (const name of names) {
    signal?.throwIfAborted();
    const path = join(dirPath, name);
    const rel = relDir === "" ? name : `${relDir}/${name}`;
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(path);
      if (follow && info.isSymlink) {
        info = await Deno.stat(path).catch((error) => {
          if (error instanceof Deno.errors.NotFound) return info; // Dangling: keep it as a link.
          throw error;
        });
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      if (name.includes("\uFFFD")) {
        throw new TarPackError(
          `Cannot pack ${
            JSON.stringify(rel)
          }: its name on disk is not valid UTF-8, which Deno cannot open`,
          { cause: error },
        );
      }
      continue; // Removed while we were packing.
    }
    if (info.isSymlink) {
      const target = await Deno.readLink(path);
      await tar.addEntry({
        path: rel,
        type: "symlink",
        size: 0,
        mode: modeOf(info, 0o777),
        mtime: mtimeOf(info),
        linkTarget: target,
      });
    } else if (info.isDirectory) {
      const id = `${info.dev}:${info.ino}`;
      if (follow && ancestors.has(id)) {
        throw new TarPackError(
          `Cannot pack ${JSON.stringify(rel)}: a symlink loops back to its own ancestor`,
        );
      }
      await tar.addEntry({
        path: rel,
        type: "directory",
        size: 0,
        mode: modeOf(info, 0o755),
        mtime: mtimeOf(info),
      });
      ancestors.add(id);
      await walk(tar, path, rel, follow, ancestors, signal);
      ancestors.delete(id);
    } else if (info.isFile) {
      await packFile(tar, path, rel, signal);
    }
  }
}

async function packFile(
  tar: TarWriter,
  path: string,
  rel: string,
  signal: AbortSignal | undefined,
): Promise<void> {
  using file = await Deno.open(path, { read: true });
  const info = await file.stat();
  let remaining = info.size;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      signal?.throwIfAborted();
      const buffer = new Uint8Array(Math.min(remaining, READ_CHUNK));
      const n = await file.read(buffer);
      if (n === null) {
        throw new TarPackError(
          `File ${
            JSON.stringify(rel)
          } shrank while it was packed: ${remaining} of ${info.size} bytes missing`,
        );
      }
      remaining -= n;
      controller.enqueue(buffer.subarray(0, n));
      if (remaining === 0) controller.close();
    },
  }, { highWaterMark: 0 });
  await tar.addEntry(
    { path: rel, type: "file", size: info.size, mode: modeOf(info, 0o644), mtime: mtimeOf(info) },
    info.size === 0 ? new Uint8Array() : body,
  );
}

function describe(path: string | Uint8Array): string {
  return typeof path === "string" ? JSON.stringify(path) : `<${path.length} bytes, not UTF-8>`;
}

/** Splits an archive path into safe components, or throws TarPathError. */
function safeParts(path: string | Uint8Array): string[] {
  if (typeof path !== "string") {
    throw new TarPathError(
      "TAR_PATH_INVALID",
      `Tar entry path ${describe(path)} is not valid UTF-8, which Deno cannot create on disk`,
    );
  }
  if (path.includes("\0")) {
    throw new TarPathError(
      "TAR_PATH_INVALID",
      `Tar entry path ${describe(path)} contains a NUL character`,
    );
  }
  const windows = Deno.build.os === "windows";
  if (path.startsWith("/") || (windows && /^([a-zA-Z]:|[\\/])/.test(path))) {
    throw new TarPathError("TAR_PATH_ESCAPE", `Tar entry path ${describe(path)} is absolute`);
  }
  const parts = path.split(windows ? /[\\/]/ : "/").filter((part) => part !== "" && part !== ".");
  for (const part of parts) {
    if (part === "..") {
      throw new TarPathError(
        "TAR_PATH_ESCAPE",
        `Tar entry path ${describe(path)} has a ".." component`,
      );
    }
    if (windows && part.includes(":")) {
      throw new TarPathError(
        "TAR_PATH_ESCAPE",
        `Tar entry path ${describe(path)} has a drive or stream name`,
      );
    }
  }
  return parts;
}

async function lstatOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/**
 * Extract a tar stream into `dir` (created if missing). Existing files and symlinks with the same names are
 * replaced; existing directories are merged into.
 *
 * Safety against hostile archives: absolute paths and `..` components are refused, and no entry is ever
 * written through a symlink, whether the archive created it or it was already in `dir` (such an entry is
 * refused with `"TAR_PATH_ESCAPE"`). Symlink entries are created as links whatever they point to; only writing
 * through them is refused. Files are written to a temporary name in their final directory and renamed into
 * place, so a failure never leaves a half-written file under the entry's name (entries completed before the
 * failure stay). Directory modes and mtimes are applied at the end, so a read-only directory in the archive
 * can still receive its contents. Concurrent changes to `dir` by other processes are not defended against.
 * Limit: Deno creates files from string names only, so an entry whose name or link target is not valid UTF-8
 * is refused with {@linkcode TarPathError} (`"TAR_PATH_INVALID"`) instead of being created under a different
 * name. Memory is constant per file; only the set of directories created so far grows with the archive.
 *
 * @param stream The archive bytes.
 * @param dir The directory to extract into.
 * @param options Mode and mtime handling; an abort signal.
 * @returns Counts of what was created.
 * @throws {TarFormatError} The stream is not a well-formed tar archive (see {@linkcode readTar}).
 * @throws {TarPathError} An entry's path is unsafe or cannot be created.
 *
 * @example Copy a directory through a tar stream
 * ```ts
 * import { strict as assert } from "node:assert";
 * import { packDirectory, unpackTar } from "./tar_fs.ts";
 * const from = await Deno.makeTempDir();
 * const to = await Deno.makeTempDir();
 * await Deno.mkdir(`${from}/sub`);
 * await Deno.writeTextFile(`${from}/sub/a.txt`, "hello");
 * const result = await unpackTar(packDirectory(from), to);
 * assert(result.files === 1 && result.directories === 1 && result.bytes === 5);
 * assert(await Deno.readTextFile(`${to}/sub/a.txt`) === "hello");
 * await Deno.remove(from, { recursive: true });
 * await Deno.remove(to, { recursive: true });
 * ```
 */
export async function unpackTar(
  stream: ReadableStream<Uint8Array>,
  dir: string,
  options: UnpackOptions = {},
): Promise<UnpackResult> {
  if (!(stream instanceof ReadableStream)) {
    throw new TypeError(`Tar input must be a ReadableStream, got ${typeof stream}`);
  }
  checkDir(dir);
  checkOptions(options, "unpackTar");
  const { preserveMode = true, preserveMtime = true, signal } = options;
  checkBoolean(preserveMode, "preserveMode");
  checkBoolean(preserveMtime, "preserveMtime");
  checkSignal(signal);

  const root = resolve(dir);
  const result: UnpackResult = { files: 0, directories: 0, symlinks: 0, bytes: 0 };
  /** Relative paths known to be real directories (never replaced during this run). */
  const directories = new Set<string>([""]);
  const directoryMeta: { path: string; depth: number; mode: number; mtime: number }[] = [];

  /** Makes sure every component of `parts` is a real directory, creating missing ones. */
  async function ensureDirectories(parts: string[], entryPath: string): Promise<void> {
    let rel = "";
    for (const part of parts) {
      rel = rel === "" ? part : `${rel}/${part}`;
      if (directories.has(rel)) continue;
      const abs = join(root, rel);
      const info = await lstatOrNull(abs);
      if (info === null) {
        await Deno.mkdir(abs);
      } else if (info.isSymlink) {
        throw new TarPathError(
          "TAR_PATH_ESCAPE",
          `Tar entry path ${describe(entryPath)} goes through the symlink ${JSON.stringify(rel)}`,
        );
      } else if (!info.isDirectory) {
        throw new TarPathError(
          "TAR_PATH_INVALID",
          `Tar entry path ${describe(entryPath)} needs ${
            JSON.stringify(rel)
          } to be a directory, but it is a file`,
        );
      }
      directories.add(rel);
    }
  }

  /** Moves a finished temporary file or link onto its final name, refusing to replace a directory. */
  async function place(temp: string, parts: string[], entryPath: string): Promise<void> {
    const target = join(root, ...parts);
    const existing = await lstatOrNull(target);
    if (existing?.isDirectory) {
      throw new TarPathError(
        "TAR_PATH_INVALID",
        `Tar entry path ${describe(entryPath)} is an existing directory and cannot be replaced`,
      );
    }
    await Deno.rename(temp, target);
  }

  await Deno.mkdir(root, { recursive: true });
  for await (const { header, body } of readTar(stream, signal === undefined ? {} : { signal })) {
    let parts: string[];
    try {
      parts = safeParts(header.path);
      if (parts.length === 0 && header.type !== "directory") {
        throw new TarPathError(
          "TAR_PATH_INVALID",
          `Tar entry path ${describe(header.path)} names no file`,
        );
      }
    } catch (error) {
      await body.cancel(error);
      throw error;
    }
    const rel = parts.join("/");
    const parent = parts.slice(0, -1);

    if (header.type === "directory") {
      await body.cancel();
      if (parts.length === 0) continue; // The root itself ("./"): leave its mode alone.
      await ensureDirectories(parent, rel);
      if (!directories.has(rel)) {
        const abs = join(root, rel);
        const info = await lstatOrNull(abs);
        if (info !== null && !info.isDirectory) await Deno.remove(abs); // A file or link by that name: replace it.
        if (info === null || !info.isDirectory) await Deno.mkdir(abs);
        directories.add(rel);
      }
      directoryMeta.push({
        path: join(root, rel),
        depth: parts.length,
        mode: header.mode,
        mtime: header.mtime,
      });
      result.directories++;
      continue;
    }

    if (directories.has(rel)) {
      await body.cancel();
      throw new TarPathError(
        "TAR_PATH_INVALID",
        `Tar entry path ${
          describe(header.path)
        } is a directory and cannot be replaced by a ${header.type}`,
      );
    }
    try {
      await ensureDirectories(parent, rel);
    } catch (error) {
      await body.cancel(error);
      throw error;
    }
    const temp = join(root, ...parent, `.sandd-tar-${crypto.randomUUID()}`);

    if (header.type === "symlink") {
      await body.cancel();
      const target = header.linkTarget;
      if (typeof target !== "string" || target.length === 0 || target.includes("\0")) {
        throw new TarPathError(
          "TAR_PATH_INVALID",
          `Tar symlink ${describe(header.path)} has a target that cannot be created: ${
            describe(target ?? "")
          }`,
        );
      }
      await Deno.symlink(target, temp);
      try {
        await place(temp, parts, rel);
      } catch (error) {
        await Deno.remove(temp).catch(() => {});
        throw error;
      }
      result.symlinks++;
      continue;
    }

    // A regular file: stream it into a private temporary file, then rename it into place.
    let written = 0;
    try {
      {
        using file = await Deno.open(temp, {
          write: true,
          createNew: true,
          mode: preserveMode ? 0o600 : 0o666,
        });
        const reader = body.getReader();
        try {
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            for (let offset = 0; offset < value.length;) {
              offset += await file.write(value.subarray(offset));
            }
            written += value.length;
          }
        } catch (error) {
          await reader.cancel(error).catch(() => {});
          throw error;
        } finally {
          reader.releaseLock();
        }
        if (preserveMode) await Deno.chmod(temp, header.mode & PERMISSION_BITS);
        if (preserveMtime) await file.utime(header.mtime, header.mtime);
      }
      await place(temp, parts, rel);
    } catch (error) {
      await Deno.remove(temp).catch(() => {});
      throw error;
    }
    result.files++;
    result.bytes += written;
  }

  // Deepest first, so that a directory losing its write or search bit does not block its children.
  directoryMeta.sort((a, b) => b.depth - a.depth);
  for (const { path, mode, mtime } of directoryMeta) {
    if (preserveMode) await Deno.chmod(path, mode & PERMISSION_BITS);
    if (preserveMtime) await Deno.utime(path, mtime, mtime);
  }
  return result;
}
