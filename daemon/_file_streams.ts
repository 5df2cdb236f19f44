/**
 * The daemon's ends of file transfers, on the shared stream layer: an upload is a {@linkcode CreditReceiver}
 * (window, acks as the bytes reach the disk, SHA-256, reset), a download a {@linkcode CreditSender} (credit from
 * the controller's acks, resend from an offset) over a {@linkcode DownloadSource} that can read any byte again
 * (a file is re-read from its descriptor at the asked offset; an archive keeps its unacknowledged bytes, at most
 * one window).
 *
 * A transfer opened with a transfer key survives a dropped link: a download's sender keeps its source open, an
 * upload's receiver what it received, and both wait (see `_parked_transfers.ts`) for the controller to come back
 * and resume from the last byte the other side has; the SHA-256 still covers every byte once, end to end.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { FRAME_HEADER_BYTES, writeDataFrameHeader } from "@sandd/protocol/frame";
import { CreditError, CreditReceiver } from "@sandd/protocol/stream";
import { CreditSender } from "@sandd/protocol/stream";
import { allocateBinaryMessage } from "./_websocket_client.ts";
import type { Link, StreamRoute } from "./_link.ts";
import { DaemonRequestError } from "./process_table.ts";

/** Largest payload of one data frame a download sends. */
export const MAX_FRAME_PAYLOAD = 256 * 1024;

/**
 * How long a transfer may wait on the controller without progress before the daemon resets it and closes its
 * descriptor: a download that has used its window (or sent its end) and gets no ack, an upload waiting for bytes
 * that get none. Waiting on the daemon's own disk does not count; a transfer parked by a dropped link has its own
 * deadline (`PARK_MS`, the same length).
 */
export const TRANSFER_IDLE_MS = 60_000;

/** Free the memory of a chunk nothing holds any more, by detaching its buffer (best effort). */
function release(chunk: Uint8Array): void {
  try {
    (chunk.buffer as ArrayBuffer).transfer(0);
  } catch {
    // not detachable (or detached already): the garbage collector frees it
  }
}

/** A timer that does not keep the daemon alive. */
function idleTimer(ms: number, run: () => void): ReturnType<typeof setTimeout> {
  const timer = setTimeout(run, ms);
  Deno.unrefTimer(timer);
  return timer;
}

// --- uploads ---

/** Options of {@linkcode UploadReceiver}. */
export interface UploadReceiverOptions {
  /**
   * The link closed before the end of stream: the receiver keeps what it has and waits for
   * {@linkcode UploadReceiver.rebind} (or {@linkcode UploadReceiver.expire}). Without it, a closed link fails
   * the upload with `ECONNRESET`.
   */
  onDetached?: () => void;
  /**
   * Fail the upload (`ETIMEDOUT`, and reset the stream) when it waits this long for bytes that do not come.
   *
   * @default {TRANSFER_IDLE_MS}
   */
  idleMs?: number;
}

/** Receives an upload stream: queues at most one window, acknowledges as the bytes are consumed. */
export class UploadReceiver {
  readonly #credit: CreditReceiver;
  #link: Link;
  #sid: number;
  #route: StreamRoute | null = null;
  readonly #onDetached: (() => void) | undefined;
  #eof: { offset: number; sha256: string | undefined } | null = null;
  #error: Error | null = null;
  #wake: (() => void) | null = null;
  #discarding = false;
  #gone = false;
  readonly #idleMs: number;

