// A stream of bytes the controller sends to the daemon (stdin, terminal input, uploads), offered to the user as a
// WritableStream. A write resolves once the daemon has credit for it; unacknowledged bytes are kept so that they
// can be sent again after a reconnect, from the offset the daemon reports. The credit itself is the shared
// CreditSender; this class adds the link, the frame buffers and the WritableStream.
import { DaemonDisconnectedError } from "./errors.ts";
import type { Connection } from "./_connection.ts";
import { StreamLink } from "./_stream_link.ts";
import { MAX_FRAME_PAYLOAD_BYTES as MAX_FRAME } from "@sandd/protocol/constants";
import { allocateDataFrame } from "@sandd/protocol/frame";
import { CreditSender } from "@sandd/protocol/stream";
import { KIND_STDIN, type StreamKind } from "./_metrics_state.ts";

export interface OutboundStreamOptions {
  window: number;
  /** Called before each write; throw to refuse it (e.g. the process exited). */
  check?: () => void;
  /** Daemon id for errors. */
  daemonId: string;
  /** What the bytes are, for the metrics. @default KIND_STDIN */
  kind?: StreamKind;
}

export class OutboundStream {
  readonly writable: WritableStream<Uint8Array>;
  readonly window: number;
  /** Full-size frame buffers the daemon has acknowledged, reused for the next pieces (no garbage per frame). */
  #pool: Uint8Array[] = [];
  readonly #credit: CreditSender;
  readonly #link: StreamLink = new StreamLink();
  #waiters: (() => void)[] = [];
  #error: Error | null = null;
  #eofOffset: number | null = null;
  #eofHash: string | undefined;
  readonly #options: OutboundStreamOptions;

  constructor(options: OutboundStreamOptions) {
    this.window = options.window;
    this.#options = options;
    this.#credit = new CreditSender({
      window: options.window,
      retain: true,
      // Acknowledged means received, so its send is long done: the buffer is free for the next piece.
      onRelease: (bytes) => {
        if (bytes.length === MAX_FRAME && this.#pool.length * MAX_FRAME < this.window) {
          this.#pool.push(bytes);
        }
      },
    });
    this.writable = new WritableStream<Uint8Array>({
      write: (chunk) => this.write(chunk),
      close: () => this.end(),
      abort: () => this.end(),
    });
  }

  /** Offset of the next byte the user writes. */
  get offset(): number {
    return this.#credit.offset;
  }

  /** Continue another writer's numbering (a new handle taking over stdin); only before anything is written. */
  set offset(from: number) {
    this.#credit.startAt(from);
  }

  /** Bytes written and not yet acknowledged by the daemon. */
  get unacked(): number {
    return this.#credit.unacked;
  }

  get acked(): number {
    return this.#credit.acked;
  }

  bind(conn: Connection, sid: number, resumeFrom: number): void {
    this.#unbind();
    if (this.#error) return;
    let resend;
    try {
      resend = this.#credit.resume(resumeFrom);
    } catch (error) {
      this.fail(error as Error);
      return;
    }
    this.#link.bind(conn, sid, {
      onAck: (offset) => {
        if (this.#credit.ack(offset)) this.#wakeAll();
      },
      onReset: (reason) => this.fail(new Error(`Stream reset by the daemon: ${reason}`)),
      onError: (error) => this.fail(error),
    });
    // Send again what the daemon has not received.
    for (const { offset, bytes } of resend) conn.sendData(sid, offset, bytes);
    if (this.#eofOffset !== null) this.#sendEof();
    this.#wakeAll();
  }

  #unbind(): void {
    this.#link.unbind();
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
      const room = this.#credit.room;
      const conn = this.#link.conn;
      if (room <= 0 || !conn) {
        if (conn) conn.metrics.creditStalls[this.#options.kind ?? KIND_STDIN]!++;
        await new Promise<void>((resolve) => this.#waiters.push(resolve));
        continue;
      }
      // One copy: into a buffer with room for the frame header, kept as it is for a resend.
      const length = Math.min(room, MAX_FRAME, chunk.length - at);
      const piece = (length === MAX_FRAME ? this.#pool.pop() : undefined) ??
        allocateDataFrame(length);
      piece.set(chunk.subarray(at, at + piece.length));
      const offset = this.#credit.sent(piece);
      conn.sendData(this.#link.sid, offset, piece);
      conn.metrics.bytesSent[this.#options.kind ?? KIND_STDIN]! += piece.length;
      at += piece.length;
    }
  }

  /** Send end-of-stream once everything written. */
  end(sha256?: string): void {
    if (this.#eofOffset !== null) return;
    this.#eofOffset = this.#credit.offset;
    this.#eofHash = sha256;
    this.#sendEof();
  }

  #sendEof(): void {
    const offset = this.#eofOffset!;
    const sid = this.#link.sid;
    this.#link.conn?.send(
      this.#eofHash ? { t: "eof", sid, offset, sha256: this.#eofHash } : { t: "eof", sid, offset },
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
    this.#credit.clear();
    this.#pool = [];
    this.#unbind();
    this.#wakeAll();
  }

  /** The link is gone for good. */
  disconnected(): void {
    this.fail(new DaemonDisconnectedError(this.#options.daemonId));
  }
}
