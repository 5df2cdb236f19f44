/**
 * Restoring a snapshot: the tree is built in a temporary directory beside the destination (a name the file
 * service hides and refuses), every file copied from its blob with the blob's SHA-256 checked as it is read, and
 * only a complete, verified tree is renamed into place. Any failure (a corrupt or missing blob, a full disk)
 * removes the temporary tree and leaves the destination as it was.
 *
 * Every directory of the new tree is created with `mkdirat` and opened with `O_NOFOLLOW | O_DIRECTORY` relative
 * to its parent's descriptor, files are created `O_EXCL | O_NOFOLLOW`, so neither a hostile manifest (an imported
 * one) nor a process racing the restore can make it write outside the temporary tree. Modes are restored without
 * the setuid and setgid bits (the daemon may run as root; the sticky bit is kept); owners are not restored.
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  closeFd,
  fchmod,
  fsync,
  futimens,
  mkdirAt,
  O,
  openAt,
  pread,
  renameAt,
  symlinkAt,
  writeAll,
} from "../ffi/fs.ts";
import { removeTree, swapIntoPlace } from "../_fs_ops.ts";
import { lstatAtOrNull, tempName } from "../_file_paths.ts";
import { DaemonRequestError } from "../process_table.ts";
import type { Manifest } from "./_manifest.ts";
import { CHUNK, type SnapshotStore } from "./store.ts";

/** What a restore wrote. */
export interface RestoreCounts {
  fileCount: number;
  dirCount: number;
  symlinkCount: number;
  totalSize: number;
}

const MODE_MASK = 0o1777;

/** Milliseconds as the seconds `futimens` takes, nudged half a microsecond so float error never loses a ms. */
function seconds(ms: number): number {
  return (ms + 0.0005) / 1000;
}
const YIELD_BYTES = 16 * 1024 * 1024;

/** Open directories of the tree being built, by relative path (the last one kept open). */
class Directories {
  readonly #top: number;
  #last: { key: string; fd: number } | null = null;

  constructor(top: number) {
    this.#top = top;
  }

