// Several relayed protocol messages in one NATS publish. A daemon sends each output frame in its own WebSocket
// message (its own event-loop turn), and the NATS client writes what was published within one microtask: so each
// frame cost one NATS message, one socket write here, one on the NATS server and one parse on the other node, and
// each credit ack one more. A batch holds data frames and acks until the next macrotask (or until it is large),
// replaces a stream's older pending ack by its newer one, and sends anything else at once, after what it holds
// (the order of a link's messages is kept). The next macrotask is `setImmediate`'s: it runs once the socket reads
// that are ready have been handled, within microseconds (a `setTimeout(0)` waited 1-2 ms for Deno's timer and held
// every exec's last frames that long).
//
// Envelope (kind `m`): entries one after another, each `[type: u8 (0 text, 1 binary)][length: u32 BE][bytes]`.

import { clearImmediate, setImmediate } from "node:timers";
import { getLogger } from "@logtape/logtape";
import { release } from "../_message_buffers.ts";

const log = getLogger(["sandd", "cluster"]);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Bytes of an entry's header in a batch envelope. */
const ENTRY_HEADER_BYTES = 5;

/** What a batch publishes: one message as it is (`t` text, `b` binary), or several in an envelope (`m`). */
export type BatchPublish = (kind: "t" | "b" | "m", payload: Uint8Array) => void;

/** Options of {@linkcode RelayBatch}. */
export interface RelayBatchOptions {
  /** Publishes a message or a batch. */
  publish: BatchPublish;
  /**
   * Most bytes of one batch (keep it under the NATS `max_payload`, less room for headers); a single larger
   * message goes alone. @default 512 KiB
   */
  maxBytes?: number;
  /**
   * Hold data frames too (only when nothing else may reuse or transfer their buffers meanwhile, as a WebSocket
   * message's); else a frame goes at once, after the acks held. @default true
   */
  holdBinary?: boolean;
  /**
   * Free the buffer of each binary message once a batch envelope has copied it (the owner's daemon messages: their
   * buffers are the relay's alone), so the next message reuses the memory instead of touching fresh pages. Only a
   * message that is all of its buffer is freed; one sent alone is not (the NATS client holds it until its flush).
   * @default false
   */
  releaseBinary?: boolean;
}

/** The batch size for a NATS server's `max_payload` (room left for the headers), at most 512 KiB. */
export function batchBytesFor(maxPayload: number | undefined): number {
  const limit = maxPayload !== undefined && maxPayload > 0 ? maxPayload : 1024 * 1024;
  return Math.max(1024, Math.min(512 * 1024, limit - 4096));
}

/** The stream id of an ack as `Connection.send` spells it (`{"t":"ack","sid":N,...}`), or -1. */
function ackSid(text: string): number {
  const prefix = '{"t":"ack","sid":';
  if (!text.startsWith(prefix)) return -1;
  const end = text.indexOf(",", prefix.length);
  if (end < 0) return -1;
  const sid = Number(text.slice(prefix.length, end));
  return Number.isSafeInteger(sid) ? sid : -1;
}

/** Encode messages as one batch envelope. */
export function encodeBatch(messages: readonly (string | Uint8Array)[]): Uint8Array {
  const parts = messages.map((m) => typeof m === "string" ? encoder.encode(m) : m);
  let total = 0;
  for (const part of parts) total += ENTRY_HEADER_BYTES + part.length;
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let at = 0;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    out[at] = typeof messages[i] === "string" ? 0 : 1;
    view.setUint32(at + 1, part.length);
    out.set(part, at + ENTRY_HEADER_BYTES);
    at += ENTRY_HEADER_BYTES + part.length;
  }
  return out;
}

/**
 * Decode a batch envelope, calling `each` for every message. A binary message is a view of `data` (not copied):
 * the receiver copies what it keeps before `each` returns (the reading node's NATS reads are reused:
 * server/cluster/cluster.ts #fromOwner), and never detaches or transfers it (the batch's other messages are in it).
 *
 * @throws {Error} For a truncated entry or an unknown entry type, naming the offset (entries before it were given).
 */
