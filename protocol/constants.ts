/**
 * Constants both sides of the wire share: the daemon-id rule, the signals a controller may send, size limits,
 * WebSocket close codes, and the command that asks for a login shell. `protocol/SPEC.md` states each of them;
 * the validators in `messages.ts` enforce them.
 *
 * @module
 */

/**
 * What a daemon id looks like: 1 to 128 of `A-Z a-z 0-9 . _ : @ -`.
 *
 * @example Check an id
 * ```ts
 * import { DAEMON_ID_PATTERN } from "./constants.ts";
 * console.assert(DAEMON_ID_PATTERN.test("worker-1"));
 * console.assert(!DAEMON_ID_PATTERN.test("no spaces"));
 * ```
 */
export const DAEMON_ID_PATTERN: RegExp = /^[A-Za-z0-9._:@-]{1,128}$/;

/** Longest daemon id, in characters. */
export const MAX_DAEMON_ID_LENGTH = 128;

/**
 * The rule of {@linkcode DAEMON_ID_PATTERN} in words, for error messages:
 * `Daemon id must be ${DAEMON_ID_RULE}, got '...'`.
 */
export const DAEMON_ID_RULE = "1-128 of A-Z a-z 0-9 . _ : @ -";

/**
 * Whether `value` is a valid daemon id.
 *
 * @example Validate before connecting
 * ```ts
 * import { isDaemonId } from "./constants.ts";
 * console.assert(isDaemonId("host.example:1") && !isDaemonId(""));
 * ```
 *
 * @param value Anything.
 * @returns True for a string matching {@linkcode DAEMON_ID_PATTERN}.
 */
export function isDaemonId(value: unknown): value is string {
  return typeof value === "string" && DAEMON_ID_PATTERN.test(value);
}

/**
 * Signals a controller may send to a process (`signal` request). The daemon delivers them to the process group.
 *
 * @example Check a signal
 * ```ts
 * import { SIGNALS } from "./constants.ts";
 * console.assert(SIGNALS.includes("SIGTERM") && !SIGNALS.includes("SIGSEGV"));
 * ```
 */
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

/**
 * Every signal name an `exit` message may report (the names Deno knows). A daemon that cannot name the signal
 * that ended a process reports `signal: null` and still `exitCode` 128 + its number.
 */
export const EXIT_SIGNALS: readonly Deno.Signal[] = [
  "SIGABRT",
  "SIGALRM",
  "SIGBREAK",
  "SIGBUS",
  "SIGCHLD",
  "SIGCONT",
  "SIGEMT",
  "SIGFPE",
  "SIGHUP",
  "SIGILL",
  "SIGINFO",
  "SIGINT",
  "SIGIO",
  "SIGPOLL",
  "SIGUNUSED",
  "SIGKILL",
  "SIGPIPE",
  "SIGPROF",
  "SIGPWR",
  "SIGQUIT",
  "SIGSEGV",
  "SIGSTKFLT",
  "SIGSTOP",
  "SIGSYS",
  "SIGTERM",
  "SIGTRAP",
  "SIGTSTP",
  "SIGTTIN",
  "SIGTTOU",
  "SIGURG",
  "SIGUSR1",
  "SIGUSR2",
  "SIGVTALRM",
  "SIGWINCH",
  "SIGXCPU",
  "SIGXFSZ",
];

/**
 * The `command` of a `spawn` request (with `pty`) that asks the daemon for the worker's login shell instead of a
 * program: `$SHELL -l` when `SHELL` is an absolute path to an executable, else `bash -l`, else `sh -l` found in
 * `PATH` (on Windows `%COMSPEC%`, else `cmd.exe`). It starts with a NUL character, so no real command can be
 * mistaken for it.
 *
 * @example Ask for a login shell
 * ```ts
 * import { LOGIN_SHELL_COMMAND } from "./constants.ts";
 * const args = { command: LOGIN_SHELL_COMMAND, stdout: 1, window: 65536, pty: { cols: 80, rows: 24 } };
 * console.assert(args.command.startsWith("\0"));
 * ```
 */
export const LOGIN_SHELL_COMMAND = "\0login-shell";

// --- size limits ---

/**
 * Largest JSON text message either side accepts, counted in UTF-16 code units (JavaScript string length), which
 * is at most its size in UTF-8 bytes. Bigger text is refused as a protocol error.
 */
export const MAX_TEXT_MESSAGE_LENGTH: number = 4 * 1024 * 1024;

/**
 * Most stream ends one `exit` carries in its `eofs` (protocol revision 1); a daemon with more streams of the process
 * on the link sends the others as `eof` messages.
 */
export const MAX_EXIT_EOFS: number = 16;

/** Largest first (`hello`) message a controller accepts from a connection, in bytes; bigger closes with 1009. */
export const MAX_HELLO_BYTES: number = 64 * 1024;

