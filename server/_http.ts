// HTTP side of the controller: routing (`/health`, `/stats`, the WebSocket path), authentication before anything
// else, the failure limit, protocol negotiation and the upgrade. `serveHttp` is the one place that opens the
// listener, so it can be swapped for a hardened one.
import { serveHttp as serveHardened } from "./_http_listener.ts";
import {
  EngineRequest,
  headerOf,
  type HttpRequest,
  toRequest,
  upgradeWebSocket,
} from "./_http1_request.ts";
import { authenticateHeader } from "./_header_auth.ts";
import { validHost } from "./_http1_head.ts";
import { getLogger } from "@logtape/logtape";
import { selectSubprotocol, SUBPROTOCOL, VERSION } from "@sandd/protocol/version";
import type { Security } from "./_security.ts";
import { ENDPOINT_DAEMON, type MetricsState } from "./_metrics_state.ts";
import type { Identity } from "./auth.ts";
import type { ServerStats } from "./options.ts";

const log = getLogger(["sandd", "server"]);

/**
 * A feature served over HTTP beside the daemon endpoint (the control API, metrics, the console, exposed ports):
 * requests whose path is `prefix` or starts with `prefix` + "/" go to `handle`. Each mount does its own
 * authentication (daemon credentials never reach a mount's handler as a daemon link).
 */
export interface HttpMount {
  /** Path prefix without a trailing slash, e.g. `"/api/v1"`. */
  prefix: string;
  /**
   * Answer the request: a `Request`, or the lighter request of SandD's HTTP engine (`toRequest` of
   * `_http1_request.ts` makes a `Request` of it; `upgradeWebSocket` there upgrades either).
   */
  handle: (
    request: HttpRequest,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  ) => Response | Promise<Response>;
  /** Optional: end long-lived answers (event streams, waits); called first when the server closes. */
  close?(): void | Promise<void>;
}

/** What the HTTP handler needs from the server. */
export interface HttpRoutes {
  /** Features mounted under their own path prefixes, checked in order. */
  mounts: HttpMount[];
  /** Path of the WebSocket endpoint. */
  path: string;
  security: Security;
  metrics: MetricsState;
  stats(): ServerStats;
  /** Whether the server is shutting down (new links get 503). */
  closing(): boolean;
  /** Hand an upgraded socket to the hub. */
  accept(socket: WebSocket, remoteAddress: string, identity: Identity): void;
}

