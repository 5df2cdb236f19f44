// A terminal over the control API's WebSocket (`GET /api/v1/daemons/{id}/terminal`): binary frames are terminal
// bytes both ways, text frames JSON control (`open`, `exit` from the controller; `resize`, `detach`, `kill` to it).
// When the WebSocket drops before the session ended, the handle re-attaches (`?attach={id}&from=N`) from the first
// byte not received. Signals go through the process route, whose answers carry errors.
import { SIGNALS } from "@sandd/protocol/constants";
import type { ShellHandle } from "./controller.ts";
import type { Gap, ProcessStatus } from "./process.ts";
import type { AttachShellOptions, ShellOptions } from "./shell.ts";
import {
  DaemonNotFoundError,
  ProcessExitedError,
  SignalNotAllowedError,
  UnknownProcessError,
} from "./errors.ts";
import { ControlApiError } from "./_client_errors.ts";
import type { Query, Transport } from "./_client_http.ts";
import { Retry } from "./_client_resume.ts";
import { processInfo } from "./_client_wire.ts";

/** What to open: a new session, or one already on the worker. */
export type ShellTarget =
  | { kind: "new"; options: ShellOptions }
  | { kind: "attach"; shellId: string; options: AttachShellOptions };

const encoder = new TextEncoder();

function checkSize(name: string, value: unknown): void {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw new RangeError(`${name} must be an integer from 1 to 65535, got ${String(value)}`);
  }
}

/** The query of a new session: one `command` is a shell string, several are an argv. */
function newSessionQuery(options: ShellOptions): Query {
  const command = options.command;
  return {
    cols: options.cols,
    rows: options.rows,
    command: command === undefined ? undefined : typeof command === "string" ? command : command,
    cwd: options.cwd,
    env: options.env ? Object.entries(options.env).map(([k, v]) => `${k}=${v}`) : undefined,
    scrollback: options.scrollback,
    timeout: options.timeout,
  };
}

interface Opened {
  socket: WebSocket;
  id: string;
  pid: number;
  /** Offset of the first byte the socket will send, when the controller says. */
  offset: number | undefined;
}

/** A `ShellHandle` over the control API. */
class ClientShell implements ShellHandle {
  readonly daemonId: string;
  readonly id: string;
  readonly pid: number;
  readonly output: ReadableStream<Uint8Array>;
  /** How the program ended (as `RemoteShell.exited`). */
  readonly exited: Promise<ProcessStatus>;
  readonly gaps: Gap[] = [];
  readonly #transport: Transport;
  readonly #onGap: ((gap: Gap) => void) | undefined;
  readonly #stop = new AbortController();
  #socket: WebSocket;
  #received: number;
  #output!: ReadableStreamDefaultController<Uint8Array>;
  #ended = false;
  #exit: ProcessStatus | null = null;
  #resolve!: (status: ProcessStatus) => void;
  #reject!: (error: unknown) => void;
  #reconnecting: Promise<void> | null = null;

