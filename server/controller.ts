/**
 * The interface shared by the embedded controller ({@linkcode Server}) and the remote one (`Client`, which
 * talks to a controller's HTTP control API): an agent script written against {@linkcode Controller} switches
 * between the two by changing one line.
 *
 * @example Code that runs against either
 * ```ts ignore
 * import type { Controller } from "@sandd/server";
 * async function hostname(c: Controller, id: string): Promise<string> {
 *   return (await c.exec(id, "hostname")).stdout.trim();
 * }
 * ```
 *
 * @module
 */

import type { Snapshots } from "./snapshots.ts";
import type { ExposedHttp, ExposeHttpOptions, Forwarding, ForwardOptions } from "./forward.ts";
import type { DaemonInfo, ServerEventMap } from "./server.ts";
import type {
  AttachOptions,
  BroadcastOptions,
  DaemonFilter,
  ExecOptions,
  ExecResult,
  SpawnOptions,
  WaitOptions,
} from "./options.ts";
import type { Gap, ProcessInfo, ProcessStatus } from "./process.ts";
import type { AttachShellOptions, ShellOptions } from "./shell.ts";
import type {
  DownloadDirOptions,
  DownloadOptions,
  FileEntry,
  FileStat,
  FsEvent,
  ListOptions,
  MkdirOptions,
  RemoveOptions,
  UploadDirOptions,
  UploadDirResult,
  UploadOptions,
  UploadResult,
  WatchOptions,
} from "./files.ts";

/**
 * A worker's workspace snapshots: what `snapshots(id)` returns, embedded ({@linkcode Snapshots}) or remote.
 */
export type SnapshotsHandle = Pick<
  Snapshots,
  | "daemonId"
  | "create"
  | "restore"
  | "list"
  | "findByTag"
  | "get"
  | "delete"
  | "copyTo"
  | "export"
  | "import"
>;

/** A process on a worker: what `spawn` and `attach` return, embedded or remote. */
export interface ProcessHandle {
  /** The daemon the process runs on. */
  readonly daemonId: string;
  /** The process id on the daemon (not the OS pid); keep it to `attach` later. */
  readonly id: string;
  /** The OS process id on the worker. */
  readonly pid: number;
  /** The command as given. */
  readonly command: string | string[];
  /** Standard output, resuming across dropped links. */
  readonly stdout: ReadableStream<Uint8Array>;
  /** Standard error, resuming across dropped links. */
  readonly stderr: ReadableStream<Uint8Array>;
  /** Standard input (closing it sends EOF). */
  readonly stdin: WritableStream<Uint8Array>;
  /** Resolves when the process exits. */
  readonly status: Promise<ProcessStatus>;
  /** The exit status once known, else null. */
  readonly exited: ProcessStatus | null;
  /** Output the daemon no longer retained when this handle asked for it. */
  readonly gaps: readonly Gap[];
  /** Send a signal. */
  kill(signal?: Deno.Signal): Promise<void>;
  /** Stop streaming without killing the process (it can be attached again). */
  detach(): Promise<void>;
}

/** An interactive terminal on a worker: what `shell` and `attachShell` return, embedded or remote. */
export interface ShellHandle extends AsyncDisposable {
  /** Session id; keep it to `attachShell` later. */
  readonly id: string;
  /** The OS process id of the program on the terminal. */
  readonly pid: number;
  /** Terminal output (scrollback first when attached). */
  readonly output: ReadableStream<Uint8Array>;
  /** Output no longer retained when this handle asked for it. */
  readonly gaps: readonly Gap[];
  /** Resolves when the program on the terminal exits. */
  readonly exited: Promise<ProcessStatus>;
  /** Type into the terminal. */
  write(data: string | Uint8Array): Promise<void>;
  /** Change the terminal size. */
  resize(cols: number, rows: number): Promise<void>;
  /** Send a signal to the program. */
  kill(signal?: Deno.Signal): Promise<void>;
  /** Leave the session running on the worker. */
  detach(): Promise<void>;
  /** End the session and wait for the program's exit. */
  close(): Promise<ProcessStatus>;
}