/** Characters of a request target whose path `new URL` leaves as it is (no percent-encoding, no `\\`). */
const PLAIN_TARGET = /^[A-Za-z0-9_~!$&'()*+,;=:@/.?-]*$/;
/** A host and port with nothing a URL parser would read as the start of a path, query or fragment. */
const PLAIN_AUTHORITY = /^[A-Za-z0-9.:[\]-]+$/;

/** The path of a request URL and whether it has a query (see {@linkcode fastPath}). */
export interface RequestPath {
  /** What `new URL(url).pathname` gives. */
  pathname: string;
  /** Whether the URL has a non-empty query string. */
  query: boolean;
}

/**
 * The path of an absolute request URL (`http://host:port/path?query`) and whether it has a query, without a URL
 * parse (which, with its query object, was a noticeable share of an API call): only for a plain host and a plain
 * target with no dot segment, where the result is what `new URL(url).pathname` gives; null otherwise (parse it
 * then).
 *
 * @example
 * ```ts
 * import { fastPath } from "./_http.ts";
 * console.assert(fastPath("http://127.0.0.1:8/api/v1/daemons?x=1")?.pathname === "/api/v1/daemons");
 * console.assert(fastPath("http://127.0.0.1:8/a/%2e%2e/b") === null);
 * ```
 */
export function fastPath(url: string): RequestPath | null {
  const scheme = url.indexOf("://");
  if (scheme < 0) return null;
  const start = url.indexOf("/", scheme + 3);
  if (start < 0 || !PLAIN_AUTHORITY.test(url.slice(scheme + 3, start))) return null;
  const target = url.slice(start);
  const queryAt = target.indexOf("?");
  const pathname = queryAt < 0 ? target : target.slice(0, queryAt);
  if (!PLAIN_TARGET.test(target) || pathname.includes("/.") || target.includes("#")) return null;
  return { pathname, query: queryAt >= 0 && queryAt < target.length - 1 };
}

/** Handle one HTTP request. */
export async function handleHttp(
  routes: HttpRoutes,
  request: HttpRequest,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
): Promise<Response> {
  // Deno's server builds the URL as scheme + Host + target: a Host with `/`, `?` or `#` would move the path a mount
  // routes on (SandD's own engine refuses such a head itself).
  if (!(request instanceof EngineRequest)) {
    const host = request.headers.get("host");
    if (host !== null && !validHost(host)) {
      return Response.json({ code: "BAD_REQUEST", message: "Invalid Host header" }, {
        status: 400,
      });
    }
  }
  // The path without a URL parse where that gives the same (a mount such as the control API pays for every call).
  const pathname = fastPath(request.url)?.pathname ?? new URL(request.url).pathname;
  if (request.method === "GET" && pathname === "/health") {
    return Response.json({ status: "ok", version: VERSION });
  }
  for (const mount of routes.mounts) {
    if (
      pathname.startsWith(mount.prefix) &&
      (pathname.length === mount.prefix.length || pathname[mount.prefix.length] === "/")
    ) {
      // Not awaited here: the mount's promise is the answer (one hop less on every API call).
      return mount.handle(request, info);
    }
  }
  const stats = request.method === "GET" && pathname === "/stats";
  if (!stats && pathname !== routes.path) {
    return new Response("Not found\n", { status: 404 });
  }
  const remote = `${info.remoteAddr.hostname}:${info.remoteAddr.port}`;
  // Authenticate before anything else is looked at; a refusal says nothing about why (the log does). Only
  // failures are limited per address: valid credentials are never refused because of others' failures.
  const identity = await authenticateHeader(
    routes.security.authenticator,
    headerOf(request, "authorization"),
    () => toRequest(request),
  );
  if (identity === null) {
    routes.metrics.authFailures[ENDPOINT_DAEMON]!++;
    const retryMs = routes.security.failures.failed(info.remoteAddr.hostname);
    if (retryMs > 0) {
      routes.metrics.authRateLimited++;
      return new Response("Too many failed attempts\n", {
        status: 429,
        headers: { "retry-after": String(Math.ceil(retryMs / 1000)) },
      });
    }
    log.warn("Answered 401 to {remote} on {path}", { remote, path: pathname });
    return new Response("Unauthorized\n", {
      status: 401,
      headers: { "www-authenticate": "Bearer" },
    });
  }
  if (stats) return Response.json(routes.stats());
  if (headerOf(request, "upgrade")?.toLowerCase() !== "websocket") {
    return Response.json({ error: "Expected a WebSocket upgrade" }, { status: 400 });
  }
  const offered = (headerOf(request, "sec-websocket-protocol") ?? "").split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  // The highest revision of version 1 both sides speak (sandd.v1.1, else sandd.v1).
  const selected = selectSubprotocol(offered);
  if (selected === null) {
    return Response.json({
      error: `Unsupported protocol: offered [${
        offered.join(", ")
      }]; this controller speaks ${SUBPROTOCOL}`,
    }, { status: 426 });
  }
  if (routes.closing()) return new Response("Shutting down\n", { status: 503 });
  const { socket, response } = upgradeWebSocket(request, {
    protocol: selected,
    idleTimeout: 0,
  });
  routes.accept(socket, remote, identity);
  return response;
}

/** Where and how to listen. */
export interface ListenOptions {
  hostname: string;
  port: number;
  cert?: string;
  key?: string;
  maxConnections?: number | undefined;
  headerTimeoutMs?: number | undefined;
  /** See `stalledSince` of server/_http_listener.ts. */
  stalledSince?: ((since: number, now: number) => number) | undefined;
  /** See `readLagMs` of server/_http_listener.ts. */
  readLagMs?: ((now: number) => number) | undefined;
  engine?: "sandd" | "deno" | undefined;
}

/** Open the listener; resolves once it listens. */
export async function serveHttp(
  options: ListenOptions,
  handler: (request: HttpRequest, info: Deno.ServeHandlerInfo<Deno.NetAddr>) => Promise<Response>,
): Promise<Deno.HttpServer<Deno.NetAddr>> {
  const { promise: listening, resolve } = Promise.withResolvers<void>();
  const http = serveHardened({
    ...(options.cert !== undefined && options.key !== undefined
      ? { cert: options.cert, key: options.key }
      : {}),
    hostname: options.hostname,
    port: options.port,
    maxConnections: options.maxConnections,
    headerTimeoutMs: options.headerTimeoutMs,
    stalledSince: options.stalledSince,
    readLagMs: options.readLagMs,
    engine: options.engine,
    onListen: () => resolve(),
    onError: (error) => {
      log.error("HTTP handler failed: {error}", { error: String(error) });
      return new Response("Internal error", { status: 500 });
    },
  }, handler);
  await listening;
  return http;
}
