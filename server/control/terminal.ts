/**
 * The terminal WebSocket of the control API, `GET /api/v1/daemons/{id}/terminal` (and the console's
 * `/console/terminal/{id}`, which shares the bridge): a browser or a script types into a shell on a worker.
 *
 * Query: `?cols&rows&command&cwd` opens a new session (`command` as a shell string, default the login shell);
 * `?attach={proc}` joins a session already on the worker (`&from=N` replays from output offset N, default the
 * whole retained scrollback; `&cols&rows` resize it, taking the size over); `&readOnly=true` only watches (the
 * API route needs the `exec` scope either way; the console lets `read` clients watch). `&flow=BYTES` turns on the browser's flow control:
 * at most that many bytes are sent beyond the client's last `ack`, so a page that draws slowly slows the program
 * instead of queueing without bound.
 *
 * Frames: binary = terminal bytes both ways. Text = JSON control. Server → client: `{ type: "open", id, pid,
 * offset, readOnly, cols, rows }` first (`offset`: output offset of the next byte; `cols`/`rows` null when not
 * known), `{ type: "gap", from, to }` before bytes that follow a skipped range (the daemon's scrollback overflowed
 * or this viewer fell behind the controller's; the client may reset its screen), `{ type: "resize", cols, rows }`
 * when another viewer resized, `{ type: "viewers", count }` when the number of viewers on this controller
 * changes, `{ type: "error", code, message }` for a refused message, and `{ type: "exit", exitCode, signal }`
 * last. Client → server: `{ type: "resize", cols, rows }`, `{ type: "detach" }` (the session stays; closing the
 * socket does the same), `{ type: "kill", signal? }` (default `SIGHUP`), `{ type: "ack", bytes }` (total terminal
 * bytes processed, with `flow`).
 *
 * @module
 */

import type { HttpRequest } from "../_http1_request.ts";
import { SIGNALS } from "@sandd/protocol/messages";
import type { Server } from "../server.ts";
import type { RemoteShell } from "../shell.ts";
import type { ControlContext } from "./_context.ts";
import { upgradeWebSocket } from "../_http1_request.ts";
import { badRequest, errorResponse, HttpError } from "./_errors.ts";

/** Largest JSON control message from a client. */
const MAX_CONTROL_BYTES = 4096;
/** Beyond this many bytes queued on the socket, sending waits (for clients without `flow`). */
const MAX_BUFFERED = 1024 * 1024;
const encoder = new TextEncoder();

/** How a terminal socket may be used. */
export interface TerminalSocketOptions {
  /** Whether the client may type and resize (the `exec` scope); without it only `readOnly=true` is accepted. */
  canType: boolean;
  /** Record a new session to this file (asciicast v2). @default no recording */
  record?: string;
  /** Query parameters the caller handles itself (accepted, not interpreted here). @default [] */
  ignore?: string[];
  /** Told about the session once it is open (e.g. to audit it). */
  onOpen?: (shell: RemoteShell, attached: boolean) => void;
}

interface TerminalQuery {
  attach: string | null;
  from: number | null;
  readOnly: boolean;
  cols: number | null;
  rows: number | null;
  command: string | null;
  cwd: string | null;
  flow: number | null;
}

const KNOWN = ["attach", "from", "readOnly", "cols", "rows", "command", "cwd", "flow"];

function integer(url: URL, name: string, min: number, max: number): number | null {
  const text = url.searchParams.get(name);
  if (text === null) return null;
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw badRequest(
      `${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(text)}`,
    );
  }
  return value;
}

