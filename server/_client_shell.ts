// A terminal over the control API's WebSocket (`GET /api/v1/daemons/{id}/terminal`, served by
// server/control/terminal.ts): binary frames are terminal bytes both ways, text frames JSON control (`open`,
// `gap`, `resize`, `viewers`, `error`, `exit` from the controller; `resize`, `detach`, `ack` to it). Output is flow
// controlled (`flow=`, acknowledged as the reader takes it), so a reader that falls behind pauses the program as
// on the embedded handle. When the WebSocket drops before the session ended, the handle re-attaches
// (`?attach={id}&from=N`) from the first byte not received. Signals go through the process route, whose answers
// carry errors. The route takes the command as one shell string: an argv is quoted into one, and `env` is put in
// front with `env(1)`.
import { SIGNALS } from "@sandd/protocol/constants";
import type { ShellHandle } from "./controller.ts";
import type { Gap, ProcessStatus } from "./process.ts";
import type { AttachShellOptions, ShellOptions } from "./shell.ts";
import {
  DaemonDisconnectedError,
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

/** Terminal bytes the controller may send beyond what the reader has taken. */
const FLOW_BYTES = 1024 * 1024;
/** Acknowledge once this much has been taken since the last acknowledgement. */
const ACK_EVERY = 64 * 1024;
/** Controller `error` messages after which the socket closes and the session handle is done. */
const FATAL = new Set(["STREAM", "DISCONNECTED"]);

const encoder = new TextEncoder();

function checkSize(name: string, value: unknown): void {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw new RangeError(`${name} must be an integer from 1 to 65535, got ${String(value)}`);
  }
}

/** One word for `sh`: as it is when it is safe, else in single quotes. */
function quote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * The one shell string the route takes: a string as it is, an argv quoted, and `env` in front through `env(1)`
 * (the login shell, when no command is given, is started as the daemon would: `$SHELL -l`, else `bash -l`, else
 * `sh -l`, with the given environment already in place).
 */
export function terminalCommand(
  command: string | string[] | undefined,
  env: Record<string, string> | undefined,
): string | undefined {
  const vars = Object.entries(env ?? {}).map(([k, v]) => quote(`${k}=${v}`));
  if (vars.length === 0) {
    if (command === undefined || typeof command === "string") return command;
    return command.map(quote).join(" ");
  }
  const login = 'if [ -n "$SHELL" ] && [ -x "$SHELL" ]; then exec "$SHELL" -l; ' +
    "elif command -v bash >/dev/null; then exec bash -l; else exec sh -l; fi";
  const argv = command === undefined
    ? ["sh", "-c", login]
    : typeof command === "string"
    ? ["sh", "-c", command]
    : command;
  return `exec env ${vars.join(" ")} ${argv.map(quote).join(" ")}`;
}

interface Opened {
  socket: WebSocket;
  id: string;
  pid: number;
  /** Output offset of the first byte the socket sends (before any `gap` message). */
  offset: number;
  /** Gaps announced before `open` was handled (none: they follow it on the socket). */
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
  /** Output offset of the next byte. */
  #received: number;
  /** Bytes received on the current socket, and how many of them were acknowledged. */
  #socketBytes = 0;
  #acked = 0;
  /** Whether gaps are reported (not for the first replay of an attach that asked for the whole scrollback). */
  #quietGaps: boolean;
  #output!: ReadableStreamDefaultController<Uint8Array>;
  #ended = false;
  #exit: ProcessStatus | null = null;
  #refusal: Error | null = null;
  #resolve!: (status: ProcessStatus) => void;
  #reject!: (error: unknown) => void;
  #reconnecting: Promise<void> | null = null;

