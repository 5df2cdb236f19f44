// Copyright 2026 the SandD authors. MIT license.
/**
 * Process groups and sessions of the daemon's children, once their leader has exited: whether any member still
 * lives, how many, and signalling them all.
 *
 * Every child starts as the leader of its own process group (pipes: `POSIX_SPAWN_SETPGROUP`) or of its own
 * session (terminals: `POSIX_SPAWN_SETSID`), so its group id (and session id) is its pid. A background job it
 * starts (`sleep 61 &`) stays in that group after the leader exits and is reaped, and Linux does not hand the id
 * out again while any member of the group (or session) lives, so `kill(-pgid, ...)` still reaches exactly the job.
 *
 * - {@linkcode groupAlive} is one `kill(-pgid, 0)` system call (a few microseconds): the cheap probe.
 * - {@linkcode countMembers} is one scan of /proc (Linux) counting every live member by group and by session:
 *   the precise count (zombies are not counted), for a timer, for `processes` and before a spawn is refused for
 *   the process limit, never on the way of an ordinary spawn.
 *
 * @module
 */

import { acquireFs, AT, closeFd, O, openAt, pread, readDirFd, releaseFs } from "./ffi/fs.ts";
import { acquireLibc, errno, releaseLibc } from "./ffi/libc.ts";
import { OS } from "./ffi/constants.ts";

const IS_LINUX = Deno.build.os === "linux";

/** Whether process groups exist on this platform (not on Windows). */
export const processGroupsSupported: boolean = Deno.build.os !== "windows";

/**
 * Signal 0: `kill` checks that the target exists without signalling it. Elsewhere than Linux, `Deno.kill` passes
 * a signal number straight to kill(2) (checked with Deno 2.9; the type admits only names, hence the cast).
 */
const PROBE = 0 as unknown as Deno.Signal;
/** `kill` system call number (Linux): the probe through libc costs about 1 µs, `Deno.kill`'s ESRCH exception 15. */
const SYS_KILL = Deno.build.arch === "aarch64" ? 129n : 62n;

/**
 * Whether any process of group `pgid` exists (zombies included; an unreaped zombie is counted until its new
 * parent reaps it, which {@linkcode countMembers} does not).
 *
 * @example Probe a group
 * ```ts
 * import { groupAlive } from "./_process_group.ts";
 *
 * console.log(groupAlive(12345));
 * ```
 *
 * @param pgid The process group id (a child's pid).
 * @returns False once no process of the group exists.
 */
export function groupAlive(pgid: number): boolean {
  if (!processGroupsSupported || pgid <= 1) return false;
  if (IS_LINUX) {
    const libc = acquireLibc();
    try {
      const syscall = libc.syscall3;
      if (syscall === null) throw new Error("libc has no syscall symbol");
      if (Number(syscall(SYS_KILL, BigInt(-pgid), 0n)) === 0) return true;
      // EPERM: it exists but belongs to someone else (a child run as another user by a non-root daemon).
      return errno() !== OS.errno.ESRCH;
    } finally {
      releaseLibc();
    }
  }
  try {
    Deno.kill(-pgid, PROBE);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else (a child run as another user by a non-root daemon).
    return !(error instanceof Deno.errors.NotFound);
  }
}

/** Live (non-zombie) processes counted per process group and per session, with the members of each session. */
export interface MemberCounts {
  /** Members per process group id. */
  readonly groups: Map<number, number>;
  /** Members per session id. */
  readonly sessions: Map<number, number>;
  /** The pids of each session's members. */
  readonly sessionPids: Map<number, number[]>;
}

const statBuffer = new Uint8Array(512);
const latin1 = new TextDecoder("latin1");

/**
 * Count the live processes of every group and session, from one scan of /proc (Linux). Undefined where there is
 * no /proc (or it cannot be read): callers fall back to {@linkcode groupAlive}.
 *
 * The scan goes through the daemon's libc binding (`openat`, `getdents64`, `pread`), not `Deno.readDir`: Deno
 * refuses any /proc path to a program without `--allow-all`, and the daemon runs with narrower permissions.
 *
 * @example Count the members of every group
 * ```ts ignore
 * import { countMembers } from "./_process_group.ts";
 *
 * const counts = countMembers();
 * console.log(counts?.groups.size);
 * ```
 *
 * @returns The counts, or undefined.
 */
export function countMembers(): MemberCounts | undefined {
  if (!IS_LINUX) return undefined;
  const groups = new Map<number, number>();
  const sessions = new Map<number, number>();
  const sessionPids = new Map<number, number[]>();
  try {
    acquireFs();
  } catch {
    return undefined;
  }
  let proc = -1;
  try {
    proc = openAt(AT.FDCWD, "/proc", O.RDONLY | O.DIRECTORY);
    for (const entry of readDirFd(proc)) {
      const first = entry.raw[0]!;
      if (first < 48 || first > 57) continue;
      let fd: number;
      try {
        fd = openAt(proc, `${entry.name}/stat`, O.RDONLY);
      } catch {
        continue; // it went away while we looked
      }
      let length = 0;
      try {
        length = pread(fd, statBuffer, 0);
      } catch {
        // gone
      } finally {
        closeFd(fd);
      }
      const stat = latin1.decode(statBuffer.subarray(0, length));
      // After "(comm)": state ppid pgrp session ...
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ", 4);
      if (fields.length < 4 || fields[0] === "Z" || fields[0] === "X") continue;
      const pgrp = Number(fields[2]);
      const session = Number(fields[3]);
      groups.set(pgrp, (groups.get(pgrp) ?? 0) + 1);
      sessions.set(session, (sessions.get(session) ?? 0) + 1);
      const pids = sessionPids.get(session);
      if (pids) pids.push(Number(entry.name));
      else sessionPids.set(session, [Number(entry.name)]);
    }
  } catch {
    return undefined;
  } finally {
    closeFd(proc);
    releaseFs();
  }
  return { groups, sessions, sessionPids };
}

/**
 * Send `signal` to every process of group `pgid`, and with `session` to every process of the session it leads
 * (a terminal's background jobs have groups of their own). Errors (already gone) are ignored.
 *
 * @example Kill what a command left behind
 * ```ts ignore
 * import { signalGroup } from "./_process_group.ts";
 *
 * signalGroup(12345, "SIGKILL", false);
 * ```
 *
 * @param pgid The process group id (the leader's pid).
 * @param signal The signal.
 * @param session Whether the leader also led a session whose members should get it.
 */
export function signalGroup(pgid: number, signal: Deno.Signal, session: boolean): void {
  if (!processGroupsSupported || pgid <= 1) return;
  try {
    Deno.kill(-pgid, signal);
  } catch {
    // no member left
  }
  if (!session) return;
  for (const pid of countMembers()?.sessionPids.get(pgid) ?? []) {
    try {
      Deno.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}
