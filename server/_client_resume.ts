// Streams from the control API that survive dropped HTTP connections: a body is read into a bounded queue (so a
// reader that falls behind leaves the connection unread: backpressure), and when the connection drops the same
// resource is asked for again from the first byte not received. Used by process output and file downloads.
import { DaemonDisconnectedError, DaemonNotFoundError } from "./errors.ts";
import { isNetworkError, pause, type Transport } from "./_client_http.ts";

/** First and longest pause between attempts to reach the controller again. */
const RETRY_FIRST_MS = 50;
const RETRY_MAX_MS = 1_000;
/** Bytes buffered ahead of the reader before the HTTP body is left unread. */
const BUFFER_BYTES = 256 * 1024;

/** Keep retrying a call that fails with a network error, for at most `limit` ms of failures in a row. */
export class Retry {
  #since: number | null = null;
  #delay = RETRY_FIRST_MS;
  readonly #limit: number;
  readonly #stop: AbortSignal;

  constructor(limit: number, stop: AbortSignal) {
    this.#limit = limit;
    this.#stop = stop;
  }

  /** Something got through: the next failure starts a new streak. */
  ok(): void {
    this.#since = null;
    this.#delay = RETRY_FIRST_MS;
  }

  /**
   * After a failure: resolves to retry, rethrows when the error is final or the streak is too long. A dropped
   * connection is worth retrying, and so is a daemon that is away (its link dropped while the controller was
   * asked): it may come back, as the embedded handle waits for it within the controller's grace.
   */
  async failed(error: unknown): Promise<void> {
    if (this.#stop.aborted) throw this.#stop.reason;
    if (
      !isNetworkError(error) && !(error instanceof DaemonDisconnectedError) &&
      !(error instanceof DaemonNotFoundError)
    ) {
      throw error;
    }
    this.#since ??= Date.now();
    if (Date.now() - this.#since > this.#limit) throw error;
    await pause(this.#delay, this.#stop);
    this.#delay = Math.min(this.#delay * 2, RETRY_MAX_MS);
    if (this.#stop.aborted) throw this.#stop.reason;
  }
}

/** An opened (or re-opened) body: where it starts and its reader. */
export interface Opened {
  /** Offset of the body's first byte (greater than asked for when older bytes are gone). */
  start: number;
  /** The body. */
  body: ReadableStream<Uint8Array> | null;
}

/** What a resumable stream is made with. */
export interface ResumableInit {
  transport: Transport;
  /** Offset of the first byte wanted. */
  from: number;
  /** Make the request for the bytes from `offset` on; rejects with the mapped error. */
  open: (offset: number, signal: AbortSignal) => Promise<Opened>;
  /** The stream fails with this signal's reason when it aborts (detach, client closed, caller's abort). */
  stop: AbortSignal;
  /** Called with each chunk and the offset after it, before it is queued; throw to fail the stream. */
  onChunk?: (chunk: Uint8Array, offset: number) => void;
  /** The path, to name it in a network error. */
  path: string;
}

/**
 * A byte stream that re-opens its source from the first byte not received after a dropped connection, for at
 * most the client's `reconnectTimeoutMs` of failures in a row. Errors from the API (404, 503...) end it.
 */
export function resumable(init: ResumableInit): ReadableStream<Uint8Array> {
  const { transport } = init;
  const cancelled = new AbortController();
  const stop = AbortSignal.any([init.stop, cancelled.signal]);
  const retry = new Retry(transport.reconnectTimeoutMs, stop);
  let offset = init.from;
  let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  let ended = false;
  const open = async (): Promise<ReadableStreamDefaultReader<Uint8Array>> => {
    const opened = await init.open(offset, stop);
    offset = opened.start;
    return (opened.body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() }))
      .getReader();
  };
  return new ReadableStream<Uint8Array>({
    start: (controller) => {
      // Stopping fails the stream at once, even while nobody is reading.
      const onStop = () => {
        if (cancelled.signal.aborted || ended) return;
        ended = true;
        try {
          controller.error(init.stop.reason);
        } catch {
          // ended already
        }
      };
      if (init.stop.aborted) onStop();
      else init.stop.addEventListener("abort", onStop, { once: true });
    },
    pull: async (controller) => {
      while (!ended) {
        try {
          reader ??= await open();
          const { done, value } = await reader.read();
          retry.ok();
          if (done) {
            reader = null;
            ended = true;
            controller.close();
            return;
          }
          if (value.length === 0) continue;
          offset += value.length;
          init.onChunk?.(value, offset);
          controller.enqueue(value);
          return;
        } catch (error) {
          reader?.cancel().catch(() => {});
          reader = null;
          if (ended) return;
          // A body cut mid-way is a TypeError from the reader: a network failure like a refused connection.
          const failure = error instanceof TypeError && !stop.aborted
            ? transport.failure(error, "GET", transport.url(init.path), stop)
            : error;
          try {
            await retry.failed(failure);
          } catch (final) {
            if (!cancelled.signal.aborted && !ended) {
              ended = true;
              controller.error(final);
            }
            return;
          }
        }
      }
    },
    cancel: async () => {
      ended = true;
      cancelled.abort();
      await reader?.cancel().catch(() => {});
    },
  }, new ByteLengthQueuingStrategy({ highWaterMark: BUFFER_BYTES }));
}
