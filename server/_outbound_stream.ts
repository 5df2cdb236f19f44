// A stream of bytes the controller sends to the daemon (stdin, terminal input, uploads), offered to the user as a
// WritableStream. A write resolves once the daemon has credit for it; unacknowledged bytes are kept so that they
// can be sent again after a reconnect, from the offset the daemon reports.
import { DaemonDisconnectedError } from "./errors.ts";
import type { Connection, InboundRoute } from "./_connection.ts";
import { allocateDataFrame } from "../protocol/frame.ts";

const MAX_FRAME = 256 * 1024;

export interface OutboundStreamOptions {
  window: number;
  /** Called before each write; throw to refuse it (e.g. the process exited). */
  check?: () => void;
  /** Daemon id for errors. */
  daemonId: string;
}

export class OutboundStream {
  readonly writable: WritableStream<Uint8Array>;
  readonly window: number;
  /** Offset of the next byte the user writes. */
  offset = 0;
  #acked = 0;
  #retained: { offset: number; bytes: Uint8Array }[] = [];
  /** Full-size frame buffers the daemon has acknowledged, reused for the next pieces (no garbage per frame). */
  #pool: Uint8Array[] = [];
  #conn: Connection | null = null;
  #sid = 0;
  #route: InboundRoute | null = null;
  #waiters: (() => void)[] = [];
  #error: Error | null = null;
  #eofOffset: number | null = null;
  readonly #options: OutboundStreamOptions;

  constructor(options: OutboundStreamOptions) {
    this.window = options.window;
    this.#options = options;
    this.writable = new WritableStream<Uint8Array>({
      write: (chunk) => this.write(chunk),
      close: () => this.end(),
      abort: () => this.end(),
    });
  }

  /** Bytes written and not yet acknowledged by the daemon. */
  get unacked(): number {
    return this.offset - this.#acked;
  }

  get acked(): number {
    return this.#acked;
  }

  bind(conn: Connection, sid: number, resumeFrom: number): void {
    this.#unbind();
    this.#conn = conn;
    this.#sid = sid;
    const route: InboundRoute = {
      onAck: (offset) => this.#onAck(offset),
      onReset: (reason) => this.fail(new Error(`Stream reset by the daemon: ${reason}`)),
      onClose: () => {
        if (this.#route === route) {
          this.#route = null;
          this.#conn = null;
        }
      },
    };
    this.#route = route;
    conn.routes.set(sid, route);
    this.#onAck(resumeFrom);
    // Send again what the daemon has not received.
    for (const { offset, bytes } of this.#retained) {
      const skip = Math.max(0, resumeFrom - offset);
      if (skip < bytes.length) conn.sendData(sid, offset + skip, bytes.subarray(skip));
    }
    if (this.#eofOffset !== null) conn.send({ t: "eof", sid, offset: this.#eofOffset });
    this.#wakeAll();
  }

  #unbind(): void {
    if (this.#conn && this.#route && this.#conn.routes.get(this.#sid) === this.#route) {
      this.#conn.routes.delete(this.#sid);
    }
    this.#conn = null;
    this.#route = null;
  }

  #onAck(offset: number): void {
    if (offset <= this.#acked) return;
    this.#acked = Math.min(offset, this.offset);
    while (this.#retained.length) {
      const first = this.#retained[0]!;
      if (first.offset + first.bytes.length > this.#acked) break;
      this.#retained.shift();
      // Acknowledged means received, so its send is long done: the buffer is free for the next piece.
      if (first.bytes.length === MAX_FRAME && this.#pool.length * MAX_FRAME < this.window) {
        this.#pool.push(first.bytes);
      }
    }
    this.#wakeAll();
  }

  #wakeAll(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  /** Write all of `chunk`, waiting for credit. */
  async write(chunk: Uint8Array): Promise<void> {
    this.#options.check?.();
    for (let at = 0; at < chunk.length;) {
      if (this.#error) throw this.#error;
      const room = this.window - this.unacked;
      if (room <= 0 || !this.#conn) {
        await new Promise<void>((resolve) => this.#waiters.push(resolve));
        continue;
      }
      // One copy: into a buffer with room for the frame header, kept as it is for a resend.
      const length = Math.min(room, MAX_FRAME, chunk.length - at);
      const piece = (length === MAX_FRAME ? this.#pool.pop() : undefined) ??
        allocateDataFrame(length);
      piece.set(chunk.subarray(at, at + piece.length));
      this.#retained.push({ offset: this.offset, bytes: piece });
      this.#conn.sendData(this.#sid, this.offset, piece);
      this.offset += piece.length;
      at += piece.length;
    }
  }

  /** Send end-of-stream once everything written. */
  end(sha256?: string): void {
    if (this.#eofOffset !== null) return;
    this.#eofOffset = this.offset;
    this.#conn?.send(
      sha256 ? { t: "eof", sid: this.#sid, offset: this.offset, sha256 } : {
        t: "eof",
        sid: this.#sid,
        offset: this.offset,
      },
    );
  }

  /** Wait until every byte written is acknowledged. */
  async drained(): Promise<void> {
    while (this.unacked > 0) {
      if (this.#error) throw this.#error;
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  fail(error: Error): void {
    if (this.#error) return;
    this.#error = error;
    this.#retained = [];
    this.#pool = [];
    this.#unbind();
    this.#wakeAll();
  }

  /** The link is gone for good. */
  disconnected(): void {
    this.fail(new DaemonDisconnectedError(this.#options.daemonId));
  }
}
