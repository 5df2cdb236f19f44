// The cheapest WebSocket client that still speaks the real wire, for simulated daemons by the ten thousand: one
// TCP connection from a chosen local address, one fixed upgrade request, text frames masked with the all-zero key
// (legal: RFC 6455 section 5.3 leaves the key to the client, and the server unmasks whatever it is), and a frame
// reader for what a controller sends a daemon (text, ping, close; binary is ignored). No TLS, no extensions, no
// fragmented sends.
//
// Why not Deno's WebSocket or the daemon's own client (daemon/_websocket_client.ts):
// - The local address. A real fleet connects from thousands of addresses; a simulated one from 127.0.0.1 alone runs
//   out of the kernel's ephemeral ports towards one node: past ~14,000 links to one address and port (the even half
//   of the default 32768-60999 range, which connect() tries first), every connect walks the used ports
//   (`__inet_check_established`), and the failover of 3 x 15,000 spent 84 % of the machine in that kernel search
//   (perf, 2026-12-02). Deno.connect cannot choose a local address; node:net can, so each simulated fleet process
//   connects from its own 127.x.y.z.
// - CPU: with thousands of links per process, the simulation's own cost per connect was what the failover bench
//   measured beyond ~5,000 daemons per node, not the nodes (server/CLUSTER.md, "Where the CPU goes").
import { connect as netConnect, type Socket } from "node:net";

/** The key every link sends, and the accept value RFC 6455 derives from it (its section 1.3 example). */
const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A client's text frame, masked with the all-zero key (the payload goes as it is). */
export function textFrame(text: string): Uint8Array {
  const payload = encoder.encode(text);
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const frame = new Uint8Array(head + 4 + n);
  frame[0] = 0x81;
  if (n < 126) {
    frame[1] = 0x80 | n;
  } else if (n < 65536) {
    frame[1] = 0x80 | 126;
    frame[2] = n >> 8;
    frame[3] = n & 0xff;
  } else {
    frame[1] = 0x80 | 127;
    new DataView(frame.buffer).setBigUint64(2, BigInt(n));
  }
  frame.set(payload, head + 4);
  return frame;
}

/** What a simulated daemon does with its link. */
export interface SimLinkHandlers {
  /** The upgrade was accepted (101 with the right accept value). */
  onOpen(link: SimLink): void;
  /** One text message. */
  onText(link: SimLink, text: string): void;
  /** The link ended (refused, dropped or closed), once. */
  onClose(link: SimLink): void;
}

/** One simulated daemon's link to a controller. */
export class SimLink {
  readonly #handlers: SimLinkHandlers;
  readonly #socket: Socket;
  #closed = false;
  #upgraded = false;
  /** Bytes received and not parsed yet (a partial head or frame). */
  #pending: Uint8Array = new Uint8Array(0);
  /** The subprotocol the controller selected ("" before the upgrade). */
  protocol = "";

  /** Connects to `url` (ws://host:port/path) from `localAddress`, offering `protocols` (comma-separated). */
  constructor(url: URL, protocols: string, localAddress: string, handlers: SimLinkHandlers) {
    this.#handlers = handlers;
    const socket = netConnect({
      host: url.hostname,
      port: Number(url.port),
      localAddress,
      noDelay: true,
    });
    this.#socket = socket;
    socket.on("error", () => this.close());
    socket.on("close", () => this.close());
    socket.on("data", (chunk: Uint8Array) => this.#receive(chunk));
    socket.write(
      `GET ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\nupgrade: websocket\r\n` +
        `connection: Upgrade\r\nsec-websocket-key: ${KEY}\r\nsec-websocket-version: 13\r\n` +
        `sec-websocket-protocol: ${protocols}\r\n\r\n`,
    );
  }

  /** Sends one text message. */
  send(text: string): void {
    if (this.#closed) return;
    this.#socket.write(textFrame(text));
  }

  /** Ends the link (no close handshake: a simulated daemon just goes). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.destroy();
    this.#handlers.onClose(this);
  }

  #receive(chunk: Uint8Array): void {
    if (this.#closed) return;
    let bytes = chunk;
    if (this.#pending.length > 0) {
      bytes = new Uint8Array(this.#pending.length + chunk.length);
      bytes.set(this.#pending);
      bytes.set(chunk, this.#pending.length);
    }
    let start = 0;
    if (!this.#upgraded) {
      const head = decoder.decode(bytes);
      const at = head.indexOf("\r\n\r\n");
      if (at < 0) {
        this.#pending = bytes;
        return;
      }
      const lines = head.slice(0, at).toLowerCase().split("\r\n");
      if (
        !lines[0]!.startsWith("http/1.1 101") ||
        !lines.includes(`sec-websocket-accept: ${ACCEPT.toLowerCase()}`)
      ) {
        return this.close();
      }
      for (const line of lines) {
        if (line.startsWith("sec-websocket-protocol:")) this.protocol = line.slice(23).trim();
      }
      this.#upgraded = true;
      // The head is ASCII: its length in characters is its length in bytes.
      start = at + 4;
      this.#handlers.onOpen(this);
    }
    // Every whole frame.
    while (!this.#closed) {
      const left = bytes.length - start;
      if (left < 2) break;
      const opcode = bytes[start]! & 0x0f;
      let length = bytes[start + 1]! & 0x7f;
      let at = start + 2;
      if (length === 126) {
        if (left < 4) break;
        length = (bytes[start + 2]! << 8) | bytes[start + 3]!;
        at = start + 4;
      } else if (length === 127) {
        if (left < 10) break;
        length = Number(
          new DataView(bytes.buffer, bytes.byteOffset + start + 2, 8).getBigUint64(0),
        );
        at = start + 10;
      }
      if (bytes.length - at < length) break;
      const payload = bytes.subarray(at, at + length);
      start = at + length;
      if (opcode === 1) {
        this.#handlers.onText(this, decoder.decode(payload));
      } else if (opcode === 9) {
        const pong = new Uint8Array(6 + length);
        pong[0] = 0x8a;
        pong[1] = 0x80 | length;
        pong.set(payload, 6);
        this.#socket.write(pong);
      } else if (opcode === 8) {
        return this.close();
      }
    }
    this.#pending = start === bytes.length ? new Uint8Array(0) : bytes.slice(start);
  }
}
