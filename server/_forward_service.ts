// The controller's port forwarding: TCP listeners (`forward`) and capability URLs (`exposeHttp`, the `/x` mount),
// each connection a tunnel connection on the daemon's link. Every open is audited. Public types in forward.ts.
import { createHash, timingSafeEqual } from "node:crypto";
import { getLogger } from "@logtape/logtape";
import type { Connection } from "./_connection.ts";
import type { Auditor } from "./_audited.ts";
import type { HttpMount } from "./_http.ts";
import { toRequest } from "./_http1_request.ts";
import { DaemonDisconnectedError, DaemonNotFoundError } from "./errors.ts";
import { checkDaemonId } from "./_validate.ts";
import { TunnelSet, TunnelSocket } from "./_forward_tunnel.ts";
import { relayTcp } from "./_forward_listener.ts";
import {
  BadGatewayError,
  type ExchangeDone,
  proxyHttp,
  type ProxyTarget,
  StaleConnectionError,
  TunnelReader,
} from "./_forward_http.ts";
import { TunnelResetError } from "./_forward_tunnel.ts";
import { isWebSocketUpgrade, proxyWebSocket } from "./_forward_websocket.ts";
import type { ExposedHttp, ExposeHttpOptions, Forwarding, ForwardOptions } from "./forward.ts";

const log = getLogger(["sandd", "server", "forward"]);

/** Path prefix of exposed URLs on the controller's HTTP server. */
export const EXPOSE_PREFIX = "/x";

/** What the service needs from the server. */
export interface ForwardHost {
  /** The live connection to a daemon, or null. */
  connection(id: string): Connection | null;
  auditor: Auditor;
  /** `http://host:port` of the controller's HTTP server (`https` with TLS). */
  origin(): string;
  /**
   * Most requests through exposed URLs in flight at once, over all exposures (each holds one of the controller's
   * HTTP connections until its response is sent). Beyond, 503: daemons must always find a connection.
   */
  maxExchanges: number;
}

function checkPort(name: string, value: unknown, min: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > 65535) {
    throw new RangeError(`${name} must be an integer from ${min} to 65535, got ${value}`);
  }
  return value;
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

/** An open tunnel connection counts as a relay to abort on close. */
type Active = Set<TunnelSocket>;

/** Default of `ExposeHttpOptions.responseTimeoutMs`. */
const RESPONSE_TIMEOUT_MS = 60_000;

/** The worker's server did not start its response in time. */
class ResponseTimeoutError extends Error {
  constructor(ms: number) {
    super(`The worker's server did not answer within ${ms} ms`);
    this.name = "ResponseTimeoutError";
  }
}

/** Kept-alive connections per exposure at most, and how long one may stay idle. */
const MAX_IDLE = 16;
const IDLE_MS = 4_000;

/** A kept-alive connection to the worker's HTTP server, waiting for the next request. */
interface Idle {
  tunnel: TunnelSocket;
  reader: TunnelReader;
  timer: ReturnType<typeof setTimeout>;
}

interface Exposure {
  daemonId: string;
  port: number;
  responseTimeoutMs: number;
  digest: Buffer;
  prefix: string;
  active: Active;
  idle: Idle[];
}

export class ForwardService {
  readonly #host: ForwardHost;
  readonly tunnels: TunnelSet = new TunnelSet();
  /** Exposures by the hex SHA-256 of their token: a lookup by a candidate's digest leaks nothing of the token. */
  readonly #exposed: Map<string, Exposure> = new Map();
  readonly #forwardings: Set<TcpForwarding> = new Set();
  readonly #exposures: Set<{ close(): Promise<void> }> = new Set();
  /** Requests through exposed URLs whose response is not sent yet. */
  #exchanges = 0;
  /** The `/x` mount. */
  readonly mount: HttpMount;

  constructor(host: ForwardHost) {
    this.#host = host;
    this.mount = {
      prefix: EXPOSE_PREFIX,
      handle: (request, info) => this.#handle(toRequest(request), info),
    };
  }

  /** A daemon link closed: fail the tunnel connections it carried. */
  disconnected(): void {
    this.tunnels.disconnected();
  }

