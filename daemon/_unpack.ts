/**
 * The daemon's tar unpacker: writes an archive's entries beneath a directory descriptor it was given, relative
 * to directory descriptors it opened itself. No entry path is ever resolved through the file system by name
 * from the top: each directory is created with `mkdirat` and opened with `openat(O_NOFOLLOW | O_DIRECTORY)`
 * relative to its parent's descriptor, files are created `O_EXCL | O_NOFOLLOW` in it, and modes and times are
 * set with `fchmod`/`futimens` on descriptors. A directory of the tree swapped for a symlink while the archive
 * streams is refused (`ELOOP`) or, if already open, keeps receiving entries wherever it was moved; nothing is
 * written through the symlink.
 *
 * Modes are masked to `0o777`: an archive cannot create setuid, setgid or sticky files.
 *
 * @module
 */

import { readTar } from "./_tar.ts";
import {
  closeFd,
  fchmod,
  FsError,
  fstatAt,
  futimens,
  mkdirAt,
  O,
  openAt,
  symlinkAt,
  unlinkAt,
  writeAll,
} from "./ffi/fs.ts";
import { DaemonRequestError } from "./process_table.ts";

/** Counts of what {@linkcode unpackInto} created. */
export interface UnpackCounts {
  /** Regular files. */
  files: number;
  /** Directories. */
  directories: number;
  /** Symlinks. */
  symlinks: number;
  /** Bytes of file content. */
  bytes: number;
}

function pathError(
  code: "TAR_PATH_INVALID" | "TAR_PATH_ESCAPE",
  message: string,
): DaemonRequestError {
  return new DaemonRequestError(code, message);
}

function describe(path: string | Uint8Array): string {
  return typeof path === "string" ? JSON.stringify(path) : `<${path.length} bytes, not UTF-8>`;
}

/** The components of an entry path, or a refusal (absolute, `..`, NUL, not UTF-8). */
function entryParts(path: string | Uint8Array): string[] {
  if (typeof path !== "string") {
    throw pathError("TAR_PATH_INVALID", `Tar entry path ${describe(path)} is not valid UTF-8`);
  }
  if (path.includes("\0")) {
    throw pathError(
      "TAR_PATH_INVALID",
      `Tar entry path ${describe(path)} contains a NUL character`,
    );
  }
  if (path.startsWith("/")) {
    throw pathError("TAR_PATH_ESCAPE", `Tar entry path ${describe(path)} is absolute`);
  }
  const parts = path.split("/").filter((part) => part !== "" && part !== ".");
  if (parts.includes("..")) {
    throw pathError("TAR_PATH_ESCAPE", `Tar entry path ${describe(path)} has a ".." component`);
  }
  return parts;
}

/** Open directories of the tree being unpacked, by relative path; all descriptors are owned here. */
class DirectoryCache {
  readonly #top: number;
  /** The last parent used (entries come grouped by directory), so most entries cost no open. */
  #last: { key: string; fd: number } | null = null;

  constructor(top: number) {
    this.#top = top;
  }