function parseQuery(url: URL, ignore: string[]): TerminalQuery {
  for (const key of url.searchParams.keys()) {
    if (!KNOWN.includes(key) && !ignore.includes(key)) {
      throw badRequest(`Unknown query parameter ${JSON.stringify(key)}`);
    }
    if (url.searchParams.getAll(key).length > 1) {
      throw badRequest(`Query parameter ${JSON.stringify(key)} given twice`);
    }
  }
  const readOnlyText = url.searchParams.get("readOnly");
  if (readOnlyText !== null && readOnlyText !== "true" && readOnlyText !== "false") {
    throw badRequest(`readOnly must be true or false, got ${JSON.stringify(readOnlyText)}`);
  }
  const query: TerminalQuery = {
    attach: url.searchParams.get("attach"),
    from: integer(url, "from", 0, Number.MAX_SAFE_INTEGER),
    readOnly: readOnlyText === "true",
    cols: integer(url, "cols", 1, 65535),
    rows: integer(url, "rows", 1, 65535),
    command: url.searchParams.get("command"),
    cwd: url.searchParams.get("cwd"),
    flow: integer(url, "flow", 4096, 64 * 1024 * 1024),
  };
  if (query.attach === "") throw badRequest("attach must be a process id, got an empty string");
  if (query.attach === null) {
    if (query.from !== null) throw badRequest("from needs attach");
    if (query.readOnly) throw badRequest("readOnly needs attach (a new session has an owner)");
  } else if (query.command !== null || query.cwd !== null) {
    throw badRequest("command and cwd apply to a new session, not to attach");
  }
  if ((query.cols === null) !== (query.rows === null)) {
    throw badRequest("cols and rows go together");
  }
  if (query.command === "") throw badRequest("command must not be empty");
  return query;
}

/**
 * Bridge a WebSocket upgrade to a terminal session on daemon `id`. The session is opened (or joined) before the
 * upgrade, so refusals are plain HTTP answers (`{ code, message }`).
 *
 * @example From an HTTP handler
 * ```ts ignore
 * return await serveTerminalSocket(server, request, "worker-1", { canType: true });
 * ```
 *
 * @param server The controller.
 * @param request The upgrade request.
 * @param id The daemon id.
 * @param options What the client may do.
 * @returns The upgrade response, or a JSON error.
 */
export async function serveTerminalSocket(
  server: Server,
  request: HttpRequest,
  id: string,
  options: TerminalSocketOptions,
): Promise<Response> {
  let shell: RemoteShell;
  let query: TerminalQuery;
  const pending: { gaps: { from: number; to: number }[]; resize: TerminalSizeLike | null } = {
    gaps: [],
    resize: null,
  };
  let bridge: Bridge | null = null;
  try {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      throw new HttpError(400, "BAD_REQUEST", "Expected a WebSocket upgrade");
    }
    query = parseQuery(new URL(request.url), options.ignore ?? []);
    if (!query.readOnly && !options.canType) {
      throw new HttpError(403, "FORBIDDEN", "Typing into a terminal needs the exec scope");
    }
    const onGap = (gap: { from: number; to: number }) => {
      if (bridge) bridge.gap(gap.from, gap.to);
      else pending.gaps.push({ from: gap.from, to: gap.to });
    };
    const onResize = (size: TerminalSizeLike) => {
      if (bridge) bridge.resized(size);
      else pending.resize = size;
    };
    if (query.attach !== null) {
      shell = await server.attachShell(id, query.attach, {
        from: query.from,
        readOnly: query.readOnly,
        onGap,
        onResize,
      });
      if (!query.readOnly && query.cols !== null && query.rows !== null) {
        try {
          await shell.resize(query.cols, query.rows);
        } catch (error) {
          await shell.detach().catch(() => {});
          throw error;
        }
      }
    } else {
      shell = await server.shell(id, {
        ...(query.cols !== null && query.rows !== null
          ? { cols: query.cols, rows: query.rows }
          : {}),
        ...(query.command !== null ? { command: query.command } : {}),
        ...(query.cwd !== null ? { cwd: query.cwd } : {}),
        ...(options.record !== undefined ? { record: options.record } : {}),
        onGap,
      });
    }
  } catch (error) {
    return errorResponse(error);
  }
  let upgraded;
  try {
    upgraded = upgradeWebSocket(request, { idleTimeout: 60 });
  } catch (error) {
    await shell.detach().catch(() => {});
    return errorResponse(badRequest(`WebSocket upgrade failed: ${(error as Error).message}`));
  }
  options.onOpen?.(shell, query.attach !== null);
  bridge = new Bridge(upgraded.socket, shell, query);
  for (const gap of pending.gaps) bridge.gap(gap.from, gap.to);
  if (pending.resize) bridge.resized(pending.resize);
  return upgraded.response;
}

interface TerminalSizeLike {
  cols: number;
  rows: number;
}