  #live(id: string): Connection {
    const conn = this.#host.connection(id);
    if (!conn) throw new DaemonNotFoundError(id);
    return conn;
  }

  /** Open one audited tunnel connection. */
  open(id: string, port: number): Promise<TunnelSocket> {
    return this.#host.auditor.run(
      "tunnel",
      id,
      { command: `connect 127.0.0.1:${port}` },
      () => TunnelSocket.open(this.#live(id), this.tunnels, port),
    );
  }

  async forward(id: string, remotePort: number, options: ForwardOptions = {}): Promise<Forwarding> {
    checkDaemonId(id);
    checkPort("remotePort", remotePort, 1);
    const port = checkPort("port", options.port ?? 0, 0);
    const hostname = options.hostname ?? "127.0.0.1";
    if (typeof hostname !== "string" || hostname === "") {
      throw new TypeError(`hostname must be a non-empty string, got ${JSON.stringify(hostname)}`);
    }
    options.signal?.throwIfAborted();
    return await this.#host.auditor.run(
      "forward",
      id,
      { command: `forward ${hostname}:${port} to port ${remotePort}` },
      () => {
        this.#live(id);
        const forwarding = new TcpForwarding(this, id, remotePort, hostname, port, () => {
          this.#forwardings.delete(forwarding);
          this.#host.auditor.write({
            daemon: id,
            action: "forward.close",
            command: `forward ${forwarding.hostname}:${forwarding.port} to port ${remotePort}`,
            ok: true,
          });
        });
        this.#forwardings.add(forwarding);
        options.signal?.addEventListener("abort", () => void forwarding.close(), { once: true });
        return Promise.resolve(forwarding);
      },
    );
  }

  async exposeHttp(id: string, options: ExposeHttpOptions): Promise<ExposedHttp> {
    checkDaemonId(id);
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`exposeHttp options must be an object with a port, got ${options}`);
    }
    const port = checkPort("port", options.port, 1);
    const responseTimeoutMs = options.responseTimeoutMs ?? RESPONSE_TIMEOUT_MS;
    if (
      typeof responseTimeoutMs !== "number" || !Number.isFinite(responseTimeoutMs) ||
      responseTimeoutMs <= 0
    ) {
      throw new RangeError(
        `responseTimeoutMs must be a positive number of milliseconds, got ${responseTimeoutMs}`,
      );
    }
    options.signal?.throwIfAborted();
    return await this.#host.auditor.run(
      "exposeHttp",
      id,
      { command: `expose port ${port}` },
      () => {
        this.#live(id);
        const bytes = crypto.getRandomValues(new Uint8Array(32));
        const token = btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_")
          .replace(/=+$/, "");
        const key = digest(token);
        const exposure: Exposure = {
          daemonId: id,
          port,
          responseTimeoutMs,
          digest: key,
          prefix: `${EXPOSE_PREFIX}/${token}`,
          active: new Set(),
          idle: [],
        };
        this.#exposed.set(key.toString("hex"), exposure);
        const url = `${this.#host.origin()}${exposure.prefix}/`;
        let closing: Promise<void> | null = null;
        const handle: ExposedHttp = {
          url,
          daemonId: id,
          port,
          close: () => {
            closing ??= Promise.resolve().then(() => {
              this.#exposed.delete(key.toString("hex"));
              this.#exposures.delete(handle);
              for (const tunnel of [...exposure.active]) {
                tunnel.abort(
                  "the exposed URL was revoked",
                );
              }
              exposure.active.clear();
              for (const idle of exposure.idle.splice(0)) {
                clearTimeout(idle.timer);
                idle.tunnel.abort("the exposed URL was revoked");
              }
              this.#host.auditor.write({
                daemon: id,
                action: "exposeHttp.close",
                command: `expose port ${port}`,
                ok: true,
              });
            });
            return closing;
          },
          [Symbol.asyncDispose]: () => handle.close(),
        };
        this.#exposures.add(handle);
        options.signal?.addEventListener("abort", () => void handle.close(), { once: true });
        return Promise.resolve(handle);
      },
    );
  }

  /** Close every forwarding and exposure (the server is closing). */
  async closeAll(): Promise<void> {
    await Promise.all([
      ...[...this.#forwardings].map((f) => f.close()),
      ...[...this.#exposures].map((e) => e.close()),
    ]);
  }

  /** Find the exposure a token names: by its digest, then compared in constant time. */
  #lookup(token: string): Exposure | undefined {
    if (!/^[A-Za-z0-9_-]{43}$/.test(token)) return undefined;
    const candidate = digest(token);
    const exposure = this.#exposed.get(candidate.toString("hex"));
    if (!exposure || !timingSafeEqual(exposure.digest, candidate)) return undefined;
    return exposure;
  }

  async #handle(request: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Promise<Response> {
    const url = new URL(request.url);
    const rest = url.pathname.slice(EXPOSE_PREFIX.length + 1);
    const slash = rest.indexOf("/");
    const token = slash < 0 ? rest : rest.slice(0, slash);
    const exposure = this.#lookup(token);
    if (!exposure) return new Response("Not found\n", { status: 404 });
    if (slash < 0) {
      // `/x/<token>` without its slash: relative links would resolve outside the prefix.
      return new Response(null, {
        status: 308,
        headers: { location: `${exposure.prefix}/${url.search}` },
      });
    }
    const { daemonId, port } = exposure;
    if (!this.#host.connection(daemonId)) {
      return unavailable(daemonId);
    }
    // Each request holds one of the controller's HTTP connections until its response is sent (a WebSocket: until
    // the upgrade): without a bound, a client with an exposed URL (slow downloads, a hung handler) could take
    // every connection and lock daemons out.
    if (this.#exchanges >= this.#host.maxExchanges) {
      return new Response(
        `Too many requests through exposed URLs at once (at most ${this.#host.maxExchanges})\n`,
        { status: 503, headers: { "retry-after": "1" } },
      );
    }
    this.#exchanges++;
    let counted = true;
    const uncount = () => {
      if (counted) this.#exchanges--;
      counted = false;
    };
    info.completed.then(uncount, uncount);
    const target: ProxyTarget = {
      port,
      prefix: exposure.prefix,
      path: rest.slice(slash) + url.search,
      proto: url.protocol.replace(":", ""),
      client: info.remoteAddr.hostname,
    };
    const upgrade = isWebSocketUpgrade(request);
    for (let attempt = 0;; attempt++) {
      // A kept-alive connection first (never for an upgrade), else a new one.
      const pooled = upgrade || attempt > 0 ? undefined : this.#takeIdle(exposure);
      let tunnel: TunnelSocket;
      let reader: TunnelReader;
      if (pooled) ({ tunnel, reader } = pooled);
      else {
        try {
          tunnel = await this.open(daemonId, port);
        } catch (error) {
          return failure(daemonId, port, error);
        }
        reader = new TunnelReader(tunnel);
        if (!this.#exposed.has(exposure.digest.toString("hex"))) {
          tunnel.abort("the exposed URL was revoked");
          return new Response("Not found\n", { status: 404 });
        }
      }
      exposure.active.add(tunnel);
      let settled = false;
      const done: ExchangeDone = (error, reusable) => {
        if (settled) return;
        settled = true;
        exposure.active.delete(tunnel);
        if (error === undefined && reusable) this.#park(exposure, tunnel, reader);
        else release(tunnel, error);
      };
      // A client that leaves before the response head arrives (a hung or long-polling handler) gives the
      // connection up: it would otherwise hold one of the daemon's --max-tunnels until the worker answered. Once
      // the head is back, the body stream's cancel does that.
      // The controller's HTTP server (Deno.serveHttp) does not signal that; so the head also has a deadline.
      const onClientGone = () => tunnel.abort("the client went away before the response");
      request.signal.addEventListener("abort", onClientGone, { once: true });
      // The deadline runs from the end of the request (a long upload does not count).
      let timedOut: ResponseTimeoutError | null = null;
      let timer: ReturnType<typeof setTimeout> | undefined;
      let answered = false;
      const startDeadline = () => {
        if (answered) return;
        timer = setTimeout(() => {
          timedOut = new ResponseTimeoutError(exposure.responseTimeoutMs);
          tunnel.abort(timedOut.message);
        }, exposure.responseTimeoutMs);
      };
      try {
        if (request.signal.aborted) throw new TunnelResetError("the client went away");
        if (upgrade) startDeadline();
        return upgrade
          ? await proxyWebSocket(tunnel, request, target, done)
          : await proxyHttp(tunnel, reader, request, target, done, startDeadline);
      } catch (error) {
        done(error ?? new Error("failed"));
        if (timedOut) return failure(daemonId, port, timedOut);
        // The server closed a kept-alive connection meanwhile: a request without a body goes again, once.
        const stale = error instanceof StaleConnectionError || error instanceof TunnelResetError;
        if (pooled && stale && request.body === null && !request.signal.aborted) continue;
        return failure(daemonId, port, error);
      } finally {
        answered = true;
        clearTimeout(timer);
        request.signal.removeEventListener("abort", onClientGone);
      }
    }
  }

  /** Keep a connection for the next request of this exposure (bounded in number and idle time). */
  #park(exposure: Exposure, tunnel: TunnelSocket, reader: TunnelReader): void {
    if (
      !tunnel.reusable || exposure.idle.length >= MAX_IDLE ||
      !this.#exposed.has(exposure.digest.toString("hex"))
    ) {
      release(tunnel);
      return;
    }
    const idle: Idle = {
      tunnel,
      reader,
      timer: setTimeout(() => {
        const at = exposure.idle.indexOf(idle);
        if (at >= 0) exposure.idle.splice(at, 1);
        tunnel.abort("idle");
      }, IDLE_MS),
    };
    exposure.idle.push(idle);
  }

  /** The most recently parked connection that is still usable. */
  #takeIdle(exposure: Exposure): Idle | undefined {
    while (exposure.idle.length > 0) {
      const idle = exposure.idle.pop()!;
      clearTimeout(idle.timer);
      if (idle.tunnel.reusable && idle.reader.buffered === 0) return idle;
      idle.tunnel.abort("the worker closed the kept connection");
    }
    return undefined;
  }
}

