// A minimal RFC 6455 WebSocket client over Deno.connect, for the daemon. Deno's built-in WebSocket client leaves
// Nagle's algorithm on, so a small message sent shortly after another waits for the controller's delayed ACK (about
// 40 ms here); this client sets TCP_NODELAY and writes each burst of frames with one write call.
// It implements the subset of the WebSocket interface the daemon uses.

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_MESSAGE = 64 * 1024 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface WebSocketClientOptions {
  protocols?: string[];
  headers?: Record<string, string>;
  caCerts?: string[];
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

  #conn: Deno.Conn | null = null;
  #queue: Uint8Array[] = [];
  #flushing = false;
  #closeSent = false;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(url: string, options: WebSocketClientOptions = {}) {
    this.#run(new URL(url), options).catch((error) => this.#fail(String(error?.message ?? error)));
  }

  async #run(url: URL, options: WebSocketClientOptions): Promise<void> {
    const secure = url.protocol === "wss:";
    const port = Number(url.port || (secure ? 443 : 80));
    const hostname = url.hostname.replace(/^\[|\]$/g, "");
    const tcp = await Deno.connect({ hostname, port });
    tcp.setNoDelay(true);
    const conn: Deno.Conn = secure
      ? await Deno.startTls(tcp, { hostname, ...(options.caCerts ? { caCerts: options.caCerts } : {}) })
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
      ...(options.protocols?.length ? [`Sec-WebSocket-Protocol: ${options.protocols.join(", ")}`] : []),
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
      if (headEnd < 0 && pending.length > 64 * 1024) throw new Error("WebSocket handshake response too large");
    }
    const head = decoder.decode(pending.subarray(0, headEnd));
    const [statusLine, ...headerLines] = head.split("\r\n");
    const status = Number(statusLine?.split(" ")[1]);
    const headers = new Map(headerLines.map((line) => {
      const i = line.indexOf(":");
      return [line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim()] as const;
    }));
    if (status !== 101) {
      const body = decoder.decode(pending.subarray(headEnd + 4)).slice(0, 300);
      throw new Error(`WebSocket upgrade refused: ${statusLine?.slice(9) ?? status}${body ? `: ${body}` : ""}`);
    }
    const digest = await crypto.subtle.digest("SHA-1", encoder.encode(key + GUID));
    const accept = btoa(String.fromCharCode(...new Uint8Array(digest)));
    if (headers.get("sec-websocket-accept") !== accept) throw new Error("Bad Sec-WebSocket-Accept from the server");
    this.protocol = headers.get("sec-websocket-protocol") ?? "";
    this.readyState = WebSocketClient.OPEN;
    this.onopen?.();
    await this.#readLoop(conn, pending.subarray(headEnd + 4), buffer);
  }

  async #readLoop(conn: Deno.Conn, initial: Uint8Array, buffer: Uint8Array): Promise<void> {
    let pending = initial;
    let fragments: Uint8Array[] = [];
    let fragmentOpcode = 0;
    let fragmentBytes = 0;
    while (true) {
      // Parse every complete frame in `pending`.
      while (true) {
        if (pending.length < 2) break;
        const b0 = pending[0]!, b1 = pending[1]!;
        const fin = (b0 & 0x80) !== 0;
        const opcode = b0 & 0x0f;
        const masked = (b1 & 0x80) !== 0;
        let length = b1 & 0x7f;
        let at = 2;
        if (length === 126) {
          if (pending.length < 4) break;
          length = (pending[2]! << 8) | pending[3]!;
          at = 4;
        } else if (length === 127) {
          if (pending.length < 10) break;
          const view = new DataView(pending.buffer, pending.byteOffset + 2, 8);
          length = view.getUint32(0) * 0x1_0000_0000 + view.getUint32(4);
          at = 10;
        }
        if (length > MAX_MESSAGE) return this.#protocolClose(1009, "message too large");
        const maskAt = at;
        if (masked) at += 4;
        if (pending.length < at + length) break;
        const payload = pending.slice(at, at + length);
        if (masked) {
          const mask = pending.subarray(maskAt, maskAt + 4);
          for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
        }
        pending = pending.subarray(at + length);
        if (opcode === 0x8) {
          const code = payload.length >= 2 ? (payload[0]! << 8) | payload[1]! : 1005;
          const reason = decoder.decode(payload.subarray(2));
          if (!this.#closeSent) this.#sendClose(code === 1005 ? 1000 : code, "");
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
          if (fragmentBytes > MAX_MESSAGE) return this.#protocolClose(1009, "message too large");
          if (fin) {
            let whole: Uint8Array = new Uint8Array(0);
            for (const part of fragments) whole = concat(whole, part);
            this.#deliver(fragmentOpcode, whole);
            fragments = [];
            fragmentOpcode = 0;
          }
          continue;
        }
        return this.#protocolClose(1002, `unexpected opcode ${opcode}`);
      }
      let n: number | null;
      try {
        n = await conn.read(buffer);
      } catch {
        n = null;
      }
      if (n === null) {
        this.#finish(1006, "connection lost");
        return;
      }
      pending = pending.length ? concat(pending, buffer.subarray(0, n)) : buffer.slice(0, n);
    }
  }

  #deliver(opcode: number, payload: Uint8Array): void {
    if (this.readyState !== WebSocketClient.OPEN) return;
    const data = opcode === 0x1 ? decoder.decode(payload) : payload.buffer as ArrayBuffer;
    this.onmessage?.({ data });
  }

  send(data: string | Uint8Array): void {
    if (this.readyState !== WebSocketClient.OPEN) return;
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
      let size = 0;
      for (const part of batch) size += part.length;
      let out: Uint8Array;
      if (batch.length === 1) {
        out = batch[0]!;
      } else {
        out = new Uint8Array(size);
        let at = 0;
        for (const part of batch) {
          out.set(part, at);
          at += part.length;
        }
      }
      try {
        await writeAll(conn, out);
      } catch {
        this.#queue = [];
        this.bufferedAmount = 0;
        break;
      }
      this.bufferedAmount -= size;
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

  close(code = 1000, reason = ""): void {
    if (this.readyState === WebSocketClient.CLOSED || this.readyState === WebSocketClient.CLOSING) return;
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

function frame(opcode: number, payload: Uint8Array): Uint8Array {
  const length = payload.length;
  const headerLength = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const out = new Uint8Array(headerLength + 4 + length);
  out[0] = 0x80 | opcode;
  if (length < 126) {
    out[1] = 0x80 | length;
  } else if (length < 65536) {
    out[1] = 0x80 | 126;
    out[2] = length >> 8;
    out[3] = length & 0xff;
  } else {
    out[1] = 0x80 | 127;
    const view = new DataView(out.buffer);
    view.setUint32(2, Math.floor(length / 0x1_0000_0000));
    view.setUint32(6, length >>> 0);
  }
  const maskAt = headerLength;
  const mask = crypto.getRandomValues(new Uint8Array(4));
  out.set(mask, maskAt);
  const start = maskAt + 4;
  out.set(payload, start);
  maskInPlace(out, start, mask);
  return out;
}

function maskInPlace(out: Uint8Array, start: number, mask: Uint8Array): void {
  const length = out.length - start;
  // XOR word by word where the payload is 4-byte aligned within the buffer, byte by byte elsewhere.
  let i = 0;
  while (i < length && ((start + i) & 3) !== 0) {
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

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b.slice();
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function indexOfHeadEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) return i;
  }
  return -1;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.length) at += await conn.write(bytes.subarray(at));
}
