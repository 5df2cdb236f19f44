/**
 * Replies: the `data` of a successful `res` for every operation. The `res` message names only its `rid`; the
 * controller knows which operation that request was, and checks `data` with {@linkcode parseResponseData} before
 * using it. Every reply type is inferred from its schema ({@linkcode RESPONSE_SCHEMAS}).
 *
 * @module
 */

import {
  CODE,
  COMMAND,
  COUNT,
  EPOCH_MS,
  EXIT_SIGNAL,
  FILE_TYPE,
  ISO_TIME,
  MESSAGE,
  MODE,
  OFFSET,
  PATH,
  PID,
  PROC,
  SHA256,
  WINDOW,
} from "./_atoms.ts";
import { MAX_PATH_LENGTH } from "./constants.ts";
import { ProtocolError } from "./errors.ts";
import type { Operation } from "./requests.ts";
import { SNAPSHOT_RESPONSE_SCHEMAS } from "./snapshots.ts";
import { type Check, compile, type Infer, type Schema } from "./schema.ts";

const compileUntyped = compile as (schema: Schema) => Check<unknown>;

const EXIT_CODE = { type: "int", min: 0, max: 255 } as const;

/** The fields that describe a process the daemon holds (`processes` items, and part of the `attach` reply). */
export const PROCESS_INFO_FIELDS = {
  /** The daemon's process id. */
  id: PROC,
  /** The OS process id on the worker (0 when no OS process started). */
  pid: PID,
  /** The command as spawned. */
  command: COMMAND,
  /** When it started. */
  startedAt: ISO_TIME,
  /** Whether it still runs. */
  state: { type: "literal", values: ["running", "exited"] },
  /** `null` while running; once exited, the exit code (128 + n when signal n ended it). */
  exitCode: { type: "nullable", of: EXIT_CODE },
  /** The signal that ended it, or null. */
  signal: EXIT_SIGNAL,
  /** Whether it runs on a pseudo-terminal. */
  pty: { type: "boolean" },
  /** Controller connections attached to it. */
  attached: COUNT,
} as const;

/** The optional fields of a process description. */
export const PROCESS_INFO_OPTIONAL = {
  /**
   * Processes of its group (a terminal's: its session) still alive after it exited, such as a background job
   * (`sleep 61 &`); left out when none. They count toward the daemon's process limit until they end.
   */
  lingering: COUNT,
} as const;

/** A process as the wire describes it (`processes` items). */
export const PROCESS_INFO_SCHEMA = {
  type: "object",
  required: PROCESS_INFO_FIELDS,
  optional: PROCESS_INFO_OPTIONAL,
} as const satisfies Schema;

/** One entry of a `list` reply. */
export const LIST_ENTRY_SCHEMA = {
  type: "object",
  required: {
    path: PATH,
    type: FILE_TYPE,
    size: OFFSET,
    mode: MODE,
    mtime: { type: "nullable", of: EPOCH_MS },
  },
  optional: { target: { type: "string", max: MAX_PATH_LENGTH } },
} as const satisfies Schema;

const EMPTY = { type: "object", required: {} } as const;

/**
 * The schema of the reply `data` of every operation.
 *
 * @example Read a reply's fields
 * ```ts
 * import { RESPONSE_SCHEMAS } from "./replies.ts";
 * console.assert("sha256" in RESPONSE_SCHEMAS.upload.required);
 * ```
 */
export const RESPONSE_SCHEMAS = {
  /** The new process: its daemon id and OS pid. */
  spawn: { type: "object", required: { proc: PROC, pid: PID } },
  /** The process, plus what a resuming controller needs. */
  attach: {
    type: "object",
    required: {
      ...PROCESS_INFO_FIELDS,
      /** Whether the daemon killed it for its timeout. */
      timedOut: { type: "boolean" },
      /** Stdin bytes the daemon has received: where a resumed writer continues. */
      stdinOffset: OFFSET,
      /** How many output streams the process has (2 for pipes, 1 for a terminal). */
      outputs: { type: "int", min: 0, max: 8 },
    },
    optional: PROCESS_INFO_OPTIONAL,
  },
  detach: EMPTY,
  signal: EMPTY,
  resize: EMPTY,
  /** Every process the daemon holds, running or recently exited. */
  processes: {
    type: "object",
    required: { processes: { type: "array", of: PROCESS_INFO_SCHEMA, max: 1_000_000 } },
  },
  /** Bytes written and their SHA-256; for a tar archive, what it held. */
  upload: {
    type: "object",
    required: { bytes: OFFSET, sha256: SHA256 },
    optional: { files: COUNT, directories: COUNT, symlinks: COUNT },
  },
  /** The source: `size` (null for a directory archive or a file of unknown size), `mode`, `mtime`. */
  download: {
    type: "object",
    required: {
      size: { type: "nullable", of: OFFSET },
      mode: MODE,
      mtime: { type: "nullable", of: EPOCH_MS },
    },
  },
  /** The path's kind, size, mode, mtime (ms since 1970), and owner (null where the OS has none). */
  stat: {
    type: "object",
    required: {
      type: FILE_TYPE,
      size: OFFSET,
      mode: MODE,
      mtime: { type: "nullable", of: EPOCH_MS },
      uid: { type: "nullable", of: COUNT },
      gid: { type: "nullable", of: COUNT },
    },
  },
  /** The entries, sorted, paths relative to the listed directory. */
  list: {
    type: "object",
    required: { entries: { type: "array", of: LIST_ENTRY_SCHEMA, max: 1_000_000 } },
  },
  mkdir: EMPTY,
  remove: EMPTY,
  move: EMPTY,
  watch: EMPTY,
  unwatch: EMPTY,
  // --- port forwarding ---
  /** The connection is open; `window` is the credit the controller may use on `input`. */
  connect: { type: "object", required: { window: WINDOW } },
  // --- workspace snapshots (protocol/snapshots.ts) ---
  ...SNAPSHOT_RESPONSE_SCHEMAS,
} as const satisfies { readonly [Op in Operation]: Schema };

