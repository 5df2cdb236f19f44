// Unit tests of the daemon's own WebSocket client (daemon/_websocket_client.ts), against a real Deno.serve WebSocket
// server on 127.0.0.1 and against a raw TCP peer that writes frames byte for byte (fragments, control frames
// between fragments, masked and split frames, malformed and oversized frames, broken handshakes).
import {
  assert,
  assertEquals,
  assertGreater,
  assertMatch,
  assertRejects,
  assertStrictEquals,
  assertStringIncludes,
} from "../tests/_assert.ts";
import {
  allocateBinaryMessage,
  type ClientCloseEvent,
  maskingKernel,
  WebSocketClient,
  type WebSocketClientOptions,
} from "./_websocket_client.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_MESSAGE = 64 * 1024 * 1024;

/** One client and its events: `opened`, `closed`, the errors it reported and its messages in order. */
class Probe {
  readonly client: WebSocketClient;
  readonly opened: Promise<void>;
  readonly closed: Promise<ClientCloseEvent>;
  readonly errors: string[] = [];
  readonly #messages: (string | ArrayBuffer)[] = [];
  #isClosed = false;
  #wake: (() => void) | undefined;

  constructor(url: string, options?: WebSocketClientOptions) {
    const opened = Promise.withResolvers<void>();
    const closed = Promise.withResolvers<ClientCloseEvent>();
    opened.promise.catch(() => {});
    this.opened = opened.promise;
    this.closed = closed.promise;
    this.client = new WebSocketClient(url, options);
    this.client.onopen = () => opened.resolve();
    this.client.onmessage = (event) => {
      this.#messages.push(event.data);
      this.#wake?.();
    };
    this.client.onerror = (event) => this.errors.push(event.message);
    this.client.onclose = (event) => {
      this.#isClosed = true;
      opened.reject(new Error(`Closed before open: ${event.code} ${event.reason}`));
      closed.resolve(event);
      this.#wake?.();
    };
  }

  /** The next message; throws when the client closes first. */
  async next(): Promise<string | ArrayBuffer> {
    while (this.#messages.length === 0) {
      if (this.#isClosed) throw new Error("The client closed before the next message");
      const { promise, resolve } = Promise.withResolvers<void>();
      this.#wake = resolve;
      await promise;
    }
    return this.#messages.shift()!;
  }

  /** Messages received and not taken by `next`. */
  get pending(): number {
    return this.#messages.length;
  }
}

function pattern(length: number, seed = 0): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed) & 0xff;
  return bytes;
}

function bytesOf(data: string | ArrayBuffer): Uint8Array {
  assert(data instanceof ArrayBuffer, `expected a binary message, got ${typeof data}`);
  return new Uint8Array(data);
}

// --- A Deno.serve WebSocket server -------------------------------------------------------------------------------

interface ServerSide {
  socket: WebSocket;
  /** The upgrade request's URL and headers (copied in the handler: a request is closed once answered). */
  url: string;
  headers: Headers;
  closed: Promise<CloseEvent>;
}

/** A Deno.serve server that upgrades every request (unless `refuse` answers it) and echoes each message. */
function denoServer(
  options: {
    protocol?: string;
    refuse?: (request: Request) => Response | undefined;
  } = {},
) {
  const sides: ServerSide[] = [];
  const accepted = Promise.withResolvers<ServerSide>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const refusal = options.refuse?.(request);
    if (refusal) return refusal;
    const url = request.url;
    const headers = new Headers(request.headers);
    const { socket, response } = Deno.upgradeWebSocket(
      request,
      options.protocol ? { protocol: options.protocol } : {},
    );
    socket.binaryType = "arraybuffer";
    const closed = new Promise<CloseEvent>((resolve) => socket.onclose = resolve);
    const side = { socket, url, headers, closed };
    socket.onmessage = (event) => socket.send(event.data);
    sides.push(side);
    accepted.resolve(side);
    return response;
  });
  return {
    url: `ws://127.0.0.1:${server.addr.port}`,
    accepted: accepted.promise,
    async [Symbol.asyncDispose]() {
      // A test that failed half-way leaves its connection open: close it from here so disposal cannot hang.
      for (const side of sides) {
        if (side.socket.readyState === WebSocket.OPEN) side.socket.close(1001, "test over");
      }
      await Promise.all(sides.map((side) => side.closed));
      await server.shutdown();
    },
  };
}

