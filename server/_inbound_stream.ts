// A stream of bytes the daemon sends (process output, terminal output, downloads), delivered to the user as a
// ReadableStream. Credit is returned (acked) as the user reads, so a consumer that stops reading stops the daemon.
// The credit rules (window, gaps, resend overlap, memory bound) are the shared CreditReceiver's; this class adds
// the link, the gap reports and the ReadableStream.
import { CreditReceiver, type SkippedRange } from "@sandd/protocol/stream";
import { ownsBuffer, release } from "./_message_buffers.ts";
import type { Connection } from "./_connection.ts";
import { StreamLink, Wakeup } from "./_stream_link.ts";
import { KIND_PROCESS, type StreamKind } from "./_metrics_state.ts";

/** Bytes lost from a stream because the daemon's retention window overflowed while nobody was reading. */
export interface Gap {
  /** Which stream. */
  stream: string;
  /** First lost offset. */
  from: number;
  /** First offset after the loss. */
  to: number;
}

export interface InboundStreamOptions {
  name: string;
  window: number;
  /** First offset wanted; null: whatever the daemon still retains. */
  from: number | null;
  /** What the bytes are, for the metrics. @default KIND_PROCESS */
  kind?: StreamKind;
  onGap?: (gap: Gap) => void;
  onEnd?: () => void;
}

export class InboundStream {
  readonly name: string;
  readonly window: number;
  readonly #credit: CreditReceiver;
  #ended = false;
  #finished = false;
  #error: Error | null = null;
  readonly #wakeup: Wakeup = new Wakeup();
  readonly #link: StreamLink = new StreamLink();
  #readable: ReadableStream<Uint8Array> | null = null;
  /** Whether {@linkcode InboundStream.drain} took the stream (then there is no ReadableStream). */
  #draining = false;
  /** What a BYOB read left of the chunk it took (the next read goes on from here). */
  #partial: Uint8Array | null = null;
  /** Whether the chunk `#partial` is part of was a message buffer of its own (freed once read). */
  #partialOwned = false;
  readonly #onGap: ((gap: Gap) => void) | undefined;
  readonly #onEnd: (() => void) | undefined;
  readonly #kind: StreamKind;
  cancelled = false;