/** The error half of a response: a stable `code`, a `message`, and `path` or `rule` where they apply. */
export const WIRE_ERROR_SCHEMA = {
  type: "object",
  required: { code: CODE, message: MESSAGE },
  optional: { path: { type: "string", max: MAX_PATH_LENGTH }, rule: { type: "string", max: 1024 } },
} as const satisfies Schema;

/** The reply data type of each operation. */
export type OperationReplies = {
  -readonly [Op in Operation]: Infer<typeof RESPONSE_SCHEMAS[Op]>;
};

/** The reply data type of an operation. */
export type ResponseData<Op extends Operation> = OperationReplies[Op];

/** A process as the wire describes it; `startedAt` is an ISO 8601 string. */
export type ProcessInfo = Infer<typeof PROCESS_INFO_SCHEMA>;
/** One entry of a `list` reply; `target` is set for symlinks. */
export type ListEntry = Infer<typeof LIST_ENTRY_SCHEMA>;
/** The error half of a response. */
export type WireError = Infer<typeof WIRE_ERROR_SCHEMA>;
/** Reply of `spawn`. */
export type SpawnReply = OperationReplies["spawn"];
/** Reply of `attach`. */
export type AttachReply = OperationReplies["attach"];
/** Reply of `processes`. */
export type ProcessesReply = OperationReplies["processes"];
/** Reply of `upload`. */
export type UploadReply = OperationReplies["upload"];
/** Reply of `download`. */
export type DownloadReply = OperationReplies["download"];
/** Reply of `stat`. */
export type StatReply = OperationReplies["stat"];
/** Reply of `list`. */
export type ListReply = OperationReplies["list"];
/** Reply of `connect`. */
export type ConnectReply = OperationReplies["connect"];
/** Reply of `detach`, `signal`, `resize`, `mkdir`, `remove`, `move`, `watch` and `unwatch`: `{}`. */
export type EmptyReply = OperationReplies["detach"];

interface ProcessState {
  state: "running" | "exited";
  exitCode: number | null;
  signal: string | null;
}

/**
 * The exit rule, shared by `exit` messages and process descriptions: `exitCode` is a number once the process has
 * exited (never null), and a process a signal ended reports that signal with `exitCode` 128 + its number.
 */
export function checkExitCode(exitCode: number, signal: string | null, path: string): void {
  if (signal !== null && exitCode <= 128) {
    throw new ProtocolError(
      `Field '${path}exitCode' must be 128 + the signal number when '${path}signal' is set, got ${exitCode} with ${signal}`,
    );
  }
}

function checkProcessState(info: ProcessState, path: string): void {
  const prefix = path ? `${path}.` : "";
  if ((info.state === "exited") !== (info.exitCode !== null)) {
    throw new ProtocolError(
      `Field '${prefix}exitCode' must be ${
        info.state === "exited" ? "a number for an exited process" : "null for a running process"
      }, got ${info.exitCode}`,
    );
  }
  if (info.signal !== null) {
    if (info.exitCode === null) {
      throw new ProtocolError(`Field '${prefix}signal' must be null for a running process`);
    }
    checkExitCode(info.exitCode, info.signal, prefix);
  }
}

function withRule<T>(check: Check<T>, rule: (value: T, path: string) => void): Check<T> {
  return (value, path) => {
    const out = check(value, path);
    rule(out, path);
    return out;
  };
}

const PROCESS_CHECKS: Partial<Record<Operation, Check<unknown>>> = {
  attach: withRule(compile(RESPONSE_SCHEMAS.attach), checkProcessState),
  processes: withRule(compile(RESPONSE_SCHEMAS.processes), (data, path) => {
    data.processes.forEach((p, i) => checkProcessState(p, `${path}.processes[${i}]`));
  }),
};

/**
 * The compiled reply validators of every operation (the exit rule included for process descriptions).
 *
 * @example Validate a spawn reply
 * ```ts
 * import { RESPONSE_DATA } from "./replies.ts";
 * console.assert(RESPONSE_DATA.spawn({ proc: "p-1", pid: 42 }, "data").pid === 42);
 * ```
 */
export const RESPONSE_DATA: { readonly [Op in Operation]: Check<OperationReplies[Op]> } = Object
  .fromEntries(
    Object.entries(RESPONSE_SCHEMAS).map((
      [op, schema],
    ) => [op, PROCESS_CHECKS[op as Operation] ?? compileUntyped(schema)]),
  ) as { readonly [Op in Operation]: Check<OperationReplies[Op]> };

/**
 * Validate the `data` of a successful response to an `op` request.
 *
 * @example Refuse a reply without a process id
 * ```ts
 * import { parseResponseData } from "./replies.ts";
 * try {
 *   parseResponseData("spawn", { pid: 42 });
 * } catch (error) {
 *   console.assert((error as Error).message.startsWith("Field 'data.proc' must be"));
 * }
 * ```
 *
 * @param op The operation of the request this answers.
 * @param data The `data` of the `res` message.
 * @returns The data, typed.
 * @throws {ProtocolError} Naming the field that was wrong (`data.proc`, `data.entries[3].mode`, ...).
 */
export function parseResponseData<Op extends Operation>(op: Op, data: unknown): ResponseData<Op> {
  const check = RESPONSE_DATA[op] as Check<ResponseData<Op>> | undefined;
  if (!check) throw new ProtocolError(`Unknown operation ${JSON.stringify(op)?.slice(0, 64)}`);
  return check(data, "data");
}
