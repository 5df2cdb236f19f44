/**
 * The worker handle: `const w = server.worker("worker-1")` gives one worker's operations with Deno's shapes —
 * `w.command()` like `Deno.Command`, `` w.sh`...` `` for shell scripting with every interpolation quoted, and
 * `w.fs` like Deno's file functions, errors included. It is built on the {@linkcode Controller} interface only, so
 * `new RemoteWorker(client, id)` works the same over the remote `Client`.
 *
 * Which API to use when:
 * - **The worker handle** (`w.command`, `w.sh`, `w.fs`) for agent and script code: Deno's names and shapes, errors
 *   testable like local ones (`instanceof Deno.errors.NotFound`), a failing shell command that throws.
 * - **`server.exec`/`spawn`/`attach`** for the controller's own shape: a command string run by `sh -c` (or an argv
 *   array), output as text and bytes at once, byte offsets, gap callbacks, `maxOutputBytes`; a non-zero exit is a
 *   result, never an error. `server.broadcast` for many workers at once.
 * - **`server.upload`/`download`/`downloadStream`/`uploadDir`/`downloadDir`** for transfers between this machine
 *   and a worker (local paths, progress callbacks, resume offsets, directory trees); `w.fs` is about files on the
 *   worker itself.
 * - **`server.shell`** for interactive terminals (PTY).
 *
 * @example Use a worker like the local machine
 * ```ts ignore
 * import { Server } from "@sandd/server";
 * await using server = await Server.listen({ port: 8765 });
 * const w = await server.worker("worker-1").ready({ timeout: 30_000 });
 * const { success, stdout } = await w.command("uname", { args: ["-a"] }).output();
 * const log = await w.sh`git -C ${"/srv/repo"} log -n ${5} --oneline`.lines();
 * await w.fs.writeTextFile("/tmp/notes.txt", log.join("\n"));
 * ```
 *
 * @module
 */

import type { ExposedHttp, ExposeHttpOptions, Forwarding, ForwardOptions } from "./forward.ts";
import type { Controller, SnapshotsHandle } from "./controller.ts";
import type { DaemonInfo } from "./server.ts";
import type { WaitOptions } from "./options.ts";
import type { StreamOffsets } from "./process.ts";
import {
  GapCounter,
  WorkerChildProcess,
  WorkerCommand,
  type WorkerCommandOptions,
  type WorkerStdin,
  type WorkerStdio,
} from "./_worker_command.ts";
import { buildScript, ShCommand, ShUnsupportedPlatformError, type ShValue } from "./_worker_sh.ts";
import { WorkerFs } from "./_worker_fs.ts";

export {
  type OutputOffsets,
  WorkerChildProcess,
  WorkerCommand,
  type WorkerCommandOptions,
  type WorkerCommandOutput,
  type WorkerCommandStatus,
  type WorkerStdin,
  type WorkerStdio,
} from "./_worker_command.ts";
export {
  CommandFailedError,
  ShCommand,
  shQuote,
  type ShResult,
  ShUnsupportedPlatformError,
  type ShValue,
} from "./_worker_sh.ts";
export {
  WorkerFs,
  type WorkerMkdirOptions,
  type WorkerOpenOptions,
  type WorkerReadFileOptions,
  type WorkerRemoveOptions,
  type WorkerWatchFsOptions,
  type WorkerWriteFileOptions,
} from "./_worker_fs.ts";
export { WorkerFile, WorkerFsWatcher } from "./_worker_fs_io.ts";
export {
  RemoteAlreadyExistsError,
  RemoteBusyError,
  type RemoteFileErrorClass,
  type RemoteFileErrorFields,
  type RemoteFileErrorInit,
  RemoteFilesystemLoopError,
  RemoteIsADirectoryError,
  RemoteNotADirectoryError,
  RemoteNotFoundError,
  RemotePermissionDeniedError,
} from "./_worker_errors.ts";

/** The `sh` template tag of a worker. */
export type ShTag = (strings: TemplateStringsArray, ...values: ShValue[]) => ShCommand;

/** Options of {@linkcode RemoteWorker.attach}. */
export interface WorkerAttachOptions {
  /**
   * Byte offset to replay output from: a number for both streams, or `{ stdout, stderr }` (e.g. a detached
   * child's `offsets`). Bytes no longer retained are reported in `child.gaps` and counted in `child.offsets`.
   * @default 0 (everything still retained)
   */
  from?: number | StreamOffsets;
  /** Take over standard input (`child.stdin`). @default "null" */
  stdin?: WorkerStdin;
  /** Standard output handling, as for `command()`. @default "piped" */
  stdout?: WorkerStdio;
  /** Standard error handling, as for `command()`. @default "piped" */
  stderr?: WorkerStdio;
}

