/**
 * A process running on a worker, as the controller holds it: streaming stdout/stderr, a stdin writer, signals and
 * status. It outlives dropped links: when the daemon reconnects, the controller re-attaches and every stream
 * resumes from the last byte received — nothing lost, nothing doubled.
 *
 * @module
 */

import type { ProcessHandle } from "./controller.ts";
import type { ProcessInfo as WireProcessInfo } from "@sandd/protocol/replies";
import type { Gap } from "./_inbound_stream.ts";
import { sessionOf } from "./_process_session.ts";

export type { Gap } from "./_inbound_stream.ts";

/** How a process ended. */
export interface ProcessStatus {
  /** Exit code; 128 + signal number when a signal ended it. */
  exitCode: number;
  /** The signal that ended it, if any. */
  signal: Deno.Signal | null;
  /** Whether the daemon killed it for its timeout (not set when only what it left behind was killed then). */
  timedOut: boolean;
  /**
   * Per output stream (stdout, stderr): whether the daemon dropped output beyond its `maxOutputBytes` policy.
   * Absent when nothing was dropped.
   */
  truncated?: boolean[];
}

/** Per-stream replay offsets for `server.attach(..., { from })`; a stream left out (or `null`) starts at its oldest
 * retained byte. */
export interface StreamOffsets {
  /** First stdout byte wanted. @default null */
  stdout?: number | null;
  /** First stderr byte wanted. @default null */
  stderr?: number | null;
}

/**
 * A process as `server.processes()` lists it: the wire's description (`ProcessInfo` in `protocol/replies.ts`)
 * with `startedAt` as a `Date`. The compiler keeps the two in step (see `SameFields` below).
 *
 * @example Show what a worker runs
 * ```ts ignore
 * for (const p of await server.processes("worker-1")) console.log(p.id, p.state, p.startedAt.toISOString());
 * ```
 */
export interface ProcessInfo {
  /** Process id (the daemon's). */
  id: string;
  /** OS process id on the worker (0 when no OS process started). */
  pid: number;
  /** The command as spawned. */
  command: string | string[];
  /** When it started. */
  startedAt: Date;
  /** Running or exited. */
  state: "running" | "exited";
  /** `null` while running; once exited, the exit code (128 + n when signal n ended it). */
  exitCode: number | null;
  /** The signal that ended it, or null. */
  signal: string | null;
  /** Whether it runs on a terminal. */
  pty: boolean;
  /** Controller connections attached to it. */
  attached: number;
  /** After the exit: processes of its group (terminal: session) still running, e.g. background jobs; else absent. */
  lingering?: number;
}

/**
 * Compile-time check: the public description has exactly the wire's fields, and every wire value fits it
 * (`startedAt` aside; `signal` is any string here, a known signal name on the wire).
 */
type SameFields<Public, Wire> = [keyof Public] extends [keyof Wire]
  ? [keyof Wire] extends [keyof Public] ? [Wire] extends [Public] ? true : false : false
  : false;
const _sameAsWire: SameFields<ProcessInfo, WireProcessInfo & { startedAt: Date }> = true;

/**
 * A handle on a process on a worker. Made by `server.spawn()` or `server.attach()`.
 *
 * @example Stream a build
 * ```ts ignore
 * const p = await server.spawn("worker-1", "make -j8");
 * for await (const chunk of p.stdout) Deno.stdout.write(chunk);
 * const { exitCode } = await p.status;
 * ```
 */
export class RemoteProcess implements ProcessHandle {
  /** The daemon it runs on. */
  get daemonId(): string {
    return sessionOf(this).daemonId;
  }

  /** The command. */
  get command(): string | string[] {
    return sessionOf(this).command;
  }

  /** Bytes lost to retention overflow while nobody read (empty unless the link was down too long). */
  get gaps(): Gap[] {
    return sessionOf(this).gaps;
  }

  /** How it ended. Rejects with `DaemonDisconnectedError` when the daemon stays away past the grace. */
  get status(): Promise<ProcessStatus> {
    return sessionOf(this).status;
  }

  /** The daemon's process id (stable across reconnects; use it with `server.attach`). */
  get id(): string {
    return sessionOf(this).id;
  }

  /** The OS process id on the worker. */
  get pid(): number {
    return sessionOf(this).pid;
  }

  /** Standard output (or the terminal output), byte-exact. Reading is what returns credit to the daemon. */
  get stdout(): ReadableStream<Uint8Array> {
    return sessionOf(this).stdout;
  }

  /** Standard error. Empty for terminal processes. */
  get stderr(): ReadableStream<Uint8Array> {
    return sessionOf(this).stderr;
  }

  /** Standard input. Closing it delivers EOF to the child. */
  get stdin(): WritableStream<Uint8Array> {
    return sessionOf(this).stdin;
  }

  /** The exit status if it is known already. */
  get exited(): ProcessStatus | null {
    return sessionOf(this).exited;
  }

  /**
   * Send a signal to the process group. `SIGTERM` (the default) escalates to `SIGKILL` after the daemon's grace.
   * Once the process has exited, the signal still reaches what its group left behind while anything lingers (a
   * background job such as `sleep 60 &`: {@linkcode ProcessInfo.lingering}).
   *
   * @param signal The signal.
   * @throws {SignalNotAllowedError} For a signal outside the allowed set.
   * @throws {ProcessExitedError} When the process has exited and nothing of its group is left.
   */
  kill(signal: Deno.Signal = "SIGTERM"): Promise<void> {
    return sessionOf(this).kill(signal);
  }

  /** Stop following the process without killing it; it can be attached again later. */
  detach(): Promise<void> {
    return sessionOf(this).detach();
  }
}
