// Copyright 2026 the SandD authors. MIT license.
/**
 * The one table of operating-system constants the daemon's FFI code uses, per platform: errno names and
 * messages, signal numbers, open/fcntl/poll flags, `posix_spawn` flags, ioctl requests, syscall numbers.
 *
 * Linux values are glibc's (x86_64 and aarch64 agree except where noted), macOS values are XNU's. Windows has no
 * C library constants here: its pseudo-terminal (`pty/_windows.ts`) talks to kernel32 only.
 *
 * @module
 */

/** Every errno name the daemon reports by name. */
export type ErrnoName =
  | "EPERM"
  | "ENOENT"
  | "ESRCH"
  | "EINTR"
  | "EIO"
  | "ENXIO"
  | "E2BIG"
  | "ENOEXEC"
  | "EBADF"
  | "ECHILD"
  | "EAGAIN"
  | "ENOMEM"
  | "EACCES"
  | "EFAULT"
  | "EBUSY"
  | "EEXIST"
  | "EXDEV"
  | "ENODEV"
  | "ENOTDIR"
  | "EISDIR"
  | "EINVAL"
  | "ENFILE"
  | "EMFILE"
  | "ENOTTY"
  | "ETXTBSY"
  | "EFBIG"
  | "ENOSPC"
  | "ESPIPE"
  | "EROFS"
  | "EMLINK"
  | "EPIPE"
  | "ENAMETOOLONG"
  | "ENOSYS"
  | "ENOTEMPTY"
  | "ELOOP"
  | "ENOTSUP";

/** The constants of one platform. */
export interface OsConstants {
  /** errno name → number. */
  readonly errno: Readonly<Record<ErrnoName, number>>;
  /** Signal number → name (the numbers `waitpid` reports). */
  readonly signals: Readonly<Record<number, Deno.Signal>>;
  /** Extra names for numbers already in `signals` (Linux `SIGPOLL`, `SIGUNUSED`). */
  readonly signalAliases: Readonly<Record<string, number>>;
  /** `open(2)` flags. */
  readonly open: {
    readonly O_RDONLY: number;
    readonly O_WRONLY: number;
    readonly O_RDWR: number;
    readonly O_CREAT: number;
    readonly O_EXCL: number;
    readonly O_NOCTTY: number;
    readonly O_TRUNC: number;
    readonly O_APPEND: number;
    readonly O_NONBLOCK: number;
    readonly O_DIRECTORY: number;
    readonly O_NOFOLLOW: number;
    readonly O_CLOEXEC: number;
  };
  /** `*at(2)` arguments. */
  readonly at: { readonly AT_FDCWD: number; readonly AT_SYMLINK_NOFOLLOW: number };
  /** `fcntl(2)` commands and flags (`F_SETPIPE_SZ` is Linux only: -1 elsewhere). */
  readonly fcntl: {
    readonly F_SETFD: number;
    readonly F_SETFL: number;
    readonly FD_CLOEXEC: number;
    readonly F_DUPFD_CLOEXEC: number;
    readonly F_SETPIPE_SZ: number;
  };
  /** `posix_spawnattr_setflags` flags (`POSIX_SPAWN_CLOEXEC_DEFAULT` is macOS only: 0 elsewhere). */
  readonly spawn: {
    readonly POSIX_SPAWN_SETPGROUP: number;
    readonly POSIX_SPAWN_SETSIGDEF: number;
    readonly POSIX_SPAWN_SETSIGMASK: number;
    readonly POSIX_SPAWN_SETSID: number;
    readonly POSIX_SPAWN_CLOEXEC_DEFAULT: number;
  };
  /** `ioctl(2)` requests. */
  readonly ioctl: { readonly TIOCSWINSZ: bigint; readonly TIOCSCTTY: bigint };
}

/** `poll(2)` event bits (the same on Linux and macOS). */
export const POLL = {
  POLLIN: 0x1,
  POLLOUT: 0x4,
  POLLERR: 0x8,
  POLLHUP: 0x10,
  POLLNVAL: 0x20,
} as const;

/** `waitpid(2)` option: do not block. */
export const WNOHANG = 1;
/** `access(2)` modes. */
export const ACCESS = { F_OK: 0, X_OK: 1 } as const;
/** Linux `eventfd(2)` flags. */
export const EVENTFD = { EFD_NONBLOCK: 0x800, EFD_CLOEXEC: 0x80000 } as const;
/** Linux syscall numbers (the same on x86_64 and aarch64, where new syscalls share one table). */
export const SYSCALL = { pidfd_open: 434n } as const;
/** Linux `openat2(2)` resolve flag: refuse any path that leaves the directory. */
export const RESOLVE_BENEATH = 0x08;

/** errno values Linux and macOS share (the historical Unix numbering, up to EPIPE). */
const COMMON_ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  ENOEXEC: 8,
  EBADF: 9,
  ECHILD: 10,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  ETXTBSY: 26,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EMLINK: 31,
  EPIPE: 32,
} as const;

