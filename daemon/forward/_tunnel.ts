// One tunnelled TCP connection on the daemon: the worker's socket, and the two streams of its `connect` request
// over the shared stream layer: a CreditSender for `sid` (the socket is read only while the controller has granted
// credit, so a slow client stops the worker's server), a CreditReceiver for `input` (written to the socket in
// order, acknowledged as written, so a server that stops reading stops the controller's client).
import { FRAME_HEADER_BYTES, writeDataFrameHeader } from "@sandd/protocol/frame";
import { CreditReceiver, CreditSender } from "@sandd/protocol/stream";
import { allocateBinaryMessage } from "../_websocket_client.ts";
import type { Link, StreamRoute } from "../_link.ts";

/** Largest payload read from the socket for one frame. */
const READ_BYTES = 64 * 1024;

/** The stable code of a socket error (`ECONNRESET`, `EPIPE`, ...). */
export function socketErrorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && /^E[A-Z0-9_]+$/.test(code)) return code;
  const name = (error as { name?: unknown } | null)?.name;
  switch (name) {
    case "ConnectionRefused":
      return "ECONNREFUSED";
    case "ConnectionReset":
      return "ECONNRESET";
    case "BrokenPipe":
      return "EPIPE";
    case "TimedOut":
      return "ETIMEDOUT";
    case "ConnectionAborted":
      return "ECONNABORTED";
    default:
      return "EIO";
  }
}

/** What a tunnel needs to know about its request. */
export interface TunnelStreams {
  /** Stream id the daemon sends on. */
  sid: number;
  /** Stream id the controller sends on. */
  input: number;
  /** Credit the controller grants on `sid`. */
  window: number;
  /** Credit this side grants on `input`. */
  inputWindow: number;
  /** `host:port`, for messages. */
  address: string;
}

/** One tunnel connection: socket <-> two streams on a link. */
export class Tunnel {
  readonly #link: Link;
  readonly #conn: Deno.TcpConn;
  readonly #streams: TunnelStreams;
  readonly #tx: CreditSender;
  readonly #rx: CreditReceiver;
  readonly #onClosed: () => void;
  readonly #routes: { sid: StreamRoute; input: StreamRoute };
  #wake: (() => void) | null = null;
  #writing = false;
  #eofRequested = false;
  #readDone = false;
  #writeDone = false;
  #closed = false;

  constructor(link: Link, conn: Deno.TcpConn, streams: TunnelStreams, onClosed: () => void) {
    this.#link = link;
    this.#conn = conn;
    this.#streams = streams;
    this.#onClosed = onClosed;
    this.#tx = new CreditSender({ window: streams.window });
    this.#rx = new CreditReceiver({
      window: streams.inputWindow,
      gaps: false,
      name: `tunnel ${streams.input}`,
    });
    const onReset = (reason: string) => this.#close(null, reason);
    const onClose = () => this.#close(null, "the link closed");
    this.#routes = {
      sid: { onAck: (offset) => this.#onAck(offset), onReset, onClose },
      input: {
        onData: (offset, payload) => this.#onData(offset, payload),
        onEof: (offset) => this.#onEof(offset),
        onReset,
        onClose,
      },
    };
    link.bind(streams.sid, this.#routes.sid);
    link.bind(streams.input, this.#routes.input);
  }

  /** Start reading the socket (call after the reply was sent: no data may precede it). */
  start(): void {
    setTimeout(() => void this.#pump(), 0);
  }

  /** Abort the connection (the daemon is stopping, or the link closed). */
  abort(reason: string): void {
    this.#close(null, reason);
  }

  #onAck(offset: number): void {
    if (this.#tx.ack(offset)) {
      const wake = this.#wake;
      this.#wake = null;
      wake?.();
    }
  }

  /** Socket -> controller, within the credit granted. */
  async #pump(): Promise<void> {
    const { sid } = this.#streams;
    try {
      while (!this.#closed) {
        const room = this.#tx.room;
        if (room <= 0) {
          await new Promise<void>((resolve) => this.#wake = resolve);
          continue;
        }
        const frame = allocateBinaryMessage(FRAME_HEADER_BYTES + Math.min(room, READ_BYTES));
        const n = await this.#conn.read(frame.subarray(FRAME_HEADER_BYTES));
        if (this.#closed) return;
        if (n === null) {
          // The worker's server shut its write side: half-close toward the controller.
          this.#link.send({ t: "eof", sid, offset: this.#tx.offset });
          this.#readDone = true;
          this.#maybeDone();
          return;
        }
        const offset = this.#tx.sent(n);
        this.#link.sendBinary(
          writeDataFrameHeader(frame.subarray(0, FRAME_HEADER_BYTES + n), sid, offset),
        );
      }
    } catch (error) {
      this.#fail(error, "reading from");
    }
  }

  #onData(offset: number, payload: Uint8Array): void {
    try {
      this.#rx.data(offset, payload);
    } catch (error) {
      this.#close("PROTOCOL", (error as Error).message);
      return;
    }
    void this.#flush();
  }

  #onEof(offset: number): void {
    try {
      this.#rx.eof(offset);
    } catch (error) {
      this.#close("PROTOCOL", (error as Error).message);
      return;
    }
    this.#eofRequested = true;
    void this.#flush();
  }

  /** Controller -> socket, in order; acknowledged as written; eof shuts the socket's write side. */
  async #flush(): Promise<void> {
    if (this.#writing) return;
    this.#writing = true;
    const { input } = this.#streams;
    try {
      while (!this.#closed) {
        const chunk = this.#rx.take();
        if (!chunk) break;
        for (let at = 0; at < chunk.length;) {
          at += await this.#conn.write(chunk.subarray(at));
        }
        if (this.#closed) return;
        const ack = this.#rx.ackDue();
        if (ack !== null) this.#link.send({ t: "ack", sid: input, offset: ack });
      }
      if (this.#eofRequested && !this.#writeDone && !this.#closed && this.#rx.queued === 0) {
        this.#writeDone = true;
        await this.#conn.closeWrite();
        this.#maybeDone();
      }
    } catch (error) {
      this.#fail(error, "writing to");
    } finally {
      this.#writing = false;
    }
    if (!this.#closed && this.#rx.queued > 0) void this.#flush();
  }

  #fail(error: unknown, doing: string): void {
    if (this.#closed) return;
    const code = socketErrorCode(error);
    this.#close(
      code,
      `${doing} ${this.#streams.address} on the worker failed: ${
        (error as Error)?.message ?? error
      }`,
    );
  }

  #maybeDone(): void {
    if (this.#readDone && this.#writeDone) this.#close(null, null);
  }

  /**
   * Close the socket and unbind. `code` set: tell the controller with a reset on both streams; null: the
   * controller knows (it reset, the link closed) or the connection ended normally.
   */
  #close(code: string | null, reason: string | null): void {
    if (this.#closed) return;
    this.#closed = true;
    const { sid, input } = this.#streams;
    if (code !== null) {
      const text = `${code}: ${reason ?? ""}`.slice(0, 1024);
      this.#link.send({ t: "reset", sid, reason: text });
      this.#link.send({ t: "reset", sid: input, reason: text });
    }
    this.#link.unbind(sid, this.#routes.sid);
    this.#link.unbind(input, this.#routes.input);
    this.#rx.clear();
    try {
      this.#conn.close();
    } catch {
      // closed already
    }
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
    this.#onClosed();
  }
}
