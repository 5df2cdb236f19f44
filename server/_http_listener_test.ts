// The hardened HTTP listener with real sockets: requests, header deadline, connection cap, WebSocket upgrade, TLS.
// Surviving descriptor exhaustion needs a lowered descriptor limit, so it is tested against a controller child in
// tests/security_listener_test.ts.
import { assert, assertEquals, assertLess, assertRejects, assertThrows } from "../tests/_assert.ts";
import { hasOpenssl, makeTestCerts } from "../tests/_certs.ts";
import {
  ADMIT_HOLD_MS,
  DEFAULT_EVICT_AFTER_MS,
  type HttpHandler,
  type HttpListenerOptions,
  serveHttp,
} from "./_http_listener.ts";
import { upgradeWebSocket } from "./_http1_request.ts";

const encoder = new TextEncoder();

function listen(options: HttpListenerOptions, handler: HttpHandler = () => new Response("ok")) {
  return serveHttp({ hostname: "127.0.0.1", port: 0, ...options }, handler);
}

/** A raw socket that sent the start of a request head. */
async function slowHead(port: number): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "));
  return conn;
}

/** Read until the peer closes; returns everything read. */
async function readToClose(conn: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(4096);
  let text = "";
  try {
    for (let n; (n = await conn.read(buffer)) !== null;) {
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
  } catch {
    // A reset is a close too.
  }
  return text;
}

Deno.test("http listener: serves requests with the client's address and completion", async () => {
  const { promise: done, resolve } = Promise.withResolvers<void>();
  let remote: Deno.NetAddr | undefined;
  await using server = listen({}, (request, info) => {
    remote = info.remoteAddr;
    info.completed.then(resolve);
    if (new URL(request.url).pathname === "/throw") throw new Error("boom");
    return new Response(`hello ${request.method}`);
  });
  assert(server.hardened, "this Deno has Deno.serveHttp: the hardened listener must be in use");
  const response = await fetch(`http://127.0.0.1:${server.addr.port}/`);
  assertEquals(await response.text(), "hello GET");
  await done;
  assertEquals(remote?.hostname, "127.0.0.1");
  assert((remote?.port ?? 0) > 0);
  const failed = await fetch(`http://127.0.0.1:${server.addr.port}/throw`);
  assertEquals(failed.status, 500);
  await failed.body?.cancel();
});

Deno.test("http listener: onError answers for a handler that threw", async () => {
  await using server = listen({
    onError: (error) => new Response(`sorry: ${(error as Error).message}`, { status: 503 }),
  }, () => {
    throw new Error("nope");
  });
  const response = await fetch(`http://127.0.0.1:${server.addr.port}/`);
  assertEquals(response.status, 503);
  assertEquals(await response.text(), "sorry: nope");
});

Deno.test("http listener: a partial request head is closed after headerTimeoutMs, a full one is served", async () => {
  await using server = listen({ headerTimeoutMs: 300 });
  const started = performance.now();
  const slow = await slowHead(server.addr.port);
  try {
    const response = await fetch(`http://127.0.0.1:${server.addr.port}/`);
    assertEquals(await response.text(), "ok");
    assertEquals(await readToClose(slow), "");
    const elapsed = performance.now() - started;
    assert(elapsed >= 290, `closed after ${elapsed} ms, before the header timeout`);
    assertLess(elapsed, 3_000);
  } finally {
    slow.close();
  }
});

Deno.test("http listener: an idle keep-alive connection gets headerTimeoutMs for its next head", async () => {
  await using server = listen({ headerTimeoutMs: 300 });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  try {
    await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    const started = performance.now();
    const text = await readToClose(conn);
    assert(text.startsWith("HTTP/1.1 200"), text);
    assert(text.endsWith("ok"), text);
    const elapsed = performance.now() - started;
    assert(elapsed >= 250, `idle connection closed after ${elapsed} ms`);
  } finally {
    conn.close();
  }
});

Deno.test("http listener: staggered waits each get their own full headerTimeoutMs (one shared timer)", async () => {
  await using server = listen({ headerTimeoutMs: 400 });
  const first = await slowHead(server.addr.port);
  const firstAt = performance.now();
  // The second starts waiting while the first's deadline is armed; a keep-alive answer in between re-arms
  // nothing early.
  await new Promise((resolve) => setTimeout(resolve, 200));
  const second = await slowHead(server.addr.port);
  const secondAt = performance.now();
  const response = await fetch(`http://127.0.0.1:${server.addr.port}/`);
  assertEquals(await response.text(), "ok");
  try {
    const [a, b] = await Promise.all([
      readToClose(first).then(() => performance.now() - firstAt),
      readToClose(second).then(() => performance.now() - secondAt),
    ]);
    assert(a >= 390, `first closed after ${a} ms, before its deadline`);
    assert(b >= 390, `second closed after ${b} ms, before its deadline`);
    assertLess(a, 3_000);
    assertLess(b, 3_000);
  } finally {
    first.close();
    second.close();
  }
});

Deno.test("http listener: at maxConnections the oldest connection waiting for a head makes room after evictAfterMs", async () => {
  await using server = listen({ maxConnections: 4, headerTimeoutMs: 60_000, evictAfterMs: 300 });
  const slow: Deno.Conn[] = [];
  try {
    for (let i = 0; i < 4; i++) slow.push(await slowHead(server.addr.port));
    const firstAt = performance.now();
    // The fifth client is served once the first slow head has waited 300 ms: it is closed to make room.
    const response = await fetch(`http://127.0.0.1:${server.addr.port}/`);
    assertEquals(await response.text(), "ok");
    const servedAfter = performance.now() - firstAt;
    assertEquals(await readToClose(slow[0]!), "");
    assert(
      servedAfter >= 250,
      `served ${servedAfter} ms after the first slow head, before it waited 300 ms`,
    );
    assertLess(servedAfter, 5_000);
    assert(server.connections <= 4, `${server.connections} connections open`);
  } finally {
    for (const conn of slow) conn.close();
  }
});

Deno.test("http listener: by default a head waits 3 s before a new connection may take its place", async () => {
  // At 1 s, heads that were only unread behind a busy loop were closed in a failover of 15,000 daemons, each one a
  // daemon's backoff (server/CLUSTER.md, "Failed connects, not CPU, made the slow runs").
  assertEquals(DEFAULT_EVICT_AFTER_MS, 3_000);
  await using server = listen({ maxConnections: 1, headerTimeoutMs: 60_000 });
  const slow = await slowHead(server.addr.port);
  const firstAt = performance.now();
  try {
    const response = await fetch(`http://127.0.0.1:${server.addr.port}/`);
    assertEquals(await response.text(), "ok");
    const servedAfter = performance.now() - firstAt;
    assertEquals(await readToClose(slow), "");
    assert(servedAfter >= 2_900, `the slow head was closed for room after ${servedAfter} ms`);
    assertLess(servedAfter, 10_000);
  } finally {
    slow.close();
  }
});

Deno.test("http listener: time the loop was stalled does not count toward evictAfterMs", async () => {
  // The measure says this loop has been stalled all along (as the heartbeat's would while a backlog is read):
  // the slow heads are not closed for a newcomer however long they have waited. When it says the loop is
  // healthy again, the oldest makes room.
  let stalled = true;
  await using server = listen({
    maxConnections: 4,
    headerTimeoutMs: 60_000,
    evictAfterMs: 100,
    stalledSince: (since, now) => stalled ? now - since : 0,
  });
  const slow: Deno.Conn[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    for (let i = 0; i < 4; i++) slow.push(await slowHead(server.addr.port));
    const fifth = fetch(`http://127.0.0.1:${server.addr.port}/`);
    const first = await Promise.race([
      fifth.then(() => "served"),
      new Promise<string>((resolve) => timer = setTimeout(() => resolve("waiting"), 600)),
    ]);
    assertEquals(
      first,
      "waiting",
      "a slow head was closed for a newcomer while the loop was stalled",
    );
    assertEquals(server.connections, 4);
    stalled = false;
    assertEquals(await (await fifth).text(), "ok");
    assertEquals(await readToClose(slow[0]!), "");
  } finally {
    clearTimeout(timer);
    for (const conn of slow) conn.close();
  }
});

Deno.test("http listener: while reads lag, new connections wait in the kernel's backlog, ADMIT_HOLD_MS at most", async () => {
  let lag = 10_000;
  await using server = listen({ readLagMs: () => lag });
  const url = `http://127.0.0.1:${server.addr.port}/`;
  // The accept in progress takes the first; the lag is looked at before each next one.
  assertEquals(await (await fetch(url, { headers: { connection: "close" } })).text(), "ok");
  const heldAt = performance.now();
  const second = await fetch(url, { headers: { connection: "close" } });
  const held = performance.now() - heldAt;
  assertEquals(await second.text(), "ok");
  assert(held >= ADMIT_HOLD_MS - 200, `served after ${held} ms: not held while reads lagged`);
  assertLess(held, ADMIT_HOLD_MS + 2_000);
  // Reads on time again: the next is taken at once.
  lag = 0;
  const freeAt = performance.now();
  const third = await fetch(url, { headers: { connection: "close" } });
  assertEquals(await third.text(), "ok");
  assertLess(performance.now() - freeAt, ADMIT_HOLD_MS - 100);
});

Deno.test("http listener: a burst of clients past maxConnections whose heads are sent but unread is served, not closed", async () => {
  // 40 clients connect and send whole heads while the server's loop is blocked (as a busy controller's is when
  // thousands of daemons fail over to it): when it runs again it accepts faster than it reads. Closing the oldest
  // waiting connection at once closed clients whose heads were only unread (most of the 40 were).
  await using server = listen({ maxConnections: 4, headerTimeoutMs: 60_000 });
  const marker = await Deno.makeTempFile();
  await Deno.remove(marker);
  const child = new Deno.Command("python3", {
    args: ["-c", BURST_CLIENTS, String(server.addr.port), "40", marker],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const line = async () => {
    while (!out.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) throw new Error(`The clients ended: ${out}`);
      out += value;
    }
    const at = out.indexOf("\n");
    const text = out.slice(0, at);
    out = out.slice(at + 1);
    return text;
  };
  try {
    assertEquals(await line(), "ready");
    const stdin = child.stdin.getWriter();
    await stdin.write(encoder.encode("go\n"));
    await stdin.close();
    // Block this loop (the server's) until every client has connected and sent its head.
    const deadline = performance.now() + 20_000;
    while (!existsSync(marker)) {
      if (performance.now() > deadline) throw new Error("The clients did not connect within 20 s");
    }
    assertEquals(await line(), "40 answered");
  } finally {
    await lines.cancel().catch(() => {});
    await child.status;
    await Deno.remove(marker).catch(() => {});
  }
});

/** Python: connect ARGV[2] clients to port ARGV[1] on "go", each sending a whole head; touch ARGV[3]; count 200s. */
const BURST_CLIENTS = `
import socket, sys
port, n, marker = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
print("ready", flush=True)
sys.stdin.readline()
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
    socks.append(s)
open(marker, "w").close()
answered = 0
for s in socks:
    s.settimeout(30)
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    if data.startswith(b"HTTP/1.1 200"):
        answered += 1
print(f"{answered} answered", flush=True)
`;

function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("http listener: at maxConnections with every connection busy, a new one is closed", async () => {
  const { promise: release, resolve } = Promise.withResolvers<void>();
  let started = 0;
  const { promise: bothStarted, resolve: bothIn } = Promise.withResolvers<void>();
  await using server = listen({ maxConnections: 2 }, async () => {
    if (++started === 2) bothIn();
    await release;
    return new Response("late");
  });
  const url = `http://127.0.0.1:${server.addr.port}/`;
  const busy = [fetch(url), fetch(url)];
  await bothStarted;
  const extra = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  try {
    await extra.write(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n")).catch(() => 0);
    assertEquals(await readToClose(extra), "");
  } finally {
    extra.close();
  }
  resolve();
  for (const response of await Promise.all(busy)) assertEquals(await response.text(), "late");
});

Deno.test("http listener: a WebSocket upgrade stops counting and outlives the header timeout", async () => {
  const { promise: serverClosed, resolve: closedAtServer } = Promise.withResolvers<void>();
  await using server = listen({ headerTimeoutMs: 200 }, (request) => {
    const { socket, response } = upgradeWebSocket(request);
    socket.onmessage = (event) => socket.send(`echo ${event.data}`);
    socket.onclose = () => closedAtServer();
    return response;
  });
  const ws = new WebSocket(`ws://127.0.0.1:${server.addr.port}/ws`);
  const messages: string[] = [];
  const { promise: open, resolve: opened } = Promise.withResolvers<void>();
  ws.onopen = () => opened();
  await open;
  // Twice the header timeout: an upgraded connection is no longer subject to it.
  await new Promise((resolve) => setTimeout(resolve, 400));
  assertEquals(server.connections, 0);
  const { promise: got, resolve: received } = Promise.withResolvers<void>();
  ws.onmessage = (event) => {
    messages.push(event.data);
    received();
  };
  ws.send("hi");
  await got;
  assertEquals(messages, ["echo hi"]);
  const { promise: closed, resolve: closedAtClient } = Promise.withResolvers<void>();
  ws.onclose = () => closedAtClient();
  ws.close();
  await Promise.all([closed, serverClosed]);
});

Deno.test({
  name: "http listener: TLS serves https and wss",
  ignore: !(await hasOpenssl()),
  async fn() {
    await using certs = await makeTestCerts();
    await using server = listen(
      { cert: certs.cert, key: certs.key, headerTimeoutMs: 2_000 },
      (request) => {
        if (request.headers.get("upgrade") !== "websocket") return new Response("secure");
        const { socket, response } = upgradeWebSocket(request);
        socket.onmessage = (event) => socket.send(event.data);
        return response;
      },
    );
    using client = Deno.createHttpClient({ caCerts: [certs.caCert] });
    const response = await fetch(`https://127.0.0.1:${server.addr.port}/`, { client });
    assertEquals(await response.text(), "secure");
    // A TCP connection that never starts its TLS handshake stops counting at the header timeout. (Deno 2.9 keeps
    // the socket of a TLS connection closed before its handshake until the peer sends or leaves: see SECURITY.md.)
    const silent = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    try {
      const ws = new WebSocket(`wss://127.0.0.1:${server.addr.port}/ws`, { client });
      const { promise: echoed, resolve } = Promise.withResolvers<string>();
      ws.onopen = () => ws.send("over tls");
      ws.onmessage = (event) => resolve(event.data);
      assertEquals(await echoed, "over tls");
      const { promise: closed, resolve: onClose } = Promise.withResolvers<void>();
      ws.onclose = () => onClose();
      ws.close();
      await closed;
      const deadline = Date.now() + 5_000;
      while (server.connections > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assertEquals(server.connections, 0);
    } finally {
      silent.close();
    }
  },
});

Deno.test("http listener: shutdown closes waiting connections; an aborted signal stops it", async () => {
  const server = listen({});
  const slow = await slowHead(server.addr.port);
  try {
    await server.shutdown();
    assertEquals(await readToClose(slow), "");
    await server.finished;
    await assertRejects(() => Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }));
  } finally {
    slow.close();
  }
  const controller = new AbortController();
  const stopped = listen({ signal: controller.signal });
  controller.abort();
  await stopped.finished;
});

Deno.test("http listener: options are validated before binding", () => {
  assertThrows(() => listen({ maxConnections: 0 }), RangeError, "maxConnections must be");
  assertThrows(() => listen({ maxConnections: 1.5 }), RangeError, "got 1.5");
  assertThrows(() => listen({ evictAfterMs: -1 }), RangeError, "evictAfterMs must be");
  assertThrows(() => listen({ headerTimeoutMs: -1 }), RangeError, "headerTimeoutMs must be");
  assertThrows(() => listen({ port: 70_000 }), RangeError, "got 70000");
  assertThrows(() => listen({ cert: "x" }), TypeError, "cert and key");
});

Deno.test("http listener: without Deno.serveHttp it falls back to Deno.serve and still serves", async () => {
  const descriptor = Object.getOwnPropertyDescriptor(Deno, "serveHttp");
  Object.defineProperty(Deno, "serveHttp", { value: undefined, configurable: true });
  try {
    await using server = listen({});
    assertEquals(server.hardened, false);
    const response = await fetch(`http://127.0.0.1:${server.addr.port}/`);
    assertEquals(await response.text(), "ok");
  } finally {
    if (descriptor) Object.defineProperty(Deno, "serveHttp", descriptor);
    else delete (Deno as { serveHttp?: unknown }).serveHttp;
  }
});
