/**
 * Requests: the operations a controller asks a daemon for, and the schema of each one's `args`. Every argument type
 * is inferred from its schema ({@linkcode REQUEST_SCHEMAS}); {@linkcode REQUEST_ARGS} holds the compiled validators
 * the daemon runs on every request.
 *
 * @module
 */

import {
  COMMAND,
  DIMENSION,
  ENV,
  MODE,
  OFFSET,
  PATH,
  PROC,
  SID,
  TRANSFER_KEY,
  WINDOW,
} from "./_atoms.ts";
import { MAX_RETAIN_BYTES, SIGNALS } from "./constants.ts";
import { SNAPSHOT_REQUEST_SCHEMAS } from "./snapshots.ts";
import { type Check, compile, type Infer, type Schema } from "./schema.ts";

const compileUntyped = compile as (schema: Schema) => Check<unknown>;

/** A TCP port. */
const PORT = { type: "int", min: 1, max: 65535 } as const;
/** A host name or address to connect to on the worker. */
const HOST = { type: "string", min: 1, max: 253 } as const;

/** How a stream resumes on attach: `sid` the new stream id, `from` a byte offset or `null` for the oldest byte. */
export const STREAM_RESUME_SCHEMA = {
  type: "object",
  required: { sid: SID, from: { type: "nullable", of: OFFSET } },
} as const satisfies Schema;

/**
 * The schema of the `args` of every operation. A field in `optional` may be left out; any field not listed is
 * refused.
 *
 * @example Read a limit off a schema
 * ```ts
 * import { REQUEST_SCHEMAS } from "./requests.ts";
 * console.assert(REQUEST_SCHEMAS.resize.required.cols.max === 65535);
 * ```
 */
export const REQUEST_SCHEMAS = {
  /** Start a process (or a terminal when `pty` is set) and bind its streams. */
  spawn: {
    type: "object",
    required: { command: COMMAND, stdout: SID, window: WINDOW },
    optional: {
      env: ENV,
      cwd: PATH,
      timeoutMs: { type: "int", min: 1, max: 2 ** 31 },
      pty: { type: "object", required: { cols: DIMENSION, rows: DIMENSION } },
      stderr: SID,
      stdin: SID,
      retainBytes: { type: "int", min: 0, max: MAX_RETAIN_BYTES },
    },
  },
  /** Bind new streams to a process the daemon holds. */
  attach: {
    type: "object",
    required: { proc: PROC, window: WINDOW },
    optional: { stdout: STREAM_RESUME_SCHEMA, stderr: STREAM_RESUME_SCHEMA, stdin: SID },
  },
  /** Stop following a process. */
  detach: { type: "object", required: { proc: PROC } },
  /** Signal a process group. */
  signal: {
    type: "object",
    required: { proc: PROC, signal: { type: "literal", values: SIGNALS } },
  },
  /** Resize a terminal. */
  resize: { type: "object", required: { proc: PROC, cols: DIMENSION, rows: DIMENSION } },
  /** List the processes the daemon holds. */
  processes: { type: "object", required: {} },
  /** Upload a file (or a tar archive to unpack) on stream `sid`. */
  upload: {
    type: "object",
    required: { path: PATH, sid: SID, window: WINDOW },
    optional: {
      mode: MODE,
      mkdirs: { type: "boolean" },
      archive: { type: "literal", values: ["tar"] },
      size: OFFSET,
      transfer: TRANSFER_KEY,
      resume: { type: "boolean" },
    },
  },
  /** Download a file (or a directory as a tar archive) on stream `sid`. */
  download: {
    type: "object",
    required: { path: PATH, sid: SID, window: WINDOW },
    optional: {
      from: OFFSET,
      archive: { type: "literal", values: ["tar"] },
      transfer: TRANSFER_KEY,
      resume: { type: "boolean" },
    },
  },
  /** Describe a path. */
  stat: { type: "object", required: { path: PATH } },
  /** List a directory. */
  list: { type: "object", required: { path: PATH }, optional: { recursive: { type: "boolean" } } },
  /** Make a directory. */
  mkdir: {
    type: "object",
    required: { path: PATH },
    optional: { recursive: { type: "boolean" }, mode: MODE },
  },
  /** Remove a path. */
  remove: {
    type: "object",
    required: { path: PATH },
    optional: { recursive: { type: "boolean" } },
  },
  /** Rename a path. */
  move: { type: "object", required: { from: PATH, to: PATH } },
  /** Watch a path; events arrive as `fsevent` messages carrying `wid`. */
  watch: {
    type: "object",
    required: { path: PATH, wid: SID },
    optional: { recursive: { type: "boolean" } },
  },
  /** Stop watching. */
  unwatch: { type: "object", required: { wid: SID } },
  // --- port forwarding (TCP tunnels): one request per tunnelled TCP connection ---
  /**
   * Open a TCP connection on the worker to `host:port` (the daemon's policy decides which) and carry its bytes:
   * the daemon sends what the worker's server writes on `sid`, the controller sends what its client writes on
   * `input`; `eof` on either is a half-close, `reset` aborts the connection.
   */
  connect: {
    type: "object",
    required: { port: PORT, sid: SID, input: SID, window: WINDOW },
    optional: { host: HOST },
  },
  // --- workspace snapshots (protocol/snapshots.ts) ---
  ...SNAPSHOT_REQUEST_SCHEMAS,
} as const satisfies Record<string, Schema>;

