/**
 * The controller's HTTP listener: `Deno.serve`'s interface, hardened against connection floods.
 *
 * Why not `Deno.serve` itself (checked with Deno 2.9.6): its accept loop runs in Rust and ends on the first
 * accept error. Under descriptor exhaustion (`EMFILE`) the listener is closed and `finished` rejects with
 * "Too many open files", which, unhandled, exits the process; it has no hook to survive that, no cap on
 * connections and no deadline for a request head (a partial head stayed open for 45 s and more). So this module
 * owns the listener (`Deno.listen` / `Deno.listenTls`) and its accept loop, and hands each accepted connection to
 * Deno's HTTP server for one connection, `Deno.serveHttp` (soft-removed from the types in Deno 2, still shipped;
 * `Deno.upgradeWebSocket` and TLS work on it, and a WebSocket's round trip costs the same as on `Deno.serve`). The
 * internal `serveHttpOnConnection` (`Deno.serve`'s engine on one connection) closes an upgraded WebSocket as soon as
 * the upgrade completes, so it serves only the fast lane: plain connections whose first request is no upgrade. On
 * a Deno without `Deno.serveHttp` this falls back to plain `Deno.serve` and logs a warning that the hardening is
 * off.
 *
 * What it adds:
 * - Accept errors (`EMFILE`, `ENFILE`, ...) are logged (at most every 5 s, with a count) and retried with a
 *   backoff that ends early when a connection closes; pending connections wait in the kernel's backlog.
 * - At most `maxConnections` connections that are still HTTP (a connection upgraded to a WebSocket stops counting:
 *   it belongs to an authenticated daemon). At the cap, a new connection replaces the oldest one that is waiting
 *   for a request head, so a flood of slow heads cannot lock out a client that sends its head at once; when every
 *   connection is busy, the new one is closed.
 * - A connection must finish its request head (with the TLS handshake, when serving TLS) within `headerTimeoutMs`
 *   of being accepted or of its previous response, else it is closed.
 *
 * Known limit (Deno 2.9.6, checked): a TLS connection closed before its handshake completes keeps its socket
 * until the peer sends something or leaves, whoever closes it (this listener or `Deno.serve`). It stops counting
 * against `maxConnections` at the deadline, but a client that connects and stays silent still holds a descriptor;
 * terminate TLS in a fronting proxy where that matters.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { openPeeker, type PeekResult } from "./_http_peek.ts";
import {
  fallback,
  FastHandlerInfo,
  type FastLane,
  HandlerInfo,
  type LegacyHttpConn,
  type LegacyRequestEvent,
  type LegacyServeHttp,
  legacyServeHttp,
  NEVER,
  serveOnConnection,
} from "./_http_engines.ts";

export { requestSignalReportsDisconnect } from "./_http_engines.ts";

const log = getLogger(["sandd", "server"]);

/** Handler of {@linkcode serveHttp}: the same shape as `Deno.serve`'s. */
export type HttpHandler = (
  request: Request,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
) => Response | Promise<Response>;

/** Options of {@linkcode serveHttp}. */
export interface HttpListenerOptions {
  /** Interface to bind. @default "127.0.0.1" */
  hostname?: string | undefined;
  /** Port; 0 picks a free one (read it from `addr`). @default 0 */
  port?: number | undefined;
  /** PEM certificate chain; with `key`, the listener speaks TLS. @default undefined */
  cert?: string | undefined;
  /** PEM private key of `cert`. @default undefined */
  key?: string | undefined;
  /**
   * Most connections open at once that have not been upgraded to a WebSocket. At the cap, the oldest one waiting
   * for a request head is closed to make room, or the new one when none is waiting. @default 1_024
   */
  maxConnections?: number | undefined;
  /**
   * A connection must finish its request head (and TLS handshake) within this long of being accepted or of its
   * previous response, else it is closed. @default 10_000
   */
  headerTimeoutMs?: number | undefined;
  /**
   * Serve a plain TCP connection whose first request is not an upgrade with Deno's newer HTTP engine (the one
   * behind `Deno.serve`), which answered a small keep-alive POST in about half the time of `Deno.serveHttp` (203
   * against 380 µs p50, same run, load 7). It needs FFI permission (the first request head is looked at without
   * consuming it, and a connection that must end is shut down by its socket); without it, on TLS, and for a
   * connection that starts with an upgrade, `Deno.serveHttp` serves as before. The head deadline, the connection
   * cap, eviction and a request's `signal` behave the same on both. A WebSocket accepted on a connection that
   * started with a plain request ends as soon as it opens (clients open a new connection for a WebSocket).
   * @default true
   */
  fastLane?: boolean | undefined;
  /** Stops the listener when aborted (like {@linkcode HttpListener.shutdown}). */
  signal?: AbortSignal | undefined;
  /** Called once the socket is bound. */
  onListen?: ((addr: Deno.NetAddr) => void) | undefined;
  /** Answers for a handler that threw. @default a 500 response, the error logged */
  onError?: ((error: unknown) => Response | Promise<Response>) | undefined;
}

