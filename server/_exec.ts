// Starting processes on daemons: spawn and attach (pipes or a terminal), and exec, which runs a command to
// completion and collects its output.
import type { SpawnArgs } from "@sandd/protocol/messages";
import type { AttachReply, SpawnReply } from "@sandd/protocol/replies";
import type { Connection } from "./_connection.ts";
import type { MetricsState } from "./_metrics_state.ts";
import type { ProcessRegistry } from "./_registry.ts";
import { CommandTimeoutError } from "./errors.ts";
import type { AttachOptions, ExecOptions, ExecResult, SpawnOptions } from "./options.ts";
import { ProcessSession, streamOffsets } from "./_process_session.ts";

/**
 * Flow-control window of terminal streams. The daemon clamps a stream's window to its retention (the shell's
 * scrollback, as small as 64 KiB) and the controller acknowledges every quarter window, so a terminal window
 * must stay within 4 x 64 KiB or a small scrollback would stall the stream. Plenty for interactive output.
 */
const SHELL_WINDOW = 256 * 1024;

/** Output kept per stream by `exec` unless `maxOutputBytes` says otherwise. */
const DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024;

export interface LauncherOptions {
  /** The live connection to a daemon; throws `DaemonNotFoundError`. */
  connection(id: string): Connection;
  /** Charge one command to the rate limits; throws `RateLimitedError`. */
  charge(id: string): void;
  registry: ProcessRegistry;
  metrics: MetricsState;
  streamWindow: number;
  /** The largest window a stream's measured round trip may grow it to. */
  maxStreamWindow: number;
  reconnectGraceMs: number;
}

/** The rate a stream's window is sized for: about what one stream reaches on loopback. */
const TARGET_BYTES_PER_SECOND = 256 * 1024 * 1024;

/**
 * The flow-control window of a new stream on a link with this round trip: enough for the target rate over that
 * RTT (window / RTT is a stream's ceiling), never below `min` (the configured `streamWindow`) nor above `max`. The
 * daemon caps it further at its retention, which it must keep for a resend.
 */
export function streamWindowFor(rttMs: number | undefined, min: number, max: number): number {
  if (rttMs === undefined || !(rttMs > 0)) return min;
  const wanted = Math.ceil((TARGET_BYTES_PER_SECOND * rttMs) / 1000);
  return Math.max(min, Math.min(max, wanted));
}

export class Launcher {
  readonly #options: LauncherOptions;

  constructor(options: LauncherOptions) {
    this.#options = options;
  }

