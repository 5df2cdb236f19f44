/**
 * Control messages: JSON text frames. Every message is an object with a type tag `t`. Both sides validate every
 * inbound message with {@linkcode parseDaemonMessage} or {@linkcode parseControllerMessage} before acting on it;
 * the controller then validates a reply's `data` with `parseResponseData` (see `replies.ts`). Every message type
 * is inferred from its schema. See `protocol/SPEC.md` for the full conversation.
 *
 * @module
 */

import {
  CODE,
  DAEMON_ID,
  EXIT_SIGNAL,
  MESSAGE,
  OFFSET,
  PATH,
  PID,
  PROC,
  RID,
  SHA256,
  SID,
} from "./_atoms.ts";
import {
  MAX_ERROR_MESSAGE_LENGTH,
  MAX_EXIT_EOFS,
  MAX_LABEL_LENGTH,
  MAX_LABELS,
  MAX_TEXT_MESSAGE_LENGTH,
} from "./constants.ts";
import { type MessageContext, ProtocolError } from "./errors.ts";
import { checkExitCode, WIRE_ERROR_SCHEMA } from "./replies.ts";
import {
  isOperation,
  type Operation,
  REQUEST_ARGS,
  REQUEST_SCHEMAS,
  type RequestArgs,
} from "./requests.ts";
import { type Check, compile, type Infer, type Schema } from "./schema.ts";

export {
  type ArgsCheck,
  type AttachArgs,
  type ConnectArgs,
  type DownloadArgs,
  type ListArgs,
  type MkdirArgs,
  type MoveArgs,
  type Operation,
  type OperationArgs,
  type PathArgs,
  type ProcessArgs,
  type RemoveArgs,
  REQUEST_ARGS,
  type RequestArgs,
  type ResizeArgs,
  type SignalArgs,
  type SpawnArgs,
  type StreamResume,
  type UnwatchArgs,
  type UploadArgs,
  type WatchArgs,
} from "./requests.ts";
export type { WireError } from "./replies.ts";
export { SIGNALS } from "./constants.ts";

/**
 * Largest JSON text frame either side accepts, in characters (UTF-16 code units).
 *
 * @deprecated Use `MAX_TEXT_MESSAGE_LENGTH` from `constants.ts`; this is the same value.
 */
export const MAX_TEXT_FRAME_BYTES: number = MAX_TEXT_MESSAGE_LENGTH;

const PING = {
  type: "object",
  required: { t: { type: "literal", values: ["ping", "pong"] } },
} as const;
const ACK = {
  type: "object",
  required: { t: { type: "literal", values: ["ack"] }, sid: SID, offset: OFFSET },
} as const;
const EOF = {
  type: "object",
  required: { t: { type: "literal", values: ["eof"] }, sid: SID, offset: OFFSET },
  optional: { sha256: SHA256 },
} as const;
const RESET = {
  type: "object",
  required: {
    t: { type: "literal", values: ["reset"] },
    sid: SID,
    reason: { type: "string", max: MAX_ERROR_MESSAGE_LENGTH },
  },
} as const;
const ERROR = {
  type: "object",
  required: { t: { type: "literal", values: ["error"] }, code: CODE, message: MESSAGE },
} as const;

/**
 * The schema of every message a daemon sends, by type tag. `res` has two shapes, told apart by `ok`.
 *
 * @example Read a limit off a schema
 * ```ts
 * import { DAEMON_MESSAGE_SCHEMAS } from "./messages.ts";
 * console.assert(DAEMON_MESSAGE_SCHEMAS.exit.required.exitCode.max === 255);
 * ```
 */
