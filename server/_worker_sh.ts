/**
 * `` w.sh`...` ``: shell scripting on a worker in the spirit of dax and the Deno sandbox SDK. The template's text
 * is shell code; every interpolated value is **quoted** for a POSIX shell (single quotes, a `'` inside written
 * `'\''`), so it is one argument whatever it holds (`; rm -rf /`, `$(...)`, backticks, quotes, newlines). An array
 * expands to one quoted argument per element. Anything else (objects, `undefined`, `null`, booleans, functions,
 * symbols, NUL bytes) is refused with a `TypeError` before anything runs.
 *
 * The script runs with `sh -c` on the worker (POSIX shells only: a Windows daemon, whose shell is `cmd`, is
 * refused with {@linkcode ShUnsupportedPlatformError}).
 *
 * @module
 */

import type { Controller } from "./controller.ts";
import type { ExecResult } from "./options.ts";
import { GapCounter, WorkerChildProcess, type WorkerCommandStatus } from "./_worker_command.ts";

/** A value `sh` accepts in `${...}`: text, a number, or an array of them (one argument each). */
export type ShValue = string | number | bigint | readonly (string | number | bigint)[];

/** Characters that never need quoting in a POSIX shell word (no `=`, so a word never becomes an assignment). */
const PLAIN = /^[A-Za-z0-9_@%+:,./-]+$/;

function quoteOne(value: unknown, where: string): string {
  let text: string;
  if (typeof value === "string") text = value;
  else if (typeof value === "bigint") text = String(value);
  else if (typeof value === "number") {
    if (!Number.isFinite(value)) {
      throw new TypeError(`${where} must be a finite number, got ${value}`);
    }
    text = String(value);
  } else {
    const shown = value === undefined
      ? "undefined"
      : typeof value === "object"
      ? (value === null ? "null" : `an object (${Object.prototype.toString.call(value)})`)
      : `a ${typeof value} (${String(value)})`;
    throw new TypeError(
      `${where} must be a string, a number or an array of them, got ${shown}; convert it explicitly`,
    );
  }
  if (text.includes("\0")) {
    throw new TypeError(
      `${where} contains a NUL byte, which no argument can hold: ${JSON.stringify(text)}`,
    );
  }
  if (PLAIN.test(text)) return text;
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/**
 * Quote a value (or each element of an array, joined by spaces) for a POSIX shell, as `sh` does with its
 * interpolations.
 *
 * @example Quote a hostile value
 * ```ts
 * import { shQuote } from "./_worker_sh.ts";
 * console.assert(shQuote("it's; rm -rf /") === `'it'\\''s; rm -rf /'`);
 * console.assert(shQuote(["a b", "c"]) === "'a b' c");
 * console.assert(shQuote("") === "''");
 * ```
 *
 * @param value A string, number, bigint, or an array of them.
 * @returns The shell text: one word per value.
 * @throws {TypeError} For any other value or a NUL byte.
 */
export function shQuote(value: ShValue): string {
  if (Array.isArray(value)) {
    return value.map((v, i) => quoteOne(v, `Array element ${i}`)).join(" ");
  }
  if (typeof value === "string" && value === "") return "''";
  return quoteOne(value, "Value");
}

/** @internal Build the script text of a template call. */
export function buildScript(strings: TemplateStringsArray, values: readonly unknown[]): string {
  if (!Array.isArray(strings) || !Array.isArray((strings as { raw?: unknown }).raw)) {
    throw new TypeError("sh is a template tag: call it as w.sh`command ${value}`");
  }
  let script = strings[0] ?? "";
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    const where = `Interpolated value ${i + 1}`;
    if (Array.isArray(value)) {
      script += value.map((v, j) => quoteOne(v, `${where}, element ${j}`)).join(" ");
    } else if (value === "") {
      script += "''";
    } else {
      script += quoteOne(value, where);
    }
    script += strings[i + 1] ?? "";
  }
  return script;
}

