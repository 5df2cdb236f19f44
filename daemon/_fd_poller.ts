// Copyright 2026 the SandD authors. MIT license.
/**
 * Moved: the poller is `ffi/poller.ts` and the libc binding `ffi/libc.ts`. This re-export keeps old import paths
 * working.
 *
 * @module
 */

export { cancel, pollerActive, waitReadable, waitWritable } from "./ffi/poller.ts";
export { acquireLibc, errno, type Libc, LIBC_SYMBOLS, releaseLibc, setFlag } from "./ffi/libc.ts";
