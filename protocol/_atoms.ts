// Schemas of the small values many messages share (stream ids, offsets, paths, ...), written once.
import {
  DAEMON_ID_PATTERN,
  DAEMON_ID_RULE,
  EXIT_SIGNALS,
  MAX_ARG_LENGTH,
  MAX_ARGV_ITEMS,
  MAX_COMMAND_LENGTH,
  MAX_DAEMON_ID_LENGTH,
  MAX_ENV_VARS,
  MAX_ERROR_MESSAGE_LENGTH,
  MAX_PATH_LENGTH,
  MAX_PROCESS_ID_LENGTH,
  MAX_WINDOW_BYTES,
} from "./constants.ts";
import { MAX_OFFSET, MAX_STREAM_ID } from "./frame.ts";

/** A stream id, 1 to 2^32 - 1, chosen by the controller. */
export const SID = { type: "int", min: 1, max: MAX_STREAM_ID } as const;
/** A byte offset within a stream, 0 to 2^53 - 1. */
export const OFFSET = { type: "int", min: 0, max: MAX_OFFSET } as const;
/** A request id, 0 to 2^53 - 1, chosen by the controller. */
export const RID = { type: "int", min: 0, max: MAX_OFFSET } as const;
/** A flow-control window in bytes. */
export const WINDOW = { type: "int", min: 1, max: MAX_WINDOW_BYTES } as const;
/** A terminal dimension. */
export const DIMENSION = { type: "int", min: 1, max: 65535 } as const;
/** A path on the worker. */
export const PATH = { type: "string", min: 1, max: MAX_PATH_LENGTH } as const;
/** A process id of the daemon (`p-...`), not the OS pid. */
export const PROC = { type: "string", min: 1, max: MAX_PROCESS_ID_LENGTH } as const;
/** An OS process id (0 when no OS process was started, e.g. a program that was not found). */
export const PID = { type: "int", min: 0, max: Number.MAX_SAFE_INTEGER } as const;
/** A count. */
export const COUNT = { type: "int", min: 0, max: Number.MAX_SAFE_INTEGER } as const;
/** A file mode: permission bits plus setuid, setgid and sticky. */
export const MODE = { type: "int", min: 0, max: 0o7777 } as const;
/** Milliseconds since 1970 (may be negative). */
export const EPOCH_MS = { type: "int", min: -8.64e15, max: 8.64e15 } as const;
/** A SHA-256 digest in lowercase hex. */
export const SHA256 = {
  type: "string",
  min: 64,
  max: 64,
  pattern: /^[0-9a-f]{64}$/,
  rule: "64 lowercase hex digits",
} as const;
/** A download's transfer key, chosen by the controller, by which it resumes the download after a dropped link. */
export const TRANSFER_KEY = {
  type: "string",
  min: 16,
  max: 64,
  pattern: /^[A-Za-z0-9_-]{16,64}$/,
  rule: "16 to 64 letters, digits, '-' or '_'",
} as const;
/** A daemon id. */
export const DAEMON_ID = {
  type: "string",
  min: 1,
  max: MAX_DAEMON_ID_LENGTH,
  pattern: DAEMON_ID_PATTERN,
  rule: DAEMON_ID_RULE,
} as const;
/** A command: a string runs through the shell, an array runs the program directly. */
export const COMMAND = {
  type: "union",
  of: [
    { type: "string", min: 1, max: MAX_COMMAND_LENGTH },
    { type: "array", of: { type: "string", max: MAX_ARG_LENGTH }, min: 1, max: MAX_ARGV_ITEMS },
  ],
} as const;
/** Environment variables added to the daemon's. */
export const ENV = {
  type: "record",
  of: { type: "string", max: MAX_ARG_LENGTH },
  max: MAX_ENV_VARS,
  keyMax: MAX_ARG_LENGTH,
} as const;
/** The signal that ended a process, or null. */
export const EXIT_SIGNAL = {
  type: "nullable",
  of: { type: "literal", values: EXIT_SIGNALS },
} as const;
/** A human message naming what was wrong. */
export const MESSAGE = { type: "string", max: MAX_ERROR_MESSAGE_LENGTH } as const;
/** A stable error code. */
export const CODE = { type: "string", min: 1, max: 64 } as const;
/** An ISO 8601 UTC time as `Date.prototype.toISOString` writes it. */
export const ISO_TIME = {
  type: "string",
  max: 64,
  pattern: /^[+-]?\d{4,6}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/,
  rule: "an ISO 8601 UTC time (2026-12-01T16:00:00.000Z)",
} as const;
/** The kind of a file system entry. */
export const FILE_TYPE = {
  type: "literal",
  values: ["file", "directory", "symlink", "other"],
} as const;
