/**
 * The SandD wire protocol: message schemas and validators, the binary data frame, shared constants and errors.
 * Pure: nothing here does I/O. `protocol/SPEC.md` describes the same protocol in words, for implementations in
 * other languages. The tar codec of directory transfers is a separate entry point, `./tar/mod.ts`.
 *
 * @example Validate what a daemon sent
 * ```ts
 * import { parseDaemonMessage, parseResponseData } from "./mod.ts";
 * const message = parseDaemonMessage('{"t":"res","rid":1,"ok":true,"data":{"proc":"p-1","pid":42}}');
 * if (message.t === "res" && message.ok) {
 *   const { proc, pid } = parseResponseData("spawn", message.data);
 *   console.assert(proc === "p-1" && pid === 42);
 * }
 * ```
 *
 * @module
 */

export {
  type AckMessage,
  type ArgsCheck,
  type AttachArgs,
  type ConnectArgs,
  CONTROLLER_MESSAGE_SCHEMAS,
  CONTROLLER_MESSAGES,
  type ControllerMessage,
  DAEMON_MESSAGE_SCHEMAS,
  DAEMON_MESSAGES,
  type DaemonMessage,
  type DownloadArgs,
  type EofMessage,
  type ErrorMessage,
  type ExitMessage,
  type FsEventMessage,
  type GapMessage,
  type HelloMessage,
  type ListArgs,
  MAX_TEXT_FRAME_BYTES,
  type MessageOf,
  type MkdirArgs,
  type MoveArgs,
  type Operation,
  type OperationArgs,
  OPERATIONS,
  parseControllerMessage,
  parseDaemonMessage,
  type PathArgs,
  type PingMessage,
  type ProcessArgs,
  type RemoveArgs,
  REQUEST_ARGS,
  type RequestArgs,
  type RequestMessage,
  type ResetMessage,
  type ResizeArgs,
  type ResponseMessage,
  type SignalArgs,
  type SpawnArgs,
  type StreamResume,
  type UnwatchArgs,
  type UploadArgs,
  type WatchArgs,
  type WelcomeMessage,
} from "./messages.ts";
export { isOperation, REQUEST_SCHEMAS, STREAM_RESUME_SCHEMA } from "./requests.ts";
export {
  type AttachReply,
  checkExitCode,
  type ConnectReply,
  type DownloadReply,
  type EmptyReply,
  LIST_ENTRY_SCHEMA,
  type ListEntry,
  type ListReply,
  type OperationReplies,
  parseResponseData,
  PROCESS_INFO_FIELDS,
  PROCESS_INFO_SCHEMA,
  type ProcessesReply,
  type ProcessInfo,
  RESPONSE_DATA,
  RESPONSE_SCHEMAS,
  type ResponseData,
  type SpawnReply,
  type StatReply,
  type UploadReply,
  WIRE_ERROR_SCHEMA,
  type WireError,
} from "./replies.ts";
export {
  CLOSE_CODES,
  DAEMON_ID_PATTERN,
  DAEMON_ID_RULE,
  EXIT_SIGNALS,
  FATAL_CLOSE_CODES,
  HEARTBEAT_MISSES,
  isDaemonId,
  LOGIN_SHELL_COMMAND,
  MAX_ARG_LENGTH,
  MAX_ARGV_ITEMS,
  MAX_COMMAND_LENGTH,
  MAX_DAEMON_ID_LENGTH,
  MAX_ENV_VARS,
  MAX_ERROR_MESSAGE_LENGTH,
  MAX_EXIT_EOFS,
  MAX_FRAME_PAYLOAD_BYTES,
  MAX_HELLO_BYTES,
  MAX_LABEL_LENGTH,
  MAX_LABELS,
  MAX_PATH_LENGTH,
  MAX_PROCESS_ID_LENGTH,
  MAX_RETAIN_BYTES,
  MAX_TEXT_MESSAGE_LENGTH,
  MAX_WINDOW_BYTES,
  SIGNALS,
  stopsReconnecting,
  VERSION_MISMATCH_STATUS,
} from "./constants.ts";
export {
  type AnySchema,
  type ArraySchema,
  type BooleanSchema,
  type Check,
  compile,
  describeSchema,
  type Fields,
  type Infer,
  type InferFields,
  type IntSchema,
  type LiteralSchema,
  type NullableSchema,
  type ObjectSchema,
  type RecordSchema,
  type Schema,
  type Simplify,
  type StringSchema,
  type UnionSchema,
} from "./schema.ts";
export { type MessageContext, ProtocolError } from "./errors.ts";
export {
  allocateDataFrame,
  type DataFrame,
  decodeDataFrame,
  encodeDataFrame,
  FRAME_DATA,
  FRAME_HEADER_BYTES,
  MAX_OFFSET,
  MAX_STREAM_ID,
} from "./frame.ts";
export {
  PROTOCOL_REVISION,
  PROTOCOL_VERSION,
  protocolRevision,
  selectSubprotocol,
  SUBPROTOCOL,
  SUBPROTOCOL_REVISED,
  SUBPROTOCOLS,
  VERSION,
} from "./version.ts";