/** Signal numbers Linux and macOS share. */
const COMMON_SIGNALS: Readonly<Record<number, Deno.Signal>> = {
  1: "SIGHUP",
  2: "SIGINT",
  3: "SIGQUIT",
  4: "SIGILL",
  5: "SIGTRAP",
  6: "SIGABRT",
  8: "SIGFPE",
  9: "SIGKILL",
  11: "SIGSEGV",
  13: "SIGPIPE",
  14: "SIGALRM",
  15: "SIGTERM",
  21: "SIGTTIN",
  22: "SIGTTOU",
  24: "SIGXCPU",
  25: "SIGXFSZ",
  26: "SIGVTALRM",
  27: "SIGPROF",
  28: "SIGWINCH",
};

const LINUX_ARM = Deno.build.arch === "aarch64";

/** glibc on Linux. */
export const LINUX: OsConstants = {
  errno: {
    ...COMMON_ERRNO,
    EAGAIN: 11,
    ENAMETOOLONG: 36,
    ENOSYS: 38,
    ENOTEMPTY: 39,
    ELOOP: 40,
    ENOTSUP: 95,
  },
  signals: {
    ...COMMON_SIGNALS,
    7: "SIGBUS",
    10: "SIGUSR1",
    12: "SIGUSR2",
    16: "SIGSTKFLT",
    17: "SIGCHLD",
    18: "SIGCONT",
    19: "SIGSTOP",
    20: "SIGTSTP",
    23: "SIGURG",
    29: "SIGIO",
    30: "SIGPWR",
    31: "SIGSYS",
  },
  signalAliases: { SIGPOLL: 29, SIGUNUSED: 31 },
  open: {
    O_RDONLY: 0,
    O_WRONLY: 0x1,
    O_RDWR: 0x2,
    O_CREAT: 0x40,
    O_EXCL: 0x80,
    O_NOCTTY: 0x100,
    O_TRUNC: 0x200,
    O_APPEND: 0x400,
    O_NONBLOCK: 0x800,
    // The generic (aarch64) table differs from x86_64 for these two.
    O_DIRECTORY: LINUX_ARM ? 0x4000 : 0x10000,
    O_NOFOLLOW: LINUX_ARM ? 0x8000 : 0x20000,
    O_CLOEXEC: 0x80000,
  },
  at: { AT_FDCWD: -100, AT_SYMLINK_NOFOLLOW: 0x100 },
  fcntl: { F_SETFD: 2, F_SETFL: 4, FD_CLOEXEC: 1, F_DUPFD_CLOEXEC: 1030, F_SETPIPE_SZ: 1031 },
  spawn: {
    POSIX_SPAWN_SETPGROUP: 0x02,
    POSIX_SPAWN_SETSIGDEF: 0x04,
    POSIX_SPAWN_SETSIGMASK: 0x08,
    POSIX_SPAWN_SETSID: 0x80,
    POSIX_SPAWN_CLOEXEC_DEFAULT: 0,
  },
  ioctl: { TIOCSWINSZ: 0x5414n, TIOCSCTTY: 0x540en },
};

/** XNU (libSystem) on macOS. */
export const DARWIN: OsConstants = {
  errno: {
    ...COMMON_ERRNO,
    EAGAIN: 35,
    ENAMETOOLONG: 63,
    ENOSYS: 78,
    ENOTEMPTY: 66,
    ELOOP: 62,
    ENOTSUP: 45,
  },
  signals: {
    ...COMMON_SIGNALS,
    7: "SIGEMT",
    10: "SIGBUS",
    12: "SIGSYS",
    16: "SIGURG",
    17: "SIGSTOP",
    18: "SIGTSTP",
    19: "SIGCONT",
    20: "SIGCHLD",
    23: "SIGIO",
    29: "SIGINFO",
    30: "SIGUSR1",
    31: "SIGUSR2",
  },
  signalAliases: {},
  open: {
    O_RDONLY: 0,
    O_WRONLY: 0x1,
    O_RDWR: 0x2,
    O_CREAT: 0x200,
    O_EXCL: 0x800,
    O_NOCTTY: 0x20000,
    O_TRUNC: 0x400,
    O_APPEND: 0x8,
    O_NONBLOCK: 0x4,
    O_DIRECTORY: 0x100000,
    O_NOFOLLOW: 0x100,
    O_CLOEXEC: 0x1000000,
  },
  at: { AT_FDCWD: -2, AT_SYMLINK_NOFOLLOW: 0x20 },
  fcntl: { F_SETFD: 2, F_SETFL: 4, FD_CLOEXEC: 1, F_DUPFD_CLOEXEC: 67, F_SETPIPE_SZ: -1 },
  spawn: {
    POSIX_SPAWN_SETPGROUP: 0x02,
    POSIX_SPAWN_SETSIGDEF: 0x04,
    POSIX_SPAWN_SETSIGMASK: 0x08,
    POSIX_SPAWN_SETSID: 0x400,
    POSIX_SPAWN_CLOEXEC_DEFAULT: 0x4000,
  },
  ioctl: { TIOCSWINSZ: 0x80087467n, TIOCSCTTY: 0x20007461n },
};

