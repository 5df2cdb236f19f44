/**
 * The exit codes of the `sandd` operator commands, and the mapping of errors to them.
 *
 * `sandd exec` exits with the remote command's own exit code (as `ssh` does); sandd's own failures use the
 * codes below, taken from BSD's `sysexits.h` so that they sit above what shells and most programs use. A
 * script that must tell "the remote command exited 69" from "the controller was unreachable" reads stderr
 * (every sandd failure is one line starting with `sandd:`) or uses `--json`.
 *
 * @module
 */

/**
 * Exit codes of the operator commands.
 *
 * @example Tell an unknown worker apart
 * ```ts
 * import { EXIT } from "./exit_codes.ts";
 * console.assert(EXIT.UNKNOWN_WORKER === 65);
 * ```
 */
export const EXIT = {
  /** Success. */
  OK: 0,
  /** The operation ran and failed: a worker refused or failed it, or `broadcast` had a failure. */
  FAILED: 1,
  /** Bad command line: unknown flag or command, missing argument, bad `WORKER:PATH`, bad value. */
  USAGE: 64,
  /** No connected worker has this id. */
  UNKNOWN_WORKER: 65,
  /** No such process on the worker, or no such file (remote or local). */
  NOT_FOUND: 66,
  /** The controller could not be reached (refused, DNS, TLS), or the worker disconnected during the call. */
  UNAVAILABLE: 69,
  /** An internal error of sandd, or an answer from the controller it did not understand. */
  INTERNAL: 70,
  /** A file could not be read or written (locally or on the worker), other than a missing one. */
  IO: 74,
  /** A request timed out or was rate limited: retrying later may work. */
  TEMPORARY: 75,
  /** Refused: no or a wrong API token (401), a missing scope (403), or the worker's policy. */
  NO_PERMISSION: 77,
  /** Bad configuration: unreadable or invalid config file, unknown profile, unreadable token file. */
  CONFIG: 78,
  /** `exec --timeout` expired and the remote command was killed (as `timeout(1)` exits). */
  TIMEOUT: 124,
} as const;

/** One of the values of {@linkcode EXIT}. */
export type ExitCode = typeof EXIT[keyof typeof EXIT];

/**
 * A failure of an operator command, carrying its exit code. Thrown by the commands, printed by the dispatcher
 * as `sandd: MESSAGE` on stderr.
 *
 * @example A usage error
 * ```ts
 * import { CliError, EXIT } from "./exit_codes.ts";
 * const error = new CliError(EXIT.USAGE, "Missing WORKER");
 * console.assert(error.exitCode === 64 && error.code === "USAGE");
 * ```
 */
export class CliError extends Error {
  /** The process exit code. */
  readonly exitCode: number;
  /** Stable code: the name of the exit code in {@linkcode EXIT}. */
  readonly code: string;
  /** Print the command's usage line after the message. */
  readonly showUsage: boolean;
  /**
   * @param exitCode The exit code.
   * @param message What went wrong, with the bad value.
   * @param options `cause`, and `showUsage` to print the usage hint.
   */
  constructor(
    exitCode: number,
    message: string,
    options: { cause?: unknown; showUsage?: boolean } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "CliError";
    this.exitCode = exitCode;
    this.code = Object.entries(EXIT).find(([, value]) => value === exitCode)?.[0] ?? "FAILED";
    this.showUsage = options.showUsage ?? false;
  }
}

/** A usage error (exit 64). */
export function usageError(message: string): CliError {
  return new CliError(EXIT.USAGE, message, { showUsage: true });
}

const NOT_FOUND_CODES = new Set(["UNKNOWN_PROCESS", "ENOENT", "NOT_FOUND", "PROCESS_EXITED"]);
const TEMPORARY_CODES = new Set([
  "TIMEOUT",
  "REQUEST_TIMEOUT",
  "COMMAND_TIMEOUT",
  "RATE_LIMITED",
  "EAGAIN",
  "BUSY",
]);
const PERMISSION_CODES = new Set([
  "UNAUTHORIZED",
  "UNAUTHENTICATED",
  "FORBIDDEN",
  "POLICY",
  "AUTH",
  "EPERM",
]);
const UNAVAILABLE_CODES = new Set([
  "DAEMON_DISCONNECTED",
  "UNREACHABLE",
  "CONTROLLER_UNREACHABLE",
  "CONNECTION_REFUSED",
  "ECONNREFUSED",
]);
const IO_CODES = new Set([
  "EACCES",
  "EISDIR",
  "ENOTDIR",
  "ENOSPC",
  "EEXIST",
  "ENOTEMPTY",
  "EFBIG",
  "EXDEV",
  "EIO",
  "EROFS",
  "ELOOP",
  "INTEGRITY",
  "TOO_LARGE",
]);