/**
 * One worker, with Deno-shaped operations: {@linkcode RemoteWorker.command}, {@linkcode RemoteWorker.sh},
 * {@linkcode RemoteWorker.fs}, {@linkcode RemoteWorker.attach}. Get it with `server.worker(id)` (or
 * `new RemoteWorker(controller, id)` for any {@linkcode Controller}). The handle holds no connection: every call
 * goes to the daemon's current link, so it survives reconnects and can be made before the daemon connects
 * (`await w.ready()` waits for it).
 *
 * @example Run, script and read files on a worker
 * ```ts ignore
 * const w = server.worker("worker-1");
 * await w.ready({ timeout: 30_000 });
 * const out = await w.command("ls", { args: ["-la", "/srv"] }).output();
 * const head = await w.sh`git -C ${"/srv/app"} rev-parse HEAD`.text();
 * const config = JSON.parse(await w.fs.readTextFile("/srv/app/config.json"));
 * ```
 *
 * @example A handle needs no connected daemon until it is used
 * ```ts
 * import { Server } from "./server.ts";
 * const server = await Server.listen({ port: 0 });
 * const w = server.worker("worker-1");
 * console.assert(w.id === "worker-1" && (await w.info()) === undefined);
 * console.assert(w.sh`echo ${"it's; rm -rf /"}`.script === `echo 'it'\\''s; rm -rf /'`);
 * await server.close();
 * ```
 */
export class RemoteWorker {
  /** The daemon id. */
  readonly id: string;
  readonly #controller: Controller;
  #platform: string | null = null;
  #fs: WorkerFs | null = null;

  /**
   * The `sh` template tag: `` await w.sh`ls ${dir}` ``. Interpolated values are quoted for a POSIX shell (one
   * argument each; arrays give one per element; other types are a `TypeError`). See {@linkcode ShCommand}.
   *
   * @example Script with hostile values safely
   * ```ts ignore
   * const name = "a b; rm -rf / $(reboot) 'x'";
   * await w.sh`touch ${"/tmp/" + name}`; // one file with exactly that name
   * const files = await w.sh`ls -1 ${["/tmp", "/var"]}`.lines();
   * const { code } = await w.sh`grep -q ${"needle"} ${"/etc/hosts"}`.noThrow();
   * ```
   */
  readonly sh: ShTag;

  /**
   * Make a handle for any controller (`server.worker(id)` does this for a `Server`).
   *
   * @param controller The embedded `Server` or a remote `Client`.
   * @param id The daemon id.
   */
  constructor(controller: Controller, id: string) {
    if (typeof id !== "string" || id === "") {
      throw new TypeError(`Daemon id must be a non-empty string, got ${JSON.stringify(id)}`);
    }
    this.#controller = controller;
    this.id = id;
    this.sh = (strings, ...values) =>
      new ShCommand(
        { controller, daemonId: id, checkPosix: () => this.#checkPosix() },
        buildScript(strings, values),
      );
  }

  /** The controller this handle uses. */
  get controller(): Controller {
    return this.#controller;
  }

  /**
   * Wait until the daemon is connected (`controller.waitForDaemon`) and give this handle back, so
   * `const w = await server.worker(id).ready()` reads in one line. (`waitForDaemon` itself still returns the
   * `DaemonInfo`; {@linkcode RemoteWorker.info} gives it here.)
   *
   * @param options Timeout and abort signal.
   * @returns This handle.
   * @throws {DaemonNotFoundError} When it did not connect in time.
   */
  async ready(options: WaitOptions = {}): Promise<this> {
    const info = await this.#controller.waitForDaemon(this.id, options);
    this.#platform = info.platform;
    return this;
  }

  /**
   * The daemon's description, or undefined while it is not connected.
   *
   * @returns Its `DaemonInfo`.
   */
  async info(): Promise<DaemonInfo | undefined> {
    const info = await this.#controller.daemon(this.id);
    if (info) this.#platform = info.platform;
    return info;
  }

  async #checkPosix(): Promise<void> {
    if (this.#platform === null) await this.info();
    if (this.#platform === "windows") throw new ShUnsupportedPlatformError(this.id, "windows");
  }

  /**
   * A program to run on the worker, as `new Deno.Command(program, options)` is locally: `.output()` or
   * `.spawn()`. The program and `args` are an argv array: no shell is involved.
   *
   * @example Output and a streaming child
   * ```ts ignore
   * const { code, stdout } = await w.command("git", { args: ["status"], cwd: "/srv/app" }).output();
   * const child = await w.command("tail", { args: ["-f", "/var/log/syslog"] }).spawn();
   * for await (const chunk of child.stdout) console.log(new TextDecoder().decode(chunk));
   * ```
   *
   * @param program The program (looked up in the daemon's `PATH`).
   * @param options Arguments, directory, environment, stdio, timeout, abort signal.
   * @returns The command (nothing runs yet).
   * @throws {TypeError} For bad options (an unknown one, `stdin: "inherit"`, ...).
   */
  command(program: string, options: WorkerCommandOptions = {}): WorkerCommand {
    return new WorkerCommand(this.#controller, this.id, program, options);
  }

  /**
   * Reattach to a process already on the worker (started by `spawn()`, then detached or left behind by another
   * script): a child of the same shape, output replayed from `from`.
   *
   * @example Detach, then reattach where reading stopped
   * ```ts ignore
   * const child = await w.command("make", { args: ["-j8"] }).spawn();
   * // ... read some output, then:
   * const { id, offsets } = child;
   * await child.detach();
   * const again = await w.attach(id, { from: offsets });
   * ```
   *
   * @param processId The child's `id`.
   * @param options Replay offsets and stdio.
   * @returns The child.
   * @throws {UnknownProcessError} When the daemon holds no such process.
   */
  async attach(processId: string, options: WorkerAttachOptions = {}): Promise<WorkerChildProcess> {
    if (options.stdin !== undefined && options.stdin !== "piped" && options.stdin !== "null") {
      throw new TypeError(`stdin must be "piped" or "null", got ${JSON.stringify(options.stdin)}`);
    }
    const from = options.from ?? 0;
    const gaps = new GapCounter(
      typeof from === "number"
        ? { stdout: from, stderr: from }
        : { stdout: from.stdout ?? 0, stderr: from.stderr ?? 0 },
    );
    const handle = await this.#controller.attach(this.id, processId, {
      from: typeof from === "number"
        ? from
        : { stdout: from.stdout ?? 0, stderr: from.stderr ?? 0 },
      stdin: options.stdin === "piped",
      onGap: gaps.add,
    });
    return new WorkerChildProcess(handle, {
      stdin: options.stdin ?? "null",
      stdout: options.stdout ?? "piped",
      stderr: options.stderr ?? "piped",
    }, gaps);
  }

  /** The worker's file system with Deno's names: see {@linkcode WorkerFs}. */
  get fs(): WorkerFs {
    this.#fs ??= new WorkerFs({
      controller: this.#controller,
      daemonId: this.id,
      checkPosix: () => this.#checkPosix(),
    });
    return this.#fs;
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Wired in by the lead at merge (not implemented here):
  // ---------------------------------------------------------------------------------------------------------------

