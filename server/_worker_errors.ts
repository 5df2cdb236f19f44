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

/** What a remote file error is made from. */
export interface RemoteFileErrorInit {
  /** OS-style code. */
  code: string;
  /** What happened (the path and daemon are added when it names neither). */
  message: string;
  /** The path the operation was about. */
  path: string;
  /** The daemon. */
  daemonId: string;
  /** The controller's error behind it. @default undefined */
  cause?: unknown;
}

/**
 * The class of one remote file error: `new` makes an instance of its Deno error class `E` that also carries
 * {@linkcode RemoteFileErrorFields}, so `instanceof` works against both the Deno class and this one.
 */
export interface RemoteFileErrorClass<E extends Error> {
  /** Make the error. */
  new (init: RemoteFileErrorInit): E & RemoteFileErrorFields;
  /** The prototype shared by its instances. */
  readonly prototype: E & RemoteFileErrorFields;
}

function describe(init: RemoteFileErrorInit): string {
  return init.message.includes(init.path)
    ? init.message
    : `${init.message}: '${init.path}' on '${init.daemonId}'`;
}

/** One class per Deno error class: they differ only in their base and name. */
function remoteFileError<E extends Error>(
  Base: new (message?: string, options?: ErrorOptions) => E,
  name: string,
): RemoteFileErrorClass<E> {
  const BaseError = Base as new (message?: string, options?: ErrorOptions) => Error;
  const Class = class extends BaseError implements RemoteFileErrorFields {
    readonly code: string;
    readonly path: string;
    readonly daemonId: string;
    constructor(init: RemoteFileErrorInit) {
      super(describe(init), init.cause !== undefined ? { cause: init.cause } : undefined);
      this.name = name;
      this.code = init.code;
      this.path = init.path;
      this.daemonId = init.daemonId;
    }
  };
  Object.defineProperty(Class, "name", { value: name });
  return Class as unknown as RemoteFileErrorClass<E>;
}

/**
 * A path on a worker does not exist (`ENOENT`). It is a `Deno.errors.NotFound`.
 *
 * @example Test it like a local error
 * ```ts
 * import { RemoteNotFoundError } from "./_worker_errors.ts";
 * const e = new RemoteNotFoundError({ code: "ENOENT", message: "No such file", path: "/x", daemonId: "w" });
 * console.assert(e instanceof Deno.errors.NotFound && e instanceof RemoteNotFoundError && e.code === "ENOENT");
 * ```
 */
export const RemoteNotFoundError: RemoteFileErrorClass<Deno.errors.NotFound> = remoteFileError(
  Deno.errors.NotFound,
  "RemoteNotFoundError",
);
/** An instance of {@linkcode RemoteNotFoundError}. */
export type RemoteNotFoundError = Deno.errors.NotFound & RemoteFileErrorFields;

/**
 * A path on a worker already exists (`EEXIST`). It is a `Deno.errors.AlreadyExists`.
 *
 * @example Test it like a local error
 * ```ts
 * import { RemoteAlreadyExistsError } from "./_worker_errors.ts";
 * const e = new RemoteAlreadyExistsError({ code: "EEXIST", message: "File exists", path: "/x", daemonId: "w" });
 * console.assert(e instanceof Deno.errors.AlreadyExists && e instanceof RemoteAlreadyExistsError && e.code === "EEXIST");
 * ```
 */
export const RemoteAlreadyExistsError: RemoteFileErrorClass<Deno.errors.AlreadyExists> =
  remoteFileError(
    Deno.errors.AlreadyExists,
    "RemoteAlreadyExistsError",
  );
/** An instance of {@linkcode RemoteAlreadyExistsError}. */
export type RemoteAlreadyExistsError = Deno.errors.AlreadyExists & RemoteFileErrorFields;

/**
 * The worker's OS refused access (`EACCES`, `EPERM`, `EROFS`). (A refusal by the daemon's
 * policy is a `PolicyError`, not this.) It is a `Deno.errors.PermissionDenied`.
 *
 * @example Test it like a local error
 * ```ts
 * import { RemotePermissionDeniedError } from "./_worker_errors.ts";
 * const e = new RemotePermissionDeniedError({ code: "EACCES", message: "Permission denied", path: "/x", daemonId: "w" });
 * console.assert(e instanceof Deno.errors.PermissionDenied && e instanceof RemotePermissionDeniedError && e.code === "EACCES");
 * ```
 */