/** One socket bridged to one shell handle. */
class Bridge {
  readonly #socket: WebSocket;
  readonly #shell: RemoteShell;
  readonly #query: TerminalQuery;
  /** Terminal bytes sent, and the client's count of those processed (with `flow`). */
  #sent = 0;
  #acked = 0;
  #done = false;
  #detached = false;
  #viewers = -1;
  #timer: ReturnType<typeof setInterval> | undefined;
  #wake: (() => void) | null = null;
  #warnedReadOnly = false;

  constructor(socket: WebSocket, shell: RemoteShell, query: TerminalQuery) {
    this.#socket = socket;
    this.#shell = shell;
    this.#query = query;
    socket.binaryType = "arraybuffer";
    socket.addEventListener("open", () => this.#start());
    socket.addEventListener("message", (event) => this.#message(event));
    socket.addEventListener("close", () => this.#closed());
    socket.addEventListener("error", () => {});
  }

  #send(message: Record<string, unknown>): void {
    if (this.#socket.readyState === WebSocket.OPEN) this.#socket.send(JSON.stringify(message));
  }

  gap(from: number, to: number): void {
    this.#send({ type: "gap", from, to });
  }

  resized(size: TerminalSizeLike): void {
    this.#send({ type: "resize", cols: size.cols, rows: size.rows });
  }

  #start(): void {
    const size = this.#shell.size;
    this.#send({
      type: "open",
      id: this.#shell.id,
      pid: this.#shell.pid,
      offset: this.#query.from ?? 0,
      readOnly: this.#shell.readOnly,
      cols: size?.cols ?? null,
      rows: size?.rows ?? null,
    });
    this.#countViewers();
    this.#timer = setInterval(() => this.#countViewers(), 2_000);
    this.#pump().catch(() => {});
  }

