// Copyright 2026 the SandD authors. MIT license.
/**
 * The daemon's one C library binding. libc is opened once per process (loading it with our symbols costs about
 * 3 ms: Deno compiles a trampoline per symbol) and shared: {@linkcode acquireLibc} / {@linkcode releaseLibc}
 * count its users and the last one closes it, so Deno's test sanitizers see no open library.
 *
 * The symbol table is the union of the process symbols below and the file-system symbols of `_fs_symbols.ts`
 * (descriptor-relative primitives for confined file operations). Every symbol that some supported libc lacks is
 * `optional` (Linux-only: `eventfd`, `pipe2`, `environ`, `__errno_location`, `syscall`-based calls, `statx`,
 * `pread64`; macOS-only: `__error`; newer: `posix_spawn_file_actions_addchdir_np`, `..._addclosefrom_np`,
 * `ptsname_r`), so `Deno.dlopen` succeeds on Linux and on macOS; the callers check for `null` and fall back or
 * refuse with a clear error.
 *
 * @module
 */

import { FS_SYMBOLS } from "./_fs_symbols.ts";
import { errnoMessage, errnoName } from "./constants.ts";

const IS_DARWIN = Deno.build.os === "darwin";
/** Apple arm64 passes variadic arguments on the stack, never in registers. */
const VARIADIC_ON_STACK = IS_DARWIN && Deno.build.arch === "aarch64";

/** The libc symbols the daemon's FFI process code uses (poller, spawn, pipe children, pseudo-terminals). */
const PROCESS_SYMBOLS = {
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  /** `poll` with a zero timeout, on the calling thread: no hand-off when something is ready already. */
  poll_now: { name: "poll", parameters: ["buffer", "u64", "i32"], result: "i32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32", optional: true },
  pipe: { parameters: ["buffer"], result: "i32" },
  pipe2: { parameters: ["buffer", "i32"], result: "i32", optional: true },
  /** fcntl with an int argument (registers; Linux and x86_64 macOS). */
  fcntl: { parameters: ["i32", "i32", "i64"], result: "i32" },
  /** fcntl on Apple arm64, whose variadic arguments go on the stack. */
  fcntl_stack: {
    name: "fcntl",
    parameters: ["i32", "i32", "i64", "i64", "i64", "i64", "i64", "i64", "i64"],
    result: "i32",
  },
  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  access: { parameters: ["buffer", "i32"], result: "i32" },
  /** `syscall(n, a, b)`, for Linux-only calls (`pidfd_open`); deprecated on macOS, so optional. */
  syscall3: { name: "syscall", parameters: ["i64", "i64", "i64"], result: "i64", optional: true },
  waitpid: { parameters: ["i32", "buffer", "i32"], result: "i32", nonblocking: true },
  waitpid_now: { name: "waitpid", parameters: ["i32", "buffer", "i32"], result: "i32" },
  sigemptyset: { parameters: ["buffer"], result: "i32" },
  sigfillset: { parameters: ["buffer"], result: "i32" },
  posix_spawnattr_init: { parameters: ["buffer"], result: "i32" },
  posix_spawnattr_destroy: { parameters: ["buffer"], result: "i32" },
  posix_spawnattr_setflags: { parameters: ["buffer", "i16"], result: "i32" },
  posix_spawnattr_setsigmask: { parameters: ["buffer", "buffer"], result: "i32" },
  posix_spawnattr_setsigdefault: { parameters: ["buffer", "buffer"], result: "i32" },
  posix_spawn_file_actions_init: { parameters: ["buffer"], result: "i32" },
  posix_spawn_file_actions_destroy: { parameters: ["buffer"], result: "i32" },
  posix_spawn_file_actions_addopen: {
    parameters: ["buffer", "i32", "buffer", "i32", "u32"],
    result: "i32",
  },
  posix_spawn_file_actions_adddup2: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  posix_spawn_file_actions_addchdir_np: {
    parameters: ["buffer", "buffer"],
    result: "i32",
    optional: true,
  },
  posix_spawn_file_actions_addclosefrom_np: {
    parameters: ["buffer", "i32"],
    result: "i32",
    optional: true,
  },
  posix_spawn: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  /** `posix_spawn` with `envp` as a raw pointer (the daemon's own `environ`). */
  posix_spawn_environ: {
    name: "posix_spawn",
    parameters: ["buffer", "buffer", "buffer", "buffer", "buffer", "pointer"],
    result: "i32",
  },
  /** The address of glibc's `char **environ`, kept current by `Deno.env.set` (absent in macOS's libSystem). */
  environ: { type: "pointer", optional: true },
  __errno_location: { parameters: [], result: "pointer", optional: true },
  __error: { parameters: [], result: "pointer", optional: true },
  posix_openpt: { parameters: ["i32"], result: "i32" },
  /** `open(path, flags)` without a mode (macOS opens `/dev/ptmx` with it). */
  open_noperm: { name: "open", parameters: ["buffer", "i32"], result: "i32" },
  grantpt: { parameters: ["i32"], result: "i32" },
  unlockpt: { parameters: ["i32"], result: "i32" },
  ptsname: { parameters: ["i32"], result: "pointer" },
  ptsname_r: { parameters: ["i32", "buffer", "usize"], result: "i32", optional: true },
  /**
   * Stdio over a descriptor, for batch reads on a worker thread (`../pty/_unix.ts`): `fread` on an unbuffered
   * stream over a non-blocking descriptor loops `read` until the buffer is full or a read would block.
   */
  fdopen: { parameters: ["i32", "buffer"], result: "pointer", optional: true },
  setvbuf: { parameters: ["pointer", "pointer", "i32", "usize"], result: "i32", optional: true },
  clearerr: { parameters: ["pointer"], result: "void", optional: true },
  fclose: { parameters: ["pointer"], result: "i32", optional: true },
  /** `fread` on a worker thread (the event loop goes on meanwhile). */
  fread_async: {
    name: "fread",
    parameters: ["buffer", "usize", "usize", "pointer"],
    result: "usize",
    nonblocking: true,
    optional: true,
  },
  /** Sockets: finding a listening socket by its port and raising its accept queue (`listen_backlog.ts`). */
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  /** `ioctl(fd, request, pointer)` in registers (Linux, x86_64 macOS). */
  ioctl_ptr: { name: "ioctl", parameters: ["i32", "u64", "buffer"], result: "i32" },
  /** `ioctl(fd, request, pointer)` on Apple arm64, whose variadic arguments go on the stack. */
  ioctl_ptr_stack: {
    name: "ioctl",
    parameters: ["i32", "u64", "i64", "i64", "i64", "i64", "i64", "i64", "buffer"],
    result: "i32",
  },
} as const;

