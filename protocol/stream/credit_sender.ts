/**
 * The sending half of a credit-controlled byte stream, shared by both sides (controller: stdin, terminal input,
 * uploads; daemon: process output, downloads). Pure bookkeeping, no I/O: the owner asks how much it may send, records
 * what it sent, feeds it the acks and gaps, and on a reconnect asks what to send again from the offset the receiver
 * reports.
 *
 * With `retain`, the bytes sent and not yet acknowledged are kept (as the views handed in, not copies) so they can
 * be sent again; a sender whose bytes live elsewhere (the daemon's output buffer, a file) leaves it off and re-reads
 * from its own store.
 *
 * @module
 */

import { CreditError } from "./credit_receiver.ts";

/** Options of {@linkcode CreditSender}. */
export interface CreditSenderOptions {
  /** Bytes that may be unacknowledged at once. */
  window: number;
  /** Offset of the first byte to send. @default 0 */
  from?: number;
  /** Keep unacknowledged bytes for a resend. @default false */
  retain?: boolean;
  /** Called with each retained piece once it is acknowledged (e.g. to reuse its buffer). */
  onRelease?: (bytes: Uint8Array) => void;
}

/** A piece to send again after a reconnect. */
export interface ResendPiece {
  /** Offset of its first byte. */
  offset: number;
  /** The bytes. */
  bytes: Uint8Array;
}

/**
 * Sender-side credit (window, acks, resend from an offset) of one stream.
 *
 * @example Send within the window, resume after a reconnect
 * ```ts
 * import { CreditSender } from "./credit_sender.ts";
 * const tx = new CreditSender({ window: 4, retain: true });
 * tx.sent(new Uint8Array([1, 2, 3]));
 * console.assert(tx.room === 1);
 * const again = tx.resume(1); // the receiver had bytes up to offset 1
 * console.assert(again.length === 1 && again[0]!.bytes.length === 2 && tx.room === 2);
 * ```
 */
export class CreditSender {
  /** Bytes that may be unacknowledged at once. */
  readonly window: number;
  readonly #retain: boolean;
  readonly #onRelease: ((bytes: Uint8Array) => void) | undefined;
  #offset: number;
  #acked: number;
  #retained: ResendPiece[] = [];
  #head = 0;

  /**
   * Make a sender.
   *
   * @param options Window, start offset and retention.
   * @throws {RangeError} For a window or offset that is not a positive or non-negative integer.
   */
  constructor(options: CreditSenderOptions) {
    const { window, from = 0 } = options;
    if (!Number.isSafeInteger(window) || window < 1) {
      throw new RangeError(`window must be a positive integer, got ${window}`);
    }
    if (!Number.isSafeInteger(from) || from < 0) {
      throw new RangeError(`from must be a non-negative integer, got ${from}`);
    }
    this.window = window;
    this.#retain = options.retain ?? false;
    this.#onRelease = options.onRelease;
    this.#offset = this.#acked = from;
  }

  /** Offset of the next byte to send. */
  get offset(): number {
    return this.#offset;
  }

  /** Offset the receiver has acknowledged. */
  get acked(): number {
    return this.#acked;
  }

  /** Bytes sent and not acknowledged. */
  get unacked(): number {
    return this.#offset - this.#acked;
  }

  /** Bytes that may be sent now. */
  get room(): number {
    return Math.max(0, this.#acked + this.window - this.#offset);
  }

  /**
   * Record bytes sent at {@linkcode CreditSender.offset} (kept for a resend when retaining).
   *
   * @param bytes The bytes, or their count when the sender keeps them elsewhere.
   * @returns The offset they were sent at.
   * @throws {RangeError} When they exceed the room the window leaves (a bug in the caller).
   */
  sent(bytes: Uint8Array | number): number {
    const length = typeof bytes === "number" ? bytes : bytes.length;
    if (length > this.room) {
      throw new RangeError(`Cannot send ${length} bytes: the window leaves ${this.room}`);
    }
    const offset = this.#offset;
    if (this.#retain && typeof bytes !== "number" && length > 0) {
      this.#retained.push({ offset, bytes });
    }
    this.#offset += length;
    return offset;
  }

  /**
   * The receiver acknowledged everything before `offset`. An ack that goes backwards or names bytes never sent is
   * ignored (acks may be reordered; a peer cannot gain credit by acking the future).
   *
   * @param offset The acknowledged offset.
   * @returns Whether credit grew.
   */
  ack(offset: number): boolean {
    if (!Number.isSafeInteger(offset) || offset <= this.#acked || offset > this.#offset) {
      return false;
    }
    this.#acked = offset;
    this.#release();
    return true;
  }

  /**
   * Skip to `to` without sending (the bytes were lost before anyone read them; the receiver is told by a gap and
   * counts them as acknowledged).
   *
   * @param to First offset after the skipped bytes.
   */
  skip(to: number): void {
    if (to <= this.#offset) return;
    this.#offset = to;
    this.#acked = Math.max(this.#acked, to);
    this.#release();
  }

  /**
   * A new link: the receiver has everything before `from`. Credit restarts from there; returns the retained bytes
   * to send again (none when not retaining: re-read from `from` instead).
   *
   * @param from The receiver's resume offset.
   * @throws {CreditError} When `from` lies beyond what was sent, or before bytes already released.
   */
  resume(from: number): ResendPiece[] {
    if (!Number.isSafeInteger(from) || from > this.#offset) {
      throw new CreditError(`Resume from offset ${from}, but only ${this.#offset} bytes were sent`);
    }
    if (from < this.#acked) {
      if (this.#retain) {
        throw new CreditError(
          `Resume from offset ${from}, but bytes before ${this.#acked} were acknowledged and released`,
        );
      }
      this.#acked = from;
    }
    if (!this.#retain) {
      this.#offset = from;
      this.#acked = from;
      return [];
    }
    this.#acked = from;
    this.#release();
    const pieces: ResendPiece[] = [];
    for (let i = this.#head; i < this.#retained.length; i++) {
      const { offset, bytes } = this.#retained[i]!;
      const skip = Math.max(0, from - offset);
      if (skip < bytes.length) {
        pieces.push({ offset: offset + skip, bytes: skip > 0 ? bytes.subarray(skip) : bytes });
      }
    }
    return pieces;
  }

  /**
   * Start the numbering at `from` (a fresh sender taking over a stream others wrote to before). Only before
   * anything was sent.
   *
   * @param from The receiver's next expected offset.
   * @throws {RangeError} When bytes were sent already, or `from` is not a non-negative integer.
   */
  startAt(from: number): void {
    if (this.unacked > 0 || this.#head < this.#retained.length) {
      throw new RangeError(
        `Cannot restart a stream at ${from}: ${this.unacked} bytes are in flight`,
      );
    }
    if (!Number.isSafeInteger(from) || from < 0) {
      throw new RangeError(`from must be a non-negative integer, got ${from}`);
    }
    this.#offset = this.#acked = from;
  }

  /** Drop the retained bytes (the stream failed). */
  clear(): void {
    this.#retained = [];
    this.#head = 0;
  }

  #release(): void {
    while (this.#head < this.#retained.length) {
      const first = this.#retained[this.#head]!;
      if (first.offset + first.bytes.length > this.#acked) break;
      this.#retained[this.#head++] = undefined as never;
      this.#onRelease?.(first.bytes);
    }
    if (this.#head === this.#retained.length) {
      this.#retained = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#retained.length) {
      this.#retained = this.#retained.slice(this.#head);
      this.#head = 0;
    }
  }
}
