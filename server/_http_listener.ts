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
 * internal `serveHttpOnConnection` was tried and closes an upgraded WebSocket as soon as the upgrade completes. On
 * a Deno without `Deno.serveHttp` this falls back to plain `Deno.serve` and logs a warning that the hardening is
 * off.
 *
 * What it adds:
 * - Accept errors (`EMFILE`, `ENFILE`, ...) are logged (at most every 5 s, with a count) and retried with a
 *   backoff that ends early when a connection closes; pending connections wait in the kernel's backlog.
 * - At most `maxConnections` connections that are still HTTP (a connection upgraded to a WebSocket stops counting:
 *   it belongs to an authenticated daemon). At the cap, a new connection replaces the oldest one that is waiting
 *   for a request head, once that one has waited `evictAfterMs`, so a flood of slow heads cannot lock out a client
 *   that sends its head at once; until then new connections wait in the kernel's backlog (a burst of clients whose
 *   heads are only unread yet, such as thousands of daemons failing over at once, is served, not closed); when
 *   every connection is busy, the new one is closed.
 * - With `readLagMs` (the controller's read canary), nothing new is accepted while this loop's reads lag more than
 *   ADMIT_LAG_MS, for up to ADMIT_HOLD_MS at a time: connections wait in the kernel's backlog instead of adding
 *   their reads to a loop that already reads its links late (server/CLUSTER.md, "Capacity").
 * - A connection must finish its request head (with the TLS handshake, when serving TLS) within `headerTimeoutMs`
 *   of being accepted or of its previous response, else it is closed.
 *
 * Plain connections are served by SandD's own HTTP/1.1 engine (`_http1_head.ts`, `_http1_wire.ts`,
 * `_http1_request.ts`, `_http1_answer.ts`, `_http1_connection.ts`; option `engine`, default `"sandd"`): it parses
 * heads strictly (anything RFC 9112 forbids or two parsers could read two ways is 400/431 and the connection
 * closes: both Content-Length and Transfer-Encoding, codings other than one `chunked`, obs-fold, bare CR or LF,
 * bad Host), hands handlers a light `HttpRequest` instead of a `Request`, writes the control API's JSON answers as
 * recorded, streams bodies with backpressure, and upgrades WebSockets on the raw socket through
 * `Deno.upgradeWebSocket`'s `socket` option (what node:http uses). Measured on the control API's exec (quiet
 * machine, same run): see server/control/README.md. TLS connections stay on `Deno.serveHttp` (HTTP/2 included).
 *
 * Known limit (Deno 2.9.6, checked): a TLS connection closed before its handshake completes keeps its socket
 * until the peer sends something or leaves, whoever closes it (this listener or `Deno.serve`). It stops counting
 * against `maxConnections` at the deadline, but a client that connects and stays silent still holds a descriptor;
 * terminate TLS in a fronting proxy where that matters.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { connRid, serveConnection as serveEngine } from "./_http1_connection.ts";
import type { HttpRequest } from "./_http1_request.ts";

const log = getLogger(["sandd", "server"]);

