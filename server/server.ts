/**
 * The controller: a WebSocket endpoint that daemons dial into, and the API an agent script uses to run commands
 * on them.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { decodeDataFrame } from "../protocol/frame.ts";
import { ProtocolError } from "../protocol/errors.ts";
import {
  type DaemonMessage,
  type HelloMessage,
  parseDaemonMessage,
  type SpawnArgs,
} from "../protocol/messages.ts";
import { SUBPROTOCOL, VERSION } from "../protocol/version.ts";
import { AsciicastWriter } from "./asciicast.ts";
import type { Connection, DaemonInfo } from "./_connection.ts";
import { CommandTimeoutError, DaemonDisconnectedError, DaemonNotFoundError } from "./errors.ts";
import { type Authenticator, createAuthenticator, type Identity, type JwtOptions } from "./auth.ts";
import { type AuditInput, AuditLog, type AuditSink } from "./audit.ts";
import { type RateLimit, RateLimiter, TokenBucket } from "./rate_limiter.ts";
import { bindsDaemonId, GuardedConnection, MAX_HELLO_BYTES, messageBytes } from "./_security.ts";
import {
  type Gap,
  type ProcessHost,
  type ProcessInfo,
  type ProcessStatus,
  RemoteProcess,
} from "./process.ts";
import { serveHttp } from "./_http_listener.ts";
import { type AttachShellOptions, RemoteShell, type ShellOptions } from "./shell.ts";
import {
  dispatchFsEvent,
  downloadDirectory,
  type DownloadDirOptions,
  downloadFile,
  downloadFileStream,
  type DownloadOptions,
  type FileHost,
  RemoteFs,
  uploadDirectory,
  type UploadDirOptions,
  type UploadDirResult,
  uploadFile,
  type UploadOptions,
  type UploadResult,
} from "./files.ts";

export type { DaemonInfo } from "./_connection.ts";

const log = getLogger(["sandd", "server"]);

/** Options of {@linkcode Server.listen}. */
export interface ServerOptions {
  /** Interface to bind. @default "127.0.0.1" */
  hostname?: string;
  /** Port; 0 picks a free one (read it from `server.port`). @default 8765 */
  port?: number;
  /** Path of the WebSocket endpoint. @default "/ws" */
  path?: string;
  /** Ping interval; a daemon silent for three intervals is dropped. @default 5_000 */
  heartbeatMs?: number;
  /** A connection must say hello within this long. @default 10_000 */
  handshakeTimeoutMs?: number;
  /** How long a command or process waits for its daemon to come back after the link drops. @default 5_000 */
  reconnectGraceMs?: number;
  /** Flow-control window per stream, in bytes. @default 1 MiB */
  streamWindow?: number;
  /** Stops the server when aborted. */
  signal?: AbortSignal;
  /**
   * Shared bearer token: daemons must send `Authorization: Bearer <token>` on the upgrade (compared in constant
   * time). Its identity is `"token"` and is not bound to a daemon id. @default undefined (no token accepted)
   */
  token?: string;
  /**
   * Accept JWT bearer credentials (EdDSA or ES256, checking `exp`, and `aud`/`iss` when given). The token's
   * `sub` must equal the daemon id the daemon says hello with, else the link is closed with code 4001.
   * @default undefined
   */
  jwt?: JwtOptions;
  /**
   * Custom authentication of the upgrade request: return an identity to accept it, `null` to refuse (401). The
   * identity's `subject` must equal the daemon id, else the link is closed with code 4001. @default undefined
   */
  authenticate?: (request: Request) => Identity | null | Promise<Identity | null>;
  /** PEM certificate chain; with `key`, the server speaks TLS and `url` is `wss://`. @default undefined */
  cert?: string;
  /** PEM private key of `cert`. @default undefined */
  key?: string;
  /**
   * Where the audit trail goes: sinks (owned and closed by the server) or an `AuditLog` (flushed, not closed).
   * @default undefined (no audit trail)
   */
  audit?: AuditSink | AuditSink[] | AuditLog;
  /** Token-bucket limits on `exec` and `spawn`, per daemon id and across all daemons. @default undefined */
  rateLimit?: ServerRateLimit;
  /**
   * Failed authentications allowed per remote address (a burst, then `rate` per second); beyond it the address
   * gets 429 until the bucket refills, valid credentials or not. `null` turns it off.
   * @default { rate: 1, burst: 20 }
   */
  authFailureLimit?: RateLimit | null;
  /** Largest message a daemon may send, in bytes; a bigger one closes its link with code 1009. @default 8 MiB */
  maxMessageBytes?: number;
  /**
   * Most bytes queued for sending to one daemon; a daemon that reads slower than this drops its link (code
   * 1008) instead of growing the controller's memory. @default 64 MiB
   */
  maxBufferedBytes?: number;
  /**
   * Most connections open at once that are still HTTP (a daemon's WebSocket stops counting once upgraded). At the
   * cap, the oldest connection still waiting for its request head makes room, or the new one is closed when every
   * connection is busy. @default 1_024
   */
  maxConnections?: number;
  /**
   * A connection must finish its request head (and TLS handshake) within this long of being accepted or of its
   * previous response, else it is closed. @default 10_000
   */
  headerTimeoutMs?: number;
}

/**
 * Rate limits of {@linkcode ServerOptions.rateLimit}.
 *
 * @example Five commands a second per daemon, 200 overall
 * ```ts
 * import type { ServerRateLimit } from "./server.ts";
 * const limits: ServerRateLimit = { perDaemon: { rate: 5, burst: 10 }, global: { rate: 200, burst: 400 } };
 * console.assert(limits.perDaemon?.burst === 10);
 * ```
 */
export interface ServerRateLimit {
  /** Commands (exec + spawn) per second and burst for each daemon. @default undefined (unlimited) */
  perDaemon?: RateLimit;
  /** Commands per second and burst across all daemons. @default undefined (unlimited) */
  global?: RateLimit;
}

/** Options of {@linkcode Server.exec}. */
export interface ExecOptions {
  /** Kill the process group after this many milliseconds and reject with `CommandTimeoutError`. */
  timeout?: number;
  /** Environment variables added to the daemon's. */
  env?: Record<string, string>;
  /** Working directory on the worker. */
  cwd?: string;
  /** Bytes (or UTF-8 text) for standard input, then EOF. Without it stdin is empty. */
  stdin?: Uint8Array | string;
  /** Aborting kills the process group and rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Output kept per stream; beyond it output is dropped and `truncated` set. @default 16 MiB */
  maxOutputBytes?: number;
}

/** The result of {@linkcode Server.exec}. A non-zero exit is a result, not an error. */
export interface ExecResult {
  /** Standard output decoded as UTF-8 (invalid bytes become U+FFFD). */
  stdout: string;
  /** Standard error decoded as UTF-8. */
  stderr: string;
  /** Standard output, byte-exact. */
  stdoutBytes: Uint8Array;
  /** Standard error, byte-exact. */
  stderrBytes: Uint8Array;
  /** Exit code; 127 for a missing program; 128 + n when signal n ended it. */
  exitCode: number;
  /** The signal that ended it, if any. */
  signal: Deno.Signal | null;
  /** Wall time from request to result, in milliseconds. */
  durationMs: number;
  /** Whether output beyond `maxOutputBytes` was dropped. */
  truncated: { stdout: boolean; stderr: boolean };
}