export const DAEMON_MESSAGE_SCHEMAS = {
  /** The first message on every link. */
  hello: {
    type: "object",
    required: {
      t: { type: "literal", values: ["hello"] },
      /** Daemon id. */
      id: DAEMON_ID,
      /** Labels, `key=value`, reported to the controller. */
      labels: {
        type: "record",
        of: { type: "string", max: MAX_LABEL_LENGTH },
        max: MAX_LABELS,
        keyMax: MAX_LABEL_LENGTH,
      },
      /** Host name. */
      hostname: { type: "string", max: 256 },
      /** `linux`, `darwin`, `windows`, ... */
      platform: { type: "string", max: 64 },
      /** `x86_64`, `aarch64`, ... */
      arch: { type: "string", max: 64 },
      /** Daemon version. */
      version: { type: "string", max: 64 },
      /** Daemon OS process id. */
      pid: PID,
      /** How many processes the daemon holds (running or exit-retained) at this hello: a count, not a list. */
      processes: { type: "int", min: 0, max: Number.MAX_SAFE_INTEGER },
      /** Random id of this daemon process, the same across its reconnects. */
      instance: { type: "string", min: 1, max: 64 },
    },
  },
  ping: PING,
  pong: PING,
  /** A successful response; `data` is checked per operation by `parseResponseData`. */
  res: {
    type: "object",
    required: {
      t: { type: "literal", values: ["res"] },
      rid: RID,
      ok: { type: "literal", values: [true] },
      data: { type: "record", of: { type: "any" }, max: 64 },
    },
  },
  /** A failed response. */
  resError: {
    type: "object",
    required: {
      t: { type: "literal", values: ["res"] },
      rid: RID,
      ok: { type: "literal", values: [false] },
      error: WIRE_ERROR_SCHEMA,
    },
  },
  ack: ACK,
  eof: EOF,
  /** Bytes `[from, to)` of a stream left the daemon's retention before anyone read them. */
  gap: {
    type: "object",
    required: { t: { type: "literal", values: ["gap"] }, sid: SID, from: OFFSET, to: OFFSET },
  },
  reset: RESET,
  /** A process ended. */
  exit: {
    type: "object",
    required: {
      t: { type: "literal", values: ["exit"] },
      proc: PROC,
      /** Always a number: the exit code, or 128 + n when signal n ended the process. Never null. */
      exitCode: { type: "int", min: 0, max: 255 },
      signal: EXIT_SIGNAL,
      timedOut: { type: "boolean" },
    },
    optional: {
      truncated: { type: "array", of: { type: "boolean" }, max: 8 },
      /**
       * Revision 1 (`sandd.v1.1` links): the `eof` of streams of this process on this link, carried here instead of
       * in `eof` messages of their own. The receiver handles each as an `eof` that arrived just before the exit.
       */
      eofs: {
        type: "array",
        of: { type: "object", required: { sid: SID, offset: OFFSET } },
        min: 1,
        max: MAX_EXIT_EOFS,
      },
    },
  },
  /** A file system change under a watched path. */
  fsevent: {
    type: "object",
    required: {
      t: { type: "literal", values: ["fsevent"] },
      wid: SID,
      kind: { type: "string", max: 32 },
      paths: { type: "array", of: PATH, max: 1024 },
    },
  },
  error: ERROR,
} as const satisfies Record<string, Schema>;

/**
 * The schema of every message a controller sends, by type tag. A `req`'s `args` are checked against
 * `REQUEST_SCHEMAS[op]`.
 *
 * @example Read a limit off a schema
 * ```ts
 * import { CONTROLLER_MESSAGE_SCHEMAS } from "./messages.ts";
 * console.assert(CONTROLLER_MESSAGE_SCHEMAS.welcome.required.heartbeatMs.min === 100);
 * ```
 */
export const CONTROLLER_MESSAGE_SCHEMAS = {
  /** The answer to `hello`. */
  welcome: {
    type: "object",
    required: {
      t: { type: "literal", values: ["welcome"] },
      version: { type: "string", max: 64 },
      heartbeatMs: { type: "int", min: 100, max: 3_600_000 },
    },
  },
  ping: PING,
  pong: PING,
  /** A request; `args` as `REQUEST_SCHEMAS[op]`. */
  req: {
    type: "object",
    required: {
      t: { type: "literal", values: ["req"] },
      rid: RID,
      op: { type: "string", max: 32 },
      args: { type: "any" },
    },
  },
  ack: ACK,
  eof: EOF,
  reset: RESET,
  error: ERROR,
} as const satisfies Record<string, Schema>;

