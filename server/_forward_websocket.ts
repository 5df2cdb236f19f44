// WebSocket through a tunnel: the browser's upgrade is accepted on the controller (Deno.upgradeWebSocket), the
// proxy opens a tunnel connection and performs the HTTP/1.1 upgrade with the worker's server itself, then relays
// messages: frames from the worker are parsed (unmasked, fragments joined, pings answered) and sent to the browser;
// the browser's messages are framed (masked, as a client must) and written to the tunnel.
import { createHash } from "node:crypto";
import type { TunnelSocket } from "./_forward_tunnel.ts";
import { upgradeWebSocket } from "./_http1_request.ts";
import {
  BadGatewayError,
  parseResponseHead,
  type ProxyTarget,
  publicHeaders,
  requestHead,
  responseBody,
  TunnelReader,
} from "./_forward_http.ts";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/** Largest message relayed from the worker. */
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/**
 * Most bytes queued toward the browser before the worker's connection stops being read (the worker's server then
 * waits on the tunnel's credit): a client that does not read cannot make the controller buffer without bound.
 */
const MAX_BROWSER_BUFFERED_BYTES = 16 * 1024 * 1024;
/** Most bytes queued toward the worker before the browser's socket is closed (1008). */
const MAX_QUEUED_BYTES = 16 * 1024 * 1024;

const encoder = new TextEncoder();

/** Whether `request` asks for a WebSocket upgrade. */
export function isWebSocketUpgrade(request: Request): boolean {
  return request.method === "GET" &&
    request.headers.get("upgrade")?.toLowerCase() === "websocket";
}

/** Encode one masked client frame. */
export function encodeClientFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const length = payload.length;
  const extra = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const frame = new Uint8Array(2 + extra + 4 + length);
  frame[0] = 0x80 | opcode;
  if (extra === 0) frame[1] = 0x80 | length;
  else if (extra === 2) {
    frame[1] = 0x80 | 126;
    new DataView(frame.buffer).setUint16(2, length);
  } else {
    frame[1] = 0x80 | 127;
    new DataView(frame.buffer).setBigUint64(2, BigInt(length));
  }
  const maskAt = 2 + extra;
  const mask = crypto.getRandomValues(new Uint8Array(4));
  frame.set(mask, maskAt);
  const at = maskAt + 4;
  for (let i = 0; i < length; i++) frame[at + i] = payload[i]! ^ mask[i & 3]!;
  return frame;
}

/** One frame from the worker. */
export interface Frame {
  fin: boolean;
  opcode: number;
  payload: Uint8Array;
}

/**
 * Parses server frames out of the bytes a tunnel delivers. The buffer grows by doubling and is consumed by an
 * offset, so a large frame arriving in many small reads costs linear time (joining each read onto everything
 * before it made a 64 MiB frame cost gigabytes of copying on the controller's one thread).
 */
export class FrameParser {
  #buffer: Uint8Array = new Uint8Array(0);
  #start = 0;
  #end = 0;