/** A running listener from {@linkcode serveHttp}: a `Deno.HttpServer` with the hardening's figures. */
export interface HttpListener extends Deno.HttpServer<Deno.NetAddr> {
  /** Connections open now that are still HTTP (not upgraded to a WebSocket). */
  readonly connections: number;
  /** False when this Deno lacks `Deno.serveHttp` and plain `Deno.serve` (without the hardening) is used. */
  readonly hardened: boolean;
  /** Connections handed to the fast lane so far (see {@linkcode HttpListenerOptions.fastLane}). */
  readonly fastLaneConnections: number;
}

/** The default of {@linkcode HttpListenerOptions.maxConnections}. */
export const DEFAULT_MAX_CONNECTIONS = 1_024;
/** The default of {@linkcode HttpListenerOptions.headerTimeoutMs}. */
export const DEFAULT_HEADER_TIMEOUT_MS = 10_000;

const LOG_EVERY_MS = 5_000;
const MAX_ACCEPT_BACKOFF_MS = 1_000;
/** Longest wait between two looks at a connection that has not sent its first request head yet. */
const MAX_PEEK_WAIT_MS = 64;
/**
 * How long a fast-lane connection being closed gets to end by itself (its last answer written, its graceful
 * shutdown done) before its socket is shut down under it.
 */
const LINGER_MS = 500;
/** The same for a connection closed after an error answer that left its request body unread. */
const ERROR_LINGER_MS = 50;
/** A request body of declared length up to this size is taken whole by the fast lane's engine. */
const SMALL_BODY_BYTES = 64 * 1024;

/**
 * Serve HTTP (and WebSocket upgrades) on a TCP or TLS socket, surviving descriptor exhaustion, with a cap on
 * connections and a deadline for request heads. Validates every option before binding.
 *
 * @example Serve, then shut down
 * ```ts
 * import { serveHttp } from "./_http_listener.ts";
 * const server = serveHttp({ port: 0, headerTimeoutMs: 5_000 }, () => new Response("ok"));
 * const response = await fetch(`http://127.0.0.1:${server.addr.port}/`);
 * console.log(await response.text()); // "ok"
 * await server.shutdown();
 * ```
 *
 * @param options Where to listen, TLS, and the limits.
 * @param handler Answers each request; may return `Deno.upgradeWebSocket`'s response.
 * @returns The running listener.
 */
export function serveHttp(options: HttpListenerOptions, handler: HttpHandler): HttpListener {
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  if (!Number.isSafeInteger(maxConnections) || maxConnections < 1) {
    throw new RangeError(`maxConnections must be an integer >= 1, got ${maxConnections}`);
  }
  const headerTimeoutMs = options.headerTimeoutMs ?? DEFAULT_HEADER_TIMEOUT_MS;
  if (!Number.isSafeInteger(headerTimeoutMs) || headerTimeoutMs < 1) {
    throw new RangeError(`headerTimeoutMs must be an integer >= 1, got ${headerTimeoutMs}`);
  }
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`port must be from 0 to 65535, got ${port}`);
  }
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new TypeError("cert and key must be given together");
  }
  const onError = options.onError ?? defaultOnError;
  const serveConnection = legacyServeHttp();
  if (!serveConnection) return fallback(options, port, handler, onError);
  initSignalHandling();
  const hostname = options.hostname ?? "127.0.0.1";
  const listener: Deno.Listener<Deno.Conn, Deno.NetAddr> = options.cert !== undefined &&
      options.key !== undefined
    ? Deno.listenTls({
      hostname,
      port,
      cert: options.cert,
      key: options.key,
      alpnProtocols: ["h2", "http/1.1"],
    })
    : Deno.listen({ hostname, port, transport: "tcp" });
  let fastLane: FastLane | undefined;
  const serveFast = options.fastLane === false || options.cert !== undefined
    ? undefined
    : serveOnConnection();
  const peeker = serveFast ? openPeeker() : undefined;
  if (serveFast && peeker) fastLane = { serve: serveFast, peeker };
  const server = new HardenedListener(listener, serveConnection, handler, onError, {
    maxConnections,
    headerTimeoutMs,
  }, fastLane);
  options.onListen?.(server.addr);
  const signal = options.signal;
  if (signal) {
    if (signal.aborted) void server.shutdown();
    else signal.addEventListener("abort", () => void server.shutdown(), { once: true });
  }
  return server;
}

