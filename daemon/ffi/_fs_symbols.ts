// Copyright 2026 the SandD authors. MIT license.
/**
 * libc symbols for descriptor-relative file operations (`openat`, `fchmod`, `renameat`, `fstatat`, ...), merged
 * into the one binding of `libc.ts`.
 *
 * @module
 */

/** File-system symbols of the libc binding. */
export const FS_SYMBOLS = {} as const;
