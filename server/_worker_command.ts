/**
 * `w.command(program, options)`: `Deno.Command`'s shape for a program on a worker. `.output()` runs it to
 * completion (one `exec` on the controller), `.spawn()` starts a streaming child (one `spawn`) whose members have
 * `Deno.ChildProcess`'s names and shapes, plus what being remote adds (`id`, `offsets`, `detach()`, reattach).
 * Programs run from an argv array, never through a shell.
 *
 * @module
 */

import type { Controller, ProcessHandle } from "./controller.ts";
import type { ExecResult } from "./options.ts";
import type { Gap, ProcessStatus } from "./process.ts";

/** How the child's standard input is set up. `"inherit"` has no remote meaning and is refused. */
export type WorkerStdin = "piped" | "null";

/** How a child's standard output or error is handled. `"inherit"` copies it to this process's own. */
export type WorkerStdio = "piped" | "null" | "inherit";

/** Options of `w.command()`: `Deno.CommandOptions`' names where they apply remotely, plus remote extras. */
export interface WorkerCommandOptions {
  /** Arguments, each passed as one argv entry (no shell). @default [] */
  args?: readonly string[];
  /** Working directory on the worker. @default the daemon's */
  cwd?: string;
  /** Environment variables added to the daemon's. @default {} */
  env?: Record<string, string>;
  /**
   * Standard input: `"piped"` gives `child.stdin` (spawn only, as with Deno), `"null"` an empty input.
   * @default "null"
   */
  stdin?: WorkerStdin;
  /**
   * Standard output: `"piped"` (readable from the child / in the output), `"null"` (discarded on the worker),
   * `"inherit"` (copied to this process's `Deno.stdout`). @default "piped"
   */
  stdout?: WorkerStdio;
  /** Standard error, as `stdout` (copied to `Deno.stderr` with `"inherit"`). @default "piped" */
  stderr?: WorkerStdio;
  /**
   * Kill the process group after this many milliseconds: `output()` rejects with `CommandTimeoutError`, a spawned
   * child's `status` has `timedOut: true`. @default undefined (no limit)
   */
  timeout?: number;
  /**
   * Aborting kills the process: a spawned child gets `SIGTERM` (as with Deno); `output()` kills the process group
   * and rejects with the signal's reason (Deno resolves with a `SIGTERM` status there). @default undefined
   */
  signal?: AbortSignal;
  /** `output()` only: bytes kept per stream, beyond which output is dropped and `truncated` set. @default 16 MiB */
  maxOutputBytes?: number;
  /** `spawn()` only: output bytes the daemon retains per stream for a reattach. @default the daemon's (4 MiB) */
  retainBytes?: number;
}

/** How a remote child ended: `Deno.CommandStatus` plus whether the timeout killed it. */
export interface WorkerCommandStatus {
  /** Whether the exit code was 0. */
  readonly success: boolean;
  /** Exit code; 128 + n when signal n ended it; 127 when the program was not found. */
  readonly code: number;
  /** The signal that ended it, or null. */
  readonly signal: Deno.Signal | null;
  /** Whether the `timeout` killed it. */
  readonly timedOut: boolean;
}

/**
 * What `output()` gives: `Deno.CommandOutput`'s shape. Reading `stdout` or `stderr` when it was not `"piped"`
 * throws a `TypeError`, as with Deno.
 */
export interface WorkerCommandOutput extends WorkerCommandStatus {
  /** Standard output, byte-exact. */
  readonly stdout: Uint8Array;
  /** Standard error, byte-exact. */
  readonly stderr: Uint8Array;
  /** Per stream, whether output beyond `maxOutputBytes` was dropped. */
  readonly truncated: { stdout: boolean; stderr: boolean };
}

/** Byte offsets reached on a child's output streams (pass them to `w.attach(id, { from })` to resume). */
export interface OutputOffsets {
  /** Offset of the next stdout byte. */
  stdout: number;
  /** Offset of the next stderr byte. */
  stderr: number;
}

const STDIO = new Set(["piped", "null", "inherit"]);
const KNOWN = new Set([
  "args",
  "cwd",
  "env",
  "stdin",
  "stdout",
  "stderr",
  "timeout",
  "signal",
  "maxOutputBytes",
  "retainBytes",
]);