  /**
   * Bind the upload's stream id on `link` (synchronously: data frames follow the request at once).
   *
   * @param link The controller's link.
   * @param sid The stream id the controller sends on.
   * @param window The window the controller was told (it sends at most that far beyond our last ack).
   * @param options What a closed link does.
   */
  constructor(link: Link, sid: number, window: number, options: UploadReceiverOptions = {}) {
    this.#link = link;
    this.#sid = sid;
    this.#onDetached = options.onDetached;
    this.#idleMs = options.idleMs ?? TRANSFER_IDLE_MS;
    this.#credit = new CreditReceiver({
      window,
      ackEvery: Math.max(1, Math.floor(window / 8)),
      ackWhenCaughtUp: false,
      gaps: false,
      sha256: true,
      name: `upload ${sid}`,
    });
    this.#bind(link, sid);
  }

  #bind(link: Link, sid: number): void {
    this.#unbind();
    const route: StreamRoute = {
      onData: (offset, payload) => this.#onData(offset, payload),
      onEof: (offset, sha256) => {
        this.#eof ??= { offset, sha256 };
        if (this.#discarding) this.#unbind();
        this.#wakeUp();
      },
      onReset: (reason) => {
        this.#fail(
          new DaemonRequestError("ECANCELED", `The controller cancelled the upload: ${reason}`),
        );
        this.#unbind();
      },
      onClose: () => {
        if (this.#route !== route) return;
        this.#route = null;
        if (this.#onDetached && !this.#error) {
          // Everything arrived already, or the controller may come back: keep going either way.
          if (!this.#eof) this.#onDetached();
          return;
        }
        this.#gone = true;
        this.#fail(new DaemonRequestError("ECONNRESET", "The link closed during the upload"));
      },
    };
    this.#link = link;
    this.#sid = sid;
    this.#route = route;
    link.bind(sid, route);
  }

  /**
   * Continue on another link: the controller resends from the offset acknowledged at once here (every byte
   * received so far), with `window` of credit from there.
   */
  rebind(link: Link, sid: number, window: number): void {
    if (this.#error) throw this.#error;
    this.#credit.rebind(window);
    this.#bind(link, sid);
    link.send({ t: "ack", sid, offset: this.#credit.received });
  }

  /** The controller did not come back: fail the upload. */
  expire(): void {
    this.#gone = true;
    this.#fail(new DaemonRequestError("ECONNRESET", "The link closed during the upload"));
  }

  /** Bytes received so far. */
  get received(): number {
    return this.#credit.received;
  }

  /** The end of stream, once the controller sent it. */
  get eof(): { offset: number; sha256: string | undefined } | null {
    return this.#eof;
  }

  #onData(offset: number, payload: Uint8Array): void {
    if (this.#error || this.#eof) return;
    try {
      this.#credit.data(offset, payload);
    } catch (error) {
      this.#fail(new DaemonRequestError("PROTOCOL", (error as Error).message));
      return;
    }
    this.#wakeUp();
  }

  #fail(error: Error): void {
    if (this.#error) return;
    this.#error = error;
    this.#credit.clear();
    this.#wakeUp();
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  #unbind(): void {
    if (this.#route) this.#link.unbind(this.#sid, this.#route);
    this.#route = null;
  }

  /** The next chunk; `null` at end of stream. Throws when the stream failed. */
  async read(): Promise<Uint8Array | null> {
    while (true) {
      if (this.#error) throw this.#error;
      const chunk = this.#credit.take();
      if (chunk) return chunk;
      if (this.#eof) return null;
      const timer = this.#armIdle();
      try {
        await new Promise<void>((resolve) => this.#wake = resolve);
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /** While waiting for bytes: fail the upload when none come within the idle deadline (not while parked). */
  #armIdle(): ReturnType<typeof setTimeout> {
    return idleTimer(this.#idleMs, () => {
      if (this.#error || this.#eof) return;
      if (!this.#route) {
        // Parked by a dropped link (the park has its own deadline): wait again once it is back.
        this.#wakeUp();
        return;
      }
      const message = `The upload received no data for ${this.#idleMs} ms`;
      this.#link.send({ t: "reset", sid: this.#sid, reason: `ETIMEDOUT: ${message}` });
      this.#gone = true;
      this.#fail(new DaemonRequestError("ETIMEDOUT", message));
    });
  }

  /**
   * The chunks read so far are written: return credit when an ack is due (or at once with `flush`).
   *
   * @param flush Ack at once.
   * @param written The chunk just written, when nothing holds it any more: its buffer (the WebSocket message it
   * arrived in) is detached, which frees it now rather than at a garbage collection that comes late when a
   * message arrives every half millisecond (the daemon grew by ~70 MiB during a 1 GiB upload).
   */
  consumed(flush = false, written?: Uint8Array): void {
    if (written) release(written);
    const ack = this.#credit.ackDue(flush);
    if (ack !== null && this.#route) this.#link.send({ t: "ack", sid: this.#sid, offset: ack });
  }

  /**
   * Check the end of stream against what arrived.
   *
   * @returns The SHA-256 of the bytes, verified.
   */
  verify(path: string, size: number | undefined): string {
    const eof = this.#eof!;
    const received = this.#credit.received;
    if (eof.offset !== received) {
      throw new DaemonRequestError(
        "EINTEGRITY",
        `Upload of '${path}' ended at offset ${eof.offset} but ${received} bytes arrived`,
        { path },
      );
    }
    if (size !== undefined && size !== received) {
      throw new DaemonRequestError(
        "EINTEGRITY",
        `Upload of '${path}' announced ${size} bytes but sent ${received}`,
        { path },
      );
    }
    if (eof.sha256 === undefined) {
      throw new DaemonRequestError("PROTOCOL", `Upload of '${path}' ended without a sha256`, {
        path,
      });
    }
    try {
      this.#credit.eof(eof.offset, eof.sha256);
    } catch (error) {
      if (!(error instanceof CreditError)) throw error;
      throw new DaemonRequestError(
        "EINTEGRITY",
        `SHA-256 mismatch for '${path}': ${error.message.replace(/^Stream [^:]*: /, "")}`,
        { path },
      );
    }
    return eof.sha256;
  }

  /** Done with the stream: unbind now, or once the controller ends or resets it after a failure. */
  finish(): void {
    if (this.#gone || this.#eof || !this.#error) this.#unbind();
    else this.#discarding = true;
  }
}

// --- downloads ---

/** Where a download's bytes come from. Every byte not yet acknowledged can be read again (for a resume). */
export interface DownloadSource {
  /**
   * Read up to `buffer.length` bytes starting at `offset` into `buffer`.
   *
   * @returns The count read; 0 at the end of the data.
   */
  read(buffer: Uint8Array, offset: number): Promise<number>;
  /** The controller has every byte before `offset`: a source that keeps bytes may drop them. */
  release?(offset: number): void;
  /** The transfer is over: close what the source holds. */
  close(): void;
}

/** A regular file, read by offset from its open descriptor. */
export function fileSource(
  read: (buffer: Uint8Array, offset: number) => number,
  close: () => void,
): DownloadSource {
  let closed = false;
  return {
    read: (buffer, offset) => Promise.resolve(closed ? 0 : read(buffer, offset)),
    close: () => {
      if (closed) return;
      closed = true;
      close();
    },
  };
}

/**
 * A byte stream (a tar archive being packed) made re-readable: the bytes not yet acknowledged are kept (at most
 * a window plus one chunk), so a resume can send them again.
 */
export function streamSource(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  close: () => void,
): DownloadSource {
  const kept: { offset: number; bytes: Uint8Array }[] = [];
  let produced = 0;
  let released = 0;
  let done = false;
  let closed = false;
  return {
    async read(buffer, offset) {
      if (offset < released) {
        throw new CreditError(
          `Cannot read offset ${offset} again: bytes before ${released} are gone`,
        );
      }
      while (offset >= produced) {
        if (done || closed) return 0;
        const next = await reader.read();
        if (next.done) {
          done = true;
          return 0;
        }
        if (next.value.length === 0) continue;
        kept.push({ offset: produced, bytes: next.value });
        produced += next.value.length;
      }
      for (const piece of kept) {
        const end = piece.offset + piece.bytes.length;
        if (offset >= end) continue;
        const from = offset - piece.offset;
        const n = Math.min(buffer.length, piece.bytes.length - from);
        buffer.set(piece.bytes.subarray(from, from + n));
        return n;
      }
      return 0;
    },
    release(offset) {
      released = Math.max(released, offset);
      while (kept.length > 0 && kept[0]!.offset + kept[0]!.bytes.length <= released) kept.shift();
    },
    close() {
      if (closed) return;
      closed = true;
      kept.length = 0;
      close();
    },
  };
}

/** Options of {@linkcode DownloadSender}. */
export interface DownloadSenderOptions {
  /** The controller's window. */
  window: number;
  /** First offset to send. @default 0 */
  from?: number;
  /** Turn a read failure into the reset's `CODE: message`. */
  describeError: (error: unknown) => { code: string; message: string };
  /**
   * The link closed before the controller had everything: the sender keeps its source and waits for
   * {@linkcode DownloadSender.resume}. Without it, a closed link ends the transfer.
   */
  onDetached?: () => void;
  /** The transfer is over (ended and acknowledged, reset, failed, or given up). */
  onDone?: () => void;
  /**
   * Reset the download (`ETIMEDOUT`) and close its source when the controller sends no ack this long while the
   * sender waits for one (its window used up, or its end sent).
   *
   * @default {TRANSFER_IDLE_MS}
   */
  idleMs?: number;
}

/** Sends a download stream as the controller grants credit; can resume on another link from any unacknowledged byte. */
export class DownloadSender {
  readonly #source: DownloadSource;
  readonly #credit: CreditSender;
  readonly #describeError: (error: unknown) => { code: string; message: string };
  readonly #onDetached: (() => void) | undefined;
  readonly #onDone: (() => void) | undefined;
  readonly #hash: Hash = createHash("sha256");
  /** Offset up to which the hash covers the stream (bytes sent again after a resume are not hashed twice). */
  #hashed: number;
  #digest: string | null = null;
  /** The end offset, once the source reached it. */
  #end: number | null = null;
  #binding: { link: Link; sid: number; route: StreamRoute } | null = null;
  #pumping = false;
  #done = false;
  readonly #idleMs: number;
  #idle: ReturnType<typeof setTimeout> | undefined = undefined;

  /**
   * @param source Where the bytes come from.
   * @param options Window, start offset and the owner's hooks.
   */
  constructor(source: DownloadSource, options: DownloadSenderOptions) {
    this.#source = source;
    this.#credit = new CreditSender({ window: options.window, from: options.from ?? 0 });
    this.#hashed = options.from ?? 0;
    this.#describeError = options.describeError;
    this.#onDetached = options.onDetached;
    this.#onDone = options.onDone;
    this.#idleMs = options.idleMs ?? TRANSFER_IDLE_MS;
  }

  /** Offset of the next byte to send. */
  get offset(): number {
    return this.#credit.offset;
  }

  /** Whether the transfer is over. */
  get done(): boolean {
    return this.#done;
  }

  /** Whether a link carries the stream now. */
  get attached(): boolean {
    return this.#binding !== null;
  }

  /** Send on `sid` of `link` (the first link, or another after {@linkcode DownloadSender.resume}). */
  bind(link: Link, sid: number): void {
    this.#unbind();
    const route: StreamRoute = {
      onAck: (offset) => this.#onAck(offset),
      onReset: () => this.stop(),
      onClose: () => {
        if (this.#binding?.route !== route) return;
        this.#binding = null;
        this.#disarmIdle();
        if (this.#onDetached && !this.#done) this.#onDetached();
        else this.stop();
      },
    };
    this.#binding = { link, sid, route };
    link.bind(sid, route);
  }

  /**
   * Continue on another link from `from`, the offset the controller has every byte before.
   *
   * @throws {CreditError} When `from` lies beyond what was sent, or before bytes the source no longer has.
   */
  resume(link: Link, sid: number, from: number): void {
    if (this.#done) throw new CreditError(`The transfer is over`);
    this.#credit.resume(from);
    this.bind(link, sid);
    // After the reply to the resume request, as for the first request.
    setTimeout(() => void this.pump(), 0);
  }

  /** End the transfer: unbind, close the source. */
  stop(): void {
    if (this.#done) return;
    this.#done = true;
    this.#disarmIdle();
    this.#unbind();
    this.#source.close();
    this.#onDone?.();
  }

  #unbind(): void {
    const binding = this.#binding;
    this.#binding = null;
    binding?.link.unbind(binding.sid, binding.route);
  }

  /** Waiting for the controller's ack: reset the transfer unless one comes within the idle deadline. */
  #armIdle(): void {
    if (this.#done || this.#idle !== undefined) return;
    this.#idle = idleTimer(this.#idleMs, () => {
      this.#idle = undefined;
      const binding = this.#binding;
      if (this.#done || !binding) return;
      binding.link.send({
        t: "reset",
        sid: binding.sid,
        reason: `ETIMEDOUT: The download received no acknowledgement for ${this.#idleMs} ms`,
      });
      this.stop();
    });
  }

  #disarmIdle(): void {
    clearTimeout(this.#idle);
    this.#idle = undefined;
  }

  #onAck(offset: number): void {
    this.#disarmIdle();
    if (this.#end !== null && offset === this.#end && this.#credit.offset === this.#end) {
      // The controller has the end: nothing left to resume.
      this.stop();
      return;
    }
    if (this.#credit.ack(offset)) this.#source.release?.(this.#credit.acked);
    void this.pump();
  }

  #hashSent(bytes: Uint8Array, offset: number): void {
    const end = offset + bytes.length;
    if (end <= this.#hashed) return;
    this.#hash.update(bytes.subarray(this.#hashed - offset));
    this.#hashed = end;
  }

  /** Send while the window allows. */
  async pump(): Promise<void> {
    if (this.#pumping || this.#done) return;
    this.#pumping = true;
    try {
      while (!this.#done) {
        const binding = this.#binding;
        if (!binding) return;
        const offset = this.#credit.offset;
        if (this.#end !== null && offset >= this.#end) {
          this.#sendEof(binding);
          return;
        }
        const room = Math.min(MAX_FRAME_PAYLOAD, this.#credit.room);
        if (room <= 0) {
          this.#armIdle();
          return;
        }
        // A pooled socket buffer, framed and masked in place: the file's bytes are copied once, by the read.
        const frame = allocateBinaryMessage(FRAME_HEADER_BYTES + room);
        const n = await this.#source.read(frame.subarray(FRAME_HEADER_BYTES), offset);
        if (this.#done) return;
        // The link changed while reading (dropped, or resumed elsewhere): read again where the stream is now.
        if (this.#binding !== binding || this.#credit.offset !== offset) continue;
        if (n === 0) {
          this.#end = offset;
          this.#sendEof(binding);
          return;
        }
        const payload = frame.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + n);
        this.#hashSent(payload, offset);
        this.#credit.sent(n);
        binding.link.sendBinary(
          writeDataFrameHeader(frame.subarray(0, FRAME_HEADER_BYTES + n), binding.sid, offset),
        );
      }
    } catch (error) {
      const e = this.#describeError(error);
      const binding = this.#binding;
      binding?.link.send({ t: "reset", sid: binding.sid, reason: `${e.code}: ${e.message}` });
      this.stop();
    } finally {
      this.#pumping = false;
    }
  }

  #sendEof(binding: { link: Link; sid: number }): void {
    this.#digest ??= this.#hash.digest("hex");
    binding.link.send({ t: "eof", sid: binding.sid, offset: this.#end!, sha256: this.#digest });
    // Without a way to resume, the transfer is over; with one, it ends when the controller acknowledges the end.
    if (!this.#onDetached) this.stop();
    else this.#armIdle();
  }
}
