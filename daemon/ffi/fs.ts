// Copyright 2026 the SandD authors. MIT license.
/**
 * Descriptor-relative file-system primitives over libc (Linux only: see {@linkcode FS_UNSUPPORTED}): open a path beneath a directory descriptor
 * without following any symlink (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` where the kernel has it,
 * else a component-by-component `openat(O_NOFOLLOW)` walk), and act on descriptors (`fchmod`, `fstat`,
 * `renameat`, `unlinkat`, `mkdirat`, `symlinkat`, `readlinkat`, `linkat`, `pread`, `write`, `fsync`).
 *
 * Every call is synchronous on the calling thread except the flushes (`fsync`, `fdatasync`), which run on a
 * worker thread. Failures throw {@linkcode FsError} carrying the errno's name (`ENOENT`, `ELOOP`, ...).
 *
 * The caller owns every descriptor these functions return and must {@linkcode closeFd} it. Hold
 * {@linkcode acquireFs} / {@linkcode releaseFs} around use, so the library stays loaded.
 *
 * Over 600 lines on purpose: one concept (the typed file-system binding), about twenty small wrappers, most of
 * the length their JSDoc; splitting them would scatter one table of calls over several files.
 *
 * @module
 */

import { acquireLibc, errno, type Libc, releaseLibc } from "./libc.ts";

const ARM64 = Deno.build.arch === "aarch64";
const IS_LINUX = Deno.build.os === "linux";

/**
 * Why this binding refuses every call on this OS, or `null` where it works (Linux). Its flag values, `statx`,
 * `getdents64` and `openat2` are Linux's, and calling a Linux syscall number elsewhere would run another call, so
 * on any other OS (macOS included) every wrapper throws an error with this message and code `UNSUPPORTED`
 * instead. The daemon prints it at start.
 *
 * @example Warn at start
 * ```ts
 * import { FS_UNSUPPORTED } from "./fs.ts";
 * if (FS_UNSUPPORTED !== null) console.error(`warning: ${FS_UNSUPPORTED}`);
 * ```
 */
export const FS_UNSUPPORTED: string | null = IS_LINUX
  ? null
  : `File operations are implemented and verified on Linux only (Linux open flags, statx, ` +
    `getdents64, openat2); this daemon runs on ${Deno.build.os}, so it refuses them`;

/** `open` flags (Linux values; `O_DIRECTORY` and `O_NOFOLLOW` differ on arm64). */
export const O = {
  RDONLY: 0,
  WRONLY: 1,
  RDWR: 2,
  CREAT: 0o100,
  EXCL: 0o200,
  NOCTTY: 0o400,
  TRUNC: 0o1000,
  NONBLOCK: 0o4000,
  DIRECTORY: ARM64 ? 0o40000 : 0o200000,
  NOFOLLOW: ARM64 ? 0o100000 : 0o400000,
  CLOEXEC: 0o2000000,
  PATH: 0o10000000,
  TMPFILE: 0o20000000 | (ARM64 ? 0o40000 : 0o200000),
} as const;

/** `AT_*` flags and the current-directory descriptor. */
export const AT = {
  FDCWD: -100,
  SYMLINK_NOFOLLOW: 0x100,
  REMOVEDIR: 0x200,
  SYMLINK_FOLLOW: 0x400,
  EMPTY_PATH: 0x1000,
} as const;

const RESOLVE_NO_SYMLINKS = 0x04;
const RESOLVE_BENEATH = 0x08;
const SYS_OPENAT2 = 437;
const SYS_GETDENTS64 = ARM64 ? 61 : 217;

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  5: "EIO",
  6: "ENXIO",
  7: "E2BIG",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  16: "EBUSY",
  17: "EEXIST",
  18: "EXDEV",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  26: "ETXTBSY",
  27: "EFBIG",
  28: "ENOSPC",
  29: "ESPIPE",
  30: "EROFS",
  31: "EMLINK",
  36: "ENAMETOOLONG",
  38: "ENOSYS",
  39: "ENOTEMPTY",
  40: "ELOOP",
  95: "EOPNOTSUPP",
  122: "EDQUOT",
};