  #countViewers(): void {
    const count = this.#shell.viewers.length;
    if (count !== this.#viewers) {
      this.#viewers = count;
      this.#send({ type: "viewers", count });
    }
  }

  /** Whether the client can take more: its flow window (when asked for) and the socket's own buffer. */
  #room(): boolean {
    const flow = this.#query.flow;
    if (flow !== null && this.#sent - this.#acked >= flow) return false;
    return this.#socket.bufferedAmount < MAX_BUFFERED;
  }

  async #pump(): Promise<void> {
    const reader = this.#shell.output.getReader();
    try {
      while (!this.#done) {
        while (!this.#room() && !this.#done) {
          // An ack wakes this at once; the socket's buffer draining has no event, so look again shortly.
          const starved = this.#query.flow !== null && this.#sent - this.#acked >= this.#query.flow;
          let timer: ReturnType<typeof setTimeout> | undefined;
          await new Promise<void>((resolve) => {
            this.#wake = resolve;
            timer = setTimeout(resolve, starved ? 1_000 : 5);
          });
          clearTimeout(timer);
          this.#wake = null;
        }
        if (this.#done) break;
        const { done, value } = await reader.read();
        if (done) break;
        if (this.#socket.readyState !== WebSocket.OPEN) break;
        this.#socket.send(value);
        this.#sent += value.length;
      }
    } catch (error) {
      if (!this.#done) {
        this.#send({ type: "error", code: "STREAM", message: (error as Error).message });
        this.#finish(1011);
      }
      return;
    } finally {
      reader.releaseLock();
    }
    if (this.#done) return;
    try {
      const status = await this.#shell.exited;
      this.#send({ type: "exit", exitCode: status.exitCode, signal: status.signal });
      this.#finish(1000);
    } catch (error) {
      this.#send({ type: "error", code: "DISCONNECTED", message: (error as Error).message });
      this.#finish(1011);
    }
  }

  #message(event: MessageEvent): void {
    if (this.#done) return;
    if (event.data instanceof ArrayBuffer) {
      if (this.#shell.readOnly) {
        if (!this.#warnedReadOnly) {
          this.#warnedReadOnly = true;
          this.#send({ type: "error", code: "READ_ONLY", message: "This viewer is read-only" });
        }
        return;
      }
      this.#shell.write(new Uint8Array(event.data)).catch((error) => this.#refused(error));
      return;
    }
    const text = String(event.data);
    let message: Record<string, unknown>;
    try {
      if (encoder.encode(text).length > MAX_CONTROL_BYTES) throw new Error("too long");
      message = JSON.parse(text);
      if (typeof message !== "object" || message === null || Array.isArray(message)) {
        throw new Error("not an object");
      }
    } catch {
      this.#send({
        type: "error",
        code: "BAD_REQUEST",
        message: `Control messages are JSON objects under ${MAX_CONTROL_BYTES} bytes`,
      });
      return;
    }
    const allowed: Record<string, string[]> = {
      resize: ["type", "cols", "rows"],
      detach: ["type"],
      kill: ["type", "signal"],
      ack: ["type", "bytes"],
    };
    const type = message.type;
    const fields = typeof type === "string" ? allowed[type] : undefined;
    if (!fields) {
      return this.#bad(`Unknown control message type ${JSON.stringify(type)}`);
    }
    for (const key of Object.keys(message)) {
      if (!fields.includes(key)) {
        return this.#bad(`Unknown field ${JSON.stringify(key)} in ${type}`);
      }
    }
    if (type === "resize") {
      const { cols, rows } = message;
      if (!isSize(cols) || !isSize(rows)) {
        return this.#bad(
          `resize needs cols and rows from 1 to 65535, got ${JSON.stringify([cols, rows])}`,
        );
      }
      this.#shell.resize(cols, rows).catch((error) => this.#refused(error));
    } else if (type === "detach") {
      this.#detached = true;
      this.#shell.detach().catch(() => {});
      this.#finish(1000);
    } else if (type === "kill") {
      const signal = message.signal ?? "SIGHUP";
      if (typeof signal !== "string" || !SIGNALS.includes(signal as Deno.Signal)) {
        return this.#bad(
          `signal must be one of ${SIGNALS.join(", ")}, got ${JSON.stringify(signal)}`,
        );
      }
      if (this.#shell.readOnly) {
        this.#send({ type: "error", code: "READ_ONLY", message: "This viewer is read-only" });
        return;
      }
      this.#shell.kill(signal as Deno.Signal).catch((error) => this.#refused(error));
    } else if (type === "ack") {
      const bytes = message.bytes;
      if (
        typeof bytes !== "number" || !Number.isSafeInteger(bytes) || bytes < this.#acked ||
        bytes > this.#sent
      ) {
        return this.#bad(
          `ack bytes must be an integer from ${this.#acked} to ${this.#sent}, got ${
            JSON.stringify(bytes)
          }`,
        );
      }
      this.#acked = bytes;
      this.#wake?.();
    }
  }

  #bad(message: string): void {
    this.#send({ type: "error", code: "BAD_REQUEST", message });
  }

  #refused(error: unknown): void {
    const code = (error as { code?: unknown })?.code;
    this.#send({
      type: "error",
      code: typeof code === "string" ? code : "ERROR",
      message: String((error as Error)?.message ?? error),
    });
  }

  #finish(code: number): void {
    if (this.#done) return;
    this.#done = true;
    clearInterval(this.#timer);
    this.#wake?.();
    try {
      this.#socket.close(code);
    } catch {
      // already closing
    }
  }

  /** The client went away: the session stays on the worker (as after `detach`). */
  #closed(): void {
    this.#done = true;
    clearInterval(this.#timer);
    this.#wake?.();
    if (!this.#detached) {
      this.#detached = true;
      this.#shell.detach().catch(() => {});
    }
  }
}

function isSize(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= 65535;
}

/**
 * Answer a terminal request of the control API (the router has authenticated the client, checked its scope for
 * the route (`exec`) and validated `id`).
 *
 * @example Called by the router
 * ```ts ignore
 * const response = await handleTerminal(ctx, request, "worker-1");
 * ```
 *
 * @param ctx The request context.
 * @param request The upgrade request.
 * @param id The daemon id (already validated).
 * @returns The upgrade response, or a JSON error.
 */
export function handleTerminal(
  ctx: ControlContext,
  request: HttpRequest,
  id: string,
): Promise<Response> {
  const scopes = ctx.client.scopes;
  return serveTerminalSocket(ctx.server, request, id, {
    canType: scopes.has("exec") || scopes.has("admin"),
  });
}
