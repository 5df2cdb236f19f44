/**
 * The remote controller: {@linkcode Client} implements {@linkcode Controller} over a controller's HTTP control API
 * (`/api/v1`, served by `sandd serve` or by a `Server` listening with `control` on), so an agent script switches
 * between an embedded and a remote controller by changing one line.
 *
 * The work is in private modules: the transport and error mapping (`_client_http.ts`, `_client_errors.ts`), the
 * checks of options and answers (`_client_validate.ts`, `_client_wire.ts`), streams that resume
 * (`_client_resume.ts`), processes (`_client_process.ts`), terminals (`_client_shell.ts`), files
 * (`_client_files.ts`) and events (`_client_events.ts`).
 *
 * Over ~600 lines only through the JSDoc of the public API (as `server.ts`); what is left is method signatures,
 * argument checks shared with `Server` and delegations to the private modules.
 *
 * @module
 */

import { type ReadyWorker, readyWorker } from "./worker.ts";
import { ClientSnapshots } from "./_client_snapshots.ts";
import type { SnapshotsHandle } from "./controller.ts";
import { type ApiEndpoint, exposeThroughApi, forwardThroughApi } from "./_client_forward.ts";
import type { ExposedHttp, ExposeHttpOptions, Forwarding, ForwardOptions } from "./forward.ts";
import type { Controller, FileSystemHandle, ProcessHandle, ShellHandle } from "./controller.ts";
import type { DaemonInfo } from "./_connection.ts";
import type { ServerEventMap } from "./events.ts";
import type {
  AttachOptions,
  DaemonFilter,
  ExecOptions,
  ExecResult,
  SpawnOptions,
  WaitOptions,
} from "./options.ts";
import type { ProcessInfo } from "./process.ts";
import type { AttachShellOptions, ShellOptions } from "./shell.ts";
import type {
  DownloadDirOptions,
  DownloadOptions,
  UploadDirOptions,
  UploadDirResult,
  UploadOptions,
  UploadResult,
} from "./files.ts";
import { streamOffsets } from "./_process_session.ts";
import {
  checkAttach,
  checkCommand,
  checkDaemonId,
  checkExec,
  checkShell,
  checkSpawn,
  positiveInt,
} from "./_validate.ts";
import { DaemonNotFoundError } from "./errors.ts";
import { AuthenticationError } from "./auth.ts";
import { apiError, ControlApiError } from "./_client_errors.ts";
import { Transport } from "./_client_http.ts";
import { array, base64, daemonInfo, execResult, object, processInfo } from "./_client_wire.ts";
import { ClientProcess } from "./_client_process.ts";
import { openShell } from "./_client_shell.ts";
import {
  ClientFs,
  downloadDirectory,
  downloadFile,
  downloadFileStream,
  uploadDirectory,
  uploadFile,
} from "./_client_files.ts";
import { ClientEvents } from "./_client_events.ts";
import { baseUrl, checkClientOptions, checkFilter, labelQuery } from "./_client_validate.ts";

export { ControlApiError } from "./_client_errors.ts";

function enc(value: string): string {
  return encodeURIComponent(value);
}

/**
 * Options of {@linkcode Client.connect}.
 *
 * @example A token from the environment, a shorter deadline
 * ```ts
 * import type { ClientOptions } from "./client.ts";
 * const options: ClientOptions = { token: "secret", requestTimeoutMs: 10_000 };
 * console.assert(options.requestTimeoutMs === 10_000);
 * ```
 */
export interface ClientOptions {
  /**
   * The client token, sent as `Authorization: Bearer <token>` (a daemon's credential is refused by the API).
   * @default undefined (only for a controller whose API is open: no client tokens, on loopback)
   */
  token?: string;
  /**
   * Deadline of calls the controller answers at once (listings, `fs` calls, signals, the check at connect), in
   * milliseconds; a controller that does not answer in time fails the call with a {@linkcode ControlApiError}
   * `TIMEOUT`. Commands, waits and streams have no such deadline (they have their own `timeout` options).
   * @default 60_000
   */
  requestTimeoutMs?: number;
  /**
   * How long process output, exit status, downloads and terminals keep trying again after their HTTP connection
   * dropped (or the controller answered that the daemon is away), in milliseconds; they resume from the last byte
   * received. Past it they fail with the last error (`ControlApiError` `UNREACHABLE`, `DaemonDisconnectedError`).
   * @default 30_000
   */
  reconnectTimeoutMs?: number;
  /** PEM certificates to trust for an `https://` controller (a private CA). @default the system's roots */
  caCerts?: string[];
  /** Closes the client when aborted (and aborts `connect` itself). @default undefined */
  signal?: AbortSignal;
}

