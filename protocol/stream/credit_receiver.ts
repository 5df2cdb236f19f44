/**
 * The receiving half of a credit-controlled byte stream, shared by both sides (controller: process output,
 * terminal output, downloads; daemon: stdin, uploads). Pure bookkeeping, no I/O: the owner feeds it what the link
 * delivers (`data`, `gap`, `eof`), takes bytes out as its consumer reads, and sends the acks it asks for.
 *
 * The rules it enforces, so that a peer cannot grow the receiver's memory without bound:
 * - data may reach at most `window` bytes beyond the last ack (the credit granted);
 * - a gap (bytes the sender lost before anyone read them) must start inside the credit granted; its bytes cost no
 *   memory, so the sender may then send a window beyond it, but the bytes queued here never exceed two windows
 *   (or, after a resume, what was queued then plus one window);
 * - data past the next expected offset is a hole: a gap where gaps are allowed, an error elsewhere;
 * - bytes already received (a resend after a reconnect) are trimmed, never doubled.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { ProtocolError } from "../errors.ts";

/**
 * A credit or ordering rule broken by the sending peer. The stream must be reset.
 *
 * @example Data past the window
 * ```ts
 * import { CreditError, CreditReceiver } from "./credit_receiver.ts";
 * try {
 *   new CreditReceiver({ window: 4 }).data(0, new Uint8Array(5));
 * } catch (error) {
 *   console.assert(error instanceof CreditError && error.code === "PROTOCOL");
 * }
 * ```
 */
export class CreditError extends ProtocolError {
  /**
   * Make a credit error.
   *
   * @param message What the peer did, with the offsets.
   */
  constructor(message: string) {
    super(message);
    this.name = "CreditError";
  }
}

/** Options of {@linkcode CreditReceiver}. */
export interface CreditReceiverOptions {
  /** Bytes the sender may have beyond the last ack. */
  window: number;
  /**
   * Offset of the first byte expected (a resume point); `null` lets the sender choose: its first data, gap or eof
   * sets the start (a reader asking for "whatever is still retained"). @default 0
   */
  from?: number | null;
  /** Return credit once this many consumed bytes are unacknowledged. @default window / 4 */
  ackEvery?: number;
  /**
   * Also return credit whenever the consumer has caught up with everything queued (needed when the sender's window
   * may be smaller than ours). @default true
   */
  ackWhenCaughtUp?: boolean;
  /** Whether the sender may skip bytes (`gap`, or data past the expected offset). @default true */
  gaps?: boolean;
  /** Copy the bytes accepted (when the link reuses the payload's buffer); else they are kept as views. @default false */
  copy?: boolean;
  /** Keep an incremental SHA-256 of the bytes accepted, checked by {@linkcode CreditReceiver.eof}. @default false */
  sha256?: boolean;
  /** Stream name for error messages. @default "stream" */
  name?: string;
}

/** Bytes `[from, to)` the sender skipped. */
export interface SkippedRange {
  /** First skipped offset. */
  from: number;
  /** First offset after the skipped bytes. */
  to: number;
}

/**
 * Receiver-side credit, queue and integrity of one stream.
 *
 * @example Accept, consume and ack
 * ```ts
 * import { CreditReceiver } from "./credit_receiver.ts";
 * const rx = new CreditReceiver({ window: 8, ackEvery: 4 });
 * rx.data(0, new Uint8Array(6));
 * const chunk = rx.take();
 * console.assert(chunk?.length === 6 && rx.ackDue() === 6);
 * ```
 */
export class CreditReceiver {
  #window: number;
  readonly #ackEvery: number;
  readonly #gaps: boolean;
  readonly #eager: boolean;
  readonly #copy: boolean;
  readonly #name: string;
  #hash: Hash | null;
  #received: number;
  #consumed: number;
  #acked: number;
  #queue: { end: number; bytes: Uint8Array }[] = [];
  #head = 0;
  #queued = 0;
  #eof: number | null = null;
  /** Whether the start offset is known (false until the first frame when `from` was null). */
  #started: boolean;
  /** Most bytes the queue may hold: two windows, or what a resume left queued plus the window granted then. */
  #queueLimit: number;