/** Sent by the daemon as its first message. */
export type HelloMessage = Infer<typeof DAEMON_MESSAGE_SCHEMAS["hello"]>;
/** Sent by the controller in answer to `hello`. */
export type WelcomeMessage = Infer<typeof CONTROLLER_MESSAGE_SCHEMAS["welcome"]>;
/** Liveness probe (`ping`) and its answer (`pong`). Either side may send a ping. */
export type PingMessage = Infer<typeof DAEMON_MESSAGE_SCHEMAS["ping"]>;
/** The receiver consumed a stream up to `offset`; the sender may send up to `offset + window`. */
export type AckMessage = Infer<typeof DAEMON_MESSAGE_SCHEMAS["ack"]>;
/** The sender's stream ends at `offset` (total bytes); `sha256` (hex) is set for file transfers. */
export type EofMessage = Infer<typeof DAEMON_MESSAGE_SCHEMAS["eof"]>;
/** Bytes `[from, to)` of a stream were dropped from the daemon's retention window before anyone read them. */
export type GapMessage = Infer<typeof DAEMON_MESSAGE_SCHEMAS["gap"]>;
/** The sender of this message no longer accepts or wants the stream. */
export type ResetMessage = Infer<typeof DAEMON_MESSAGE_SCHEMAS["reset"]>;
/** A process ended. Sent to every connection attached to it, and again on every later attach. */
export type ExitMessage = Infer<typeof DAEMON_MESSAGE_SCHEMAS["exit"]>;
/** A file system change from a `watch` request. */
export type FsEventMessage = Infer<typeof DAEMON_MESSAGE_SCHEMAS["fsevent"]>;
/** An unsolicited error about a message that had no request id. */
export type ErrorMessage = Infer<typeof DAEMON_MESSAGE_SCHEMAS["error"]>;
/**
 * The response to a request: `ok: true` with `data` (checked per operation with `parseResponseData`), or
 * `ok: false` with `error`.
 */
export type ResponseMessage =
  | Infer<typeof DAEMON_MESSAGE_SCHEMAS["res"]>
  | Infer<typeof DAEMON_MESSAGE_SCHEMAS["resError"]>;

/** A request from the controller: `{ t: "req", rid, op, args }`. Answered by exactly one {@linkcode ResponseMessage}. */
export interface RequestMessage<Op extends Operation = Operation> {
  /** Type tag. */
  t: "req";
  /** Request id, unique per connection, chosen by the controller. */
  rid: number;
  /** Operation. */
  op: Op;
  /** Arguments, validated against `REQUEST_SCHEMAS[op]`. */
  args: RequestArgs<Op>;
}

/** Every message a daemon may send. */
export type DaemonMessage =
  | HelloMessage
  | PingMessage
  | ResponseMessage
  | AckMessage
  | EofMessage
  | GapMessage
  | ResetMessage
  | ExitMessage
  | FsEventMessage
  | ErrorMessage;

/** The members of the message union `M` whose type tag can be `T`. */
export type MessageOf<M, T extends string> = M extends { t: infer U } ? T extends U ? M : never
  : never;

/** Every message a controller may send. */
export type ControllerMessage =
  | WelcomeMessage
  | PingMessage
  | RequestMessage
  | AckMessage
  | EofMessage
  | ResetMessage
  | ErrorMessage;

const resOk = compile(DAEMON_MESSAGE_SCHEMAS.res);
const resError = compile(DAEMON_MESSAGE_SCHEMAS.resError);
const exit = compile(DAEMON_MESSAGE_SCHEMAS.exit);
const gap = compile(DAEMON_MESSAGE_SCHEMAS.gap);

/**
 * The validator of every message a daemon may send, by type tag: each returns the message typed or throws a
 * `ProtocolError` naming the field. Beyond the schemas they enforce the exit rule (a signalled process reports
 * `exitCode` 128 + n) and that a gap is not empty.
 *
 * @example Validate a parsed message
 * ```ts
 * import { DAEMON_MESSAGES } from "./messages.ts";
 * console.assert(DAEMON_MESSAGES.ack({ t: "ack", sid: 1, offset: 5 }, "").offset === 5);
 * ```
 */
export const DAEMON_MESSAGES: {
  readonly [T in DaemonMessage["t"]]: Check<MessageOf<DaemonMessage, T>>;
} = {
  hello: compile(DAEMON_MESSAGE_SCHEMAS.hello),
  ping: compile(PING),
  pong: compile(PING),
  res: (value, path) =>
    (value as { ok?: unknown }).ok === true ? resOk(value, path) : resError(value, path),
  ack: compile(ACK),
  eof: compile(EOF),
  gap: (value, path) => {
    const message = gap(value, path);
    if (message.from >= message.to) {
      throw new ProtocolError(
        `Field 'to' must be greater than 'from' (${message.from}), got ${message.to}`,
      );
    }
    return message;
  },
  reset: compile(RESET),
  exit: (value, path) => {
    const message = exit(value, path);
    checkExitCode(message.exitCode, message.signal, "");
    return message;
  },
  fsevent: compile(DAEMON_MESSAGE_SCHEMAS.fsevent),
  error: compile(ERROR),
};

const request = compile(CONTROLLER_MESSAGE_SCHEMAS.req);

/**
 * The validator of every message a controller may send, by type tag; `req` checks `args` against the schema of
 * its `op`.
 *
 * @example Validate a parsed request
 * ```ts
 * import { CONTROLLER_MESSAGES } from "./messages.ts";
 * const message = CONTROLLER_MESSAGES.req({ t: "req", rid: 1, op: "processes", args: {} }, "");
 * console.assert(message.t === "req");
 * ```
 */