/** Every libc symbol the daemon uses. */
export const LIBC_SYMBOLS: typeof PROCESS_SYMBOLS & typeof FS_SYMBOLS = {
  ...PROCESS_SYMBOLS,
  ...FS_SYMBOLS,
} as const;

/** The loaded symbols of {@linkcode LIBC_SYMBOLS}. */
export type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];

const LIBC_PATH = IS_DARWIN ? "/usr/lib/libSystem.B.dylib" : "libc.so.6";

interface Loaded {
  lib: Deno.DynamicLibrary<typeof LIBC_SYMBOLS>;
  users: number;
  errno: Deno.UnsafePointerView | null;
}

let loaded: Loaded | null = null;

/**
 * Load libc (first user) or count one more user of it. Pair every call with {@linkcode releaseLibc}.
 *
 * @example Use and release
 * ```ts ignore
 * const libc = acquireLibc();
 * try {
 *   libc.close(-1);
 * } finally {
 *   releaseLibc();
 * }
 * ```
 *
 * @returns The symbols.
 */
export function acquireLibc(): Libc {
  if (loaded === null) {
    const lib = Deno.dlopen(LIBC_PATH, LIBC_SYMBOLS);
    loaded = { lib, users: 0, errno: null };
  }
  loaded.users++;
  return loaded.lib.symbols;
}

/**
 * One user of libc is done; the last one closes the library.
 *
 * @example Release
 * ```ts ignore
 * acquireLibc();
 * releaseLibc();
 * ```
 */