// --- A raw TCP peer ----------------------------------------------------------------------------------------------

interface ClientFrame {
  fin: boolean;
  opcode: number;
  masked: boolean;
  mask: Uint8Array;
  /** Bytes of the extended length field: 0, 2 or 8. */
  lengthBytes: number;
  payload: Uint8Array;
}

/** The server end of one raw TCP connection, with a buffered reader. */
class RawPeer {
  readonly conn: Deno.Conn;
  #buffered: Uint8Array = new Uint8Array(0);
  key = "";
  head = "";

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  async #fill(size: number): Promise<boolean> {
    while (this.#buffered.length < size) {
      const chunk = new Uint8Array(64 * 1024);
      let n: number | null;
      try {
        n = await this.conn.read(chunk);
      } catch {
        n = null;
      }
      if (n === null) return false;
      const joined = new Uint8Array(this.#buffered.length + n);
      joined.set(this.#buffered);
      joined.set(chunk.subarray(0, n), this.#buffered.length);
      this.#buffered = joined;
    }
    return true;
  }

  #take(size: number): Uint8Array {
    const out = this.#buffered.slice(0, size);
    this.#buffered = this.#buffered.subarray(size);
    return out;
  }

  /** Reads the upgrade request's head and keeps its key. */
  async readRequest(): Promise<string> {
    let end = -1;
    while (end < 0) {
      end = decoder.decode(this.#buffered).indexOf("\r\n\r\n");
      if (end < 0 && !await this.#fill(this.#buffered.length + 1)) {
        throw new Error("EOF in request");
      }
    }
    this.head = decoder.decode(this.#take(end + 4));
    this.key = /^sec-websocket-key: *(\S+)/im.exec(this.head)?.[1] ?? "";
    return this.head;
  }

  /** Reads the upgrade request and answers 101 with a correct accept key, then `after` in the same write. */
  async accept(after: Uint8Array = new Uint8Array(0), extraHeaders = ""): Promise<void> {
    await this.readRequest();
    const head = encoder.encode(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${await acceptKey(this.key)}\r\n${extraHeaders}\r\n`,
    );
    await this.write(concat(head, after));
  }

  async write(bytes: Uint8Array): Promise<void> {
    let at = 0;
    while (at < bytes.length) at += await this.conn.write(bytes.subarray(at));
  }

  /** Writes and ignores a failure (the client may have closed already). */
  async tryWrite(bytes: Uint8Array): Promise<void> {
    try {
      await this.write(bytes);
    } catch {
      // the client hung up
    }
  }

  /** The next frame the client sent, unmasked; null at EOF. */
  async readFrame(): Promise<ClientFrame | null> {
    if (!await this.#fill(2)) return null;
    const b0 = this.#buffered[0]!, b1 = this.#buffered[1]!;
    const masked = (b1 & 0x80) !== 0;
    const size = b1 & 0x7f;
    const lengthBytes = size === 126 ? 2 : size === 127 ? 8 : 0;
    if (!await this.#fill(2 + lengthBytes + (masked ? 4 : 0))) return null;
    const header = this.#take(2 + lengthBytes + (masked ? 4 : 0));
    const view = new DataView(header.buffer);
    const length = size === 126
      ? view.getUint16(2)
      : size === 127
      ? Number(view.getBigUint64(2))
      : size;
    const mask = masked ? header.slice(2 + lengthBytes) : new Uint8Array(4);
    if (!await this.#fill(length)) return null;
    const payload = this.#take(length);
    for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
    return { fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, masked, mask, lengthBytes, payload };
  }

  /** Reads frames until EOF; returns them. */
  async readToEnd(): Promise<ClientFrame[]> {
    const frames: ClientFrame[] = [];
    for (let frame; (frame = await this.readFrame()) !== null;) frames.push(frame);
    return frames;
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

/** A TCP listener on 127.0.0.1 that hands its first connection to `handle` (whose result `done` gives). */
function rawServer<T>(handle: (peer: RawPeer) => Promise<T>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const done = (async () => {
    const peer = new RawPeer(await listener.accept());
    try {
      return await handle(peer);
    } finally {
      peer.close();
    }
  })();
  return {
    url: `ws://127.0.0.1:${listener.addr.port}/raw`,
    done,
    async [Symbol.asyncDispose]() {
      listener.close();
      await done.catch(() => {});
    },
  };
}

async function acceptKey(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", encoder.encode(key + GUID));
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** A server frame: FIN unless told otherwise, unmasked unless a mask is given; `length` overrides the header's. */
function frame(
  opcode: number,
  payload: Uint8Array | string = new Uint8Array(0),
  options: { fin?: boolean; mask?: Uint8Array; length?: number } = {},
): Uint8Array {
  const body = typeof payload === "string" ? encoder.encode(payload) : payload.slice();
  const length = options.length ?? body.length;
  const header: number[] = [(options.fin === false ? 0 : 0x80) | opcode];
  const maskBit = options.mask ? 0x80 : 0;
  if (length < 126) {
    header.push(maskBit | length);
  } else if (length < 65536) {
    header.push(maskBit | 126, length >> 8, length & 0xff);
  } else {
    header.push(maskBit | 127);
    const big = new Uint8Array(8);
    new DataView(big.buffer).setBigUint64(0, BigInt(length));
    header.push(...big);
  }
  if (options.mask) {
    header.push(...options.mask);
    for (let i = 0; i < body.length; i++) body[i]! ^= options.mask[i & 3]!;
  }
  return concat(new Uint8Array(header), body);
}

function closePayload(code: number, reason = ""): Uint8Array {
  return concat(new Uint8Array([code >> 8, code & 0xff]), encoder.encode(reason));
}

function closeCode(frame: ClientFrame): number {
  return (frame.payload[0]! << 8) | frame.payload[1]!;
}

// --- Against Deno.serve ------------------------------------------------------------------------------------------

Deno.test("websocket client: text and binary messages of every length encoding round-trip through Deno.serve", async () => {
  await using server = denoServer({ protocol: "sandd.v1" });
  const probe = new Probe(`${server.url}/ws?daemon=x`, {
    protocols: ["sandd.v1", "other"],
    headers: { authorization: "Bearer secret-token" },
  });
  await probe.opened;
  const side = await server.accepted;
  assertStrictEquals(probe.client.readyState, WebSocketClient.OPEN);
  assertStrictEquals(probe.client.protocol, "sandd.v1");
  assertStrictEquals(side.headers.get("authorization"), "Bearer secret-token");
  assertStrictEquals(side.headers.get("sec-websocket-protocol"), "sandd.v1, other");
  assertEquals(
    new URL(side.url).pathname + new URL(side.url).search,
    "/ws?daemon=x",
  );

  for (const length of [0, 1, 2, 3, 4, 5, 125, 126, 127, 65535, 65536, 65537, 1 << 20]) {
    probe.client.send(pattern(length, length));
    assertEquals(bytesOf(await probe.next()), pattern(length, length), `binary of ${length}`);
    const text = "é".repeat(length >> 1) + "x".repeat(length & 1);
    probe.client.send(text);
    assertStrictEquals(await probe.next(), text, `text of ${length} bytes`);
  }
  // Views that start at odd offsets of their buffer are masked correctly (the masking works word by word where
  // the payload is aligned, byte by byte around it).
  const backing = pattern(4099, 7);
  for (const offset of [1, 2, 3, 5]) {
    probe.client.send(backing.subarray(offset, offset + 4090));
    assertEquals(bytesOf(await probe.next()), backing.subarray(offset, offset + 4090));
  }
  probe.client.close();
  assertEquals(await probe.closed, { code: 1000, reason: "" });
  assertStrictEquals(probe.client.readyState, WebSocketClient.CLOSED);
});

Deno.test("websocket client: payloads masked in 16-byte SIMD blocks, with their ends and odd starts, arrive intact", async () => {
  await using server = denoServer();
  const probe = new Probe(server.url);
  await probe.opened;
  // Deno's V8 has WebAssembly SIMD: the kernel must load (a broken module would fall back silently).
  assertStrictEquals(maskingKernel(), "simd");
  const block = 128 * 1024; // the SIMD kernel's memory: longer payloads take several rounds through it
  const lengths = [
    1023,
    1024,
    1025,
    1039,
    1040,
    1041,
    block - 1,
    block,
    block + 15,
    block + 16,
    3 * block + 7,
  ];
  for (const length of lengths) {
    const bytes = pattern(length, length % 251);
    probe.client.send(bytes);
    assertEquals(bytesOf(await probe.next()), bytes, `binary of ${length}`);
    const prepared = allocateBinaryMessage(length);
    prepared.set(pattern(length, 9));
    probe.client.send(prepared);
    assertEquals(bytesOf(await probe.next()), pattern(length, 9), `prepared binary of ${length}`);
  }
  const backing = pattern(block + 64, 11);
  for (const offset of [1, 2, 3, 17]) {
    const view = backing.subarray(offset, offset + block + 5);
    probe.client.send(view);
    assertEquals(bytesOf(await probe.next()), view, `view at offset ${offset}`);
  }
  probe.client.close();
  await probe.closed;
});

Deno.test("websocket client: a burst of small and large messages arrives whole and in order", async () => {
  await using server = denoServer();
  const probe = new Probe(server.url);
  await probe.opened;
  const sent: (string | Uint8Array)[] = [];
  for (let i = 0; i < 600; i++) {
    // Mostly small frames (gathered into one write), with large ones (written on their own) in between.
    const message = i % 97 === 0
      ? pattern(40_000 + i, i)
      : i % 2 === 0
      ? `message ${i}`
      : pattern(i % 50, i);
    sent.push(message);
    probe.client.send(message);
  }
  assertGreater(probe.client.bufferedAmount, 0);
  for (const expected of sent) {
    const got = await probe.next();
    if (typeof expected === "string") assertStrictEquals(got, expected);
    else assertEquals(bytesOf(got), expected);
  }
  assertStrictEquals(probe.client.bufferedAmount, 0);
  probe.client.close(4000, "done");
  assertEquals(await probe.closed, { code: 4000, reason: "done" });
  const side = await server.accepted;
  const event = await side.closed;
  assertStrictEquals(event.code, 4000);
  assertStrictEquals(event.reason, "done");
});

Deno.test("websocket client: prepared binary messages are framed in place and their buffers reused", async () => {
  await using server = denoServer();
  const probe = new Probe(server.url);
  await probe.opened;
  const size = 123_457;
  const first = allocateBinaryMessage(size);
  first.set(pattern(size, 3));
  const firstBuffer = first.buffer;
  probe.client.send(first);
  assertEquals(bytesOf(await probe.next()), pattern(size, 3));
  // Written, so its memory went back to the pool for the next message of the same size.
  const second = allocateBinaryMessage(size);
  assertStrictEquals(second.buffer, firstBuffer);
  second.set(pattern(size, 4));
  probe.client.send(second);
  assertEquals(bytesOf(await probe.next()), pattern(size, 4));
  // A view that does not start at the message's start is copied like any other bytes.
  const partial = allocateBinaryMessage(100);
  partial.set(pattern(100, 5));
  probe.client.send(partial.subarray(10));
  assertEquals(bytesOf(await probe.next()), pattern(100, 5).subarray(10));
  probe.client.close();
  await probe.closed;
});

Deno.test("websocket client: an HTTP refusal of the upgrade is an error with the status and the body", async () => {
  await using server = denoServer({
    refuse: () => new Response("token rejected", { status: 401, statusText: "Unauthorized" }),
  });
  const probe = new Probe(server.url);
  await assertRejects(() => probe.opened);
  const closed = await probe.closed;
  assertStrictEquals(closed.code, 1006);
  assertStrictEquals(probe.errors.length, 1);
  assertMatch(probe.errors[0]!, /^WebSocket upgrade refused: 401 Unauthorized: token rejected$/);
  assertStrictEquals(closed.reason, probe.errors[0]);
});

// --- Against a raw TCP peer --------------------------------------------------------------------------------------

Deno.test("websocket client: the upgrade request is well formed and every client frame is masked with a fresh key", async () => {
  const lengths = [0, 1, 125, 126, 65535, 65536, 70_000];
  await using server = rawServer(async (peer) => {
    await peer.accept();
    const frames: ClientFrame[] = [];
    for (let i = 0; i < lengths.length + 1; i++) frames.push((await peer.readFrame())!);
    return { head: peer.head, key: peer.key, frames };
  });
  const probe = new Probe(`${server.url}?a=1`);
  await probe.opened;
  probe.client.send("hello");
  for (const length of lengths) probe.client.send(pattern(length, length));
  const { head, key, frames } = await server.done;
  await probe.closed;

  const lines = head.split("\r\n");
  assertStrictEquals(lines[0], "GET /raw?a=1 HTTP/1.1");
  assertStringIncludes(head, `\r\nHost: ${new URL(server.url).host}\r\n`);
  assertStringIncludes(head, "\r\nUpgrade: websocket\r\n");
  assertStringIncludes(head, "\r\nConnection: Upgrade\r\n");
  assertStringIncludes(head, "\r\nSec-WebSocket-Version: 13\r\n");
  assertStrictEquals(atob(key).length, 16);

  assertEquals(
    frames.map(({ fin, opcode, masked }) => ({ fin, opcode, masked })),
    [
      { fin: true, opcode: 1, masked: true },
      ...lengths.map(() => ({ fin: true, opcode: 2, masked: true })),
    ],
  );
  assertStrictEquals(decoder.decode(frames[0]!.payload), "hello");
  lengths.forEach((length, i) => {
    const got = frames[i + 1]!;
    assertEquals(got.payload, pattern(length, length), `payload of ${length}`);
    assertStrictEquals(
      got.lengthBytes,
      length < 126 ? 0 : length < 65536 ? 2 : 8,
      `length field of ${length}`,
    );
  });
  const masks = new Set(frames.map((f) => f.mask.join(",")));
  assertGreater(masks.size, 1, "a fresh mask per frame");
  // The server hung up without a close frame.
  assertEquals(await probe.closed, { code: 1006, reason: "connection lost" });
});

Deno.test("websocket client: fragmented messages are reassembled, with pings answered between fragments", async () => {
  const utf8 = encoder.encode("héllo wörld");
  await using server = rawServer(async (peer) => {
    await peer.accept();
    await peer.write(concat(
      // Text in three fragments, a multi-byte character split across two of them, a ping and an unsolicited pong
      // in between.
      frame(0x1, utf8.subarray(0, 2), { fin: false }),
      frame(0x9, "ping-1"),
      frame(0x0, utf8.subarray(2, 7), { fin: false }),
      frame(0xa, "unsolicited"),
      frame(0x0, utf8.subarray(7)),
      // Binary in two fragments, the second masked (a server must not mask, but the bytes are still unmasked).
      frame(0x2, pattern(3000, 1).subarray(0, 1000), { fin: false }),
      frame(0x0, pattern(3000, 1).subarray(1000), { mask: new Uint8Array([1, 2, 3, 4]) }),
      frame(0x9, new Uint8Array(0)),
      frame(0x1, "after"),
    ));
    const pongs = [(await peer.readFrame())!, (await peer.readFrame())!];
    await peer.write(frame(0x8, closePayload(1000)));
    return { pongs, rest: await peer.readToEnd() };
  });
  const probe = new Probe(server.url);
  assertStrictEquals(await probe.next(), "héllo wörld");
  assertEquals(bytesOf(await probe.next()), pattern(3000, 1));
  assertStrictEquals(await probe.next(), "after");
  const { pongs, rest } = await server.done;
  assertEquals(
    pongs.map(({ opcode, masked, fin, payload }) => ({ opcode, masked, fin, payload })),
    [
      { opcode: 0xa, masked: true, fin: true, payload: encoder.encode("ping-1") },
      { opcode: 0xa, masked: true, fin: true, payload: new Uint8Array(0) },
    ],
  );
  assertStrictEquals(rest.length, 1);
  assertStrictEquals(rest[0]!.opcode, 0x8);
  assertStrictEquals(closeCode(rest[0]!), 1000);
  assertEquals(await probe.closed, { code: 1000, reason: "" });
  assertStrictEquals(probe.pending, 0);
});

Deno.test("websocket client: frames that arrive with the 101 response, split byte by byte, or with long lengths", async () => {
  const big = pattern(70_000, 9);
  await using server = rawServer(async (peer) => {
    // The first frame travels in the same write as the handshake response.
    await peer.accept(frame(0x1, "in the handshake packet"));
    // A frame written one byte at a time.
    for (const byte of frame(0x2, pattern(300, 2))) await peer.write(new Uint8Array([byte]));
    // 16-bit and 64-bit lengths, the header split inside its length field.
    const medium = frame(0x2, pattern(1000, 3));
    await peer.write(medium.subarray(0, 3));
    await peer.write(medium.subarray(3));
    const long = frame(0x2, big);
    await peer.write(long.subarray(0, 5));
    await peer.write(long.subarray(5, 20_000));
    await peer.write(long.subarray(20_000));
    // Several whole frames in one write.
    await peer.write(concat(frame(0x1, "a"), frame(0x1, ""), frame(0x1, "c")));
    await peer.write(frame(0x8, closePayload(1000, "all sent")));
    return await peer.readToEnd();
  });
  const probe = new Probe(server.url);
  assertStrictEquals(await probe.next(), "in the handshake packet");
  assertEquals(bytesOf(await probe.next()), pattern(300, 2));
  assertEquals(bytesOf(await probe.next()), pattern(1000, 3));
  assertEquals(bytesOf(await probe.next()), big);
  assertStrictEquals(await probe.next(), "a");
  assertStrictEquals(await probe.next(), "");
  assertStrictEquals(await probe.next(), "c");
  assertEquals(await probe.closed, { code: 1000, reason: "all sent" });
  const replies = await server.done;
  assertStrictEquals(replies.length, 1);
  assertStrictEquals(closeCode(replies[0]!), 1000);
});

Deno.test("websocket client: the server's close is answered with its code and reported (1005 when it has none)", async () => {
  const cases: [sent: Uint8Array, reported: ClientCloseEvent, replyCode: number][] = [
    [closePayload(4003, "bye now"), { code: 4003, reason: "bye now" }, 4003],
    [new Uint8Array(0), { code: 1005, reason: "" }, 1000],
  ];
  for (const [sent, reported, replyCode] of cases) {
    await using server = rawServer(async (peer) => {
      await peer.accept(frame(0x8, sent));
      return await peer.readToEnd();
    });
    const probe = new Probe(server.url);
    assertEquals(await probe.closed, reported);
    const replies = await server.done;
    assertStrictEquals(replies.length, 1);
    assertStrictEquals(replies[0]!.opcode, 0x8);
    assertStrictEquals(closeCode(replies[0]!), replyCode);
  }
});

Deno.test("websocket client: close() sends its code and reason and waits for the server's close", async () => {
  const received = Promise.withResolvers<ClientFrame>();
  const reply = Promise.withResolvers<void>();
  await using server = rawServer(async (peer) => {
    await peer.accept();
    received.resolve((await peer.readFrame())!);
    await reply.promise;
    await peer.write(frame(0x8, closePayload(4002, "done")));
    return await peer.readToEnd();
  });
  const probe = new Probe(server.url);
  await probe.opened;
  probe.client.close(4002, "done");
  assertStrictEquals(probe.client.readyState, WebSocketClient.CLOSING);
  const closeFrame = await received.promise;
  assertStrictEquals(closeFrame.opcode, 0x8);
  assert(closeFrame.masked);
  assertStrictEquals(closeCode(closeFrame), 4002);
  assertStrictEquals(decoder.decode(closeFrame.payload.subarray(2)), "done");
  // Sends after close() are dropped.
  probe.client.send("late");
  assertStrictEquals(probe.client.bufferedAmount, 0);
  reply.resolve();
  assertEquals(await probe.closed, { code: 4002, reason: "done" });
  assertStrictEquals(probe.client.readyState, WebSocketClient.CLOSED);
  // The client does not answer the server's close a second time, and sends nothing else.
  assertEquals(await server.done, []);
});

Deno.test("websocket client: close() gives up on a server that never answers", async () => {
  await using server = rawServer(async (peer) => {
    await peer.accept();
    return await peer.readToEnd();
  });
  const probe = new Probe(server.url);
  await probe.opened;
  const started = performance.now();
  probe.client.close(1001, "going away");
  assertEquals(await probe.closed, { code: 1001, reason: "going away" });
  assertGreater(performance.now() - started, 500);
  const frames = await server.done;
  assertStrictEquals(frames.length, 1);
  assertStrictEquals(closeCode(frames[0]!), 1001);
});

Deno.test("websocket client: an oversized frame is refused with 1009 before its payload is read", async () => {
  await using server = rawServer(async (peer) => {
    // Only the header of a frame one byte over the limit: the client must not wait for (or allocate) the body.
    await peer.accept(frame(0x2, new Uint8Array(0), { length: MAX_MESSAGE + 1 }));
    return await peer.readToEnd();
  });
  const probe = new Probe(server.url);
  assertEquals(await probe.closed, { code: 1009, reason: "message too large" });
  const frames = await server.done;
  assertStrictEquals(frames.length, 1);
  assertStrictEquals(frames[0]!.opcode, 0x8);
  assertStrictEquals(closeCode(frames[0]!), 1009);
  assertStrictEquals(decoder.decode(frames[0]!.payload.subarray(2)), "message too large");
});

Deno.test("websocket client: a fragmented message over the limit is refused with 1009", async () => {
  const half = new Uint8Array(MAX_MESSAGE / 2 + 1);
  await using server = rawServer(async (peer) => {
    await peer.accept(frame(0x2, half, { fin: false }));
    // The client may refuse and hang up while this is still being written.
    await peer.tryWrite(frame(0x0, half));
    return await peer.readToEnd();
  });
  const probe = new Probe(server.url);
  assertEquals(await probe.closed, { code: 1009, reason: "message too large" });
  assertStrictEquals(probe.pending, 0);
  const frames = await server.done;
  assertStrictEquals(frames.length, 1);
  assertStrictEquals(closeCode(frames[0]!), 1009);
});

Deno.test("websocket client: unknown opcodes and stray continuations are refused with 1002", async () => {
  for (
    const [bad, reason] of [
      [frame(0x3, "x"), "unexpected opcode 3"],
      [frame(0xb, "x"), "unexpected opcode 11"],
      [frame(0x0, "stray continuation"), "unexpected opcode 0"],
    ] as const
  ) {
    await using server = rawServer(async (peer) => {
      await peer.accept(concat(frame(0x1, "before"), bad, frame(0x1, "after")));
      return await peer.readToEnd();
    });
    const probe = new Probe(server.url);
    assertStrictEquals(await probe.next(), "before");
    assertEquals(await probe.closed, { code: 1002, reason });
    assertStrictEquals(probe.pending, 0, "nothing is delivered after a protocol error");
    const frames = await server.done;
    assertStrictEquals(frames.length, 1);
    assertStrictEquals(closeCode(frames[0]!), 1002);
  }
});

Deno.test("websocket client: a connection lost in the middle of a frame is reported as 1006", async () => {
  for (const cut of [1, 3, 10]) {
    await using server = rawServer(async (peer) => {
      await peer.accept(frame(0x2, pattern(1000)).subarray(0, cut));
    });
    const probe = new Probe(server.url);
    await probe.opened;
    assertEquals(await probe.closed, { code: 1006, reason: "connection lost" });
    assertStrictEquals(probe.pending, 0);
    assertEquals(probe.errors, []);
    await server.done;
  }
});

Deno.test("websocket client: broken handshakes fail with an error, a 1006 close and no open", async () => {
  const cases: [(peer: RawPeer) => Promise<void>, RegExp][] = [
    [async (peer) => {
      await peer.readRequest();
      await peer.write(
        encoder.encode(
          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
            "Sec-WebSocket-Accept: d3Jvbmc=\r\n\r\n",
        ),
      );
    }, /^Bad Sec-WebSocket-Accept from the server$/],
    [async (peer) => {
      await peer.readRequest();
      await peer.write(encoder.encode("HTTP/1.1 101 Switching"));
      await peer.conn.closeWrite();
    }, /^Connection closed during the WebSocket handshake$/],
    [async (peer) => {
      await peer.readRequest();
      await peer.write(encoder.encode("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"));
    }, /^WebSocket upgrade refused: 200 OK: hi$/],
    [async (peer) => {
      await peer.readRequest();
      await peer.tryWrite(encoder.encode(`HTTP/1.1 101 ${"x".repeat(70 * 1024)}`));
      await peer.readToEnd();
    }, /^WebSocket handshake response too large$/],
  ];
  for (const [respond, error] of cases) {
    await using server = rawServer(async (peer) => {
      await respond(peer);
      await peer.readToEnd();
    });
    const probe = new Probe(server.url);
    await assertRejects(() => probe.opened);
    const closed = await probe.closed;
    assertStrictEquals(closed.code, 1006);
    assertStrictEquals(probe.errors.length, 1, String(error));
    assertMatch(probe.errors[0]!, error);
    assertStrictEquals(probe.client.readyState, WebSocketClient.CLOSED);
    await server.done;
  }
});

Deno.test("websocket client: a refused TCP connection fails with an error and a 1006 close", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const probe = new Probe(`ws://127.0.0.1:${port}/ws`);
  await assertRejects(() => probe.opened);
  assertStrictEquals((await probe.closed).code, 1006);
  assertStrictEquals(probe.errors.length, 1);
});

Deno.test("websocket client: close() before the connection opens ends it at once", async () => {
  await using server = rawServer(async (peer) => {
    await peer.readRequest().catch(() => "");
    return await peer.readToEnd();
  });
  const probe = new Probe(server.url);
  assertStrictEquals(probe.client.readyState, WebSocketClient.CONNECTING);
  probe.client.send("dropped");
  probe.client.close();
  assertEquals(await probe.closed, { code: 1006, reason: "closed before open" });
  await assertRejects(() => probe.opened);
  assertEquals(await server.done, []);
});