/** @internal Check `w.command()`'s arguments (before anything is sent). */
export function checkCommandOptions(program: unknown, options: WorkerCommandOptions): void {
  if (typeof program !== "string" || program === "" || program.includes("\0")) {
    throw new TypeError(
      `Program must be a non-empty string without NUL, got ${JSON.stringify(program)}`,
    );
  }
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`Command options must be an object, got ${JSON.stringify(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key)) {
      throw new TypeError(
        `Unknown command option '${key}' (remote commands support ${[...KNOWN]})`,
      );
    }
  }
  const args = options.args;
  if (
    args !== undefined &&
    (!Array.isArray(args) || args.some((a) => typeof a !== "string" || a.includes("\0")))
  ) {
    throw new TypeError(
      `args must be an array of strings without NUL, got ${JSON.stringify(args)}`,
    );
  }
  if (options.stdin !== undefined && options.stdin !== "piped" && options.stdin !== "null") {
    throw new TypeError(
      `stdin must be "piped" or "null", got ${JSON.stringify(options.stdin)}` +
        (options.stdin === "inherit"
          ? ` (a worker cannot inherit this process's stdin: use "piped" and pipe Deno.stdin.readable into child.stdin)`
          : ""),
    );
  }
  for (const name of ["stdout", "stderr"] as const) {
    const value = options[name];
    if (value !== undefined && !STDIO.has(value)) {
      throw new TypeError(
        `${name} must be "piped", "null" or "inherit", got ${JSON.stringify(value)}`,
      );
    }
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new TypeError(`signal must be an AbortSignal, got ${typeof options.signal}`);
  }
}

function statusOf(status: ProcessStatus): WorkerCommandStatus {
  return {
    success: status.exitCode === 0,
    code: status.exitCode,
    signal: status.signal,
    timedOut: status.timedOut,
  };
}

function notPiped(name: string): TypeError {
  return new TypeError(`Cannot get '${name}': '${name}' is not piped`);
}

/** An output object whose `stdout`/`stderr` throw when not piped, as `Deno.CommandOutput`'s do. */
function outputOf(
  status: WorkerCommandStatus,
  stdout: Uint8Array | null,
  stderr: Uint8Array | null,
  truncated: { stdout: boolean; stderr: boolean },
): WorkerCommandOutput {
  return {
    success: status.success,
    code: status.code,
    signal: status.signal,
    timedOut: status.timedOut,
    truncated,
    get stdout(): Uint8Array {
      if (stdout === null) throw notPiped("stdout");
      return stdout;
    },
    get stderr(): Uint8Array {
      if (stderr === null) throw notPiped("stderr");
      return stderr;
    },
  };
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of stream) {
    chunks.push(chunk);
    length += chunk.byteLength;
  }
  const out = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

/** This process's stdout or stderr. */
interface LocalWriter {
  write(bytes: Uint8Array): Promise<number>;
}

/** Copy a remote stream to a local writer (this process's stdout or stderr), in the background. */
function inheritTo(stream: ReadableStream<Uint8Array>, local: LocalWriter): void {
  (async () => {
    for await (const chunk of stream) await writeAll(local, chunk);
  })().catch(() => {});
}

async function writeAll(local: LocalWriter, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await local.write(bytes.subarray(at));
}

/**
 * A command to run on a worker, as `Deno.Command` is locally. Made by `w.command()`; nothing runs until
 * `output()` or `spawn()`.
 *
 * @example Run a program and read its output
 * ```ts ignore
 * const { success, stdout } = await w.command("git", { args: ["-C", dir, "status", "--short"] }).output();
 * console.log(success, new TextDecoder().decode(stdout));
 * ```
 */
export class WorkerCommand {
  readonly #controller: Controller;
  readonly #daemonId: string;
  readonly #program: string;
  readonly #options: WorkerCommandOptions;