  open(key: string): number {
    if (key === "") return this.#top;
    if (this.#last?.key === key) return this.#last.fd;
    let current = this.#top;
    try {
      for (const part of key.split("/")) {
        const next = openAt(current, part, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
        if (current !== this.#top) closeFd(current);
        current = next;
      }
    } catch (error) {
      if (current !== this.#top) closeFd(current);
      throw error;
    }
    this.close();
    this.#last = { key, fd: current };
    return current;
  }

  close(): void {
    if (this.#last) closeFd(this.#last.fd);
    this.#last = null;
  }
}

/** Copy blob `hash` into the new file `out`, checking size and digest. */
async function copyBlob(
  store: SnapshotStore,
  hash: string,
  size: number,
  out: number,
  path: string,
  buffer: Uint8Array,
): Promise<void> {
  const blob = store.openBlob(hash);
  try {
    const digest = createHash("sha256");
    let offset = 0;
    while (true) {
      const n = pread(blob.fd, buffer, offset);
      if (n === 0) break;
      const piece = buffer.subarray(0, n);
      digest.update(piece);
      writeAll(out, piece);
      offset += n;
      if (offset % YIELD_BYTES < n) await new Promise((r) => setTimeout(r, 0));
    }
    const actual = digest.digest("hex");
    if (actual !== hash || offset !== size) {
      throw new DaemonRequestError(
        "EINTEGRITY",
        `Snapshot blob ${hash} of '${path}' is corrupt: it holds ${offset} bytes with SHA-256 ${actual}` +
          ` (expected ${size} bytes); nothing was restored`,
      );
    }
  } finally {
    closeFd(blob.fd);
  }
}

/** Build the manifest's tree beneath the directory `top`. */
async function build(
  store: SnapshotStore,
  manifest: Manifest,
  top: number,
): Promise<RestoreCounts> {
  const dirs = new Directories(top);
  const later: { path: string; mode: number; mtime: number }[] = [];
  const buffer = new Uint8Array(CHUNK);
  const counts: RestoreCounts = { fileCount: 0, dirCount: 0, symlinkCount: 0, totalSize: 0 };
  let sinceYield = 0;
  try {
    for (const entry of manifest.entries) {
      const slash = entry.path.lastIndexOf("/");
      const parent = dirs.open(slash < 0 ? "" : entry.path.slice(0, slash));
      const name = entry.path.slice(slash + 1);
      if (entry.type === "dir") {
        mkdirAt(parent, name, 0o700);
        later.push({ path: entry.path, mode: entry.mode, mtime: entry.mtime });
        counts.dirCount++;
      } else if (entry.type === "symlink") {
        symlinkAt(entry.target, parent, name);
        counts.symlinkCount++;
      } else {
        const fd = openAt(parent, name, O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, 0o600);
        try {
          await copyBlob(store, entry.sha256, entry.size, fd, entry.path, buffer);
          fchmod(fd, entry.mode & MODE_MASK);
          futimens(fd, seconds(entry.mtime));
        } finally {
          closeFd(fd);
        }
        counts.fileCount++;
        counts.totalSize += entry.size;
      }
      if (++sinceYield >= 256) {
        sinceYield = 0;
        await new Promise((r) => setTimeout(r, 0));
      }
    }
    dirs.close();
    // Deepest first, so a read-only directory does not block setting its children.
    later.sort((a, b) => b.path.split("/").length - a.path.split("/").length);
    for (const { path, mode, mtime } of later) {
      const slash = path.lastIndexOf("/");
      const parent = dirs.open(slash < 0 ? "" : path.slice(0, slash));
      const fd = openAt(parent, path.slice(slash + 1), O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
      try {
        fchmod(fd, mode & MODE_MASK);
        futimens(fd, seconds(mtime));
      } finally {
        closeFd(fd);
      }
    }
    return counts;
  } finally {
    dirs.close();
  }
}

/**
 * Restore `manifest` as `name` in the directory `dirFd`: built beside it, then renamed into place. An existing
 * `name` is refused with `EEXIST` unless `overwrite`, which replaces it (file, symlink or whole directory) in one
 * rename; the old tree is removed afterwards.
 */
export async function restoreInto(
  store: SnapshotStore,
  manifest: Manifest,
  dirFd: number,
  name: string,
  overwrite: boolean,
  path: string,
): Promise<RestoreCounts> {
  const existing = lstatAtOrNull(dirFd, name);
  if (existing && !overwrite) {
    throw new DaemonRequestError(
      "EEXIST",
      `Cannot restore to '${path}': it exists (pass overwrite to replace it)`,
      { path },
    );
  }
  const temp = tempName(name, "part");
  mkdirAt(dirFd, temp, 0o700);
  let placed = false;
  let top = -1;
  try {
    top = openAt(dirFd, temp, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
    const counts = await build(store, manifest, top);
    fchmod(top, manifest.header.mode & MODE_MASK);
    futimens(top, seconds(manifest.header.mtime));
    if (lstatAtOrNull(dirFd, name) === null) {
      renameAt(dirFd, temp, dirFd, name);
    } else if (!overwrite) {
      throw new DaemonRequestError(
        "EEXIST",
        `Cannot restore to '${path}': it appeared while the snapshot was restored`,
        { path },
      );
    } else {
      const old = swapIntoPlace(dirFd, temp, name);
      placed = true;
      try {
        removeTree(dirFd, old);
      } catch {
        // The new tree is in place; what is left of the old one keeps its hidden temporary name.
      }
    }
    placed = true;
    try {
      await fsync(dirFd);
    } catch {
      // best effort
    }
    return counts;
  } finally {
    closeFd(top);
    if (!placed) {
      try {
        removeTree(dirFd, temp);
      } catch {
        // best effort
      }
    }
  }
}
