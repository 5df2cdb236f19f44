// The processes the controller follows, by daemon and process id: exits routed to their handles (or kept briefly
// when they arrive before the handle is registered), re-attach on reconnect, failure when the server closes.
import type { Connection } from "./_connection.ts";
import { DaemonDisconnectedError } from "./errors.ts";
import type { ProcessStatus } from "./process.ts";
import type { ProcessHost, ProcessSession } from "./_process_session.ts";

/** Exit statuses kept for processes whose handle is not registered yet. */
const MAX_EARLY_EXITS = 1024;

export class ProcessRegistry {
  readonly host: ProcessHost;
  readonly #processes: Map<string, Set<ProcessSession>> = new Map();
  readonly #earlyExits: Map<string, ProcessStatus> = new Map();

  constructor(connection: (id: string) => Connection | null, reconnectGraceMs: number) {
    this.host = {
      connection,
      release: (p) => {
        const key = `${p.daemonId}\0${p.id}`;
        const set = this.#processes.get(key);
        set?.delete(p);
        if (set?.size === 0) this.#processes.delete(key);
      },
      reconnectGraceMs,
    };
  }

  /** Handles followed now. */
  get size(): number {
    let n = 0;
    for (const set of this.#processes.values()) n += set.size;
    return n;
  }

  register(process: ProcessSession): void {
    const key = `${process.daemonId}\0${process.id}`;
    let set = this.#processes.get(key);
    if (!set) this.#processes.set(key, set = new Set());
    set.add(process);
    const early = this.#earlyExits.get(key);
    if (early) process.exit(early);
  }

  /** The daemon reported an exit. */
  exited(daemonId: string, proc: string, status: ProcessStatus): void {
    const key = `${daemonId}\0${proc}`;
    const set = this.#processes.get(key);
    if (set?.size) {
      for (const process of [...set]) process.exit(status);
      return;
    }
    this.#earlyExits.set(key, status);
    if (this.#earlyExits.size > MAX_EARLY_EXITS) {
      this.#earlyExits.delete(this.#earlyExits.keys().next().value!);
    }
  }

  /** The daemon sent a message about a process that the controller cannot accept: its handles fail. */
  failed(daemonId: string, proc: string, error: Error): void {
    const set = this.#processes.get(`${daemonId}\0${proc}`);
    if (set) { for (const process of [...set]) process.fail(error); }
  }

  /** A daemon (re)connected: its processes resume on the new link. */
  connected(conn: Connection): void {
    for (const process of this.#of(conn.info.id)) process.reattach(conn);
  }

  /** A daemon's link dropped: its processes wait for it (or fail at once when the server is closing). */
  disconnected(daemonId: string, closing: boolean): void {
    for (const process of this.#of(daemonId)) {
      if (closing) process.fail(new DaemonDisconnectedError(daemonId, "Server closed"));
      else process.linkLost();
    }
  }

  /** The server closes: every handle fails. */
  failAll(): void {
    for (const set of [...this.#processes.values()]) {
      for (const process of [...set]) {
        process.fail(new DaemonDisconnectedError(process.daemonId, "Server closed"));
      }
    }
  }

  #of(daemonId: string): ProcessSession[] {
    const out: ProcessSession[] = [];
    for (const set of this.#processes.values()) {
      for (const process of set) if (process.daemonId === daemonId) out.push(process);
    }
    return out;
  }
}