  /**
   * @internal Use `w.command()`.
   *
   * @param controller The controller.
   * @param daemonId The daemon.
   * @param program The program.
   * @param options The options.
   */
  constructor(
    controller: Controller,
    daemonId: string,
    program: string,
    options: WorkerCommandOptions = {},
  ) {
    checkCommandOptions(program, options);
    this.#controller = controller;
    this.#daemonId = daemonId;
    this.#program = program;
    this.#options = { ...options, ...(options.args ? { args: [...options.args] } : {}) };
  }

  /** The argv the worker runs. */
  get argv(): string[] {
    return [this.#program, ...(this.#options.args ?? [])];
  }

  /**
   * Run to completion and collect the output (`Deno.Command.output()`). A non-zero exit is a result.
   *
   * @returns Status and output.
   * @throws {TypeError} With `stdin: "piped"` (as Deno: use `spawn()`).
   * @throws {CommandTimeoutError} When `timeout` killed it.
   */
  async output(): Promise<WorkerCommandOutput> {
    const o = this.#options;
    if (o.stdin === "piped") {
      throw new TypeError(
        "Piped stdin is not supported for this function, use 'WorkerCommand.spawn()' instead",
      );
    }
    const result: ExecResult = await this.#controller.exec(this.#daemonId, this.argv, {
      ...(o.cwd !== undefined ? { cwd: o.cwd } : {}),
      ...(o.env !== undefined ? { env: o.env } : {}),
      ...(o.timeout !== undefined ? { timeout: o.timeout } : {}),
      ...(o.signal !== undefined ? { signal: o.signal } : {}),
      ...(o.maxOutputBytes !== undefined ? { maxOutputBytes: o.maxOutputBytes } : {}),
    });
    const stdout = o.stdout ?? "piped";
    const stderr = o.stderr ?? "piped";
    if (stdout === "inherit") await writeAll(Deno.stdout, result.stdoutBytes);
    if (stderr === "inherit") await writeAll(Deno.stderr, result.stderrBytes);
    return outputOf(
      {
        success: result.exitCode === 0,
        code: result.exitCode,
        signal: result.signal,
        timedOut: false,
      },
      stdout === "piped" ? result.stdoutBytes : null,
      stderr === "piped" ? result.stderrBytes : null,
      result.truncated,
    );
  }

  /**
   * Start the program and stream its I/O (`Deno.Command.spawn()`, but asynchronous: it resolves once the process
   * runs on the worker).
   *
   * @returns The child.
   */
  async spawn(): Promise<WorkerChildProcess> {
    const o = this.#options;
    o.signal?.throwIfAborted();
    const gaps = new GapCounter();
    const handle = await this.#controller.spawn(this.#daemonId, this.argv, {
      stdin: o.stdin === "piped",
      ...(o.cwd !== undefined ? { cwd: o.cwd } : {}),
      ...(o.env !== undefined ? { env: o.env } : {}),
      ...(o.timeout !== undefined ? { timeout: o.timeout } : {}),
      ...(o.retainBytes !== undefined ? { retainBytes: o.retainBytes } : {}),
      onGap: gaps.add,
    });
    return new WorkerChildProcess(handle, {
      stdin: o.stdin ?? "null",
      stdout: o.stdout ?? "piped",
      stderr: o.stderr ?? "piped",
      ...(o.signal ? { signal: o.signal } : {}),
    }, gaps);
  }
}

/**
 * @internal Where each output stream starts (the attach offset) and the bytes lost in gaps after that, for the
 * offsets.
 */
export class GapCounter {
  /** First offset asked for, per stream. */
  readonly start: { stdout: number; stderr: number };
  /** Bytes lost at or after `start`, per stream. */
  readonly lost: { stdout: number; stderr: number } = { stdout: 0, stderr: 0 };

  /**
   * Make a counter.
   *
   * @param start First offset asked for, per stream.
   */
  constructor(start: { stdout: number; stderr: number } = { stdout: 0, stderr: 0 }) {
    this.start = start;
  }

  /** Record a gap (bound, for `onGap`). */
  readonly add = (gap: Gap): void => {
    if (gap.stream !== "stdout" && gap.stream !== "stderr") return;
    this.lost[gap.stream] += Math.max(0, gap.to - Math.max(gap.from, this.start[gap.stream]));
  };
}

