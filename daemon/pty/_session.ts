// Copyright 2026 the SandD authors. MIT license.
/**
 * The processes of a terminal session (Linux, from /proc): what `close()` hangs up besides the program's own
 * process group.
 *
 * @module
 */

/**
 * Live processes of session `sid` (Linux only, from /proc; empty elsewhere or without read
 * permission). A session id stays reserved while any member lives, so it cannot be reused.
 */
export function sessionMembers(sid: number): number[] {
  if (Deno.build.os !== "linux") return [];
  const members: number[] = [];
  try {
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      try {
        const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
        // After "(comm)": state ppid pgrp session ...
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        if (fields[0] !== "Z" && Number(fields[3]) === sid) members.push(Number(entry.name));
      } catch {
        // The process went away while we looked.
      }
    }
  } catch {
    return [];
  }
  return members;
}

/** Send `signal` (SIGHUP also with SIGCONT, so stopped jobs see it) to every member of session `sid`. */
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