  constructor(
    transport: Transport,
    daemonId: string,
    opened: Opened,
    quietGaps: boolean,
    onGap: ((gap: Gap) => void) | undefined,
  ) {
    this.#transport = transport;
    this.daemonId = daemonId;
    this.id = opened.id;
    this.pid = opened.pid;
    this.#onGap = onGap;
    this.#socket = opened.socket;
    this.#received = opened.offset;
    this.#quietGaps = quietGaps;
    this.exited = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.exited.catch(() => {});
    this.output = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#output = controller;
      },
      // Called when the reader has taken everything queued: tell the controller.
      pull: () => this.#ack(false),
      cancel: () => {
        this.#ended = true;
        this.#ack(true);
      },
    }, { highWaterMark: 0 });
    this.#attach(opened.socket);
    const onClosed = () => this.#fail(transport.closed.reason);
    if (transport.closed.aborted) onClosed();
    else transport.closed.addEventListener("abort", onClosed, { once: true });
  }

  /** Acknowledge what the reader took (everything, once it stopped reading). */
  #ack(force: boolean): void {
    const bytes = this.#socketBytes;
    if (bytes === this.#acked || (!force && bytes - this.#acked < ACK_EVERY)) return;
    this.#acked = bytes;
    if (this.#socket.readyState === WebSocket.OPEN) {
      this.#socket.send(JSON.stringify({ type: "ack", bytes }));
    }
  }

  #attach(socket: WebSocket): void {
    socket.onmessage = (event) => {
      if (socket !== this.#socket) return;
      if (event.data instanceof ArrayBuffer) return this.#bytes(new Uint8Array(event.data));
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(String(event.data));
      } catch {
        return;
      }
      this.#control(message);
    };
    socket.onclose = () => {
      if (socket !== this.#socket) return;
      if (this.#exit) return this.#end();
      if (this.#stop.signal.aborted) return;
      this.#reconnecting ??= this.#reconnect().finally(() => this.#reconnecting = null);
    };
  }

  #bytes(bytes: Uint8Array): void {
    this.#socketBytes += bytes.length;
    this.#received += bytes.length;
    this.#quietGaps = false;
    if (this.#ended) return this.#ack(true);
    this.#output.enqueue(bytes);
  }

  #control(message: Record<string, unknown>): void {
    switch (message.type) {
      case "gap": {
        const { from, to } = message;
        if (typeof from !== "number" || typeof to !== "number" || to <= from) return;
        if (to <= this.#received) return;
        const gap = { stream: "output", from: Math.max(from, this.#received), to };
        this.#received = to;
        if (this.#quietGaps) return;
        this.gaps.push(gap);
        this.#onGap?.(gap);
        return;
      }
      case "exit":
        this.#exit = {
          exitCode: typeof message.exitCode === "number" ? message.exitCode : -1,
          signal: typeof message.signal === "string" ? message.signal as Deno.Signal : null,
          timedOut: message.timedOut === true,
        };
        this.#resolve(this.#exit);
        return;
      case "error": {
        const code = typeof message.code === "string" ? message.code : "TERMINAL";
        const text = typeof message.message === "string" ? message.message : "Terminal error";
        if (code === "DISCONNECTED") {
          return this.#fail(new DaemonDisconnectedError(this.daemonId, text));
        }
        if (FATAL.has(code)) return this.#fail(new ControlApiError(code, text));
        // A refused write or resize: the next call reports it.
        this.#refusal = code === "PROCESS_EXITED"
          ? this.#exitedError("write")
          : new ControlApiError(code, text);
        return;
      }
    }
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
        this.#socketBytes = 0;
        this.#acked = 0;
        this.#attach(opened.socket);
        return;
      } catch (error) {
        try {
          await retry.failed(error);
        } catch (final) {
          this.#fail(await diagnose(this.#transport, this.daemonId, this.id, final));
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
    if (this.#reconnecting) await this.#reconnecting;
    if (this.#stop.signal.aborted) {
      throw this.#exit ? this.#exitedError(action) : this.#stop.signal.reason;
    }
    const refusal = this.#refusal;
    if (refusal) {
      this.#refusal = null;
      throw refusal;
    }
    if (this.#socket.readyState !== WebSocket.OPEN) {
      throw new ControlApiError(
        "UNREACHABLE",
        `The terminal connection of shell ${this.id} is closed`,
      );
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
    // Nobody reads the output any more: let it flow, or the exit (which follows the output) never comes.
    if (!this.output.locked) await this.output.cancel().catch(() => {});
    if (!this.#exit && !this.#stop.signal.aborted) {
      try {
        await this.kill("SIGHUP");
      } catch (error) {
        if (!(error instanceof ProcessExitedError) && !(error instanceof UnknownProcessError)) {
          throw error;
        }
      }
    }
    return await this.exited;
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
  const url = transport.url(`/daemons/${encodeURIComponent(daemonId)}/terminal`, {
    ...query,
    flow: FLOW_BYTES,
  });
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return new Promise<Opened>((resolve, reject) => {
    // Deno's WebSocket takes headers (the token) and an HTTP client (trusted certificates) as options.
    const socket = new WebSocket(url, transport.webSocketOptions());
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
          new ControlApiError("BAD_RESPONSE", "The terminal sent a malformed control message"),
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
      if (
        typeof message.id !== "string" || typeof message.pid !== "number" ||
        (message.offset !== undefined && typeof message.offset !== "number")
      ) {
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
        offset: typeof message.offset === "number" ? message.offset : Number(query.from ?? 0),
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
 * Why a terminal could not be opened: the WebSocket gives no answer body, so ask the JSON routes (the daemon,
 * the session) for the error to throw.
 */
async function diagnose(
  transport: Transport,
  daemonId: string,
  shellId: string | undefined,
  error: unknown,
): Promise<unknown> {
  if (!(error instanceof ControlApiError) || error.code !== "UNREACHABLE") return error;
  const base = `/daemons/${encodeURIComponent(daemonId)}`;
  try {
    await transport.json("GET", base, { context: { daemonId } });
    if (shellId !== undefined) {
      processInfo(
        await transport.json("GET", `${base}/processes/${encodeURIComponent(shellId)}`, {
          context: { daemonId },
        }),
      );
    }
    // The route itself may refuse (a controller without terminals): its plain answer says so.
    const plain = await transport.call("GET", `${base}/terminal`, { context: { daemonId } });
    await plain.body?.cancel();
  } catch (cause) {
    // 400 "expected a WebSocket upgrade": the route is there, the refusal was something else.
    if (cause instanceof TypeError) return error;
    return cause;
  }
  return error;
}

function checkTarget(target: ShellTarget): void {
  if (target.kind !== "new") return;
  const options = target.options;
  for (const name of ["scrollback", "timeout", "record"] as const) {
    if (options[name] !== undefined) {
      throw new ControlApiError(
        "UNSUPPORTED",
        `The shell option '${name}' is not supported over the control API (its terminal route has none)`,
      );
    }
  }
}

/** Open a terminal (new or attached) over the API. */
export async function openShell(
  transport: Transport,
  daemonId: string,
  target: ShellTarget,
): Promise<ShellHandle> {
  checkTarget(target);
  let query: Query;
  let quiet = false;
  if (target.kind === "new") {
    const o = target.options;
    query = {
      ...(o.cols !== undefined || o.rows !== undefined
        ? { cols: o.cols ?? 80, rows: o.rows ?? 24 }
        : {}),
      command: terminalCommand(o.command, o.env),
      cwd: o.cwd,
    };
  } else {
    // Asked for the whole scrollback: ask from 0, so that where it really starts is told (as a gap, not
    // reported: the caller did not ask for older bytes).
    const from = target.options.from ?? null;
    quiet = from === null;
    query = { attach: target.shellId, from: from ?? 0 };
  }
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
  return new ClientShell(
    transport,
    daemonId,
    opened,
    quiet,
    target.kind === "attach" ? target.options.onGap : undefined,
  );
}
