/**
 * The web console at `/console`: one page served by the controller (every asset embedded, nothing from a CDN)
 * with the live fleet, processes and their output, terminals in the browser (shared, read-only watching, reattach
 * after a reload) and replays of asciicast recordings. It talks to the control API (`/api/v1`) through
 * `/console/api/v1`, which adds the signed-in client's token, and opens terminals at `/console/terminal/{id}`.
 *
 * Access follows the control API: with client tokens configured, the page asks for one once and keeps a session
 * cookie (`HttpOnly`, `SameSite=Strict`, scoped to `/console`); the token's scopes apply (`read` to look,
 * `exec` to open or type into terminals). With no client tokens (only allowed on loopback), the console is open
 * like the API. To put it on a network, configure tokens (and TLS: `cert`/`key`), or keep the controller on
 * loopback and reach it through an SSH tunnel or an authenticating reverse proxy.
 *
 * @module
 */

import type { HttpMount } from "../_http.ts";
import { toRequest } from "../_http1_request.ts";
import { auditActor } from "../_audited.ts";
import type { Server } from "../server.ts";
import { ClientAuth } from "../control/_auth.ts";
import { readLimited } from "../control/_body.ts";
import { HttpError } from "../control/_errors.ts";
import type { ControlOptions } from "../control/options.ts";
import { ASSETS, type ConsoleAsset } from "./_assets.generated.ts";
import { serveTerminalSocket } from "../control/terminal.ts";

/**
 * Options of the console (`ServerOptions.console`).
 *
 * @example Keep recordings of console terminals
 * ```ts
 * import type { ConsoleOptions } from "./console.ts";
 * const options: ConsoleOptions = { recordings: "/var/lib/sandd/casts" };
 * console.assert(options.recordings !== undefined);
 * ```
 */
export interface ConsoleOptions {
  /**
   * A directory of asciicast v2 recordings (`*.cast`) listed and played under Replays; terminals opened from the
   * console with "record" are saved there. @default no replays
   */
  recordings?: string;
  /** How long a sign-in lasts, in milliseconds. @default 43_200_000 (12 hours) */
  sessionTtlMs?: number;
}

/** The client a console session acts as. */
export interface ConsoleIdentity {
  /** The token's name. */
  name: string;
  /** Its scopes (`read`, `exec`, `files`, `admin`). */
  scopes: ReadonlySet<string>;
}

/** What the server gives the console. */
export interface ConsoleHost {
  /** The controller. */
  server: Server;
  /** The server's own HTTP handler: API calls from the page go through it with the session's token. */
  dispatch(request: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Promise<Response>;
  /**
   * Check a client token of the control API. `null` when the API has no client tokens: the console is open then
   * (the server allows that on loopback only).
   */
  authenticate: ((token: string) => ConsoleIdentity | null) | null;
}

const COOKIE = "sandd_console";
const MAX_SESSIONS = 1_000;
const FAILURES_PER_MINUTE = 10;
const RECORDING_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.cast$/;
const ALL_SCOPES: ReadonlySet<string> = new Set(["read", "exec", "files", "admin"]);

interface Session {
  token: string;
  identity: ConsoleIdentity;
  expires: number;
}

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy":
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; " +
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

function json(data: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(data), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store", ...headers },
  });
}

function problem(status: number, code: string, message: string): Response {
  return json({ code, message }, status);
}

async function etagOf(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return `"${
    Array.from(new Uint8Array(digest).subarray(0, 12), (b) => b.toString(16).padStart(2, "0"))
      .join("")
  }"`;
}

function cookieOf(request: Request): string | null {
  for (const part of (request.headers.get("cookie") ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === COOKIE) return part.slice(eq + 1).trim();
  }
  return null;
}

function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(
    /=+$/,
    "",
  );
}

/**
 * Check `ServerOptions.console` before the socket opens.
 *
 * @param console The option.
 * @param control `ServerOptions.control`: the console needs the control API.
 * @throws {TypeError} For a malformed option, or a console without the control API.
 */
