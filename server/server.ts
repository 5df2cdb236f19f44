/**
 * The controller: a WebSocket endpoint that daemons dial into, and the API an agent script uses to run commands
 * on them. `Server` is a facade: HTTP and the upgrade live in `_http.ts`, daemon links (handshake, duplicate ids,
 * heartbeat, dispatch) in `_hub.ts`, processes in `_exec.ts` and `_registry.ts`, checks in `_validate.ts`, the
 * audit wrapper every action goes through in `_audited.ts`, and file transfer in `files.ts`.
 *
 * Over ~600 lines only through the JSDoc of the public API (a third of the file); what is left is method
 * signatures and delegations to the private modules.
 *
 * @module
 */

import type { Controller } from "./controller.ts";
import { getLogger } from "@logtape/logtape";
import { LOGIN_SHELL_COMMAND } from "@sandd/protocol/constants";
import { VERSION } from "@sandd/protocol/version";
import { AsciicastWriter } from "./asciicast.ts";
import { DaemonEvent, type ServerEventMap } from "./events.ts";
import { type ReadyWorker, readyWorker, RemoteWorker } from "./worker.ts";
import type { Connection, DaemonInfo } from "./_connection.ts";
import { DEFAULT_REQUEST_TIMEOUT_MS } from "./_connection.ts";
import { Auditor } from "./_audited.ts";
import { AuditedFs } from "./_audited_fs.ts";
import { Launcher } from "./_exec.ts";
import { TurnSlicer } from "./_turn_slicer.ts";
import { handleHttp, type HttpMount, type HttpRoutes, serveHttp } from "./_http.ts";
import { Hub } from "./_hub.ts";
import { MetricsState } from "./_metrics_state.ts";
import { checkMetricsOptions, metricsLabelKeys, metricsMount } from "./metrics.ts";
import { ProcessRegistry } from "./_registry.ts";
import { createSecurity, type Security } from "./_security.ts";
import {
  checkAttach,
  checkCommand,
  checkDaemonId,
  checkExec,
  checkServerOptions,
  checkShell,
  checkSpawn,
  positiveInt,
} from "./_validate.ts";
import type { AuditInput } from "./audit.ts";
import { createControlMount } from "./control/control.ts";
import { checkConsoleOptions, createConsoleMount } from "./console/console.ts";
import {
  ClusterUnavailableError,
  DaemonDisconnectedError,
  DaemonNotFoundError,
  tarFileError,
} from "./errors.ts";
import { Cluster } from "./cluster/cluster.ts";
import { checkClusterOptions } from "./cluster/options.ts";
import { withClusterMetrics } from "./cluster/_metrics.ts";
import type {
  AttachOptions,
  BroadcastOptions,
  DaemonFilter,
  ExecOptions,
  ExecResult,
  ServerOptions,
  ServerStats,
  SpawnOptions,
  WaitOptions,
} from "./options.ts";
import type { ProcessInfo, RemoteProcess } from "./process.ts";
import type { ProcessSession } from "./_process_session.ts";
import { DEFAULT_RING_BYTES, ShellHubs } from "./_shell_hub.ts";
import type { Gap } from "./_inbound_stream.ts";
import {
  type AttachShellOptions,
  openShellHandle,
  type RemoteShell,
  type ShellOptions,
} from "./shell.ts";
import {
  downloadDirectory,
  type DownloadDirOptions,
  downloadFile,
  downloadFileStream,
  type DownloadOptions,
  type FileHost,
  type RemoteFs,
  uploadDirectory,
  type UploadDirOptions,
  type UploadDirResult,
  uploadFile,
  type UploadOptions,
  type UploadResult,
} from "./files.ts";

import { ForwardService } from "./_forward_service.ts";
import { DEFAULT_MAX_CONNECTIONS } from "./_http_listener.ts";
import type { ExposedHttp, ExposeHttpOptions, Forwarding, ForwardOptions } from "./forward.ts";
import { Snapshots } from "./snapshots.ts";

export type { DaemonInfo } from "./_connection.ts";
export { DaemonEvent, type ServerEventMap } from "./events.ts";

