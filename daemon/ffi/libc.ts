// Copyright 2026 the SandD authors. MIT license.
/**
 * The daemon's one C library binding. libc is opened once per process (loading it with our symbols costs about
 * 3 ms: Deno compiles a trampoline per symbol) and shared: {@linkcode acquireLibc} / {@linkcode releaseLibc}
 * count its users and the last one closes it, so Deno's test sanitizers see no open library.
 *
 * The symbol table is the union of the process symbols below and the file-system symbols of `_fs_symbols.ts`
 * (descriptor-relative primitives for confined file operations).
 *
 * @module
 */

import { FS_SYMBOLS } from "./_fs_symbols.ts";

const IS_DARWIN = Deno.build.os === "darwin";

/** The libc symbols the daemon's FFI process code uses (poller and pipe children). */
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
  syscall3: { name: "syscall", parameters: ["i64", "i64", "i64"], result: "i64" },
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
} as const;

/** Every libc symbol the daemon uses. */
export const LIBC_SYMBOLS = { ...PROCESS_SYMBOLS, ...FS_SYMBOLS } as const;

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