/** What an `sh` command gives: the status with stdout/stderr as text and as bytes. */
export interface ShResult extends WorkerCommandStatus {
  /** Standard output, decoded as UTF-8. */
  readonly stdout: string;
  /** Standard error, decoded as UTF-8. */
  readonly stderr: string;
  /** Standard output, byte-exact. */
  readonly stdoutBytes: Uint8Array;
  /** Standard error, byte-exact. */
  readonly stderrBytes: Uint8Array;
  /** Per stream, whether output beyond the controller's `maxOutputBytes` (16 MiB) was dropped. */
  readonly truncated?: { stdout: boolean; stderr: boolean };
}

/**
 * An `sh` command exited non-zero (and `.noThrow()` was not used). It carries the whole result.
 *
 * @example Read the result off the error
 * ```ts
 * import { CommandFailedError } from "./_worker_sh.ts";
 * const result = {
 *   success: false, code: 2, signal: null, timedOut: false, stdout: "", stderr: "boom\n",
 *   stdoutBytes: new Uint8Array(), stderrBytes: new Uint8Array(),
 * };
 * const error = new CommandFailedError("false", result);
 * console.assert(error.code === "COMMAND_FAILED" && error.result.code === 2 && error.exitCode === 2);
 * ```
 */
export class CommandFailedError extends Error {
  /** Stable code. */
  readonly code: "COMMAND_FAILED" = "COMMAND_FAILED";
  /** The script that ran. */
  readonly script: string;
  /** The exit code (also `result.code`). */
  readonly exitCode: number;
  /** The whole result: status, stdout, stderr. */
  readonly result: ShResult;
  /**
   * Make the error.
   *
   * @param script The script.
   * @param result Its result.
   */
  constructor(script: string, result: ShResult) {
    const tail = result.stderr.trimEnd().slice(-500);
    super(
      `Command exited with code ${result.code}${result.signal ? ` (${result.signal})` : ""}: ${
        JSON.stringify(script.length > 200 ? `${script.slice(0, 200)}...` : script)
      }${tail ? `\n${tail}` : ""}`,
    );
    this.name = "CommandFailedError";
    this.script = script;
    this.exitCode = result.code;
    this.result = result;
  }
}

/**
 * `sh` was used on a daemon whose platform has no POSIX shell (Windows: `cmd`), where its quoting would not hold.
 *
 * @example Catch it
 * ```ts
 * import { ShUnsupportedPlatformError } from "./_worker_sh.ts";
 * const error = new ShUnsupportedPlatformError("w", "windows");
 * console.assert(error.code === "SH_UNSUPPORTED_PLATFORM" && error.platform === "windows");
 * ```
 */
export class ShUnsupportedPlatformError extends Error {
  /** Stable code. */
  readonly code: "SH_UNSUPPORTED_PLATFORM" = "SH_UNSUPPORTED_PLATFORM";
  /** The daemon. */
  readonly daemonId: string;
  /** Its platform. */
  readonly platform: string;
  /**
   * Make the error.
   *
   * @param daemonId The daemon.
   * @param platform Its platform.
   */
  constructor(daemonId: string, platform: string) {
    super(
      `Daemon '${daemonId}' runs on '${platform}', whose shell is not POSIX: sh quoting would not hold there; use w.command(program, { args }) instead`,
    );
    this.name = "ShUnsupportedPlatformError";
    this.daemonId = daemonId;
    this.platform = platform;
  }
}

/** @internal What an `ShCommand` needs from its worker. */
export interface ShHost {
  readonly controller: Controller;
  readonly daemonId: string;
  /** Resolves when the daemon's shell is POSIX; rejects with `ShUnsupportedPlatformError` otherwise. */
  checkPosix(): Promise<void>;
}

interface ShSettings {
  cwd?: string;
  env?: Record<string, string>;
  timeout?: number;
  stdin?: Uint8Array | string;
  signal?: AbortSignal;
  noThrow: boolean;
}