/** Every error in a cause chain, outermost first (bounded). */
function chain(error: unknown): unknown[] {
  const out: unknown[] = [];
  for (let e = error; e !== undefined && e !== null && out.length < 8;) {
    out.push(e);
    e = (e as { cause?: unknown }).cause;
  }
  return out;
}

/** Whether an error (or one of its causes) says the controller could not be reached. */
export function isUnreachable(error: unknown): boolean {
  return chain(error).some((e) =>
    e instanceof Deno.errors.ConnectionRefused || e instanceof Deno.errors.ConnectionReset ||
    e instanceof Deno.errors.ConnectionAborted || e instanceof Deno.errors.AddrNotAvailable ||
    e instanceof Deno.errors.NotConnected || e instanceof Deno.errors.TimedOut ||
    (e instanceof TypeError &&
      /error sending request|connection refused|dns error|failed to lookup|tcp connect|invalid peer certificate|certificate|client error \(Connect\)/i
        .test(e.message)) ||
    (typeof (e as { code?: unknown }).code === "string" &&
      UNAVAILABLE_CODES.has((e as { code: string }).code) &&
      (e as { code: string }).code !== "DAEMON_DISCONNECTED")
  );
}

/**
 * The exit code for an error thrown by a command: its own for a {@linkcode CliError}, else by the error's
 * stable `code` (the control API's codes), else {@linkcode EXIT.INTERNAL}.
 *
 * @example Map an API error
 * ```ts
 * import { EXIT, exitCodeOf } from "./exit_codes.ts";
 * const error = Object.assign(new Error("No daemon 'w'"), { code: "DAEMON_NOT_FOUND" });
 * console.assert(exitCodeOf(error) === EXIT.UNKNOWN_WORKER);
 * ```
 *
 * @param error What a command threw.
 * @returns The exit code.
 */
export function exitCodeOf(error: unknown): number {
  if (error instanceof CliError) return error.exitCode;
  for (const e of chain(error)) {
    const code = (e as { code?: unknown } | null)?.code;
    if (typeof code !== "string") continue;
    if (code === "DAEMON_NOT_FOUND") return EXIT.UNKNOWN_WORKER;
    if (code === "BAD_REQUEST" || code === "USAGE") return EXIT.USAGE;
    if (NOT_FOUND_CODES.has(code)) return EXIT.NOT_FOUND;
    if (PERMISSION_CODES.has(code)) return EXIT.NO_PERMISSION;
    if (TEMPORARY_CODES.has(code)) return EXIT.TEMPORARY;
    if (UNAVAILABLE_CODES.has(code)) return EXIT.UNAVAILABLE;
    if (IO_CODES.has(code) || code.startsWith("TAR_")) return EXIT.IO;
  }
  if (isUnreachable(error)) return EXIT.UNAVAILABLE;
  for (const e of chain(error)) {
    const status = (e as { status?: unknown } | null)?.status;
    if (status === 401 || status === 403) return EXIT.NO_PERMISSION;
    if (status === 404) return EXIT.NOT_FOUND;
    if (status === 503) return EXIT.UNAVAILABLE;
    if (status === 429 || status === 504) return EXIT.TEMPORARY;
    if (e instanceof Deno.errors.NotFound) return EXIT.NOT_FOUND;
    if (
      e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.AlreadyExists ||
      e instanceof Deno.errors.IsADirectory || e instanceof Deno.errors.NotADirectory ||
      e instanceof Deno.errors.WriteZero || e instanceof Deno.errors.UnexpectedEof
    ) return EXIT.IO;
  }
  if (chain(error).some((e) => e instanceof Error && "code" in e && "daemonId" in e)) {
    return EXIT.FAILED; // the worker refused or failed it with a code of its own
  }
  return EXIT.INTERNAL;
}
