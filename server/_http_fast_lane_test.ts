// The listener's fast lane (Deno.serve's engine on a plain connection chosen by a peek at its first head), with raw
// sockets: which connections take it, that the hardening holds on it, and that upgrades stay on the other engine.
import { assert, assertEquals, assertStringIncludes } from "../tests/_assert.ts";
import { type HttpHandler, type HttpListenerOptions, serveHttp } from "./_http_listener.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function listen(options: HttpListenerOptions, handler: HttpHandler = () => new Response("ok")) {
  return serveHttp({ hostname: "127.0.0.1", port: 0, fastLane: true, ...options }, handler);
}

/** Read until `count` answers (by their `content-length`) have arrived, or the peer closes. */
async function readAnswers(conn: Deno.Conn, count: number): Promise<string> {
  const buffer = new Uint8Array(64 * 1024);
  let text = "";
  while (true) {
    let complete = 0;
    for (let at = 0;;) {
      const end = text.indexOf("\r\n\r\n", at);
      if (end < 0) break;
      const length = Number(/content-length: *(\d+)/i.exec(text.slice(at, end))?.[1] ?? 0);
      if (text.length < end + 4 + length) break;
      complete++;
      at = end + 4 + length;
    }
    if (complete >= count) return text;
    const n = await conn.read(buffer).catch(() => null);
    if (n === null) return text;
    text += decoder.decode(buffer.subarray(0, n));
  }
}

/** Read until the peer closes. */
async function readToClose(conn: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(4096);
  let text = "";
  try {
    for (let n; (n = await conn.read(buffer)) !== null;) {
      text += decoder.decode(buffer.subarray(0, n));
    }
  } catch {
    // A reset is a close too.
  }
  return text;
}

const GET = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

