/**
 * The errors of the worker handle's file system (`w.fs`), shaped so a Deno user tests them like local ones: a
 * missing remote file is `instanceof Deno.errors.NotFound`, an existing one `instanceof Deno.errors.AlreadyExists`,
 * and so on. Each keeps the OS-style `code` (`ENOENT`, ...), the `path` and the `daemonId`, with the controller's
 * error (usually a `FileError`) as its `cause`.
 *
 * @module
 */

import { FileError } from "./errors.ts";

/** What every remote file error carries besides its Deno class. */
export interface RemoteFileErrorFields {
  /** OS-style code, as on the worker (`ENOENT`, `EEXIST`, `EACCES`, ...). */
  readonly code: string;
  /** The path the operation was about. */
  readonly path: string;
  /** The daemon. */
  readonly daemonId: string;
}

/** Fields passed to the constructors. */
interface Init {
  code: string;
  message: string;
  path: string;
  daemonId: string;
  cause?: unknown;
}

function describe(init: Init): string {
  return init.message.includes(init.path)
    ? init.message
    : `${init.message}: '${init.path}' on '${init.daemonId}'`;
}

/**
 * A path on a worker does not exist (`ENOENT`). It is a `Deno.errors.NotFound`.
 *
 * @example Test it like a local error
 * ```ts
 * import { RemoteNotFoundError } from "./_worker_errors.ts";
 * const error = new RemoteNotFoundError({ code: "ENOENT", message: "No such file", path: "/x", daemonId: "w" });
 * console.assert(error instanceof Deno.errors.NotFound && error.code === "ENOENT" && error.path === "/x");
 * ```
 */
export class RemoteNotFoundError extends Deno.errors.NotFound implements RemoteFileErrorFields {
  /** OS-style code. */
  readonly code: string;
  /** The path. */
  readonly path: string;
  /** The daemon. */
  readonly daemonId: string;
  /**
   * Make the error.
   *
   * @param init Code, message, path, daemon and cause.
   */
  constructor(init: Init) {
    super(describe(init), init.cause !== undefined ? { cause: init.cause } : undefined);
    this.name = "RemoteNotFoundError";
    this.code = init.code;
    this.path = init.path;
    this.daemonId = init.daemonId;
  }
}

/**
 * A path on a worker already exists (`EEXIST`). It is a `Deno.errors.AlreadyExists`.
 *
 * @example Test it like a local error
 * ```ts
 * import { RemoteAlreadyExistsError } from "./_worker_errors.ts";
 * const e = new RemoteAlreadyExistsError({ code: "EEXIST", message: "File exists", path: "/x", daemonId: "w" });
 * console.assert(e instanceof Deno.errors.AlreadyExists && e.code === "EEXIST");
 * ```
 */
export class RemoteAlreadyExistsError extends Deno.errors.AlreadyExists
  implements RemoteFileErrorFields {
  /** OS-style code. */
  readonly code: string;
  /** The path. */
  readonly path: string;
  /** The daemon. */
  readonly daemonId: string;
  /**
   * Make the error.
   *
   * @param init Code, message, path, daemon and cause.
   */
  constructor(init: Init) {
    super(describe(init), init.cause !== undefined ? { cause: init.cause } : undefined);
    this.name = "RemoteAlreadyExistsError";
    this.code = init.code;
    this.path = init.path;
    this.daemonId = init.daemonId;
  }
}

/**
 * The worker's OS refused access (`EACCES`, `EPERM`, `EROFS`). It is a `Deno.errors.PermissionDenied`. (A refusal
 * by the daemon's policy is a `PolicyError`, not this.)
 *
 * @example Test it like a local error
 * ```ts
 * import { RemotePermissionDeniedError } from "./_worker_errors.ts";
 * const e = new RemotePermissionDeniedError({ code: "EACCES", message: "denied", path: "/x", daemonId: "w" });
 * console.assert(e instanceof Deno.errors.PermissionDenied && e.code === "EACCES");
 * ```
 */
export class RemotePermissionDeniedError extends Deno.errors.PermissionDenied
  implements RemoteFileErrorFields {
  /** OS-style code. */
  readonly code: string;
  /** The path. */
  readonly path: string;
  /** The daemon. */
  readonly daemonId: string;
  /**
   * Make the error.
   *
   * @param init Code, message, path, daemon and cause.
   */
  constructor(init: Init) {
    super(describe(init), init.cause !== undefined ? { cause: init.cause } : undefined);
    this.name = "RemotePermissionDeniedError";
    this.code = init.code;
    this.path = init.path;
    this.daemonId = init.daemonId;
  }
}

/**
 * A path component on a worker is not a directory (`ENOTDIR`). It is a `Deno.errors.NotADirectory`.
 *
 * @example Test it like a local error
 * ```ts
 * import { RemoteNotADirectoryError } from "./_worker_errors.ts";
 * const e = new RemoteNotADirectoryError({ code: "ENOTDIR", message: "Not a directory", path: "/x", daemonId: "w" });
 * console.assert(e instanceof Deno.errors.NotADirectory);
 * ```
 */
export class RemoteNotADirectoryError extends Deno.errors.NotADirectory
  implements RemoteFileErrorFields {
  /** OS-style code. */
  readonly code: string;
  /** The path. */
  readonly path: string;
  /** The daemon. */
  readonly daemonId: string;
  /**
   * Make the error.
   *
   * @param init Code, message, path, daemon and cause.
   */
  constructor(init: Init) {
    super(describe(init), init.cause !== undefined ? { cause: init.cause } : undefined);
    this.name = "RemoteNotADirectoryError";
    this.code = init.code;
    this.path = init.path;
    this.daemonId = init.daemonId;
  }
}

