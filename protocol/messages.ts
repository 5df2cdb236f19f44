/**
 * Control messages: JSON text frames. Every message is an object with a type tag `t`. Both sides validate every
 * inbound message with {@linkcode parseDaemonMessage} or {@linkcode parseControllerMessage} before acting on it.
 * See `protocol/SPEC.md` for the full conversation.
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import { MAX_OFFSET, MAX_STREAM_ID } from "./frame.ts";
import { array, bool, type Check, int, literal, nullable, object, record, str } from "./_schema.ts";

/** Largest JSON text frame either side accepts, in bytes. */
export const MAX_TEXT_FRAME_BYTES: number = 4 * 1024 * 1024;

/** Signals a controller may send to a process. */
export const SIGNALS: readonly Deno.Signal[] = [
  "SIGTERM",
  "SIGKILL",
  "SIGINT",
  "SIGHUP",
  "SIGQUIT",
  "SIGUSR1",
  "SIGUSR2",
  "SIGSTOP",
  "SIGCONT",
  "SIGWINCH",
  "SIGALRM",
];

const sid = int(1, MAX_STREAM_ID);
const offset = int(0, MAX_OFFSET);
const rid = int(0, MAX_OFFSET);
const label = str(256);
const env = record(str(128 * 1024), 4096);
const commandString = str(256 * 1024, 1);
const commandArray = array(str(128 * 1024), 65536, 1);
// Dispatch on the type instead of trying one check and catching its error: this runs on every spawn.
const command: Check<string | string[]> = (value, path) =>
  typeof value === "string" ? commandString(value, path) : commandArray(value, path);
const window = int(1, 64 * 1024 * 1024);
const size = int(1, 65535);
const path = str(8192, 1);

/** How a stream resumes on attach: from a byte offset, or `null` for the oldest byte still retained. */
export interface StreamResume {
  /** Stream id the controller chose for this attachment. */
  sid: number;
  /** Offset to resume from; `null` means the oldest retained byte (no gap reported). */
  from: number | null;
}
const streamResume: Check<StreamResume> = object({ sid, from: nullable(offset) });

/** Arguments of `spawn`: start a process (or a terminal when `pty` is set) and bind its streams. */
export interface SpawnArgs {
  /** A string runs through the shell; an array runs the program directly. */
  command: string | string[];
  /** Stream id for standard output (or the terminal output). */
  stdout: number;
  /** Flow-control window in bytes for every stream of this request. */
  window: number;
  /** Environment variables added to the daemon's. */
  env?: Record<string, string>;
  /** Working directory. */
  cwd?: string;
  /** Kill the process group after this many milliseconds. */
  timeoutMs?: number;
  /** SIGTERM escalates to SIGKILL after this many milliseconds. */
  killGraceMs?: number;
  /** Run on a pseudo-terminal of this size. */
  pty?: { cols: number; rows: number };
  /** Stream id for standard error. */
  stderr?: number;
  /** Stream id for standard input; without it stdin is empty. */
  stdin?: number;
  /** Output bytes retained per stream for resume. */
  retainBytes?: number;
}

/** Arguments of `attach`: bind new streams to a process the daemon holds. */
export interface AttachArgs {
  /** Process id. */
  proc: string;
  /** Flow-control window. */
  window: number;
  /** Where standard output resumes. */
  stdout?: StreamResume;
  /** Where standard error resumes. */
  stderr?: StreamResume;
  /** Take over standard input on this stream id. */
  stdin?: number;
}

/** Arguments naming a process (`detach`). */
export interface ProcessArgs {
  /** Process id. */
  proc: string;
}

/** Arguments of `signal`. */
export interface SignalArgs extends ProcessArgs {
  /** The signal, one of {@linkcode SIGNALS}. */
  signal: Deno.Signal;
}

/** Arguments of `resize`. */
export interface ResizeArgs extends ProcessArgs {
  /** Columns, 1 to 65535. */
  cols: number;
  /** Rows, 1 to 65535. */
  rows: number;
}

