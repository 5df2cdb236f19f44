/**
 * The worker: dials out to the controller, keeps reconnecting with backoff, answers requests, and holds processes
 * whose life does not depend on the link.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { decodeDataFrame } from "@sandd/protocol/frame";
import { ProtocolError } from "@sandd/protocol/errors";
import {
  type ControllerMessage,
  type Operation,
  parseControllerMessage,
  type RequestArgs,
  type RequestMessage,
  type WireError,
} from "@sandd/protocol/messages";
import {
  CLOSE_CODES,
  DAEMON_ID_RULE,
  HEARTBEAT_MISSES,
  isDaemonId,
  LOGIN_SHELL_COMMAND,
  MAX_ERROR_MESSAGE_LENGTH,
  MAX_PATH_LENGTH,
  stopsReconnecting,
  VERSION_MISMATCH_STATUS,
} from "@sandd/protocol/constants";
import { SUBPROTOCOL, SUBPROTOCOLS, VERSION } from "@sandd/protocol/version";
import { reconnectDelay } from "./backoff.ts";
import { Link } from "./_link.ts";
import { SilenceWatch } from "./_silence_watch.ts";
import { parseProxyUrl } from "./_proxy.ts";
import { WebSocketClient } from "./_websocket_client.ts";
import { holdPosixChildRuntime, posixChildSupported } from "./_posix_child.ts";
import { type ChildFactory, DaemonRequestError, ProcessTable } from "./process_table.ts";
import { spawnCommandChild } from "./_command_child.ts";
import { spawnPtyChild } from "./_pty_child.ts";
import { Policy, PolicyError } from "./policy/mod.ts";
import { ForwardService } from "./forward/forward.ts";

const log = getLogger(["sandd", "daemon"]);

/** Protocol limits of an error reply's fields (`WIRE_ERROR_SCHEMA` in protocol/replies.ts). */
const MAX_ERROR_MESSAGE = MAX_ERROR_MESSAGE_LENGTH;
const MAX_ERROR_PATH = MAX_PATH_LENGTH;
const MAX_ERROR_RULE = 1024;

/**
 * The controller refused this daemon in a way retrying cannot fix, so the daemon stopped reconnecting: a close
 * code that says so (4000 handshake refused, 4001 credential not for this daemon id; `stopsReconnecting` in
 * `protocol/constants.ts`), or HTTP 426 (the controller speaks another protocol version). `Daemon.run()` rejects
 * with it; `sandd` exits with {@linkcode RefusedError.exitCode}.
 *
 * @example Tell a refusal from a crash
 * ```ts ignore
 * try {
 *   await daemon.run();
 * } catch (error) {
 *   if (error instanceof RefusedError) console.error(error.message, error.closeCode ?? error.status);
 * }
 * ```
 */
export class RefusedError extends Error {
  /** Stable error code. */
  readonly code: "REFUSED" = "REFUSED";
  /** The exit code of `sandd` when it stops for this reason. */
  static readonly exitCode = 3;
  /** The WebSocket close code, when the link closed with one. */
  readonly closeCode: number | undefined;
  /** The HTTP status of a refused upgrade (426). */
  readonly status: number | undefined;

  /**
   * @param message What the controller said, and why the daemon stops.
   * @param options The close code or HTTP status.
   */
  constructor(message: string, options: { closeCode?: number; status?: number }) {
    super(message);
    this.name = "RefusedError";
    this.closeCode = options.closeCode;
    this.status = options.status;
  }
}

/** One controller the daemon may connect to. */
interface Target {
  /** The controller's WebSocket URL as given. */
  url: string;
  /** The proxy to reach it through, or null for a direct connection. */
  proxy: URL | null;
}

/** How one connection attempt ended. */
interface Attempt {
  /** The controller welcomed this link. */
  welcomed: boolean;
  /** Set when the daemon must stop reconnecting. */
  refused?: RefusedError;
}

/** Cut `text` to `max` characters, saying so, so an error naming a huge value still fits the protocol. */
function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  const note = "... (truncated)";
  return text.slice(0, max - note.length) + note;
}

