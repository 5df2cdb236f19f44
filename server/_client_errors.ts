// The control API's JSON errors (`{ code, message }` plus optional detail fields) turned back into the error
// classes the embedded controller throws, so `instanceof DaemonNotFoundError` and friends work on both.
import { SIGNALS } from "@sandd/protocol/constants";
import { ProtocolError } from "@sandd/protocol/errors";
import { AuthenticationError } from "./auth.ts";
import {
  CommandTimeoutError,
  DaemonDisconnectedError,
  DaemonNotFoundError,
  remoteError,
  RequestTimeoutError,
  SignalNotAllowedError,
} from "./errors.ts";
import { RateLimitedError } from "./rate_limiter.ts";

/**
 * A control API failure that has no class of its own in the embedded controller: a missing scope (`FORBIDDEN`),
 * an unknown route (`NOT_FOUND`), a request the API refused (`TOO_LARGE`, `STDIN_CLOSED`, `NOT_IMPLEMENTED`), a controller
 * that cannot be reached (`UNREACHABLE`) or did not answer in time (`TIMEOUT`), a malformed answer
 * (`BAD_RESPONSE`), or an operation the API does not offer (`UNSUPPORTED`).
 *
 * @example Tell a missing scope apart
 * ```ts
 * import { ControlApiError } from "./_client_errors.ts";
 * const error = new ControlApiError("FORBIDDEN", "Token lacks the 'exec' scope", 403);
 * console.assert(error.code === "FORBIDDEN" && error.status === 403);
 * ```
 */
export class ControlApiError extends Error {
  /** Stable code, as the API sent it or one of the client's own listed above. */
  readonly code: string;
  /** The HTTP status, or 0 when no answer arrived. */
  readonly status: number;
  /**
   * Make the error.
   *
   * @param code Stable code.
   * @param message What went wrong.
   * @param status The HTTP status (0 when there was none).
   * @param options Standard error options (`cause`).
   */
  constructor(code: string, message: string, status = 0, options?: ErrorOptions) {
    super(message, options);
    this.name = "ControlApiError";
    this.code = code;
    this.status = status;
  }
}

/** What a call knew when the API answered with an error: the daemon, the path, the timeout it asked for. */
export interface ErrorContext {
  /** The daemon the call addressed. */
  daemonId?: string;
  /** The file path the call was about (file errors carry it). */
  path?: string;
  /** The command timeout the call asked for (a `COMMAND_TIMEOUT` without `timeoutMs` reports it). */
  timeoutMs?: number;
  /** The operation, for `REQUEST_TIMEOUT`s without one. */
  operation?: string;
}

function str(value: unknown, fallback: string): string {
  return typeof value === "string" ? value : fallback;
}

function num(value: unknown, fallback: number): number {
  return typeof value === "number" && Number.isFinite(value) ? value : fallback;
}

/**
 * Map an API error body to the most specific error class.
 *
 * @param status The HTTP status.
 * @param body The parsed JSON body (anything; a body without a string `code` becomes a generic error).
 * @param context What the call knew.
 * @param headers The answer's headers (`Retry-After` for 429).
 * @returns The error to throw.
 */
export function apiError(
  status: number,
  body: unknown,
  context: ErrorContext = {},
  headers?: Headers,
): Error {
  const b = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  const code = typeof b.code === "string" ? b.code : `HTTP_${status}`;
  const message = str(b.message, `The control API answered ${status} without an error body`);
  const daemonId = str(b.daemonId, context.daemonId ?? "");
  switch (code) {
    case "DAEMON_NOT_FOUND":
      return new DaemonNotFoundError(daemonId, message);
    case "DAEMON_DISCONNECTED":
      return new DaemonDisconnectedError(daemonId, message);
    case "COMMAND_TIMEOUT": {
      const partial =
        (typeof b.partial === "object" && b.partial !== null ? b.partial : {}) as Record<
          string,
          unknown
        >;
      return new CommandTimeoutError(num(b.timeoutMs, context.timeoutMs ?? 0), {
        stdout: str(partial.stdout, ""),
        stderr: str(partial.stderr, ""),
        durationMs: num(partial.durationMs, 0),
      });
    }
    case "REQUEST_TIMEOUT":
      return new RequestTimeoutError(
        daemonId,
        str(b.operation, context.operation ?? "request"),
        num(b.timeoutMs, 0),
      );
    case "UNAUTHORIZED":
    case "UNAUTHENTICATED":
      return new AuthenticationError(message);
    case "RATE_LIMITED": {
      const retryAfter = Number(headers?.get("retry-after"));
      return new RateLimitedError(
        num(b.retryAfterMs, Number.isFinite(retryAfter) ? retryAfter * 1000 : 1000),
        str(b.scope, "api"),
      );
    }
    case "SIGNAL_NOT_ALLOWED":
      return new SignalNotAllowedError(str(b.signal, "?"), SIGNALS);
    case "PROTOCOL":
      return new ProtocolError(message);
    case "BAD_REQUEST":
      return new TypeError(message);
    case "FORBIDDEN":
    case "NOT_FOUND":
    case "TOO_LARGE":
    case "CONFLICT":
    case "TIMEOUT":
    case "NOT_IMPLEMENTED":
    case "STDIN_CLOSED":
    case "STDIN_UNAVAILABLE":
    case "INTERNAL":
    case "SHUTTING_DOWN":
    case "METHOD_NOT_ALLOWED":
    case "UNSUPPORTED_MEDIA_TYPE":
      return new ControlApiError(code, message, status);
  }
  if (code.startsWith("HTTP_") || (!context.daemonId && typeof b.daemonId !== "string")) {
    return new ControlApiError(code, message, status);
  }
  const path = typeof b.path === "string" ? b.path : context.path;
  return remoteError(daemonId, {
    code,
    message,
    ...(path !== undefined ? { path } : {}),
    ...(typeof b.rule === "string" ? { rule: b.rule } : {}),
  });
}
