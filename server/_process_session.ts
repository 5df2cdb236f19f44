// The controller's state of one remote process: its output and stdin streams, its links, the reconnect grace and the
// exit. The user holds a RemoteProcess, a handle with only the public API; the server works with this session.
import { SIGNALS } from "@sandd/protocol/messages";
import type { Connection } from "./_connection.ts";
import {
  DaemonDisconnectedError,
  ProcessExitedError,
  SignalNotAllowedError,
  UnknownProcessError,
} from "./errors.ts";
import { type Gap, InboundStream } from "./_inbound_stream.ts";
import { OutboundStream } from "./_outbound_stream.ts";
import { KIND_PROCESS, KIND_STDIN, KIND_TERMINAL } from "./_metrics_state.ts";
import { type ProcessStatus, RemoteProcess, type StreamOffsets } from "./process.ts";

const sessions = new WeakMap<RemoteProcess, ProcessSession>();

/** The session behind a handle; throws for an object that is not a handle made by the server. */
export function sessionOf(handle: RemoteProcess): ProcessSession {
  const session = sessions.get(handle);
  if (!session) {
    throw new TypeError("Not a process handle made by server.spawn() or server.attach()");
  }
  return session;
}

/**
 * Validate an attach's `from` and split it per output stream: a number applies to both, an object names each.
 *
 * @throws {RangeError} For an offset that is not a non-negative integer.
 * @throws {TypeError} For an object with other keys than `stdout` and `stderr`.
 */
export function streamOffsets(
  from: number | null | StreamOffsets | undefined,
): [number | null, number | null] {
  const one = (name: string, value: unknown): number | null => {
    if (value === undefined || value === null) return null;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(
        `${name} must be a non-negative integer or null, got ${JSON.stringify(value)}`,
      );
    }
    return value;
  };
  if (from === undefined || from === null || typeof from === "number") {
    const both = one("from", from);
    return [both, both];
  }
  if (typeof from !== "object" || Array.isArray(from)) {
    throw new TypeError(
      `from must be a number, null or { stdout, stderr }, got ${JSON.stringify(from)}`,
    );
  }
  for (const key of Object.keys(from)) {
    if (key !== "stdout" && key !== "stderr") {
      throw new TypeError(`from has an unknown stream '${key}' (expected stdout or stderr)`);
    }
  }
  return [one("from.stdout", from.stdout), one("from.stderr", from.stderr)];
}

/** What the server gives a process session. */
export interface ProcessHost {
  /** The live connection to the daemon, or null while it is away. */
  connection(daemonId: string): Connection | null;
  /** Forget the handle once it has nothing more to do. */
  release(process: ProcessSession): void;
  /** How long to wait for the daemon to come back. */
  readonly reconnectGraceMs: number;
}

/** Construction parameters. */
export interface RemoteProcessInit {
  host: ProcessHost;
  daemonId: string;
  command: string | string[];
  window: number;
  outputs: { name: string; from: number | null }[];
  stdin: boolean;
  /** A terminal session (counted as terminal bytes, not process output and stdin). @default false */
  terminal?: boolean;
  onGap?: ((gap: Gap) => void) | undefined;
}

export class ProcessSession {
  /** The public handle given to the user. */
  readonly handle: RemoteProcess = new RemoteProcess();
  /** The daemon it runs on. */
  readonly daemonId: string;
  /** The command. */
  readonly command: string | string[];
  /** Bytes lost to retention overflow while nobody read (empty unless the link was down too long). */
  readonly gaps: Gap[] = [];
  /** How it ended. Rejects with `DaemonDisconnectedError` when the daemon stays away past the grace. */
  readonly status: Promise<ProcessStatus>;
  #id = "";
  #pid = 0;
  readonly #host: ProcessHost;
  readonly #outputs: InboundStream[];
  readonly #stdin: OutboundStream | null;
  readonly #window: number;
  #exit: ProcessStatus | null = null;
  #resolve!: (status: ProcessStatus) => void;
  #reject!: (error: Error) => void;
  #graceTimer: ReturnType<typeof setTimeout> | undefined;
  #failed: Error | null = null;
  #released = false;

