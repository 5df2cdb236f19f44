// Copyright 2026 the SandD authors. MIT license.
/**
 * Pseudo-terminals for Deno over the system C library (Linux, macOS) or ConPTY (Windows),
 * through Deno FFI: no native library is downloaded or bundled.
 *
 * @module
 */

import { type BackendSpawnOptions, type PtyBackend, UnixPty } from "./_unix.ts";
import { WindowsPty } from "./_windows.ts";

/** Options for {@linkcode Pty.spawn}. */
export interface PtySpawnOptions {
  /** Program path or name; a bare name is looked up in the child's `PATH`. */
  command: string;
  /**
   * Arguments after the program name.
   *
   * @default {[]}
   */
  args?: string[];
  /**
   * Terminal width in columns, an integer from 1 to 65535.
   *
   * @default {80}
   */
  cols?: number;
  /**
   * Terminal height in rows, an integer from 1 to 65535.
   *
   * @default {24}
   */
  rows?: number;
  /**
   * The complete environment of the child.
   *
   * @default {Deno.env.toObject()}
   */
  env?: Record<string, string>;
  /**
   * Working directory of the child.
   *
   * @default {Deno.cwd()}
   */
  cwd?: string;
}

/**
 * How the program on a pty ended. A program killed by a signal has `exitCode` 128 + the signal
 * number (the shell convention) and `signal` set.
 *
 * @example Usage
 * ```ts
 * import type { PtyExit } from "./pty.ts";
 *
 * const exit: PtyExit = { exitCode: 130, signal: "SIGINT" };
 * console.log(exit.signal ?? exit.exitCode);
 * ```
 */
export interface PtyExit {
  /** Exit status, or 128 + signal number when a signal ended the program. */
  exitCode: number;
  /** The signal that ended the program, or `null` when it exited by itself. */
  signal: Deno.Signal | null;
}

/**
 * An error from the pty layer, with a stable `code`: an errno name such as `"ENOENT"` (program
 * not found), `"EACCES"`, `"EIO"`, or `"ECLOSED"` (the pty was closed), `"EBUSY"` (a second
 * concurrent `read()`).
 *
 * @example Usage
 * ```ts ignore
 * import { Pty, PtyError } from "./pty.ts";
 *
 * try {
 *   Pty.spawn({ command: "no-such-program" });
 * } catch (error) {
 *   if (error instanceof PtyError) console.log(error.code); // "ENOENT"
 * }
 * ```
 */
export class PtyError extends Error {
  /** Stable machine-readable reason, e.g. `"ENOENT"`. */
  readonly code: string;

  /**
   * Constructs a new instance.
   *
   * @param message What went wrong.
   * @param options The stable `code` and an optional `cause`.
   */
  constructor(message: string, options: { code: string; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "PtyError";
    this.code = options.code;
  }
}

function toPtyError(error: unknown): unknown {
  if (error instanceof PtyError) return error;
  const code = error instanceof Error ? (error as Error & { code?: unknown }).code : undefined;
  if (error instanceof Error && typeof code === "string") {
    return new PtyError(error.message, { code, cause: error });
  }
  return error;
}

function checkSize(name: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw new RangeError(`${name} must be an integer from 1 to 65535: received ${String(value)}`);
  }
  return value;
}

function checkString(name: string, value: unknown): string {
  if (typeof value !== "string") {
    throw new TypeError(`${name} must be a string: received ${typeof value}`);
  }
  if (value.includes("\0")) {
    throw new TypeError(
      `${name} must not contain a NUL character: received ${JSON.stringify(value)}`,
    );
  }
  return value;
}