export function releaseLibc(): void {
  if (loaded === null) return;
  loaded.users--;
  if (loaded.users <= 0) {
    loaded.lib.close();
    loaded = null;
  }
}

/**
 * The calling thread's `errno` after a synchronous libc call (the main thread's, since synchronous FFI calls run
 * there). Only valid while libc is acquired.
 *
 * @example Read errno after a failed close
 * ```ts ignore
 * const libc = acquireLibc();
 * libc.close(-1);
 * console.log(errno()); // 9 (EBADF)
 * releaseLibc();
 * ```
 *
 * @returns The errno value, or 0 when libc is not loaded.
 */
export function errno(): number {
  if (loaded === null) return 0;
  if (loaded.errno === null) {
    const symbols = loaded.lib.symbols;
    const where = symbols.__errno_location?.() ?? symbols.__error?.() ?? null;
    if (where === null) return 0;
    loaded.errno = new Deno.UnsafePointerView(where);
  }
  return loaded.errno.getInt32();
}

/**
 * An Error for a failed libc call, with the errno name as `code` (like Node's system errors) and the number as
 * `errno`.
 *
 * @example Describe a failure
 * ```ts
 * import { errnoError } from "./libc.ts";
 *
 * console.log(errnoError("open", 2).message); // "open failed: ENOENT (No such file or directory)"
 * ```
 *
 * @param what The call that failed.
 * @param code The errno value.
 * @returns The error (to throw).
 */
export function errnoError(what: string, code: number): Error & { code: string; errno: number } {
  const name = errnoName(code);
  return Object.assign(new Error(`${what} failed: ${name} (${errnoMessage(code)})`), {
    code: name,
    errno: code,
  });
}

/**
 * Throw {@linkcode errnoError} for a call that returned -1 (reads `errno`), or for a `posix_spawn*`-style call
 * that returned a non-zero error number (`returnsError`).
 *
 * @example Check a call
 * ```ts ignore
 * check(libc.grantpt(master), "grantpt");
 * ```
 *
 * @param result The call's return value.
 * @param what The call, for the message.
 * @param returnsError Whether the call returns the error number itself instead of -1.
 * @returns The result, when it is not a failure.
 */
export function check(result: number, what: string, returnsError = false): number {
  if (returnsError ? result !== 0 : result === -1) {
    throw errnoError(what, returnsError ? result : errno());
  }
  return result;
}

/**
 * `fcntl(fd, cmd, value)` with the right variadic calling convention.
 *
 * @example Set a descriptor non-blocking
 * ```ts ignore
 * setFlag(libc, fd, OS.fcntl.F_SETFL, OS.open.O_NONBLOCK);
 * ```
 *
 * @param symbols The loaded libc.
 * @param fd The descriptor.
 * @param cmd The fcntl command.
 * @param value Its int argument.
 * @returns fcntl's result (-1 on failure).
 */
export function setFlag(symbols: Libc, fd: number, cmd: number, value: number): number {
  return VARIADIC_ON_STACK
    ? symbols.fcntl_stack(fd, cmd, 0n, 0n, 0n, 0n, 0n, 0n, BigInt(value))
    : symbols.fcntl(fd, cmd, BigInt(value));
}

/**
 * `ioctl(fd, request, pointer)` with the right variadic calling convention.
 *
 * @example Set a terminal's size
 * ```ts ignore
 * ioctlPointer(libc, master, OS.ioctl.TIOCSWINSZ, winsize);
 * ```
 *
 * @param symbols The loaded libc.
 * @param fd The descriptor.
 * @param request The request number.
 * @param argument The memory the request reads or writes.
 * @returns ioctl's result (-1 on failure).
 */
export function ioctlPointer(
  symbols: Libc,
  fd: number,
  request: bigint,
  argument: Uint8Array<ArrayBuffer>,
): number {
  return VARIADIC_ON_STACK
    ? symbols.ioctl_ptr_stack(fd, request, 0n, 0n, 0n, 0n, 0n, 0n, argument)
    : symbols.ioctl_ptr(fd, request, argument);
}
