/**
 * The daemon's tar packer for directory downloads: walks a tree from a directory descriptor, opening each
 * subdirectory and file relative to its parent's descriptor with `O_NOFOLLOW` (files also `O_NONBLOCK`, and only
 * regular files are read), so a directory swapped for a symlink while the tree is packed cannot make it read
 * outside the tree. Symlinks are stored as links, never followed; FIFOs, sockets and devices are skipped.
 *
 * @module
 */

import { archiveStream, TarWriter } from "./_tar.ts";
import {
  closeFd,
  FsError,
  fstat,
  fstatAt,
  O,
  openAt,
  pread,
  readDirFd,
  readlinkAt,
} from "./ffi/fs.ts";

const READ_CHUNK = 256 * 1024;
const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Pack the tree beneath the directory descriptor `dirFd` as a tar stream. The stream owns `dirFd` and closes it
 * when it ends or is cancelled.
 *
 * @example Stream a tree
 * ```ts ignore
 * const stream = packBeneath(openBeneath(rootFd, "tree", O.RDONLY | O.DIRECTORY));
 * ```
 *
 * @param dirFd The top directory (taken over).
 * @param skip Names to leave out (tested against each entry's own name).
 * @returns The archive bytes.
 */
export function packBeneath(dirFd: number, skip?: RegExp): ReadableStream<Uint8Array> {
  const tar = new TarWriter();
  let cancelled = false;

  async function walk(fd: number, relDir: string): Promise<void> {
    const names = readDirFd(fd).map((e) => e.raw);
    const entries: { name: string; raw: Uint8Array }[] = [];
    for (const raw of names) {
      let name: string;
      try {
        name = decoder.decode(raw);
      } catch {
        throw new Error(`Cannot pack an entry of '${relDir || "."}': its name is not valid UTF-8`);
      }
      if (skip?.test(name)) continue;
      entries.push({ name, raw });
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const { name } of entries) {
      if (cancelled) return;
      const rel = relDir === "" ? name : `${relDir}/${name}`;
      let info;
      try {
        info = fstatAt(fd, name);
      } catch (error) {
        if (error instanceof FsError && error.code === "ENOENT") continue; // removed meanwhile
        throw error;
      }
      const mtime = info.mtimeMs / 1000;
      if (info.kind === "symlink") {
        const target = readlinkAt(fd, name);
        let text: string | Uint8Array;
        try {
          text = decoder.decode(target);
        } catch {
          text = target;
        }
        await tar.addEntry({
          path: rel,
          type: "symlink",
          size: 0,
          mode: info.mode & 0o777,
          mtime,
          linkTarget: text,
        });
      } else if (info.kind === "directory") {
        const sub = openAt(fd, name, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
        try {
          await tar.addEntry({
            path: rel,
            type: "directory",
            size: 0,
            mode: info.mode & 0o7777,
            mtime,
          });
          await walk(sub, rel);
        } finally {
          closeFd(sub);
        }
      } else if (info.kind === "file") {
        const file = openAt(fd, name, O.RDONLY | O.NONBLOCK | O.NOFOLLOW);
        try {
          const opened = fstat(file);
          if (opened.kind !== "file") continue; // swapped for something else meanwhile
          let offset = 0;
          const size = opened.size;
          const body = new ReadableStream<Uint8Array>({
            pull(controller) {
              if (offset >= size) return controller.close();
              const buffer = new Uint8Array(Math.min(READ_CHUNK, size - offset));
              const n = pread(file, buffer, offset);
              if (n === 0) {
                throw new Error(
                  `File '${rel}' shrank while it was being packed (${offset} of ${size} bytes)`,
                );
              }
              offset += n;
              controller.enqueue(buffer.subarray(0, n));
            },
          }, { highWaterMark: 0 });
          await tar.addEntry({
            path: rel,
            type: "file",
            size,
            mode: opened.mode & 0o7777,
            mtime: opened.mtimeMs / 1000,
          }, body);
        } finally {
          closeFd(file);
        }
      }
    }
  }

  async function run(): Promise<void> {
    try {
      await walk(dirFd, "");
      await tar.close();
    } catch (error) {
      await tar.abort(error);
    } finally {
      closeFd(dirFd);
    }
  }

  return archiveStream(tar, {
    write: run,
    onCancel: (started) => {
      cancelled = true;
      if (!started) closeFd(dirFd);
    },
  });
}
