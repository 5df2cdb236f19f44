// Argument and option checks of the controller API: each rule written once, run before anything is opened or sent.
import { DAEMON_ID_RULE, isDaemonId, MAX_WINDOW_BYTES } from "@sandd/protocol/constants";
import { streamOffsets } from "./_process_session.ts";
import type { ShellOptions } from "./shell.ts";
import type { AttachOptions, ExecOptions, ServerOptions, SpawnOptions } from "./options.ts";
import { checkControlOptions } from "./control/options.ts";

export function positiveInt(name: string, value: number | undefined, min = 1): void {
  if (value !== undefined && (!Number.isInteger(value) || value < min)) {
    throw new RangeError(`${name} must be an integer >= ${min}, got ${value}`);
  }
}

export function checkDaemonId(id: unknown): asserts id is string {
  if (!isDaemonId(id)) {
    throw new TypeError(`Daemon id must be ${DAEMON_ID_RULE}, got ${JSON.stringify(id)}`);
  }
}

export function checkCommand(command: unknown): asserts command is string | string[] {
  if (typeof command === "string") {
    if (command.length === 0) throw new TypeError("Command must not be empty");
    return;
  }
  if (
    !Array.isArray(command) || command.length === 0 || !command.every((a) => typeof a === "string")
  ) {
    throw new TypeError(
      `Command must be a non-empty string or array of strings, got ${JSON.stringify(command)}`,
    );
  }
  if (command[0] === "") {
    throw new TypeError("Command program (the first array item) must not be empty");
  }
}

function checkEnv(env: unknown): void {
  if (env === undefined) return;
  if (typeof env !== "object" || env === null || Array.isArray(env)) {
    throw new TypeError(`env must be an object of strings, got ${JSON.stringify(env)}`);
  }
  for (const [key, value] of Object.entries(env)) {
    if (typeof value !== "string") {
      throw new TypeError(`env.${key} must be a string, got ${typeof value}`);
    }
    if (key === "" || key.includes("=") || key.includes("\0")) {
      throw new TypeError(`Invalid env name '${key}'`);
    }
  }
}

function checkCwd(cwd: unknown): void {
  if (cwd !== undefined && (typeof cwd !== "string" || cwd === "")) {
    throw new TypeError(`cwd must be a non-empty string, got ${JSON.stringify(cwd)}`);
  }
}

function checkTerminalSize(name: string, value: unknown): void {
  if (value === undefined) return;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw new RangeError(`${name} must be an integer from 1 to 65535, got ${String(value)}`);
  }
}

/** What every process-starting call shares: the command, its environment and directory, its timeout. */
function checkLaunch(
  command: unknown,
  options: { env?: unknown; cwd?: unknown; timeout?: number },
): void {
  checkCommand(command);
  checkEnv(options.env);
  checkCwd(options.cwd);
  positiveInt("timeout", options.timeout);
}

export function checkExec(command: unknown, options: ExecOptions): void {
  checkLaunch(command, options);
  positiveInt("maxOutputBytes", options.maxOutputBytes, 0);
  if (
    options.stdin !== undefined && typeof options.stdin !== "string" &&
    !(options.stdin instanceof Uint8Array)
  ) {
    throw new TypeError("stdin must be a string or Uint8Array");
  }
}

export function checkSpawn(command: unknown, options: SpawnOptions): void {
  checkLaunch(command, options);
  positiveInt("retainBytes", options.retainBytes, 0);
}

export function checkShell(options: ShellOptions): void {
  if (options.command !== undefined) checkCommand(options.command);
  checkEnv(options.env);
  checkCwd(options.cwd);
  positiveInt("timeout", options.timeout);
  checkTerminalSize("cols", options.cols);
  checkTerminalSize("rows", options.rows);
  positiveInt("scrollback", options.scrollback, 0);
  if (
    options.record !== undefined && (typeof options.record !== "string" || options.record === "")
  ) {
    throw new TypeError(
      `record must be a non-empty file path, got ${JSON.stringify(options.record)}`,
    );
  }
}

export function checkAttach(what: "Process" | "Shell", id: unknown, options: AttachOptions): void {
  if (typeof id !== "string" || id === "") {
    throw new TypeError(`${what} id must be a non-empty string, got ${JSON.stringify(id)}`);
  }
  streamOffsets(options.from);
}

/** Every option of `Server.listen`, checked before the socket opens. */
export function checkServerOptions(options: ServerOptions): void {
  positiveInt("port", options.port, 0);
  if (options.port !== undefined && options.port > 65535) {
    throw new RangeError(`port must be from 0 to 65535, got ${options.port}`);
  }
  const limit = options.authFailureLimit;
  if (limit !== undefined && limit !== null) {
    if (
      !(limit.rate > 0) || !Number.isFinite(limit.rate) || !(limit.burst >= 1) ||
      !Number.isFinite(limit.burst)
    ) {
      throw new RangeError(
        `authFailureLimit needs a positive rate and a burst >= 1, got ${JSON.stringify(limit)}`,
      );
    }
  }
  if (
    options.rateLimit !== undefined &&
    (typeof options.rateLimit !== "object" || options.rateLimit === null)
  ) {
    throw new TypeError(`rateLimit must be an object, got ${String(options.rateLimit)}`);
  }
  positiveInt("heartbeatMs", options.heartbeatMs, 100);
  positiveInt("handshakeTimeoutMs", options.handshakeTimeoutMs);
  positiveInt("reconnectGraceMs", options.reconnectGraceMs, 0);
  positiveInt("requestTimeoutMs", options.requestTimeoutMs, 1);
  positiveInt("streamWindow", options.streamWindow, 1024);
  positiveInt("maxStreamWindow", options.maxStreamWindow, 1024);
  for (const name of ["streamWindow", "maxStreamWindow"] as const) {
    const value = options[name];
    if (value !== undefined && value > MAX_WINDOW_BYTES) {
      throw new RangeError(`${name} must be at most ${MAX_WINDOW_BYTES} bytes, got ${value}`);
    }
  }
  if (options.path !== undefined && !options.path.startsWith("/")) {
    throw new TypeError(`path must start with '/', got '${options.path}'`);
  }
  if (options.control !== undefined) {
    checkControlOptions(options.control, options.hostname ?? "127.0.0.1", options.token);
  }
  positiveInt("maxMessageBytes", options.maxMessageBytes, 1024);
  positiveInt("maxBufferedBytes", options.maxBufferedBytes, 1024);
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new TypeError("cert and key must be given together");
  }
  for (const name of ["cert", "key"] as const) {
    const pem = options[name];
    if (pem !== undefined && (typeof pem !== "string" || !pem.includes("-----BEGIN "))) {
      throw new TypeError(
        `${name} must be a PEM string, got ${JSON.stringify(String(pem).slice(0, 40))}`,
      );
    }
  }
}