export function checkConsoleOptions(console: unknown, control: unknown): void {
  if (console === undefined || console === false) return;
  if (
    console !== true && (typeof console !== "object" || console === null || Array.isArray(console))
  ) {
    throw new TypeError(`console must be a boolean or an object, got ${JSON.stringify(console)}`);
  }
  if (typeof console === "object") {
    for (const key of Object.keys(console)) {
      if (key !== "recordings" && key !== "sessionTtlMs") {
        throw new TypeError(`console has an unknown option '${key}'`);
      }
    }
    const { recordings, sessionTtlMs } = console as ConsoleOptions;
    if (recordings !== undefined && (typeof recordings !== "string" || recordings === "")) {
      throw new TypeError(
        `console.recordings must be a directory path, got ${JSON.stringify(recordings)}`,
      );
    }
    if (
      sessionTtlMs !== undefined && (!Number.isSafeInteger(sessionTtlMs) || sessionTtlMs < 1000)
    ) {
      throw new RangeError(
        `console.sessionTtlMs must be an integer of at least 1000, got ${sessionTtlMs}`,
      );
    }
  }
  if (control === undefined) {
    throw new TypeError(
      "console needs the control API: set control: true (open, loopback only) or control: { tokens }",
    );
  }
}

/**
 * Make the console's mount for a server (`ServerOptions.console`), signing in with the control API's client
 * tokens.
 *
 * @example In the Server constructor
 * ```ts ignore
 * if (options.console) mounts.push(createConsoleMount(this, options.console, options.control!, dispatch));
 * ```
 *
 * @param server The controller.
 * @param console `ServerOptions.console`.
 * @param control `ServerOptions.control`.
 * @param dispatch The server's HTTP handler.
 * @returns The mount for `/console`.
 */
export function createConsoleMount(
  server: Server,
  console: true | ConsoleOptions,
  control: true | ControlOptions,
  dispatch: ConsoleHost["dispatch"],
): HttpMount {
  const auth = new ClientAuth(control === true ? [] : control.tokens ?? []);
  const authenticate = auth.open ? null : (token: string) => {
    const request = new Request("http://console.invalid/", {
      headers: { authorization: `Bearer ${token}` },
    });
    return auth.authenticate(request);
  };
  return consoleMount({ server, dispatch, authenticate }, console === true ? {} : console);
}

/**
 * Make the console's HTTP mount (the server adds it when `ServerOptions.console` is set).
 *
 * @example Mounted by the server
 * ```ts ignore
 * mounts.push(consoleMount({ server, dispatch, authenticate: null }, {}));
 * ```
 *
 * @param host The server's side.
 * @param options Recordings and session lifetime.
 * @returns The mount for `/console`.
 */
export function consoleMount(host: ConsoleHost, options: ConsoleOptions = {}): HttpMount {
  const console = new ConsoleHandler(host, options);
  return {
    prefix: "/console",
    handle: (request, info) => console.handle(toRequest(request), info),
  };
}

class ConsoleHandler {
  readonly #host: ConsoleHost;
  readonly #recordings: string | undefined;
  readonly #ttl: number;
  readonly #sessions = new Map<string, Session>();
  readonly #failures = new Map<string, number[]>();
  readonly #assets = new Map<string, ConsoleAsset & { etag: Promise<string> }>();

  constructor(host: ConsoleHost, options: ConsoleOptions) {
    this.#host = host;
    this.#recordings = options.recordings;
    this.#ttl = options.sessionTtlMs ?? 12 * 3600_000;
    if (!Number.isSafeInteger(this.#ttl) || this.#ttl < 1000) {
      throw new RangeError(
        `console.sessionTtlMs must be an integer of at least 1000, got ${options.sessionTtlMs}`,
      );
    }
    if (this.#recordings !== undefined && typeof this.#recordings !== "string") {
      throw new TypeError(
        `console.recordings must be a directory path, got ${JSON.stringify(this.#recordings)}`,
      );
    }
    for (const asset of ASSETS) {
      this.#assets.set(asset.path, { ...asset, etag: etagOf(asset.text) });
    }
  }

  async handle(request: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Promise<Response> {
    const url = new URL(request.url);
    const path = url.pathname.slice("/console".length);
    if (path === "" || path === "/") {
      if (path === "") return Response.redirect(new URL("/console/", url), 308);
      return await this.#asset(request, "index.html");
    }
    if (path === "/session") return await this.#session(request, info);
    if (path.startsWith("/api/v1/") || path === "/api/v1") {
      return await this.#forward(request, info, path);
    }
    if (path.startsWith("/terminal/")) return this.#terminal(request, path);
    if (path === "/recordings" || path.startsWith("/recordings/")) {
      return await this.#recording(request, path);
    }
    return await this.#asset(request, path.slice(1));
  }

  async #asset(request: Request, name: string): Promise<Response> {
    const asset = this.#assets.get(name);
    if (!asset || (request.method !== "GET" && request.method !== "HEAD")) {
      return problem(404, "NOT_FOUND", `No console file ${JSON.stringify(name)}`);
    }
    const etag = await asset.etag;
    const headers = {
      ...SECURITY_HEADERS,
      "content-type": asset.type,
      "cache-control": "no-cache",
      etag,
    };
    if (request.headers.get("if-none-match") === etag) {
      return new Response(null, { status: 304, headers });
    }
    return new Response(request.method === "HEAD" ? null : asset.text, { headers });
  }

  /** The session of a request: the signed-in client, or everyone when the API is open; null: sign in first. */
  #who(request: Request): Session | null {
    if (this.#host.authenticate === null) {
      return { token: "", identity: { name: "anonymous", scopes: ALL_SCOPES }, expires: Infinity };
    }
    const id = cookieOf(request);
    if (id === null) return null;
    const session = this.#sessions.get(id);
    if (!session) return null;
    if (session.expires < Date.now()) {
      this.#sessions.delete(id);
      return null;
    }
    return session;
  }

