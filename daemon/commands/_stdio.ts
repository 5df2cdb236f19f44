// Wiring a remote process to this process's stdio: its output to our stdout/stderr as it comes, our stdin to its
// stdin (EOF included), SIGINT/SIGTERM/SIGHUP forwarded to it; the result is its exit status.
import type { ProcessHandle, ProcessStatus } from "@sandd/server";

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
  const stdoutDone = handle.stdout.pipeTo(Deno.stdout.writable, { preventClose: true });
  const stderrDone = handle.stderr.pipeTo(Deno.stderr.writable, { preventClose: true });
  if (options.stdin ?? true) {
    // Our stdin to theirs; the end of ours closes theirs (EOF). A process that exits first makes the pipe fail:
    // that is not an error of ours.
    Deno.stdin.readable.pipeTo(handle.stdin).catch(() => {});
  }
  const forwarded: [Deno.Signal, () => void][] = (["SIGINT", "SIGTERM", "SIGHUP"] as const).map((
    signal,
  ) => [signal, () => void handle.kill(signal).catch(() => {})]);
  for (const [signal, listener] of forwarded) Deno.addSignalListener(signal, listener);
  try {
    const [status] = await Promise.all([handle.status, stdoutDone, stderrDone]);
    return status;
  } finally {
    for (const [signal, listener] of forwarded) Deno.removeSignalListener(signal, listener);
  }
}

/** The exit code a process status maps to (its code; 128 + n for a signal, as the daemon reports it). */
export function exitCodeOfStatus(status: ProcessStatus): number {
  return status.exitCode;
}
