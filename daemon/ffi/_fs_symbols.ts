// Copyright 2026 the SandD authors. MIT license.
/**
 * libc symbols for descriptor-relative file operations (`openat`, `fchmod`, `renameat`, `statx`, ...), merged
 * into the one binding of `libc.ts`. Every one is optional, so loading the binding never fails for want of one
 * (macOS's libSystem has no `statx` or `pread64`, and `syscall` is deprecated there): a libc without it leaves the
 * symbol `null` and the wrappers of `fs.ts` report `ENOSYS`. The raw-syscall entries (`openat2`, `getdents64`)
 * carry Linux syscall numbers: `fs.ts` calls them on Linux only.
 *
 * @module
 */

/** File-system symbols of the libc binding. */
export const FS_SYMBOLS = {
  openat: { parameters: ["i32", "buffer", "i32", "u32"], result: "i32", optional: true },
  /** `syscall(SYS_openat2, dirfd, path, &how, sizeof how)`: used only if the kernel has it (Linux 5.6+). */
  syscall_openat2: {
    name: "syscall",
    parameters: ["i64", "i64", "buffer", "buffer", "u64"],
    result: "i64",
    optional: true,
  },
  /** `syscall(SYS_getdents64, fd, buffer, size)`. */
  syscall_getdents64: {
    name: "syscall",
    parameters: ["i64", "i64", "buffer", "u64"],
    result: "i64",
    optional: true,
  },
  statx: {
    parameters: ["i32", "buffer", "i32", "u32", "buffer"],
    result: "i32",
    optional: true,
  },
  fchmod: { parameters: ["i32", "u32"], result: "i32", optional: true },
  fchown: { parameters: ["i32", "u32", "u32"], result: "i32", optional: true },
  ftruncate: { parameters: ["i32", "i64"], result: "i32", optional: true },
  futimens: { parameters: ["i32", "buffer"], result: "i32", optional: true },
  /** Runs off the main thread: a flush can take seconds. */
  fsync: { parameters: ["i32"], result: "i32", nonblocking: true, optional: true },
  /** Runs off the main thread: a flush can take seconds. */
  fdatasync: { parameters: ["i32"], result: "i32", nonblocking: true, optional: true },
  /** Runs off the main thread: flushes a whole file system (the snapshot store's batches). */
  syncfs: { parameters: ["i32"], result: "i32", nonblocking: true, optional: true },
  renameat: { parameters: ["i32", "buffer", "i32", "buffer"], result: "i32", optional: true },
  unlinkat: { parameters: ["i32", "buffer", "i32"], result: "i32", optional: true },
  mkdirat: { parameters: ["i32", "buffer", "u32"], result: "i32", optional: true },
  symlinkat: { parameters: ["buffer", "i32", "buffer"], result: "i32", optional: true },
  readlinkat: { parameters: ["i32", "buffer", "buffer", "usize"], result: "isize", optional: true },
  linkat: { parameters: ["i32", "buffer", "i32", "buffer", "i32"], result: "i32", optional: true },
  pread: {
    name: "pread64",
    parameters: ["i32", "buffer", "usize", "i64"],
    result: "isize",
    optional: true,
  },
} as const;