/** @internal How a child's streams are set up. */
export interface ChildStdio {
  stdin: WorkerStdin;
  stdout: WorkerStdio;
  stderr: WorkerStdio;
  signal?: AbortSignal;
}

/**
 * A process running on a worker with `Deno.ChildProcess`'s members: `pid`, `stdin`, `stdout`, `stderr`, `status`,
 * `output()`, `kill()`, `ref()`/`unref()`, disposal. Remote extras: `id` (keep it to reattach with
 * `w.attach(id)`), `daemonId`, `offsets`, `gaps` and `detach()`.
 *
 * Differences from a local child: `spawn()` returns a promise (the process starts on the worker; Deno's is
 * synchronous); `kill()` returns a promise (it is a request to the worker; it rejects with
 * `ProcessExitedError` where Deno throws because the child has terminated); a program that does not exist is exit
 * code 127 with the shell-style message on stderr (Deno throws `NotFound` from `spawn()`); `ref()`/`unref()` do
 * nothing (a remote child never keeps this process alive by itself).
 *
 * @example Stream a build, feed stdin, kill it
 * ```ts ignore
 * await using child = await w.command("cat", { stdin: "piped" }).spawn();
 * const writer = child.stdin.getWriter();
 * await writer.write(new TextEncoder().encode("hello\n"));
 * await writer.close();
 * const { code, stdout } = await child.output();
 * ```
 */
export class WorkerChildProcess implements AsyncDisposable {
  readonly #handle: ProcessHandle;
  readonly #stdio: ChildStdio;
  readonly #gaps: GapCounter;
  readonly #read = { stdout: 0, stderr: 0 };
  readonly #stdout: ReadableStream<Uint8Array> | null;
  readonly #stderr: ReadableStream<Uint8Array> | null;
  readonly #status: Promise<WorkerCommandStatus>;
  #detached = false;