/**
 * A controller reached over its HTTP control API. It offers the same operations as the embedded
 * {@linkcode Server} (the {@linkcode Controller} interface), with the same error classes: the API's
 * `{ code, message }` errors are mapped back, so `instanceof DaemonNotFoundError` works on both.
 *
 * Differences from the embedded controller: `fs(id).watch` is not offered by the API and throws a
 * {@linkcode ControlApiError} `UNSUPPORTED`; `daemons()` and `daemon()` are asynchronous (`await` them, which works on
 * `Server` too); `connect`/`disconnect` events arrive over a Server-Sent Events stream that is open only while
 * listeners are registered; a process's stdin is one streamed request per handle and is not resumed when that
 * connection drops (output, status, downloads and terminals are).
 *
 * @example Switch between an embedded and a remote controller in one line
 * ```ts ignore
 * import { Client, type Controller, Server } from "@sandd/server";
 * // await using c: Controller = await Server.listen({ port: 8765 });
 * await using c: Controller = await Client.connect("http://127.0.0.1:8765", { token: Deno.env.get("SANDD_API_TOKEN") });
 * await c.waitForDaemon("worker-1");
 * console.log((await c.exec("worker-1", "hostname")).stdout);
 * ```
 *
 * @example Stream a process, resuming across dropped connections
 * ```ts ignore
 * const p = await c.spawn("worker-1", "make -j8");
 * for await (const chunk of p.stdout) await Deno.stdout.write(chunk);
 * console.log((await p.status).exitCode);
 * ```
 */
export class Client implements Controller {
  readonly #transport: Transport;
  readonly #events: ClientEvents;
  #closed = false;

  private constructor(transport: Transport) {
    this.#transport = transport;
    this.#events = new ClientEvents(transport);
  }

  /**
   * Connect to a controller's control API: checks the URL and options, then that the controller answers and
   * accepts the token.
   *
   * @param url The controller's base URL, such as `http://host:8765` (the API is under `/api/v1`).
   * @param options Token, deadlines, trusted certificates, abort signal.
   * @returns The connected client; close it (or `await using` it).
   * @throws {TypeError} For a bad URL or option.
   * @throws {AuthenticationError} When the controller refuses the token (401).
   * @throws {ControlApiError} `UNREACHABLE` when nothing answers, `NOT_FOUND` when no control API is served there,
   * `TIMEOUT` when the controller does not answer within `requestTimeoutMs`.
   */
  static async connect(url: string | URL, options: ClientOptions = {}): Promise<Client> {
    checkClientOptions(options);
    const base = baseUrl(url);
    options.signal?.throwIfAborted();
    const transport = new Transport({
      base,
      token: options.token,
      requestTimeoutMs: options.requestTimeoutMs ?? 60_000,
      reconnectTimeoutMs: options.reconnectTimeoutMs ?? 30_000,
      caCerts: options.caCerts,
    });
    try {
      // Any route needing a token will do: a 403 (the token lacks `read`) still proves it valid.
      const response = await transport.call("GET", "/daemons", { signal: options.signal });
      await response.body?.cancel();
    } catch (error) {
      transport.close();
      if (error instanceof AuthenticationError) {
        throw new AuthenticationError(`The controller at ${base} refused the client token`, {
          cause: error,
        });
      }
      if (error instanceof ControlApiError && error.code === "FORBIDDEN") {
        // valid token without the read scope
      } else if (error instanceof ControlApiError && error.status === 404) {
        throw new ControlApiError(
          "NOT_FOUND",
          `No control API at ${base}/api/v1 (is the controller listening with 'control' on?)`,
          404,
          { cause: error },
        );
      } else if (error instanceof ControlApiError && error.code === "UNREACHABLE") {
        throw new ControlApiError(
          "UNREACHABLE",
          `Cannot reach the controller at ${base}: ${
            (error.cause as Error | undefined)?.message ?? error.message
          }`,
          0,
          { cause: error.cause },
        );
      } else {
        throw error;
      }
    }
    const client = new Client(transport);
    const signal = options.signal;
    if (signal) {
      const onAbort = () => client.close();
      signal.addEventListener("abort", onAbort, { once: true });
      transport.closed.addEventListener(
        "abort",
        () => signal.removeEventListener("abort", onAbort),
        {
          once: true,
        },
      );
    }
    return client;
  }