  /** Refuse cross-site use: state changes need the console's header (a cross-origin page cannot send it). */
  #sameOrigin(request: Request): boolean {
    const origin = request.headers.get("origin");
    if (origin !== null && origin !== new URL(request.url).origin) {
      // Behind a reverse proxy the Host seen here may differ from the browser's; compare hosts then.
      const host = request.headers.get("host");
      try {
        if (host === null || new URL(origin).host !== host) return false;
      } catch {
        return false;
      }
    }
    if (request.method === "GET" || request.method === "HEAD") return true;
    return request.headers.get("x-sandd-console") === "1";
  }

  async #session(request: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Promise<Response> {
    if (!this.#sameOrigin(request)) return problem(403, "FORBIDDEN", "Cross-site request refused");
    const secure = new URL(request.url).protocol === "https:";
    if (request.method === "GET") {
      const session = this.#who(request);
      if (!session) return problem(401, "UNAUTHORIZED", "Sign in with a client token");
      return json({
        open: this.#host.authenticate === null,
        name: session.identity.name,
        scopes: [...session.identity.scopes],
        recordings: this.#recordings !== undefined,
      });
    }
    if (request.method === "DELETE") {
      const id = cookieOf(request);
      if (id !== null) this.#sessions.delete(id);
      return json({ ok: true }, 200, {
        "set-cookie": `${COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0${
          secure ? "; Secure" : ""
        }`,
      });
    }
    if (request.method !== "POST") {
      return problem(
        405,
        "BAD_REQUEST",
        `Method ${request.method} not allowed on /console/session`,
      );
    }
    const authenticate = this.#host.authenticate;
    if (authenticate === null) return json({ open: true });
    const address = info.remoteAddr.hostname;
    const now = Date.now();
    const recent = (this.#failures.get(address) ?? []).filter((t) => now - t < 60_000);
    if (recent.length >= FAILURES_PER_MINUTE) {
      return problem(429, "RATE_LIMITED", "Too many failed sign-ins; wait a minute");
    }
    let token: unknown;
    let text: string;
    try {
      // Read under the limit: this is before any sign-in, and a body read whole first could be any size.
      text = new TextDecoder().decode(await readLimited(request, 8192));
    } catch (error) {
      if (error instanceof HttpError && error.status === 413) {
        return problem(413, "TOO_LARGE", "Sign-in body over 8 KiB");
      }
      return problem(400, "BAD_REQUEST", "The sign-in body could not be read");
    }
    try {
      const body = JSON.parse(text);
      if (typeof body !== "object" || body === null || Array.isArray(body)) throw new TypeError();
      for (const key of Object.keys(body)) {
        if (key !== "token") {
          return problem(400, "BAD_REQUEST", `Unknown field ${JSON.stringify(key)}`);
        }
      }
      token = body.token;
    } catch {
      return problem(400, "BAD_REQUEST", "Body must be JSON { token }");
    }
    if (typeof token !== "string" || token === "") {
      return problem(400, "BAD_REQUEST", "token must be a non-empty string");
    }
    const identity = authenticate(token);
    if (identity === null) {
      recent.push(now);
      this.#failures.set(address, recent);
      if (this.#failures.size > 10_000) this.#failures.clear();
      return problem(401, "UNAUTHORIZED", "Token refused");
    }
    this.#failures.delete(address);
    this.#expire(now);
    const id = randomId();
    this.#sessions.set(id, { token, identity, expires: now + this.#ttl });
    return json({ name: identity.name, scopes: [...identity.scopes] }, 200, {
      "set-cookie": `${COOKIE}=${id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age=${
        Math.floor(this.#ttl / 1000)
      }${secure ? "; Secure" : ""}`,
    });
  }

  #expire(now: number): void {
    for (const [id, session] of this.#sessions) {
      if (session.expires < now) this.#sessions.delete(id);
    }
    while (this.#sessions.size >= MAX_SESSIONS) {
      this.#sessions.delete(this.#sessions.keys().next().value!);
    }
  }

  /** `/console/api/v1/...` → `/api/v1/...` with the session's token. */
  async #forward(
    request: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
    path: string,
  ): Promise<Response> {
    if (!this.#sameOrigin(request)) return problem(403, "FORBIDDEN", "Cross-site request refused");
    const session = this.#who(request);
    if (!session) return problem(401, "UNAUTHORIZED", "Sign in with a client token");
    // A WebSocket upgrade cannot be handed on as a new request: terminals have their own route.
    if (request.headers.get("upgrade") !== null) {
      return problem(400, "BAD_REQUEST", "Open terminals at /console/terminal/{id}");
    }
    const url = new URL(request.url);
    const target = new URL(path + url.search, url);
    const headers = new Headers(request.headers);
    headers.delete("cookie");
    headers.delete("authorization");
    if (session.token !== "") headers.set("authorization", `Bearer ${session.token}`);
    const hasBody = request.method !== "GET" && request.method !== "HEAD";
    const forwarded = new Request(target, {
      method: request.method,
      headers,
      signal: request.signal,
      ...(hasBody ? { body: request.body, duplex: "half" } as RequestInit : {}),
    });
    return await this.#host.dispatch(forwarded, info);
  }

  #terminal(request: Request, path: string): Response | Promise<Response> {
    if (!this.#sameOrigin(request)) return problem(403, "FORBIDDEN", "Cross-site request refused");
    const session = this.#who(request);
    if (!session) return problem(401, "UNAUTHORIZED", "Sign in with a client token");
    const scopes = session.identity.scopes;
    const canType = scopes.has("exec") || scopes.has("admin");
    if (!canType && !scopes.has("read")) {
      return problem(403, "FORBIDDEN", `Client ${session.identity.name} lacks the read scope`);
    }
    let id: string;
    try {
      id = decodeURIComponent(path.slice("/terminal/".length));
    } catch {
      return problem(400, "BAD_REQUEST", "Bad daemon id in the path");
    }
    const url = new URL(request.url);
    let record: string | undefined;
    if (url.searchParams.get("record") === "true" && this.#recordings !== undefined) {
      const stamp = new Date().toISOString().replace(/[:.]/g, "-");
      const safe = id.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 64);
      record = `${this.#recordings}/${safe}-${stamp}.cast`;
    }
    // Audited as the signed-in client, like the API's own routes.
    return auditActor.run(
      `client:${session.identity.name}`,
      () =>
        serveTerminalSocket(this.#host.server, request, id, {
          canType,
          ...(record !== undefined ? { record } : {}),
          ignore: ["record"],
        }),
    );
  }

  async #recording(request: Request, path: string): Promise<Response> {
    if (!this.#sameOrigin(request)) return problem(403, "FORBIDDEN", "Cross-site request refused");
    const session = this.#who(request);
    if (!session) return problem(401, "UNAUTHORIZED", "Sign in with a client token");
    if (request.method !== "GET") {
      return problem(405, "BAD_REQUEST", `Method ${request.method} not allowed`);
    }
    const dir = this.#recordings;
    if (path === "/recordings") {
      const recordings: { name: string; size: number; modified: string }[] = [];
      if (dir !== undefined) {
        try {
          for await (const entry of Deno.readDir(dir)) {
            if (!entry.isFile || !RECORDING_NAME.test(entry.name)) continue;
            const stat = await Deno.stat(`${dir}/${entry.name}`);
            recordings.push({
              name: entry.name,
              size: stat.size,
              modified: (stat.mtime ?? new Date(0)).toISOString(),
            });
          }
        } catch (error) {
          if (!(error instanceof Deno.errors.NotFound)) throw error;
        }
      }
      recordings.sort((a, b) => b.modified.localeCompare(a.modified));
      return json({ enabled: dir !== undefined, recordings });
    }
    let name = "";
    try {
      name = decodeURIComponent(path.slice("/recordings/".length));
    } catch {
      // not a name
    }
    if (dir === undefined || !RECORDING_NAME.test(name)) {
      return problem(404, "NOT_FOUND", `No recording ${JSON.stringify(name)}`);
    }
    try {
      const file = await Deno.open(`${dir}/${name}`, { read: true });
      return new Response(file.readable, {
        headers: {
          ...SECURITY_HEADERS,
          "content-type": "application/x-asciicast",
          "cache-control": "no-store",
        },
      });
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        return problem(404, "NOT_FOUND", `No recording ${JSON.stringify(name)}`);
      }
      throw error;
    }
  }
}