/** A worker's file system: what `fs(id)` returns, embedded or remote. */
export interface FileSystemHandle {
  /** The daemon whose file system this is. */
  readonly daemonId: string;
  /** Describe a path (does not follow a final symlink). */
  stat(path: string): Promise<FileStat>;
  /** List a directory. */
  list(path: string, options?: ListOptions): Promise<FileEntry[]>;
  /** Create a directory. */
  mkdir(path: string, options?: MkdirOptions): Promise<void>;
  /** Remove a file or directory. */
  remove(path: string, options?: RemoveOptions): Promise<void>;
  /** Rename a path. */
  move(from: string, to: string): Promise<void>;
  /** Watch a path for changes. */
  watch(path: string, options?: WatchOptions): AsyncIterable<FsEvent>;
}

/**
 * The controller's operations on its fleet. {@linkcode Server} implements it in process; `Client` implements it
 * over the HTTP control API. Listings may be synchronous on `Server`: `await` them and the code works for both.
 */
export interface Controller extends AsyncDisposable {
  /** Connected daemons, optionally filtered. */
  daemons(filter?: DaemonFilter): DaemonInfo[] | Promise<DaemonInfo[]>;
  /** One connected daemon, or undefined. */
  daemon(id: string): DaemonInfo | undefined | Promise<DaemonInfo | undefined>;
  /** Resolve once a daemon with this id is connected. */
  waitForDaemon(id: string, options?: WaitOptions): Promise<DaemonInfo>;
  /** Run a command to completion. */
  exec(id: string, command: string | string[], options?: ExecOptions): Promise<ExecResult>;
  /** Run a command on every matching daemon. */
  broadcast(
    filter: DaemonFilter,
    command: string | string[],
    options?: BroadcastOptions,
  ): Promise<Map<string, ExecResult | Error>>;
  /** Start a streaming process. */
  spawn(id: string, command: string | string[], options?: SpawnOptions): Promise<ProcessHandle>;
  /** Attach to a process already on a worker. */
  attach(id: string, processId: string, options?: AttachOptions): Promise<ProcessHandle>;
  /** Processes a daemon holds. */
  processes(id: string): Promise<ProcessInfo[]>;
  /** Open an interactive terminal. */
  shell(id: string, options?: ShellOptions): Promise<ShellHandle>;
  /** Attach to a terminal session already on a worker. */
  attachShell(id: string, shellId: string, options?: AttachShellOptions): Promise<ShellHandle>;
  /** Upload bytes or a stream to a file (atomic, verified). */
  upload(
    id: string,
    path: string,
    data: Uint8Array | ReadableStream<Uint8Array>,
    options?: UploadOptions,
  ): Promise<UploadResult>;
  /** Download a whole file. */
  download(id: string, path: string, options?: DownloadOptions): Promise<Uint8Array>;
  /** Stream a file from a worker. */
  downloadStream(
    id: string,
    path: string,
    options?: DownloadOptions,
  ): Promise<ReadableStream<Uint8Array>>;
  /** Upload a local directory tree. */
  uploadDir(
    id: string,
    localDir: string,
    remoteDir: string,
    options?: UploadDirOptions,
  ): Promise<UploadDirResult>;
  /** Download a directory tree into a local directory. */
  downloadDir(
    id: string,
    remoteDir: string,
    localDir: string,
    options?: DownloadDirOptions,
  ): Promise<void>;
  /** A worker's file system. */
  fs(id: string): FileSystemHandle;
  /** Daemon `connect` / `disconnect` events. */
  addEventListener<K extends keyof ServerEventMap>(
    type: K,
    listener: (event: ServerEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /** Remove a listener. */
  removeEventListener<K extends keyof ServerEventMap>(
    type: K,
    listener: (event: ServerEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  /**
   * Tunnel a local TCP port to a port on a worker (`Server`; a remote `Client` may not offer it).
   */
  forward?(id: string, remotePort: number, options?: ForwardOptions): Promise<Forwarding>;
  /** Expose a worker's HTTP server at a URL on the controller (`Server`; a remote `Client` may not offer it). */
  exposeHttp?(id: string, options: ExposeHttpOptions): Promise<ExposedHttp>;
  /** A worker's workspace snapshots (both `Server` and `Client` offer them). */
  snapshots?(id: string): SnapshotsHandle;
  /** Close the controller (embedded) or the connection to it (remote). */
  close(): Promise<void>;
}
