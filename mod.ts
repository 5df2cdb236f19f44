/**
 * SandD: run commands, terminals and file transfers on remote workers from a Deno script.
 *
 * Workers run the `sandd` daemon, which dials out to the controller embedded in your script over WebSocket, so no
 * worker exposes a port.
 *
 * @example Run a command on a worker
 * ```ts ignore
 * import { Server } from "@sandd/server";
 * await using server = await Server.listen({ hostname: "0.0.0.0", port: 8765 });
 * await server.waitForDaemon("worker-1", { timeout: 30_000 });
 * const r = await server.exec("worker-1", "hostname", { timeout: 10_000 });
 * console.log(r.stdout.trim(), r.exitCode);
 * ```
 *
 * @module
 */

export type {
  Controller,
  FileSystemHandle,
  ProcessHandle,
  ShellHandle,
  SnapshotsHandle,
} from "./server/controller.ts";
export { DaemonEvent, type DaemonInfo, Server, type ServerEventMap } from "./server/server.ts";
export type {
  AttachOptions,
  BroadcastOptions,
  DaemonFilter,
  ExecOptions,
  ExecResult,
  ServerOptions,
  ServerRateLimit,
  ServerStats,
  SpawnOptions,
  WaitOptions,
} from "./server/options.ts";
export {
  AuthenticationError,
  ClusterUnavailableError,
  CommandTimeoutError,
  DaemonDisconnectedError,
  DaemonNotFoundError,
  FileError,
  type PartialOutput,
  PolicyError,
  ProcessExitedError,
  ProtocolError,
  RateLimitedError,
  RemoteError,
  RequestTimeoutError,
  SignalNotAllowedError,
  UnknownProcessError,
} from "./server/errors.ts";
export {
  type Gap,
  type ProcessInfo,
  type ProcessStatus,
  RemoteProcess,
  type StreamOffsets,
} from "./server/process.ts";
export {
  type AttachShellOptions,
  RemoteShell,
  type ShellOptions,
  ShellReadOnlyError,
  type TerminalSize,
  type ViewerInfo,
} from "./server/shell.ts";
export { PROTOCOL_VERSION, SUBPROTOCOL, VERSION } from "@sandd/protocol/version";
export {
  type DownloadDirOptions,
  type DownloadOptions,
  type FileEntry,
  type FileStat,
  type FileType,
  type FsEvent,
  type ListOptions,
  type MkdirOptions,
  RemoteFs,
  type RemoveOptions,
  type TransferProgress,
  type UploadDirOptions,
  type UploadDirResult,
  type UploadOptions,
  type UploadResult,
  type WatchOptions,
} from "./server/files.ts";
export {
  type Identity,
  type JsonWebKeySet,
  type JwtAlgorithm,
  type JwtOptions,
} from "./server/auth.ts";
export { type RateLimit } from "./server/rate_limiter.ts";
export {
  type AuditInput,
  AuditLog,
  type AuditLogOptions,
  type AuditRecord,
  type AuditSink,
  fileAuditSink,
  type FileAuditSinkOptions,
  logtapeAuditSink,
} from "./server/audit.ts";
// --- port forwarding (server/forward.ts) ---
export type {
  ExposedHttp,
  ExposeHttpOptions,
  Forwarding,
  ForwardOptions,
} from "./server/forward.ts";

// --- The worker handle (issue 12): `server.worker(id)`, Deno-shaped command/sh/fs on one worker ---
export {
  CommandFailedError,
  type OutputOffsets,
  type ReadyWorker,
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
  RemoteWorker,
  ShCommand,
  shQuote,
  type ShResult,
  type ShTag,
  ShUnsupportedPlatformError,
  type ShValue,
  type WorkerAttachOptions,
  WorkerChildProcess,
  WorkerCommand,
  type WorkerCommandOptions,
  type WorkerCommandOutput,
  type WorkerCommandStatus,
  WorkerFile,
  WorkerFs,
  WorkerFsWatcher,
  type WorkerMkdirOptions,
  type WorkerOpenOptions,
  type WorkerReadFileOptions,
  type WorkerRemoveOptions,
  type WorkerStdin,
  type WorkerStdio,
  type WorkerWatchFsOptions,
  type WorkerWriteFileOptions,
} from "./server/worker.ts";
export type { MetricsOptions } from "./server/metrics.ts";

// --- The HTTP control API (issue 11): `Server.listen({ control })` ---
export type { ClientToken, ControlOptions, Scope } from "./server/control/options.ts";
export { parseClientTokens } from "./server/control/tokens.ts";

// --- workspace snapshots (issue 12) ---
export {
  type SnapshotCopyResult,
  type SnapshotCreated,
  type SnapshotCreateOptions,
  type SnapshotDeleteResult,
  type SnapshotInfo,
  type SnapshotListOptions,
  type SnapshotRestoreOptions,
  type SnapshotRestoreResult,
  Snapshots,
} from "./server/snapshots.ts";
// --- The web console (issue 13): `Server.listen({ control, console })` ---
export type { ConsoleOptions } from "./server/console/console.ts";
// --- the remote controller over the control API (issue 11) ---
export { Client, type ClientOptions, ControlApiError } from "./server/client.ts";
export type { ClusterOptions, ClusterTlsOptions } from "./server/cluster/options.ts";
