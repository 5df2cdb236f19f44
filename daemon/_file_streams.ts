/**
 * Flow control of file transfers, apart from where the bytes come from or go to: an upload's receiver queues at
 * most one window and acknowledges as the bytes are consumed; a download's sender reads only as the controller
 * grants credit. Both hash the bytes (SHA-256) as they pass.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { FRAME_HEADER_BYTES } from "@sandd/protocol/frame";
import { allocateBinaryMessage } from "./_websocket_client.ts";
import type { Link, StreamRoute } from "./_link.ts";
import { DaemonRequestError } from "./process_table.ts";

/** Largest payload of one data frame a download sends. */
export const MAX_FRAME_PAYLOAD = 256 * 1024;

/** Receives an upload stream: queues at most one window, acknowledges as the bytes are consumed. */
export class UploadReceiver {
  readonly hash: Hash = createHash("sha256");
  received = 0;
  #consumed = 0;
  #acked = 0;
  readonly #link: Link;
  readonly #sid: number;
  readonly #window: number;
  readonly #route: StreamRoute;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #eof: { offset: number; sha256: string | undefined } | null = null;
  #error: Error | null = null;
  #wake: (() => void) | null = null;
  #discarding = false;
  #gone = false;

  constructor(link: Link, sid: number, window: number) {
    this.#link = link;
    this.#sid = sid;
    this.#window = window;
    this.#route = {
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
        this.#gone = true;
        this.#fail(new DaemonRequestError("ECONNRESET", "The link closed during the upload"));
      },
    };
    link.bind(sid, this.#route);
  }

  get eof(): { offset: number; sha256: string | undefined } | null {
    return this.#eof;
  }

  #onData(offset: number, payload: Uint8Array): void {
    if (this.#error || this.#eof) return;
    if (offset !== this.received) {
      this.#fail(
        new DaemonRequestError(
          "PROTOCOL",
          `Upload data at offset ${offset}, expected ${this.received}`,
        ),
      );
      return;
    }
    if (this.#queued + payload.length > this.#window + MAX_FRAME_PAYLOAD) {
      this.#fail(
        new DaemonRequestError("PROTOCOL", `Upload exceeded its ${this.#window}-byte window`),
      );
      return;
    }
    this.hash.update(payload);
    this.received += payload.length;
    this.#queue.push(payload);
    this.#queued += payload.length;
    this.#wakeUp();
  }

  #fail(error: Error): void {
    if (this.#error) return;
    this.#error = error;
    this.#queue = [];
    this.#queued = 0;
    this.#wakeUp();
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  #unbind(): void {
    this.#link.unbind(this.#sid, this.#route);
  }

  /** The next chunk; `null` at end of stream. Throws when the stream failed. */
  async read(): Promise<Uint8Array | null> {
    while (true) {
      if (this.#error) throw this.#error;
      const chunk = this.#queue.shift();
      if (chunk) {
        this.#queued -= chunk.length;
        return chunk;
      }
      if (this.#eof) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  /** `n` bytes were written: return credit once an eighth of the window is due (or at once with `flush`). */
  consumed(n: number, flush = false): void {
    this.#consumed += n;
    if (
      this.#consumed > this.#acked && (flush || this.#consumed - this.#acked >= this.#window / 8)
    ) {
      this.#acked = this.#consumed;
      this.#link.send({ t: "ack", sid: this.#sid, offset: this.#consumed });
    }
  }

  /** Check the end of stream against what arrived. */
  verify(path: string, size: number | undefined): string {
    const eof = this.#eof!;
    const digest = this.hash.digest("hex");
    if (eof.offset !== this.received) {
      throw new DaemonRequestError(
        "EINTEGRITY",
        `Upload of '${path}' ended at offset ${eof.offset} but ${this.received} bytes arrived`,
        { path },
      );
    }
    if (size !== undefined && size !== this.received) {
      throw new DaemonRequestError(
        "EINTEGRITY",
        `Upload of '${path}' announced ${size} bytes but sent ${this.received}`,
        { path },
      );
    }
    if (eof.sha256 === undefined) {
      throw new DaemonRequestError("PROTOCOL", `Upload of '${path}' ended without a sha256`, {
        path,
      });
    }
    if (eof.sha256 !== digest) {
      throw new DaemonRequestError(
        "EINTEGRITY",
        `SHA-256 mismatch for '${path}': the controller sent ${eof.sha256}, the daemon received ${digest}`,
        { path },
      );
    }
    return digest;
  }

  /** Done with the stream: unbind now, or once the controller ends or resets it after a failure. */
  finish(): void {
    if (this.#gone || this.#eof || !this.#error) this.#unbind();
    else this.#discarding = true;
  }
}

/** Sends a download stream as the controller grants credit. */
export class DownloadSender {
  readonly #link: Link;
  readonly #sid: number;
  readonly #window: number;
  readonly #read: (buffer: Uint8Array) => Promise<number | null>;
  readonly #close: () => void;
  readonly #hash: Hash = createHash("sha256");
  readonly #route: StreamRoute;
  readonly #describeError: (error: unknown) => { code: string; message: string };
  #sent: number;
  #acked: number;
  #pumping = false;
  #done = false;

  constructor(
    link: Link,
    args: { sid: number; window: number; path: string },
    from: number,
    read: (buffer: Uint8Array) => Promise<number | null>,
    close: () => void,
    describeError: (error: unknown) => { code: string; message: string },
  ) {
    this.#link = link;
    this.#sid = args.sid;
    this.#window = args.window;
    this.#describeError = describeError;
    this.#sent = from;
    this.#acked = from;
    this.#read = read;
    this.#close = close;
    this.#route = {
      onAck: (offset) => {
        if (offset > this.#acked && offset <= this.#sent) this.#acked = offset;
        this.pump();
      },
      onReset: () => this.#stop(),
      onClose: () => this.#stop(),
    };
    link.bind(args.sid, this.#route);
  }

  #stop(): void {
    if (this.#done) return;
    this.#done = true;
    this.#link.unbind(this.#sid, this.#route);
    this.#close();
  }

  async pump(): Promise<void> {
    if (this.#pumping || this.#done) return;
    this.#pumping = true;
    try {
      while (!this.#done) {
        const room = Math.min(MAX_FRAME_PAYLOAD, this.#acked + this.#window - this.#sent);
        if (room <= 0) return;
        // Framed and masked in place by the socket: the file's bytes are copied once, by the read.
        const frame = allocateBinaryMessage(FRAME_HEADER_BYTES + room);
        const n = await this.#read(frame.subarray(FRAME_HEADER_BYTES));
        if (this.#done) return;
        if (n === null) {
          this.#link.send({
            t: "eof",
            sid: this.#sid,
            offset: this.#sent,
            sha256: this.#hash.digest("hex"),
          });
          this.#stop();
          return;
        }
        if (n === 0) continue;
        const view = new DataView(frame.buffer, frame.byteOffset);
        view.setUint8(0, 1);
        view.setUint32(1, this.#sid);
        view.setUint32(5, Math.floor(this.#sent / 0x1_0000_0000));
        view.setUint32(9, this.#sent >>> 0);
        this.#hash.update(frame.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + n));
        this.#link.sendBinary(frame.subarray(0, FRAME_HEADER_BYTES + n));
        this.#sent += n;
      }
    } catch (error) {
      const e = this.#describeError(error);
      this.#link.send({ t: "reset", sid: this.#sid, reason: `${e.code}: ${e.message}` });
      this.#stop();
    } finally {
      this.#pumping = false;
    }
  }
}