/** Arguments of `upload`: the data follows on stream `sid`, then `eof` with its SHA-256. */
export interface UploadArgs {
  /** Destination path on the worker. */
  path: string;
  /** Stream id carrying the data. */
  sid: number;
  /** Flow-control window. */
  window: number;
  /** File mode. */
  mode?: number;
  /** Create missing parent directories. */
  mkdirs?: boolean;
  /** The data is a tar archive to unpack at `path`. */
  archive?: "tar";
  /** Expected size, when known. */
  size?: number;
}

/** Arguments of `download`. */
export interface DownloadArgs {
  /** Source path on the worker. */
  path: string;
  /** Stream id the daemon sends on. */
  sid: number;
  /** Flow-control window. */
  window: number;
  /** Start at this byte offset (resume). */
  from?: number;
  /** Send the directory at `path` as a tar archive. */
  archive?: "tar";
}

/** Arguments naming a path (`stat`). */
export interface PathArgs {
  /** Path on the worker. */
  path: string;
}

/** Arguments of `list`. */
export interface ListArgs extends PathArgs {
  /** Descend into directories. */
  recursive?: boolean;
}

/** Arguments of `mkdir`. */
export interface MkdirArgs extends PathArgs {
  /** Create parents. */
  recursive?: boolean;
  /** Directory mode. */
  mode?: number;
}

/** Arguments of `remove`. */
export interface RemoveArgs extends PathArgs {
  /** Remove a directory and its contents. */
  recursive?: boolean;
}

/** Arguments of `move`. */
export interface MoveArgs {
  /** Source path. */
  from: string;
  /** Destination path. */
  to: string;
}

/** Arguments of `watch`: events arrive as `fsevent` messages carrying `wid`. */
export interface WatchArgs extends PathArgs {
  /** Watch id chosen by the controller. */
  wid: number;
  /** Watch subdirectories too. */
  recursive?: boolean;
}

/** Arguments of `unwatch`. */
export interface UnwatchArgs {
  /** Watch id. */
  wid: number;
}

/** The argument type of each request operation. */
export interface OperationArgs {
  /** Start a process. */
  spawn: SpawnArgs;
  /** Attach to a process. */
  attach: AttachArgs;
  /** Detach from a process. */
  detach: ProcessArgs;
  /** Signal a process group. */
  signal: SignalArgs;
  /** Resize a terminal. */
  resize: ResizeArgs;
  /** List processes. */
  processes: Record<never, never>;
  /** Upload a file or tree. */
  upload: UploadArgs;
  /** Download a file or tree. */
  download: DownloadArgs;
  /** Stat a path. */
  stat: PathArgs;
  /** List a directory. */
  list: ListArgs;
  /** Make a directory. */
  mkdir: MkdirArgs;
  /** Remove a path. */
  remove: RemoveArgs;
  /** Move a path. */
  move: MoveArgs;
  /** Watch a path. */
  watch: WatchArgs;
  /** Stop watching. */
  unwatch: UnwatchArgs;
}

/** Names of request operations. */
export type Operation = keyof OperationArgs;

/** The argument type of an operation. */
export type RequestArgs<Op extends Operation> = OperationArgs[Op];

/** A validator: returns the value typed, or throws a `ProtocolError` naming the field. */
export type ArgsCheck<T> = (value: unknown, path: string) => T;

/** Argument validators of every request operation. */
export const REQUEST_ARGS: { readonly [Op in Operation]: ArgsCheck<OperationArgs[Op]> } = {
  spawn: object({ command, stdout: sid, window }, {
    env,
    cwd: path,
    timeoutMs: int(1, 2 ** 31),
    killGraceMs: int(0, 2 ** 31),
    pty: object({ cols: size, rows: size }),
    stderr: sid,
    stdin: sid,
    retainBytes: int(0, 1024 * 1024 * 1024),
  }),
  attach: object({ proc: str(128, 1), window }, {
    stdout: streamResume,
    stderr: streamResume,
    stdin: sid,
  }),
  detach: object({ proc: str(128, 1) }),
  signal: object({ proc: str(128, 1), signal: literal(...SIGNALS) }),
  resize: object({ proc: str(128, 1), cols: size, rows: size }),
  processes: object({}),
  upload: object({ path, sid, window }, {
    mode: int(0, 0o7777),
    mkdirs: bool,
    archive: literal("tar"),
    size: offset,
  }),
  download: object({ path, sid, window }, { from: offset, archive: literal("tar") }),
  stat: object({ path }),
  list: object({ path }, { recursive: bool }),
  mkdir: object({ path }, { recursive: bool, mode: int(0, 0o7777) }),
  remove: object({ path }, { recursive: bool }),
  move: object({ from: path, to: path }),
  watch: object({ path, wid: int(1, MAX_STREAM_ID) }, { recursive: bool }),
  unwatch: object({ wid: int(1, MAX_STREAM_ID) }),
};

