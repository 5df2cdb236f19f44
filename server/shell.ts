/**
 * Interactive terminals on workers: a program (by default the worker's login shell) running on a pseudo-terminal
 * the daemon holds. The session does not depend on the link: when it drops, the shell keeps running, its output
 * is kept in a bounded scrollback, and {@linkcode RemoteShell} handles resume by themselves after a reconnect, or
 * `server.attachShell()` picks the session up again from anywhere (a new `Server`, another script).
 *
 * A session is shared by every handle of it on one controller (the `shell()` handle, more `attachShell()` handles,
 * browsers in the web console): one daemon attachment and one bounded scrollback, the same bytes for each, input
 * from the interactive handles, watching only for `readOnly` ones; see `sh.viewers`.
 *
 * Sessions nobody is attached to are ended by the daemon's orphan timeout (`--orphan-timeout SEC`, default one
 * hour; 0 keeps them forever): that is the idle-session timeout. Several sessions per daemon are fine.
 *
 * @module
 */

import type { ShellHandle } from "./controller.ts";
import type { Gap, ProcessStatus } from "./process.ts";
import type { ProcessSession } from "./_process_session.ts";
import { ProcessExitedError } from "./errors.ts";
import type { AsciicastWriter } from "./asciicast.ts";
import type { ShellViewer, TerminalSize, ViewerInfo } from "./_shell_hub.ts";

export type { TerminalSize, ViewerInfo } from "./_shell_hub.ts";

/**
 * Options of `server.shell()`.
 *
 * @example A wide bash in a project directory
 * ```ts
 * import type { ShellOptions } from "./shell.ts";
 * const options: ShellOptions = { command: ["bash", "-l"], cols: 160, rows: 50, cwd: "/srv/app" };
 * console.assert(options.cols === 160);
 * ```
 */
export interface ShellOptions {
  /**
   * The program. A string runs through `sh -c`; an array runs directly.
   *
   * @default the worker's login shell: `$SHELL -l`, else `bash -l`, else `sh -l` (`%COMSPEC%` on Windows),
   * resolved by the daemon
   */
  command?: string | string[];
  /** Terminal width, an integer from 1 to 65535. @default 80 */
  cols?: number;
  /** Terminal height, an integer from 1 to 65535. @default 24 */
  rows?: number;
  /**
   * Environment variables added to the daemon's. `TERM` is `xterm-256color` unless the daemon's environment or
   * this sets it.
   */
  env?: Record<string, string>;
  /** Working directory on the worker. @default the daemon's working directory */
  cwd?: string;
  /** Bytes of output the daemon keeps for a later `attachShell` to replay. @default 1 MiB */
  scrollback?: number;
  /** Kill the session after this many milliseconds. @default no limit */
  timeout?: number;
  /** Called when output was lost because the scrollback overflowed while nobody was reading. */
  onGap?: (gap: Gap) => void;
  /**
   * Record the session to this file in asciicast v2 (playable with `asciinema play`): the output as it is read
   * from `output`, what `write` sends, and every resize. The file is closed when the session ends or is closed.
   * @default no recording
   */
  record?: string;
}

/**
 * Options of `server.attachShell()`.
 *
 * @example Replay everything retained and report what was lost
 * ```ts
 * import type { AttachShellOptions } from "./shell.ts";
 * const options: AttachShellOptions = { from: null, onGap: (gap) => console.log(gap.to - gap.from) };
 * console.assert(options.from === null);
 * ```
 */
export interface AttachShellOptions {
  /** Output offset to replay from; `null` replays the whole retained scrollback. @default null */
  from?: number | null;
  /** Called when bytes before the retained scrollback were asked for, or skipped because this handle fell behind. */
  onGap?: (gap: Gap) => void;
  /**
   * Join read-only: watch the session without typing or resizing. Joining a session this controller follows
   * already shares its output; otherwise a read-only attach leaves the session's input with whoever has it.
   * @default false
   */
  readOnly?: boolean;
  /** Called when another handle of the session changes the terminal size (a read-only viewer follows it). */
  onResize?: (size: TerminalSize) => void;
}

function checkSize(name: string, value: unknown): void {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw new RangeError(`${name} must be an integer from 1 to 65535, got ${String(value)}`);
  }
}

const encoder = new TextEncoder();

let createShell: (viewer: ShellViewer, recorder: AsciicastWriter | undefined) => RemoteShell;