/** The argument type of each request operation. */
export type OperationArgs = {
  -readonly [Op in keyof typeof REQUEST_SCHEMAS]: Infer<typeof REQUEST_SCHEMAS[Op]>;
};

/** Names of request operations. */
export type Operation = keyof OperationArgs;

/** The argument type of an operation. */
export type RequestArgs<Op extends Operation> = OperationArgs[Op];

/** How a stream resumes on attach: from a byte offset, or `null` for the oldest byte still retained. */
export type StreamResume = Infer<typeof STREAM_RESUME_SCHEMA>;
/**
 * Arguments of `spawn`: `command` (a string runs through the shell, an array runs the program), `stdout` (and
 * optional `stderr`, `stdin`) stream ids, the flow-control `window`, and optional `env`, `cwd`, `timeoutMs`,
 * `pty` size and `retainBytes`.
 */
export type SpawnArgs = OperationArgs["spawn"];
/** Arguments of `attach`: the process, the window, and where each stream resumes. */
export type AttachArgs = OperationArgs["attach"];
/** Arguments naming a process (`detach`). */
export type ProcessArgs = OperationArgs["detach"];
/** Arguments of `signal`. */
export type SignalArgs = OperationArgs["signal"];
/** Arguments of `resize`. */
export type ResizeArgs = OperationArgs["resize"];
/** Arguments of `upload`: the data follows on stream `sid`, then `eof` with its SHA-256. */
export type UploadArgs = OperationArgs["upload"];
/** Arguments of `download`. */
export type DownloadArgs = OperationArgs["download"];
/** Arguments naming a path (`stat`). */
export type PathArgs = OperationArgs["stat"];
/** Arguments of `list`. */
export type ListArgs = OperationArgs["list"];
/** Arguments of `mkdir`. */
export type MkdirArgs = OperationArgs["mkdir"];
/** Arguments of `remove`. */
export type RemoveArgs = OperationArgs["remove"];
/** Arguments of `move`. */
export type MoveArgs = OperationArgs["move"];
/** Arguments of `watch`. */
export type WatchArgs = OperationArgs["watch"];
/** Arguments of `unwatch`. */
export type UnwatchArgs = OperationArgs["unwatch"];
/** Arguments of `connect`: a tunnelled TCP connection to `host` (default `127.0.0.1`) `:port` on the worker. */
export type ConnectArgs = OperationArgs["connect"];

/** A validator: returns the value typed, or throws a `ProtocolError` naming the field. */
export type ArgsCheck<T> = Check<T>;

/**
 * The compiled argument validators of every request operation.
 *
 * @example Validate spawn arguments
 * ```ts
 * import { REQUEST_ARGS } from "./requests.ts";
 * const args = REQUEST_ARGS.spawn({ command: ["ls"], stdout: 1, window: 65536 }, "args");
 * console.assert(Array.isArray(args.command));
 * ```
 */
export const REQUEST_ARGS: { readonly [Op in Operation]: Check<OperationArgs[Op]> } = Object
  .fromEntries(
    Object.entries(REQUEST_SCHEMAS).map(([op, schema]) => [op, compileUntyped(schema)]),
  ) as { readonly [Op in Operation]: Check<OperationArgs[Op]> };

/**
 * Whether `op` names a request operation.
 *
 * @example Check an operation name
 * ```ts
 * import { isOperation } from "./requests.ts";
 * console.assert(isOperation("spawn") && !isOperation("format-disk") && !isOperation("toString"));
 * ```
 *
 * @param op Anything.
 * @returns True for a key of {@linkcode REQUEST_SCHEMAS}.
 */
export function isOperation(op: unknown): op is Operation {
  return typeof op === "string" && Object.hasOwn(REQUEST_SCHEMAS, op);
}