  /**
   * This worker's workspace snapshots: `create(dir, { message, tags })`, `restore(id, dest)`, `list({ tags })`,
   * `findByTag`, `get`, `delete`, `copyTo(otherWorker, id)`, `export`, `import` (see {@linkcode Snapshots}).
   *
   * @example Snapshot a workspace, break it, restore it
   * ```ts ignore
   * const snap = await w.snapshots.create("/srv/work", { message: "before the upgrade", tags: ["green"] });
   * await w.snapshots.restore(snap.id, "/srv/work", { overwrite: true });
   * ```
   *
   * @throws {TypeError} When the controller offers no snapshots (see {@linkcode Controller.snapshots}).
   */
  get snapshots(): SnapshotsHandle {
    const controller = this.#controller;
    if (!controller.snapshots) throw new TypeError("This controller offers no workspace snapshots");
    return controller.snapshots(this.id);
  }

  /**
   * Listen on a local TCP port and tunnel each connection to `127.0.0.1:remotePort` on this worker (like
   * `ssh -L` / `kubectl port-forward`).
   *
   * @example Reach a worker's database
   * ```ts ignore
   * await using tunnel = await w.forward(5432);
   * console.log(`psql -h ${tunnel.hostname} -p ${tunnel.port}`);
   * ```
   *
   * @param remotePort The port on the worker.
   * @param options Local port (default 0: any free port), local address (default 127.0.0.1), abort signal.
   * @returns The forwarding; close it (or `await using`) to stop.
   * @throws {TypeError} When the controller offers no forwarding (see {@linkcode Controller.forward}).
   */
  forward(remotePort: number, options: ForwardOptions = {}): Promise<Forwarding> {
    const controller = this.#controller;
    if (!controller.forward) {
      return Promise.reject(new TypeError("This controller offers no port forwarding"));
    }
    return controller.forward(this.id, remotePort, options);
  }

  /**
   * Expose an HTTP server on this worker at a URL on the controller (`/x/<token>/`), HTTP and WebSocket.
   *
   * @example Open a worker's dev server
   * ```ts ignore
   * const exposed = await w.exposeHttp({ port: 5173 });
   * console.log(exposed.url);
   * ```
   *
   * @param options The worker's port, abort signal.
   * @returns The URL and its `close()`.
   * @throws {TypeError} When the controller offers no exposed URLs (see {@linkcode Controller.exposeHttp}).
   */
  exposeHttp(options: ExposeHttpOptions): Promise<ExposedHttp> {
    const controller = this.#controller;
    if (!controller.exposeHttp) {
      return Promise.reject(new TypeError("This controller offers no exposed HTTP URLs"));
    }
    return controller.exposeHttp(this.id, options);
  }
}

/**
 * What `waitForDaemon` resolves to: the daemon's description ({@linkcode DaemonInfo}) that is also its worker
 * handle, so `const w = await server.waitForDaemon(id)` reads `w.platform` and runs `` w.sh`...` ``.
 */
export type ReadyWorker = RemoteWorker & DaemonInfo;

/**
 * A worker handle carrying a daemon's description.
 *
 * @param controller The controller.
 * @param info The daemon's description.
 * @returns The handle with the description's fields.
 */
export function readyWorker(controller: Controller, info: DaemonInfo): ReadyWorker {
  return Object.assign(new RemoteWorker(controller, info.id), info);
}
