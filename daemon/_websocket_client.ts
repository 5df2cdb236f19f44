// A minimal RFC 6455 WebSocket client over Deno.connect, for the daemon. Deno's built-in WebSocket client leaves
// Nagle's algorithm on, so a small message sent shortly after another waits for the controller's delayed ACK (about
// 40 ms here); this client sets TCP_NODELAY and writes each burst of frames with one write call.
// It implements the subset of the WebSocket interface the daemon uses.

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
import { CLOSE_CODES } from "@sandd/protocol/constants";
import { dialThroughProxy } from "./_proxy.ts";

const MAX_MESSAGE = 64 * 1024 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Room kept in front of a prepared message for the longest frame header (10 bytes) and the mask (4). */
const HEADROOM = 16;
/** Frames at least this large are written on their own; smaller ones are gathered into one write. */
const WRITE_ALONE = 16 * 1024;
/** Buffers made by {@linkcode allocateBinaryMessage}: sending one frames it in place. */
const prepared = new WeakSet<ArrayBuffer>();
/**
 * Sent prepared buffers, by capacity class, for the next {@linkcode allocateBinaryMessage} of that class. A class
 * holds payloads up to a power of two plus {@linkcode POOL_SLACK} (room for a data frame's header), so frames of
 * varying lengths share buffers: a new buffer is zero-filled by the allocator, a reused one is not.
 */
const pool = new Map<number, ArrayBuffer[]>();
/** Only buffers at least this large are kept for reuse, at most this many per class. */
const POOL_MIN = 32 * 1024;
const POOL_PER_SIZE = 8;
/** Most classes kept (32 KiB to 4 MiB). */
const POOL_CLASSES = 8;
/** Bytes a class holds beyond its power of two. */
const POOL_SLACK = 256;
/** Frames handed to the socket whose buffer goes back to the pool once written. */
const recyclable = new WeakSet<ArrayBuffer>();

/** The buffer size that holds `length` bytes after the headroom: a pooled class, or exactly that when small. */
function capacityFor(length: number): number {
  if (length < POOL_MIN) return HEADROOM + length;
  let power = POOL_MIN;
  while (power + POOL_SLACK < length) power *= 2;
  return HEADROOM + power + POOL_SLACK;
}

/**
 * A buffer for one binary message, with room in front of it for the WebSocket frame header. Fill it and pass it
 * (or a view of it from its start) to `send`, once: it is then framed and masked in place rather than copied, and
 * its memory is reused for a later message once it has been written. The caller must not touch it after `send`.
 * Its initial contents are unspecified (a reused buffer is not cleared).
 */
export function allocateBinaryMessage(length: number): Uint8Array<ArrayBuffer> {
  const size = capacityFor(length);
  const buffer = pool.get(size)?.pop() ?? new ArrayBuffer(size);
  prepared.add(buffer);
  return new Uint8Array(buffer, HEADROOM, length);
}

function recycle(frame: Uint8Array): void {
  const buffer = frame.buffer as ArrayBuffer;
  if (!recyclable.has(buffer)) return;
  recyclable.delete(buffer);
  if (buffer.byteLength < POOL_MIN) return;
  let free = pool.get(buffer.byteLength);
  if (free === undefined) {
    if (pool.size >= POOL_CLASSES) return;
    pool.set(buffer.byteLength, free = []);
  }
  if (free.length < POOL_PER_SIZE) free.push(buffer);
}

export interface WebSocketClientOptions {
  protocols?: string[];
  headers?: Record<string, string>;
  caCerts?: string[];
  /** Reach the server through this proxy (see _proxy.ts). */
  proxy?: URL | null;
}

export interface ClientMessageEvent {
  data: string | ArrayBuffer;
}

export interface ClientCloseEvent {
  code: number;
  reason: string;
}

export class WebSocketClient {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;

  readyState = 0;
  protocol = "";
  bufferedAmount = 0;
  onopen: (() => void) | null = null;
  onmessage: ((event: ClientMessageEvent) => void) | null = null;
  onclose: ((event: ClientCloseEvent) => void) | null = null;
  onerror: ((event: { message: string }) => void) | null = null;
  /**
   * The HTTP status of a refused upgrade (401, 426, ...), set before `onclose` (code 1006) fires; undefined when
   * the upgrade succeeded or never got an answer.
   */
  upgradeStatus: number | undefined = undefined;

  #conn: Deno.Conn | null = null;
  #queue: Uint8Array[] = [];
  #flushing = false;
  #closeSent = false;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  /** Aborted when the socket is closed before it opened: abandons a proxy handshake in progress. */
  readonly #connecting: AbortController = new AbortController();