  #window(pty: boolean, rttMs?: number): number {
    if (pty) return Math.min(this.#options.streamWindow, SHELL_WINDOW);
    return streamWindowFor(rttMs, this.#options.streamWindow, this.#options.maxStreamWindow);
  }

  /** Start a process; with `pty`, on a terminal of that size (one output stream). */
  async spawn(
    id: string,
    command: string | string[],
    options: SpawnOptions,
    pty?: { cols: number; rows: number },
  ): Promise<ProcessSession> {
    const conn = this.#options.connection(id);
    try {
      this.#options.charge(id);
    } catch (error) {
      this.#options.metrics.commandsRateLimited++;
      throw error;
    }
    const window = this.#window(pty !== undefined, conn.info.rttMs);
    const process = new ProcessSession({
      host: this.#options.registry.host,
      daemonId: id,
      command,
      window,
      outputs: pty
        ? [{ name: "output", from: 0 }]
        : [{ name: "stdout", from: 0 }, { name: "stderr", from: 0 }],
      stdin: options.stdin ?? true,
      terminal: pty !== undefined,
      onGap: options.onGap,
    });
    const { outputs, stdin } = process.bindStreams(conn);
    const args: SpawnArgs = {
      command,
      stdout: outputs[0]!,
      window,
      ...(outputs[1] !== undefined ? { stderr: outputs[1] } : {}),
      ...(stdin !== undefined ? { stdin } : {}),
      ...(options.env ? { env: options.env } : {}),
      ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
      ...(options.timeout !== undefined ? { timeoutMs: options.timeout } : {}),
      ...(options.retainBytes !== undefined ? { retainBytes: options.retainBytes } : {}),
      ...(pty ? { pty } : {}),
    };
    let data: SpawnReply;
    try {
      data = await conn.request("spawn", args);
    } catch (error) {
      process.fail(error as Error);
      throw error;
    }
    process.started(conn, data.proc, data.pid, stdin, 0);
    this.#options.registry.register(process);
    const ended = this.#options.metrics.processStarted(pty !== undefined);
    process.status.then(ended, ended);
    return process;
  }

  /** Attach to a process the daemon holds; output replays from `options.from`. */
  async attach(
    id: string,
    processId: string,
    options: AttachOptions,
    pty: boolean,
  ): Promise<ProcessSession> {
    const conn = this.#options.connection(id);
    const window = this.#window(pty, conn.info.rttMs);
    const [from, errFrom] = streamOffsets(options.from);
    const process = new ProcessSession({
      host: this.#options.registry.host,
      daemonId: id,
      command: "",
      window,
      outputs: pty
        ? [{ name: "output", from }]
        : [{ name: "stdout", from }, { name: "stderr", from: errFrom }],
      stdin: options.stdin ?? true,
      terminal: pty,
      onGap: options.onGap,
    });
    const { outputs, stdin } = process.bindStreams(conn);
    process.started(conn, processId, 0, undefined, 0);
    this.#options.registry.register(process);
    let data: AttachReply;
    try {
      data = await conn.request("attach", {
        proc: processId,
        window,
        stdout: { sid: outputs[0]!, from },
        ...(outputs[1] !== undefined ? { stderr: { sid: outputs[1], from: errFrom } } : {}),
        ...(stdin !== undefined ? { stdin } : {}),
      });
    } catch (error) {
      process.fail(error as Error);
      throw error;
    }
    const stdinOffset = data.stdinOffset;
    // A new handle taking over stdin continues the daemon's numbering: its first byte is the daemon's next one
    // (otherwise the daemon would skip as many bytes as earlier writers had sent).
    const input = process.input;
    if (input && input.offset === 0 && input.acked === 0) input.offset = stdinOffset;
    process.started(conn, processId, data.pid, stdin, stdinOffset);
    return process;
  }

  /** Run a command to completion and collect its output. */
  async exec(id: string, command: string | string[], options: ExecOptions): Promise<ExecResult> {
    const started = performance.now();
    const process = await this.spawn(id, command, {
      stdin: options.stdin !== undefined,
      ...(options.env ? { env: options.env } : {}),
      ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
      ...(options.timeout !== undefined ? { timeout: options.timeout } : {}),
    });
    const max = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
    const out = new Collector(max);
    const err = new Collector(max);
    const partial = () => ({
      stdout: out.text(),
      stderr: err.text(),
      durationMs: performance.now() - started,
    });
    const onAbort = () => {
      process.kill("SIGKILL").catch(() => {});
      process.fail(options.signal!.reason);
    };
    options.signal?.addEventListener("abort", onAbort, { once: true });
    // Aborted while the spawn request was in flight: the listener came too late to hear it.
    if (options.signal?.aborted) onAbort();
    // Backstop in case the daemon never reports the timeout kill.
    const backstop = options.timeout !== undefined
      ? setTimeout(
        () => process.fail(new CommandTimeoutError(options.timeout!, partial())),
        options.timeout + Math.max(5_000, this.#options.reconnectGraceMs + 1_000),
      )
      : undefined;
    try {
      if (options.stdin !== undefined) {
        const bytes = typeof options.stdin === "string"
          ? new TextEncoder().encode(options.stdin)
          : options.stdin;
        const input = process.input!;
        input.write(bytes).then(() => input.end(), () => {});
      }
      await Promise.all([
        process.drainOutput(0, (chunk) => out.add(chunk)),
        process.drainOutput(1, (chunk) => err.add(chunk)),
      ]);
      const status = await process.status;
      if (status.timedOut) throw new CommandTimeoutError(options.timeout!, partial());
      this.#options.metrics.execLatency.observe((performance.now() - started) / 1000);
      return {
        stdout: out.text(),
        stderr: err.text(),
        stdoutBytes: out.bytes(),
        stderrBytes: err.bytes(),
        exitCode: status.exitCode,
        signal: status.signal,
        durationMs: performance.now() - started,
        truncated: {
          stdout: out.truncated || status.truncated?.[0] === true,
          stderr: err.truncated || status.truncated?.[1] === true,
        },
      };
    } finally {
      clearTimeout(backstop);
      options.signal?.removeEventListener("abort", onAbort);
    }
  }
}

/** One decoder for every collector: `decode` without `stream` keeps no state between calls. */
const DECODER = new TextDecoder();

/** Output of one stream, up to a cap. */
class Collector {
  readonly #max: number;
  readonly #chunks: Uint8Array[] = [];
  #length = 0;
  truncated = false;

  constructor(max: number) {
    this.#max = max;
  }

  add(chunk: Uint8Array): void {
    const room = this.#max - this.#length;
    if (chunk.length > room) this.truncated = true;
    if (room <= 0) return;
    const part = chunk.length > room ? chunk.slice(0, room) : chunk;
    this.#chunks.push(part);
    this.#length += part.length;
  }

  bytes(): Uint8Array {
    if (this.#chunks.length === 1) return this.#chunks[0]!;
    if (this.#length === 0) return new Uint8Array(0);
    const out = new Uint8Array(this.#length);
    let at = 0;
    for (const chunk of this.#chunks) {
      out.set(chunk, at);
      at += chunk.length;
    }
    return out;
  }

  text(): string {
    return this.#length === 0 ? "" : DECODER.decode(this.bytes());
  }
}