  constructor(
    transport: Transport,
    daemonId: string,
    opened: Opened,
    from: number,
    onGap: ((gap: Gap) => void) | undefined,
  ) {
    this.#transport = transport;
    this.daemonId = daemonId;
    this.id = opened.id;
    this.pid = opened.pid;
    this.#onGap = onGap;
    this.#socket = opened.socket;
    this.#received = from;
    this.exited = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.exited.catch(() => {});
    this.output = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#output = controller;
      },
      cancel: () => {
        this.#ended = true;
      },
    });
    this.#gapTo(opened.offset);
    this.#attach(opened.socket);
    const onClosed = () => this.#fail(transport.closed.reason);
    if (transport.closed.aborted) onClosed();
    else transport.closed.addEventListener("abort", onClosed, { once: true });
  }

  #gapTo(offset: number | undefined): void {
    if (offset === undefined || offset <= this.#received) return;
    const gap = { stream: "output", from: this.#received, to: offset };
    this.#received = offset;
    this.gaps.push(gap);
    this.#onGap?.(gap);
  }

  #attach(socket: WebSocket): void {
    socket.onmessage = (event) => {
      if (socket !== this.#socket) return;
      if (event.data instanceof ArrayBuffer) {
        const bytes = new Uint8Array(event.data);
        this.#received += bytes.length;
        if (!this.#ended) this.#output.enqueue(bytes);
        return;
      }
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(String(event.data));
      } catch {
        return;
      }
      if (message.type === "exit") {
        this.#exit = {
          exitCode: typeof message.exitCode === "number" ? message.exitCode : -1,
          signal: typeof message.signal === "string" ? message.signal as Deno.Signal : null,
          timedOut: message.timedOut === true,
        };
        this.#resolve(this.#exit);
      } else if (message.type === "error") {
        this.#fail(
          new ControlApiError(
            typeof message.code === "string" ? message.code : "TERMINAL",
            typeof message.message === "string" ? message.message : "Terminal error",
          ),
        );
      }
    };
    socket.onclose = () => {
      if (socket !== this.#socket) return;
      if (this.#exit) return this.#end();
      if (this.#stop.signal.aborted) return;
      this.#reconnecting ??= this.#reconnect().finally(() => this.#reconnecting = null);
    };
  }

  /** The socket dropped before the session ended: attach again from the first byte not received. */
  async #reconnect(): Promise<void> {
    const retry = new Retry(this.#transport.reconnectTimeoutMs, this.#stop.signal);
    while (!this.#stop.signal.aborted) {
      try {
        const opened = await connect(this.#transport, this.daemonId, {
          attach: this.id,
          from: this.#received,
        }, this.#stop.signal);
        if (this.#stop.signal.aborted) {
          opened.socket.close();
          return;
        }
        this.#socket = opened.socket;
        this.#gapTo(opened.offset);
        this.#attach(opened.socket);
        return;
      } catch (error) {
        try {
          await retry.failed(error);
        } catch (final) {
          // The session may have ended while the socket was down: learn how.
          if (final instanceof UnknownProcessError || final instanceof ControlApiError) {
            this.#fail(final);
            return;
          }
          this.#fail(final);
          return;
        }
      }
    }
  }

  #end(): void {
    if (this.#stop.signal.aborted) return;
    this.#stop.abort();
    if (!this.#ended) {
      this.#ended = true;
      try {
        this.#output.close();
      } catch {
        // closed already
      }
    }
  }

  #fail(error: unknown): void {
    if (this.#stop.signal.aborted) return;
    this.#stop.abort(error);
    this.#reject(error);
    if (!this.#ended) {
      this.#ended = true;
      try {
        this.#output.error(error);
      } catch {
        // closed already
      }
    }
    try {
      this.#socket.close();
    } catch {
      // closed already
    }
  }

  #exitedError(action: string): ProcessExitedError {
    return new ProcessExitedError(this.daemonId, {
      code: "PROCESS_EXITED",
      message: `Shell ${this.id} has exited; cannot ${action}`,
    });
  }

  /** Send on the socket, waiting out a reconnect. */
  async #send(data: string | Uint8Array, action: string): Promise<void> {
    if (this.#exit) throw this.#exitedError(action);
    if (this.#stop.signal.aborted) throw this.#stop.signal.reason ?? this.#exitedError(action);
    if (this.#reconnecting) await this.#reconnecting;
    if (this.#socket.readyState !== WebSocket.OPEN) {
      if (this.#exit) throw this.#exitedError(action);
      throw this.#stop.signal.reason ??
        new ControlApiError("UNREACHABLE", `The terminal connection of shell ${this.id} is closed`);
    }
    this.#socket.send(data);
  }

  write(data: string | Uint8Array): Promise<void> {
    let bytes: Uint8Array;
    if (typeof data === "string") bytes = encoder.encode(data);
    else if (data instanceof Uint8Array) bytes = data.slice();
    else throw new TypeError(`data must be a string or Uint8Array, got ${typeof data}`);
    return this.#send(bytes, "write");
  }

  async resize(cols: number, rows: number): Promise<void> {
    checkSize("cols", cols);
    checkSize("rows", rows);
    await this.#send(JSON.stringify({ type: "resize", cols, rows }), "resize");
  }

  async kill(signal: Deno.Signal = "SIGHUP"): Promise<void> {
    if (!SIGNALS.includes(signal)) throw new SignalNotAllowedError(signal, SIGNALS);
    await this.#transport.json(
      "POST",
      `/daemons/${encodeURIComponent(this.daemonId)}/processes/${
        encodeURIComponent(this.id)
      }/signal`,
      { json: { signal }, context: { daemonId: this.daemonId } },
    );
  }

  detach(): Promise<void> {
    if (this.#stop.signal.aborted) return Promise.resolve();
    try {
      if (this.#socket.readyState === WebSocket.OPEN) {
        this.#socket.send(JSON.stringify({ type: "detach" }));
      }
    } catch {
      // closing anyway
    }
    this.#fail(new Error(`Detached from shell ${this.id}`));
    return Promise.resolve();
  }

  async close(): Promise<ProcessStatus> {
    if (!this.#exit) {
      try {
        await this.kill("SIGHUP");
      } catch (error) {
        if (!(error instanceof ProcessExitedError) && !(error instanceof UnknownProcessError)) {
          throw error;
        }
      }
    }
    const status = await this.exited;
    if (!this.output.locked) await this.output.cancel().catch(() => {});
    return status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close().catch(() => {});
  }
}

/** Open the terminal WebSocket and wait for its `open` message. */
function connect(
  transport: Transport,
  daemonId: string,
  query: Query,
  signal: AbortSignal,
): Promise<Opened> {
  const url = transport.url(`/daemons/${encodeURIComponent(daemonId)}/terminal`, query);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return new Promise<Opened>((resolve, reject) => {
    const socket = new WebSocket(
      url,
      transport.webSocketOptions() as unknown as string[],
    );
    socket.binaryType = "arraybuffer";
    const timer = setTimeout(() => {
      fail(
        new ControlApiError(
          "TIMEOUT",
          `The controller at ${transport.base} did not open the terminal within ${transport.requestTimeoutMs} ms`,
        ),
      );
    }, transport.requestTimeoutMs);
    const onAbort = () => fail(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      socket.onmessage = null;
      socket.onerror = null;
      socket.onclose = null;
    };
    const fail = (error: unknown) => {
      done();
      try {
        socket.close();
      } catch {
        // closed already
      }
      reject(error);
    };
    socket.onmessage = (event) => {
      if (typeof event.data !== "string") return;
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(event.data);
      } catch {
        return fail(
          new ControlApiError("BAD_RESPONSE", `The terminal sent a malformed control message`),
        );
      }
      if (message.type === "error") {
        return fail(
          new ControlApiError(
            typeof message.code === "string" ? message.code : "TERMINAL",
            String(message.message ?? "Terminal error"),
          ),
        );
      }
      if (message.type !== "open") return;
      if (typeof message.id !== "string" || typeof message.pid !== "number") {
        return fail(
          new ControlApiError(
            "BAD_RESPONSE",
            `The terminal sent a malformed open message: ${JSON.stringify(message)}`,
          ),
        );
      }
      done();
      resolve({
        socket,
        id: message.id,
        pid: message.pid,
        offset: typeof message.offset === "number" ? message.offset : undefined,
      });
    };
    const refused = () =>
      fail(
        new ControlApiError(
          "UNREACHABLE",
          `The controller at ${transport.base} refused or dropped the terminal WebSocket`,
        ),
      );
    socket.onerror = refused;
    socket.onclose = refused;
  });
}

/**
 * Why a terminal could not be opened: the WebSocket API gives no answer body, so ask the JSON routes (the daemon,
 * the session) for the error to throw.
 */
async function diagnose(
  transport: Transport,
  daemonId: string,
  shellId: string | undefined,
  error: unknown,
): Promise<unknown> {
  if (!(error instanceof ControlApiError) || error.code !== "UNREACHABLE") return error;
  try {
    const base = `/daemons/${encodeURIComponent(daemonId)}`;
    await transport.json("GET", base, { context: { daemonId } });
    if (shellId !== undefined) {
      processInfo(
        await transport.json("GET", `${base}/processes/${encodeURIComponent(shellId)}`, {
          context: { daemonId },
        }),
      );
    }
  } catch (cause) {
    if (cause instanceof DaemonNotFoundError || cause instanceof UnknownProcessError) return cause;
    if (cause instanceof ControlApiError || cause instanceof Error) return cause;
  }
  return error;
}

/** Open a terminal (new or attached) over the API. */
export async function openShell(
  transport: Transport,
  daemonId: string,
  target: ShellTarget,
): Promise<ShellHandle> {
  const from = target.kind === "attach" ? target.options.from ?? null : 0;
  const query: Query = target.kind === "new"
    ? newSessionQuery(target.options)
    : { attach: target.shellId, from: from ?? undefined };
  let opened: Opened;
  try {
    opened = await connect(transport, daemonId, query, transport.closed);
  } catch (error) {
    throw await diagnose(
      transport,
      daemonId,
      target.kind === "attach" ? target.shellId : undefined,
      error,
    );
  }
  // With `from: null` the replay starts wherever the scrollback does: not a gap.
  const start = from ?? opened.offset ?? 0;
  return new ClientShell(
    transport,
    daemonId,
    opened,
    start,
    target.kind === "attach" ? target.options.onGap : undefined,
  );
}