/** An error reply within the protocol's limits, whatever the values it names (a path of 10,000 characters). */
function wireError(
  e: { code: string; message: string; path?: unknown; rule?: unknown },
): WireError {
  const { path, rule, ...rest } = e;
  return {
    ...rest,
    code: truncate(e.code, 64),
    message: truncate(e.message, MAX_ERROR_MESSAGE),
    ...(typeof path === "string" ? { path: truncate(path, MAX_ERROR_PATH) } : {}),
    ...(typeof rule === "string" ? { rule: truncate(rule, MAX_ERROR_RULE) } : {}),
  };
}

/** Handles one request operation; returns the response data. */
export type RequestHandler<Op extends Operation = Operation> = (
  args: RequestArgs<Op>,
  link: Link,
) => Record<string, unknown> | Promise<Record<string, unknown>>;

/** Options of {@linkcode Daemon}. */
export interface DaemonOptions {
  /**
   * Controller WebSocket URL, `ws://host:port/ws` or `wss://...`; or several (controllers of one fleet, e.g. the
   * nodes of a cluster). The daemon holds one link at a time: it starts with the first URL, and whenever a connect
   * fails or a link drops, its next attempt goes to the next URL in order (round robin), after the same backoff
   * with full jitter as with one URL (the delay grows per failed attempt, so a round of dead controllers does not
   * spin). A refusal for good (close code 4000/4001, HTTP 426) from any of them stops the daemon, as with one.
   */
  serverUrl: string | readonly string[];
  /** Daemon id. @default the host name */
  id?: string;
  /** Labels reported to the controller. @default {} */
  labels?: Record<string, string>;
  /** Bearer token sent on the upgrade. */
  token?: string;
  /** PEM CA certificate(s) to trust for wss, besides the system roots. */
  caCerts?: string[];
  /**
   * Reach the controller through this proxy: `http://[user:pass@]host:port` (CONNECT), `socks5://` or
   * `socks5h://`; for several server URLs either one proxy for all, or an array with one entry per URL in the
   * same order (null: direct). The environment is not read here (the `sandd` command line does that).
   * @default undefined (direct)
   */
  proxy?: string | URL | readonly (string | URL | null)[];
  /** Output bytes kept per stream for resume. @default 4 MiB */
  retainBytes?: number;
  /**
   * Outage policy: after a link drops, keep backpressure on its processes this long so nothing is lost if the
   * controller is back within it; then read on and drop the oldest bytes (an explicit gap). @default 300_000
   */
  detachedHoldMs?: number;
  /** Kill a process nobody is attached to after this long; 0 disables. @default 3_600_000 */
  orphanTimeoutMs?: number;
  /** Keep exit status this long. @default 600_000 */
  exitRetentionMs?: number;
  /** Grace before SIGTERM escalates to SIGKILL. @default 5_000 */
  killGraceMs?: number;
  /** Upper bound of the first reconnect delay. @default 1_000 */
  reconnectInitialMs?: number;
  /** Cap of the reconnect delay. @default 30_000 */
  reconnectMaxMs?: number;
  /**
   * For this long after a link that was up drops, reconnect delays are capped at 2 s (with full jitter) rather
   * than `reconnectMaxMs`, so the daemon is back within about 2 s of the controller or the network returning,
   * well inside the controller's `reconnectGraceMs` (30 s by default). @default 300_000
   */
  reconnectRecentMs?: number;
  /** How long to wait for the controller's welcome. @default 10_000 */
  handshakeTimeoutMs?: number;
  /**
   * How children are started.
   * @default pipe-based `Deno.Command` children; a pseudo-terminal child (`daemon/_pty_child.ts`) when the spawn
   * request has `pty`
   */
  childFactory?: ChildFactory;
  /** Extra request handlers (file transfer, terminals) keyed by operation. */
  handlers?: Partial<{ [Op in Operation]: RequestHandler<Op> }>;
  /**
   * The worker-side policy every spawn is checked against (commands, shells, PTYs, counts, timeouts), and whose
   * environment rules and resource limits apply to the default children. File handlers take it separately.
   * @default an empty policy (everything allowed)
   */
  policy?: Policy;
}

/**
 * A SandD worker. `run()` connects and reconnects until `close()`.
 *
 * @example Run a daemon until interrupted
 * ```ts ignore
 * import { Daemon } from "./daemon.ts";
 * await using daemon = new Daemon({ serverUrl: "ws://127.0.0.1:8765/ws", id: "worker-1" });
 * await daemon.run();
 * ```
 */