export const RemotePermissionDeniedError: RemoteFileErrorClass<Deno.errors.PermissionDenied> =
  remoteFileError(
    Deno.errors.PermissionDenied,
    "RemotePermissionDeniedError",
  );
/** An instance of {@linkcode RemotePermissionDeniedError}. */
export type RemotePermissionDeniedError = Deno.errors.PermissionDenied & RemoteFileErrorFields;

/**
 * A path component on a worker is not a directory (`ENOTDIR`). It is a `Deno.errors.NotADirectory`.
 *
 * @example Test it like a local error
 * ```ts
 * import { RemoteNotADirectoryError } from "./_worker_errors.ts";
 * const e = new RemoteNotADirectoryError({ code: "ENOTDIR", message: "Not a directory", path: "/x", daemonId: "w" });
 * console.assert(e instanceof Deno.errors.NotADirectory && e instanceof RemoteNotADirectoryError && e.code === "ENOTDIR");
 * ```
 */
export const RemoteNotADirectoryError: RemoteFileErrorClass<Deno.errors.NotADirectory> =
  remoteFileError(
    Deno.errors.NotADirectory,
    "RemoteNotADirectoryError",
  );
/** An instance of {@linkcode RemoteNotADirectoryError}. */
export type RemoteNotADirectoryError = Deno.errors.NotADirectory & RemoteFileErrorFields;

/**
 * A path on a worker is a directory where a file was expected (`EISDIR`). It is a `Deno.errors.IsADirectory`.
 *
 * @example Test it like a local error
 * ```ts
 * import { RemoteIsADirectoryError } from "./_worker_errors.ts";
 * const e = new RemoteIsADirectoryError({ code: "EISDIR", message: "Is a directory", path: "/x", daemonId: "w" });
 * console.assert(e instanceof Deno.errors.IsADirectory && e instanceof RemoteIsADirectoryError && e.code === "EISDIR");
 * ```
 */
export const RemoteIsADirectoryError: RemoteFileErrorClass<Deno.errors.IsADirectory> =
  remoteFileError(
    Deno.errors.IsADirectory,
    "RemoteIsADirectoryError",
  );
/** An instance of {@linkcode RemoteIsADirectoryError}. */
export type RemoteIsADirectoryError = Deno.errors.IsADirectory & RemoteFileErrorFields;

/**
 * Too many symlinks on a worker path (`ELOOP`). It is a `Deno.errors.FilesystemLoop`.
 *
 * @example Test it like a local error
 * ```ts
 * import { RemoteFilesystemLoopError } from "./_worker_errors.ts";
 * const e = new RemoteFilesystemLoopError({ code: "ELOOP", message: "Too many levels of symbolic links", path: "/x", daemonId: "w" });
 * console.assert(e instanceof Deno.errors.FilesystemLoop && e instanceof RemoteFilesystemLoopError && e.code === "ELOOP");
 * ```
 */
export const RemoteFilesystemLoopError: RemoteFileErrorClass<Deno.errors.FilesystemLoop> =
  remoteFileError(
    Deno.errors.FilesystemLoop,
    "RemoteFilesystemLoopError",
  );
/** An instance of {@linkcode RemoteFilesystemLoopError}. */
export type RemoteFilesystemLoopError = Deno.errors.FilesystemLoop & RemoteFileErrorFields;

/**
 * A path on a worker is busy (`EBUSY`). It is a `Deno.errors.Busy`.
 *
 * @example Test it like a local error
 * ```ts
 * import { RemoteBusyError } from "./_worker_errors.ts";
 * const e = new RemoteBusyError({ code: "EBUSY", message: "Device or resource busy", path: "/x", daemonId: "w" });
 * console.assert(e instanceof Deno.errors.Busy && e instanceof RemoteBusyError && e.code === "EBUSY");
 * ```
 */
export const RemoteBusyError: RemoteFileErrorClass<Deno.errors.Busy> = remoteFileError(
  Deno.errors.Busy,
  "RemoteBusyError",
);
/** An instance of {@linkcode RemoteBusyError}. */
export type RemoteBusyError = Deno.errors.Busy & RemoteFileErrorFields;

type ErrorClass = new (init: RemoteFileErrorInit) => Error;

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
