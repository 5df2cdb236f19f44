/**
 * Taking a snapshot: walk a tree from a directory descriptor (opened beneath the root by the caller), each
 * subdirectory and file opened relative to its parent's descriptor with `O_NOFOLLOW` (files also `O_NONBLOCK`,
 * and only regular files are read), so a directory swapped for a symlink while the tree is walked cannot make
 * the walk read outside the tree: the open fails and the snapshot fails with `EAGAIN` (the tree changed). Symlinks
 * are stored as links, never followed; FIFOs, sockets and devices are left out. File contents stream into the
 * store in pieces, hashed as they are copied; a small file is read once into memory and written only when the
 * store lacks it.
 *
 * @module
 */

import {
  closeFd,
  type FileStat,
  FsError,
  fstat,
  fstatAt,
  O,
  openAt,
  pread,
  readDirFd,
  readlinkAt,
} from "../ffi/fs.ts";
import { DaemonRequestError } from "../process_table.ts";
import type { ManifestEntry } from "./_manifest.ts";
import { type BlobBatch, CHUNK } from "./store.ts";
import { StatCache } from "./_stat_cache.ts";

/** Files up to this size are read whole into memory and hashed before anything is written. */
const SMALL_FILE = 1024 * 1024;
/** Yield to the event loop after this many bytes or entries (heartbeats, other requests). */
const YIELD_BYTES = 16 * 1024 * 1024;
const YIELD_ENTRIES = 256;

const decoder = new TextDecoder("utf-8", { fatal: true });

/** The tree changed under the walk in a way that could lead elsewhere: the snapshot fails, to be taken again. */
function changed(path: string, code: string): DaemonRequestError {
  return new DaemonRequestError(
    "EAGAIN",
    `Cannot snapshot '${path}': it changed while the snapshot was taken (${code}); try again`,
  );
}

/** Walks one tree into a blob batch, collecting the manifest entries. */
export class TreeWalker {
  readonly entries: ManifestEntry[] = [];
  readonly #batch: BlobBatch;
  readonly #skip: RegExp | undefined;
  readonly #cache: StatCache | undefined;
  readonly #started = Date.now();
  /** Files whose digest came from the stat cache (not read). */
  cached = 0;
  readonly #buffer = new Uint8Array(CHUNK);
  #sinceYield = 0;
  #entriesSinceYield = 0;

  /**
   * @param batch Where blobs go.
   * @param skip Names to leave out (the file service's temporary names).
   * @param cache Digests of unchanged files from earlier snapshots.
   */
  constructor(batch: BlobBatch, skip?: RegExp, cache?: StatCache) {
    this.#batch = batch;
    this.#skip = skip;
    this.#cache = cache;
  }

  async #maybeYield(bytes: number): Promise<void> {
    this.#sinceYield += bytes;
    this.#entriesSinceYield++;
    if (this.#sinceYield >= YIELD_BYTES || this.#entriesSinceYield >= YIELD_ENTRIES) {
      this.#sinceYield = 0;
      this.#entriesSinceYield = 0;
      await new Promise((r) => setTimeout(r, 0));
    }
  }

  /** Walk the directory `fd` (kept open by the caller) whose path in the snapshot is `rel`. */
  async walk(fd: number, rel: string): Promise<void> {
    const names: string[] = [];
    for (const entry of readDirFd(fd)) {
      let name: string;
      try {
        name = decoder.decode(entry.raw);
      } catch {
        throw new DaemonRequestError(
          "EILSEQ",
          `Cannot snapshot an entry of '${rel || "."}': its name is not valid UTF-8`,
        );
      }
      if (this.#skip?.test(name)) continue;
      names.push(name);
    }
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const name of names) {
      const path = rel === "" ? name : `${rel}/${name}`;
      let info: FileStat;
      try {
        info = fstatAt(fd, name);
      } catch (error) {
        if (error instanceof FsError && error.code === "ENOENT") continue; // removed meanwhile
        throw error;
      }
      if (info.kind === "symlink") {
        let raw: Uint8Array;
        try {
          raw = readlinkAt(fd, name);
        } catch (error) {
          if (error instanceof FsError && (error.code === "EINVAL" || error.code === "ENOENT")) {
            throw changed(path, error.code);
          }
          throw error;
        }
        let target: string;
        try {
          target = decoder.decode(raw);
        } catch {
          throw new DaemonRequestError(
            "EILSEQ",
            `Cannot snapshot the symlink '${path}': its target is not valid UTF-8`,
          );
        }
        this.entries.push({ path, type: "symlink", target });
        await this.#maybeYield(0);
      } else if (info.kind === "directory") {
        const sub = this.#open(fd, name, path, O.RDONLY | O.DIRECTORY);
        try {
          const opened = fstat(sub);
          this.entries.push({
            path,
            type: "dir",
            mode: opened.mode & 0o7777,
            mtime: opened.mtimeMs,
          });
          await this.#maybeYield(0);
          await this.walk(sub, path);
        } finally {
          closeFd(sub);
        }
      } else if (info.kind === "file") {
        const file = this.#open(fd, name, path, O.RDONLY | O.NONBLOCK);
        try {
          const opened = fstat(file);
          if (opened.kind !== "file") continue; // swapped for something else meanwhile
          const key = StatCache.key(opened.id, opened.size, opened.ctime);
          let hash = this.#cache?.get(key);
          let size = opened.size;
          if (hash !== undefined && this.#batch.has(hash)) {
            this.cached++;
          } else {
            ({ hash, size } = await this.#store(file, opened.size));
            if (size === opened.size) this.#cache?.set(key, hash, opened.ctime, this.#started);
          }
          this.entries.push({
            path,
            type: "file",
            mode: opened.mode & 0o7777,
            size,
            mtime: opened.mtimeMs,
            sha256: hash,
          });
          await this.#maybeYield(size);
        } finally {
          closeFd(file);
        }
      }
      // FIFOs, sockets, devices: not part of a snapshot.
    }
  }

  /** Open `name` in `fd` without following a symlink; a swap (the tree changing under the walk) is `EAGAIN`. */
  #open(fd: number, name: string, path: string, flags: number): number {
    try {
      return openAt(fd, name, flags | O.NOFOLLOW);
    } catch (error) {
      if (
        error instanceof FsError &&
        (error.code === "ELOOP" || error.code === "ENOTDIR" || error.code === "ENOENT")
      ) {
        throw changed(path, error.code);
      }
      throw error;
    }
  }

  /** Copy an open file into the store, hashed as it goes. The size is what was read (the file may change). */
  async #store(fd: number, size: number): Promise<{ hash: string; size: number }> {
    if (size <= SMALL_FILE) {
      const bytes = new Uint8Array(size);
      let at = 0;
      while (at < size) {
        const n = pread(fd, bytes.subarray(at), at);
        if (n === 0) break;
        at += n;
      }
      // A file that grew meanwhile: take what is there now, streamed.
      if (at === size && pread(fd, this.#buffer.subarray(0, 1), at) === 0) {
        return { hash: this.#batch.addBytes(bytes), size };
      }
    }
    const writer = this.#batch.writer();
    try {
      let offset = 0;
      while (true) {
        const n = pread(fd, this.#buffer, offset);
        if (n === 0) break;
        writer.write(this.#buffer.subarray(0, n));
        offset += n;
        if (offset % YIELD_BYTES < n) await new Promise((r) => setTimeout(r, 0));
      }
      const { hash } = writer.finish();
      return { hash, size: offset };
    } catch (error) {
      writer.discard();
      throw error;
    }
  }
}