/**
 * A libc file operation failed. `code` is the errno's name (`"ENOENT"`, `"ELOOP"`, ...; `"EUNKNOWN"` for one
 * not in the table), `errno` its number.
 *
 * @example Catch a missing file
 * ```ts ignore
 * try {
 *   openBeneath(root, "missing", O.RDONLY);
 * } catch (error) {
 *   if (error instanceof FsError && error.code === "ENOENT") console.log("not there");
 * }
 * ```
 */
export class FsError extends Error {
  /** The errno's name. */
  readonly code: string;
  /** The errno number. */
  readonly errno: number;
  /** The call that failed. */
  readonly syscall: string;

  /**
   * Make an error for a failed call.
   *
   * @param syscall The call that failed.
   * @param errnoValue The errno it set.
   * @param what What it was called on (a name), for the message.
   */
  constructor(syscall: string, errnoValue: number, what = "") {
    const code = ERRNO_NAMES[errnoValue] ?? "EUNKNOWN";
    super(
      `${syscall}${what === "" ? "" : ` ${JSON.stringify(what)}`} failed: ${code} (${errnoValue})`,
    );
    this.name = "FsError";
    this.code = code;
    this.errno = errnoValue;
    this.syscall = syscall;
  }
}

let libc: Libc | null = null;
let users = 0;
/** `true`/`false` once known whether the kernel has `openat2`. */
let hasOpenat2: boolean | null = null;

/**
 * Load the binding (first user) or count one more user. Pair with {@linkcode releaseFs}.
 *
 * @example Use
 * ```ts ignore
 * acquireFs();
 * try {
 *   closeFd(openBeneath(AT.FDCWD, "x", O.RDONLY));
 * } finally {
 *   releaseFs();
 * }
 * ```
 */
export function acquireFs(): void {
  if (users++ === 0) libc = acquireLibc();
}

/**
 * One user is done with the binding; the last one releases libc.
 *
 * @example Release
 * ```ts ignore
 * acquireFs();
 * releaseFs();
 * ```
 */
export function releaseFs(): void {
  if (users === 0) return;
  if (--users === 0) {
    libc = null;
    releaseLibc();
  }
}

function lib(): Libc {
  if (FS_UNSUPPORTED !== null) {
    throw Object.assign(new Error(FS_UNSUPPORTED), { code: "UNSUPPORTED" });
  }
  if (libc === null) {
    throw new Error("The file-system binding is not acquired (call acquireFs first)");
  }
  return libc;
}

function need<T>(fn: T | null | undefined, name: string): T {
  if (fn === null || fn === undefined) throw new FsError(name, 38);
  return fn;
}

const encoder = new TextEncoder();

