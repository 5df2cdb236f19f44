// State the control API keeps between requests: the processes it spawned (to write their stdin, learn their exit
// and announce it) and the event subscribers.
import type { RemoteProcess } from "../process.ts";
import type { EventHub } from "./_events.ts";

export interface ControlState {
  /** Processes started through the API and not exited yet, by `daemon\0proc`. */
  processes: Map<string, TrackedProcess>;
  /** Server-Sent Events subscribers. */
  events: EventHub;
  /** Largest JSON body. */
  maxJsonBytes: number;
}

export function processKey(daemon: string, proc: string): string {
  return `${daemon}\0${proc}`;
}

/** A process started through the API: its handle (which holds stdin and learns the exit). */
export interface TrackedProcess {
  handle: RemoteProcess;
  /** Whether a client closed its stdin (sent EOF). */
  stdinClosed: boolean;
  /**
   * Output streams the handle still holds unread, so the daemon keeps them (and holds the process back once its
   * retention is full, as a pipe nobody reads would) until a client first fetches them.
   */
  held: { stdout: boolean; stderr: boolean };
}