function validate(options: PtySpawnOptions): BackendSpawnOptions {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object: received ${String(options)}`);
  }
  const command = checkString("command", options.command);
  if (command === "") throw new TypeError('command must not be empty: received ""');
  const args = options.args ?? [];
  if (!Array.isArray(args)) {
    throw new TypeError(`args must be an array of strings: received ${typeof args}`);
  }
  args.forEach((arg, i) => checkString(`args[${i}]`, arg));
  const cols = checkSize("cols", options.cols ?? 80);
  const rows = checkSize("rows", options.rows ?? 24);
  const env = options.env ?? Deno.env.toObject();
  if (typeof env !== "object" || env === null) {
    throw new TypeError(`env must be an object of strings: received ${String(env)}`);
  }
  for (const [key, value] of Object.entries(env)) {
    checkString(`env key ${JSON.stringify(key)}`, key);
    if (key === "" || key.includes("=")) {
      throw new TypeError(
        `env key must be non-empty and contain no "=": received ${JSON.stringify(key)}`,
      );
    }
    checkString(`env[${JSON.stringify(key)}]`, value);
  }
  const cwd = checkString("cwd", options.cwd ?? Deno.cwd());
  return { command, args: [...args], cols, rows, env: { ...env }, cwd };
}

const encoder = new TextEncoder();

/**
 * A program running on a pseudo-terminal. Output is pulled with {@linkcode Pty.read}: while
 * nobody reads, the program blocks on its next write, which is the flow control. Bytes pass
 * unchanged in both directions (nothing is decoded).
 *
 * On Linux and macOS the program leads its own session with the pty as its controlling
 * terminal, so job control, Ctrl-C (`"\x03"`) and SIGWINCH work. On Windows it runs on a
 * ConPTY pseudo console.
 *
 * @example Run a command and collect its output
 * ```ts ignore
 * import { Pty } from "./pty.ts";
 *
 * await using pty = Pty.spawn({ command: "stty", args: ["size"], cols: 100, rows: 30 });
 * const chunks: Uint8Array[] = [];
 * for (let chunk = await pty.read(); chunk !== null; chunk = await pty.read()) {
 *   chunks.push(chunk);
 * }
 * console.log(await pty.exited); // { exitCode: 0, signal: null }
 * ```
 */
export class Pty implements AsyncDisposable {
  #backend: PtyBackend;

  private constructor(backend: PtyBackend) {
    this.#backend = backend;
  }

  /**
   * Starts `options.command` on a new pseudo-terminal of the requested size.
   *
   * @example Usage
   * ```ts ignore
   * import { Pty } from "./pty.ts";
   *
   * await using pty = Pty.spawn({ command: "bash", args: ["-i"], cols: 120, rows: 40 });
   * await pty.write("echo hello\r");
   * ```
   *
   * @param options What to run and how.
   * @returns The running pty.
   * @throws {TypeError} For an option of the wrong type.
   * @throws {RangeError} For `cols` or `rows` outside 1..65535.
   * @throws {PtyError} When the program cannot be found (`"ENOENT"`) or started.
   */
  static spawn(options: PtySpawnOptions): Pty {
    const request = validate(options);
    try {
      const backend = Deno.build.os === "windows"
        ? WindowsPty.spawn(request)
        : UnixPty.spawn(request);
      return new Pty(backend);
    } catch (error) {
      throw toPtyError(error);
    }
  }

  /**
   * Process id of the program (also its process group and session id on Unix).
   *
   * @example Usage
   * ```ts ignore
   * import { Pty } from "./pty.ts";
   *
   * await using pty = Pty.spawn({ command: "true" });
   * console.log(pty.pid);
   * ```
   */
  get pid(): number {
    return this.#backend.pid;
  }

  /**
   * Resolves once the program has exited and been reaped. Never rejects.
   *
   * @example Usage
   * ```ts ignore
   * import { Pty } from "./pty.ts";
   *
   * await using pty = Pty.spawn({ command: "sh", args: ["-c", "exit 7"] });
   * console.log((await pty.exited).exitCode); // 7
   * ```
   */
  get exited(): Promise<PtyExit> {
    return this.#backend.exited;
  }

  /**
   * The next chunk of output (at most 1 MiB), or `null` once the program has exited and all
   * its output was read. Only one read may be in flight at a time.
   *
   * @example Usage
   * ```ts ignore
   * import { Pty } from "./pty.ts";
   *
   * await using pty = Pty.spawn({ command: "tty" });
   * const chunk = await pty.read();
   * ```
   *
   * @returns Raw bytes, or `null` at the end.
   */
  async read(): Promise<Uint8Array | null> {
    try {
      return await this.#backend.read();
    } catch (error) {
      throw toPtyError(error);
    }
  }

  /**
   * Writes all of `data` to the program's terminal input (a string is sent as UTF-8). Waits
   * without blocking the event loop while the terminal's input buffer is full.
   *
   * @example Usage
   * ```ts ignore
   * import { Pty } from "./pty.ts";
   *
   * await using pty = Pty.spawn({ command: "cat" });
   * await pty.write("hello\r");
   * await pty.write(new Uint8Array([0x03])); // Ctrl-C
   * ```
   *
   * @param data Bytes or text to send.
   */
  async write(data: Uint8Array | string): Promise<void> {
    let bytes: Uint8Array;
    if (typeof data === "string") bytes = encoder.encode(data);
    else if (data instanceof Uint8Array) bytes = data;
    else throw new TypeError(`data must be a Uint8Array or a string: received ${typeof data}`);
    try {
      await this.#backend.write(bytes);
    } catch (error) {
      throw toPtyError(error);
    }
  }

  /**
   * Changes the terminal size; the program receives SIGWINCH.
   *
   * @example Usage
   * ```ts ignore
   * import { Pty } from "./pty.ts";
   *
   * await using pty = Pty.spawn({ command: "bash" });
   * pty.resize(132, 50);
   * ```
   *
   * @param cols New width, an integer from 1 to 65535.
   * @param rows New height, an integer from 1 to 65535.
   * @throws {RangeError} For a size outside 1..65535.
   */
  resize(cols: number, rows: number): void {
    checkSize("cols", cols);
    checkSize("rows", rows);
    try {
      this.#backend.resize(cols, rows);
    } catch (error) {
      throw toPtyError(error);
    }
  }

  /**
   * Sends `signal` to the program's whole process group. Does nothing once the program has
   * been reaped. On Windows any signal terminates the process.
   *
   * @example Usage
   * ```ts ignore
   * import { Pty } from "./pty.ts";
   *
   * await using pty = Pty.spawn({ command: "sleep", args: ["100"] });
   * pty.kill("SIGTERM");
   * console.log((await pty.exited).signal); // "SIGTERM"
   * ```
   *
   * @param signal The signal to send.
   * @default {"SIGHUP"}
   */
  kill(signal: Deno.Signal = "SIGHUP"): void {
    try {
      this.#backend.kill(signal);
    } catch (error) {
      throw toPtyError(error);
    }
  }

  /**
   * Hangs up the program's process group if it still runs (SIGHUP, then SIGKILL after two
   * seconds), waits for it to exit, and releases the pty. Safe to call more than once.
   *
   * @example Usage
   * ```ts ignore
   * import { Pty } from "./pty.ts";
   *
   * const pty = Pty.spawn({ command: "sleep", args: ["100"] });
   * await pty.close();
   * ```
   */
  async close(): Promise<void> {
    try {
      await this.#backend.close();
    } catch (error) {
      throw toPtyError(error);
    }
  }

  /**
   * Same as {@linkcode Pty.close}, for `await using`.
   *
   * @example Usage
   * ```ts ignore
   * import { Pty } from "./pty.ts";
   *
   * await using pty = Pty.spawn({ command: "true" });
   * ```
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