/** A NUL-terminated copy of a name or path (a string is encoded as UTF-8, bytes are kept). */
function cString(value: string | Uint8Array): Uint8Array<ArrayBuffer> {
  const bytes = typeof value === "string" ? encoder.encode(value) : value;
  if (bytes.includes(0)) throw new FsError("path", 22, String(value));
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

function check(result: number | bigint, syscall: string, what?: string | Uint8Array): number {
  const n = Number(result);
  if (n < 0) {
    throw new FsError(syscall, errno(), typeof what === "string" ? what : what ? "<bytes>" : "");
  }
  return n;
}

/**
 * Close a descriptor; errors are ignored (the descriptor is gone either way on Linux).
 *
 * @example Close
 * ```ts ignore
 * closeFd(fd);
 * ```
 *
 * @param fd The descriptor.
 */
export function closeFd(fd: number): void {
  if (fd >= 0) lib().close(fd);
}

/**
 * Open `name` (one path component or a relative path, without symlinks being followed) relative to `dirFd`.
 *
 * @example Open a file in a directory
 * ```ts ignore
 * const fd = openAt(dirFd, "file.txt", O.RDONLY | O.NOFOLLOW);
 * ```
 *
 * @param dirFd The directory descriptor (or {@linkcode AT.FDCWD}).
 * @param name The name.
 * @param flags `O.*` flags; `O_CLOEXEC` is always added.
 * @param mode Permission bits for a created file.
 * @returns The new descriptor.
 * @throws {FsError} On failure.
 */
export function openAt(dirFd: number, name: string | Uint8Array, flags: number, mode = 0): number {
  const openat = need(lib().openat, "openat");
  return check(openat(dirFd, cString(name), flags | O.CLOEXEC, mode), "openat", name);
}

/**
 * Open `path` beneath the directory `dirFd`, resolved once and without following any symlink: `openat2` with
 * `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` where the kernel has it (checked at the first call), else a walk that
 * opens each directory component with `O_NOFOLLOW | O_DIRECTORY` relative to the one before. The path must be
 * relative, without `.` or `..` components; `""` opens `dirFd`'s directory itself (with `flags`).
 *
 * A symlink anywhere in the path fails with `ELOOP`; a component that is not a directory with `ENOTDIR`; `..`
 * or an absolute path with `EXDEV`.
 *
 * @example Open a file beneath a root
 * ```ts ignore
 * const root = openAt(AT.FDCWD, "/srv/root", O.RDONLY | O.DIRECTORY);
 * const fd = openBeneath(root, "sub/file.txt", O.RDONLY | O.NONBLOCK);
 * ```
 *
 * @param dirFd The directory to stay beneath.
 * @param path The relative path.
 * @param flags `O.*` flags for the last component (`O_NOFOLLOW` and `O_CLOEXEC` are added).
 * @param mode Permission bits for a created file.
 * @returns The new descriptor.
 * @throws {FsError} On failure.
 */
export function openBeneath(dirFd: number, path: string, flags: number, mode = 0): number {
  const parts = path === "" ? [] : path.split("/");
  if (path.startsWith("/") || parts.some((p) => p === "" || p === "." || p === "..")) {
    throw new FsError("openBeneath", 18, path);
  }
  const all = flags | O.NOFOLLOW | O.CLOEXEC;
  if (parts.length === 0) return openAt(dirFd, ".", all & ~O.NOFOLLOW, mode);
  if (hasOpenat2 !== false) {
    const how = new BigUint64Array([
      BigInt(all),
      BigInt((all & O.CREAT) !== 0 || (all & O.TMPFILE) === O.TMPFILE ? mode : 0),
      BigInt(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS),
    ]);
    const fd = Number(
      need(lib().syscall_openat2, "openat2")(
        BigInt(SYS_OPENAT2),
        BigInt(dirFd),
        cString(path),
        how,
        24n,
      ),
    );
    if (fd >= 0) {
      hasOpenat2 = true;
      return fd;
    }
    const e = errno();
    if (e === 20) {
      // ENOTDIR also stands for a symlink opened with O_DIRECTORY | O_NOFOLLOW: let the walk tell which.
      hasOpenat2 = true;
      return walkBeneath(dirFd, parts, all, mode);
    }
    if (e !== 38 && e !== 1 /* EPERM from a seccomp filter */) {
      hasOpenat2 = true;
      throw new FsError("openat2", e, path);
    }
    if (hasOpenat2 === true) throw new FsError("openat2", e, path);
    hasOpenat2 = false;
  }
  return walkBeneath(dirFd, parts, all, mode);
}

/** The `openat` walk behind {@linkcode openBeneath} (also used directly by tests). */
export function walkBeneath(dirFd: number, parts: string[], flags: number, mode: number): number {
  let current = dirFd;
  try {
    for (let i = 0; i < parts.length - 1; i++) {
      let next: number;
      try {
        next = openAt(current, parts[i]!, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
      } catch (error) {
        // O_DIRECTORY wins over O_NOFOLLOW: a symlink reports ENOTDIR. Say ELOOP, as openat2 does.
        if ((error as FsError).code === "ENOTDIR" && isSymlinkAt(current, parts[i]!)) {
          throw new FsError("openat", 40, parts[i]!);
        }
        throw error;
      }
      if (current !== dirFd) closeFd(current);
      current = next;
    }
    const last = parts[parts.length - 1]!;
    try {
      return openAt(current, last, flags | O.NOFOLLOW, mode);
    } catch (error) {
      if ((error as FsError).code === "ENOTDIR" && isSymlinkAt(current, last)) {
        throw new FsError("openat", 40, last);
      }
      throw error;
    }
  } finally {
    if (current !== dirFd) closeFd(current);
  }
}

function isSymlinkAt(dirFd: number, name: string): boolean {
  try {
    return fstatAt(dirFd, name).kind === "symlink";
  } catch {
    return false;
  }
}

/**
 * Whether {@linkcode openBeneath} uses `openat2` (`null` until the first call decided it).
 *
 * @example Check
 * ```ts ignore
 * console.log(usesOpenat2());
 * ```
 *
 * @returns The answer.
 */
export function usesOpenat2(): boolean | null {
  return hasOpenat2;
}

/** The kind of a file, from its mode. */
export type FileKind = "file" | "directory" | "symlink" | "fifo" | "socket" | "char" | "block";

/** What {@linkcode fstat} / {@linkcode fstatAt} return. */
export interface FileStat {
  /** Kind. */
  kind: FileKind;
  /** Full mode (type and permission bits). */
  mode: number;
  /** Size in bytes. */
  size: number;
  /** Owner. */
  uid: number;
  /** Group. */
  gid: number;
  /** Modification time, ms since the epoch. */
  mtimeMs: number;
  /** Device (major << 32 | minor as a string key) and inode: identity of the file. */
  id: string;
  /**
   * Status change time as `seconds.nanoseconds` (`stx_ctime`): the kernel sets it on every change of the file's
   * content or metadata and nothing can set it back, so an equal value means an unchanged file (compare only).
   */
  ctime: string;
}

const KINDS: Record<number, FileKind> = {
  0o100000: "file",
  0o040000: "directory",
  0o120000: "symlink",
  0o010000: "fifo",
  0o140000: "socket",
  0o020000: "char",
  0o060000: "block",
};

const STATX_BASIC = 0x7ff;

function statx(dirFd: number, name: string | Uint8Array, flags: number): FileStat {
  const buffer = new Uint8Array(256);
  const fn = need(lib().statx, "statx");
  check(fn(dirFd, cString(name), flags, STATX_BASIC, buffer), "statx", name);
  const view = new DataView(buffer.buffer);
  const mode = view.getUint16(28, true);
  return {
    kind: KINDS[mode & 0o170000] ?? "file",
    mode,
    size: Number(view.getBigUint64(40, true)),
    uid: view.getUint32(20, true),
    gid: view.getUint32(24, true),
    mtimeMs: Number(view.getBigInt64(112, true)) * 1000 +
      Math.floor(view.getUint32(120, true) / 1e6),
    id: `${view.getUint32(136, true)}:${view.getUint32(140, true)}:${view.getBigUint64(32, true)}`,
    ctime: `${view.getBigInt64(96, true)}.${view.getUint32(104, true)}`,
  };
}

/**
 * The status of an open descriptor.
 *
 * @example Refuse what is not a regular file
 * ```ts ignore
 * if (fstat(fd).kind !== "file") throw new Error("not a file");
 * ```
 *
 * @param fd The descriptor.
 * @returns Its status.
 * @throws {FsError} On failure.
 */
export function fstat(fd: number): FileStat {
  return statx(fd, "", AT.EMPTY_PATH);
}

/**
 * The status of `name` in the directory `dirFd`, not following a symlink there.
 *
 * @example Look at an entry
 * ```ts ignore
 * const info = fstatAt(dirFd, "entry");
 * ```
 *
 * @param dirFd The directory.
 * @param name One name in it.
 * @returns Its status.
 * @throws {FsError} On failure (`ENOENT` when missing).
 */
export function fstatAt(dirFd: number, name: string | Uint8Array): FileStat {
  return statx(dirFd, name, AT.SYMLINK_NOFOLLOW);
}

/**
 * Set the permission bits of an open file.
 *
 * @example Make a file private
 * ```ts ignore
 * fchmod(fd, 0o600);
 * ```
 *
 * @param fd The descriptor.
 * @param mode The bits.
 * @throws {FsError} On failure.
 */
export function fchmod(fd: number, mode: number): void {
  check(need(lib().fchmod, "fchmod")(fd, mode), "fchmod");
}

/**
 * Set the owner of an open file.
 *
 * @example Give a file to uid 65534
 * ```ts ignore
 * fchown(fd, 65534, 65534);
 * ```
 *
 * @param fd The descriptor.
 * @param uid New owner.
 * @param gid New group.
 * @throws {FsError} On failure.
 */
export function fchown(fd: number, uid: number, gid: number): void {
  check(need(lib().fchown, "fchown")(fd, uid, gid), "fchown");
}

/**
 * Cut or extend an open file to `size` bytes.
 *
 * @example Empty a file
 * ```ts ignore
 * ftruncate(fd, 0);
 * ```
 *
 * @param fd The descriptor.
 * @param size New size.
 * @throws {FsError} On failure.
 */
export function ftruncate(fd: number, size: number): void {
  check(need(lib().ftruncate, "ftruncate")(fd, BigInt(size)), "ftruncate");
}

/**
 * Set the access and modification times of an open file.
 *
 * @example Set the mtime to the epoch
 * ```ts ignore
 * futimens(fd, 0);
 * ```
 *
 * @param fd The descriptor.
 * @param mtimeSeconds Modification (and access) time, seconds since the epoch (may be fractional).
 * @throws {FsError} On failure.
 */
export function futimens(fd: number, mtimeSeconds: number): void {
  const seconds = Math.floor(mtimeSeconds);
  const nanos = Math.floor((mtimeSeconds - seconds) * 1e9);
  const times = new BigInt64Array([BigInt(seconds), BigInt(nanos), BigInt(seconds), BigInt(nanos)]);
  check(need(lib().futimens, "futimens")(fd, times), "futimens");
}

/**
 * Flush an open file (data and metadata) to disk, off the main thread.
 *
 * @example Flush
 * ```ts ignore
 * await fsync(fd);
 * ```
 *
 * @param fd The descriptor.
 * @param dataOnly Use `fdatasync` (skip metadata not needed to read the data back).
 * @throws {FsError} On failure.
 */
export async function fsync(fd: number, dataOnly = false): Promise<void> {
  const l = lib();
  const fn = need(dataOnly ? l.fdatasync : l.fsync, dataOnly ? "fdatasync" : "fsync");
  const result = await fn(fd);
  // errno belongs to the worker thread that ran the call: report EIO, the usual cause.
  if (result < 0) throw new FsError(dataOnly ? "fdatasync" : "fsync", 5);
}

/**
 * Flush the whole file system that holds `fd` (`syncfs`), off the main thread: one call instead of an `fsync` per
 * file when many files were written (the snapshot store's blobs).
 *
 * @example Flush a store
 * ```ts ignore
 * await syncFs(storeFd);
 * ```
 *
 * @param fd Any descriptor on the file system.
 * @throws {FsError} On failure (`ENOSYS` where libc has no `syncfs`).
 */
export async function syncFs(fd: number): Promise<void> {
  const result = await need(lib().syncfs, "syncfs")(fd);
  if (result < 0) throw new FsError("syncfs", 5);
}

/**
 * Rename `from` in `fromDir` to `to` in `toDir` (replacing a file there), names not followed.
 *
 * @example Rename within a directory
 * ```ts ignore
 * renameAt(dirFd, ".tmp", dirFd, "final");
 * ```
 *
 * @param fromDir Source directory.
 * @param from Source name.
 * @param toDir Target directory.
 * @param to Target name.
 * @throws {FsError} On failure.
 */
export function renameAt(
  fromDir: number,
  from: string | Uint8Array,
  toDir: number,
  to: string | Uint8Array,
): void {
  check(
    need(lib().renameat, "renameat")(fromDir, cString(from), toDir, cString(to)),
    "renameat",
    from,
  );
}

/**
 * Remove the name `name` from `dirFd` (a directory, which must be empty, with `directory`).
 *
 * @example Remove a file
 * ```ts ignore
 * unlinkAt(dirFd, "old.txt");
 * ```
 *
 * @param dirFd The directory.
 * @param name The name.
 * @param directory Remove an empty directory.
 * @throws {FsError} On failure.
 */
export function unlinkAt(dirFd: number, name: string | Uint8Array, directory = false): void {
  check(
    need(lib().unlinkat, "unlinkat")(dirFd, cString(name), directory ? AT.REMOVEDIR : 0),
    "unlinkat",
    name,
  );
}

/**
 * Create the directory `name` in `dirFd`.
 *
 * @example Make a directory
 * ```ts ignore
 * mkdirAt(dirFd, "sub", 0o755);
 * ```
 *
 * @param dirFd The parent.
 * @param name The name.
 * @param mode Permission bits (before the umask).
 * @throws {FsError} On failure (`EEXIST` if the name is taken).
 */
export function mkdirAt(dirFd: number, name: string | Uint8Array, mode: number): void {
  check(need(lib().mkdirat, "mkdirat")(dirFd, cString(name), mode), "mkdirat", name);
}

/**
 * Create the symlink `name` in `dirFd` pointing at `target` (stored as is, never followed here).
 *
 * @example Make a link
 * ```ts ignore
 * symlinkAt("../x", dirFd, "link");
 * ```
 *
 * @param target The link's content.
 * @param dirFd The directory.
 * @param name The link's name.
 * @throws {FsError} On failure.
 */
export function symlinkAt(
  target: string | Uint8Array,
  dirFd: number,
  name: string | Uint8Array,
): void {
  check(
    need(lib().symlinkat, "symlinkat")(cString(target), dirFd, cString(name)),
    "symlinkat",
    name,
  );
}

/**
 * The content of the symlink `name` in `dirFd`.
 *
 * @example Read a link
 * ```ts ignore
 * const target = readlinkAt(dirFd, "link");
 * ```
 *
 * @param dirFd The directory.
 * @param name The link's name.
 * @returns Its target as bytes.
 * @throws {FsError} On failure (`EINVAL` if it is not a symlink).
 */
export function readlinkAt(dirFd: number, name: string | Uint8Array): Uint8Array {
  const buffer = new Uint8Array(4096);
  const n = check(
    need(lib().readlinkat, "readlinkat")(dirFd, cString(name), buffer, BigInt(buffer.length)),
    "readlinkat",
    name,
  );
  return buffer.slice(0, n);
}

/**
 * Give the open file `fd` (an `O_TMPFILE` file) the name `name` in `dirFd`; fails with `EEXIST` if taken.
 *
 * @example Publish a temporary file
 * ```ts ignore
 * const fd = openAt(dirFd, ".", O.TMPFILE | O.WRONLY, 0o600);
 * linkFd(fd, dirFd, ".staging");
 * ```
 *
 * @param fd The open file.
 * @param dirFd The directory to link it into.
 * @param name The new name.
 * @throws {FsError} On failure.
 */
export function linkFd(fd: number, dirFd: number, name: string): void {
  const linkat = need(lib().linkat, "linkat");
  // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the /proc magic link refers to the open file itself, not a path.
  if (linkat(fd, cString(""), dirFd, cString(name), AT.EMPTY_PATH) === 0) return;
  const first = errno();
  if (first !== 2 && first !== 1) throw new FsError("linkat", first, name);
  check(
    linkat(AT.FDCWD, cString(`/proc/self/fd/${fd}`), dirFd, cString(name), AT.SYMLINK_FOLLOW),
    "linkat",
    name,
  );
}

/**
 * Read up to `buffer.length` bytes at `offset` of an open file.
 *
 * @example Read the start
 * ```ts ignore
 * const n = pread(fd, new Uint8Array(4096), 0);
 * ```
 *
 * @param fd The descriptor.
 * @param buffer Where to put the bytes.
 * @param offset File offset.
 * @returns The count read; 0 at end of file.
 * @throws {FsError} On failure.
 */
export function pread(fd: number, buffer: Uint8Array, offset: number): number {
  if (buffer.length === 0) return 0;
  const fn = need(lib().pread, "pread");
  return check(fn(fd, buffer, BigInt(buffer.length), BigInt(offset)), "pread");
}

/**
 * Write all of `bytes` to an open file at its current offset.
 *
 * @example Write
 * ```ts ignore
 * writeAll(fd, new TextEncoder().encode("hi"));
 * ```
 *
 * @param fd The descriptor.
 * @param bytes The bytes.
 * @throws {FsError} On failure (`ENOSPC`, ...).
 */
export function writeAll(fd: number, bytes: Uint8Array): void {
  const l = lib();
  for (let at = 0; at < bytes.length;) {
    const part = at === 0 ? bytes : bytes.subarray(at);
    const n = Number(l.write(fd, part, BigInt(part.length)));
    if (n < 0) {
      const e = errno();
      if (e === 4) continue; // EINTR
      throw new FsError("write", e);
    }
    at += n;
  }
}

/** One entry of a directory. */
export interface DirEntry {
  /** The name as bytes (names need not be UTF-8). */
  raw: Uint8Array;
  /** The name decoded as UTF-8 (lossy for names that are not). */
  name: string;
  /** The kind from the directory entry, or `null` when the file system does not say. */
  kind: FileKind | null;
}

const DT_KINDS: Record<number, FileKind> = {
  1: "fifo",
  2: "char",
  4: "directory",
  6: "block",
  8: "file",
  10: "symlink",
  12: "socket",
};

const decoder = new TextDecoder();

/**
 * The entries of an open directory (without `.` and `..`), read with `getdents64`.
 *
 * @example List
 * ```ts ignore
 * const dirFd = openBeneath(root, "sub", O.RDONLY | O.DIRECTORY);
 * for (const entry of readDirFd(dirFd)) console.log(entry.name);
 * ```
 *
 * @param fd A directory descriptor, read from its current position.
 * @returns The entries, in directory order.
 * @throws {FsError} On failure.
 */
export function readDirFd(fd: number): DirEntry[] {
  const buffer = new Uint8Array(64 * 1024);
  const view = new DataView(buffer.buffer);
  const out: DirEntry[] = [];
  while (true) {
    const n = check(
      need(lib().syscall_getdents64, "getdents64")(
        BigInt(SYS_GETDENTS64),
        BigInt(fd),
        buffer,
        BigInt(buffer.length),
      ),
      "getdents64",
    );
    if (n === 0) return out;
    for (let at = 0; at < n;) {
      const length = view.getUint16(at + 16, true);
      const type = view.getUint8(at + 18);
      let end = at + 19;
      while (buffer[end] !== 0) end++;
      const raw = buffer.slice(at + 19, end);
      at += length;
      if (
        (raw.length === 1 && raw[0] === 46) || (raw.length === 2 && raw[0] === 46 && raw[1] === 46)
      ) {
        continue;
      }
      out.push({ raw, name: decoder.decode(raw), kind: DT_KINDS[type] ?? null });
    }
  }
}