/** Handler of {@linkcode serveHttp}: the same shape as `Deno.serve`'s. */
export type HttpHandler = (
  request: HttpRequest,
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
   * for a request head is closed to make room once it has waited `evictAfterMs` (until then, new connections wait
   * in the kernel's backlog), or the new one when none is waiting. @default 1_024
   */
  maxConnections?: number | undefined;
  /**
   * At `maxConnections`, how long a connection may wait for its request head before a new connection may take its
   * place. Closing younger ones made a burst of clients close one another's connections before the loop had read
   * their heads (server/CLUSTER.md, "Capacity"); at 1 s, 15,000 daemons failing over to two nodes still lost
   * 50-1,000 connections whose heads were only unread (each one a daemon's backoff and retry). @default 3_000
   */
  evictAfterMs?: number | undefined;
  /**
   * How long this process's loop was measured stalled since `since` (ms since the epoch), e.g. the controller's
   * heartbeat (`server/_heartbeat.ts`: late timers and reads). That time is left out of a waiting connection's
   * wait for `evictAfterMs`: a head that waits unread behind a busy loop is the loop's delay, not the client's.
   * @default no stall is measured
   */
  stalledSince?: ((since: number, now: number) => number) | undefined;
  /**
   * This process's read lag now, in ms (the controller's read canary, `server/_read_canary.ts`). While it is over
   * {@linkcode ADMIT_LAG_MS}, no new connection is accepted (they wait in the kernel's backlog) for up to
   * {@linkcode ADMIT_HOLD_MS} at a time: a loop that already reads its links seconds late would only read them
   * later for each connection it takes on, and links dropped as silent come back as more connections.
   * @default no gate
   */
  readLagMs?: ((now: number) => number) | undefined;
  /**
   * A connection must finish its request head (and TLS handshake) within this long of being accepted or of its
   * previous response, else it is closed. @default 10_000
   */
  headerTimeoutMs?: number | undefined;
  /**
   * What serves HTTP on a plain (not TLS) connection: `"sandd"`, SandD's own HTTP/1.1 engine (`_http1_*.ts`: the
   * request a handler gets is an {@linkcode HttpRequest}, not a `Request`; WebSockets through `upgradeWebSocket`
   * of `_http1_request.ts`), or `"deno"`, Deno's per-connection server (`Deno.serveHttp`). TLS connections are
   * always served by Deno's (HTTP/2 included). `"sandd"` falls back to `"deno"`, with a warning, on a Deno where
   * its WebSocket upgrade does not work. @default "sandd"
   */
  engine?: "sandd" | "deno" | undefined;
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
}

/** The default of {@linkcode HttpListenerOptions.maxConnections}. */
export const DEFAULT_MAX_CONNECTIONS = 1_024;
/** Read lag above which new connections are held in the kernel's backlog (see `readLagMs`), in ms. */
export const ADMIT_LAG_MS = 250;
/** The longest accepting is held in a row for read lag, in ms: then one connection is taken all the same. */
export const ADMIT_HOLD_MS = 1_000;
/** How often a held accept looks at the read lag again, in ms. */
const ADMIT_RECHECK_MS = 25;
/** The default of {@linkcode HttpListenerOptions.evictAfterMs}. */
export const DEFAULT_EVICT_AFTER_MS = 3_000;
/** The default of {@linkcode HttpListenerOptions.headerTimeoutMs}. */
export const DEFAULT_HEADER_TIMEOUT_MS = 10_000;

const LOG_EVERY_MS = 5_000;
const MAX_ACCEPT_BACKOFF_MS = 1_000;

/** The soft-removed `Deno.serveHttp` connection, as much of it as is used here. */
interface LegacyRequestEvent {
  readonly request: Request;
  respondWith(response: Response): Promise<void>;
}
interface LegacyHttpConn {
  nextRequest(): Promise<LegacyRequestEvent | null>;
  close(): void;
}
type LegacyServeHttp = (conn: Deno.Conn) => LegacyHttpConn;

/**
 * Whether a request's `signal` aborts as soon as its client goes away. Deno's per-connection server (what this
 * listener runs on) aborts it only when the response is written (checked with Deno 2.9.6), so there a handler
 * learns nothing from it while it works; merely reading `request.signal` costs about 0.1 ms. `Deno.serve` (the
 * fallback) does abort it early.
 */
export function requestSignalReportsDisconnect(): boolean {
  return legacyServeHttp() === undefined;
}

function legacyServeHttp(): LegacyServeHttp | undefined {
  const serve = (Deno as unknown as { serveHttp?: unknown }).serveHttp;
  return typeof serve === "function"
    ? (conn) => serve.call(Deno, conn) as LegacyHttpConn
    : undefined;
}

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
  const evictAfterMs = options.evictAfterMs ?? DEFAULT_EVICT_AFTER_MS;
  if (!Number.isSafeInteger(evictAfterMs) || evictAfterMs < 0) {
    throw new RangeError(`evictAfterMs must be an integer >= 0, got ${evictAfterMs}`);
  }
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`port must be from 0 to 65535, got ${port}`);
  }
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new TypeError("cert and key must be given together");
  }
  const engine = options.engine ?? "sandd";
  if (engine !== "sandd" && engine !== "deno") {
    throw new TypeError(`engine must be "sandd" or "deno", got ${JSON.stringify(engine)}`);
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
  const tls = options.cert !== undefined && options.key !== undefined;
  const server = new HardenedListener(listener, serveConnection, handler, onError, {
    maxConnections,
    headerTimeoutMs,
    evictAfterMs,
    stalledSince: options.stalledSince,
    readLagMs: options.readLagMs,
    engine: engine === "sandd" && !tls && engineUsable(),
  });
  options.onListen?.(server.addr);
  const signal = options.signal;
  if (signal) {
    if (signal.aborted) void server.shutdown();
    else signal.addEventListener("abort", () => void server.shutdown(), { once: true });
  }
  return server;
}

let engineChecked: boolean | undefined;