function unavailable(daemonId: string): Response {
  return new Response(`Worker '${daemonId}' is not connected\n`, {
    status: 503,
    headers: { "retry-after": "1" },
  });
}

/** The answer for a tunnel that could not be opened or failed before a response: 503 or 502 with the reason. */
function failure(daemonId: string, port: number, error: unknown): Response {
  if (error instanceof DaemonDisconnectedError || error instanceof DaemonNotFoundError) {
    return unavailable(daemonId);
  }
  if (!(error instanceof BadGatewayError)) {
    log.debug("Proxy to port {port} on {id} failed: {error}", {
      port,
      id: daemonId,
      error: String(error),
    });
  }
  const message = String((error as Error)?.message ?? error);
  if (error instanceof ResponseTimeoutError) {
    return new Response(`Gateway timeout: port ${port} on worker '${daemonId}': ${message}\n`, {
      status: 504,
    });
  }
  return new Response(`Bad gateway: port ${port} on worker '${daemonId}': ${message}\n`, {
    status: 502,
  });
}

/** A response is over: end the connection gently when it ended cleanly, else abort it. */
function release(tunnel: TunnelSocket, error?: unknown): void {
  if (error !== undefined) {
    tunnel.abort(String((error as Error)?.message ?? error));
    return;
  }
  tunnel.closeWrite();
  if (tunnel.readEnded) return;
  // The server closes after a `Connection: close` response: wait (bounded) for its end, then let go.
  const timer = setTimeout(() => tunnel.abort("the response is complete"), 2_000);
  void (async () => {
    try {
      while ((await tunnel.read()) !== null) {
        // bytes after the response are dropped
      }
    } catch {
      // reset: nothing to release
    } finally {
      clearTimeout(timer);
    }
  })();
}