/** Options of {@linkcode Server.spawn}. */
export interface SpawnOptions {
  /** Environment variables added to the daemon's. */
  env?: Record<string, string>;
  /** Working directory. */
  cwd?: string;
  /** Kill the process group after this many milliseconds (`status.timedOut` is then true). */
  timeout?: number;
  /** Open stdin. @default true */
  stdin?: boolean;
  /** Output bytes the daemon retains per stream for resume. @default the daemon's (4 MiB) */
  retainBytes?: number;
  /** Called when bytes were lost because the daemon's retention overflowed while the link was down. */
  onGap?: (gap: Gap) => void;
}

/** Options of {@linkcode Server.attach}. */
export interface AttachOptions {
  /** Byte offset to replay from on both streams; `null` for the oldest retained byte. @default null */
  from?: number | null;
  /** Take over stdin. @default true */
  stdin?: boolean;
  /** Called when bytes before the retained window were asked for. */
  onGap?: (gap: Gap) => void;
}

/** Which daemons an operation addresses. */
export interface DaemonFilter {
  /** Every label must match. */
  labels?: Record<string, string>;
  /** Only these platforms. */
  platform?: string;
}

/** Options of {@linkcode Server.waitForDaemon}. */
export interface WaitOptions {
  /** Give up after this many milliseconds. @default 30_000 */
  timeout?: number;
  /** Give up when aborted. */
  signal?: AbortSignal;
}

/** Fired on `connect` and `disconnect`. */
export class DaemonEvent extends Event {
  /** The daemon. */
  readonly daemon: DaemonInfo;
  /**
   * Make the event.
   *
   * @param type `connect` or `disconnect`.
   * @param daemon The daemon.
   */
  constructor(type: "connect" | "disconnect", daemon: DaemonInfo) {
    super(type);
    this.daemon = daemon;
  }
}

/** Statistics served at `GET /stats`. */
export interface ServerStats {
  /** Connected daemons. */
  daemons: number;
  /** Connected daemons by platform. */
  byPlatform: Record<string, number>;
  /** Milliseconds since listen. */
  uptimeMs: number;
  /** Commands and processes the controller is following. */
  inFlight: number;
  /** Controller version. */
  version: string;
}

function positiveInt(name: string, value: number | undefined, min = 1): void {
  if (value !== undefined && (!Number.isInteger(value) || value < min)) {
    throw new RangeError(`${name} must be an integer >= ${min}, got ${value}`);
  }
}

function validateCommand(command: unknown): asserts command is string | string[] {
  if (typeof command === "string") {
    if (command.length === 0) throw new TypeError("Command must not be empty");
    return;
  }
  if (
    !Array.isArray(command) || command.length === 0 || !command.every((a) => typeof a === "string")
  ) {
    throw new TypeError(
      `Command must be a non-empty string or array of strings, got ${JSON.stringify(command)}`,
    );
  }
  if (command[0] === "") {
    throw new TypeError("Command program (the first array item) must not be empty");
  }
}

/**
 * Flow-control window of terminal streams. The daemon clamps a stream's window to its retention (the shell's
 * scrollback, as small as 64 KiB) and the controller acknowledges every quarter window, so a terminal window
 * must stay within 4 x 64 KiB or a small scrollback would stall the stream. Plenty for interactive output.
 */
const SHELL_WINDOW = 256 * 1024;

/** The `command` that asks the daemon for the worker's login shell (see `daemon/_pty_child.ts`). */
const LOGIN_SHELL_COMMAND = "\0login-shell";

function terminalSize(name: string, value: unknown): void {
  if (value === undefined) return;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw new RangeError(`${name} must be an integer from 1 to 65535, got ${String(value)}`);
  }
}

function validateEnv(env: unknown): void {
  if (env === undefined) return;
  if (typeof env !== "object" || env === null || Array.isArray(env)) {
    throw new TypeError(`env must be an object of strings, got ${JSON.stringify(env)}`);
  }
  for (const [key, value] of Object.entries(env)) {
    if (typeof value !== "string") {
      throw new TypeError(`env.${key} must be a string, got ${typeof value}`);
    }
    if (key === "" || key.includes("=") || key.includes("\0")) {
      throw new TypeError(`Invalid env name '${key}'`);
    }
  }
}

const DAEMON_ID = /^[A-Za-z0-9._:@-]{1,128}$/;

type SecurityOptionName =
  | "token"
  | "jwt"
  | "authenticate"
  | "cert"
  | "key"
  | "audit"
  | "rateLimit"
  | "authFailureLimit";

interface Security {
  authenticator: Authenticator;
  tls: boolean;
  audit: AuditLog | undefined;
  ownsAudit: boolean;
  limiter: RateLimiter | undefined;
}

function createSecurity(options: ServerOptions): Security {
  const authenticator = createAuthenticator({
    ...(options.token !== undefined ? { token: options.token } : {}),
    ...(options.jwt !== undefined ? { jwt: options.jwt } : {}),
    ...(options.authenticate !== undefined ? { authenticate: options.authenticate } : {}),
    onFailure: (reason) => log.warn("Refused a daemon's credentials: {reason}", { reason }),
  });
  let limiter: RateLimiter | undefined;
  if (options.rateLimit !== undefined) {
    const { perDaemon, global } = options.rateLimit ?? {};
    if (typeof options.rateLimit !== "object" || options.rateLimit === null) {
      throw new TypeError(`rateLimit must be an object, got ${String(options.rateLimit)}`);
    }
    limiter = new RateLimiter({
      ...(perDaemon !== undefined ? { perKey: perDaemon } : {}),
      ...(global !== undefined ? { global } : {}),
    });
  }
  let audit: AuditLog | undefined;
  let ownsAudit = false;
  if (options.audit instanceof AuditLog) {
    audit = options.audit;
  } else if (options.audit !== undefined) {
    audit = new AuditLog(Array.isArray(options.audit) ? options.audit : [options.audit], {
      onError: (error, record) =>
        log.error("Audit sink failed for {action} on {daemon}: {error}", {
          action: record.action,
          daemon: record.daemon,
          error: String(error),
        }),
    });
    ownsAudit = true;
  }
  return { authenticator, tls: options.cert !== undefined, audit, ownsAudit, limiter };
}

/**
 * The SandD controller. Daemons dial in over WebSocket; the script runs commands on them.
 *
 * @example Run a command on a worker
 * ```ts ignore
 * import { Server } from "@sandd/server";
 * await using server = await Server.listen({ hostname: "0.0.0.0", port: 8765 });
 * await server.waitForDaemon("worker-1", { timeout: 30_000 });
 * const r = await server.exec("worker-1", "hostname", { timeout: 10_000 });
 * console.log(r.stdout, r.exitCode);
 * ```
 *
 * @example Listen on a free port and close
 * ```ts
 * import { Server } from "./server.ts";
 * const server = await Server.listen({ port: 0 });
 * console.assert(server.port > 0 && server.daemonCount === 0);
 * await server.close();
 * ```
 */