/**
 * The constants of the platform the daemon runs on (Linux's on any platform without its own table; nothing
 * calls libc there).
 *
 * @example Read a flag
 * ```ts
 * import { OS } from "./constants.ts";
 *
 * console.log(OS.errno.EAGAIN); // 11 on Linux, 35 on macOS
 * ```
 */
export const OS: OsConstants = Deno.build.os === "darwin" ? DARWIN : LINUX;

/** errno → strerror text, for the messages a shell would print. */
const MESSAGES: Partial<Record<ErrnoName, string>> = {
  EPERM: "Operation not permitted",
  ENOENT: "No such file or directory",
  ESRCH: "No such process",
  EINTR: "Interrupted system call",
  EIO: "Input/output error",
  E2BIG: "Argument list too long",
  ENOEXEC: "Exec format error",
  EBADF: "Bad file descriptor",
  ECHILD: "No child processes",
  EAGAIN: "Resource temporarily unavailable",
  ENOMEM: "Cannot allocate memory",
  EACCES: "Permission denied",
  EBUSY: "Device or resource busy",
  EEXIST: "File exists",
  ENOTDIR: "Not a directory",
  EISDIR: "Is a directory",
  EINVAL: "Invalid argument",
  EMFILE: "Too many open files",
  ETXTBSY: "Text file busy",
  ENOSPC: "No space left on device",
  EPIPE: "Broken pipe",
  ENAMETOOLONG: "File name too long",
  ELOOP: "Too many levels of symbolic links",
};

const NAMES: Map<number, ErrnoName> = new Map(
  (Object.entries(OS.errno) as [ErrnoName, number][]).map(([name, value]) => [value, name]),
);

const SIGNAL_NUMBERS: Map<string, number> = new Map([
  ...Object.entries(OS.signals).map(([number, name]): [string, number] => [name, Number(number)]),
  ...Object.entries(OS.signalAliases),
]);

/**
 * The name of an errno value on this platform, or `E<number>` when it has none here.
 *
 * @example Name an errno
 * ```ts
 * import { errnoName, OS } from "./constants.ts";
 *
 * console.log(errnoName(OS.errno.ELOOP)); // "ELOOP"
 * ```
 *
 * @param code An errno value.
 * @returns Its name.
 */
export function errnoName(code: number): string {
  return NAMES.get(code) ?? `E${code}`;
}

/**
 * The text a shell prints for an errno value (`strerror`), or its name when there is no text here.
 *
 * @example Describe an errno
 * ```ts
 * import { errnoMessage, OS } from "./constants.ts";
 *
 * console.log(errnoMessage(OS.errno.ENOENT)); // "No such file or directory"
 * ```
 *
 * @param code An errno value.
 * @returns The message.
 */
export function errnoMessage(code: number): string {
  const name = NAMES.get(code);
  return (name !== undefined ? MESSAGES[name] : undefined) ?? errnoName(code);
}

/**
 * The signal name of a number `waitpid` reported, or null for a number this platform does not name.
 *
 * @example Name a signal
 * ```ts
 * import { signalName } from "./constants.ts";
 *
 * console.log(signalName(9)); // "SIGKILL"
 * ```
 *
 * @param number A signal number.
 * @returns Its name or null.
 */
export function signalName(number: number): Deno.Signal | null {
  return OS.signals[number] ?? null;
}

/**
 * The number of a signal name on this platform, or undefined when it has none here.
 *
 * @example Number a signal
 * ```ts
 * import { signalNumber } from "./constants.ts";
 *
 * console.log(signalNumber("SIGTERM")); // 15
 * ```
 *
 * @param name A signal name such as `"SIGTERM"`.
 * @returns Its number, or undefined.
 */
export function signalNumber(name: string): number | undefined {
  return SIGNAL_NUMBERS.get(name);
}

/** How a child ended: `exitCode` is 128 + the signal number when a signal ended it. */
export interface WaitStatus {
  /** The exit status, or 128 + the signal number. */
  exitCode: number;
  /** The signal that ended the child, or null when it exited by itself. */
  signal: Deno.Signal | null;
}

/**
 * Decode a `waitpid` status word (of a child that exited or was killed).
 *
 * @example Decode
 * ```ts
 * import { decodeWaitStatus } from "./constants.ts";
 *
 * console.log(decodeWaitStatus(3 << 8)); // { exitCode: 3, signal: null }
 * console.log(decodeWaitStatus(15)); // { exitCode: 143, signal: "SIGTERM" }
 * ```
 *
 * @param status The status word.
 * @returns The exit code and signal.
 */
export function decodeWaitStatus(status: number): WaitStatus {
  const low = status & 0x7f;
  if (low === 0) return { exitCode: (status >> 8) & 0xff, signal: null };
  return { exitCode: 128 + low, signal: signalName(low) };
}