/**
 * A path on a worker is a directory where a file was expected (`EISDIR`). It is a `Deno.errors.IsADirectory`.
 *
 * @example Test it like a local error
 * ```ts
 * import { RemoteIsADirectoryError } from "./_worker_errors.ts";
 * const e = new RemoteIsADirectoryError({ code: "EISDIR", message: "Is a directory", path: "/x", daemonId: "w" });
 * console.assert(e instanceof Deno.errors.IsADirectory);
 * ```
 */
export class RemoteIsADirectoryError extends Deno.errors.IsADirectory
  implements RemoteFileErrorFields {
  /** OS-style code. */
  readonly code: string;
  /** The path. */
  readonly path: string;
  /** The daemon. */
  readonly daemonId: string;
  /**
   * Make the error.
   *
   * @param init Code, message, path, daemon and cause.
   */
  constructor(init: Init) {
    super(describe(init), init.cause !== undefined ? { cause: init.cause } : undefined);
    this.name = "RemoteIsADirectoryError";
    this.code = init.code;
    this.path = init.path;
    this.daemonId = init.daemonId;
  }
}

/**
 * Too many symlinks on a worker path (`ELOOP`). It is a `Deno.errors.FilesystemLoop`.
 *
 * @example Test it like a local error
 * ```ts
 * import { RemoteFilesystemLoopError } from "./_worker_errors.ts";
 * const e = new RemoteFilesystemLoopError({ code: "ELOOP", message: "Loop", path: "/x", daemonId: "w" });
 * console.assert(e instanceof Deno.errors.FilesystemLoop);
 * ```
 */
export class RemoteFilesystemLoopError extends Deno.errors.FilesystemLoop
  implements RemoteFileErrorFields {
  /** OS-style code. */
  readonly code: string;
  /** The path. */
  readonly path: string;
  /** The daemon. */
  readonly daemonId: string;
  /**
   * Make the error.
   *
   * @param init Code, message, path, daemon and cause.
   */
  constructor(init: Init) {
    super(describe(init), init.cause !== undefined ? { cause: init.cause } : undefined);
    this.name = "RemoteFilesystemLoopError";
    this.code = init.code;
    this.path = init.path;
    this.daemonId = init.daemonId;
  }
}

/**
 * A path on a worker is busy (`EBUSY`). It is a `Deno.errors.Busy`.
 *
 * @example Test it like a local error
 * ```ts
 * import { RemoteBusyError } from "./_worker_errors.ts";
 * const e = new RemoteBusyError({ code: "EBUSY", message: "Busy", path: "/x", daemonId: "w" });
 * console.assert(e instanceof Deno.errors.Busy);
 * ```
 */
export class RemoteBusyError extends Deno.errors.Busy implements RemoteFileErrorFields {
  /** OS-style code. */
  readonly code: string;
  /** The path. */
  readonly path: string;
  /** The daemon. */
  readonly daemonId: string;
  /**
   * Make the error.
   *
   * @param init Code, message, path, daemon and cause.
   */
  constructor(init: Init) {
    super(describe(init), init.cause !== undefined ? { cause: init.cause } : undefined);
    this.name = "RemoteBusyError";
    this.code = init.code;
    this.path = init.path;
    this.daemonId = init.daemonId;
  }
}

type ErrorClass = new (init: Init) => Error;

const BY_CODE: Record<string, ErrorClass> = {
  ENOENT: RemoteNotFoundError,
  EEXIST: RemoteAlreadyExistsError,
  EACCES: RemotePermissionDeniedError,
  EPERM: RemotePermissionDeniedError,
  EROFS: RemotePermissionDeniedError,
  ENOTDIR: RemoteNotADirectoryError,
  EISDIR: RemoteIsADirectoryError,
  ELOOP: RemoteFilesystemLoopError,
  EBUSY: RemoteBusyError,
};

/**
 * @internal Turn what a controller call threw into the Deno-shaped error for its OS code: any error with a `code`
 * this module maps (a `FileError` from `Server`, or the remote client's equivalent). Anything else (policy
 * refusals, disconnects, timeouts, codes Deno has no class for such as `ENOTEMPTY`) is returned as it is.
 *
 * @param error What was thrown.
 * @param daemonId The daemon.
 * @param path The path of the operation (used when the error names none).
 * @returns The error to throw.
 */
export function denoFileError(error: unknown, daemonId: string, path: string): unknown {
  if (!(error instanceof Error)) return error;
  const code = (error as { code?: unknown }).code;
  if (typeof code !== "string") return error;
  const Class = BY_CODE[code];
  if (!Class) return error;
  const errorPath = (error as { path?: unknown }).path;
  return new Class({
    code,
    message: error.message,
    path: typeof errorPath === "string" && errorPath !== "" ? errorPath : path,
    daemonId,
    cause: error,
  });
}

/**
 * @internal Make the Deno-shaped error for an OS code found by the handle itself (e.g. a shell's redirection
 * failure), or a `FileError` with that code when Deno has no class for it.
 *
 * @param code OS-style code.
 * @param message What happened.
 * @param daemonId The daemon.
 * @param path The path.
 * @returns The error.
 */
export function fileErrorOf(code: string, message: string, daemonId: string, path: string): Error {
  const Class = BY_CODE[code];
  if (Class) return new Class({ code, message, path, daemonId });
  return new FileError(daemonId, { code, message, path });
}