  /**
   * Make a receiver.
   *
   * @param options Window, start offset, ack schedule, gaps and hashing.
   * @throws {RangeError} For a window or offset that is not a positive or non-negative integer.
   */
  constructor(options: CreditReceiverOptions) {
    const { window, from = 0 } = options;
    if (!Number.isSafeInteger(window) || window < 1) {
      throw new RangeError(`window must be a positive integer, got ${window}`);
    }
    if (from !== null && (!Number.isSafeInteger(from) || from < 0)) {
      throw new RangeError(`from must be a non-negative integer or null, got ${from}`);
    }
    this.#window = window;
    this.#started = from !== null;
    this.#ackEvery = Math.max(1, Math.min(window, options.ackEvery ?? Math.floor(window / 4)));
    this.#gaps = options.gaps ?? true;
    this.#eager = options.ackWhenCaughtUp ?? true;
    this.#copy = options.copy ?? false;
    this.#name = options.name ?? "stream";
    this.#hash = options.sha256 ? createHash("sha256") : null;
    this.#received = this.#consumed = this.#acked = from ?? 0;
    this.#queueLimit = 2 * window;
  }

  /** Bytes the sender may have beyond the last ack. */
  get window(): number {
    return this.#window;
  }

  /** Whether the start is known: false while a receiver made with `from: null` has heard nothing yet. */
  get started(): boolean {
    return this.#started;
  }

  /** Offset of the next byte expected: where a resumed sender continues. */
  get received(): number {
    return this.#received;
  }

  /** Offset up to which the consumer has taken the bytes (skipped ranges count as taken). */
  get consumed(): number {
    return this.#consumed;
  }

  /** Offset of the last credit returned: the sender may send up to `acked + window`. */
  get acked(): number {
    return this.#acked;
  }

  /** Bytes accepted and not yet taken. */
  get queued(): number {
    return this.#queued;
  }

  /** The end offset once `eof` was accepted, else null. */
  get ended(): number | null {
    return this.#eof;
  }

  /** The highest offset the sender may currently send up to. */
  get limit(): number {
    return this.#acked + this.window;
  }

  /**
   * Accept a data frame. Returns the skipped range when the frame starts past the expected offset (a hole, only
   * when gaps are allowed), else null.
   *
   * @param offset Offset of the first payload byte.
   * @param payload The bytes (kept as a view, not copied).
   * @throws {CreditError} When the frame reaches past the credit granted, the queue would exceed two windows, the
   * stream has ended, or a hole appears where gaps are not allowed.
   */
  data(offset: number, payload: Uint8Array): SkippedRange | null {
    this.#start(offset);
    const end = offset + payload.length;
    if (this.#eof !== null) {
      throw new CreditError(
        `Stream ${this.#name}: data at offset ${offset} after its end at ${this.#eof}`,
      );
    }
    if (end > this.limit) {
      throw new CreditError(
        `Stream ${this.#name}: data up to offset ${end} beyond the credit granted up to ${this.limit}`,
      );
    }
    let skipped: SkippedRange | null = null;
    if (offset > this.#received) {
      if (!this.#gaps) {
        throw new CreditError(
          `Stream ${this.#name}: data at offset ${offset}, expected ${this.#received}`,
        );
      }
      skipped = this.#skip(this.#received, offset);
    }
    const skip = this.#received - offset;
    if (skip >= payload.length) return skipped;
    const length = payload.length - Math.max(0, skip);
    if (this.#queued + length > this.#queueLimit) {
      throw new CreditError(
        `Stream ${this.#name}: ${
          this.#queued + length
        } bytes queued, more than the ${this.#queueLimit} its credit allows`,
      );
    }
    const bytes = this.#copy
      ? payload.slice(Math.max(0, skip))
      : skip > 0
      ? payload.subarray(skip)
      : payload;
    this.#hash?.update(bytes);
    this.#received += bytes.length;
    this.#queued += bytes.length;
    this.#queue.push({ end: this.#received, bytes });
    return skipped;
  }

