/**
 * Every error the controller API can throw, in one place. Each has a stable `code`.
 *
 * @module
 */

export { ProtocolError } from "@sandd/protocol/errors";
export { AuthenticationError } from "./auth.ts";
export { RateLimitedError } from "./rate_limiter.ts";

/**
 * No daemon with that id is connected (or it did not connect in time).
 *
 * @example Catch it
 * ```ts
 * import { DaemonNotFoundError } from "./errors.ts";
 * const error = new DaemonNotFoundError("worker-9");
 * console.assert(error.code === "DAEMON_NOT_FOUND" && error.daemonId === "worker-9");
 * ```
 */
export class DaemonNotFoundError extends Error {
  /** Stable code. */
  readonly code: "DAEMON_NOT_FOUND" = "DAEMON_NOT_FOUND";
  /** The id asked for. */
  readonly daemonId: string;
  /**
   * Make the error.
   *
   * @param daemonId The id asked for.
   * @param message Override the message.
   */
  constructor(daemonId: string, message?: string) {
    super(message ?? `No daemon '${daemonId}' is connected`);
    this.name = "DaemonNotFoundError";
    this.daemonId = daemonId;
  }
}

/**
 * The daemon's link dropped and did not come back within the reconnect grace.
 *
 * @example Catch it
 * ```ts
 * import { DaemonDisconnectedError } from "./errors.ts";
 * console.assert(new DaemonDisconnectedError("worker-1").code === "DAEMON_DISCONNECTED");
 * ```
 */
export class DaemonDisconnectedError extends Error {
  /** Stable code. */
  readonly code: "DAEMON_DISCONNECTED" = "DAEMON_DISCONNECTED";
  /** The daemon. */
  readonly daemonId: string;
  /**
   * Make the error.
   *
   * @param daemonId The daemon.
   * @param message Override the message.
   */
  constructor(daemonId: string, message?: string) {
    super(message ?? `Daemon '${daemonId}' disconnected`);
    this.name = "DaemonDisconnectedError";
    this.daemonId = daemonId;
  }
}

/** What a command had produced when it was stopped. */
export interface PartialOutput {
  /** Standard output so far, decoded as UTF-8. */
  stdout: string;
  /** Standard error so far, decoded as UTF-8. */
  stderr: string;
  /** How long it ran, in milliseconds. */
  durationMs: number;
}

/**
 * A command ran past its timeout; its process group was killed and reaped on the worker.
 *
 * @example Read the partial output
 * ```ts
 * import { CommandTimeoutError } from "./errors.ts";
 * const error = new CommandTimeoutError(100, { stdout: "half", stderr: "", durationMs: 101 });
 * console.assert(error.partial.stdout === "half" && error.code === "COMMAND_TIMEOUT");
 * ```
 */
export class CommandTimeoutError extends Error {
  /** Stable code. */
  readonly code: "COMMAND_TIMEOUT" = "COMMAND_TIMEOUT";
  /** The timeout, in milliseconds. */
  readonly timeoutMs: number;
  /** Output produced before the kill. */
  readonly partial: PartialOutput;
  /**
   * Make the error.
   *
   * @param timeoutMs The timeout.
   * @param partial Output so far.
   */
  constructor(timeoutMs: number, partial: PartialOutput) {
    super(`Command timed out after ${timeoutMs} ms; its process group was killed`);
    this.name = "CommandTimeoutError";
    this.timeoutMs = timeoutMs;
    this.partial = partial;
  }
}

/**
 * The daemon refused or failed a request. `code` is the daemon's stable code (`UNKNOWN_PROCESS`,
 * `PROCESS_EXITED`, `BAD_OFFSET`, `UNSUPPORTED`, `ENOENT`, ...).
 *
 * @example Inspect the code
 * ```ts
 * import { RemoteError } from "./errors.ts";
 * const error = new RemoteError("worker-1", { code: "UNSUPPORTED", message: "no" });
 * console.assert(error.code === "UNSUPPORTED");
 * ```
 */
export class RemoteError extends Error {
  /** The daemon's code. */
  readonly code: string;
  /** The daemon. */
  readonly daemonId: string;
  /** Path, for file errors. */
  readonly path: string | undefined;
  /**
   * Make the error.
   *
   * @param daemonId The daemon.
   * @param error The wire error.
   * @param options Standard error options (`cause`).
   */
  constructor(
    daemonId: string,
    error: { code: string; message: string; path?: string },
    options?: ErrorOptions,
  ) {
    super(error.message, options);
    this.name = "RemoteError";
    this.code = error.code;
    this.daemonId = daemonId;
    this.path = error.path;
  }
}