let signalsReady = false;

/**
 * Deno sets up its signal handling the first time anything listens for a signal, and panics if that happens while
 * descriptors are exhausted (Deno 2.9.6, ext/signals: `Signals::new(...).unwrap()`; seen mid-flood). Set it up
 * now, with a listener for a signal whose default is to be ignored, removed at once.
 */
function initSignalHandling(): void {
  if (signalsReady || Deno.build.os === "windows") return;
  signalsReady = true;
  const ignore = () => {};
  try {
    Deno.addSignalListener("SIGWINCH", ignore);
    Deno.removeSignalListener("SIGWINCH", ignore);
  } catch (error) {
    log.debug("Could not set up signal handling early: {error}", { error: String(error) });
  }
}

function defaultOnError(error: unknown): Response {
  log.error("HTTP handler failed: {error}", { error: String(error) });
  return new Response("Internal Server Error", { status: 500 });
}

/** Counts repeated events and logs them at most once per {@linkcode LOG_EVERY_MS}. */
class ThrottledWarning {
  #message: string;
  #count = 0;
  #last = -Infinity;

  constructor(message: string) {
    this.#message = message;
  }

  note(detail: string): void {
    this.#count++;
    const now = performance.now();
    if (now - this.#last < LOG_EVERY_MS) return;
    log.warn(this.#message, { count: this.#count, detail });
    this.#count = 0;
    this.#last = now;
  }
}

/** One accepted connection while it is HTTP. */
class Connection {
  readonly conn: Deno.Conn;
  http: LegacyHttpConn | undefined;
  /**
   * The fast lane's engine for this connection (it took the socket). Closed through its graceful shutdown, which
   * ends an idle connection or one in the middle of a head at once (cancelling it by its signal once it is ending
   * throws where nothing can catch it: Deno 2.9.6, checked).
   */
  fast: { shutdown(): Promise<void> } | undefined;
  /** The fast-lane socket's identity, taken before its engine took it (to cut it off safely later). */
  identity: Uint8Array | undefined;
  /** The fast lane's cut-off timer of a closing connection. */
  linger: ReturnType<typeof setTimeout> | undefined;
  /** Close once the answer in flight is sent (an error answer to a request with a body). */
  closeAfter = false;
  /** Ends a wait for the first request head early (the connection closes). */
  wake: (() => void) | undefined;
  /** When its request head is due (`performance.now()` time), while it is waiting for one. */
  deadline = 0;
  inFlight = 0;
  upgraded = false;
  /** No more requests will come (the peer closed, or the connection was upgraded). */
  ended = false;
  closed = false;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }
}

/**
 * Give a fast-lane request the `signal` a `Deno.serveHttp` request has: aborted once its answer has been sent (or
 * could not be), not before. Handlers get the same behaviour on both engines, and `Deno.serve`'s engine never sees
 * its own signal read (which, Deno 2.9.6, prints a warning about its legacy abort once per process).
 */
function shadowSignal(request: Request, completed: Promise<void>): void {
  let signal: AbortSignal | undefined;
  Object.defineProperty(request, "signal", {
    configurable: true,
    get(): AbortSignal {
      if (signal === undefined) {
        const controller = new AbortController();
        signal = controller.signal;
        const abort = () =>
          controller.abort(new DOMException("The response was sent", "AbortError"));
        completed.then(abort, abort);
      }
      return signal;
    },
  });
}

class HardenedListener implements HttpListener {
  readonly hardened = true;
  readonly finished: Promise<void>;
  #listener: Deno.Listener<Deno.Conn, Deno.NetAddr>;
  #serveConnection: LegacyServeHttp;
  #handler: HttpHandler;
  #onError: (error: unknown) => Response | Promise<Response>;
  #maxConnections: number;
  #headerTimeoutMs: number;
  /** Every connection still HTTP. */
  #open = new Set<Connection>();
  /** Those waiting for a request head, oldest first: so also by deadline (every wait is `headerTimeoutMs`). */
  #waiting = new Set<Connection>();
  /**
   * The one timer behind every head deadline, due at the oldest waiting connection's. A timer per wait cost a
   * setTimeout and a clearTimeout per request, which a keep-alive API client pays on every call.
   */
  #deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  #tasks = new Set<Promise<void>>();
  #fastLane: FastLane | undefined;
  #fastLaneConnections = 0;
  #closing = false;
  #wake: (() => void) | undefined;
  #acceptFailed = new ThrottledWarning(
    "Accepting a connection failed {count} time(s) ({detail}); still listening, retrying",
  );
  #refused = new ThrottledWarning(
    "Closed {count} new connection(s) over the limit ({detail}): every connection was busy",
  );
  #evicted = new ThrottledWarning(
    "Closed {count} connection(s) waiting for a request head to make room for new ones ({detail})",
  );

  constructor(
    listener: Deno.Listener<Deno.Conn, Deno.NetAddr>,
    serveConnection: LegacyServeHttp,
    handler: HttpHandler,
    onError: (error: unknown) => Response | Promise<Response>,
    limits: { maxConnections: number; headerTimeoutMs: number },
    fastLane: FastLane | undefined,
  ) {
    this.#fastLane = fastLane;
    this.#listener = listener;
    this.#serveConnection = serveConnection;
    this.#handler = handler;
    this.#onError = onError;
    this.#maxConnections = limits.maxConnections;
    this.#headerTimeoutMs = limits.headerTimeoutMs;
    this.finished = this.#run();
  }

  get addr(): Deno.NetAddr {
    return this.#listener.addr;
  }

  get connections(): number {
    return this.#open.size;
  }

  get fastLaneConnections(): number {
    return this.#fastLaneConnections;
  }

  async #run(): Promise<void> {
    await this.#acceptLoop();
    while (this.#tasks.size > 0) await Promise.all(this.#tasks);
    this.#fastLane?.peeker.close();
  }

  async #acceptLoop(): Promise<void> {
    let backoff = 0;
    while (!this.#closing) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#closing || error instanceof Deno.errors.BadResource) break;
        // EMFILE and the like: the listener stays usable; wait for a descriptor to come back.
        this.#acceptFailed.note(String(error));
        backoff = Math.min(Math.max(backoff * 2, 10), MAX_ACCEPT_BACKOFF_MS);
        await this.#pause(backoff);
        continue;
      }
      backoff = 0;
      if (this.#closing) {
        conn.close();
        break;
      }
      this.#admit(conn);
    }
  }

  /** Wait `ms`, or less when a connection closes or the listener shuts down. */
  #pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      const wake = () => done();
      this.#wake = wake;
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
    }).finally(() => this.#wake = undefined);
  }

  #admit(conn: Deno.Conn): void {
    // Deno.serve turns Nagle's algorithm off on what it accepts; so must we, or a small write queued behind an
    // unacknowledged one waits for the peer's delayed ACK (~40 ms: a keystroke echo, a resumed stream). TLS
    // connections offer no such switch in Deno 2.9 (see SECURITY.md).
    const tcp = conn as Partial<Deno.TcpConn>;
    if (typeof tcp.setNoDelay === "function") tcp.setNoDelay(true);
    if (this.#open.size >= this.#maxConnections) {
      const oldest = this.#waiting.values().next().value;
      if (oldest === undefined) {
        this.#refused.note(`${this.#maxConnections} connections`);
        conn.close();
        return;
      }
      this.#evicted.note(`${this.#maxConnections} connections`);
      this.#close(oldest);
    }
    const connection = new Connection(conn);
    this.#open.add(connection);
    this.#track(this.#serve(connection));
  }

  #track(task: Promise<void>): void {
    // Never an unhandled rejection: a bug in one connection's task must not take the controller down.
    const tracked = task.catch((error) => {
      log.error("HTTP connection task failed: {error}", { error: String(error) });
    });
    this.#tasks.add(tracked);
    void tracked.finally(() => this.#tasks.delete(tracked));
  }

  async #serve(connection: Connection): Promise<void> {
    this.#awaitHead(connection);
    const conn = connection.conn;
    try {
      // The TLS handshake first, under the header deadline: closing Deno.serveHttp's connection does not end a
      // handshake in progress (the task would wait for the peer forever); closing the TLS connection does.
      if ("handshake" in conn) await (conn as Deno.TlsConn).handshake();
      else if (this.#fastLane && await this.#firstHead(connection, this.#fastLane) === "plain") {
        return await this.#serveFast(connection, this.#fastLane);
      }
      if (connection.closed) return;
      connection.http = this.#serveConnection(conn);
    } catch (error) {
      log.debug("Serving a connection failed: {error}", { error: String(error) });
      this.#close(connection);
      return;
    }
    try {
      while (!connection.closed) {
        const event = await connection.http.nextRequest();
        if (event === null) break;
        this.#waiting.delete(connection);
        connection.inFlight++;
        this.#track(this.#respond(connection, event));
      }
    } catch (error) {
      // A bad request head, a reset, or our own close: the connection is over either way.
      log.debug("HTTP connection ended: {error}", { error: String(error) });
    }
    connection.ended = true;
    if (connection.inFlight === 0) this.#close(connection);
  }

  /** Wait for the connection's first request head (looking, not reading) and classify it. */
  async #firstHead(connection: Connection, lane: FastLane): Promise<PeekResult> {
    let delay = 0;
    while (!connection.closed) {
      const found = lane.peeker.peek(connection.conn);
      if (found !== "wait") return found;
      // Clients send their head with or right after the connect: most are seen at once or within a millisecond.
      delay = Math.min(delay * 2 || 1, MAX_PEEK_WAIT_MS);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, delay);
        connection.wake = done;
        function done(): void {
          clearTimeout(timer);
          connection.wake = undefined;
          resolve();
        }
      });
    }
    return "other";
  }

  /** Serve the connection with the newer engine, under the same head deadline and connection accounting. */
  async #serveFast(connection: Connection, lane: FastLane): Promise<void> {
    if (connection.closed) return;
    this.#fastLaneConnections++;
    connection.identity = lane.peeker.identify(connection.conn);
    const remoteAddr = connection.conn.remoteAddr as Deno.NetAddr;
    const done = () => this.#fastDone(connection);
    const handler = async (request: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>) => {
      this.#waiting.delete(connection);
      connection.inFlight++;
      const completed = info.completed;
      completed.then(done, done);
      shadowSignal(request, completed);
      const method = request.method;
      if (method === "GET" || method === "HEAD") {
        // An upgrade goes to the handler too, so its refusals are what they are on every connection. One it
        // accepts here ends as soon as it opens (this engine closes it with its connection's server, Deno 2.9.6):
        // WebSocket clients (browsers, Deno) open a new connection for it, which the other engine serves.
        return await this.#handler(request, new FastHandlerInfo(remoteAddr, completed));
      }
      // An error answer may leave a large or streamed body unread, which this engine would go on reading and
      // discarding for as long as the client sends it: such a connection is closed once the answer is out (and
      // says so), as Deno.serveHttp closes it. A small body of declared length is read whole by the engine anyway.
      const declared = request.headers.get("content-length");
      const large = declared === null ? request.body !== null : Number(declared) > SMALL_BODY_BYTES;
      let response: Response;
      try {
        response = await this.#handler(request, new FastHandlerInfo(remoteAddr, completed));
      } catch (error) {
        if (large) connection.closeAfter = true;
        throw error;
      }
      if (large && response.status >= 400) {
        connection.closeAfter = true;
        try {
          response.headers.set("connection", "close");
        } catch {
          // Immutable headers: closed all the same.
        }
      }
      return response;
    };
    try {
      const server = lane.serve(connection.conn, NEVER, handler, this.#onError, () => {});
      connection.fast = server;
      await server.finished;
    } catch (error) {
      log.debug("HTTP connection ended: {error}", { error: String(error) });
    }
    connection.ended = true;
    clearTimeout(connection.linger);
    connection.linger = undefined;
    if (connection.inFlight === 0) this.#close(connection);
  }

  /** A response on the fast lane was sent (or could not be). */
  #fastDone(connection: Connection): void {
    connection.inFlight--;
    if (connection.ended || connection.closeAfter) this.#close(connection);
    else if (connection.inFlight === 0 && !connection.closed) this.#awaitHead(connection);
  }

  async #respond(connection: Connection, event: LegacyRequestEvent): Promise<void> {
    const info = new HandlerInfo(connection.conn.remoteAddr as Deno.NetAddr);
    let response: Response;
    try {
      response = await this.#handler(event.request, info);
      if (!(response instanceof Response)) {
        throw new TypeError(`The handler must return a Response, got ${typeof response}`);
      }
    } catch (error) {
      try {
        response = await this.#onError(error);
      } catch (failure) {
        log.error("onError failed: {error}", { error: String(failure) });
        response = new Response("Internal Server Error", { status: 500 });
      }
    }
    if (response.status === 101) connection.upgraded = true;
    try {
      await event.respondWith(response);
      info.settle(undefined);
    } catch (error) {
      info.settle(new Deno.errors.Interrupted(`The response could not be sent: ${error}`));
    } finally {
      connection.inFlight--;
      if (connection.upgraded || connection.ended) this.#close(connection);
      else if (connection.inFlight === 0 && !connection.closed) this.#awaitHead(connection);
    }
  }

  /**
   * End a fast-lane connection: its engine's graceful shutdown (an idle connection, or one in the middle of a head,
   * ends at once; an answer being written is finished), then, if it is still there after {@linkcode LINGER_MS} (a
   * body the engine is still discarding, a peer that does not read), its socket is shut down under it.
   */
  #closeFast(connection: Connection, fast: { shutdown(): Promise<void> }): void {
    this.#track(
      fast.shutdown().catch((error) => {
        log.debug("Closing an HTTP connection failed: {error}", { error: String(error) });
      }),
    );
    const identity = connection.identity;
    const peeker = this.#fastLane?.peeker;
    if (connection.ended || identity === undefined || peeker === undefined) return;
    connection.linger = setTimeout(() => {
      connection.linger = undefined;
      if (!connection.ended) peeker.cut(connection.conn, identity);
    }, connection.closeAfter ? ERROR_LINGER_MS : LINGER_MS);
  }

  /** Give the connection `headerTimeoutMs` for its next request head. */
  #awaitHead(connection: Connection): void {
    if (this.#closing) {
      this.#close(connection);
      return;
    }
    this.#waiting.delete(connection);
    this.#waiting.add(connection);
    connection.deadline = performance.now() + this.#headerTimeoutMs;
    // A timer already due no later than the oldest deadline serves this one too (it re-arms when it fires).
    if (this.#deadlineTimer === undefined) this.#armDeadline(connection.deadline);
  }

  #armDeadline(at: number): void {
    this.#deadlineTimer = setTimeout(
      () => this.#expireHeads(),
      Math.max(0, Math.ceil(at - performance.now())),
    );
  }

  /** Close the connections whose head is overdue (the oldest first), and re-arm for the next deadline. */
  #expireHeads(): void {
    this.#deadlineTimer = undefined;
    const now = performance.now();
    for (const connection of this.#waiting) {
      if (connection.deadline > now) {
        this.#armDeadline(connection.deadline);
        return;
      }
      log.debug("Closed a connection that sent no request head within {ms} ms", {
        ms: this.#headerTimeoutMs,
      });
      this.#close(connection);
    }
  }

  #clearDeadline(): void {
    clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = undefined;
  }

  /** Stop counting the connection, and close its HTTP side (an upgraded WebSocket lives on). */
  #close(connection: Connection): void {
    if (connection.closed) return;
    connection.closed = true;
    this.#waiting.delete(connection);
    if (this.#waiting.size === 0 && this.#deadlineTimer !== undefined) this.#clearDeadline();
    this.#open.delete(connection);
    connection.wake?.();
    try {
      if (connection.fast) this.#closeFast(connection, connection.fast);
      else if (connection.http) connection.http.close();
      else connection.conn.close();
    } catch {
      // Closed by the peer already.
    }
    this.#wake?.();
  }

  async shutdown(): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      try {
        this.#listener.close();
      } catch {
        // Closed already.
      }
      for (const connection of [...this.#open]) {
        if (connection.inFlight === 0) this.#close(connection);
      }
      this.#clearDeadline();
      this.#wake?.();
    }
    await this.finished;
  }

  ref(): void {
    this.#listener.ref();
  }

  unref(): void {
    this.#listener.unref();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}
