// Wiring a remote process to this process's stdio: its output to our stdout/stderr as it comes, our stdin to its
// stdin (EOF included), SIGINT/SIGTERM/SIGHUP forwarded to it; the result is its exit status.
import type { ProcessHandle, ProcessStatus } from "@sandd/server";

const SIGNAL_NUMBERS = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const;

/** How long after passing a signal on this process waits for the remote exit before it exits itself. */
const SIGNAL_GRACE_MS = 5_000;

/** Options of {@linkcode runAttached}. */
export interface RunAttachedOptions {
  /** Forward local stdin to the process. @default true */
  stdin?: boolean;
}

/** Pipe a remote process to the local stdio until it exits and its output is written; its status. */
export async function runAttached(
  handle: ProcessHandle,
  options: RunAttachedOptions = {},
): Promise<ProcessStatus> {
  // The local reader went away (`sandd exec w -- yes | head`): stop the process and exit as a program killed by
  // SIGPIPE would (141), as ssh does.
  const brokenPipe = (error: unknown) => {
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
    handle.kill("SIGTERM").catch(() => {});
    given.resolve({ exitCode: 141, signal: null, timedOut: false });
  };
  const given = Promise.withResolvers<ProcessStatus>();
  const stdoutDone = handle.stdout.pipeTo(Deno.stdout.writable, { preventClose: true })
    .catch(brokenPipe);
  const stderrDone = handle.stderr.pipeTo(Deno.stderr.writable, { preventClose: true })
    .catch(brokenPipe);
  if (options.stdin ?? true) {
    // Our stdin to theirs; the end of ours closes theirs (EOF). A process that exits first makes the pipe fail:
    // that is not an error of ours.
    Deno.stdin.readable.pipeTo(handle.stdin).catch(() => {});
  }
  // A signal is passed on to the process, whose exit then ends this one. Should that exit not come (the link is
  // gone), a second signal, or the grace period after the first, ends this process anyway with 128 + n.
  let signalled = false;
  let grace: ReturnType<typeof setTimeout> | undefined;
  const forwarded: [Deno.Signal, () => void][] = (["SIGINT", "SIGTERM", "SIGHUP"] as const).map((
    signal,
  ) => [signal, () => {
    const local = { exitCode: 128 + SIGNAL_NUMBERS[signal], signal, timedOut: false };
    if (signalled) return given.resolve(local);
    signalled = true;
    handle.kill(signal).catch(() => {});
    grace = setTimeout(() => given.resolve(local), SIGNAL_GRACE_MS);
  }]);
  for (const [signal, listener] of forwarded) Deno.addSignalListener(signal, listener);
  try {
    return await Promise.race([
      Promise.all([handle.status, stdoutDone, stderrDone]).then(([status]) => status),
      given.promise,
    ]);
  } finally {
    clearTimeout(grace);
    for (const [signal, listener] of forwarded) Deno.removeSignalListener(signal, listener);
  }
}