/**
 * The daemon holds no process with that id (never existed, or its exit status expired).
 *
 * @example Catch it
 * ```ts
 * import { UnknownProcessError } from "./errors.ts";
 * console.assert(new UnknownProcessError("w", { code: "UNKNOWN_PROCESS", message: "x" }).code === "UNKNOWN_PROCESS");
 * ```
 */
export class UnknownProcessError extends RemoteError {
  /**
   * Make the error.
   *
   * @param daemonId The daemon.
   * @param error The wire error.
   */
  constructor(daemonId: string, error: { code: string; message: string }) {
    super(daemonId, error);
    this.name = "UnknownProcessError";
  }
}

/**
 * The process has exited: it cannot be signalled, resized or written to.
 *
 * @example Catch it
 * ```ts
 * import { ProcessExitedError } from "./errors.ts";
 * console.assert(new ProcessExitedError("w", { code: "PROCESS_EXITED", message: "x" }).code === "PROCESS_EXITED");
 * ```
 */
export class ProcessExitedError extends RemoteError {
  /**
   * Make the error.
   *
   * @param daemonId The daemon.
   * @param error The wire error.
   */
  constructor(daemonId: string, error: { code: string; message: string }) {
    super(daemonId, error);
    this.name = "ProcessExitedError";
  }
}

/**
 * The daemon's policy refused the request. `rule` names the rule.
 *
 * @example Catch it
 * ```ts
 * import { PolicyError } from "./errors.ts";
 * const error = new PolicyError("w", { code: "POLICY", message: "no shell", rule: "noShell" });
 * console.assert(error.rule === "noShell");
 * ```
 */
export class PolicyError extends RemoteError {
  /** The rule that refused it. */
  readonly rule: string;
  /**
   * Make the error.
   *
   * @param daemonId The daemon.
   * @param error The wire error.
   */
  constructor(daemonId: string, error: { code: string; message: string; rule?: string }) {
    super(daemonId, error);
    this.name = "PolicyError";
    this.rule = error.rule ?? "";
  }
}

/**
 * A file operation failed on the worker. `code` is the OS-style code (`ENOENT`, `EACCES`, `EISDIR`, `ENOSPC`,
 * `EEXIST`, `ENOTDIR`, `EINTEGRITY`, ...) and `path` the path. A directory transfer whose archive could not be
 * packed or unpacked is a `FileError` too, with the tar code (`TAR_FORMAT`, `TAR_PATH_ESCAPE`,
 * `TAR_PATH_INVALID`, `TAR_PACK`) and the tar error as its `cause`.
 *
 * @example Catch it
 * ```ts
 * import { FileError } from "./errors.ts";
 * const error = new FileError("w", { code: "ENOENT", message: "no such file", path: "/x" });
 * console.assert(error.code === "ENOENT" && error.path === "/x");
 * ```
 */
export class FileError extends RemoteError {
  /**
   * Make the error.
   *
   * @param daemonId The daemon.
   * @param error The wire error.
   * @param options Standard error options (`cause`).
   */
  constructor(
    daemonId: string,
    error: { code: string; message: string; path?: string },
    options?: ErrorOptions,
  ) {
    super(daemonId, error, options);
    this.name = "FileError";
  }
}

/**
 * Turn a tar failure of a directory transfer (an error whose `code` starts with `TAR_`) into a
 * {@linkcode FileError} with that code; anything else is returned as it is.
 *
 * @param daemonId The daemon.
 * @param path The directory being transferred.
 * @param error What was thrown.
 * @returns The error to throw.
 */
export function tarFileError(daemonId: string, path: string, error: unknown): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (!(error instanceof Error) || typeof code !== "string" || !code.startsWith("TAR_")) {
    return error;
  }
  return new FileError(daemonId, { code, message: error.message, path }, { cause: error });
}

/**
 * The daemon did not answer a request within the deadline (`ServerOptions.requestTimeoutMs`; for an upload, the
 * daemon made no progress for that long while the controller waited on it). The link stays up.
 *
 * @example Catch it
 * ```ts
 * import { RequestTimeoutError } from "./errors.ts";
 * const error = new RequestTimeoutError("worker-1", "stat", 60_000);
 * console.assert(error.code === "REQUEST_TIMEOUT" && error.operation === "stat");
 * ```
 */