/**
 * Largest payload a sender puts in one binary data frame, in bytes. Receivers accept frames up to their message
 * limit (the controller's `maxMessageBytes`, 8 MiB by default; the daemon's 64 MiB), and charge the payload to
 * the stream's credit. The reference daemon sends process output in frames of up to this size.
 */
export const MAX_FRAME_PAYLOAD_BYTES: number = 256 * 1024;

/** Longest path in any request or reply, in characters. */
export const MAX_PATH_LENGTH: number = 8192;

/** Longest shell command string (`spawn` with a string `command`), in characters. */
export const MAX_COMMAND_LENGTH: number = 256 * 1024;

/** Most argv items of a `spawn` with an array `command`. */
export const MAX_ARGV_ITEMS: number = 65536;

/** Longest single argv item or environment value, in characters. */
export const MAX_ARG_LENGTH: number = 128 * 1024;

/** Most environment variables in one `spawn`. */
export const MAX_ENV_VARS: number = 4096;

/** Longest process id (`proc`), in characters. */
export const MAX_PROCESS_ID_LENGTH: number = 128;

/** Most labels a daemon reports in `hello`. */
export const MAX_LABELS: number = 64;

/** Longest label value, in characters. */
export const MAX_LABEL_LENGTH: number = 256;

/** Largest flow-control `window` a request may ask for, in bytes. */
export const MAX_WINDOW_BYTES: number = 64 * 1024 * 1024;

/** Largest `retainBytes` a `spawn` may ask for, in bytes (the daemon may cap it lower). */
export const MAX_RETAIN_BYTES: number = 1024 * 1024 * 1024;

/** Longest error message carried in a `res` or `error`, in characters. A daemon truncates longer ones. */
export const MAX_ERROR_MESSAGE_LENGTH: number = 8192;

// --- close codes ---

/**
 * WebSocket close codes of the protocol. A daemon reconnects with backoff after every close, except the codes in
 * {@linkcode FATAL_CLOSE_CODES}.
 *
 * @example Name a close code
 * ```ts
 * import { CLOSE_CODES } from "./constants.ts";
 * console.assert(CLOSE_CODES.REPLACED === 4004);
 * ```
 */
export const CLOSE_CODES: {
  /** A side is shutting down (the controller closing, the daemon stopping). */
  readonly GOING_AWAY: 1001;
  /** The daemon stopped on purpose (normal closure). */
  readonly NORMAL: 1000;
  /** The peer reads too slowly: its send buffer passed the limit. */
  readonly POLICY_VIOLATION: 1008;
  /** A message over the receiver's size limit. */
  readonly MESSAGE_TOO_BIG: 1009;
  /** The handshake failed: the first message was not a valid `hello` (or `welcome`). Fatal for a daemon. */
  readonly HANDSHAKE_REFUSED: 4000;
  /** The daemon's credential does not speak for the daemon id it said hello with. Fatal for a daemon. */
  readonly IDENTITY_MISMATCH: 4001;
  /** The same daemon instance connected again; this older link was replaced. */
  readonly REPLACED: 4004;
  /** No `hello`/`welcome` within the handshake timeout, or nothing received for 3 heartbeat intervals. */
  readonly TIMEOUT: 4008;
  /** Another daemon instance holds this id (the daemon keeps retrying: the holder may go away). */
  readonly ID_IN_USE: 4009;
} = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  HANDSHAKE_REFUSED: 4000,
  IDENTITY_MISMATCH: 4001,
  REPLACED: 4004,
  TIMEOUT: 4008,
  ID_IN_USE: 4009,
};

/**
 * Close codes after which a daemon stops reconnecting (its run ends with an error naming the code and reason):
 * retrying with the same id, credentials and version would be refused the same way. A daemon also stops after
 * an HTTP {@linkcode VERSION_MISMATCH_STATUS} answer to its upgrade.
 */
export const FATAL_CLOSE_CODES: ReadonlySet<number> = new Set([
  CLOSE_CODES.HANDSHAKE_REFUSED,
  CLOSE_CODES.IDENTITY_MISMATCH,
]);

/**
 * Whether a daemon should stop reconnecting after its link closed with `code`.
 *
 * @example Decide whether to retry
 * ```ts
 * import { stopsReconnecting } from "./constants.ts";
 * console.assert(stopsReconnecting(4001) && !stopsReconnecting(4009) && !stopsReconnecting(1006));
 * ```
 *
 * @param code The close code the daemon received.
 * @returns True when retrying is pointless.
 */
export function stopsReconnecting(code: number): boolean {
  return FATAL_CLOSE_CODES.has(code);
}

/**
 * The HTTP status a controller answers an upgrade with when the daemon does not offer its subprotocol (another
 * protocol version): 426 Upgrade Required. A daemon stops reconnecting after it.
 */
export const VERSION_MISMATCH_STATUS = 426;

/**
 * How many heartbeat intervals of silence make a side close the link with 4008: a half-open link is detected
 * within `HEARTBEAT_MISSES × heartbeatMs`.
 */
export const HEARTBEAT_MISSES = 3;