/** A request from the controller: `{ t: "req", rid, op, args }`. Answered by exactly one {@linkcode ResponseMessage}. */
export interface RequestMessage<Op extends Operation = Operation> {
  /** Type tag. */
  t: "req";
  /** Request id, unique per connection, chosen by the controller. */
  rid: number;
  /** Operation. */
  op: Op;
  /** Arguments, validated against `REQUEST_ARGS[op]`. */
  args: RequestArgs<Op>;
}

/** The error half of a response. */
export interface WireError {
  /** Stable code (`UNKNOWN_PROCESS`, `ENOENT`, `POLICY`, ...). */
  code: string;
  /** Human message naming the value that was wrong. */
  message: string;
  /** Path for file errors. */
  path?: string;
  /** Rule for policy errors. */
  rule?: string;
}
const wireError: Check<WireError> = object({ code: str(64, 1), message: str(8192) }, {
  path: str(8192),
  rule: str(1024),
});

/** The response to a request: `ok: true` with `data`, or `ok: false` with `error`. */
export type ResponseMessage =
  | { t: "res"; rid: number; ok: true; data: Record<string, unknown> }
  | { t: "res"; rid: number; ok: false; error: WireError };

/** Sent by the daemon as its first message. */
export interface HelloMessage {
  /** Type tag. */
  t: "hello";
  /** Daemon id. */
  id: string;
  /** Labels, `key=value`. */
  labels: Record<string, string>;
  /** Host name. */
  hostname: string;
  /** `Deno.build.os`. */
  platform: string;
  /** `Deno.build.arch`. */
  arch: string;
  /** Daemon version. */
  version: string;
  /** Daemon process id. */
  pid: number;
  /** Processes still held by the daemon (after a reconnect). */
  processes: number;
  /** Random id of this daemon process, the same across its reconnects: tells a reconnect from a duplicate. */
  instance: string;
}

/** Sent by the controller in answer to `hello`. */
export interface WelcomeMessage {
  /** Type tag. */
  t: "welcome";
  /** Controller version. */
  version: string;
  /** The controller pings at this interval and expects traffic from the daemon at least as often. */
  heartbeatMs: number;
}

/** Liveness probe; answered by `pong`. Either side may send it. */
export interface PingMessage {
  /** Type tag. */
  t: "ping" | "pong";
}

/** The receiver consumed a stream up to `offset`; the sender may send up to `offset + window`. */
export interface AckMessage {
  /** Type tag. */
  t: "ack";
  /** Stream id. */
  sid: number;
  /** Consumed offset. */
  offset: number;
}

/** The sender's stream ends at `offset` (total bytes). `sha256` (hex) is set for file transfers. */
export interface EofMessage {
  /** Type tag. */
  t: "eof";
  /** Stream id. */
  sid: number;
  /** Final offset. */
  offset: number;
  /** SHA-256 of the whole stream, lowercase hex, for file transfers. */
  sha256?: string;
}

/** Bytes `[from, to)` of a stream were dropped from the daemon's retention window before anyone read them. */
export interface GapMessage {
  /** Type tag. */
  t: "gap";
  /** Stream id. */
  sid: number;
  /** First lost offset. */
  from: number;
  /** First offset after the loss. */
  to: number;
}

/** The receiver no longer wants this stream (consumer cancelled, or the process is gone). */
export interface ResetMessage {
  /** Type tag. */
  t: "reset";
  /** Stream id. */
  sid: number;
  /** Why. */
  reason: string;
}