  constructor(init: RemoteProcessInit) {
    sessions.set(this.handle, this);
    this.#host = init.host;
    this.daemonId = init.daemonId;
    this.command = init.command;
    this.#window = init.window;
    this.status = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.status.catch(() => {});
    this.#outputs = init.outputs.map(({ name, from }) =>
      new InboundStream({
        name,
        window: init.window,
        from,
        kind: init.terminal ? KIND_TERMINAL : KIND_PROCESS,
        onGap: (gap) => {
          this.gaps.push(gap);
          init.onGap?.(gap);
        },
        onEnd: () => this.#maybeRelease(),
      })
    );
    this.#stdin = init.stdin
      ? new OutboundStream({
        window: init.window,
        daemonId: init.daemonId,
        kind: init.terminal ? KIND_TERMINAL : KIND_STDIN,
        check: () => {
          if (this.#exit) {
            throw new ProcessExitedError(this.daemonId, {
              code: "PROCESS_EXITED",
              message: `Process ${this.#id} has exited; cannot write to its stdin`,
            });
          }
        },
      })
      : null;
  }

  /** The daemon's process id (stable across reconnects; use it with `server.attach`). */
  get id(): string {
    return this.#id;
  }

  /** The OS process id on the worker. */
  get pid(): number {
    return this.#pid;
  }

  /** Standard output (or the terminal output), byte-exact. Reading is what returns credit to the daemon. */
  get stdout(): ReadableStream<Uint8Array> {
    return this.#outputs[0]!.readable;
  }

  /** Standard error. Empty for terminal processes. */
  get stderr(): ReadableStream<Uint8Array> {
    return (this.#outputs[1] ?? EMPTY).readable;
  }

  /** Standard input. Closing it delivers EOF to the child. */
  get stdin(): WritableStream<Uint8Array> {
    if (!this.#stdin) throw new TypeError(`Process ${this.#id} was started without stdin`);
    return this.#stdin.writable;
  }

  /** The exit status if it is known already. */
  get exited(): ProcessStatus | null {
    return this.#exit;
  }

  /** The stdin stream. */
  get input(): OutboundStream | null {
    return this.#stdin;
  }

  /**
   * Send a signal to the process group. `SIGTERM` (the default) escalates to `SIGKILL` after the daemon's grace.
   * Once the process has exited, the signal still reaches what its group left behind (a background job: the
   * `lingering` members of `ProcessInfo`); only the daemon knows whether any are left, so it is asked.
   *
   * @param signal The signal.
   * @throws {SignalNotAllowedError} For a signal outside the allowed set.
   * @throws {ProcessExitedError} When the process has exited and nothing of its group is left (or the daemon
   * forgot it, or is away).
   */
  async kill(signal: Deno.Signal = "SIGTERM"): Promise<void> {
    if (!SIGNALS.includes(signal)) throw new SignalNotAllowedError(signal, SIGNALS);
    if (!this.#exit) {
      await this.#conn().request("signal", { proc: this.#id, signal });
      return;
    }
    // The daemon answers PROCESS_EXITED when no member of the group lingers.
    const exited = () =>
      new ProcessExitedError(this.daemonId, {
        code: "PROCESS_EXITED",
        message: `Process ${this.#id} has already exited`,
      });
    const conn = this.#host.connection(this.daemonId);
    if (!conn) throw exited();
    try {
      await conn.request("signal", { proc: this.#id, signal });
    } catch (error) {
      if (error instanceof UnknownProcessError || error instanceof DaemonDisconnectedError) {
        throw exited();
      }
      throw error;
    }
  }

  /** Stop following the process without killing it; it can be attached again later. */
  async detach(): Promise<void> {
    const conn = this.#host.connection(this.daemonId);
    this.#fail(new Error(`Detached from process ${this.#id}`));
    if (conn) await conn.request("detach", { proc: this.#id }).catch(() => {});
  }

  #conn(): Connection {
    const conn = this.#host.connection(this.daemonId);
    if (!conn) throw new DaemonDisconnectedError(this.daemonId);
    return conn;
  }

  /** Route new streams on `conn`; returns the stream ids for the spawn or attach request. */
  bindStreams(conn: Connection): { outputs: number[]; stdin: number | undefined } {
    const outputs = this.#outputs.map((stream) => {
      const sid = conn.nextSid();
      if (stream.live) stream.bind(conn, sid);
      return sid;
    });
    const stdin = this.#stdin ? conn.nextSid() : undefined;
    return { outputs, stdin };
  }

  /** The daemon accepted the spawn or attach. */
  started(
    conn: Connection,
    proc: string,
    pid: number,
    stdinSid: number | undefined,
    stdinOffset: number,
  ): void {
    this.#id = proc;
    this.#pid = pid;
    clearTimeout(this.#graceTimer);
    this.#graceTimer = undefined;
    if (this.#stdin && stdinSid !== undefined) this.#stdin.bind(conn, stdinSid, stdinOffset);
  }

  /** Re-attach on a new connection after a reconnect. */
  async reattach(conn: Connection): Promise<void> {
    if (this.#failed || this.#released) return;
    const { outputs, stdin } = this.bindStreams(conn);
    const resume = (i: number) => {
      const stream = this.#outputs[i];
      return stream?.live ? { sid: outputs[i]!, from: stream.received } : undefined;
    };
    const stdout = resume(0);
    const stderr = resume(1);
    try {
      const data = await conn.request("attach", {
        proc: this.#id,
        window: this.#window,
        ...(stdout ? { stdout } : {}),
        ...(stderr ? { stderr } : {}),
        ...(stdin !== undefined && !this.#exit ? { stdin } : {}),
      });
      this.started(conn, this.#id, this.#pid, stdin, data.stdinOffset);
    } catch (error) {
      // Dropped again while re-attaching: the grace timer is running, the next reconnect tries again.
      if (error instanceof DaemonDisconnectedError) return;
      this.#fail(error as Error);
    }
  }

  /** The link dropped; wait for the daemon to come back. */
  linkLost(): void {
    if (this.#failed || this.#released) return;
    clearTimeout(this.#graceTimer);
    this.#graceTimer = setTimeout(
      () => this.#fail(new DaemonDisconnectedError(this.daemonId)),
      this.#host.reconnectGraceMs,
    );
  }

  /** The daemon reported the exit. */
  exit(status: ProcessStatus): void {
    if (this.#exit) return;
    this.#exit = status;
    this.#stdin?.fail(
      new ProcessExitedError(this.daemonId, {
        code: "PROCESS_EXITED",
        message: `Process ${this.#id} has exited`,
      }),
    );
    this.#resolve(status);
    this.#maybeRelease();
  }

  /**
   * Hand output `index` (0 stdout, 1 stderr) to `onChunk` straight from its queue, without a
   * ReadableStream; exclusive with the `stdout`/`stderr` getters. Resolves at its end.
   */
  drainOutput(index: 0 | 1, onChunk: (chunk: Uint8Array) => void): Promise<void> {
    const stream = this.#outputs[index];
    return stream ? stream.drain(onChunk) : Promise.resolve();
  }

  /** Give up: fail every stream and the status. */
  fail(error: Error): void {
    this.#fail(error);
  }

  #fail(error: Error): void {
    if (this.#failed) return;
    this.#failed = error;
    clearTimeout(this.#graceTimer);
    for (const stream of this.#outputs) stream.fail(error);
    this.#stdin?.fail(error);
    this.#reject(error);
    this.#release();
  }

  #maybeRelease(): void {
    if (this.#exit && this.#outputs.every((s) => !s.live)) this.#release();
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    clearTimeout(this.#graceTimer);
    this.#host.release(this);
  }
}

const EMPTY = {
  get readable(): ReadableStream<Uint8Array> {
    return new ReadableStream({ start: (c) => c.close() });
  },
};