const log = getLogger(["sandd", "server"]);

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
export class Server extends EventTarget implements Controller {
  readonly #http: Deno.HttpServer<Deno.NetAddr>;
  readonly #path: string;
  readonly #security: Security;
  readonly #auditor: Auditor;
  readonly #registry: ProcessRegistry;
  readonly #hub: Hub;
  readonly #launcher: Launcher;
  readonly #files: FileHost;
  readonly #routes: HttpRoutes;
  /** HTTP features mounted beside the daemon endpoint (control API, metrics, console, exposed ports). */
  readonly #mounts: HttpMount[] = [];
  /** Terminal sessions this controller follows, each shared by all its handles. */
  readonly #shells: ShellHubs = new ShellHubs();
  readonly #startedAt = Date.now();
  readonly #metrics: MetricsState;
  #closing: Promise<void> | null = null;
  /** Port forwarding: TCP listeners and the `/x` exposed URLs (server/_forward_service.ts). */
  readonly #forwarding: ForwardService;
  /** Cluster mode: the NATS registry and relay (server/cluster/), or null for a standalone controller. */
  readonly #cluster: Cluster | null;

  private constructor(
    options: ServerOptions,
    security: Security,
    http: Deno.HttpServer<Deno.NetAddr>,
    cluster: Cluster | null,
  ) {
    super();
    this.#cluster = cluster;
    this.#path = options.path ?? "/ws";
    this.#security = security;
    this.#metrics = new MetricsState(metricsLabelKeys(options));
    const hub = (): Hub => this.#hub;
    this.#auditor = new Auditor(
      security.audit,
      (id) => this.#hub.connection(id)?.info.identity,
      log,
    );
    this.#registry = new ProcessRegistry(
      (id) => hub().connection(id),
      options.reconnectGraceMs ?? 30_000,
    );
    this.#hub = new Hub({
      heartbeatMs: options.heartbeatMs ?? 5_000,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 10_000,
      requestTimeoutMs: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
      maxMessageBytes: options.maxMessageBytes ?? 8 * 1024 * 1024,
      maxBufferedBytes: options.maxBufferedBytes ?? 64 * 1024 * 1024,
      auditor: this.#auditor,
      registry: this.#registry,
      metrics: this.#metrics,
      onConnect: (info) => this.dispatchEvent(new DaemonEvent("connect", info)),
      onDisconnect: (info) => this.dispatchEvent(new DaemonEvent("disconnect", info)),
      ...(cluster ? { relay: cluster.relay } : {}),
    });
    cluster?.start({
      hub: this.#hub,
      connect: (info) => this.dispatchEvent(new DaemonEvent("connect", info)),
      disconnect: (info) => this.dispatchEvent(new DaemonEvent("disconnect", info)),
    });
    this.#files = {
      connection: (id) => this.#connection(id),
      events: this,
      reconnectGraceMs: options.reconnectGraceMs ?? 30_000,
      closing: () => this.#closing !== null,
    };
    this.#launcher = new Launcher({
      connection: (id) => this.#connection(id),
      charge: (id) => security.limiter?.take(id),
      registry: this.#registry,
      metrics: this.#metrics,
      streamWindow: options.streamWindow ?? 1024 * 1024,
      maxStreamWindow: Math.max(
        options.maxStreamWindow ?? 16 * 1024 * 1024,
        options.streamWindow ?? 1024 * 1024,
      ),
      reconnectGraceMs: options.reconnectGraceMs ?? 30_000,
    });
    this.#http = http;
    this.#routes = {
      mounts: this.#mounts,
      path: this.#path,
      security,
      metrics: this.#metrics,
      stats: () => this.stats(),
      closing: () => this.#closing !== null,
      accept: (socket, remote, identity) => this.#hub.accept(socket, remote, identity),
    };
    const metrics = metricsMount(options, {
      state: this.#metrics,
      followed: () => this.#registry.size,
      failed: (address) => security.failures.failed(address),
    });
    if (metrics) this.#mounts.push(cluster ? withClusterMetrics(metrics, cluster) : metrics);
    if (options.control !== undefined) {
      const host = { server: this, files: this.#files, auditor: this.#auditor };
      const connection = (id: string) => this.#hub.connection(id);
      const tunnel = (id: string, port: number) => this.#forwarding.open(id, port);
      this.#mounts.push(
        createControlMount(
          { ...host, connection, tunnel, metrics: this.#metrics },
          options.control,
          security,
        ),
      );
    }
    if (options.console && options.control !== undefined) {
      const dispatch = (request: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>) =>
        handleHttp(this.#routes, request, info);
      this.#mounts.push(createConsoleMount(this, options.console, options.control, dispatch));
    }
    options.signal?.addEventListener("abort", () => this.close(), { once: true });
    // Port forwarding: the `/x` mount for exposed URLs; a dropped link fails its tunnel connections.
    this.#forwarding = new ForwardService({
      connection: (id) => this.#hub.connection(id),
      auditor: this.#auditor,
      origin: () => this.url.replace(/^ws/, "http").slice(0, -this.#path.length),
      // Half the HTTP connections at most for exposed URLs: daemons always find room for their upgrade.
      maxExchanges: Math.max(
        1,
        Math.floor((options.maxConnections ?? DEFAULT_MAX_CONNECTIONS) / 2),
      ),
    });
    this.#mounts.push(this.#forwarding.mount);
    this.addEventListener("disconnect", () => this.#forwarding.disconnected());
  }

  /**
   * Start listening. Validates every option before opening the socket.
   *
   * @param options Where to listen and the timing knobs.
   * @returns The listening server.
   */
  static async listen(options: ServerOptions = {}): Promise<Server> {
    checkServerOptions(options);
    checkConsoleOptions(options.console, options.control);
    checkMetricsOptions(options);
    if (options.cluster !== undefined) checkClusterOptions(options.cluster);
    const security = createSecurity(options, log);
    // A cluster node has its slot before any daemon connects (its ids are allocated in it).
    let cluster: Cluster | null = null;
    try {
      if (options.cluster !== undefined) cluster = await Cluster.connect(options.cluster);
    } catch (error) {
      if (security.ownsAudit) await security.audit?.close();
      throw error;
    }
    // Requests reach the server once it exists (it is made as soon as the listener is open).
    const holder: { server?: Server } = {};
    let http: Deno.HttpServer<Deno.NetAddr>;
    try {
      http = await serveHttp({
        hostname: options.hostname ?? "127.0.0.1",
        port: options.port ?? 8765,
        ...(options.cert !== undefined ? { cert: options.cert } : {}),
        ...(options.key !== undefined ? { key: options.key } : {}),
        maxConnections: options.maxConnections,
        headerTimeoutMs: options.headerTimeoutMs,
        // The heartbeat's stall measure: a head unread behind this loop's backlog is not the client's slowness.
        stalledSince: (since, now) =>
          holder.server ? holder.server.#hub.stalledSince(since, now) : 0,
        // New connections wait in the kernel's backlog while this loop's reads lag (a failover burst).
        readLagMs: (now) => holder.server ? holder.server.#hub.readLagMs(now) : 0,
        engine: options.httpEngine,
      }, (request, info) => handleHttp(holder.server!.#routes, request, info));
    } catch (error) {
      await cluster?.close();
      if (security.ownsAudit) await security.audit?.close();
      throw error;
    }
    holder.server = new Server(options, security, http, cluster);
    return holder.server;
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
    }:${this.port}${this.#path}`;
  }

  /** Number of connected daemons. */
  get daemonCount(): number {
    return this.#hub.connections.size;
  }

  /**
   * Connected daemons, optionally filtered by labels or platform.
   *
   * @param filter Labels that must all match, and/or a platform.
   * @returns Their descriptions.
   */
  daemons(filter: DaemonFilter = {}): DaemonInfo[] {
    const out: DaemonInfo[] = [];
    for (const { info } of this.#hub.connections.values()) {
      if (matches(info, filter)) out.push({ ...info, labels: { ...info.labels } });
    }
    for (const info of this.#cluster?.remoteDaemons() ?? []) {
      if (matches(info, filter)) out.push(info);
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
    const info = this.#hub.local(id)?.info;
    if (!info) return this.#cluster?.remoteDaemon(id);
    return { ...info, labels: { ...info.labels } };
  }

  /** Statistics, as served at `GET /stats`. */
  stats(): ServerStats {
    const byPlatform: Record<string, number> = {};
    for (const { info } of this.#hub.connections.values()) {
      byPlatform[info.platform] = (byPlatform[info.platform] ?? 0) + 1;
    }
    return {
      daemons: this.#hub.connections.size,
      byPlatform,
      uptimeMs: Date.now() - this.#startedAt,
      inFlight: this.#registry.size,
      version: VERSION,
    };
  }

  /**
   * Wait until a daemon with this id is connected. Event-driven: resolves on its `connect`.
   *
   * @example Wait for a worker and use the handle it resolves to
   * ```ts ignore
   * const w = await server.waitForDaemon("worker-1", { timeout: 30_000 });
   * console.log(w.platform, await w.sh`uname -r`.text());
   * ```
   *
   * @param id Daemon id.
   * @param options Timeout and abort signal.
   * @returns Its description, which is also its worker handle (the same as `server.worker(id)`).
   * @throws {DaemonNotFoundError} When it did not connect in time.
   */
  waitForDaemon(id: string, options: WaitOptions = {}): Promise<ReadyWorker> {
    positiveInt("timeout", options.timeout, 0);
    const current = this.daemon(id);
    if (current) return Promise.resolve(readyWorker(this, current));
    const timeout = options.timeout ?? 30_000;
    return new Promise<ReadyWorker>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.removeEventListener("connect", onConnect);
        options.signal?.removeEventListener("abort", onAbort);
      };
      const onConnect = (event: DaemonEvent) => {
        if (event.daemon.id !== id) return;
        done();
        resolve(readyWorker(this, event.daemon));
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

  /**
   * Listen for daemons connecting (`connect`) and disconnecting (`disconnect`); the listener gets a
   * {@linkcode DaemonEvent}.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Standard listener options.
   */
  override addEventListener<K extends keyof ServerEventMap>(
    type: K,
    listener: (this: Server, event: ServerEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /**
   * Listen for any other event type (plain `Event`s).
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Standard listener options.
   */
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void {
    super.addEventListener(type, listener, options);
  }

  /**
   * Remove a listener added with {@linkcode Server.addEventListener}.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Standard listener options.
   */
  override removeEventListener<K extends keyof ServerEventMap>(
    type: K,
    listener: (this: Server, event: ServerEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  /**
   * Remove a listener of any other event type.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Standard listener options.
   */
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void {
    super.removeEventListener(type, listener, options);
  }

  #connection(id: string): Connection {
    checkDaemonId(id);
    const conn = this.#hub.connection(id);
    if (conn) return conn;
    if (this.#cluster && !this.#cluster.up) throw new ClusterUnavailableError(id);
    throw new DaemonNotFoundError(id);
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
    const session = await this.#process("spawn", id, command, () => {
      checkSpawn(command, options);
      return this.#launcher.spawn(id, command, options);
    });
    return session.handle;
  }

  /** Audit a process-starting action, then the process's exit. */
  async #process(
    action: "spawn" | "shell",
    id: string,
    command: string | string[],
    start: () => Promise<ProcessSession>,
  ): Promise<ProcessSession> {
    const process = await this.#auditor.run(
      action,
      id,
      { command },
      start,
      (p) => ({ process: p.id, pid: p.pid }),
    );
    this.#auditor.exit(id, { command, process: process.id }, process.status);
    return process;
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
  async attach(
    id: string,
    processId: string,
    options: AttachOptions = {},
  ): Promise<RemoteProcess> {
    const session = await this.#auditor.run("attach", id, { process: String(processId) }, () => {
      checkAttach("Process", processId, options);
      return this.#launcher.attach(id, processId, options, false);
    }, (p) => ({ pid: p.pid }));
    return session.handle;
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
    const command = options.command ?? LOGIN_SHELL_COMMAND;
    const gapFeed: Gap[] = [];
    let recorder: AsciicastWriter | undefined;
    let process: ProcessSession;
    try {
      process = await this.#process(
        "shell",
        id,
        command === LOGIN_SHELL_COMMAND ? "(login shell)" : command,
        async () => {
          checkShell(options);
          const cols = options.cols ?? 80;
          const rows = options.rows ?? 24;
          if (options.record !== undefined) {
            recorder = await AsciicastWriter.open(options.record, {
              cols,
              rows,
              title: `sandd ${id}`,
            });
          }
          return await this.#launcher.spawn(id, command, {
            stdin: true,
            retainBytes: options.scrollback ?? 1024 * 1024,
            ...(options.env ? { env: options.env } : {}),
            ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
            ...(options.timeout !== undefined ? { timeout: options.timeout } : {}),
            onGap: (gap) => gapFeed.push(gap),
          }, { cols, rows });
        },
      );
    } catch (error) {
      await recorder?.close().catch(() => {});
      throw error;
    }
    const hub = this.#shells.open({
      session: process,
      resize: (c, r) => this.#resize(id, process.id, c, r),
      ringBytes: options.scrollback ?? DEFAULT_RING_BYTES,
      gapFeed,
      from: 0,
      size: { cols: options.cols ?? 80, rows: options.rows ?? 24 },
    });
    const viewer = hub.join({ from: 0, readOnly: false, onGap: options.onGap });
    return openShellHandle(viewer, recorder);
  }

  /**
   * Attach to a terminal session already on a worker (after a long disconnect, or from another `Server`). The
   * retained scrollback replays first, then output is live; input is taken over from any earlier handle.
   *
   * A session this controller follows already (a `shell()` handle, a browser in the console) is shared instead:
   * the new handle reads the same bytes from the controller's scrollback, types into the same input, and with
   * `readOnly: true` only watches. The fastest reader paces the program; a handle left behind by more than the
   * scrollback skips ahead and is told through `onGap`. See `sh.viewers`.
   *
   * @example Re-attach
   * ```ts ignore
   * const sh = await server.attachShell("worker-1", savedId);
   * sh.output.pipeTo(Deno.stdout.writable, { preventClose: true });
   * ```
   *
   * @example Watch a session read-only beside its owner
   * ```ts ignore
   * const owner = await server.shell("worker-1");
   * const watcher = await server.attachShell("worker-1", owner.id, { readOnly: true });
   * console.log(watcher.viewers.length); // 2
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
    const viewer = await this.#auditor.run(
      "attachShell",
      id,
      { process: String(shellId) },
      async () => {
        checkAttach("Shell", shellId, options);
        const readOnly = options.readOnly ?? false;
        if (typeof readOnly !== "boolean") {
          throw new TypeError(`readOnly must be a boolean, got ${JSON.stringify(readOnly)}`);
        }
        const join = {
          from: options.from ?? null,
          readOnly,
          onGap: options.onGap,
          onResize: options.onResize,
        };
        // A session this controller follows already is shared: one daemon attachment, one scrollback.
        const shared = this.#shells.get(id, shellId);
        if (shared && (readOnly || shared.interactive)) return shared.join(join);
        const gapFeed: Gap[] = [];
        const from = options.from ?? null;
        const process = await this.#launcher.attach(id, shellId, {
          stdin: !readOnly,
          from,
          onGap: (gap) => gapFeed.push(gap),
        }, true);
        const hub = this.#shells.open({
          session: process,
          resize: (c, r) => this.#resize(id, shellId, c, r),
          ringBytes: DEFAULT_RING_BYTES,
          gapFeed,
          from,
          size: null,
        });
        return hub.join(join);
      },
    );
    return openShellHandle(viewer);
  }

  #resize(id: string, proc: string, cols: number, rows: number): Promise<void> {
    return this.#auditor.run("resize", id, { process: proc }, async () => {
      const conn = this.#hub.connection(id);
      if (!conn) throw new DaemonDisconnectedError(id);
      await conn.request("resize", { proc, cols, rows });
    });
  }

  /**
   * Processes held by a daemon, running or recently exited.
   *
   * @param id Daemon id.
   * @returns Their descriptions.
   */
  processes(id: string): Promise<ProcessInfo[]> {
    return this.#auditor.run("processes", id, {}, async () => {
      const data = await this.#connection(id).request("processes", {});
      return data.processes.map((p) => ({ ...p, startedAt: new Date(p.startedAt) }));
    });
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
    return await this.#auditor.run(
      "exec",
      id,
      { command },
      () => {
        checkExec(command, options);
        options.signal?.throwIfAborted();
        return this.#launcher.exec(id, command, options);
      },
      (r) => ({
        exitCode: r.exitCode,
        bytes: r.stdoutBytes.byteLength + r.stderrBytes.byteLength,
        durationMs: r.durationMs,
      }),
    );
  }

  /**
   * Run a command on every matching daemon, at most `concurrency` (256) at a time.
   *
   * @param filter Which daemons.
   * @param command Shell string or argv.
   * @param options As for {@linkcode Server.exec}, plus `concurrency` and `onResult`.
   * @returns Each daemon's result, or the error it failed with.
   */
  async broadcast(
    filter: DaemonFilter,
    command: string | string[],
    options: BroadcastOptions = {},
  ): Promise<Map<string, ExecResult | Error>> {
    checkCommand(command);
    positiveInt("concurrency", options.concurrency, 1);
    if (options.onResult !== undefined && typeof options.onResult !== "function") {
      throw new TypeError("onResult must be a function");
    }
    const { concurrency = 256, onResult, ...execOptions } = options;
    // The ids only (a whole fleet's DaemonInfo copies are not needed), in the order `daemons` lists them.
    const targets: string[] = [];
    for (const { info } of this.#hub.connections.values()) {
      if (matches(info, filter)) targets.push(info.id);
    }
    const results: (ExecResult | Error)[] = new Array(targets.length);
    let next = 0;
    // Starts are paced in slices (see _turn_slicer.ts): with a fleet answering at once, every worker would start
    // its next command in the turn its last one ended, and a few long turns would hold the event loop.
    const slicer = new TurnSlicer();
    const worker = async () => {
      while (next < targets.length) {
        await slicer.pause();
        if (next >= targets.length) return;
        const i = next++;
        const id = targets[i]!;
        const result = await this.exec(id, command, execOptions).catch((error: Error) => error);
        results[i] = result;
        onResult?.(id, result);
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(concurrency, targets.length) }, worker));
    } finally {
      slicer.close();
    }
    // Filled in place (no array of pairs for a whole fleet).
    const byId = new Map<string, ExecResult | Error>();
    for (let i = 0; i < targets.length; i++) byId.set(targets[i]!, results[i]!);
    return byId;
  }

  // --- files: thin entry points over server/files.ts, audited ---

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
    return this.#auditor.run(
      "upload",
      id,
      { path },
      () => uploadFile(this.#files, id, path, data, options),
      (r) => ({ bytes: r.bytes }),
    );
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
    return this.#auditor.run(
      "download",
      id,
      { path },
      () => downloadFile(this.#files, id, path, options),
      (bytes) => ({ bytes: bytes.byteLength }),
    );
  }

  /**
   * Stream a file from a worker with flow control; the stream errors with `EINTEGRITY` if the SHA-256 of what
   * arrived differs from the daemon's. Resolves once the daemon has opened the file (the audit record is
   * written then).
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
    return this.#auditor.run(
      "download",
      id,
      { path },
      () => downloadFileStream(this.#files, id, path, options),
    );
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
   * @throws {FileError} From the worker, or with a `TAR_*` code when the tree cannot be packed.
   */
  uploadDir(
    id: string,
    localDir: string,
    remoteDir: string,
    options: UploadDirOptions = {},
  ): Promise<UploadDirResult> {
    return this.#auditor.run(
      "uploadDir",
      id,
      { path: remoteDir },
      () =>
        uploadDirectory(this.#files, id, localDir, remoteDir, options).catch((error) => {
          throw tarFileError(id, localDir, error);
        }),
      (r) => ({ bytes: r.bytes }),
    );
  }

  /**
   * Download a directory tree from a worker into a local directory (replaced atomically when it exists).
   *
   * @param id Daemon id.
   * @param remoteDir Directory on the worker.
   * @param localDir Local target.
   * @param options Progress, abort signal.
   * @throws {FileError} From the worker, or with a `TAR_*` code when the archive cannot be unpacked.
   */
  downloadDir(
    id: string,
    remoteDir: string,
    localDir: string,
    options: DownloadDirOptions = {},
  ): Promise<void> {
    return this.#auditor.run(
      "downloadDir",
      id,
      { path: remoteDir },
      () =>
        downloadDirectory(this.#files, id, remoteDir, localDir, options).catch((error) => {
          throw tarFileError(id, remoteDir, error);
        }),
    );
  }

  /**
   * The file system of a worker: `stat`, `list`, `mkdir`, `remove`, `move`, `watch`. Every call is audited.
   *
   * @param id Daemon id (need not be connected yet; each call uses the current link).
   * @returns The handle.
   */
  fs(id: string): RemoteFs {
    checkDaemonId(id);
    return new AuditedFs(this.#files, id, this.#auditor);
  }

  // --- port forwarding: thin entry points over server/_forward_service.ts, audited ---

  /**
   * Listen on a local TCP port and tunnel each connection to `127.0.0.1:remotePort` on a worker (like `ssh -L`).
   * Each connection is audited (`tunnel`), as are the forwarding itself (`forward`) and its close.
   *
   * @example Forward a worker's database to a local port
   * ```ts ignore
   * await using tunnel = await server.forward("worker-1", 5432);
   * console.log(`psql -h ${tunnel.hostname} -p ${tunnel.port}`);
   * ```
   *
   * @param id Daemon id (connected now).
   * @param remotePort The port on the worker.
   * @param options Local port (default 0: any free port), local address (default 127.0.0.1), abort signal.
   * @returns The forwarding; close it (or `await using`) to stop.
   * @throws {DaemonNotFoundError} When the daemon is not connected.
   * @throws {RangeError} For a port outside 1-65535 (0-65535 locally).
   */
  forward(id: string, remotePort: number, options: ForwardOptions = {}): Promise<Forwarding> {
    return this.#forwarding.forward(id, remotePort, options);
  }

  /**
   * Expose an HTTP server on a worker at a URL on this controller (`/x/<token>/`), reverse-proxying HTTP and
   * WebSocket to `127.0.0.1:port` on the worker. The token (256 random bits) is the only credential: share the URL
   * like a password. `close()` revokes it (404 after).
   *
   * @example Open a worker's dev server in a browser
   * ```ts ignore
   * const exposed = await server.exposeHttp("worker-1", { port: 5173 });
   * console.log(exposed.url);
   * ```
   *
   * @param id Daemon id (connected now; later requests while it is away get 503).
   * @param options The worker's port, abort signal.
   * @returns The URL and its `close()`.
   * @throws {DaemonNotFoundError} When the daemon is not connected.
   */
  exposeHttp(id: string, options: ExposeHttpOptions): Promise<ExposedHttp> {
    return this.#forwarding.exposeHttp(id, options);
  }

  /**
   * A Deno-shaped handle on one worker: `w.command()` (like `Deno.Command`), `` w.sh`...` `` (quoted
   * interpolation), `w.fs` (Deno's file functions and errors). It holds no connection (each call uses the daemon's
   * current link), so it can be made before the daemon connects: `await server.worker(id).ready()` waits for it
   * and gives the handle ({@linkcode Server.waitForDaemon} still gives the `DaemonInfo`).
   *
   * @example Get a worker and run something
   * ```ts ignore
   * const w = await server.worker("worker-1").ready({ timeout: 30_000 });
   * console.log(await w.sh`uname -a`.text());
   * ```
   *
   * @param id Daemon id.
   * @returns The handle.
   */
  worker(id: string): RemoteWorker {
    checkDaemonId(id);
    return new RemoteWorker(this, id);
  }

  /**
   * The workspace snapshots of a worker: create, restore, list, get, delete, copy to another worker, export and
   * import as tar (see server/snapshots.ts). Every call is audited.
   *
   * @param id Daemon id (need not be connected yet; each call uses the current link).
   * @returns The handle.
   */
  snapshots(id: string): Snapshots {
    return new Snapshots({ connection: (d) => this.#connection(d), auditor: this.#auditor }, id);
  }

  /** Close every daemon link and stop listening. Processes on the workers keep running. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#forwarding.closeAll();
      this.#metrics.close();
      for (const mount of this.#mounts) await mount.close?.();
      await this.#hub.close();
      await this.#cluster?.close();
      await this.#http.shutdown();
      const audit = this.#security.audit;
      if (audit && this.#security.ownsAudit) await audit.close();
      else await audit?.flush();
    })();
    return this.#closing;
  }

  /**
   * Write a record to the audit trail (a no-op without `audit`). The server records every request it sends a
   * daemon (`exec`, `spawn`, `shell`, `attach`, `processes`, `signal`, `resize`, file transfers and `fs.*`
   * operations, refused and failed ones too), process `exit`s, `connect` and `disconnect`; scripts can add
   * their own.
   *
   * @param record The record; `time` defaults to now.
   */
  audit(record: AuditInput): void {
    this.#auditor.write(record);
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