/**
 * Make the handle of one viewer of a terminal session (for the server; `mod.ts` does not export it).
 *
 * @param viewer The viewer of the session's hub.
 * @param recorder Where the session is recorded, if anywhere.
 * @returns The handle.
 */
export function openShellHandle(viewer: ShellViewer, recorder?: AsciicastWriter): RemoteShell {
  return createShell(viewer, recorder);
}

/**
 * A write or resize through a handle that joined a shared session read-only.
 *
 * @example Catch it
 * ```ts
 * import { ShellReadOnlyError } from "./shell.ts";
 * const error = new ShellReadOnlyError("p-1-1", "write");
 * console.assert(error.code === "READ_ONLY" && error.message.includes("p-1-1"));
 * ```
 */
export class ShellReadOnlyError extends Error {
  /** Stable code. */
  readonly code: string = "READ_ONLY";
  /**
   * Make the error.
   *
   * @param shellId The session.
   * @param action What was refused (`write` or `resize`).
   */
  constructor(shellId: string, action: string) {
    super(`Shell ${shellId} was attached read-only; cannot ${action}`);
    this.name = "ShellReadOnlyError";
  }
}

/**
 * A terminal session on a worker. Made by `server.shell()` or `server.attachShell()`.
 *
 * Output is one byte-exact stream (a terminal merges stdout and stderr); reading it is what returns credit to
 * the daemon, so a consumer that falls behind pauses the program itself. Input is written as typed: `"\r"` is
 * Enter, `"\x03"` is Ctrl-C (the terminal turns it into SIGINT for the foreground job), `"\x04"` is Ctrl-D.
 *
 * @example Run a command in a login shell
 * ```ts ignore
 * import { Server } from "@sandd/server";
 * await using server = await Server.listen({ port: 8765 });
 * await server.waitForDaemon("worker-1");
 * await using sh = await server.shell("worker-1", { cols: 120, rows: 40 });
 * sh.output.pipeTo(Deno.stdout.writable, { preventClose: true });
 * await sh.write("ls -l; exit 3\r");
 * console.log((await sh.exited).exitCode); // 3
 * ```
 *
 * @example Pick a session up again later
 * ```ts ignore
 * const again = await server.attachShell("worker-1", savedId); // replays the scrollback, then live
 * await again.resize(160, 50);
 * ```
 */
export class RemoteShell implements ShellHandle {
  /** The daemon it runs on. */
  readonly daemonId: string;
  /**
   * How the program ended: its real exit code, or 128 + n and the signal. Rejects with `DaemonDisconnectedError`
   * when the daemon stays away past the server's reconnect grace (the session may still be alive: attach again).
   */
  readonly exited: Promise<ProcessStatus>;
  readonly #viewer: ShellViewer;
  readonly #process: ProcessSession;
  readonly #recorder: AsciicastWriter | undefined;
  #output: ReadableStream<Uint8Array> | undefined;

  static {
    createShell = (viewer, recorder) => new RemoteShell(viewer, recorder);
  }

  private constructor(viewer: ShellViewer, recorder?: AsciicastWriter) {
    this.#viewer = viewer;
    this.#process = viewer.hub.session;
    this.#recorder = recorder;
    this.daemonId = this.#process.daemonId;
    this.exited = this.#process.status;
  }

  /** The session id on the daemon: keep it to `attachShell` again later. */
  get id(): string {
    return this.#process.id;
  }

  /** The OS process id of the program on the worker (0 when attached before the daemon said). */
  get pid(): number {
    return this.#process.pid;
  }