  constructor(url: string, options: WebSocketClientOptions = {}) {
    this.#run(new URL(url), options).catch((error) => this.#fail(String(error?.message ?? error)));
  }

  async #run(url: URL, options: WebSocketClientOptions): Promise<void> {
    const secure = url.protocol === "wss:";
    const port = Number(url.port || (secure ? 443 : 80));
    const hostname = url.hostname.replace(/^\[|\]$/g, "");
    const tcp = options.proxy
      ? await dialThroughProxy(options.proxy, hostname, port, { signal: this.#connecting.signal })
      : await Deno.connect({ hostname, port });
    if (this.#closed) {
      tcp.close();
      return;
    }
    tcp.setNoDelay(true);
    const conn: Deno.Conn = secure
      ? await Deno.startTls(tcp, {
        hostname,
        ...(options.caCerts ? { caCerts: options.caCerts } : {}),
      })
      : tcp;
    this.#conn = conn;
    if (this.#closed) {
      conn.close();
      return;
    }
    const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    const lines = [
      `GET ${url.pathname || "/"}${url.search} HTTP/1.1`,
      `Host: ${url.host}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      `Sec-WebSocket-Key: ${key}`,
      "Sec-WebSocket-Version: 13",
      ...(options.protocols?.length
        ? [`Sec-WebSocket-Protocol: ${options.protocols.join(", ")}`]
        : []),
      ...Object.entries(options.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
      "",
      "",
    ];
    await writeAll(conn, encoder.encode(lines.join("\r\n")));
    // Read the response head.
    let pending: Uint8Array = new Uint8Array(0);
    let headEnd = -1;
    const buffer = new Uint8Array(64 * 1024);
    while (headEnd < 0) {
      const n = await conn.read(buffer);
      if (n === null) throw new Error("Connection closed during the WebSocket handshake");
      pending = concat(pending, buffer.subarray(0, n));
      headEnd = indexOfHeadEnd(pending);
      if (headEnd < 0 && pending.length > 64 * 1024) {
        throw new Error("WebSocket handshake response too large");
      }
    }
    const head = decoder.decode(pending.subarray(0, headEnd));
    const [statusLine, ...headerLines] = head.split("\r\n");
    const status = Number(statusLine?.split(" ")[1]);
    const headers = new Map(headerLines.map((line) => {
      const i = line.indexOf(":");
      return [line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim()] as const;
    }));
    if (status !== 101) {
      this.upgradeStatus = Number.isInteger(status) ? status : undefined;
      const body = decoder.decode(pending.subarray(headEnd + 4)).slice(0, 300);
      throw new Error(
        `WebSocket upgrade refused: ${statusLine?.slice(9) ?? status}${body ? `: ${body}` : ""}`,
      );
    }
    const digest = await crypto.subtle.digest("SHA-1", encoder.encode(key + GUID));
    const accept = btoa(String.fromCharCode(...new Uint8Array(digest)));
    if (headers.get("sec-websocket-accept") !== accept) {
      throw new Error("Bad Sec-WebSocket-Accept from the server");
    }
    this.protocol = headers.get("sec-websocket-protocol") ?? "";
    this.readyState = WebSocketClient.OPEN;
    this.onopen?.();
    await this.#readLoop(conn, pending.subarray(headEnd + 4), buffer);
  }

  async #readLoop(conn: Deno.Conn, initial: Uint8Array, buffer: Uint8Array): Promise<void> {
    // `pending` holds received bytes not parsed yet; it may be a view into `buffer`, so it is copied out before the
    // next read into `buffer` (that happens only while a frame header is incomplete: a few bytes). A frame's
    // payload gets its own buffer, and whatever of it has not arrived yet is read straight into that buffer: a
    // large frame is copied once by the kernel, not gathered through intermediate buffers.
    let pending: Uint8Array = initial;
    let fragments: Uint8Array[] = [];
    let fragmentOpcode = 0;
    let fragmentBytes = 0;
    const readInto = async (target: Uint8Array): Promise<number | null> => {
      try {
        return await conn.read(target);
      } catch {
        return null;
      }
    };
    while (true) {
      // Parse the next frame header from `pending`, reading more when it is incomplete.
      const need = headerNeed(pending);
      if (need > pending.length) {
        if (pending.length > 0) pending = pending.slice();
        const n = await readInto(buffer);
        if (n === null) {
          this.#finish(1006, "connection lost");
          return;
        }
        pending = pending.length ? concat(pending, buffer.subarray(0, n)) : buffer.subarray(0, n);
        continue;
      }
      const b0 = pending[0]!, b1 = pending[1]!;
      const fin = (b0 & 0x80) !== 0;
      const opcode = b0 & 0x0f;
      const masked = (b1 & 0x80) !== 0;
      let length = b1 & 0x7f;
      if (length === 126) {
        length = (pending[2]! << 8) | pending[3]!;
      } else if (length === 127) {
        const view = new DataView(pending.buffer, pending.byteOffset + 2, 8);
        length = view.getUint32(0) * 0x1_0000_0000 + view.getUint32(4);
      }
      if (length > MAX_MESSAGE) {
        return this.#protocolClose(CLOSE_CODES.MESSAGE_TOO_BIG, "message too large");
      }
      const maskAt = need - (masked ? 4 : 0);
      const mask = masked ? pending.slice(maskAt, maskAt + 4) : null;
      const payload = new Uint8Array(length);
      const have = Math.min(length, pending.length - need);
      payload.set(pending.subarray(need, need + have));
      pending = pending.subarray(need + have);
      for (let filled = have; filled < length;) {
        const n = await readInto(payload.subarray(filled));
        if (n === null) {
          this.#finish(1006, "connection lost");
          return;
        }
        filled += n;
      }
      if (mask) maskInPlace(payload, 0, mask);
      if (opcode === 0x8) {
        const code = payload.length >= 2 ? (payload[0]! << 8) | payload[1]! : 1005;
        const reason = decoder.decode(payload.subarray(2));
        if (!this.#closeSent) this.#sendClose(code === 1005 ? CLOSE_CODES.NORMAL : code, "");
        this.#finish(code, reason);
        return;
      }
      if (opcode === 0x9) {
        this.#enqueue(frame(0xa, payload));
        continue;
      }
      if (opcode === 0xa) continue;
      if (opcode === 0x1 || opcode === 0x2) {
        if (fin) {
          this.#deliver(opcode, payload);
        } else {
          fragments = [payload];
          fragmentOpcode = opcode;
          fragmentBytes = payload.length;
        }
        continue;
      }
      if (opcode === 0x0 && fragmentOpcode) {
        fragments.push(payload);
        fragmentBytes += payload.length;
        if (fragmentBytes > MAX_MESSAGE) {
          return this.#protocolClose(CLOSE_CODES.MESSAGE_TOO_BIG, "message too large");
        }
        if (fin) {
          const whole = new Uint8Array(fragmentBytes);
          let at = 0;
          for (const part of fragments) {
            whole.set(part, at);
            at += part.length;
          }
          this.#deliver(fragmentOpcode, whole);
          fragments = [];
          fragmentOpcode = 0;
        }
        continue;
      }
      return this.#protocolClose(1002, `unexpected opcode ${opcode}`);
    }
  }

  #deliver(opcode: number, payload: Uint8Array): void {
    if (this.readyState !== WebSocketClient.OPEN) return;
    const data = opcode === 0x1 ? decoder.decode(payload) : payload.buffer as ArrayBuffer;
    this.onmessage?.({ data });
  }

  send(data: string | Uint8Array): void {
    if (this.readyState !== WebSocketClient.OPEN) return;
    if (
      typeof data !== "string" && data.byteOffset === HEADROOM &&
      prepared.has(data.buffer as ArrayBuffer)
    ) {
      prepared.delete(data.buffer as ArrayBuffer);
      recyclable.add(data.buffer as ArrayBuffer);
      this.#enqueue(frameInPlace(0x2, data as Uint8Array<ArrayBuffer>));
      return;
    }
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    this.#enqueue(frame(typeof data === "string" ? 0x1 : 0x2, bytes));
  }

  #enqueue(bytes: Uint8Array): void {
    this.#queue.push(bytes);
    this.bufferedAmount += bytes.length;
    if (!this.#flushing) {
      this.#flushing = true;
      queueMicrotask(() => this.#flush());
    }
  }

  async #flush(): Promise<void> {
    const conn = this.#conn;
    while (this.#queue.length && conn) {
      const batch = this.#queue;
      this.#queue = [];
      try {
        // Large frames go out as they are (no copy); runs of small ones are gathered into one write.
        let i = 0;
        while (i < batch.length) {
          const first = batch[i]!;
          if (
            first.length >= WRITE_ALONE || i + 1 === batch.length ||
            batch[i + 1]!.length >= WRITE_ALONE
          ) {
            await writeAll(conn, first);
            recycle(first);
            this.bufferedAmount -= first.length;
            i++;
            continue;
          }
          let j = i, size = 0;
          while (j < batch.length && batch[j]!.length < WRITE_ALONE) size += batch[j++]!.length;
          const out = new Uint8Array(size);
          let at = 0;
          for (let k = i; k < j; k++) {
            out.set(batch[k]!, at);
            at += batch[k]!.length;
            recycle(batch[k]!);
          }
          await writeAll(conn, out);
          this.bufferedAmount -= size;
          i = j;
        }
      } catch {
        this.#queue = [];
        this.bufferedAmount = 0;
        break;
      }
    }
    this.#flushing = false;
  }

  #sendClose(code: number, reason: string): void {
    this.#closeSent = true;
    const reasonBytes = encoder.encode(reason).subarray(0, 120);
    const payload = new Uint8Array(2 + reasonBytes.length);
    payload[0] = code >> 8;
    payload[1] = code & 0xff;
    payload.set(reasonBytes, 2);
    this.#enqueue(frame(0x8, payload));
  }

  #protocolClose(code: number, reason: string): void {
    this.#sendClose(code, reason);
    this.#finish(code, reason);
  }

  close(code: number = CLOSE_CODES.NORMAL, reason = ""): void {
    if (this.readyState === WebSocketClient.CLOSED || this.readyState === WebSocketClient.CLOSING) {
      return;
    }
    if (this.readyState === WebSocketClient.CONNECTING) {
      this.#finish(1006, "closed before open");
      return;
    }
    this.readyState = WebSocketClient.CLOSING;
    this.#sendClose(code, reason);
    // Wait briefly for the server's close frame, then drop the connection.
    this.#closeTimer = setTimeout(() => this.#finish(code, reason), 1_000);
  }

  #fail(message: string): void {
    if (this.#closed) return;
    this.onerror?.({ message });
    this.#finish(1006, message);
  }

  #finish(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#connecting.abort();
    clearTimeout(this.#closeTimer);
    this.readyState = WebSocketClient.CLOSED;
    const conn = this.#conn;
    // Let queued frames (such as our close reply) go out before closing the socket.
    const drain = async () => {
      while (this.#flushing) await new Promise((r) => setTimeout(r, 1));
      try {
        conn?.close();
      } catch {
        // already closed
      }
    };
    drain();
    this.onclose?.({ code, reason });
  }
}

/** Frame a copy of `payload` (control frames, text): one allocation with headroom, then the in-place path. */
function frame(opcode: number, payload: Uint8Array): Uint8Array {
  const room = new Uint8Array(new ArrayBuffer(HEADROOM + payload.length), HEADROOM, payload.length);
  room.set(payload);
  return frameInPlace(opcode, room);
}

/** Frame a message made by {@linkcode allocateBinaryMessage}: header written into its headroom, masked in place. */
function frameInPlace(opcode: number, payload: Uint8Array<ArrayBuffer>): Uint8Array {
  const length = payload.length;
  const headerLength = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const begin = HEADROOM - 4 - headerLength;
  const out = new Uint8Array(payload.buffer, begin, HEADROOM - begin + length);
  out[0] = 0x80 | opcode;
  if (length < 126) {
    out[1] = 0x80 | length;
  } else if (length < 65536) {
    out[1] = 0x80 | 126;
    out[2] = length >> 8;
    out[3] = length & 0xff;
  } else {
    out[1] = 0x80 | 127;
    const view = new DataView(payload.buffer, begin);
    view.setUint32(2, Math.floor(length / 0x1_0000_0000));
    view.setUint32(6, length >>> 0);
  }
  const mask = crypto.getRandomValues(new Uint8Array(4));
  out.set(mask, headerLength);
  maskInPlace(out, headerLength + 4, mask);
  return out;
}

/**
 * A WebAssembly SIMD kernel for masking: `mask(length, key)` XORs the first `length` bytes (a multiple of 16) of
 * its memory (two pages, 128 KiB) with the 32-bit `key`, 16 bytes per instruction. Masking in JavaScript (32-bit
 * words) cost 80-150 µs per 256 KiB frame here, about half the daemon's own CPU time per MiB streamed; copying a
 * block into this memory, masking it there and copying it back costs 20-25 µs. Hand-assembled (a dozen
 * instructions; the text form is beside each line).
 */
const MASK_WASM = new Uint8Array([
  ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // \0asm, version 1
  ...[0x01, 0x06, 0x01, 0x60, 0x02, 0x7f, 0x7f, 0x00], // type 0: (func (param i32 i32))
  ...[0x03, 0x02, 0x01, 0x00], // func 0 has type 0
  ...[0x05, 0x03, 0x01, 0x00, 0x02], // (memory 2)
  ...[0x07, 0x11, 0x02], // exports: "mask" (func 0), "memory" (memory 0)
  ...[
    0x04,
    0x6d,
    0x61,
    0x73,
    0x6b,
    0x00,
    0x00,
    0x06,
    0x6d,
    0x65,
    0x6d,
    0x6f,
    0x72,
    0x79,
    0x02,
    0x00,
  ],
  ...[0x0a, 0x34, 0x01, 0x32], // code: one body of 50 bytes
  ...[0x02, 0x01, 0x7f, 0x01, 0x7b], // (local $i i32) (local $k v128)
  ...[0x20, 0x01, 0xfd, 0x11, 0x21, 0x03], // $k = i32x4.splat(key)
  ...[0x02, 0x40, 0x03, 0x40], // block loop
  ...[0x20, 0x02, 0x20, 0x00, 0x4f, 0x0d, 0x01], // br_if 1 ($i >= length)
  ...[0x20, 0x02, 0x20, 0x02, 0xfd, 0x00, 0x04, 0x00], // $i, v128.load $i
  ...[0x20, 0x03, 0xfd, 0x51, 0xfd, 0x0b, 0x04, 0x00], // v128.xor $k, v128.store
  ...[0x20, 0x02, 0x41, 0x10, 0x6a, 0x21, 0x02], // $i += 16
  ...[0x0c, 0x00, 0x0b, 0x0b, 0x0b], // br 0, end loop, end block, end
]);
/** Payloads at least this long are masked through {@linkcode MASK_WASM}; shorter ones in JavaScript. */
const SIMD_MASK_MIN = 1024;

interface SimdMask {
  mask: (length: number, key: number) => void;
  memory: Uint8Array;
}

/** The SIMD kernel, or null where WebAssembly SIMD is not available (then masking stays in JavaScript). */
const simd: SimdMask | null = (() => {
  try {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(MASK_WASM));
    const { mask, memory } = instance.exports as {
      mask: (length: number, key: number) => void;
      memory: WebAssembly.Memory;
    };
    return { mask, memory: new Uint8Array(memory.buffer) };
  } catch {
    return null;
  }
})();

/** Which masking runs here: `"simd"` (WebAssembly) or `"js"` (where WebAssembly SIMD is missing). For tests. */
export function maskingKernel(): "simd" | "js" {
  return simd === null ? "js" : "simd";
}

/** The mask's four bytes from position `i` of the payload on, as a little-endian 32-bit word. */
function maskWord(mask: Uint8Array, i: number): number {
  return (mask[i & 3]! | (mask[(i + 1) & 3]! << 8) | (mask[(i + 2) & 3]! << 16) |
    (mask[(i + 3) & 3]! << 24)) >>> 0;
}

function maskInPlace(out: Uint8Array, start: number, mask: Uint8Array): void {
  const length = out.length - start;
  let i = 0;
  if (simd !== null && length >= SIMD_MASK_MIN) {
    // Whole 16-byte blocks through the SIMD kernel's memory; the rest (under 16 bytes) below.
    const scratch = simd.memory;
    const key = maskWord(mask, 0);
    while (length - i >= 16) {
      const n = Math.min(scratch.length, (length - i) & ~15);
      const part = out.subarray(start + i, start + i + n);
      scratch.set(part);
      simd.mask(n, key);
      part.set(scratch.subarray(0, n));
      i += n;
    }
  }
  // XOR word by word where the payload is 4-byte aligned within the buffer, byte by byte elsewhere.
  while (i < length && ((out.byteOffset + start + i) & 3) !== 0) {
    out[start + i]! ^= mask[i & 3]!;
    i++;
  }
  const words = (length - i) >>> 2;
  if (words > 0) {
    const rotated = new Uint8Array(4);
    for (let k = 0; k < 4; k++) rotated[k] = mask[(i + k) & 3]!;
    const key = new Uint32Array(rotated.buffer)[0]!;
    const view = new Uint32Array(out.buffer, out.byteOffset + start + i, words);
    for (let w = 0; w < words; w++) view[w]! ^= key;
    i += words * 4;
  }
  for (; i < length; i++) out[start + i]! ^= mask[i & 3]!;
}

/** Bytes of the frame header (with the mask) that starts `bytes`; more than `bytes.length` when incomplete. */
function headerNeed(bytes: Uint8Array): number {
  if (bytes.length < 2) return 2;
  const b1 = bytes[1]!;
  const size = b1 & 0x7f;
  return (size === 126 ? 4 : size === 127 ? 10 : 2) + ((b1 & 0x80) !== 0 ? 4 : 0);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b.slice();
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function indexOfHeadEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      return i;
    }
  }
  return -1;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.length) at += await conn.write(bytes.subarray(at));
}