export const CONTROLLER_MESSAGES: {
  readonly [T in ControllerMessage["t"]]: Check<MessageOf<ControllerMessage, T>>;
} = {
  welcome: compile(CONTROLLER_MESSAGE_SCHEMAS.welcome),
  ping: compile(PING),
  pong: compile(PING),
  req: (value, path) => {
    const op = (value as { op?: unknown }).op;
    if (!isOperation(op)) {
      throw new ProtocolError(`Unknown operation ${JSON.stringify(op)?.slice(0, 64)}`);
    }
    const message = request(value, path);
    return { ...message, op, args: REQUEST_ARGS[op](message.args, "args") } as RequestMessage;
  },
  ack: compile(ACK),
  eof: compile(EOF),
  reset: compile(RESET),
  error: compile(ERROR),
};

/** What a message that failed validation was about, when its ids could be read. */
function contextOf(value: object): MessageContext {
  const raw = value as Record<string, unknown>;
  const context: MessageContext = {};
  if (typeof raw.t === "string") context.t = raw.t.slice(0, 32);
  for (const key of ["rid", "sid", "wid"] as const) {
    const id = raw[key];
    if (typeof id === "number" && Number.isSafeInteger(id) && id >= 0) context[key] = id;
  }
  if (typeof raw.proc === "string" && raw.proc.length > 0 && raw.proc.length <= 128) {
    context.proc = raw.proc;
  }
  return context;
}

function parse<M>(
  text: string,
  checks: { readonly [t: string]: Check<M> },
  from: string,
): M {
  if (text.length > MAX_TEXT_MESSAGE_LENGTH) {
    throw new ProtocolError(
      `Text frame of ${text.length} characters exceeds ${MAX_TEXT_MESSAGE_LENGTH}`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new ProtocolError("Text frame is not valid JSON", { cause });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError("Text frame must be a JSON object");
  }
  const t = (value as { t?: unknown }).t;
  const check = typeof t === "string" && Object.hasOwn(checks, t) ? checks[t] : undefined;
  if (!check) {
    throw new ProtocolError(`Unknown message type ${JSON.stringify(t)?.slice(0, 64)} from ${from}`);
  }
  try {
    return check(value, "");
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
    throw new ProtocolError(error.message, { about: contextOf(value) });
  }
}

/**
 * Parse and validate a text frame sent by a daemon. A failure carries, in `error.about`, the ids the message
 * named (`rid`, `sid`, `proc`, `wid`), so the controller can fail the call it belongs to.
 *
 * @example Parse a pong
 * ```ts
 * import { parseDaemonMessage } from "./messages.ts";
 * console.assert(parseDaemonMessage('{"t":"pong"}').t === "pong");
 * ```
 *
 * @example Learn which process a bad exit was about
 * ```ts
 * import { parseDaemonMessage } from "./messages.ts";
 * import { ProtocolError } from "./errors.ts";
 * try {
 *   parseDaemonMessage('{"t":"exit","proc":"p-1","exitCode":null,"signal":"SIGKILL","timedOut":false}');
 * } catch (error) {
 *   console.assert(error instanceof ProtocolError && error.about?.proc === "p-1");
 * }
 * ```
 *
 * @param text The frame.
 * @returns The validated message.
 * @throws {ProtocolError} Naming what was wrong.
 */
export function parseDaemonMessage(text: string): DaemonMessage {
  return parse<DaemonMessage>(text, DAEMON_MESSAGES, "daemon");
}

/**
 * Parse and validate a text frame sent by a controller, including the arguments of a request.
 *
 * @example Reject an unknown operation
 * ```ts
 * import { parseControllerMessage } from "./messages.ts";
 * try {
 *   parseControllerMessage('{"t":"req","rid":1,"op":"format-disk","args":{}}');
 * } catch (error) {
 *   console.assert((error as Error).message.includes("format-disk"));
 * }
 * ```
 *
 * @param text The frame.
 * @returns The validated message.
 * @throws {ProtocolError} Naming what was wrong.
 */
export function parseControllerMessage(text: string): ControllerMessage {
  return parse<ControllerMessage>(text, CONTROLLER_MESSAGES, "controller");
}

/** The schema names in {@linkcode REQUEST_SCHEMAS}, for tools that walk every operation. */
export const OPERATIONS: readonly Operation[] = Object.keys(REQUEST_SCHEMAS) as Operation[];