/**
 * Whether SandD's engine can upgrade WebSockets on this Deno: it needs a connection's resource id (an own symbol
 * property `Deno.internal.rid`, checked on the first connection) and `Deno.upgradeWebSocket`'s upgrade of a
 * socket Deno did not accept (the `socket` option node:http's upgrade uses). Checked once; warns when not.
 */
function engineUsable(): boolean {
  if (engineChecked === undefined) {
    engineChecked = String(Deno.upgradeWebSocket).includes("takeStream");
    if (!engineChecked) {
      log.warn(
        "This Deno's Deno.upgradeWebSocket cannot upgrade a socket it did not accept: serving plain HTTP with " +
          "Deno.serveHttp instead of SandD's HTTP/1.1 engine",
      );
    }
  }
  return engineChecked;
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

/**
 * What a handler learns of its request. `completed` is made on first use: most handlers never read it, and a
 * promise with its resolvers and rejection guard per request is work on every API call.
 */
class HandlerInfo implements Deno.ServeHandlerInfo<Deno.NetAddr> {
  readonly remoteAddr: Deno.NetAddr;
  #completed: PromiseWithResolvers<void> | undefined;
  /** Undefined while the response is being sent; then null (sent) or the error. */
  #outcome: Error | null | undefined;

  constructor(remoteAddr: Deno.NetAddr) {
    this.remoteAddr = remoteAddr;
  }

  /** Settles once the response has been sent (rejects when it could not be). */
  get completed(): Promise<void> {
    if (this.#completed === undefined) {
      this.#completed = Promise.withResolvers<void>();
      this.#completed.promise.catch(() => {});
      if (this.#outcome !== undefined) this.#finish(this.#outcome);
    }
    return this.#completed.promise;
  }

  /** The response was sent (undefined) or could not be (the error). */
  settle(error: Error | undefined): void {
    this.#outcome = error ?? null;
    if (this.#completed !== undefined) this.#finish(this.#outcome);
  }

  #finish(outcome: Error | null): void {
    if (outcome === null) this.#completed!.resolve();
    else this.#completed!.reject(outcome);
  }
}

/** One accepted connection while it is HTTP. */
class Connection {
  readonly conn: Deno.Conn;
  http: LegacyHttpConn | undefined;
  /** When its request head is due (`performance.now()` time), while it is waiting for one. */
  deadline = 0;
  inFlight = 0;
  upgraded = false;
  /** No more requests will come (the peer closed, or the connection was upgraded). */
  ended = false;
  closed = false;
  /** Served by SandD's engine: the request being answered's info. */
  info: HandlerInfo | undefined;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }
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
  #evictAfterMs: number;
  #stalledSince: ((since: number, now: number) => number) | undefined;
  #readLagMs: ((now: number) => number) | undefined;
  /** Plain connections are served by SandD's engine. */
  #engine: boolean;
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
    limits: {
      maxConnections: number;
      headerTimeoutMs: number;
      evictAfterMs: number;
      stalledSince: ((since: number, now: number) => number) | undefined;
      readLagMs: ((now: number) => number) | undefined;
      engine: boolean;
    },
  ) {
    this.#engine = limits.engine;
    this.#listener = listener;
    this.#serveConnection = serveConnection;
    this.#handler = handler;
    this.#onError = onError;
    this.#maxConnections = limits.maxConnections;
    this.#headerTimeoutMs = limits.headerTimeoutMs;
    this.#evictAfterMs = limits.evictAfterMs;
    this.#stalledSince = limits.stalledSince;
    this.#readLagMs = limits.readLagMs;
    this.finished = this.#run();
  }

  get addr(): Deno.NetAddr {
    return this.#listener.addr;
  }

  get connections(): number {
    return this.#open.size;
  }

  async #run(): Promise<void> {
    await this.#acceptLoop();
    while (this.#tasks.size > 0) await Promise.all(this.#tasks);
  }

  async #acceptLoop(): Promise<void> {
    let backoff = 0;
    while (!this.#closing) {
      await this.#roomForOneMore();
      await this.#whileReadsLag();
      if (this.#closing) break;
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

  /**
   * At the cap, wait (new connections stay in the kernel's backlog) until a connection closes or the oldest one
   * waiting for a head has waited `evictAfterMs`, less the time this loop was stalled meanwhile (then `#admit`
   * closes it for the next). When every connection is
   * busy, nothing waiting, do not wait: `#admit` closes the new one, an answer the client gets at once.
   */
  async #roomForOneMore(): Promise<void> {
    while (!this.#closing && this.#open.size >= this.#maxConnections) {
      const oldest: Connection | undefined = this.#waiting.values().next().value;
      if (oldest === undefined) return;
      let waited = performance.now() - (oldest.deadline - this.#headerTimeoutMs);
      if (waited >= this.#evictAfterMs && this.#stalledSince !== undefined) {
        const now = Date.now();
        waited -= this.#stalledSince(now - waited, now);
      }
      if (waited >= this.#evictAfterMs) return;
      await this.#pause(Math.ceil(this.#evictAfterMs - waited));
    }
  }

  /** Hold accepting while this loop's reads lag past ADMIT_LAG_MS, ADMIT_HOLD_MS at most. */
  async #whileReadsLag(): Promise<void> {
    if (this.#readLagMs === undefined) return;
    const heldSince = performance.now();
    while (
      !this.#closing && this.#readLagMs(Date.now()) > ADMIT_LAG_MS &&
      performance.now() - heldSince < ADMIT_HOLD_MS
    ) {
      await new Promise((resolve) => setTimeout(resolve, ADMIT_RECHECK_MS));
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
      if (connection.closed) return;
      if (this.#engine && !("handshake" in conn)) {
        const rid = connRid(conn);
        if (rid !== null) {
          await this.#serveWithEngine(connection, rid);
          return;
        }
      }
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

  /** Serve a plain connection with SandD's engine until it closes or becomes a WebSocket. */
  async #serveWithEngine(connection: Connection, rid: number): Promise<void> {
    const remoteAddr = connection.conn.remoteAddr as Deno.NetAddr;
    try {
      await serveEngine(connection.conn, rid, "http", {
        awaitHead: () => {
          if (connection.inFlight === 0 && !connection.closed) this.#awaitHead(connection);
        },
        headArrived: () => {
          this.#waiting.delete(connection);
          connection.inFlight++;
        },
        upgraded: () => {
          connection.upgraded = true;
        },
        respond: (request) => {
          const info = new HandlerInfo(remoteAddr);
          connection.info = info;
          return this.#answer(request, info);
        },
        answered: (error) => {
          connection.info?.settle(error);
          connection.info = undefined;
          connection.inFlight--;
        },
      });
    } catch (error) {
      log.debug("HTTP connection ended: {error}", { error: String(error) });
    }
    connection.ended = true;
    if (connection.info !== undefined) {
      connection.info.settle(
        new Deno.errors.Interrupted("The connection closed before the answer was sent"),
      );
      connection.info = undefined;
      connection.inFlight--;
    }
    this.#close(connection);
  }

  /** The handler's answer to a request; an error becomes `onError`'s answer (or a plain 500). */
  async #answer(request: HttpRequest, info: HandlerInfo): Promise<Response> {
    try {
      const response = await this.#handler(request, info);
      if (!(response instanceof Response)) {
        throw new TypeError(`The handler must return a Response, got ${typeof response}`);
      }
      return response;
    } catch (error) {
      try {
        return await this.#onError(error);
      } catch (failure) {
        log.error("onError failed: {error}", { error: String(failure) });
        return new Response("Internal Server Error", { status: 500 });
      }
    }
  }

  async #respond(connection: Connection, event: LegacyRequestEvent): Promise<void> {
    const info = new HandlerInfo(connection.conn.remoteAddr as Deno.NetAddr);
    const response = await this.#answer(event.request, info);
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
    try {
      if (connection.http) connection.http.close();
      // A connection SandD's engine upgraded belongs to its WebSocket now.
      else if (!connection.upgraded) connection.conn.close();
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

/** Plain `Deno.serve`, for a Deno without `Deno.serveHttp`: works, without the hardening. */
function fallback(
  options: HttpListenerOptions,
  port: number,
  handler: HttpHandler,
  onError: (error: unknown) => Response | Promise<Response>,
): HttpListener {
  log.warn(
    "This Deno has no Deno.serveHttp: serving with Deno.serve, without the connection cap, the header " +
      "timeout or surviving descriptor exhaustion",
  );
  const server = Deno.serve({
    ...(options.cert !== undefined && options.key !== undefined
      ? { cert: options.cert, key: options.key }
      : {}),
    hostname: options.hostname ?? "127.0.0.1",
    port,
    onListen: (addr) => options.onListen?.(addr),
    onError,
    ...(options.signal ? { signal: options.signal } : {}),
  }, handler);
  const finished = server.finished.catch((error) => {
    log.error("The HTTP server stopped: {error}", { error: String(error) });
  });
  return {
    hardened: false,
    connections: 0,
    addr: server.addr,
    finished,
    shutdown: () => server.shutdown(),
    ref: () => server.ref(),
    unref: () => server.unref(),
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}
