/**
 * The remote file system requests (`stat`, `list`, `mkdir`, `remove`, `move`, `watch`), each resolving its path
 * once to a descriptor (see `_file_paths.ts`) and acting relative to it.
 *
 * @module
 */

import { resolve } from "node:path";
import type { RequestArgs } from "@sandd/protocol/messages";
import type { Link, StreamRoute } from "./_link.ts";
import { DaemonRequestError } from "./process_table.ts";
import {
  fileError,
  type FilePaths,
  lstatAtOrNull,
  type Resolved,
  TEMP_NAME,
  tempName,
} from "./_file_paths.ts";
import {
  acquireFs,
  closeFd,
  fchmod,
  type FileStat,
  FsError,
  fstat,
  fstatAt,
  mkdirAt,
  O,
  openAt,
  openBeneath,
  readDirFd,
  readlinkAt,
  releaseFs,
  renameAt,
  unlinkAt,
} from "./ffi/fs.ts";

/** A `list` answer stops growing past this many JSON characters (the text-frame limit is 4 MiB). */
const MAX_LIST_CHARS = 3 * 1024 * 1024;

function masked(mode: number): number {
  return mode & 0o777;
}

function closeQuietly(...fds: number[]): void {
  for (const fd of fds) closeFd(fd);
}

/**
 * Put `temp` at `name` (both in `dirFd`) where `name` exists: `name` is first renamed aside to a hidden temporary
 * name, which is returned for the caller to remove. If putting `temp` in place fails, the old entry is put back
 * (or, failing that, left under its temporary name) and the error is thrown.
 */
export function swapIntoPlace(dirFd: number, temp: string, name: string): string {
  const old = tempName(name, "old");
  renameAt(dirFd, name, dirFd, old);
  try {
    renameAt(dirFd, temp, dirFd, name);
  } catch (error) {
    try {
      renameAt(dirFd, old, dirFd, name);
    } catch {
      // left under the old name
    }
    throw error;
  }
  return old;
}