  push(bytes: Uint8Array): void {
    if (this.#end + bytes.length > this.#buffer.length) {
      const used = this.#end - this.#start;
      const need = used + bytes.length;
      const grown = need <= this.#buffer.length
        ? this.#buffer
        : new Uint8Array(Math.max(need, this.#buffer.length * 2, 64 * 1024));
      if (grown === this.#buffer) this.#buffer.copyWithin(0, this.#start, this.#end);
      else grown.set(this.#buffer.subarray(this.#start, this.#end));
      this.#buffer = grown;
      this.#start = 0;
      this.#end = used;
    }
    this.#buffer.set(bytes, this.#end);
    this.#end += bytes.length;
  }

  next(): Frame | null {
    const b = this.#buffer.subarray(this.#start, this.#end);
    if (b.length < 2) return null;
    const fin = (b[0]! & 0x80) !== 0;
    const opcode = b[0]! & 0x0f;
    const masked = (b[1]! & 0x80) !== 0;
    let length = b[1]! & 0x7f;
    let at = 2;
    if (length === 126) {
      if (b.length < 4) return null;
      length = (b[2]! << 8) | b[3]!;
      at = 4;
    } else if (length === 127) {
      if (b.length < 10) return null;
      const big = new DataView(b.buffer, b.byteOffset + 2, 8).getBigUint64(0);
      if (big > BigInt(MAX_MESSAGE_BYTES)) {
        throw new BadGatewayError(`A WebSocket frame of ${big} bytes from the worker is too big`);
      }
      length = Number(big);
      at = 10;
    }
    if (length > MAX_MESSAGE_BYTES) {
      throw new BadGatewayError(`A WebSocket frame of ${length} bytes from the worker is too big`);
    }
    const maskAt = at;
    if (masked) at += 4;
    if (b.length < at + length) return null;
    let payload = b.slice(at, at + length);
    if (masked) {
      const mask = b.subarray(maskAt, maskAt + 4);
      payload = payload.map((byte, i) => byte ^ mask[i & 3]!);
    }
    this.#start += at + length;
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return { fin, opcode, payload };
  }
}

/** A close code the browser-side socket may be closed with. */
function closeCode(code: number | undefined): number {
  return code === 1000 || (code !== undefined && code >= 3000 && code <= 4999) ? code : 1000;
}

/**
 * Proxy a WebSocket upgrade: handshake with the worker over `tunnel`, then upgrade the browser and relay. Answers
 * with the worker's own response when it refuses the upgrade.
 */
export async function proxyWebSocket(
  tunnel: TunnelSocket,
  request: Request,
  target: ProxyTarget,
  onDone: (error?: unknown) => void,
): Promise<Response> {
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
  const headers = new Headers(request.headers);
  for (
    const name of ["sec-websocket-key", "sec-websocket-extensions", "sec-websocket-version"]
  ) headers.delete(name);
  const protocols = headers.get("sec-websocket-protocol");
  headers.delete("sec-websocket-protocol");
  const extra: [string, string][] = [
    ["connection", "Upgrade"],
    ["upgrade", "websocket"],
    ["sec-websocket-version", "13"],
    ["sec-websocket-key", key],
  ];
  if (protocols) extra.push(["sec-websocket-protocol", protocols]);
  await tunnel.write(
    encoder.encode(requestHead("GET", new Request(request.url, { headers }), target, extra)),
  );
  const reader = new TunnelReader(tunnel);
  const text = await reader.head();
  if (text === null) {
    throw new BadGatewayError("The worker's server closed the connection without a response");
  }
  const head = parseResponseHead(text);
  if (head.status !== 101) {
    // Not upgraded: pass the worker's answer on as it is.
    return new Response(responseBody(reader, head.headers, onDone), {
      status: head.status,
      headers: publicHeaders(head.headers, target),
    });
  }
  const expected = createHash("sha1").update(key + GUID).digest("base64");
  if (head.headers.get("sec-websocket-accept") !== expected) {
    throw new BadGatewayError(
      "The worker's server answered the upgrade with a wrong Sec-WebSocket-Accept",
    );
  }
  const protocol = head.headers.get("sec-websocket-protocol");
  const { socket, response } = upgradeWebSocket(request, {
    ...(protocol ? { protocol } : {}),
    idleTimeout: 0,
  });
  relay(socket, tunnel, reader.rest(), onDone);
  return response;
}

function relay(
  socket: WebSocket,
  tunnel: TunnelSocket,
  first: Uint8Array,
  onDone: (error?: unknown) => void,
): void {
  socket.binaryType = "arraybuffer";
  let done = false;
  let queued = 0;
  let chain: Promise<void> = Promise.resolve();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const finish = (error?: unknown) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    onDone(error);
  };
  const toWorker = (opcode: number, payload: Uint8Array) => {
    const frame = encodeClientFrame(opcode, payload);
    queued += frame.length;
    if (queued > MAX_QUEUED_BYTES) {
      socket.close(1008, "the worker reads too slowly");
      return;
    }
    chain = chain.then(async () => {
      if (done) return;
      await tunnel.write(frame);
      queued -= frame.length;
    }).catch((error) => {
      try {
        socket.close(1011 as number, "tunnel failed");
      } catch {
        socket.close();
      }
      finish(error);
    });
  };
  const opened = new Promise<void>((resolve) => socket.onopen = () => resolve());
  socket.onmessage = (event) => {
    if (typeof event.data === "string") toWorker(1, encoder.encode(event.data));
    else toWorker(2, new Uint8Array(event.data as ArrayBuffer));
  };
  socket.onclose = (event) => {
    // Tell the worker, then end our side of the connection.
    const reason = encoder.encode(event.reason ?? "").subarray(0, 123);
    const payload = new Uint8Array(2 + reason.length);
    new DataView(payload.buffer).setUint16(0, closeCode(event.code));
    payload.set(reason, 2);
    toWorker(8, payload);
    chain = chain.then(() => {
      if (!done) tunnel.closeWrite();
    });
    // The worker answers with its close frame and closes; give it a moment, then release the tunnel.
    if (!done) timer = setTimeout(() => finish(), 5_000);
  };
  socket.onerror = () => {};
  void (async () => {
    const parser = new FrameParser();
    parser.push(first);
    const decoder = new TextDecoder("utf-8", { fatal: true });
    let fragments: Uint8Array[] = [];
    let fragmentOpcode = 0;
    let fragmentBytes = 0;
    await opened;
    try {
      while (true) {
        let frame: Frame | null;
        while ((frame = parser.next()) !== null) {
          if (frame.opcode === 9) {
            toWorker(10, frame.payload);
            continue;
          }
          if (frame.opcode === 10) continue;
          if (frame.opcode === 8) {
            const code = frame.payload.length >= 2
              ? new DataView(frame.payload.buffer, frame.payload.byteOffset).getUint16(0)
              : undefined;
            const reason = new TextDecoder().decode(frame.payload.subarray(2));
            if (socket.readyState === WebSocket.OPEN) socket.close(closeCode(code), reason);
            finish();
            return;
          }
          if (frame.opcode !== 0) {
            fragmentOpcode = frame.opcode;
            fragments = [];
            fragmentBytes = 0;
          }
          fragments.push(frame.payload);
          fragmentBytes += frame.payload.length;
          if (fragmentBytes > MAX_MESSAGE_BYTES) {
            throw new BadGatewayError("A WebSocket message from the worker is too big");
          }
          if (!frame.fin) continue;
          const whole = fragments.length === 1 ? fragments[0]! : join(fragments, fragmentBytes);
          fragments = [];
          fragmentBytes = 0;
          if (socket.readyState !== WebSocket.OPEN) continue;
          if (fragmentOpcode === 1) socket.send(decoder.decode(whole));
          else socket.send(whole);
        }
        while (
          socket.readyState === WebSocket.OPEN && socket.bufferedAmount > MAX_BROWSER_BUFFERED_BYTES
        ) {
          // A WebSocket has no event for its buffer draining: look again in 10 ms, or at once when it closes
          // (a timer left behind a closed socket outlived the tunnel).
          await new Promise<void>((resolve) => {
            const done = () => {
              clearTimeout(timer);
              socket.removeEventListener("close", done);
              resolve();
            };
            const timer = setTimeout(done, 10);
            socket.addEventListener("close", done, { once: true });
          });
        }
        const bytes = await tunnel.read();
        if (bytes === null) {
          if (socket.readyState === WebSocket.OPEN) {
            socket.close(1000, "the worker closed the connection");
          }
          finish();
          return;
        }
        parser.push(bytes);
      }
    } catch (error) {
      try {
        if (socket.readyState === WebSocket.OPEN) socket.close(1000, "the tunnel failed");
      } catch {
        // closed already
      }
      finish(error);
    }
  })();
}

function join(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