export class RequestTimeoutError extends Error {
  /** Stable code. */
  readonly code: "REQUEST_TIMEOUT" = "REQUEST_TIMEOUT";
  /** The daemon. */
  readonly daemonId: string;
  /** The request's operation (`spawn`, `stat`, `upload`, ...). */
  readonly operation: string;
  /** The deadline, in milliseconds. */
  readonly timeoutMs: number;
  /**
   * Make the error.
   *
   * @param daemonId The daemon.
   * @param operation The request's operation.
   * @param timeoutMs The deadline.
   */
  constructor(daemonId: string, operation: string, timeoutMs: number) {
    super(`Daemon '${daemonId}' did not answer the '${operation}' request within ${timeoutMs} ms`);
    this.name = "RequestTimeoutError";
    this.daemonId = daemonId;
    this.operation = operation;
    this.timeoutMs = timeoutMs;
  }
}

const FILE_CODES = new Set([
  "ENOENT",
  "EACCES",
  "EISDIR",
  "ENOTDIR",
  "ENOSPC",
  "EEXIST",
  "ENOTEMPTY",
  "EINTEGRITY",
  "EIO",
  "EBUSY",
  "EINVAL",
  "ELOOP",
  "EPERM",
  "ENAMETOOLONG",
  "EXDEV",
  "EROFS",
]);

/**
 * Turn a wire error into the most specific error class.
 *
 * @example Map a code
 * ```ts
 * import { remoteError, UnknownProcessError } from "./errors.ts";
 * console.assert(remoteError("w", { code: "UNKNOWN_PROCESS", message: "x" }) instanceof UnknownProcessError);
 * ```
 *
 * @param daemonId The daemon.
 * @param error The wire error.
 * @returns The error.
 */
export function remoteError(
  daemonId: string,
  error: { code: string; message: string; path?: string; rule?: string },
): RemoteError {
  if (error.code === "UNKNOWN_PROCESS") return new UnknownProcessError(daemonId, error);
  if (error.code === "PROCESS_EXITED") return new ProcessExitedError(daemonId, error);
  if (error.code === "POLICY") return new PolicyError(daemonId, error);
  if (FILE_CODES.has(error.code)) return new FileError(daemonId, error);
  return new RemoteError(daemonId, error);
}

/**
 * A signal outside the allowed set was asked for.
 *
 * @example Catch it
 * ```ts
 * import { SignalNotAllowedError } from "./errors.ts";
 * console.assert(new SignalNotAllowedError("SIGSEGV").code === "SIGNAL_NOT_ALLOWED");
 * ```
 */
export class SignalNotAllowedError extends TypeError {
  /** Stable code. */
  readonly code: "SIGNAL_NOT_ALLOWED" = "SIGNAL_NOT_ALLOWED";
  /** The signal asked for. */
  readonly signal: string;
  /**
   * Make the error.
   *
   * @param signal The signal asked for.
   * @param allowed The allowed signals.
   */
  constructor(signal: string, allowed: readonly string[] = []) {
    super(
      `Signal '${signal}' is not allowed${
        allowed.length ? `; allowed: ${allowed.join(", ")}` : ""
      }`,
    );
    this.name = "SignalNotAllowedError";
    this.signal = signal;
  }
}

/**
 * The daemon is not held by this controller node and the cluster cannot be reached (NATS is down), so the
 * request cannot be routed to the node that holds it. Daemons held by this node keep working.
 *
 * @example Check the code
 * ```ts
 * import { ClusterUnavailableError } from "./errors.ts";
 * console.assert(new ClusterUnavailableError("worker-1").code === "CLUSTER_UNAVAILABLE");
 * ```
 */
export class ClusterUnavailableError extends Error {
  /** Stable code. */
  readonly code: "CLUSTER_UNAVAILABLE" = "CLUSTER_UNAVAILABLE";
  /** The daemon asked for. */
  readonly daemonId: string;

  /**
   * Make the error.
   *
   * @param daemonId The daemon asked for.
   */
  constructor(daemonId: string) {
    super(
      `Daemon '${daemonId}' is not connected to this controller node and the cluster (NATS) is unreachable`,
    );
    this.name = "ClusterUnavailableError";
    this.daemonId = daemonId;
  }
}