/** A local TCP listener forwarding to a worker port. */
class TcpForwarding implements Forwarding {
  readonly hostname: string;
  readonly port: number;
  readonly daemonId: string;
  readonly remotePort: number;
  readonly #service: ForwardService;
  readonly #listener: Deno.TcpListener;
  readonly #locals: Set<Deno.TcpConn> = new Set();
  readonly #relays: Set<Promise<void>> = new Set();
  readonly #active: Active = new Set();
  readonly #accepting: Promise<void>;
  readonly #onClose: () => void;
  #closing: Promise<void> | null = null;

  constructor(
    service: ForwardService,
    daemonId: string,
    remotePort: number,
    hostname: string,
    port: number,
    onClose: () => void,
  ) {
    this.#service = service;
    this.daemonId = daemonId;
    this.remotePort = remotePort;
    this.#onClose = onClose;
    this.#listener = Deno.listen({ hostname, port, transport: "tcp" });
    this.hostname = this.#listener.addr.hostname;
    this.port = this.#listener.addr.port;
    this.#accepting = this.#accept();
  }

  get connections(): number {
    return this.#locals.size;
  }

  async #accept(): Promise<void> {
    try {
      for await (const local of this.#listener) {
        if (this.#closing) {
          local.close();
          continue;
        }
        const relay = this.#serve(local);
        this.#relays.add(relay);
        relay.finally(() => this.#relays.delete(relay));
      }
    } catch {
      // the listener closed
    }
  }

  async #serve(local: Deno.TcpConn): Promise<void> {
    this.#locals.add(local);
    try {
      try {
        local.setNoDelay(true);
      } catch {
        // not supported
      }
      let tunnel: TunnelSocket;
      try {
        tunnel = await this.#service.open(this.daemonId, this.remotePort);
      } catch (error) {
        log.warn("Cannot forward a connection to port {port} on {id}: {error}", {
          port: this.remotePort,
          id: this.daemonId,
          error: String((error as Error)?.message ?? error),
        });
        local.close();
        return;
      }
      if (this.#closing) {
        tunnel.abort("the forwarding is closing");
        local.close();
        return;
      }
      this.#active.add(tunnel);
      await relayTcp(local, tunnel);
      this.#active.delete(tunnel);
    } finally {
      this.#locals.delete(local);
    }
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        this.#listener.close();
      } catch {
        // closed already
      }
      for (const tunnel of [...this.#active]) tunnel.abort("the forwarding was closed");
      await this.#accepting;
      await Promise.all([...this.#relays]);
      this.#onClose();
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