  /** The controller's base URL. */
  get url(): string {
    return this.#transport.base;
  }

  /**
   * A worker's workspace snapshots through the control API: the same operations as `Server.snapshots(id)`.
   *
   * @example Snapshot a workspace on a remote controller's worker
   * ```ts ignore
   * const snap = await client.snapshots("worker-1").create("/srv/work", { tags: ["green"] });
   * ```
   *
   * @param id Daemon id.
   * @returns The handle.
   */
  snapshots(id: string): SnapshotsHandle {
    checkDaemonId(id);
    return new ClientSnapshots(this.#transport, id);
  }

  #endpoint(): ApiEndpoint {
    const t = this.#transport;
    return {
      baseUrl: t.base,
      headers: t.authorization(),
      webSocketOptions: t.webSocketOptions(),
      client: t.httpClient,
    };
  }

  /**
   * Listen on a local TCP port (on this machine) and tunnel each connection through the controller to
   * `127.0.0.1:remotePort` on a worker, like `ssh -L` (each connection is one WebSocket of the control API).
   *
   * @example Reach a worker's database from here
   * ```ts ignore
   * await using tunnel = await client.forward("worker-1", 5432);
   * console.log(`psql -h ${tunnel.hostname} -p ${tunnel.port}`);
   * ```
   *
   * @param id Daemon id.
   * @param remotePort The port on the worker.
   * @param options Local port (default 0: any free port), local address (default 127.0.0.1), abort signal.
   * @returns The forwarding; close it (or `await using`) to stop.
   */
  forward(id: string, remotePort: number, options: ForwardOptions = {}): Promise<Forwarding> {
    try {
      checkDaemonId(id);
      return forwardThroughApi(this.#endpoint(), id, remotePort, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Expose an HTTP server on a worker at a URL on the controller (`/x/<token>/`), HTTP and WebSocket.
   *
   * @example Open a worker's dev server
   * ```ts ignore
   * const exposed = await client.exposeHttp("worker-1", { port: 5173 });
   * console.log(exposed.url);
   * ```
   *
   * @param id Daemon id.
   * @param options The worker's port.
   * @returns The URL and its `close()`.
   */
  async exposeHttp(id: string, options: ExposeHttpOptions): Promise<ExposedHttp> {
    checkDaemonId(id);
    return await exposeThroughApi(this.#endpoint(), id, options, async (response) => {
      const text = await response.text();
      let body: unknown = null;
      try {
        body = JSON.parse(text);
      } catch { /* not JSON */ }
      return apiError(response.status, body, { daemonId: id }, response.headers);
    });
  }

  /**
   * Connected daemons, optionally filtered by labels or platform.
   *
   * @param filter Labels that must all match, and/or a platform.
   * @returns Their descriptions.
   */
  async daemons(filter: DaemonFilter = {}): Promise<DaemonInfo[]> {
    checkFilter(filter);
    const body = object(
      "daemon list",
      await this.#transport.json("GET", "/daemons", {
        query: { label: labelQuery(filter), platform: filter.platform },
      }),
    );
    return array("daemon list", body.daemons).map(daemonInfo);
  }

  /**
   * One connected daemon.
   *
   * @param id Daemon id.
   * @returns Its description, or undefined when it is not connected.
   */
  async daemon(id: string): Promise<DaemonInfo | undefined> {
    checkDaemonId(id);
    try {
      return daemonInfo(
        await this.#transport.json("GET", `/daemons/${enc(id)}`, { context: { daemonId: id } }),
      );
    } catch (error) {
      if (error instanceof DaemonNotFoundError) return undefined;
      throw error;
    }
  }

