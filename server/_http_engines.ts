// The two HTTP engines the hardened listener (`_http_listener.ts`) hands connections to, and what their handlers
// learn: `Deno.serveHttp` (soft-removed from the types in Deno 2, still shipped; every connection by default),
// `Deno.serve`'s engine for one connection (the experimental fast lane), and plain `Deno.serve` for a Deno without
// either (no hardening). Split from the listener to keep it readable.
import { getLogger } from "@logtape/logtape";
import type { HttpHandler, HttpListener, HttpListenerOptions } from "./_http_listener.ts";
import type { Peeker } from "./_http_peek.ts";

const log = getLogger(["sandd", "server"]);

/** The soft-removed `Deno.serveHttp` connection, as much of it as is used here. */
export interface LegacyRequestEvent {
  readonly request: Request;
  respondWith(response: Response): Promise<void>;
}
export interface LegacyHttpConn {
  nextRequest(): Promise<LegacyRequestEvent | null>;
  close(): void;
}
export type LegacyServeHttp = (conn: Deno.Conn) => LegacyHttpConn;

/** Deno's internal `serveHttpOnConnection` (ext/http/00_serve.ts): `Deno.serve`'s engine on one connection. */
export type ServeOnConnection = (
  conn: Deno.Conn,
  signal: AbortSignal,
  handler: HttpHandler,
  onError: (error: unknown) => Response | Promise<Response>,
  onListen: () => void,
) => { finished: Promise<void>; shutdown(): Promise<void> };

/**
 * `Deno.serve`'s engine for one connection, where this Deno has it. It closes a WebSocket upgraded on its
 * connection as soon as the upgrade completes (Deno 2.9.6, checked), so it only serves connections that do not
 * start with an upgrade.
 */
export function serveOnConnection(): ServeOnConnection | undefined {
  const internal = (Deno as unknown as Record<symbol, unknown>)[
    (Deno as unknown as { internal: symbol }).internal
  ] as { serveHttpOnConnection?: unknown } | undefined;
  const serve = internal?.serveHttpOnConnection;
  return typeof serve === "function" ? serve as ServeOnConnection : undefined;
}

/** The signal of the fast lane's engines: they end through their shutdown. */
export const NEVER = new AbortController().signal;

/** The newer engine and the peeker that chooses it, when both are there. */
export interface FastLane {
  serve: ServeOnConnection;
  peeker: Peeker;
}

/**
 * Whether a request's `signal` aborts as soon as its client goes away. Deno's per-connection server (what this
 * listener runs on) aborts it only when the response is written (checked with Deno 2.9.6), so there a handler
 * learns nothing from it while it works; merely reading `request.signal` costs about 0.1 ms. `Deno.serve` (the
 * fallback) does abort it early.
 */
export function requestSignalReportsDisconnect(): boolean {
  return legacyServeHttp() === undefined;
}

export function legacyServeHttp(): LegacyServeHttp | undefined {
  const serve = (Deno as unknown as { serveHttp?: unknown }).serveHttp;
  return typeof serve === "function"
    ? (conn) => serve.call(Deno, conn) as LegacyHttpConn
    : undefined;
}

/**
 * What a handler learns of its request. `completed` is made on first use: most handlers never read it, and a
 * promise with its resolvers and rejection guard per request is work on every API call.
 */
export class HandlerInfo implements Deno.ServeHandlerInfo<Deno.NetAddr> {
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

/** What a handler on the fast lane learns: the address as accepted (read once), the engine's completion. */
export class FastHandlerInfo implements Deno.ServeHandlerInfo<Deno.NetAddr> {
  readonly remoteAddr: Deno.NetAddr;
  readonly completed: Promise<void>;

  constructor(remoteAddr: Deno.NetAddr, completed: Promise<void>) {
    this.remoteAddr = remoteAddr;
    this.completed = completed;
  }
}

/** Plain `Deno.serve`, for a Deno without `Deno.serveHttp`: works, without the hardening. */
export function fallback(
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
    fastLaneConnections: 0,
    addr: server.addr,
    finished,
    shutdown: () => server.shutdown(),
    ref: () => server.ref(),
    unref: () => server.unref(),
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}