export class Server extends EventTarget implements AsyncDisposable {
  readonly #http: Deno.HttpServer<Deno.NetAddr>;
  readonly #options: Required<
    Omit<
      ServerOptions,
      "signal" | "hostname" | "port" | "maxConnections" | "headerTimeoutMs" | SecurityOptionName
    >
  >;
  readonly #security: Security;
  readonly #connections: Map<string, Connection> = new Map();
  readonly #pendingSockets: Set<WebSocket> = new Set();
  /** Every accepted socket until its close event, so `close()` can wait for all of them. */
  readonly #openSockets: Map<WebSocket, Promise<void>> = new Map();
  readonly #processes: Map<string, Set<RemoteProcess>> = new Map();
  readonly #earlyExits: Map<string, ProcessStatus> = new Map();
  readonly #startedAt = Date.now();
  readonly #sweep: ReturnType<typeof setInterval>;
  readonly #host: ProcessHost;
  #closing: Promise<void> | null = null;

  private constructor(
    http: Deno.HttpServer<Deno.NetAddr>,
    options: ServerOptions,
    handler: { server?: Server },
    security: Security,
  ) {
    super();
    handler.server = this;
    this.#http = http;
    this.#security = security;
    if (options.authFailureLimit !== undefined) this.#authFailureLimit = options.authFailureLimit;
    this.#options = {
      path: options.path ?? "/ws",
      heartbeatMs: options.heartbeatMs ?? 5_000,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 10_000,
      reconnectGraceMs: options.reconnectGraceMs ?? 5_000,
      streamWindow: options.streamWindow ?? 1024 * 1024,
      maxMessageBytes: options.maxMessageBytes ?? 8 * 1024 * 1024,
      maxBufferedBytes: options.maxBufferedBytes ?? 64 * 1024 * 1024,
    };
    this.#sweep = setInterval(() => this.#heartbeat(), this.#options.heartbeatMs);
    const connections = this.#connections;
    const processes = this.#processes;
    const grace = this.#options.reconnectGraceMs;
    this.#host = {
      connection: (id) => connections.get(id) ?? null,
      release: (p) => {
        const key = `${p.daemonId}\0${p.id}`;
        const set = processes.get(key);
        set?.delete(p);
        if (set?.size === 0) processes.delete(key);
      },
      reconnectGraceMs: grace,
    };
    options.signal?.addEventListener("abort", () => this.close(), { once: true });
  }

  /**
   * Start listening. Validates every option before opening the socket.
   *
   * @param options Where to listen and the timing knobs.
   * @returns The listening server.
   */
  static async listen(options: ServerOptions = {}): Promise<Server> {
    positiveInt("port", options.port, 0);
    if (options.port !== undefined && options.port > 65535) {
      throw new RangeError(`port must be from 0 to 65535, got ${options.port}`);
    }
    const limit = options.authFailureLimit;
    if (limit !== undefined && limit !== null) {
      if (
        !(limit.rate > 0) || !Number.isFinite(limit.rate) || !(limit.burst >= 1) ||
        !Number.isFinite(limit.burst)
      ) {
        throw new RangeError(
          `authFailureLimit needs a positive rate and a burst >= 1, got ${JSON.stringify(limit)}`,
        );
      }
    }
    positiveInt("heartbeatMs", options.heartbeatMs, 100);
    positiveInt("handshakeTimeoutMs", options.handshakeTimeoutMs);
    positiveInt("reconnectGraceMs", options.reconnectGraceMs, 0);
    positiveInt("streamWindow", options.streamWindow, 1024);
    if (options.path !== undefined && !options.path.startsWith("/")) {
      throw new TypeError(`path must start with '/', got '${options.path}'`);
    }
    positiveInt("maxMessageBytes", options.maxMessageBytes, 1024);
    positiveInt("maxBufferedBytes", options.maxBufferedBytes, 1024);
    if ((options.cert === undefined) !== (options.key === undefined)) {
      throw new TypeError("cert and key must be given together");
    }
    for (const name of ["cert", "key"] as const) {
      const pem = options[name];
      if (pem !== undefined && (typeof pem !== "string" || !pem.includes("-----BEGIN "))) {
        throw new TypeError(
          `${name} must be a PEM string, got ${JSON.stringify(String(pem).slice(0, 40))}`,
        );
      }
    }
    const security = createSecurity(options);
    const holder: { server?: Server } = {};
    const { promise: listening, resolve } = Promise.withResolvers<void>();
    let http: Deno.HttpServer<Deno.NetAddr>;
    try {
      http = serveHttp({
        ...(options.cert !== undefined && options.key !== undefined
          ? { cert: options.cert, key: options.key }
          : {}),
        hostname: options.hostname ?? "127.0.0.1",
        port: options.port ?? 8765,
        maxConnections: options.maxConnections,
        headerTimeoutMs: options.headerTimeoutMs,
        onListen: () => resolve(),
        onError: (error) => {
          log.error("HTTP handler failed: {error}", { error: String(error) });
          return new Response("Internal error", { status: 500 });
        },
      }, (request, info) => holder.server!.#handle(request, info));
    } catch (error) {
      if (security.ownsAudit) await security.audit?.close();
      throw error;
    }
    await listening;
    return new Server(http, options, holder, security);
  }

  /** The port the server listens on. */
  get port(): number {
    return this.#http.addr.port;
  }

  /** The host name or address it listens on. */
  get hostname(): string {
    return this.#http.addr.hostname;
  }

  /** The WebSocket URL daemons on this machine can dial (`wss://` when serving TLS). */
  get url(): string {
    const host = this.hostname === "0.0.0.0" ? "127.0.0.1" : this.hostname;
    return `${this.#security.tls ? "wss" : "ws"}://${
      host.includes(":") ? `[${host}]` : host
    }:${this.port}${this.#options.path}`;
  }

  /** Number of connected daemons. */
  get daemonCount(): number {
    return this.#connections.size;
  }

  /**
   * Connected daemons, optionally filtered by labels or platform.
   *
   * @param filter Labels that must all match, and/or a platform.
   * @returns Their descriptions.
   */
  daemons(filter: DaemonFilter = {}): DaemonInfo[] {
    const out: DaemonInfo[] = [];
    for (const conn of this.#connections.values()) {
      if (matches(conn.info, filter)) out.push({ ...conn.info, labels: { ...conn.info.labels } });
    }
    return out;
  }

  /**
   * One connected daemon.
   *
   * @param id Daemon id.
   * @returns Its description, or undefined when it is not connected.
   */
  daemon(id: string): DaemonInfo | undefined {
    const info = this.#connections.get(id)?.info;
    return info ? { ...info, labels: { ...info.labels } } : undefined;
  }

  /** Statistics, as served at `GET /stats`. */
  stats(): ServerStats {
    const byPlatform: Record<string, number> = {};
    for (const conn of this.#connections.values()) {
      byPlatform[conn.info.platform] = (byPlatform[conn.info.platform] ?? 0) + 1;
    }
    let inFlight = 0;
    for (const set of this.#processes.values()) inFlight += set.size;
    return {
      daemons: this.#connections.size,
      byPlatform,
      uptimeMs: Date.now() - this.#startedAt,
      inFlight,
      version: VERSION,
    };
  }

  /**
   * Wait until a daemon with this id is connected. Event-driven: resolves on its `connect`.
   *
   * @param id Daemon id.
   * @param options Timeout and abort signal.
   * @returns Its description.
   * @throws {DaemonNotFoundError} When it did not connect in time.
   */
  waitForDaemon(id: string, options: WaitOptions = {}): Promise<DaemonInfo> {
    positiveInt("timeout", options.timeout, 0);
    const current = this.daemon(id);
    if (current) return Promise.resolve(current);
    const timeout = options.timeout ?? 30_000;
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.removeEventListener("connect", onConnect);
        options.signal?.removeEventListener("abort", onAbort);
      };
      const onConnect = (event: Event) => {
        const daemon = (event as DaemonEvent).daemon;
        if (daemon.id !== id) return;
        done();
        resolve(daemon);
      };
      const onAbort = () => {
        done();
        reject(options.signal!.reason);
      };
      const timer = setTimeout(() => {
        done();
        reject(new DaemonNotFoundError(id, `Daemon '${id}' did not connect within ${timeout} ms`));
      }, timeout);
      this.addEventListener("connect", onConnect);
      options.signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  #connection(id: string): Connection {
    if (typeof id !== "string" || !DAEMON_ID.test(id)) {
      throw new TypeError(
        `Daemon id must be 1-128 of A-Z a-z 0-9 . _ : @ -, got ${JSON.stringify(id)}`,
      );
    }
    const conn = this.#connections.get(id);
    if (!conn) throw new DaemonNotFoundError(id);
    return conn;
  }

  /**
   * Start a process on a worker and stream its I/O. A string runs through `sh -c` (`cmd /C` on Windows); an
   * array runs the program directly.
   *
   * @param id Daemon id.
   * @param command Shell string or argv.
   * @param options Environment, directory, timeout, stdin.
   * @returns A handle whose streams resume across dropped links.
   */
  async spawn(
    id: string,
    command: string | string[],
    options: SpawnOptions = {},
  ): Promise<RemoteProcess> {
    validateCommand(command);
    validateEnv(options.env);
    positiveInt("timeout", options.timeout);
    positiveInt("retainBytes", options.retainBytes, 0);
    if (options.cwd !== undefined && (typeof options.cwd !== "string" || options.cwd === "")) {
      throw new TypeError(`cwd must be a non-empty string, got ${JSON.stringify(options.cwd)}`);
    }
    return await this.#audited(
      "spawn",
      id,
      command,
      () => this.#spawn(id, command, options, undefined),
    );
  }

  /** Run a spawn-like operation and write its start and its exit to the audit trail. */
  async #audited(
    action: "spawn" | "shell",
    id: string,
    command: string | string[],
    run: () => Promise<RemoteProcess>,
  ): Promise<RemoteProcess> {
    if (!this.#security.audit) return await run();
    const started = performance.now();
    const identity = this.#connections.get(id)?.info.identity;
    const base = { daemon: id, ...(identity !== undefined ? { identity } : {}), command };
    let process: RemoteProcess;
    try {
      process = await run();
    } catch (error) {
      this.audit({
        ...base,
        action,
        ok: false,
        error: String((error as Error)?.message ?? error),
      });
      throw error;
    }
    this.audit(
      { ...base, action, pid: process.pid, process: process.id, ok: true } as AuditInput,
    );
    process.status.then(
      (status) =>
        this.audit({
          ...base,
          action: "exit",
          process: process.id,
          exitCode: status.exitCode,
          durationMs: performance.now() - started,
          ok: true,
        } as AuditInput),
      (error) =>
        this.audit({
          ...base,
          action: "exit",
          process: process.id,
          durationMs: performance.now() - started,
          ok: false,
          error: String((error as Error)?.message ?? error),
        } as AuditInput),
    );
    return process;
  }

  async #spawn(
    id: string,
    command: string | string[],
    options: SpawnOptions,
    pty: { cols: number; rows: number } | undefined,
  ): Promise<RemoteProcess> {
    const conn = this.#connection(id);
    this.#rateLimit(id);
    const window = pty
      ? Math.min(this.#options.streamWindow, SHELL_WINDOW)
      : this.#options.streamWindow;
    const process = new RemoteProcess({
      host: this.#host,
      daemonId: id,
      command,
      window,
      outputs: pty
        ? [{ name: "output", from: 0 }]
        : [{ name: "stdout", from: 0 }, { name: "stderr", from: 0 }],
      stdin: options.stdin ?? true,
      onGap: options.onGap,
    });
    const { outputs, stdin } = process.bindStreams(conn);
    const args: SpawnArgs = {
      command,
      stdout: outputs[0]!,
      window,
      ...(outputs[1] !== undefined ? { stderr: outputs[1] } : {}),
      ...(stdin !== undefined ? { stdin } : {}),
      ...(options.env ? { env: options.env } : {}),
      ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
      ...(options.timeout !== undefined ? { timeoutMs: options.timeout } : {}),
      ...(options.retainBytes !== undefined ? { retainBytes: options.retainBytes } : {}),
      ...(pty ? { pty } : {}),
    };
    let data: Record<string, unknown>;
    try {
      data = await conn.request("spawn", args);
    } catch (error) {
      process.fail(error as Error);
      throw error;
    }
    process.started(conn, String(data.proc), Number(data.pid), stdin, 0);
    this.#register(process);
    return process;
  }

  #register(process: RemoteProcess): void {
    const key = `${process.daemonId}\0${process.id}`;
    let set = this.#processes.get(key);
    if (!set) this.#processes.set(key, set = new Set());
    set.add(process);
    const early = this.#earlyExits.get(key);
    if (early) process.exit(early);
  }

  /**
   * Attach to a process already running (or recently exited) on a worker, e.g. from a new `Server` after the
   * agent restarted. Output replays from `from`.
   *
   * @param id Daemon id.
   * @param processId The process id (`p.id`).
   * @param options Replay offset and stdin takeover.
   * @returns A handle of the same shape as `spawn`'s.
   * @throws {UnknownProcessError} When the daemon holds no such process.
   */
  async attach(id: string, processId: string, options: AttachOptions = {}): Promise<RemoteProcess> {
    if (typeof processId !== "string" || processId === "") {
      throw new TypeError(
        `Process id must be a non-empty string, got ${JSON.stringify(processId)}`,
      );
    }
    if (options.from !== undefined && options.from !== null) positiveInt("from", options.from, 0);
    return await this.#attach(id, processId, options, false);
  }

  /**
   * Open an interactive terminal on a worker: a program on a pseudo-terminal, by default the worker's login shell.
   * The session survives dropped links (the handle resumes by itself when the daemon reconnects within the grace)
   * and can be picked up again with {@linkcode Server.attachShell}.
   *
   * @example Open a shell
   * ```ts ignore
   * await using sh = await server.shell("worker-1", { cols: 120, rows: 40 });
   * await sh.write("ls\r");
   * ```
   *
   * @param id Daemon id.
   * @param options Program, size, environment, directory, scrollback.
   * @returns The session.
   * @throws {RangeError} For `cols`/`rows` outside 1..65535 or a bad `scrollback`/`timeout`.
   * @throws {DaemonNotFoundError} When no such daemon is connected.
   */
  async shell(id: string, options: ShellOptions = {}): Promise<RemoteShell> {
    if (options.command !== undefined) validateCommand(options.command);
    validateEnv(options.env);
    terminalSize("cols", options.cols);
    terminalSize("rows", options.rows);
    positiveInt("timeout", options.timeout);
    positiveInt("scrollback", options.scrollback, 0);
    if (options.cwd !== undefined && (typeof options.cwd !== "string" || options.cwd === "")) {
      throw new TypeError(`cwd must be a non-empty string, got ${JSON.stringify(options.cwd)}`);
    }
    if (
      options.record !== undefined && (typeof options.record !== "string" || options.record === "")
    ) {
      throw new TypeError(
        `record must be a non-empty file path, got ${JSON.stringify(options.record)}`,
      );
    }
    const command = options.command ?? LOGIN_SHELL_COMMAND;
    const cols = options.cols ?? 80;
    const rows = options.rows ?? 24;
    const recorder = options.record === undefined
      ? undefined
      : await AsciicastWriter.open(options.record, { cols, rows, title: `sandd ${id}` });
    let process: RemoteProcess;
    try {
      process = await this.#audited(
        "shell",
        id,
        command === LOGIN_SHELL_COMMAND ? "(login shell)" : command,
        () =>
          this.#spawn(id, command, {
            stdin: true,
            retainBytes: options.scrollback ?? 1024 * 1024,
            ...(options.env ? { env: options.env } : {}),
            ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
            ...(options.timeout !== undefined ? { timeout: options.timeout } : {}),
            ...(options.onGap ? { onGap: options.onGap } : {}),
          }, { cols, rows }),
      );
    } catch (error) {
      await recorder?.close().catch(() => {});
      throw error;
    }
    return new RemoteShell(
      process,
      (cols, rows) => this.#resizeTerminal(id, process.id, cols, rows),
      recorder,
    );
  }

  /**
   * Attach to a terminal session already on a worker (after a long disconnect, or from another `Server`). The
   * retained scrollback replays first, then output is live; input is taken over from any earlier handle.
   *
   * @example Re-attach
   * ```ts ignore
   * const sh = await server.attachShell("worker-1", savedId);
   * sh.output.pipeTo(Deno.stdout.writable, { preventClose: true });
   * ```
   *
   * @param id Daemon id.
   * @param shellId The session id (`sh.id`).
   * @param options Replay offset.
   * @returns The session.
   * @throws {UnknownProcessError} When the daemon holds no such session.
   */
  async attachShell(
    id: string,
    shellId: string,
    options: AttachShellOptions = {},
  ): Promise<RemoteShell> {
    if (typeof shellId !== "string" || shellId === "") {
      throw new TypeError(`Shell id must be a non-empty string, got ${JSON.stringify(shellId)}`);
    }
    if (options.from !== undefined && options.from !== null) positiveInt("from", options.from, 0);
    const process = await this.#attach(id, shellId, {
      stdin: true,
      ...(options.from !== undefined ? { from: options.from } : {}),
      ...(options.onGap ? { onGap: options.onGap } : {}),
    }, true);
    return new RemoteShell(
      process,
      (cols, rows) => this.#resizeTerminal(id, shellId, cols, rows),
    );
  }

  async #resizeTerminal(id: string, proc: string, cols: number, rows: number): Promise<void> {
    const conn = this.#connections.get(id);
    if (!conn) throw new DaemonDisconnectedError(id);
    await conn.request("resize", { proc, cols, rows });
  }

  async #attach(
    id: string,
    processId: string,
    options: AttachOptions,
    pty: boolean,
  ): Promise<RemoteProcess> {
    const conn = this.#connection(id);
    const window = pty
      ? Math.min(this.#options.streamWindow, SHELL_WINDOW)
      : this.#options.streamWindow;
    const from = options.from ?? null;
    const process = new RemoteProcess({
      host: this.#host,
      daemonId: id,
      command: "",
      window,
      outputs: pty ? [{ name: "output", from: from ?? 0 }] : [{ name: "stdout", from: from ?? 0 }, {
        name: "stderr",
        from: from ?? 0,
      }],
      stdin: options.stdin ?? true,
      onGap: options.onGap,
    });
    const { outputs, stdin } = process.bindStreams(conn);
    process.started(conn, processId, 0, undefined, 0);
    this.#register(process);
    let data: Record<string, unknown>;
    try {
      data = await conn.request("attach", {
        proc: processId,
        window,
        stdout: { sid: outputs[0]!, from },
        ...(outputs[1] !== undefined ? { stderr: { sid: outputs[1], from } } : {}),
        ...(stdin !== undefined ? { stdin } : {}),
      });
    } catch (error) {
      process.fail(error as Error);
      throw error;
    }
    const stdinOffset = Number(data.stdinOffset ?? 0);
    // A new handle taking over stdin continues the daemon's numbering: its first byte is the daemon's next one
    // (otherwise the daemon would skip as many bytes as earlier writers had sent).
    const input = process.input;
    if (input && input.offset === 0 && input.acked === 0) input.offset = stdinOffset;
    process.started(conn, processId, Number(data.pid), stdin, stdinOffset);
    return process;
  }

  /**
   * Processes held by a daemon, running or recently exited.
   *
   * @param id Daemon id.
   * @returns Their descriptions.
   */
  async processes(id: string): Promise<ProcessInfo[]> {
    const data = await this.#connection(id).request("processes", {});
    return (data.processes as (Omit<ProcessInfo, "startedAt"> & { startedAt: string })[]).map((
      p,
    ) => ({
      ...p,
      startedAt: new Date(p.startedAt),
    }));
  }

  /**
   * Run a command to completion and collect its output.
   *
   * @param id Daemon id.
   * @param command Shell string (`sh -c`) or argv.
   * @param options Timeout, environment, directory, stdin, abort signal, output cap.
   * @returns Output and exit status; a non-zero exit is a result.
   * @throws {CommandTimeoutError} When the timeout killed it (with the partial output).
   * @throws {DaemonNotFoundError} When no such daemon is connected.
   * @throws {DaemonDisconnectedError} When the daemon dropped and did not come back within the grace.
   */
  async exec(
    id: string,
    command: string | string[],
    options: ExecOptions = {},
  ): Promise<ExecResult> {
    validateCommand(command);
    validateEnv(options.env);
    positiveInt("timeout", options.timeout);
    positiveInt("maxOutputBytes", options.maxOutputBytes, 0);
    if (
      options.stdin !== undefined && typeof options.stdin !== "string" &&
      !(options.stdin instanceof Uint8Array)
    ) {
      throw new TypeError("stdin must be a string or Uint8Array");
    }
    if (options.cwd !== undefined && (typeof options.cwd !== "string" || options.cwd === "")) {
      throw new TypeError(`cwd must be a non-empty string, got ${JSON.stringify(options.cwd)}`);
    }
    options.signal?.throwIfAborted();
    if (!this.#security.audit) return await this.#exec(id, command, options);
    const started = performance.now();
    const identity = this.#connections.get(id)?.info.identity;
    const base = {
      daemon: id,
      ...(identity !== undefined ? { identity } : {}),
      action: "exec",
      command,
    };
    try {
      const result = await this.#exec(id, command, options);
      this.audit({
        ...base,
        exitCode: result.exitCode,
        bytes: result.stdoutBytes.byteLength + result.stderrBytes.byteLength,
        durationMs: result.durationMs,
        ok: true,
      });
      return result;
    } catch (error) {
      this.audit({
        ...base,
        durationMs: performance.now() - started,
        ok: false,
        error: String((error as Error)?.message ?? error),
      });
      throw error;
    }
  }

  async #exec(id: string, command: string | string[], options: ExecOptions): Promise<ExecResult> {
    const started = performance.now();
    const process = await this.#spawn(id, command, {
      stdin: options.stdin !== undefined,
      ...(options.env ? { env: options.env } : {}),
      ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
      ...(options.timeout !== undefined ? { timeout: options.timeout } : {}),
    }, undefined);
    const max = options.maxOutputBytes ?? 16 * 1024 * 1024;
    const out = new Collector(max);
    const err = new Collector(max);
    const partial = () => ({
      stdout: out.text(),
      stderr: err.text(),
      durationMs: performance.now() - started,
    });
    const onAbort = () => {
      process.kill("SIGKILL").catch(() => {});
      process.fail(options.signal!.reason);
    };
    options.signal?.addEventListener("abort", onAbort, { once: true });
    // Backstop in case the daemon never reports the timeout kill.
    const backstop = options.timeout !== undefined
      ? setTimeout(
        () => process.fail(new CommandTimeoutError(options.timeout!, partial())),
        options.timeout + Math.max(5_000, this.#options.reconnectGraceMs + 1_000),
      )
      : undefined;
    try {
      if (options.stdin !== undefined) {
        const bytes = typeof options.stdin === "string"
          ? new TextEncoder().encode(options.stdin)
          : options.stdin;
        const input = process.input!;
        input.write(bytes).then(() => input.end(), () => {});
      }
      await Promise.all([
        process.drainOutput(0, (chunk) => out.add(chunk)),
        process.drainOutput(1, (chunk) => err.add(chunk)),
      ]);
      const status = await process.status;
      if (status.timedOut) throw new CommandTimeoutError(options.timeout!, partial());
      return {
        stdout: out.text(),
        stderr: err.text(),
        stdoutBytes: out.bytes(),
        stderrBytes: err.bytes(),
        exitCode: status.exitCode,
        signal: status.signal,
        durationMs: performance.now() - started,
        truncated: {
          stdout: out.truncated || status.truncated?.[0] === true,
          stderr: err.truncated || status.truncated?.[1] === true,
        },
      };
    } finally {
      clearTimeout(backstop);
      options.signal?.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Run a command on every matching daemon at once.
   *
   * @param filter Which daemons.
   * @param command Shell string or argv.
   * @param options As for {@linkcode Server.exec}.
   * @returns Each daemon's result, or the error it failed with.
   */
  async broadcast(
    filter: DaemonFilter,
    command: string | string[],
    options: ExecOptions = {},
  ): Promise<Map<string, ExecResult | Error>> {
    validateCommand(command);
    const targets = this.daemons(filter).map((d) => d.id);
    const results = await Promise.all(
      targets.map((id) => this.exec(id, command, options).catch((error: Error) => error)),
    );
    return new Map(targets.map((id, i) => [id, results[i]!]));
  }

  // --- files (see server/files.ts) ---

  #fileHost: FileHost = { connection: (id) => this.#connection(id) };

  /**
   * Upload bytes or a stream to a file on a worker: streamed with flow control (constant memory), verified with
   * SHA-256 on both sides, written to a temporary file beside the target, fsynced and renamed, so a failed or
   * cut upload leaves the target untouched. An interrupted upload restarts from the beginning.
   *
   * @example Upload a file
   * ```ts ignore
   * await server.upload("worker-1", "/srv/data.bin", bytes, { mode: 0o644, mkdirs: true });
   * ```
   *
   * @param id Daemon id.
   * @param path Target path on the worker.
   * @param data The bytes, or a stream of them.
   * @param options Mode, parents, progress, abort signal.
   * @returns Bytes written and their SHA-256.
   * @throws {FileError} `ENOENT`, `EACCES`, `EISDIR`, `ENOSPC`, `EINTEGRITY`... with the path.
   */
  upload(
    id: string,
    path: string,
    data: Uint8Array | ReadableStream<Uint8Array>,
    options: UploadOptions = {},
  ): Promise<UploadResult> {
    return uploadFile(this.#fileHost, id, path, data, options);
  }

  /**
   * Download a whole file into memory. A missing file is an error, an empty file is empty bytes.
   *
   * @param id Daemon id.
   * @param path Path on the worker.
   * @param options Resume offset, progress, abort signal.
   * @returns The bytes (from `from` on).
   * @throws {FileError} `ENOENT`, `EACCES`, `EISDIR`, `EINTEGRITY`... with the path.
   */
  download(id: string, path: string, options: DownloadOptions = {}): Promise<Uint8Array> {
    return downloadFile(this.#fileHost, id, path, options);
  }

  /**
   * Stream a file from a worker with flow control; the stream errors with `EINTEGRITY` if the SHA-256 of what
   * arrived differs from the daemon's. Resolves once the daemon has opened the file.
   *
   * @param id Daemon id.
   * @param path Path on the worker.
   * @param options Resume offset, progress, abort signal.
   * @returns The bytes.
   * @throws {FileError} When the file cannot be opened.
   */
  downloadStream(
    id: string,
    path: string,
    options: DownloadOptions = {},
  ): Promise<ReadableStream<Uint8Array>> {
    return downloadFileStream(this.#fileHost, id, path, options);
  }

  /**
   * Upload a local directory tree as a tar stream (modes, mtimes, symlinks as links, any UTF-8 names). It is
   * unpacked into a temporary directory beside the target and renamed into place; an existing target directory
   * is replaced.
   *
   * @param id Daemon id.
   * @param localDir Local directory.
   * @param remoteDir Target directory on the worker.
   * @param options Mode, parents, progress, abort signal.
   * @returns Counts, bytes and the archive's SHA-256.
   */
  uploadDir(
    id: string,
    localDir: string,
    remoteDir: string,
    options: UploadDirOptions = {},
  ): Promise<UploadDirResult> {
    return uploadDirectory(this.#fileHost, id, localDir, remoteDir, options);
  }

  /**
   * Download a directory tree from a worker into a local directory (replaced atomically when it exists).
   *
   * @param id Daemon id.
   * @param remoteDir Directory on the worker.
   * @param localDir Local target.
   * @param options Progress, abort signal.
   */
  downloadDir(
    id: string,
    remoteDir: string,
    localDir: string,
    options: DownloadDirOptions = {},
  ): Promise<void> {
    return downloadDirectory(this.#fileHost, id, remoteDir, localDir, options);
  }

  /**
   * The file system of a worker: `stat`, `list`, `mkdir`, `remove`, `move`, `watch`.
   *
   * @param id Daemon id (need not be connected yet; each call uses the current link).
   * @returns The handle.
   */
  fs(id: string): RemoteFs {
    if (typeof id !== "string" || !DAEMON_ID.test(id)) {
      throw new TypeError(
        `Daemon id must be 1-128 of A-Z a-z 0-9 . _ : @ -, got ${JSON.stringify(id)}`,
      );
    }
    return new RemoteFs(this.#fileHost, id);
  }

  // --- connection handling ---

  /** Failed authentications per remote address. */
  readonly #authFailures: Map<string, TokenBucket> = new Map();
  #authFailureLimit: RateLimit | null = { rate: 1, burst: 20 };

  #authFailed(address: string): void {
    if (!this.#authFailureLimit) return;
    let bucket = this.#authFailures.get(address);
    if (!bucket) {
      if (this.#authFailures.size >= 10_000) {
        // Forget addresses that have recovered; if none has, the oldest.
        for (const [key, old] of this.#authFailures) if (old.full) this.#authFailures.delete(key);
        if (this.#authFailures.size >= 10_000) {
          this.#authFailures.delete(this.#authFailures.keys().next().value!);
        }
      }
      bucket = new TokenBucket(this.#authFailureLimit!);
      this.#authFailures.set(address, bucket);
    }
    bucket.tryTake();
  }

  async #handle(request: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Promise<Response> {
    const url = new URL(request.url);
    if (request.method === "GET" && url.pathname === "/health") {
      return Response.json({ status: "ok", version: VERSION });
    }
    const stats = request.method === "GET" && url.pathname === "/stats";
    if (!stats && url.pathname !== this.#options.path) {
      return new Response("Not found\n", { status: 404 });
    }
    const remote = `${info.remoteAddr.hostname}:${info.remoteAddr.port}`;
    // An address that keeps failing authentication is slowed down: 429 until its bucket refills.
    const failures = this.#authFailures.get(info.remoteAddr.hostname);
    if (failures && failures.available < 1) {
      const retry = Math.ceil(failures.retryAfterMs() / 1000);
      return new Response("Too many failed attempts\n", {
        status: 429,
        headers: { "retry-after": String(retry) },
      });
    }
    // Authenticate before anything else is looked at; a refusal says nothing about why (the log does).
    const identity = await this.#security.authenticator(request);
    if (identity === null) {
      this.#authFailed(info.remoteAddr.hostname);
      log.warn("Answered 401 to {remote} on {path}", { remote, path: url.pathname });
      return new Response("Unauthorized\n", {
        status: 401,
        headers: { "www-authenticate": "Bearer" },
      });
    }
    if (stats) return Response.json(this.stats());
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return Response.json({ error: "Expected a WebSocket upgrade" }, { status: 400 });
    }
    const offered = (request.headers.get("sec-websocket-protocol") ?? "").split(",").map((s) =>
      s.trim()
    )
      .filter(Boolean);
    if (!offered.includes(SUBPROTOCOL)) {
      return Response.json({
        error: `Unsupported protocol: offered [${
          offered.join(", ")
        }]; this controller speaks ${SUBPROTOCOL}`,
      }, { status: 426 });
    }
    if (this.#closing) return new Response("Shutting down\n", { status: 503 });
    const { socket, response } = Deno.upgradeWebSocket(request, {
      protocol: SUBPROTOCOL,
      idleTimeout: 0,
    });
    this.#accept(socket, remote, identity);
    return response;
  }

  #accept(socket: WebSocket, remoteAddress: string, identity: Identity): void {
    socket.binaryType = "arraybuffer";
    this.#pendingSockets.add(socket);
    const closed = Promise.withResolvers<void>();
    this.#openSockets.set(socket, closed.promise);
    let conn: Connection | null = null;
    let refused = false;
    const handshake = setTimeout(() => {
      log.warn("No hello from {remote} within the handshake timeout", { remote: remoteAddress });
      socket.close(4008, "handshake timeout");
    }, this.#options.handshakeTimeoutMs);
    socket.onmessage = (event) => {
      if (refused) return;
      const limit = conn ? this.#options.maxMessageBytes : MAX_HELLO_BYTES;
      const size = messageBytes(event.data, limit);
      if (size > limit) {
        log.warn("A {size}-byte message from {who} exceeds {limit} bytes; closing its link", {
          size,
          who: conn?.info.id ?? remoteAddress,
          limit,
        });
        refused = true;
        clearTimeout(handshake);
        socket.close(1009, "message too big");
        if (conn) this.#disconnected(conn);
        return;
      }
      if (conn) {
        conn.lastSeen = Date.now();
        if (typeof event.data === "string") this.#onText(conn, event.data);
        else this.#onBinary(conn, new Uint8Array(event.data as ArrayBuffer));
        return;
      }
      // Handshake: the first message must be a valid hello.
      let hello: DaemonMessage;
      try {
        if (typeof event.data !== "string") {
          throw new ProtocolError("Expected a hello text frame first");
        }
        hello = parseDaemonMessage(event.data);
        if (hello.t !== "hello") throw new ProtocolError(`Expected hello first, got '${hello.t}'`);
        if (!DAEMON_ID.test(hello.id)) throw new ProtocolError(`Invalid daemon id '${hello.id}'`);
      } catch (error) {
        refused = true;
        clearTimeout(handshake);
        socket.close(4000, (error as Error).message.slice(0, 120));
        return;
      }
      clearTimeout(handshake);
      this.#pendingSockets.delete(socket);
      if (bindsDaemonId(identity) && identity.subject !== hello.id) {
        // A per-daemon credential speaks for one daemon id only.
        log.warn("Refused daemon id {id} from {remote}: its credential is for {subject}", {
          id: hello.id,
          remote: remoteAddress,
          subject: identity.subject,
        });
        refused = true;
        socket.close(4001, "credential does not match the daemon id");
        return;
      }
      conn = this.#register_connection(socket, hello, remoteAddress, identity.subject);
      if (!conn) refused = true;
    };
    socket.onclose = () => {
      clearTimeout(handshake);
      this.#pendingSockets.delete(socket);
      this.#openSockets.delete(socket);
      closed.resolve();
      if (conn) this.#disconnected(conn);
    };
    socket.onerror = () => {};
  }

  #register_connection(
    socket: WebSocket,
    hello: HelloMessage,
    remoteAddress: string,
    identity: string,
  ): Connection | null {
    const info: DaemonInfo = {
      id: hello.id,
      labels: hello.labels,
      hostname: hello.hostname,
      platform: hello.platform,
      arch: hello.arch,
      version: hello.version,
      pid: hello.pid,
      connectedAt: new Date(),
      remoteAddress,
      identity,
    };
    const previous = this.#connections.get(info.id);
    if (previous) {
      // Policy: the same daemon process (same instance) with the same authenticated identity reconnecting
      // replaces its older connection, which may be half-open; anything else claiming a connected id is refused.
      if (previous.instance !== hello.instance || previous.info.identity !== identity) {
        log.warn("Refused a second daemon claiming id {id} from {remote}", {
          id: info.id,
          remote: remoteAddress,
        });
        socket.close(4009, `Daemon id '${info.id}' is already connected`);
        return null;
      }
      log.info("Daemon {id} reconnected; replacing its older connection", { id: info.id });
      previous.close(4004, "replaced by a newer connection of the same daemon");
      this.#disconnected(previous);
    }
    const conn = new GuardedConnection(socket, info, hello.instance, {
      maxBufferedBytes: this.#options.maxBufferedBytes,
      onOverflow: (guarded, buffered) => {
        log.warn("Daemon {id} is not reading: {buffered} bytes queued; dropping its link", {
          id: guarded.info.id,
          buffered,
        });
        guarded.close(1008, "send buffer overflow");
        this.#disconnected(guarded);
      },
      onRequest: (guarded, op, args, result) => {
        if (op !== "signal" || !this.#security.audit) return;
        const started = performance.now();
        const record = (ok: boolean, error?: unknown) =>
          this.audit({
            daemon: guarded.info.id,
            identity: guarded.info.identity,
            action: "signal",
            command: String(args.signal),
            process: String(args.proc),
            durationMs: performance.now() - started,
            ok,
            ...(error !== undefined ? { error: String((error as Error)?.message ?? error) } : {}),
          } as AuditInput);
        result.then(() => record(true), (error) => record(false, error));
      },
    });
    this.#connections.set(info.id, conn);
    conn.send({ t: "welcome", version: VERSION, heartbeatMs: this.#options.heartbeatMs });
    log.info("Daemon {id} connected from {remote}", { id: info.id, remote: remoteAddress });
    this.audit({ daemon: info.id, identity, action: "connect", ok: true });
    for (const set of this.#processes.values()) {
      for (const process of set) {
        if (process.daemonId === info.id) process.reattach(conn);
      }
    }
    this.dispatchEvent(new DaemonEvent("connect", { ...info }));
    return conn;
  }

  #disconnected(conn: Connection): void {
    if (conn.closed && this.#connections.get(conn.info.id) !== conn) return;
    conn.closedNow();
    if (this.#connections.get(conn.info.id) !== conn) return;
    this.#connections.delete(conn.info.id);
    log.info("Daemon {id} disconnected", { id: conn.info.id });
    this.audit({
      daemon: conn.info.id,
      identity: conn.info.identity,
      action: "disconnect",
      durationMs: Date.now() - conn.info.connectedAt.getTime(),
      ok: true,
    });
    for (const set of this.#processes.values()) {
      for (const process of set) {
        if (process.daemonId === conn.info.id) {
          if (this.#closing) {
            process.fail(new DaemonDisconnectedError(conn.info.id, "Server closed"));
          } else process.linkLost();
        }
      }
    }
    this.dispatchEvent(new DaemonEvent("disconnect", { ...conn.info }));
  }

  #onText(conn: Connection, text: string): void {
    let message: DaemonMessage;
    try {
      message = parseDaemonMessage(text);
    } catch (error) {
      log.warn("Refused a message from {id}: {message}", {
        id: conn.info.id,
        message: (error as Error).message,
      });
      conn.send({ t: "error", code: "PROTOCOL", message: (error as Error).message });
      return;
    }
    switch (message.t) {
      case "ping":
        conn.send({ t: "pong" });
        return;
      case "pong":
        return;
      case "res":
        if (
          !conn.response(
            message.rid,
            message.ok,
            message.ok ? message.data : undefined,
            message.ok ? undefined : message.error,
          )
        ) {
          conn.send({ t: "error", code: "PROTOCOL", message: `No pending request ${message.rid}` });
        }
        return;
      case "ack":
        conn.routes.get(message.sid)?.onAck?.(message.offset);
        return;
      case "eof":
        conn.routes.get(message.sid)?.onEof?.(message.offset, message.sha256);
        return;
      case "gap":
        conn.routes.get(message.sid)?.onGap?.(message.from, message.to);
        return;
      case "reset":
        conn.routes.get(message.sid)?.onReset?.(message.reason);
        return;
      case "exit":
        this.#onExit(conn, message.proc, {
          exitCode: message.exitCode,
          signal: message.signal as Deno.Signal | null,
          timedOut: message.timedOut,
          ...(message.truncated ? { truncated: message.truncated } : {}),
        });
        return;
      case "fsevent":
        dispatchFsEvent(conn, message);
        return;
      case "error":
        log.warn("Daemon {id} reported: {code} {message}", {
          id: conn.info.id,
          code: message.code,
          message: message.message,
        });
        return;
      case "hello":
        conn.send({ t: "error", code: "PROTOCOL", message: "hello after the handshake" });
        return;
    }
  }

  #onExit(conn: Connection, proc: string, status: ProcessStatus): void {
    const key = `${conn.info.id}\0${proc}`;
    const set = this.#processes.get(key);
    if (set?.size) {
      for (const process of [...set]) process.exit(status);
      return;
    }
    this.#earlyExits.set(key, status);
    if (this.#earlyExits.size > 1024) {
      this.#earlyExits.delete(this.#earlyExits.keys().next().value!);
    }
  }

  #onBinary(conn: Connection, bytes: Uint8Array): void {
    try {
      const frame = decodeDataFrame(bytes);
      const route = conn.routes.get(frame.sid);
      if (!route?.onData) {
        conn.send({ t: "reset", sid: frame.sid, reason: `No open stream ${frame.sid}` });
        return;
      }
      route.onData(frame.offset, frame.payload);
    } catch (error) {
      conn.send({ t: "error", code: "PROTOCOL", message: (error as Error).message });
    }
  }

  #heartbeat(): void {
    const now = Date.now();
    const limit = this.#options.heartbeatMs * 3;
    for (const conn of [...this.#connections.values()]) {
      if (now - conn.lastSeen > limit) {
        log.warn("Daemon {id} silent for {ms} ms; dropping it", {
          id: conn.info.id,
          ms: now - conn.lastSeen,
        });
        conn.close(4008, "heartbeat timeout");
        this.#disconnected(conn);
      } else {
        conn.send({ t: "ping" });
      }
    }
  }

  /** Close every daemon link and stop listening. Processes on the workers keep running. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#sweep);
      for (const socket of this.#pendingSockets) socket.close(1001, "server closing");
      for (const conn of [...this.#connections.values()]) {
        conn.close(1001, "server closing");
        this.#disconnected(conn);
      }
      for (const set of this.#processes.values()) {
        for (const process of set) {
          process.fail(new DaemonDisconnectedError(process.daemonId, "Server closed"));
        }
      }
      // Wait (bounded) for every socket's close handshake, so nothing is left closing after we return.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.all(this.#openSockets.values()),
        new Promise((resolve) => timer = setTimeout(resolve, 2_000)),
      ]);
      clearTimeout(timer);
      await this.#http.shutdown();
      const audit = this.#security.audit;
      if (audit && this.#security.ownsAudit) await audit.close();
      else await audit?.flush();
    })();
    return this.#closing;
  }

  /**
   * Write a record to the audit trail (a no-op without `audit`). The server records `exec`, `spawn`, `exit`,
   * `signal`, `connect` and `disconnect`; terminal sessions and file transfers record theirs through this too.
   *
   * @param record The record; `time` defaults to now.
   */
  audit(record: AuditInput): void {
    const trail = this.#security.audit;
    if (!trail) return;
    try {
      trail.write(record);
    } catch (error) {
      // A malformed record must not break the action being audited.
      log.error("Bad audit record: {error}", { error: String(error) });
    }
  }

  /** Charge one command to the rate limits. */
  #rateLimit(id: string): void {
    this.#security.limiter?.take(id);
  }

  /** Same as {@linkcode Server.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function matches(info: DaemonInfo, filter: DaemonFilter): boolean {
  if (filter.platform !== undefined && info.platform !== filter.platform) return false;
  for (const [key, value] of Object.entries(filter.labels ?? {})) {
    if (info.labels[key] !== value) return false;
  }
  return true;
}

class Collector {
  readonly #max: number;
  readonly #chunks: Uint8Array[] = [];
  #length = 0;
  truncated = false;

  constructor(max: number) {
    this.#max = max;
  }

  add(chunk: Uint8Array): void {
    const room = this.#max - this.#length;
    if (chunk.length > room) this.truncated = true;
    if (room <= 0) return;
    const part = chunk.length > room ? chunk.slice(0, room) : chunk;
    this.#chunks.push(part);
    this.#length += part.length;
  }

  bytes(): Uint8Array {
    if (this.#chunks.length === 1) return this.#chunks[0]!;
    const out = new Uint8Array(this.#length);
    let at = 0;
    for (const chunk of this.#chunks) {
      out.set(chunk, at);
      at += chunk.length;
    }
    return out;
  }

  text(): string {
    return new TextDecoder().decode(this.bytes());
  }
}