  /**
   * @internal Use `w.command(...).spawn()` or `w.attach(id)`.
   *
   * @param handle The controller's process handle.
   * @param stdio How the streams are set up.
   * @param gaps Lost bytes per stream, filled by the handle's `onGap`.
   */
  constructor(handle: ProcessHandle, stdio: ChildStdio, gaps: GapCounter = new GapCounter()) {
    this.#handle = handle;
    this.#stdio = stdio;
    this.#gaps = gaps;
    this.#stdout = this.#output("stdout", handle.stdout, Deno.stdout);
    this.#stderr = this.#output("stderr", handle.stderr, Deno.stderr);
    this.#status = handle.status.then(statusOf);
    this.#status.catch(() => {}); // a detached child's status rejects; only a reader should see it
    if (stdio.signal) {
      const signal = stdio.signal;
      const onAbort = () => {
        if (!this.#detached) handle.kill("SIGTERM").catch(() => {});
      };
      signal.addEventListener("abort", onAbort, { once: true });
      handle.status.then(
        () => signal.removeEventListener("abort", onAbort),
        () => signal.removeEventListener("abort", onAbort),
      );
      if (signal.aborted) onAbort();
    }
  }

  #output(
    name: "stdout" | "stderr",
    source: ReadableStream<Uint8Array>,
    local: LocalWriter,
  ): ReadableStream<Uint8Array> | null {
    const mode = this.#stdio[name];
    if (mode === "null") {
      // The daemon keeps reading the child into its bounded retention; nothing crosses the link.
      source.cancel().catch(() => {});
      return null;
    }
    const reader = source.getReader();
    const counted = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const next = await reader.read();
        if (next.done) {
          controller.close();
          return;
        }
        this.#read[name] += next.value.byteLength;
        controller.enqueue(next.value);
      },
      cancel: (reason) => reader.cancel(reason),
    }, { highWaterMark: 0 });
    if (mode === "inherit") {
      inheritTo(counted, local);
      return null;
    }
    return counted;
  }

  /** The process id on the daemon (not the OS pid): keep it to reattach with `w.attach(id)`. */
  get id(): string {
    return this.#handle.id;
  }

  /** The daemon it runs on. */
  get daemonId(): string {
    return this.#handle.daemonId;
  }

  /** The OS process id on the worker. */
  get pid(): number {
    return this.#handle.pid;
  }

  /**
   * Standard input; closing it delivers EOF.
   *
   * @throws {TypeError} When it was not `"piped"` (as Deno).
   */
  get stdin(): WritableStream<Uint8Array> {
    if (this.#stdio.stdin !== "piped") throw notPiped("stdin");
    return this.#handle.stdin;
  }

  /**
   * Standard output, byte-exact; resumes by itself across dropped links.
   *
   * @throws {TypeError} When it was not `"piped"` (as Deno).
   */
  get stdout(): ReadableStream<Uint8Array> {
    if (this.#stdout === null) throw notPiped("stdout");
    return this.#stdout;
  }

  /**
   * Standard error.
   *
   * @throws {TypeError} When it was not `"piped"` (as Deno).
   */
  get stderr(): ReadableStream<Uint8Array> {
    if (this.#stderr === null) throw notPiped("stderr");
    return this.#stderr;
  }

  /** Resolves with how it ended (`Deno.CommandStatus` plus `timedOut`). */
  get status(): Promise<WorkerCommandStatus> {
    return this.#status;
  }

  /**
   * Offsets of the next byte of each output stream: bytes read plus bytes lost in gaps (plus the starting offset
   * of an attach). After `detach()`, `w.attach(id, { from: child.offsets })` continues without loss or repeat.
   */
  get offsets(): OutputOffsets {
    const g = this.#gaps;
    return {
      stdout: g.start.stdout + this.#read.stdout + g.lost.stdout,
      stderr: g.start.stderr + this.#read.stderr + g.lost.stderr,
    };
  }

  /** Output the daemon no longer retained when it was asked for. */
  get gaps(): readonly Gap[] {
    return this.#handle.gaps;
  }

  /**
   * Wait for the exit and collect whatever is left of stdout and stderr (`Deno.ChildProcess.output()`).
   *
   * @returns Status and output; a stream that is not `"piped"` throws when read from it.
   * @throws {TypeError} When stdout or stderr is locked (being read already).
   */
  async output(): Promise<WorkerCommandOutput> {
    if (this.#stdout?.locked) throw new TypeError("Cannot collect output: 'stdout' is locked");
    if (this.#stderr?.locked) throw new TypeError("Cannot collect output: 'stderr' is locked");
    const [status, stdout, stderr] = await Promise.all([
      this.#status,
      this.#stdout ? collect(this.#stdout) : null,
      this.#stderr ? collect(this.#stderr) : null,
    ]);
    return outputOf(status, stdout, stderr, { stdout: false, stderr: false });
  }

  /**
   * Send a signal to the process group (`SIGTERM` escalates to `SIGKILL` after the daemon's grace).
   *
   * @param signal The signal. @default "SIGTERM"
   * @throws {ProcessExitedError} When it has exited (Deno throws a `TypeError` there).
   * @throws {SignalNotAllowedError} For a signal outside the allowed set.
   */
  kill(signal: Deno.Signal = "SIGTERM"): Promise<void> {
    return this.#handle.kill(signal);
  }

  /** No-op: a remote child never keeps this process alive by itself (kept for `Deno.ChildProcess`'s shape). */
  ref(): void {}

  /** No-op (see {@linkcode WorkerChildProcess.ref}). */
  unref(): void {}

  /**
   * Stop following the process without killing it; it keeps running on the worker and can be reattached with
   * `w.attach(child.id, { from: child.offsets })`. Disposing a detached child does not kill it; its `status`
   * rejects (this handle will not learn the exit) and its streams end.
   */
  async detach(): Promise<void> {
    this.#detached = true;
    await this.#handle.detach();
  }

  /**
   * Kill the process if it is still running (unless detached) and wait for its exit, as disposing a
   * `Deno.ChildProcess` does. Unread piped output is cancelled.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#detached) return;
    if (this.#handle.exited === null) await this.#handle.kill("SIGTERM").catch(() => {});
    await this.#status.catch(() => {});
    if (this.#stdout && !this.#stdout.locked) await this.#stdout.cancel().catch(() => {});
    if (this.#stderr && !this.#stderr.locked) await this.#stderr.cancel().catch(() => {});
  }
}