  constructor(options: InboundStreamOptions) {
    this.name = options.name;
    this.window = options.window;
    this.#credit = new CreditReceiver({
      window: options.window,
      from: options.from,
      name: options.name,
    });
    this.#onGap = options.onGap;
    this.#onEnd = options.onEnd;
    this.#kind = options.kind ?? KIND_PROCESS;
  }

  /** Next offset expected from the daemon: where a re-attach resumes (null: from whatever it still retains). */
  get received(): number | null {
    return this.#credit.started ? this.#credit.received : null;
  }

  /** The bytes as a ReadableStream, made on first use (exec drains without one). */
  get readable(): ReadableStream<Uint8Array> {
    if (this.#readable) return this.#readable;
    if (this.#draining) throw new TypeError(`Stream ${this.name} is being drained already`);
    // A byte stream: a default reader gets each chunk as it arrived (its buffer transferred to the reader); a BYOB
    // reader (`getReader({ mode: "byob" })`) gets the bytes copied into its own buffer, and each message buffer is
    // detached once read, so its memory is reused for the next message at once instead of new pages being touched
    // for every message until a late garbage collection (a page fault costs ~6 µs here: 0.2-0.7 against 8-90
    // faults per MiB, about half the CPU per MiB of receiving).
    this.#readable = new ReadableStream({
      type: "bytes",
      pull: (controller) => this.#pull(controller),
      cancel: () => {
        this.cancelled = true;
        this.#partial = null;
        this.#credit.clear();
        this.#link.conn?.send({ t: "reset", sid: this.#link.sid, reason: "consumer cancelled" });
        this.#unbind();
        this.#finish();
      },
    });
    return this.#readable;
  }

  /**
   * Hand every chunk to `onChunk` as it arrives, without a ReadableStream (cheaper for a consumer that
   * collects everything). Resolves at the end, rejects with the stream's error. Exclusive with `readable`.
   */
  async drain(onChunk: (chunk: Uint8Array) => void): Promise<void> {
    if (this.#readable || this.#draining) {
      throw new TypeError(`Stream ${this.name} is being read already`);
    }
    this.#draining = true;
    while (true) {
      const chunk = await this.#next();
      if (chunk === null) break;
      onChunk(chunk);
    }
  }

  /** The next chunk (acking as it goes), null at the end; throws the stream's error. Finishes the stream. */
  async #next(): Promise<Uint8Array | null> {
    while (true) {
      const chunk = this.#take();
      if (chunk) return chunk;
      if (this.#ended) {
        this.#finish();
        return null;
      }
      if (this.#error) {
        this.#finish();
        throw this.#error;
      }
      await this.#wakeup.wait();
    }
  }

  /** Take the next queued chunk, returning credit as for a read. */
  #take(): Uint8Array | undefined {
    const chunk = this.#credit.take();
    const conn = this.#link.conn;
    if (!chunk || !conn) return chunk;
    // Credit goes back every quarter window, and whenever the consumer has caught up: the daemon's window for this
    // stream may be smaller than ours (it is capped by the daemon's retention), and it must never wait for an ack
    // we are holding back.
    const ack = this.#ended ? null : this.#credit.ackDue();
    if (ack !== null) conn.send({ t: "ack", sid: this.#link.sid, offset: ack });
    return chunk;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Whether the stream still wants a link (not ended, not cancelled, not failed). */
  get live(): boolean {
    return !this.#ended && !this.cancelled && !this.#error;
  }

  /** Route `sid` on `conn` to this stream. The stream resumes at `received`. */
  bind(conn: Connection, sid: number): void {
    this.#credit.rebind();
    this.#link.bind(conn, sid, {
      onData: (offset, payload) => this.#onData(offset, payload),
      onEof: (offset) => this.#onEof(offset),
      onGap: (from, to) => this.#gap(from, to),
      onReset: (reason) =>
        this.fail(new Error(`Stream ${this.name} reset by the daemon: ${reason}`)),
      onError: (error) => this.fail(error),
    });
  }

  #unbind(): void {
    this.#link.unbind();
  }

  #onData(offset: number, payload: Uint8Array): void {
    const conn = this.#link.conn;
    if (conn) conn.metrics.bytesReceived[this.#kind]! += payload.length;
    this.#apply(offset, () => this.#credit.data(offset, payload));
  }

  #gap(from: number, to: number): void {
    this.#apply(from, () => this.#credit.gap(from, to));
  }

  #onEof(offset: number): void {
    if (!this.#apply(offset, () => this.#credit.eof(offset))) return;
    this.#ended = true;
    this.#unbind();
    this.#wakeup.wake();
  }

  /** Apply a frame at `offset` to the credit; report what it skipped; a breach resets the stream. */
  #apply(offset: number, step: () => SkippedRange | null): boolean {
    if (!this.live) return false;
    const fresh = !this.#credit.started;
    let skipped;
    try {
      skipped = step();
    } catch (error) {
      this.#violation(error as Error);
      return false;
    }
    // A reader that asked for "whatever is retained" learns what came before it as a gap from 0.
    if (fresh && offset > 0) this.#gapped({ stream: this.name, from: 0, to: offset });
    if (skipped) this.#gapped({ stream: this.name, ...skipped });
    this.#wakeup.wake();
    return true;
  }

  #gapped(gap: Gap): void {
    const metrics = this.#link.conn?.metrics;
    if (metrics) {
      metrics.streamGaps++;
      metrics.streamGapBytes += gap.to - gap.from;
    }
    this.#onGap?.(gap);
  }

  /** The daemon broke the credit rules: reset the stream and fail it, instead of growing our memory. */
  #violation(error: Error): void {
    this.#link.conn?.send({ t: "reset", sid: this.#link.sid, reason: error.message.slice(0, 200) });
    this.fail(error);
  }

  fail(error: Error): void {
    if (this.#ended || this.#error || this.cancelled) return;
    this.#error = error;
    this.#unbind();
    this.#wakeup.wake();
  }

  async #pull(controller: ReadableByteStreamController): Promise<void> {
    while (true) {
      const partial = this.#partial;
      const chunk = partial ?? this.#take();
      this.#partial = null;
      if (chunk) {
        // A chunk that is not a message buffer of its own (a relayed frame shares one NATS read with other
        // messages) is neither detached nor transferred: that would take the others' bytes away.
        const owned = partial ? this.#partialOwned : ownsBuffer(chunk);
        const request = controller.byobRequest;
        const view = request?.view;
        if (request && view) {
          // Copied into the reader's buffer; the message buffer is freed once all of it is read.
          const n = Math.min(view.byteLength, chunk.length);
          new Uint8Array(view.buffer, view.byteOffset, n).set(chunk.subarray(0, n));
          if (n < chunk.length) {
            this.#partial = chunk.subarray(n);
            this.#partialOwned = owned;
          } else if (owned) release(chunk);
          request.respond(n);
        } else controller.enqueue(owned ? chunk : chunk.slice());
        return;
      }
      if (this.#ended) {
        controller.close();
        controller.byobRequest?.respond(0);
        this.#finish();
        return;
      }
      if (this.#error) {
        controller.error(this.#error);
        this.#finish();
        return;
      }
      await this.#wakeup.wait();
    }
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#onEnd?.();
  }
}