  /**
   * The terminal's output, byte-exact. Every handle of the session on this controller (a second `attachShell`,
   * a browser in the console) reads the same bytes from one shared scrollback: the fastest reader paces the
   * program, and a handle left further behind than the scrollback skips to its oldest byte (a gap, see `gaps`).
   */
  get output(): ReadableStream<Uint8Array> {
    const recorder = this.#recorder;
    if (!recorder) return this.#viewer.readable;
    // Record what the consumer reads; the recording ends with the stream.
    this.#output ??= this.#viewer.readable.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          recorder.output(chunk);
          controller.enqueue(chunk);
        },
        flush: () => recorder.close().catch(() => {}),
      }),
    );
    return this.#output;
  }

  /** Output this handle did not get: lost to the daemon's scrollback overflow, or skipped when it fell behind. */
  get gaps(): readonly Gap[] {
    return this.#viewer.gaps;
  }

  /** Output offset of the next byte `output` delivers: `attachShell(..., { from })` resumes there. */
  get offset(): number {
    return this.#viewer.position;
  }

  /** Whether this handle joined read-only (`write` and `resize` throw {@linkcode ShellReadOnlyError}). */
  get readOnly(): boolean {
    return this.#viewer.readOnly;
  }

  /** The terminal size as last set through this controller, or null when not known (an attach before a resize). */
  get size(): TerminalSize | null {
    return this.#viewer.hub.size;
  }

  /**
   * Every handle of this session on this controller (this one is `self`): read-only or not, which one owns the
   * size (the interactive handle that resized last), and how far behind each reader is. Handles on other
   * controllers attached to the same session are not listed.
   */
  get viewers(): ViewerInfo[] {
    return this.#viewer.hub.viewers(this.#viewer);
  }

  /**
   * Type into the terminal. Writes are sent in call order (across every handle of the session); a write resolves
   * once the daemon has credit for it.
   *
   * @param data Bytes, or text sent as UTF-8.
   * @throws {TypeError} When `data` is neither a string nor a Uint8Array.
   * @throws {ShellReadOnlyError} When this handle joined read-only.
   * @throws {ProcessExitedError} When the program has exited.
   */
  write(data: string | Uint8Array): Promise<void> {
    let bytes: Uint8Array;
    if (typeof data === "string") bytes = encoder.encode(data);
    else if (data instanceof Uint8Array) bytes = data.slice();
    else throw new TypeError(`data must be a string or Uint8Array, got ${typeof data}`);
    if (this.#viewer.readOnly) return Promise.reject(new ShellReadOnlyError(this.id, "write"));
    if (this.#viewer.left) return Promise.reject(this.#viewer.left);
    this.#recorder?.input(bytes);
    return this.#viewer.hub.write(bytes);
  }

  /**
   * Change the terminal size; the program gets SIGWINCH. The size follows the interactive handle that resized
   * last; the other handles of the session are told (`onResize` of `attachShell`).
   *
   * @param cols Width, an integer from 1 to 65535.
   * @param rows Height, an integer from 1 to 65535.
   * @throws {RangeError} For a size out of range.
   * @throws {ShellReadOnlyError} When this handle joined read-only.
   * @throws {ProcessExitedError} When the program has exited.
   */
  async resize(cols: number, rows: number): Promise<void> {
    checkSize("cols", cols);
    checkSize("rows", rows);
    if (this.#viewer.readOnly) throw new ShellReadOnlyError(this.id, "resize");
    await this.#viewer.hub.resize(this.#viewer, cols, rows);
    this.#recorder?.resize(cols, rows);
  }

  /**
   * Send a signal to the terminal's process group. `SIGHUP` hangs the terminal up, as closing an ssh session does.
   *
   * @param signal The signal. @default "SIGHUP"
   */
  async kill(signal: Deno.Signal = "SIGHUP"): Promise<void> {
    await this.#process.kill(signal);
  }

  /**
   * Stop following the session without ending it; `server.attachShell(daemonId, id)` picks it up again. Other
   * handles of the session keep watching; the last one to leave detaches from the daemon.
   */
  async detach(): Promise<void> {
    await this.#viewer.hub.leave(
      this.#viewer,
      new Error(`Detached from process ${this.#process.id}`),
    );
    // The recording belongs to this handle: it ends when the handle stops following the session.
    await this.#recorder?.close().catch(() => {});
  }

  /**
   * End the session: hang the terminal up (the daemon kills what survives the hangup after a short grace) and
   * wait for the exit. Resolves at once when the program has exited already.
   *
   * @returns How it ended.
   */
  async close(): Promise<ProcessStatus> {
    if (!this.#process.exited) {
      try {
        await this.#process.kill("SIGHUP");
      } catch (error) {
        if (!(error instanceof ProcessExitedError)) throw error;
      }
    }
    const status = await this.exited;
    const output = this.#output ?? this.#viewer.readable;
    if (!output.locked) await output.cancel().catch(() => {});
    await this.#recorder?.close().catch(() => {});
    return status;
  }

  /** Same as {@linkcode RemoteShell.close}; errors are ignored. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close().catch(() => {});
  }
}
