// Copyright 2026 the SandD authors. MIT license.
/**
 * Waiting for a child to exit without a thread per child: on Linux a pidfd (`pidfd_open`, kernel 5.3+) becomes
 * readable when the child exits, so it waits on the shared poller like any pipe; then `waitpid(WNOHANG)` reaps.
 * Elsewhere (macOS, older kernels) a `waitpid` blocks on a worker thread of its own.
 *
 * @module
 */

import { acquireLibc, errno, releaseLibc } from "./libc.ts";
import { decodeWaitStatus, OS, SYSCALL, type WaitStatus, WNOHANG } from "./constants.ts";
import { cancel, pollWatches, waitReadable } from "./poller.ts";

const IS_LINUX = Deno.build.os === "linux";

/**
 * Resolve with the child's exit status once it has exited, and reap it. Never rejects: when the status cannot be
 * learned (somebody else reaped the child), it resolves with `lost`. Rejects only for an invalid `pid`.
 *
 * @example Wait for a child
 * ```ts ignore
 * const status = await watchExit(pid, { exitCode: 255, signal: null });
 * ```
 *
 * @param pid A child of this process (not reaped yet).
 * @param lost The status to report when the real one is lost.
 * @param onClosing Told of the pidfd's close when it has to wait for the poller to let go of it (after the
 * status is known): await it before expecting the descriptor closed.
 * @returns The exit status.
 */
export async function watchExit(
  pid: number,
  lost: WaitStatus,
  onClosing?: (done: Promise<void>) => void,
): Promise<WaitStatus> {
  if (!Number.isInteger(pid) || pid <= 0) {
    throw new RangeError(`Process id must be a positive integer: received ${pid}`);
  }
  const libc = acquireLibc();
  const status = new Int32Array(new ArrayBuffer(4));
  const buffer = new Uint8Array(status.buffer);
  const { EINTR, ECHILD } = OS.errno;
  /** The pidfd's close, once the poller let go of it (libc is released after it). */
  let closing: Promise<void> | null = null;
  try {
    const pidfd = IS_LINUX && libc.syscall3
      ? Number(libc.syscall3(SYSCALL.pidfd_open, BigInt(pid), 0n))
      : -1;
    if (pidfd >= 0) {
      try {
        for (;;) {
          await waitReadable(pidfd);
          const got = libc.waitpid_now(pid, buffer, WNOHANG);
          if (got === pid) return decodeWaitStatus(status[0]!);
          if (got < 0 && errno() !== EINTR) return lost; // ECHILD: somebody else reaped it
        }
      } catch {
        // the poller failed: fall through to a blocking wait
      } finally {
        // Defensive: only close it once no poll in flight on the worker thread watches it.
        if (pollWatches(pidfd)) {
          closing = cancel(pidfd).then(() => {
            libc.close(pidfd);
          });
          onClosing?.(closing);
        } else {
          libc.close(pidfd);
        }
      }
    }
    for (;;) {
      const got = await libc.waitpid(pid, buffer, 0);
      if (got === pid) return decodeWaitStatus(status[0]!);
      // errno is on the worker thread: ask again without blocking to learn whether it is gone.
      const again = libc.waitpid_now(pid, buffer, WNOHANG);
      if (again === pid) return decodeWaitStatus(status[0]!);
      if (again < 0 && errno() === ECHILD) return lost;
    }
  } catch {
    return lost;
  } finally {
    if (closing === null) releaseLibc();
    else closing.then(releaseLibc);
  }
}