  /**
   * Accept a gap: the sender lost `[from, to)` before anyone read it. Returns the range newly skipped (clipped to
   * what was not received yet), or null when nothing new is skipped.
   *
   * @param from First lost offset.
   * @param to First offset after the loss.
   * @throws {CreditError} When gaps are not allowed, the range is inverted, or it starts beyond the credit granted.
   */
  gap(from: number, to: number): SkippedRange | null {
    if (!this.#gaps) {
      throw new CreditError(`Stream ${this.#name}: gaps are not allowed on this stream`);
    }
    if (to < from) {
      throw new CreditError(`Stream ${this.#name}: gap from ${from} to ${to} is inverted`);
    }
    if (to <= this.#received) return null;
    if (from >= this.limit) {
      throw new CreditError(
        `Stream ${this.#name}: gap from offset ${from} starts beyond the credit granted up to ${this.limit}`,
      );
    }
    if (this.#eof !== null) {
      throw new CreditError(
        `Stream ${this.#name}: gap at offset ${from} after its end at ${this.#eof}`,
      );
    }
    return this.#skip(Math.max(from, this.#received), to);
  }

  /** A receiver made with `from: null` starts where the sender's first frame does. */
  #start(offset: number): void {
    if (this.#started) return;
    this.#started = true;
    this.#received = this.#consumed = this.#acked = offset;
  }

  #skip(from: number, to: number): SkippedRange {
    this.#received = to;
    // The sender counts skipped bytes as acknowledged: its credit now runs from `to`.
    this.#acked = Math.max(this.#acked, to);
    if (this.#queued === 0) this.#consumed = Math.max(this.#consumed, to);
    this.#hash = null; // a stream with a hole has no checksum to verify
    return { from, to };
  }

  /**
   * Accept the end of the stream at `offset`. Returns the range skipped before it (a hole, when gaps are allowed).
   *
   * @param offset The offset after the last byte.
   * @param sha256 The sender's SHA-256 of the bytes, checked when hashing is on.
   * @throws {CreditError} When bytes are missing where gaps are not allowed, the end lies before bytes already
   * received, or the checksum differs.
   */
  eof(offset: number, sha256?: string): SkippedRange | null {
    this.#start(offset);
    let skipped: SkippedRange | null = null;
    if (offset < this.#received) {
      throw new CreditError(
        `Stream ${this.#name}: ended at offset ${offset} but ${this.#received} bytes arrived`,
      );
    }
    if (offset > this.#received) {
      if (!this.#gaps) {
        throw new CreditError(
          `Stream ${this.#name}: ended at offset ${offset} but ${this.#received} bytes arrived`,
        );
      }
      skipped = this.gap(this.#received, offset);
    }
    if (this.#hash) {
      const digest = this.#hash.digest("hex");
      this.#hash = null;
      if (sha256 !== digest) {
        throw new CreditError(
          `Stream ${this.#name}: SHA-256 mismatch: the sender sent ${sha256}, the receiver computed ${digest}`,
        );
      }
    }
    this.#eof = offset;
    return skipped;
  }

  /** Take the next queued chunk (the consumer read it), or undefined when none is queued. */
  take(): Uint8Array | undefined {
    if (this.#head >= this.#queue.length) return undefined;
    const item = this.#queue[this.#head]!;
    this.#queue[this.#head++] = undefined as never;
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    this.#queued -= item.bytes.length;
    // Once the queue is empty, skipped bytes after the last chunk are consumed too.
    this.#consumed = this.#queued === 0 ? this.#received : item.end;
    return item.bytes;
  }

  /**
   * The offset to acknowledge now, or null when no ack is due. An ack is due every `ackEvery` consumed bytes, and
   * (with `ackWhenCaughtUp`) whenever the consumer has caught up: the sender's window may be smaller than ours and
   * must never wait for an ack held back. Calling it records the ack as sent.
   *
   * @param flush Ack whatever is consumed, regardless of the schedule.
   */
  ackDue(flush = false): number | null {
    const unacked = this.#consumed - this.#acked;
    if (unacked <= 0) return null;
    const caughtUp = this.#eager && this.#queued === 0 && this.#eof === null;
    if (!flush && unacked < this.#ackEvery && !caughtUp) return null;
    this.#acked = this.#consumed;
    return this.#acked;
  }

  /**
   * The link changed: the sender resumes at {@linkcode CreditReceiver.received} with a fresh window from there.
   *
   * @param window The window of the new link. @default the current one
   * @returns The offset to resume from.
   * @throws {RangeError} For a window that is not a positive integer.
   */
  rebind(window: number = this.#window): number {
    if (!Number.isSafeInteger(window) || window < 1) {
      throw new RangeError(`window must be a positive integer, got ${window}`);
    }
    this.#window = window;
    this.#acked = this.#received;
    // Bytes still queued from before stay; the new window comes on top of them (one window per resume).
    this.#queueLimit = Math.max(2 * this.window, this.#queued + this.window);
    return this.#received;
  }

  /** Drop everything queued (the consumer went away). */
  clear(): void {
    this.#queue = [];
    this.#head = 0;
    this.#queued = 0;
    this.#consumed = this.#received;
  }
}