export function decodeBatch(data: Uint8Array, each: (message: string | Uint8Array) => void): void {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let at = 0;
  while (at < data.length) {
    if (at + ENTRY_HEADER_BYTES > data.length) {
      throw new Error(`A relayed batch of ${data.length} bytes ends inside an entry at ${at}`);
    }
    const type = data[at]!;
    const length = view.getUint32(at + 1);
    const start = at + ENTRY_HEADER_BYTES;
    if (type > 1 || start + length > data.length) {
      throw new Error(
        `A relayed batch of ${data.length} bytes has a bad entry at ${at} (type ${type}, ${length} bytes)`,
      );
    }
    const bytes = data.subarray(start, start + length);
    each(type === 0 ? decoder.decode(bytes) : bytes);
    at = start + length;
  }
}

/** The messages of one relayed link (one daemon, one direction) on their way to NATS. */
export class RelayBatch {
  readonly #publish: BatchPublish;
  readonly #maxBytes: number;
  readonly #holdBinary: boolean;
  readonly #releaseBinary: boolean;
  #held: (string | Uint8Array | null)[] = [];
  /** Index in `#held` of each stream's pending ack. */
  #acks: Map<number, number> = new Map();
  #bytes = 0;
  #timer: ReturnType<typeof setImmediate> | undefined;
  /** Messages and NATS publishes so far (for the bench's counters). */
  messages = 0;
  publishes = 0;

  constructor(options: RelayBatchOptions) {
    this.#publish = options.publish;
    this.#maxBytes = options.maxBytes ?? 512 * 1024;
    this.#holdBinary = options.holdBinary ?? true;
    this.#releaseBinary = options.releaseBinary ?? false;
  }

  /** Send a message: data frames and acks wait for the next macrotask, anything else goes now (after them). */
  send(data: string | Uint8Array): void {
    this.messages++;
    const sid = typeof data === "string" ? ackSid(data) : -1;
    if (typeof data === "string" ? sid < 0 : !this.#holdBinary) {
      this.#held.push(data);
      this.flush();
      return;
    }
    // What is held and this message stay within one NATS message.
    const size = ENTRY_HEADER_BYTES + data.length;
    if (this.#held.length > 0 && this.#bytes + size > this.#maxBytes) this.flush();
    if (sid >= 0) {
      const older = this.#acks.get(sid);
      if (older !== undefined) this.#held[older] = null;
      this.#acks.set(sid, this.#held.length);
    }
    this.#held.push(data);
    this.#bytes += size;
    if (this.#timer === undefined) this.#timer = setImmediate(this.#due);
  }

  readonly #due = (): void => {
    this.#timer = undefined;
    try {
      this.flush();
    } catch (error) {
      // NATS closed, or one message over its max_payload (a sender's flush throws to its caller): lost as on
      // a dropped link, the reader resumes from its offset.
      log.warn("Could not publish relayed messages: {message}", {
        message: (error as Error).message,
      });
    }
  };

  /** Publish what is held now. */
  flush(): void {
    if (this.#timer !== undefined) {
      clearImmediate(this.#timer);
      this.#timer = undefined;
    }
    const held = this.#held.filter((m) => m !== null) as (string | Uint8Array)[];
    this.#held = [];
    this.#acks.clear();
    this.#bytes = 0;
    if (held.length === 0) return;
    this.publishes++;
    if (held.length === 1) {
      const only = held[0]!;
      if (typeof only === "string") this.#publish("t", encoder.encode(only));
      else this.#publish("b", only);
    } else {
      const envelope = encodeBatch(held);
      if (this.#releaseBinary) {
        for (const message of held) {
          if (
            typeof message !== "string" && message.byteOffset === 0 &&
            message.byteLength === message.buffer.byteLength
          ) release(message);
        }
      }
      this.#publish("m", envelope);
    }
  }

  /** Drop what is held (the link ended). */
  close(): void {
    if (this.#timer !== undefined) clearImmediate(this.#timer);
    this.#timer = undefined;
    this.#held = [];
    this.#acks.clear();
    this.#bytes = 0;
  }
}