function trimNewlines(text: string): string {
  return text.replace(/(\r?\n)+$/, "");
}

/**
 * A shell command on a worker, built by `` w.sh`...` ``. Lazy and immutable: each setter returns a new command,
 * nothing runs until it is awaited or read (`.text()`, `.lines()`, `.json()`, `.bytes()`) or `.spawn()`ed. Each
 * `await` of the same object runs it once (the result is shared).
 *
 * @example Script a worker
 * ```ts ignore
 * const branch = await w.sh`git -C ${dir} rev-parse --abbrev-ref HEAD`.text();
 * const files = await w.sh`ls ${dir}`.lines();
 * const { code } = await w.sh`test -d ${dir}/.git`.noThrow();
 * await w.sh`npm test`.cwd(dir).env({ CI: "1" }).timeout(600_000);
 * ```
 */
export class ShCommand implements PromiseLike<ShResult> {
  readonly #host: ShHost;
  readonly #script: string;
  readonly #settings: ShSettings;
  #running: Promise<ShResult> | null = null;

  /**
   * @internal Use `` w.sh`...` ``.
   *
   * @param host The worker.
   * @param script The shell text (values already quoted).
   * @param settings Options so far.
   */
  constructor(host: ShHost, script: string, settings: ShSettings = { noThrow: false }) {
    this.#host = host;
    this.#script = script;
    this.#settings = settings;
  }

  /** The script that runs, interpolations quoted. */
  get script(): string {
    return this.#script;
  }

  #with(changes: Partial<ShSettings>): ShCommand {
    return new ShCommand(this.#host, this.#script, { ...this.#settings, ...changes });
  }

  /**
   * Run in this directory on the worker.
   *
   * @param dir The directory.
   * @returns A new command.
   */
  cwd(dir: string): ShCommand {
    if (typeof dir !== "string" || dir === "" || dir.includes("\0")) {
      throw new TypeError(`cwd must be a non-empty string without NUL, got ${JSON.stringify(dir)}`);
    }
    return this.#with({ cwd: dir });
  }

  /**
   * Add environment variables (merged with those set before).
   *
   * @param vars Names and values.
   * @returns A new command.
   */
  env(vars: Record<string, string>): ShCommand {
    if (typeof vars !== "object" || vars === null || Array.isArray(vars)) {
      throw new TypeError(`env must be an object of strings, got ${JSON.stringify(vars)}`);
    }
    for (const [key, value] of Object.entries(vars)) {
      if (typeof value !== "string") {
        throw new TypeError(`env value of '${key}' must be a string, got ${typeof value}`);
      }
    }
    return this.#with({ env: { ...this.#settings.env, ...vars } });
  }

  /**
   * Kill the process group after this long; the command then rejects with `CommandTimeoutError` (also with
   * `.noThrow()`).
   *
   * @param ms Milliseconds.
   * @returns A new command.
   */
  timeout(ms: number): ShCommand {
    if (!Number.isSafeInteger(ms) || ms <= 0) {
      throw new RangeError(`timeout must be a positive integer of milliseconds, got ${ms}`);
    }
    return this.#with({ timeout: ms });
  }

  /**
   * Feed these bytes (or UTF-8 text) to standard input, then EOF. Without it stdin is empty.
   *
   * @param data The input.
   * @returns A new command.
   */
  stdin(data: string | Uint8Array): ShCommand {
    if (typeof data !== "string" && !(data instanceof Uint8Array)) {
      throw new TypeError(`stdin must be a string or a Uint8Array, got ${typeof data}`);
    }
    return this.#with({ stdin: data });
  }

  /**
   * Abort with this signal: the process group is killed and the command rejects with the signal's reason.
   *
   * @param signal The signal.
   * @returns A new command.
   */
  signal(signal: AbortSignal): ShCommand {
    if (!(signal instanceof AbortSignal)) {
      throw new TypeError(`signal must be an AbortSignal, got ${typeof signal}`);
    }
    return this.#with({ signal });
  }