export class Daemon implements AsyncDisposable {
  /** The daemon id. */
  readonly id: string;
  readonly #options: DaemonOptions;
  readonly #table: ProcessTable;
  readonly #handlers: Map<string, RequestHandler>;
  readonly #policy: Policy;
  readonly #abort = new AbortController();
  #link: Link | null = null;
  #connecting: Link | null = null;
  #running: Promise<void> | null = null;
  #sleepTimer: ReturnType<typeof setTimeout> | undefined;
  #wake: (() => void) | undefined;
  readonly #instance: string = crypto.randomUUID();
  readonly #targets: Target[];

  /**
   * @param options Connection and process options.
   */
  constructor(options: DaemonOptions) {
    this.#targets = targets(options.serverUrl, options.proxy);
    this.id = options.id ?? Deno.hostname();
    if (!isDaemonId(this.id)) {
      throw new TypeError(`Daemon id must be ${DAEMON_ID_RULE}, got '${this.id}'`);
    }
    this.#options = options;
    const policy = this.#policy = options.policy ?? new Policy();
    const { envStrip, envSet } = policy.options;
    const hooks = {
      argv: (argv: string[]) => policy.wrapArgv(argv),
      ...(envStrip?.length || Object.keys(envSet ?? {}).length
        ? { env: (env: Record<string, string>) => policy.childEnv(env) }
        : {}),
    };
    const factory = options.childFactory ??
      ((args) => args.pty ? spawnPtyChild(args, hooks) : spawnCommandChild(args, hooks));
    this.#table = new ProcessTable(factory, {
      ...(options.retainBytes !== undefined ? { retainBytes: options.retainBytes } : {}),
      ...(options.detachedHoldMs !== undefined ? { detachedHoldMs: options.detachedHoldMs } : {}),
      ...(options.orphanTimeoutMs !== undefined
        ? { orphanTimeoutMs: options.orphanTimeoutMs }
        : {}),
      ...(options.exitRetentionMs !== undefined
        ? { exitRetentionMs: options.exitRetentionMs }
        : {}),
      ...(options.killGraceMs !== undefined ? { killGraceMs: options.killGraceMs } : {}),
      ...(policy.options.maxOutputBytes !== undefined
        ? { maxOutputBytes: policy.options.maxOutputBytes }
        : {}),
    });
    this.#handlers = new Map(Object.entries(this.#coreHandlers()));
    // Port forwarding (daemon/forward/): one TCP connection per `connect` request, under the policy.
    const forward = new ForwardService(policy.options);
    this.#handlers.set(
      "connect",
      (args, link) => forward.connect(args as RequestArgs<"connect">, link),
    );
    for (const [op, handler] of Object.entries(options.handlers ?? {})) {
      this.#handlers.set(op, handler as RequestHandler);
    }
  }

  /** The worker-side policy. */
  get policy(): Policy {
    return this.#policy;
  }

  /** The process table (for handlers that add process kinds). */
  get processes(): ProcessTable {
    return this.#table;
  }

  #coreHandlers(): Record<string, RequestHandler> {
    const table = this.#table;
    return {
      spawn: (args, link) => {
        const p = table.spawn(link, this.#checkSpawn(args as RequestArgs<"spawn">));
        return { proc: p.id, pid: p.pid };
      },
      attach: (args, link) => {
        const a = args as RequestArgs<"attach">;
        const p = table.attach(link, a);
        return {
          ...p.info(),
          timedOut: p.timedOut,
          stdinOffset: p.stdinReceived,
          outputs: p.outputs.length,
        };
      },
      detach: (args, link) => {
        table.get((args as RequestArgs<"detach">).proc).detach(link);
        return {};
      },
      signal: (args) => {
        const a = args as RequestArgs<"signal">;
        table.get(a.proc).signal(a.signal, table.killGraceMs);
        return {};
      },
      resize: (args) => {
        const a = args as RequestArgs<"resize">;
        table.get(a.proc).resize(a.cols, a.rows);
        return {};
      },
      processes: () => ({ processes: table.list() }),
    };
  }

  /** Apply the policy to a spawn request: refuse it (PolicyError) or settle its timeout. */
  #checkSpawn(args: RequestArgs<"spawn">): RequestArgs<"spawn"> {
    try {
      return this.#policy.checkSpawn(args, {
        running: this.#table.countRunning(this.#policy.options.maxProcesses),
        lingering: this.#table.lingering,
        sessions: args.pty
          ? this.#table.list().filter((p) => p.pty && p.state === "running").length
          : 0,
        loginShell: args.command === LOGIN_SHELL_COMMAND,
      });
    } catch (error) {
      if (error instanceof PolicyError) throw error;
      throw new DaemonRequestError("BAD_REQUEST", (error as Error).message);
    }
  }

  /**
   * Connect and keep reconnecting until {@linkcode Daemon.close}. Rejects with a {@linkcode RefusedError} (after
   * terminating its processes) when the controller refuses the daemon in a way retrying cannot fix.
   */
  run(): Promise<void> {
    this.#running ??= this.#loop();
    return this.#running;
  }

  async #loop(): Promise<void> {
    // Keep libc loaded for the daemon's life: loading it per command costs milliseconds.
    using _libc = posixChildSupported ? holdPosixChildRuntime() : undefined;
    let attempt = 0;
    /** When the last link that was up went down (0: none yet). */
    let lostAt = 0;
    /** Which of the targets the next attempt goes to. */
    let index = 0;
    while (!this.#abort.signal.aborted) {
      const target = this.#targets[index]!;
      const { welcomed, refused } = await this.#connectOnce(target);
      if (this.#abort.signal.aborted) break;
      if (refused) {
        log.error("{message}; not reconnecting", { message: refused.message });
        this.#abort.abort();
        await this.#table.shutdown();
        throw refused;
      }
      if (welcomed) {
        attempt = 0;
        lostAt = Date.now();
      }
      // Fit the controller's grace: for a while after a link that was up dropped, retry at least every
      // RECENT_MAX_MS (still with full jitter against a stampede), so a daemon is back within about that long
      // of the controller or the network returning, while its handles still wait.
      const delay = reconnectDelay(attempt++, lostAt > 0 ? Date.now() - lostAt : Infinity, {
        initialMs: this.#options.reconnectInitialMs ?? 1_000,
        maxMs: this.#options.reconnectMaxMs ?? 30_000,
        recentMs: this.#options.reconnectRecentMs ?? 300_000,
      });
      // Fail over: whether the connect failed or a link that was up dropped, the next attempt goes to the next
      // URL (round robin). The delay above still grows per failed attempt, so a round of dead URLs does not spin.
      index = (index + 1) % this.#targets.length;
      log.debug("Reconnecting to {url} in {delay} ms", { url: this.#targets[index]!.url, delay });
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        this.#sleepTimer = setTimeout(resolve, delay);
      });
    }
  }

  #connectOnce(target: Target): Promise<Attempt> {
    const options = this.#options;
    const headers: Record<string, string> = {};
    if (options.token) headers["authorization"] = `Bearer ${options.token}`;
    let socket: WebSocketClient;
    try {
      // Our own client: it sets TCP_NODELAY, which Deno's WebSocket does not (see _websocket_client.ts).
      log.debug("Connecting to {url}", { url: target.url });
      socket = new WebSocketClient(target.url, {
        // sandd.v1.1 first (exits carry the streams' ends), sandd.v1 for an older controller.
        protocols: [...SUBPROTOCOLS],
        headers,
        ...(options.caCerts?.length ? { caCerts: options.caCerts } : {}),
        proxy: target.proxy,
      });
    } catch (error) {
      log.error("Cannot connect to {url}: {error}", {
        url: target.url,
        error: String(error),
      });
      return Promise.resolve({ welcomed: false });
    }
    const link = new Link(socket);
    return new Promise<Attempt>((resolve) => {
      let welcomed = false;
      let lastSeen = Date.now();
      let silence: SilenceWatch | undefined;
      /** Set when this side closed the link (handshake or heartbeat timeout), so its close is not blamed on the controller. */
      let closedHere = false;
      const handshake = setTimeout(() => {
        log.warn("No welcome from the controller within the handshake timeout");
        finish(CLOSE_CODES.TIMEOUT, "handshake timeout");
      }, options.handshakeTimeoutMs ?? 10_000);
      const finish = (code?: number, reason?: string, refused?: RefusedError) => {
        clearTimeout(handshake);
        silence?.stop();
        if (code !== undefined) {
          closedHere = true;
          link.close(code, reason ?? "");
        }
        link.closed();
        this.#table.linkClosed(link);
        if (this.#link === link) this.#link = null;
        if (this.#connecting === link) this.#connecting = null;
        resolve(refused ? { welcomed, refused } : { welcomed });
      };
      this.#connecting = link;
      socket.onopen = () => {
        link.send({
          t: "hello",
          id: this.id,
          labels: options.labels ?? {},
          hostname: Deno.hostname(),
          platform: Deno.build.os,
          arch: Deno.build.arch,
          version: VERSION,
          pid: Deno.pid,
          processes: this.#table.size,
          instance: this.#instance,
        });
      };
      socket.onmessage = (event) => {
        lastSeen = Date.now();
        if (typeof event.data === "string") {
          let message: ControllerMessage;
          try {
            message = parseControllerMessage(event.data);
          } catch (error) {
            this.#refuse(link, event.data, error as Error);
            return;
          }
          if (!welcomed) {
            if (message.t !== "welcome") {
              finish(CLOSE_CODES.HANDSHAKE_REFUSED, "expected welcome");
              return;
            }
            if (this.#abort.signal.aborted) {
              // close() ran while this link was still being set up.
              finish(CLOSE_CODES.NORMAL, "daemon shutting down");
              return;
            }
            welcomed = true;
            clearTimeout(handshake);
            this.#link = link;
            log.info("Connected to {url} as {id}", { url: target.url, id: this.id });
            // The controller pings a quiet link and this side answers; a link silent for HEARTBEAT_MISSES
            // intervals, less this daemon's own measured stall, is dropped (daemon/_silence_watch.ts).
            silence = new SilenceWatch(
              message.heartbeatMs * HEARTBEAT_MISSES,
              () => lastSeen,
              (ms, stalledMs) => {
                log.warn(
                  "Controller silent for {ms} ms ({stalledMs} ms of them this daemon's own loop stalled); dropping the link",
                  { ms, stalledMs },
                );
                finish(CLOSE_CODES.TIMEOUT, "heartbeat timeout");
              },
            );
            return;
          }
          this.#onMessage(link, message);
        } else if (welcomed) {
          this.#onBinary(link, new Uint8Array(event.data as ArrayBuffer));
        }
      };
      socket.onerror = (event) => {
        const message = (event as ErrorEvent).message ?? "connection error";
        log.warn("Link error ({url}): {message}", { url: target.url, message });
      };
      socket.onclose = (event) => {
        if (event.code >= 4000 && !closedHere) {
          log.warn("Controller closed the link: {code} {reason}", {
            code: event.code,
            reason: event.reason,
          });
        }
        finish(undefined, undefined, closedHere ? undefined : refusal(event, socket.upgradeStatus));
      };
    });
  }

  #refuse(link: Link, text: string, error: Error): void {
    log.warn("Refused a message: {message}", { message: error.message });
    let rid: unknown;
    try {
      rid = (JSON.parse(text) as { rid?: unknown }).rid;
    } catch {
      // not JSON at all
    }
    const message = truncate(error.message, MAX_ERROR_MESSAGE);
    if (typeof rid === "number" && Number.isSafeInteger(rid) && rid >= 0) {
      link.send({ t: "res", rid, ok: false, error: { code: "PROTOCOL", message } });
    } else {
      link.send({ t: "error", code: "PROTOCOL", message });
    }
  }

  #onMessage(link: Link, message: ControllerMessage): void {
    switch (message.t) {
      case "ping":
        link.send({ t: "pong" });
        return;
      case "pong":
      case "welcome":
        return;
      case "error":
        log.warn("Controller reported: {code} {message}", {
          code: message.code,
          message: message.message,
        });
        return;
      case "ack":
        link.routes.get(message.sid)?.onAck?.(message.offset);
        return;
      case "eof":
        link.routes.get(message.sid)?.onEof?.(message.offset, message.sha256);
        return;
      case "reset":
        link.routes.get(message.sid)?.onReset?.(message.reason);
        return;
      case "req":
        this.#onRequest(link, message);
        return;
    }
  }

  #onBinary(link: Link, bytes: Uint8Array): void {
    try {
      const frame = decodeDataFrame(bytes);
      const route = link.routes.get(frame.sid);
      if (!route?.onData) {
        link.send({ t: "reset", sid: frame.sid, reason: `No open inbound stream ${frame.sid}` });
        return;
      }
      route.onData(frame.offset, frame.payload);
    } catch (error) {
      if (error instanceof ProtocolError) {
        link.send({ t: "error", code: "PROTOCOL", message: error.message });
      } else {
        log.error("Failed handling a data frame: {error}", { error: String(error) });
      }
    }
  }

  async #onRequest(link: Link, request: RequestMessage): Promise<void> {
    const handler = this.#handlers.get(request.op);
    try {
      if (!handler) {
        throw new DaemonRequestError("UNSUPPORTED", `This daemon does not support '${request.op}'`);
      }
      // Answer synchronous handlers without yielding, so the response precedes any event the operation causes.
      let data = handler(request.args, link);
      if (data instanceof Promise) data = await data;
      link.send({ t: "res", rid: request.rid, ok: true, data });
    } catch (thrown) {
      const error = thrown instanceof PolicyError
        ? new DaemonRequestError("POLICY", thrown.message, { rule: thrown.rule })
        : thrown;
      if (error instanceof DaemonRequestError && error.code === "POLICY") {
        log.warn("Policy refused {op}: {message} (rule {rule})", {
          op: request.op,
          message: error.message,
          rule: error.extra.rule ?? "",
        });
      }
      const e = error instanceof DaemonRequestError
        ? { code: error.code, message: error.message, ...error.extra }
        : {
          code: (error as { code?: string }).code ?? "INTERNAL",
          message: String((error as Error)?.message ?? error),
        };
      if (!(error instanceof DaemonRequestError)) {
        log.error("Request {op} failed: {error}", { op: request.op, error: String(error) });
      }
      link.send({ t: "res", rid: request.rid, ok: false, error: wireError(e) });
    }
  }

  /** Close the link, terminate every child and stop reconnecting. */
  async close(): Promise<void> {
    if (this.#abort.signal.aborted) return;
    this.#abort.abort();
    clearTimeout(this.#sleepTimer);
    this.#wake?.();
    (this.#link ?? this.#connecting)?.close(CLOSE_CODES.NORMAL, "daemon shutting down");
    await this.#table.shutdown();
    await this.#running?.catch(() => {});
  }

  /** Same as {@linkcode Daemon.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Check the server URL(s) and pair each with its proxy. */
function targets(serverUrl: DaemonOptions["serverUrl"], proxy: DaemonOptions["proxy"]): Target[] {
  const urls: readonly string[] = typeof serverUrl === "string" ? [serverUrl] : serverUrl;
  if (!Array.isArray(urls) || urls.length === 0) {
    throw new TypeError(
      `Server URL must be a string or a non-empty array, got '${String(serverUrl)}'`,
    );
  }
  const proxies: readonly (string | URL | null | undefined)[] = Array.isArray(proxy)
    ? proxy
    : urls.map(() => proxy as string | URL | undefined);
  if (proxies.length !== urls.length) {
    throw new TypeError(
      `Proxy array must have one entry per server URL (${urls.length}), got ${proxies.length}`,
    );
  }
  return urls.map((url, i) => {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new TypeError(`Invalid server URL '${url}'`);
    }
    if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
      throw new TypeError(`Server URL must start with ws:// or wss://, got '${url}'`);
    }
    const p = proxies[i];
    return {
      url,
      proxy: p === null || p === undefined
        ? null
        : parseProxyUrl(typeof p === "string" ? p : p.href, "proxy"),
    };
  });
}

/** Why the daemon must stop reconnecting after this close, or undefined when it should retry. */
function refusal(
  event: { code: number; reason: string },
  upgradeStatus: number | undefined,
): RefusedError | undefined {
  if (upgradeStatus === VERSION_MISMATCH_STATUS) {
    return new RefusedError(
      `The controller refused the upgrade with HTTP 426: it does not speak ${SUBPROTOCOL} (${event.reason})`,
      { status: upgradeStatus },
    );
  }
  if (stopsReconnecting(event.code)) {
    return new RefusedError(
      `The controller closed the link with ${event.code}${
        event.reason ? ` (${event.reason})` : ""
      }`,
      { closeCode: event.code },
    );
  }
  return undefined;
}