  /**
   * Wait until a daemon with this id is connected.
   *
   * @param id Daemon id.
   * @param options Timeout and abort signal.
   * @returns Its description.
   * @throws {DaemonNotFoundError} When it did not connect in time.
   */
  async waitForDaemon(id: string, options: WaitOptions = {}): Promise<ReadyWorker> {
    checkDaemonId(id);
    positiveInt("timeout", options.timeout, 0);
    options.signal?.throwIfAborted();
    const timeout = options.timeout ?? 30_000;
    try {
      return readyWorker(
        this,
        daemonInfo(
          await this.#transport.json("GET", `/daemons/${enc(id)}/wait`, {
            query: { timeout },
            timeout: timeout + this.#transport.requestTimeoutMs,
            signal: options.signal,
            context: { daemonId: id },
          }),
        ),
      );
    } catch (error) {
      if (
        error instanceof ControlApiError && (error.code === "TIMEOUT" || error.status === 504)
      ) {
        throw new DaemonNotFoundError(id, `Daemon '${id}' did not connect within ${timeout} ms`);
      }
      throw error;
    }
  }

  /**
   * Listen for daemons connecting (`connect`) and disconnecting (`disconnect`); the listener gets a
   * `DaemonEvent`. The event stream from the controller is open only while listeners are registered.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Standard listener options (`once`, `signal`).
   */
  addEventListener<K extends keyof ServerEventMap>(
    type: K,
    listener: (event: ServerEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void {
    if (this.#closed) return;
    this.#events.add(type, listener as (event: Event) => unknown, options);
  }

  /**
   * Remove a listener added with {@linkcode Client.addEventListener}.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Standard listener options.
   */
  removeEventListener<K extends keyof ServerEventMap>(
    type: K,
    listener: (event: ServerEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void {
    this.#events.remove(type, listener as (event: Event) => unknown, options);
  }

  /**
   * Run a command to completion and collect its output (byte-exact).
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
    checkDaemonId(id);
    checkExec(command, options);
    options.signal?.throwIfAborted();
    const stdin = options.stdin;
    const body = {
      command,
      ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
      ...(options.env !== undefined ? { env: options.env } : {}),
      ...(options.timeout !== undefined ? { timeout: options.timeout } : {}),
      ...(typeof stdin === "string" ? { stdin } : {}),
      ...(stdin instanceof Uint8Array ? { stdinBase64: base64(stdin) } : {}),
      ...(options.maxOutputBytes !== undefined ? { maxOutputBytes: options.maxOutputBytes } : {}),
      encoding: "base64",
    };
    return execResult(
      await this.#transport.json("POST", `/daemons/${enc(id)}/exec`, {
        json: body,
        timeout: null,
        signal: options.signal,
        context: {
          daemonId: id,
          operation: "exec",
          ...(options.timeout !== undefined ? { timeoutMs: options.timeout } : {}),
        },
      }),
    );
  }

  /**
   * Run a command on every matching daemon at once.
   *
   * @param filter Which daemons.
   * @param command Shell string or argv.
   * @param options As for {@linkcode Client.exec}.
   * @returns Each daemon's result, or the error it failed with.
   */
  async broadcast(
    filter: DaemonFilter,
    command: string | string[],
    options: ExecOptions = {},
  ): Promise<Map<string, ExecResult | Error>> {
    checkFilter(filter);
    checkCommand(command);
    checkExec(command, options);
    options.signal?.throwIfAborted();
    if (options.stdin !== undefined || options.maxOutputBytes !== undefined) {
      // The broadcast route takes neither: run the same fan-out as the embedded controller does.
      const targets = (await this.daemons(filter)).map((d) => d.id);
      const results = await Promise.all(
        targets.map((id) => this.exec(id, command, options).catch((error: Error) => error)),
      );
      return new Map(targets.map((id, i) => [id, results[i]!]));
    }
    const body = object(
      "broadcast result",
      await this.#transport.json("POST", "/broadcast", {
        json: {
          ...(filter.labels && Object.keys(filter.labels).length ? { labels: filter.labels } : {}),
          ...(filter.platform !== undefined ? { platform: filter.platform } : {}),
          command,
          ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
          ...(options.env !== undefined ? { env: options.env } : {}),
          ...(options.timeout !== undefined ? { timeout: options.timeout } : {}),
        },
        timeout: null,
        signal: options.signal,
      }),
    );
    const out = new Map<string, ExecResult | Error>();
    for (const [id, value] of Object.entries(object("broadcast results", body.results))) {
      const entry = object("broadcast result", value);
      if (entry.error !== undefined) {
        out.set(id, apiError(0, entry.error, { daemonId: id }));
      } else {
        out.set(id, execResult(entry));
      }
    }
    return out;
  }

  /**
   * Start a process on a worker and stream its I/O.
   *
   * @param id Daemon id.
   * @param command Shell string or argv.
   * @param options Environment, directory, timeout, stdin, retention, gap callback.
   * @returns A handle whose streams resume from the last byte received when their HTTP connection drops.
   */
  async spawn(
    id: string,
    command: string | string[],
    options: SpawnOptions = {},
  ): Promise<ProcessHandle> {
    checkDaemonId(id);
    checkSpawn(command, options);
    const body = object(
      "spawn result",
      await this.#transport.json("POST", `/daemons/${enc(id)}/processes`, {
        json: {
          command,
          ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
          ...(options.env !== undefined ? { env: options.env } : {}),
          ...(options.timeout !== undefined ? { timeout: options.timeout } : {}),
          stdin: options.stdin ?? true,
          ...(options.retainBytes !== undefined ? { retainBytes: options.retainBytes } : {}),
        },
        context: { daemonId: id, operation: "spawn" },
      }),
    );
    if (typeof body.id !== "string" || typeof body.pid !== "number") {
      throw new ControlApiError(
        "BAD_RESPONSE",
        `The control API sent a malformed spawn result: ${JSON.stringify(body)}`,
      );
    }
    return new ClientProcess(this.#transport, {
      daemonId: id,
      id: body.id,
      pid: body.pid,
      command,
      stdin: options.stdin ?? true,
      from: [0, 0],
      onGap: options.onGap,
    });
  }

  /**
   * Attach to a process already running (or recently exited) on a worker. Output replays from `from`.
   *
   * @param id Daemon id.
   * @param processId The process id (`p.id`).
   * @param options Replay offset, stdin, gap callback.
   * @returns A handle of the same shape as `spawn`'s.
   * @throws {UnknownProcessError} When the daemon holds no such process.
   */
  async attach(
    id: string,
    processId: string,
    options: AttachOptions = {},
  ): Promise<ProcessHandle> {
    checkDaemonId(id);
    checkAttach("Process", processId, options);
    const from = streamOffsets(options.from);
    const info = processInfo(
      await this.#transport.json("GET", `/daemons/${enc(id)}/processes/${enc(processId)}`, {
        context: { daemonId: id },
      }),
    );
    return new ClientProcess(this.#transport, {
      daemonId: id,
      id: info.id,
      pid: info.pid,
      command: info.command,
      stdin: options.stdin ?? true,
      from,
      onGap: options.onGap,
    });
  }

  /**
   * Processes held by a daemon, running or recently exited.
   *
   * @param id Daemon id.
   * @returns Their descriptions.
   */
  async processes(id: string): Promise<ProcessInfo[]> {
    checkDaemonId(id);
    const body = object(
      "process list",
      await this.#transport.json("GET", `/daemons/${enc(id)}/processes`, {
        context: { daemonId: id },
      }),
    );
    return array("process list", body.processes).map(processInfo);
  }

  /**
   * Open an interactive terminal on a worker over the API's terminal WebSocket. When the WebSocket drops, the
   * handle re-attaches from the last byte received. The route takes one shell string: an argv `command` is quoted
   * into one and `env` is set with `env(1)` in front of it; `scrollback`, `timeout` and `record` are not offered
   * (a {@linkcode ControlApiError} `UNSUPPORTED`).
   *
   * @param id Daemon id.
   * @param options Program, size, environment, directory, scrollback, timeout.
   * @returns The session.
   * @throws {RangeError} For `cols`/`rows` outside 1..65535.
   * @throws {DaemonNotFoundError} When no such daemon is connected.
   */
  async shell(id: string, options: ShellOptions = {}): Promise<ShellHandle> {
    checkDaemonId(id);
    checkShell(options);
    return await openShell(this.#transport, id, { kind: "new", options });
  }

  /**
   * Attach to a terminal session already on a worker; the retained scrollback replays first.
   *
   * @param id Daemon id.
   * @param shellId The session id (`sh.id`).
   * @param options Replay offset and gap callback.
   * @returns The session.
   * @throws {UnknownProcessError} When the daemon holds no such session.
   */
  async attachShell(
    id: string,
    shellId: string,
    options: AttachShellOptions = {},
  ): Promise<ShellHandle> {
    checkDaemonId(id);
    checkAttach("Shell", shellId, options);
    return await openShell(this.#transport, id, { kind: "attach", shellId, options });
  }

  /**
   * Upload bytes or a stream to a file on a worker (streamed, verified with SHA-256, atomic).
   *
   * @param id Daemon id.
   * @param path Target path on the worker.
   * @param data The bytes, or a stream of them.
   * @param options Mode, parents, size, progress, abort signal.
   * @returns Bytes written and their SHA-256.
   * @throws {FileError} `ENOENT`, `EACCES`, `EISDIR`, `ENOSPC`, `EINTEGRITY`... with the path.
   */
  async upload(
    id: string,
    path: string,
    data: Uint8Array | ReadableStream<Uint8Array>,
    options: UploadOptions = {},
  ): Promise<UploadResult> {
    checkDaemonId(id);
    return await uploadFile(this.#transport, id, path, data, options);
  }

  /**
   * Download a whole file into memory.
   *
   * @param id Daemon id.
   * @param path Path on the worker.
   * @param options Resume offset, progress, abort signal, size cap (1 GiB by default).
   * @returns The bytes (from `from` on).
   * @throws {FileError} `ENOENT`, `EACCES`, `EISDIR`, `EINTEGRITY`, `EFBIG`... with the path.
   */
  async download(id: string, path: string, options: DownloadOptions = {}): Promise<Uint8Array> {
    checkDaemonId(id);
    return await downloadFile(this.#transport, id, path, options);
  }

  /**
   * Stream a file from a worker. Resolves once the file is open; a dropped HTTP connection resumes from the
   * last byte received.
   *
   * @param id Daemon id.
   * @param path Path on the worker.
   * @param options Resume offset, progress, abort signal, size cap.
   * @returns The bytes.
   * @throws {FileError} When the file cannot be opened.
   */
  async downloadStream(
    id: string,
    path: string,
    options: DownloadOptions = {},
  ): Promise<ReadableStream<Uint8Array>> {
    checkDaemonId(id);
    return await downloadFileStream(this.#transport, id, path, options);
  }

  /**
   * Upload a local directory tree as a tar stream; it replaces the target directory atomically.
   *
   * @param id Daemon id.
   * @param localDir Local directory.
   * @param remoteDir Target directory on the worker.
   * @param options Mode, parents, symlinks, progress, abort signal.
   * @returns Counts, bytes and the archive's SHA-256.
   * @throws {FileError} From the worker, or with a `TAR_*` code when the tree cannot be packed.
   */
  async uploadDir(
    id: string,
    localDir: string,
    remoteDir: string,
    options: UploadDirOptions = {},
  ): Promise<UploadDirResult> {
    checkDaemonId(id);
    return await uploadDirectory(this.#transport, id, localDir, remoteDir, options);
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
  async downloadDir(
    id: string,
    remoteDir: string,
    localDir: string,
    options: DownloadDirOptions = {},
  ): Promise<void> {
    checkDaemonId(id);
    return await downloadDirectory(this.#transport, id, remoteDir, localDir, options);
  }

  /**
   * The file system of a worker: `stat`, `list`, `mkdir`, `remove`, `move`. `watch` is not offered by the
   * control API: it throws a {@linkcode ControlApiError} `UNSUPPORTED`.
   *
   * @param id Daemon id.
   * @returns The handle.
   */
  fs(id: string): FileSystemHandle {
    checkDaemonId(id);
    return new ClientFs(this.#transport, id);
  }

  /**
   * Close the connection to the controller: every stream, wait and terminal of this client stops (processes and
   * sessions on the workers keep running). The controller itself is not affected.
   */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#events.close();
      this.#transport.close();
    }
    return Promise.resolve();
  }

  /** Same as {@linkcode Client.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
