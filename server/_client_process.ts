// A process on a worker seen through the control API: output streams that re-request from the last byte received
// when the HTTP stream drops (a gap is reported when the daemon no longer retains what was asked for), stdin as
// one streamed request body per handle (EOF when it is closed), the status as a long poll, signals.
import { SIGNALS } from "@sandd/protocol/constants";
import type { ProcessHandle } from "./controller.ts";
import { ProcessExitedError, SignalNotAllowedError, UnknownProcessError } from "./errors.ts";
import { DaemonDisconnectedError, DaemonNotFoundError } from "./errors.ts";
import type { Gap, ProcessStatus } from "./process.ts";
import type { Transport } from "./_client_http.ts";
import { ControlApiError } from "./_client_errors.ts";
import { resumable, Retry } from "./_client_resume.ts";
import { processStatus } from "./_client_wire.ts";

/** What an output stream is made with. */
export interface OutputInit {
  transport: Transport;
  daemonId: string;
  proc: string;
  stream: "stdout" | "stderr";
  /** First byte wanted; null for the oldest retained one (no gap reported for what came before). */
  from: number | null;
  onGap: (gap: Gap) => void;
  /** Aborts on detach or when the client closes: the stream errors with its reason. */
  stop: AbortSignal;
}

/**
 * One output stream of a process, resumable by byte offset: `GET .../output?stream=&from=&follow=true`, and after a
 * dropped connection the same from the first byte not received. A start beyond the offset asked for is a gap.
 */
export function resumableOutput(init: OutputInit): ReadableStream<Uint8Array> {
  const { transport, daemonId, proc, stream } = init;
  const path = `/daemons/${encodeURIComponent(daemonId)}/processes/${
    encodeURIComponent(proc)
  }/output`;
  let reportGap = init.from !== null;
  return resumable({
    transport,
    from: init.from ?? 0,
    stop: init.stop,
    path,
    open: async (offset, signal) => {
      const response = await transport.call("GET", path, {
        query: { stream, from: offset, follow: true },
        timeout: null,
        signal,
        context: { daemonId },
      });
      const header = response.headers.get("sandd-offset");
      const start = header === null ? offset : Number(header);
      if (!Number.isSafeInteger(start) || start < offset) {
        await response.body?.cancel().catch(() => {});
        throw new ControlApiError(
          "BAD_RESPONSE",
          `The control API sent a bad Sandd-Offset ${
            JSON.stringify(header)
          } for ${stream} from ${offset}`,
        );
      }
      if (start > offset && reportGap) init.onGap({ stream, from: offset, to: start });
      reportGap = true;
      return { start, body: response.body };
    },
  });
}

/** What a process handle is made with. */
export interface ProcessInit {
  daemonId: string;
  id: string;
  pid: number;
  command: string | string[];
  /** Whether stdin may be written. */
  stdin: boolean;
  /** First byte wanted of stdout and stderr (null: the oldest retained). */
  from: [number | null, number | null];
  onGap?: ((gap: Gap) => void) | undefined;
}

/** A `ProcessHandle` over the control API. */
export class ClientProcess implements ProcessHandle {
  readonly daemonId: string;
  readonly id: string;
  readonly pid: number;
  readonly command: string | string[];
  readonly stdout: ReadableStream<Uint8Array>;
  readonly stderr: ReadableStream<Uint8Array>;
  readonly status: Promise<ProcessStatus>;
  readonly gaps: Gap[] = [];
  readonly #transport: Transport;
  readonly #detached = new AbortController();
  readonly #stop: AbortSignal;
  readonly #path: string;
  readonly #hasStdin: boolean;
  #stdin: WritableStream<Uint8Array> | undefined;
  #exited: ProcessStatus | null = null;

