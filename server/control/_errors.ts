// The control API's error answers: JSON `{ code, message }` with the stable codes of the TypeScript error classes
// (server/errors.ts) and the statuses of the contract.
import { fixedAnswer } from "../_http1_answer.ts";
import { AuthenticationError } from "../auth.ts";
import {
  ClusterUnavailableError,
  CommandTimeoutError,
  DaemonDisconnectedError,
  DaemonNotFoundError,
  FileError,
  PolicyError,
  ProcessExitedError,
  RemoteError,
  RequestTimeoutError,
  SignalNotAllowedError,
  UnknownProcessError,
} from "../errors.ts";
import { RateLimitedError } from "../rate_limiter.ts";

/** An error with an HTTP status and a stable code, thrown by handlers for bad input and refusals. */
export class HttpError extends Error {
  /** HTTP status. */
  readonly status: number;
  /** Stable code. */
  readonly code: string;
  /** Extra headers of the answer. */
  readonly headers: Record<string, string>;
  constructor(status: number, code: string, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

/** A 400 `BAD_REQUEST` naming the field. */
export function badRequest(message: string): HttpError {
  return new HttpError(400, "BAD_REQUEST", message);
}

/** File codes answered 404. */
const NOT_FOUND_FILE = new Set(["ENOENT", "ENOTDIR"]);
/** File codes answered 409 (the request conflicts with the state of the worker's file system). */
const CONFLICT_FILE = new Set(["EEXIST", "ENOTEMPTY", "EISDIR", "EBUSY", "EXDEV", "ELOOP"]);
/** File codes answered 403. */
const FORBIDDEN_FILE = new Set(["EACCES", "EPERM", "EROFS"]);

/** The status and code for an error thrown by the controller. */
export function statusOf(error: unknown): { status: number; code: string } {
  if (error instanceof HttpError) return { status: error.status, code: error.code };
  if (error instanceof DaemonNotFoundError) return { status: 404, code: error.code };
  if (error instanceof DaemonDisconnectedError) return { status: 503, code: error.code };
  if (error instanceof ClusterUnavailableError) return { status: 503, code: error.code };
  if (error instanceof CommandTimeoutError) return { status: 504, code: error.code };
  if (error instanceof RequestTimeoutError) return { status: 504, code: error.code };
  if (error instanceof RateLimitedError) return { status: 429, code: error.code };
  if (error instanceof AuthenticationError) return { status: 401, code: "UNAUTHORIZED" };
  if (error instanceof SignalNotAllowedError) return { status: 400, code: error.code };
  if (error instanceof UnknownProcessError) return { status: 404, code: error.code };
  if (error instanceof ProcessExitedError) return { status: 409, code: error.code };
  if (error instanceof PolicyError) return { status: 403, code: error.code };
  if (error instanceof FileError) {
    if (NOT_FOUND_FILE.has(error.code)) return { status: 404, code: error.code };
    if (CONFLICT_FILE.has(error.code)) return { status: 409, code: error.code };
    if (FORBIDDEN_FILE.has(error.code)) return { status: 403, code: error.code };
    if (error.code === "EFBIG") return { status: 413, code: error.code };
    if (error.code === "EINTEGRITY") return { status: 422, code: error.code };
    if (error.code === "EINVAL" || error.code === "ENAMETOOLONG" || error.code.startsWith("TAR_")) {
      return { status: 400, code: error.code };
    }
    return { status: 500, code: error.code };
  }
  if (error instanceof RemoteError) {
    if (error.code === "BAD_OFFSET" || error.code === "BAD_REQUEST") {
      return { status: 400, code: error.code };
    }
    if (error.code === "UNSUPPORTED") return { status: 501, code: error.code };
    if (error.code === "LIMIT" || error.code === "BUSY") return { status: 429, code: error.code };
    return { status: 502, code: error.code };
  }
  // Argument checks of the controller API (bad input the API's own validation let through).
  if (error instanceof TypeError || error instanceof RangeError) {
    return { status: 400, code: "BAD_REQUEST" };
  }
  return { status: 500, code: "INTERNAL" };
}

/** The JSON answer for an error. */
export function errorResponse(error: unknown): Response {
  const { status, code } = statusOf(error);
  const message = status === 500 && !(error instanceof RemoteError)
    ? "Internal error"
    : String((error as Error)?.message ?? error);
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (error instanceof HttpError) Object.assign(headers, error.headers);
  if (error instanceof RateLimitedError) {
    headers["retry-after"] = String(Math.max(1, Math.ceil(error.retryAfterMs / 1000)));
  }
  const body: Record<string, unknown> = { code, message };
  if (error instanceof CommandTimeoutError) body.partial = error.partial;
  if (error instanceof FileError && error.path !== undefined) body.path = error.path;
  // (client helper) A policy refusal carries its rule and path too, so the Client rebuilds the same PolicyError.
  if (error instanceof PolicyError) {
    body.rule = error.rule;
    if (error.path !== undefined) body.path = error.path;
  }
  return fixedAnswer(JSON.stringify(body), status, headers);
}