  /** A descriptor of the directory `parts` (created if missing, 0o700 until its own entry sets the mode). */
  open(parts: string[], entryPath: string): number {
    const key = parts.join("/");
    if (this.#last?.key === key) return this.#last.fd;
    let current = this.#top;
    try {
      for (const part of parts) {
        let next: number;
        try {
          next = openAt(current, part, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
        } catch (error) {
          if (!(error instanceof FsError) || error.code !== "ENOENT") {
            throw this.#explain(error, entryPath);
          }
          mkdirAt(current, part, 0o700);
          next = openAt(current, part, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
        }
        if (current !== this.#top) closeFd(current);
        current = next;
      }
    } catch (error) {
      if (current !== this.#top) closeFd(current);
      throw error;
    }
    this.#drop();
    this.#last = { key, fd: current };
    return current;
  }

  #explain(error: unknown, entryPath: string): unknown {
    if (error instanceof FsError && (error.code === "ENOTDIR" || error.code === "ELOOP")) {
      return pathError(
        "TAR_PATH_INVALID",
        `Tar entry path ${describe(entryPath)} needs a directory where the tree has a ${
          error.code === "ELOOP" ? "symlink" : "file"
        }`,
      );
    }
    return error;
  }

  #drop(): void {
    if (this.#last !== null && this.#last.fd !== this.#top) closeFd(this.#last.fd);
    this.#last = null;
  }

  close(): void {
    this.#drop();
  }
}

/** Remove a non-directory `name` in `dirFd` so an entry can take its place; a directory is refused. */
function clearName(dirFd: number, name: string, entryPath: string, type: string): void {
  let info;
  try {
    info = fstatAt(dirFd, name);
  } catch (error) {
    if (error instanceof FsError && error.code === "ENOENT") return;
    throw error;
  }
  if (info.kind === "directory") {
    throw pathError(
      "TAR_PATH_INVALID",
      `Tar entry path ${describe(entryPath)} is a directory and cannot be replaced by a ${type}`,
    );
  }
  unlinkAt(dirFd, name);
}

/**
 * Unpack the tar archive `stream` beneath the directory `topFd` (which the caller keeps owning). Directory
 * modes and times are applied at the end, deepest first, each directory reopened beneath `topFd` without
 * following symlinks.
 *
 * @example Unpack into a fresh directory
 * ```ts ignore
 * const counts = await unpackInto(archive, dirFd);
 * ```
 *
 * @param stream The archive bytes.
 * @param topFd The directory to unpack into.
 * @returns What was created.
 * @throws {DaemonRequestError} `TAR_PATH_INVALID` / `TAR_PATH_ESCAPE` for a bad entry path.
 * @throws {FsError} When the file system refuses.
 */
export async function unpackInto(
  stream: ReadableStream<Uint8Array>,
  topFd: number,
): Promise<UnpackCounts> {
  const counts: UnpackCounts = { files: 0, directories: 0, symlinks: 0, bytes: 0 };
  const cache = new DirectoryCache(topFd);
  const directories: { parts: string[]; mode: number; mtime: number }[] = [];
  const known = new Set<string>();
  try {
    for await (const { header, body } of readTar(stream)) {
      let parts: string[];
      try {
        parts = entryParts(header.path);
        if (parts.length === 0 && header.type !== "directory") {
          throw pathError(
            "TAR_PATH_INVALID",
            `Tar entry path ${describe(header.path)} names no file`,
          );
        }
      } catch (error) {
        await body.cancel(error).catch(() => {});
        throw error;
      }
      const rel = parts.join("/");
      const entryPath = rel;
      if (header.type === "directory") {
        await body.cancel();
        if (parts.length === 0) continue; // the tree's own top ("./"): its mode is the caller's
        const parentFd = cache.open(parts.slice(0, -1), entryPath);
        const name = parts[parts.length - 1]!;
        if (!known.has(rel)) {
          const info = (() => {
            try {
              return fstatAt(parentFd, name);
            } catch {
              return null;
            }
          })();
          if (info !== null && info.kind !== "directory") unlinkAt(parentFd, name);
          if (info === null || info.kind !== "directory") mkdirAt(parentFd, name, 0o700);
          known.add(rel);
        }
        directories.push({ parts, mode: header.mode & 0o777, mtime: header.mtime });
        counts.directories++;
        continue;
      }
      if (known.has(rel)) {
        await body.cancel();
        throw pathError(
          "TAR_PATH_INVALID",
          `Tar entry path ${
            describe(entryPath)
          } is a directory and cannot be replaced by a ${header.type}`,
        );
      }
      let parentFd: number;
      const name = parts[parts.length - 1]!;
      try {
        parentFd = cache.open(parts.slice(0, -1), entryPath);
        clearName(parentFd, name, entryPath, header.type);
      } catch (error) {
        await body.cancel(error).catch(() => {});
        throw error;
      }
      if (header.type === "symlink") {
        await body.cancel();
        const target = header.linkTarget;
        if (typeof target !== "string" || target.length === 0 || target.includes("\0")) {
          throw pathError(
            "TAR_PATH_INVALID",
            `Tar symlink ${describe(entryPath)} has a target that cannot be created`,
          );
        }
        symlinkAt(target, parentFd, name);
        counts.symlinks++;
        continue;
      }
      const fd = openAt(parentFd, name, O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, 0o600);
      try {
        for await (const chunk of body) {
          writeAll(fd, chunk);
          counts.bytes += chunk.length;
        }
        fchmod(fd, header.mode & 0o777);
        futimens(fd, header.mtime);
      } finally {
        closeFd(fd);
      }
      counts.files++;
    }
    cache.close();
    // Deepest first, so a read-only parent does not block its children's updates.
    directories.sort((a, b) => b.parts.length - a.parts.length);
    for (const { parts, mode, mtime } of directories) {
      const parentFd = cache.open(parts.slice(0, -1), parts.join("/"));
      const fd = openAt(parentFd, parts[parts.length - 1]!, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
      try {
        fchmod(fd, mode);
        futimens(fd, mtime);
      } finally {
        closeFd(fd);
      }
    }
    return counts;
  } finally {
    cache.close();
  }
}