  constructor(transport: Transport, init: ProcessInit) {
    this.#transport = transport;
    this.daemonId = init.daemonId;
    this.id = init.id;
    this.pid = init.pid;
    this.command = init.command;
    this.#hasStdin = init.stdin;
    this.#stop = AbortSignal.any([transport.closed, this.#detached.signal]);
    this.#path = `/daemons/${encodeURIComponent(init.daemonId)}/processes/${
      encodeURIComponent(init.id)
    }`;
    const onGap = (gap: Gap) => {
      this.gaps.push(gap);
      init.onGap?.(gap);
    };
    const output = (stream: "stdout" | "stderr", from: number | null) =>
      resumableOutput({
        transport,
        daemonId: init.daemonId,
        proc: init.id,
        stream,
        from,
        onGap,
        stop: this.#stop,
      });
    this.stdout = output("stdout", init.from[0]);
    this.stderr = output("stderr", init.from[1]);
    this.status = this.#poll();
    this.status.then((status) => this.#exited = status, () => {});
  }

  get exited(): ProcessStatus | null {
    return this.#exited;
  }

  get stdin(): WritableStream<Uint8Array> {
    if (!this.#hasStdin) throw new TypeError(`Process ${this.id} was started without stdin`);
    this.#stdin ??= this.#openStdin();
    return this.#stdin;
  }

  /** The long poll of the exit status, retried across dropped connections. */
  async #poll(): Promise<ProcessStatus> {
    const retry = new Retry(this.#transport.reconnectTimeoutMs, this.#stop);
    while (true) {
      try {
        const body = await this.#transport.json("GET", `${this.#path}/status`, {
          query: { wait: true },
          timeout: null,
          signal: this.#stop,
          context: { daemonId: this.daemonId },
        });
        retry.ok();
        const status = processStatus(body);
        if (status) return status;
      } catch (error) {
        await retry.failed(error);
      }
    }
  }

  #exitedError(): ProcessExitedError {
    return new ProcessExitedError(this.daemonId, {
      code: "PROCESS_EXITED",
      message: `Process ${this.id} has exited; cannot write to its stdin`,
    });
  }

  /** Stdin: one streamed `POST .../stdin?eof=true` opened by the first write; closing ends its body (EOF). */
  #openStdin(): WritableStream<Uint8Array> {
    let body: WritableStreamDefaultWriter<Uint8Array> | null = null;
    let answer: Promise<void> | null = null;
    let failure: Error | null = null;
    const aborted = new AbortController();
    const open = () => {
      const pipe = new TransformStream<Uint8Array, Uint8Array>(
        undefined,
        { highWaterMark: 0 },
        { highWaterMark: 0 },
      );
      body = pipe.writable.getWriter();
      answer = this.#transport.call("POST", `${this.#path}/stdin`, {
        query: { eof: true },
        body: pipe.readable,
        headers: { "content-type": "application/octet-stream" },
        timeout: null,
        signal: AbortSignal.any([this.#stop, aborted.signal]),
        context: { daemonId: this.daemonId },
      }).then(async (response) => {
        await response.body?.cancel();
      }, (error: Error) => {
        failure = error;
        body?.abort(error).catch(() => {});
        throw error;
      });
      answer.catch(() => {});
    };
    const check = () => {
      if (this.#stop.aborted) throw this.#stop.reason;
      if (failure) throw failure;
      if (this.#exited) throw this.#exitedError();
    };
    return new WritableStream<Uint8Array>({
      write: async (chunk) => {
        if (!(chunk instanceof Uint8Array)) {
          throw new TypeError(`stdin takes Uint8Array chunks, got ${typeof chunk}`);
        }
        check();
        if (!body) open();
        try {
          await Promise.race([body!.write(chunk.slice()), answer!.then(() => {})]);
        } catch (error) {
          throw failure ?? error;
        }
        if (failure) throw failure;
      },
      close: async () => {
        check();
        if (!body) open();
        await body!.close().catch(() => {});
        await answer!;
      },
      abort: async (reason) => {
        aborted.abort(reason);
        await body?.abort(reason).catch(() => {});
      },
    });
  }

  async kill(signal: Deno.Signal = "SIGTERM"): Promise<void> {
    if (!SIGNALS.includes(signal)) throw new SignalNotAllowedError(signal, SIGNALS);
    try {
      await this.#transport.json("POST", `${this.#path}/signal`, {
        json: { signal },
        context: { daemonId: this.daemonId },
      });
    } catch (error) {
      // As embedded: once the process has exited, "gone" in any form is PROCESS_EXITED.
      if (
        this.#exited &&
        (error instanceof UnknownProcessError || error instanceof DaemonDisconnectedError ||
          error instanceof DaemonNotFoundError)
      ) {
        throw new ProcessExitedError(this.daemonId, {
          code: "PROCESS_EXITED",
          message: `Process ${this.id} has already exited`,
        });
      }
      throw error;
    }
  }

  detach(): Promise<void> {
    this.#detached.abort(new Error(`Detached from process ${this.id}`));
    return Promise.resolve();
  }
}
