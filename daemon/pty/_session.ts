// Copyright 2026 the SandD authors. MIT license.
/**
 * The processes of a terminal session (Linux, from /proc): what `close()` hangs up besides the program's own
 * process group.
 *
 * The members come from the daemon's one /proc scan, {@linkcode countMembers} in `../_process_group.ts`, which
 * reads /proc through libc: Deno refuses every /proc path to a program without `--allow-all`, so reading it with
 * `Deno.readDirSync` found no member in the daemon as shipped, and a job that ignored the hang-up outlived the
 * terminal's `close()`.
 *
 * @module
 */

import { countMembers } from "../_process_group.ts";

/**
 * Live (not zombie) processes of session `sid` (Linux only; empty elsewhere or when /proc cannot be read). A
 * session id stays reserved while any member lives, so it cannot be reused.
 *
 * @example List a terminal's session
 * ```ts ignore
 * import { sessionMembers } from "./_session.ts";
 *
 * console.log(sessionMembers(12345));
 * ```
 *
 * @param sid The session id (the pid of the program the terminal started, its session leader).
 * @returns The members' pids.
 */
export function sessionMembers(sid: number): number[] {
  return countMembers()?.sessionPids.get(sid) ?? [];
}

/**
 * Send `signal` (SIGHUP also with SIGCONT, so stopped jobs see it) to every member of session `sid`.
 *
 * @example Hang a session up
 * ```ts ignore
 * import { signalSession } from "./_session.ts";
 *
 * signalSession(12345, "SIGHUP");
 * ```
 *
 * @param sid The session id.
 * @param signal The signal.
 */
export function signalSession(sid: number, signal: Deno.Signal): void {
  for (const pid of sessionMembers(sid)) {
    for (const sig of signal === "SIGHUP" ? ["SIGHUP", "SIGCONT"] as const : [signal]) {
      try {
        Deno.kill(pid, sig);
      } catch {
        // Already gone.
      }
    }
  }
}