/** Remove `name` in `dirFd` and, if it is a directory, everything beneath it; nothing is followed. */
export function removeTree(dirFd: number, name: string | Uint8Array): void {
  const info = fstatAt(dirFd, name);
  if (info.kind !== "directory") return unlinkAt(dirFd, name);
  const fd = openAt(dirFd, name, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
  try {
    for (const entry of readDirFd(fd)) {
      const kind = entry.kind ?? fstatAt(fd, entry.raw).kind;
      if (kind === "directory") removeTree(fd, entry.raw);
      else unlinkAt(fd, entry.raw);
    }
  } finally {
    closeFd(fd);
  }
  unlinkAt(dirFd, name, true);
}

function typeOf(info: FileStat): "file" | "directory" | "symlink" | "other" {
  return info.kind === "file" || info.kind === "directory" || info.kind === "symlink"
    ? info.kind
    : "other";
}

function describeInfo(info: FileStat): Record<string, unknown> {
  return {
    type: typeOf(info),
    size: info.size,
    mode: info.mode & 0o7777,
    mtime: info.mtimeMs,
  };
}

/** The `stat` request. */
export function stat(paths: FilePaths, args: RequestArgs<"stat">): Record<string, unknown> {
  let fd = -1;
  try {
    const resolved = paths.resolve(args.path);
    // O_PATH opens nothing (a FIFO does not block); under a root a final symlink is described, not followed.
    fd = paths.open(resolved, O.PATH);
    const info = fstat(fd);
    return { ...describeInfo(info), uid: info.uid, gid: info.gid };
  } catch (error) {
    throw fileError(error, args.path, "stat", paths.confined);
  } finally {
    closeFd(fd);
  }
}

/** The `list` request. */
export function list(paths: FilePaths, args: RequestArgs<"list">): Record<string, unknown> {
  let topFd = -1;
  try {
    const resolved = paths.resolve(args.path);
    try {
      topFd = paths.open(resolved, O.RDONLY | O.DIRECTORY | O.NONBLOCK);
    } catch (error) {
      if (error instanceof FsError && error.code === "ENOTDIR") {
        throw new DaemonRequestError("ENOTDIR", `Cannot list '${args.path}': not a directory`, {
          path: args.path,
        });
      }
      throw error;
    }
    const entries: Record<string, unknown>[] = [];
    let chars = 0;
    const pending: string[] = [""];
    while (pending.length) {
      const rel = pending.shift()!;
      let dirFd: number;
      try {
        // Beneath the listed directory, no symlink followed on the way (rel has several components).
        dirFd = rel === "" ? topFd : openBeneath(topFd, rel, O.RDONLY | O.DIRECTORY | O.NONBLOCK);
      } catch {
        continue; // removed or replaced meanwhile
      }
      try {
        const names = readDirFd(dirFd).map((e) => e.name).filter((n) => !TEMP_NAME.test(n));
        names.sort();
        for (const name of names) {
          const path = rel === "" ? name : `${rel}/${name}`;
          const entryInfo = lstatAtOrNull(dirFd, name);
          if (!entryInfo) continue; // removed meanwhile
          const entry: Record<string, unknown> = { path, ...describeInfo(entryInfo) };
          if (entryInfo.kind === "symlink") {
            try {
              entry.target = new TextDecoder().decode(readlinkAt(dirFd, name));
            } catch {
              entry.target = "";
            }
          }
          chars += JSON.stringify(entry).length + 1;
          if (chars > MAX_LIST_CHARS) {
            throw new DaemonRequestError(
              "E2BIG",
              `Listing '${args.path}' exceeds ${MAX_LIST_CHARS} characters after ${entries.length} entries; list a narrower directory`,
              { path: args.path },
            );
          }
          entries.push(entry);
          if (args.recursive && entryInfo.kind === "directory") pending.push(path);
        }
      } finally {
        if (dirFd !== topFd) closeFd(dirFd);
      }
    }
    return { entries };
  } catch (error) {
    throw fileError(error, args.path, "list", paths.confined);
  } finally {
    closeFd(topFd);
  }
}

/** The `mkdir` request. */
export function mkdir(paths: FilePaths, args: RequestArgs<"mkdir">): Record<string, unknown> {
  let fd = -1;
  let dirFd = -1;
  try {
    const resolved = paths.resolve(args.path);
    const mode = masked(args.mode ?? 0o777);
    if (args.recursive) {
      fd = paths.makeDirectories(resolved, mode);
    } else {
      const entry = paths.entry(resolved);
      dirFd = entry.dirFd;
      mkdirAt(dirFd, entry.name, mode);
      fd = openAt(dirFd, entry.name, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
    }
    if (args.mode !== undefined) fchmod(fd, mode);
    return {};
  } catch (error) {
    if (error instanceof Error && (error as { rule?: string }).rule === "root" && !args.recursive) {
      // The root itself: it exists.
      const resolved = (() => {
        try {
          return paths.resolve(args.path);
        } catch {
          return null;
        }
      })();
      if (resolved?.parts.length === 0) {
        throw new DaemonRequestError(
          "EEXIST",
          `Cannot create directory '${args.path}': File exists`,
          {
            path: args.path,
          },
        );
      }
    }
    throw fileError(error, args.path, "create directory", paths.confined);
  } finally {
    closeQuietly(fd, dirFd);
  }
}

/** The `remove` request. */
export function remove(paths: FilePaths, args: RequestArgs<"remove">): Record<string, unknown> {
  let dirFd = -1;
  try {
    const resolved = paths.resolve(args.path);
    if (resolved.parts.length === 0) {
      throw new DaemonRequestError("POLICY", `Refusing to remove the root directory`, {
        path: args.path,
        rule: "root",
      });
    }
    const entry = paths.entry(resolved);
    dirFd = entry.dirFd;
    const info = fstatAt(dirFd, entry.name);
    if (info.kind !== "directory") unlinkAt(dirFd, entry.name);
    else if (args.recursive) removeTree(dirFd, entry.name);
    else unlinkAt(dirFd, entry.name, true);
    return {};
  } catch (error) {
    throw fileError(error, args.path, "remove", paths.confined);
  } finally {
    closeFd(dirFd);
  }
}

/** The `move` request. */
export function move(paths: FilePaths, args: RequestArgs<"move">): Record<string, unknown> {
  let which = args.from;
  let fromDir = -1;
  let toDir = -1;
  try {
    const from = paths.resolve(args.from);
    which = args.to;
    const to = paths.resolve(args.to);
    which = args.from;
    const source = paths.entry(from);
    fromDir = source.dirFd;
    which = args.to;
    const target = paths.entry(to);
    toDir = target.dirFd;
    which = args.from;
    renameAt(fromDir, source.name, toDir, target.name);
    return {};
  } catch (error) {
    throw fileError(error, which, "move", paths.confined);
  } finally {
    closeQuietly(fromDir, toDir);
  }
}

/**
 * Most watches open at once in this daemon. Each is an inotify instance, and Linux allows
 * `fs.inotify.max_user_instances` (128 by default) per user across all of that user's processes: without a cap a
 * controller could take them all from the daemon's user (root, usually).
 */
export const MAX_WATCHES = 32;
let openWatches = 0;

/** The `watch` request. */
export function watch(
  paths: FilePaths,
  args: RequestArgs<"watch">,
  link: Link,
): Record<string, unknown> {
  let watcher: Deno.FsWatcher;
  let fd = -1;
  try {
    const resolved: Resolved = paths.resolve(args.path);
    // Checked beneath the root without following symlinks; the watch itself is set by path (Deno's watcher
    // takes no descriptor), so a component swapped in between could redirect which names are reported (never
    // any content). SECURITY.md lists this.
    fd = paths.open(resolved, O.PATH);
    const kind = fstat(fd).kind;
    closeFd(fd);
    fd = -1;
    // O_PATH opens a final symlink itself; Deno's watcher would follow it (outside names reported).
    if (kind === "symlink" && paths.confined) {
      throw new DaemonRequestError(
        "POLICY",
        `Cannot watch '${args.path}': it is a symlink, which is not followed beneath the root directory`,
        { rule: "root", path: args.path },
      );
    }
    // A watch replacing one with the same id frees that one's place.
    if (openWatches - (link.routes.has(args.wid) ? 1 : 0) >= MAX_WATCHES) {
      throw new DaemonRequestError(
        "EMFILE",
        `Cannot watch '${args.path}': ${MAX_WATCHES} watches are open already (the daemon's limit)`,
        { path: args.path },
      );
    }
    watcher = Deno.watchFs(resolve(paths.base, ...resolved.parts), {
      recursive: args.recursive ?? true,
    });
  } catch (error) {
    closeFd(fd);
    throw fileError(error, args.path, "watch", paths.confined);
  }
  const route: StreamRoute = {
    onReset: () => stop(),
    onClose: () => stop(),
  };
  let stopped = false;
  acquireFs();
  openWatches++;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    openWatches--;
    releaseFs();
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
