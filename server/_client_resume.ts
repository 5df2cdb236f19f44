// Streams from the control API that survive dropped HTTP connections: a body is read into a bounded queue (so a
// reader that falls behind leaves the connection unread: backpressure), and when the connection drops the same
// resource is asked for again from the first byte not received. Used by process output and file downloads.
import { DaemonDisconnectedError, DaemonNotFoundError } from "./errors.ts";
import { isNetworkError, pause, type Transport } from "./_client_http.ts";
import type { SocketBody } from "./_client_socket_get.ts";

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
  /** The body: an answer's stream, or (file downloads) the body on its socket. */
  body: ReadableStream<Uint8Array> | SocketBody | null;
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
  /** Called with each chunk and the offset after it, before it is delivered; throw to fail the stream. */
  onChunk?: (chunk: Uint8Array, offset: number) => void;
  /** The path, to name it in a network error. */
  path: string;
}

/** What {@linkcode Resumer} reads an opened body with: its own reader over the body, cancelled without throwing. */
export interface BodySource {
  /** Stop reading the body (never rejects). */
  cancel(): Promise<void>;
}

/**
 * The part every resumable stream shares (`resumable` here, `downloadBody` for files): the offset reached, the
 * body opened and re-opened from it after a dropped connection (for at most the client's `reconnectTimeoutMs` of
 * failures in a row; errors from the API, 404, 503..., end it), and failing the stream when `stop` aborts. The
 * stream's own `pull` says how one piece is read and delivered.
 */
export class Resumer<R extends BodySource> {
  readonly #init: ResumableInit;
  readonly #wrap: (body: ReadableStream<Uint8Array> | SocketBody) => R;
  readonly #cancelled = new AbortController();
  readonly #stop: AbortSignal;
  readonly #retry: Retry;
  #offset: number;
  #reader: R | null = null;
  #ended = false;
  #fail: ((error: unknown) => void) | null = null;

  constructor(init: ResumableInit, wrap: (body: ReadableStream<Uint8Array> | SocketBody) => R) {
    this.#init = init;
    this.#wrap = wrap;
    this.#offset = init.from;
    this.#stop = AbortSignal.any([init.stop, this.#cancelled.signal]);
    this.#retry = new Retry(init.transport.reconnectTimeoutMs, this.#stop);
  }

  /** The stream's `start`: stopping fails the stream at once, even while nobody is reading. */
  start(controller: { error(reason: unknown): void }): void {
    this.#fail = (error) => controller.error(error);
    const init = this.#init;
    const onStop = () => {
      if (this.#cancelled.signal.aborted || this.#ended) return;
      this.#ended = true;
      try {
        controller.error(init.stop.reason);
      } catch {
        // ended already
      }
    };
    if (init.stop.aborted) onStop();
    else init.stop.addEventListener("abort", onStop, { once: true });
  }

  /**
   * The next piece of the body, read with `read` from the (re-)opened body: a non-empty chunk (passed to
   * `onChunk` with the offset after it), `null` at the end of the body, or `undefined` when the stream has ended
   * otherwise (failed with the final error, cancelled or stopped): then the caller delivers nothing.
   */
  async next(
    read: (reader: R) => Promise<Uint8Array | null>,
  ): Promise<Uint8Array | null | undefined> {
    const init = this.#init;
    while (!this.#ended) {
      try {
        this.#reader ??= await this.#open();
        const chunk = await read(this.#reader);
        this.#retry.ok();
        if (chunk === null) {
          this.#reader = null;
          this.#ended = true;
          return null;
        }
        if (chunk.length === 0) continue;
        this.#offset += chunk.length;
        init.onChunk?.(chunk, this.#offset);
        return chunk;
      } catch (error) {
        void this.#reader?.cancel();
        this.#reader = null;
        if (this.#ended) return undefined;
        // A body cut mid-way is a TypeError from the reader: a network failure like a refused connection.
        const failure = error instanceof TypeError && !this.#stop.aborted
          ? init.transport.failure(error, "GET", init.transport.url(init.path), this.#stop)
          : error;
        try {
          await this.#retry.failed(failure);
        } catch (final) {
          if (!this.#cancelled.signal.aborted && !this.#ended) {
            this.#ended = true;
            this.#fail?.(final);
          }
          return undefined;
        }
      }
    }
    return undefined;
  }

  /** The stream's `cancel`. */
  async cancel(): Promise<void> {
    this.#ended = true;
    this.#cancelled.abort();
    await this.#reader?.cancel();
  }

  async #open(): Promise<R> {
    const opened = await this.#init.open(this.#offset, this.#stop);
    this.#offset = opened.start;
    return this.#wrap(
      opened.body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() }),
    );
  }
}

/** A default reader over a body, as a {@linkcode BodySource}. */
interface ChunkSource extends BodySource {
  readonly reader: ReadableStreamDefaultReader<Uint8Array>;
}

/**
 * A byte stream that re-opens its source from the first byte not received after a dropped connection, for at
 * most the client's `reconnectTimeoutMs` of failures in a row. Errors from the API (404, 503...) end it.
 */
export function resumable(init: ResumableInit): ReadableStream<Uint8Array> {
  const resumer = new Resumer<ChunkSource>(init, (body) => {
    // Process output is asked for with `fetch` (`Transport.call`): always a stream.
    const reader = (body as ReadableStream<Uint8Array>).getReader();
    return { reader, cancel: () => reader.cancel().catch(() => {}) };
  });
  return new ReadableStream<Uint8Array>({
    start: (controller) => resumer.start(controller),
    pull: async (controller) => {
      const chunk = await resumer.next(async ({ reader }) => {
        const { done, value } = await reader.read();
        return done ? null : value;
      });
      if (chunk === null) controller.close();
      else if (chunk) controller.enqueue(chunk);
    },
    cancel: () => resumer.cancel(),
  }, new ByteLengthQueuingStrategy({ highWaterMark: BUFFER_BYTES }));
}