  /**
   * Resolve with the result even when the exit code is not 0.
   *
   * @returns A new command.
   */
  noThrow(): ShCommand {
    return this.#with({ noThrow: true });
  }

  #run(): Promise<ShResult> {
    this.#running ??= (async () => {
      await this.#host.checkPosix();
      const s = this.#settings;
      const r: ExecResult = await this.#host.controller.exec(this.#host.daemonId, this.#script, {
        ...(s.cwd !== undefined ? { cwd: s.cwd } : {}),
        ...(s.env !== undefined ? { env: s.env } : {}),
        ...(s.timeout !== undefined ? { timeout: s.timeout } : {}),
        ...(s.stdin !== undefined ? { stdin: s.stdin } : {}),
        ...(s.signal !== undefined ? { signal: s.signal } : {}),
      });
      const result: ShResult = {
        success: r.exitCode === 0,
        code: r.exitCode,
        signal: r.signal,
        timedOut: false,
        stdout: r.stdout,
        stderr: r.stderr,
        stdoutBytes: r.stdoutBytes,
        stderrBytes: r.stderrBytes,
        truncated: r.truncated,
      };
      if (!result.success && !s.noThrow) throw new CommandFailedError(this.#script, result);
      return result;
    })();
    return this.#running;
  }

  /**
   * Run it (awaiting the command does this).
   *
   * @param onfulfilled Called with the result.
   * @param onrejected Called with the error.
   * @returns A promise of what the callback returns.
   */
  then<A = ShResult, B = never>(
    onfulfilled?: ((value: ShResult) => A | PromiseLike<A>) | null,
    onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.#run().then(onfulfilled, onrejected);
  }

  /**
   * Run it and give standard output as text, trailing newlines removed (as `$(...)` does).
   *
   * @returns The text.
   */
  async text(): Promise<string> {
    return trimNewlines((await this.#run()).stdout);
  }

  /**
   * Run it and give standard output's lines (trailing newlines removed first; none for empty output).
   *
   * @returns The lines.
   */
  async lines(): Promise<string[]> {
    const text = await this.text();
    return text === "" ? [] : text.split(/\r?\n/);
  }

  /**
   * Run it and parse standard output as JSON.
   *
   * @returns The value.
   * @throws {SyntaxError} When the output is not JSON.
   */
  async json<T = unknown>(): Promise<T> {
    return JSON.parse((await this.#run()).stdout) as T;
  }

  /**
   * Run it and give standard output, byte-exact.
   *
   * @returns The bytes.
   */
  async bytes(): Promise<Uint8Array> {
    return (await this.#run()).stdoutBytes;
  }

  /**
   * Start it as a streaming child (`sh -c` with the script): stdout and stderr piped, stdin piped unless
   * `.stdin(data)` was given (then it is written and closed). `.noThrow()` does not apply: read `status`.
   *
   * @returns The child.
   */
  async spawn(): Promise<WorkerChildProcess> {
    await this.#host.checkPosix();
    const s = this.#settings;
    s.signal?.throwIfAborted();
    const gaps = new GapCounter();
    const handle = await this.#host.controller.spawn(this.#host.daemonId, this.#script, {
      stdin: true,
      onGap: gaps.add,
      ...(s.cwd !== undefined ? { cwd: s.cwd } : {}),
      ...(s.env !== undefined ? { env: s.env } : {}),
      ...(s.timeout !== undefined ? { timeout: s.timeout } : {}),
    });
    if (s.stdin !== undefined) {
      const bytes = typeof s.stdin === "string" ? new TextEncoder().encode(s.stdin) : s.stdin;
      const writer = handle.stdin.getWriter();
      writer.write(bytes).then(() => writer.close()).catch(() => {});
    }
    return new WorkerChildProcess(handle, {
      stdin: s.stdin !== undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
      ...(s.signal ? { signal: s.signal } : {}),
    }, gaps);
  }
}