Deno.test("http fast lane: a plain keep-alive connection takes it, with bodies, the address and completion", async () => {
  const completions: Promise<void>[] = [];
  await using server = listen({}, async (request, info) => {
    completions.push(info.completed);
    const body = request.method === "POST" ? await request.text() : "";
    return new Response(
      `${request.method} ${new URL(request.url).pathname} ${body} ${info.remoteAddr.port}`,
    );
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  try {
    await conn.write(encoder.encode(GET));
    assertStringIncludes(await readAnswers(conn, 1), `GET /a  ${conn.localAddr.port}`);
    await conn.write(
      encoder.encode("POST /b HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\n\r\nhello"),
    );
    assertStringIncludes(await readAnswers(conn, 1), "POST /b hello");
    assertEquals(server.fastLaneConnections, 1);
    await Promise.all(completions);
  } finally {
    conn.close();
  }
});

Deno.test("http fast lane: off by option, and never for a connection that starts with an upgrade", async () => {
  {
    await using server = listen({ fastLane: false });
    const response = await fetch(`http://127.0.0.1:${server.addr.port}/`);
    assertEquals(await response.text(), "ok");
    assertEquals(server.fastLaneConnections, 0);
  }
  await using server = listen({}, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.onmessage = (event) => socket.send(`echo ${event.data}`);
    return response;
  });
  const ws = new WebSocket(`ws://127.0.0.1:${server.addr.port}/ws`);
  const { promise: echoed, resolve } = Promise.withResolvers<string>();
  ws.onopen = () => ws.send("hi");
  ws.onmessage = (event) => resolve(event.data);
  assertEquals(await echoed, "echo hi");
  assertEquals(server.fastLaneConnections, 0);
  const { promise: closed, resolve: onClose } = Promise.withResolvers<void>();
  ws.onclose = () => onClose();
  ws.close();
  await closed;
});

Deno.test("http fast lane: an upgrade request after a plain one reaches the handler, whose refusal is answered", async () => {
  let reached = 0;
  await using server = listen({}, (request) => {
    reached++;
    return request.headers.has("upgrade")
      ? Response.json({ code: "BAD_REQUEST" }, { status: 400 })
      : new Response("ok");
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  try {
    await conn.write(encoder.encode(GET));
    await readAnswers(conn, 1);
    await conn.write(encoder.encode(
      "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    ));
    const answer = await readAnswers(conn, 1);
    assertStringIncludes(answer, "HTTP/1.1 400");
    assertStringIncludes(answer, "BAD_REQUEST");
    assertEquals(reached, 2);
    assertEquals(server.fastLaneConnections, 1);
  } finally {
    conn.close();
  }
});

Deno.test("http fast lane: a silent connection is closed at the head deadline; an idle one for its next head", async () => {
  await using server = listen({ headerTimeoutMs: 300 });
  const silent = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  const idle = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  try {
    await idle.write(encoder.encode(GET));
    assertStringIncludes(await readAnswers(idle, 1), "ok");
    assertEquals(server.fastLaneConnections, 1);
    const started = performance.now();
    assertEquals(await readToClose(silent), "");
    assertEquals(await readToClose(idle), "");
    assert(performance.now() - started < 5_000);
    assertEquals(server.connections, 0);
  } finally {
    silent.close();
    idle.close();
  }
});

Deno.test("http fast lane: a head split across writes, a big head and bytes that are not HTTP are all answered", async () => {
  await using server = listen(
    {},
    (request) => new Response(`len ${request.headers.get("x-big")?.length ?? 0}`),
  );
  const split = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  const big = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  const junk = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  try {
    await split.write(encoder.encode("GET / HTTP/1.1\r\nHo"));
    await new Promise((resolve) => setTimeout(resolve, 30));
    await split.write(encoder.encode("st: x\r\n\r\n"));
    assertStringIncludes(await readAnswers(split, 1), "len 0");
    // Larger than the peek buffer: served by the other engine, unchanged.
    await big.write(
      encoder.encode(`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"b".repeat(10_000)}\r\n\r\n`),
    );
    assertStringIncludes(await readAnswers(big, 1), "len 10000");
    await junk.write(encoder.encode("\x16\x03\x01 hello\r\n\r\n"));
    assertStringIncludes(await readToClose(junk), "400");
    assertEquals(server.fastLaneConnections, 1);
  } finally {
    split.close();
    big.close();
    junk.close();
  }
});

Deno.test("http fast lane: at maxConnections an idle fast connection makes room; shutdown lets a busy one finish", async () => {
  const { promise: release, resolve } = Promise.withResolvers<void>();
  const { promise: busyStarted, resolve: started } = Promise.withResolvers<void>();
  const server = listen({ maxConnections: 2, headerTimeoutMs: 60_000 }, async (request) => {
    if (new URL(request.url).pathname === "/slow") {
      started();
      await release;
    }
    return new Response("done");
  });
  const idle = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  const busy = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  const third = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  try {
    await idle.write(encoder.encode(GET));
    await readAnswers(idle, 1);
    await busy.write(encoder.encode("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"));
    await busyStarted;
    // The third connection takes the idle one's place.
    await third.write(encoder.encode(GET));
    assertStringIncludes(await readAnswers(third, 1), "done");
    assertEquals(await readToClose(idle), "");
    const stopped = server.shutdown();
    resolve();
    assertStringIncludes(await readToClose(busy), "done");
    await stopped;
  } finally {
    idle.close();
    busy.close();
    third.close();
  }
});

Deno.test("http fast lane: an error answer to a streamed body closes the connection, and the engine stops reading", async () => {
  await using server = listen({}, async (request) => {
    const reader = request.body!.getReader();
    await reader.read();
    await reader.cancel();
    return new Response("too large", { status: 413 });
  });
  let sent = 0;
  const endless = new ReadableStream<Uint8Array>({
    pull(controller) {
      sent += 16 * 1024;
      controller.enqueue(new Uint8Array(16 * 1024));
    },
  });
  const answer = await fetch(`http://127.0.0.1:${server.addr.port}/`, {
    method: "POST",
    body: endless,
  })
    .catch((error) => error);
  if (!(answer instanceof Error)) {
    assertEquals(answer.status, 413);
    assertEquals(answer.headers.get("connection"), "close");
    await answer.body?.cancel();
  }
  assertEquals(server.fastLaneConnections, 1);
  // Cut off at once (Deno.serve's engine alone would read and discard the endless body for as long as it came).
  const deadline = Date.now() + 5_000;
  while (server.connections > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assertEquals(server.connections, 0);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const settled = sent;
  await new Promise((resolve) => setTimeout(resolve, 300));
  assertEquals(sent, settled, "the upload went on after the connection was closed");
  assert(sent < 256 * 1024 * 1024, `${sent} bytes sent`);
});

Deno.test("http fast lane: request.signal aborts once the answer is sent, not before, and Deno warns of nothing", async () => {
  const warnings: unknown[] = [];
  const warn = console.warn;
  console.warn = (...args: unknown[]) => warnings.push(args);
  try {
    const aborted: Promise<void>[] = [];
    let abortedEarly = false;
    await using server = listen({}, async (request) => {
      const signal = request.signal;
      const { promise, resolve } = Promise.withResolvers<void>();
      signal.addEventListener("abort", () => resolve(), { once: true });
      aborted.push(promise);
      await new Promise((r) => setTimeout(r, 20));
      abortedEarly ||= signal.aborted;
      return new Response("ok");
    });
    for (let i = 0; i < 2; i++) {
      const response = await fetch(`http://127.0.0.1:${server.addr.port}/`);
      assertEquals(await response.text(), "ok");
    }
    await Promise.all(aborted);
    assertEquals(abortedEarly, false);
    assertEquals(server.fastLaneConnections, 1);
  } finally {
    console.warn = warn;
  }
  assertEquals(warnings, []);
});