/** A process ended. Sent to every connection attached to it. */
export interface ExitMessage {
  /** Type tag. */
  t: "exit";
  /** Process id (the daemon's, not the OS pid). */
  proc: string;
  /** Exit code; 128 + signal number when killed by a signal. */
  exitCode: number;
  /** The signal that ended it, if any. */
  signal: string | null;
  /** True when the daemon killed it for its timeout. */
  timedOut: boolean;
  /** Per output stream: whether output beyond the daemon's `maxOutputBytes` policy was dropped. */
  truncated?: boolean[];
}

/** A filesystem change from a `watch` request. */
export interface FsEventMessage {
  /** Type tag. */
  t: "fsevent";
  /** Watch id. */
  wid: number;
  /** Kind of change. */
  kind: string;
  /** Paths. */
  paths: string[];
}

/** An unsolicited error about a message that had no request id. */
export interface ErrorMessage {
  /** Type tag. */
  t: "error";
  /** Code (`PROTOCOL`). */
  code: string;
  /** What was wrong. */
  message: string;
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

/** Every message a controller may send. */
export type ControllerMessage =
  | WelcomeMessage
  | PingMessage
  | RequestMessage
  | AckMessage
  | EofMessage
  | ResetMessage
  | ErrorMessage;

const ping = object({ t: literal("ping", "pong") });
const ack = object({ t: literal("ack"), sid, offset });
const eof = object({ t: literal("eof"), sid, offset }, { sha256: str(64, 64) });
const reset = object({ t: literal("reset"), sid, reason: str(1024) });
const error = object({ t: literal("error"), code: str(64), message: str(8192) });

const daemonChecks: Record<string, Check<unknown>> = {
  hello: object({
    t: literal("hello"),
    id: str(128, 1),
    labels: record(label, 64),
    hostname: str(256),
    platform: str(64),
    arch: str(64),
    version: str(64),
    pid: int(),
    processes: int(),
    instance: str(64, 1),
  }),
  ping,
  pong: ping,
  res: (value, path) => {
    const ok = (value as { ok?: unknown }).ok;
    return ok === true
      ? object({ t: literal("res"), rid, ok: bool, data: record((v) => v, 64) })(value, path)
      : object({ t: literal("res"), rid, ok: bool, error: wireError })(value, path);
  },
  ack,
  eof,
  gap: object({ t: literal("gap"), sid, from: offset, to: offset }),
  reset,
  exit: object({
    t: literal("exit"),
    proc: str(128, 1),
    exitCode: int(0, 255),
    signal: nullable(str(32)),
    timedOut: bool,
  }, { truncated: array(bool, 8) }),
  fsevent: object({
    t: literal("fsevent"),
    wid: int(1, MAX_STREAM_ID),
    kind: str(32),
    paths: array(path, 1024),
  }),
  error,
};

const controllerChecks: Record<string, Check<unknown>> = {
  welcome: object({ t: literal("welcome"), version: str(64), heartbeatMs: int(100, 3_600_000) }),
  ping,
  pong: ping,
  req: (value, path) => {
    const op = (value as { op?: unknown }).op;
    if (typeof op !== "string" || !Object.hasOwn(REQUEST_ARGS, op)) {
      throw new ProtocolError(`Unknown operation ${JSON.stringify(op)?.slice(0, 64)}`);
    }
    return object({ t: literal("req"), rid, op: str(32), args: REQUEST_ARGS[op as Operation] })(
      value,
      path,
    );
  },
  ack,
  eof,
  reset,
  error,
};

function parse(text: string, checks: Record<string, Check<unknown>>, from: string): unknown {
  if (text.length > MAX_TEXT_FRAME_BYTES) {
    throw new ProtocolError(
      `Text frame of ${text.length} characters exceeds ${MAX_TEXT_FRAME_BYTES}`,
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
  return check(value, "");
}

/**
 * Parse and validate a text frame sent by a daemon.
 *
 * @example Parse a pong
 * ```ts
 * import { parseDaemonMessage } from "./messages.ts";
 * console.assert(parseDaemonMessage('{"t":"pong"}').t === "pong");
 * ```
 *
 * @param text The frame.
 * @returns The validated message.
 * @throws {ProtocolError} Naming what was wrong.
 */
export function parseDaemonMessage(text: string): DaemonMessage {
  return parse(text, daemonChecks, "daemon") as DaemonMessage;
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
  return parse(text, controllerChecks, "controller") as ControllerMessage;
}
