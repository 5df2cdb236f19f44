import { assert, assertEquals, assertLess, assertRejects } from "./_assert.ts";
import {
  DaemonDisconnectedError,
  type DaemonEvent,
  ProtocolError,
  Server,
  SUBPROTOCOL,
} from "../mod.ts";
import { encodeDataFrame } from "../protocol/frame.ts";
import { alive, eventually, runDaemonCli, TestDaemon } from "./_daemon.ts";
import { LinkProxy } from "./_proxy.ts";

function nextEvent(
  server: Server,
  type: "connect" | "disconnect",
  id: string,
): Promise<DaemonEvent> {
  return new Promise((resolve) => {
    const listener = (event: Event) => {
      if ((event as DaemonEvent).daemon.id !== id) return;
      server.removeEventListener(type, listener);
      resolve(event as DaemonEvent);
    };
    server.addEventListener(type, listener);
  });
}

Deno.test("a daemon killed mid-command fails the call within seconds", async () => {
  await using server = await Server.listen({ port: 0, reconnectGraceMs: 500 });
  const daemon = new TestDaemon({ id: "doomed", url: server.url });
  try {
    await server.waitForDaemon("doomed");
    const pending = server.exec("doomed", "sleep 3", { timeout: 60_000 });
    const running = await server.processes("doomed");
    assertEquals(running.length, 1);
    const started = performance.now();
    await daemon.stop("SIGKILL");
    await assertRejects(() => pending, DaemonDisconnectedError, "doomed");
    assertLess(performance.now() - started, 5_000);
  } finally {
    await daemon.stop();
  }
});

Deno.test("daemons come back after the controller restarts", async () => {
  let server = await Server.listen({ port: 0 });
  const port = server.port;
  const daemon = new TestDaemon({ id: "phoenix", url: server.url });
  try {
    const first = await server.waitForDaemon("phoenix");
    await server.close();
    server = await Server.listen({ port });
    const again = await server.waitForDaemon("phoenix", { timeout: 10_000 });
    assertEquals(again.pid, first.pid);
    assertEquals((await server.exec("phoenix", "echo back")).stdout, "back\n");
  } finally {
    await daemon.stop();
    await server.close();
  }
});

Deno.test("a second daemon claiming a connected id is refused; the first keeps working", async () => {
  await using server = await Server.listen({ port: 0 });
  const first = new TestDaemon({ id: "twin", url: server.url });
  const info = await server.waitForDaemon("twin");
  const second = new TestDaemon({ id: "twin", url: server.url });
  try {
    assertEquals(info.pid, first.pid);
    // The second one is refused with close code 4009 and says so in its log; it keeps retrying with backoff.
    await second.waitForLog("already connected");
    assertEquals(server.daemon("twin")?.pid, first.pid);
    assertEquals((await server.exec("twin", "echo still")).stdout, "still\n");
    assertEquals(server.daemonCount, 1);
  } finally {
    await Promise.all([first.stop(), second.stop()]);
  }
});

Deno.test("a half-open link is detected by both sides and the daemon reconnects", async () => {
  await using server = await Server.listen({ port: 0, heartbeatMs: 200 });
  await using proxy = new LinkProxy(server.port);
  const daemon = new TestDaemon({ id: "halfopen", url: proxy.url() });
  try {
    await server.waitForDaemon("halfopen");
    const gone = nextEvent(server, "disconnect", "halfopen");
    const started = performance.now();
    proxy.stall();
    await gone;
    assertLess(performance.now() - started, 3_000);
    const back = nextEvent(server, "connect", "halfopen");
    proxy.stall(false);
    await proxy.cut();
    await back;
    assertEquals((await server.exec("halfopen", "echo ok")).stdout, "ok\n");
  } finally {
    await daemon.stop();
  }
});

Deno.test("SIGTERM closes the daemon cleanly and kills its children", async () => {
  await using server = await Server.listen({ port: 0, reconnectGraceMs: 100 });
  const daemon = new TestDaemon({ id: "term", url: server.url });
  await server.waitForDaemon("term");
  const p = await server.spawn("term", "sleep 300");
  assert(alive(p.pid));
  const gone = nextEvent(server, "disconnect", "term");
  const { code } = await daemon.stop("SIGTERM");
  assertEquals(code, 0);
  await gone;
  assert(!alive(p.pid), "child survived the daemon");
  await assertRejects(() => p.status, DaemonDisconnectedError);
});

Deno.test("a protocol version mismatch is refused with a reason", async () => {
  await using server = await Server.listen({ port: 0 });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  try {
    const request = [
      "GET /ws HTTP/1.1",
      `Host: 127.0.0.1:${server.port}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version: 13",
      "Sec-WebSocket-Protocol: sandd.v999",
      "",
      "",
    ].join("\r\n");
    await conn.write(new TextEncoder().encode(request));
    const buffer = new Uint8Array(4096);
    let text = "";
    while (!text.includes("speaks")) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    assert(text.startsWith("HTTP/1.1 426"), text);
    assert(text.includes(`speaks ${SUBPROTOCOL}`), text);
  } finally {
    conn.close();
  }
});

function rawClient(
  url: string,
): Promise<{ socket: WebSocket; messages: unknown[]; closed: Promise<CloseEvent> }> {
  const socket = new WebSocket(url, [SUBPROTOCOL]);
  socket.binaryType = "arraybuffer";
  const messages: unknown[] = [];
  socket.onmessage = (e) => messages.push(typeof e.data === "string" ? JSON.parse(e.data) : e.data);
  const closed = new Promise<CloseEvent>((resolve) => socket.onclose = resolve);
  return new Promise((resolve, reject) => {
    socket.onopen = () => resolve({ socket, messages, closed });
    socket.onerror = () => reject(new Error("raw client failed to connect"));
  });
}

Deno.test("malformed frames never take down the controller or other daemons", async () => {
  await using server = await Server.listen({ port: 0 });
  const daemon = new TestDaemon({ id: "steady", url: server.url });
  try {
    await server.waitForDaemon("steady");
    // Before hello: garbage closes only that socket.
    for (const junk of ["not json", "[]", '{"t":"exit"}', new Uint8Array([1, 2, 3])]) {
      const raw = await rawClient(server.url);
      raw.socket.send(junk);
      const event = await raw.closed;
      assertEquals(event.code, 4000);
    }
    // After hello: each bad frame gets an error message and the link stays up.
    const raw = await rawClient(server.url);
    raw.socket.send(JSON.stringify({
      t: "hello",
      id: "raw",
      labels: {},
      hostname: "h",
      platform: "linux",
      arch: "x",
      version: "0",
      pid: 1,
      processes: 0,
      instance: "i",
    }));
    await server.waitForDaemon("raw");
    const junk: (string | Uint8Array)[] = [
      "{",
      "null",
      '{"t":"nope"}',
      '{"t":"res","rid":99,"ok":true,"data":{}}',
      '{"t":"res","rid":-1,"ok":false}',
      '{"t":"ack","sid":"x","offset":1}',
      '{"t":"exit","proc":"p","exitCode":999,"signal":null,"timedOut":false}',
      '{"t":"hello"}',
      JSON.stringify({ t: "eof", sid: 5, offset: 2 ** 60 }),
      new Uint8Array(5),
      new Uint8Array([9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
      new Uint8Array([1, 0, 0, 0, 77, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]),
    ];
    for (const frame of junk) raw.socket.send(frame);
    for (let i = 0; i < 2000; i++) {
      const bytes = crypto.getRandomValues(new Uint8Array(1 + (i % 64)));
      raw.socket.send(i % 2 ? bytes : new TextDecoder().decode(bytes));
    }
    // The controller is still serving the real daemon.
    assertEquals((await server.exec("steady", "echo alive")).stdout, "alive\n");
    assert(server.daemon("raw"), "the raw client should still be connected");
    await eventually(() => raw.messages.length >= junk.length, 5_000, "error replies");
    assert(raw.messages.some((m) => (m as { code?: string }).code === "PROTOCOL"));
    raw.socket.close();
    await raw.closed;
  } finally {
    await daemon.stop();
  }
});

Deno.test("bad daemon flags exit 2 with a message naming the flag", async () => {
  const cases: [string[], string][] = [
    [["--bogus"], "--bogus"],
    [[], "--server-url"],
    [["--server-url", "http://x"], "ws://"],
    [["--server-url", "ws://x", "--label", "noequals"], "KEY=VALUE"],
    [["--server-url", "ws://x", "--daemon-id", "bad id"], "--daemon-id"],
    [["--server-url", "ws://x", "--log-level", "loud"], "--log-level"],
    [["--server-url", "ws://x", "--retain-bytes", "-5"], "--retain-bytes"],
  ];
  for (const [args, needle] of cases) {
    const { code, stderr } = await runDaemonCli(args);
    assertEquals(code, 2, `${args.join(" ")}: ${stderr}`);
    assert(stderr.includes(needle), `${args.join(" ")}: ${stderr}`);
  }
  const help = await runDaemonCli(["--help"]);
  assertEquals(help.code, 0);
  assert(help.stdout.includes("--server-url"));
  const version = await runDaemonCli(["--version"]);
  assert(version.stdout.startsWith("sandd "));
});

Deno.test("the daemon drops a silent controller within three heartbeats and redials", async () => {
  // A fake controller that welcomes the daemon and then never says anything again.
  let connections = 0;
  const redialed = Promise.withResolvers<number>();
  let firstAt = 0;
  const fake = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request, {
      protocol: SUBPROTOCOL,
      idleTimeout: 0,
    });
    const n = ++connections;
    socket.onmessage = (event) => {
      if (typeof event.data === "string" && JSON.parse(event.data).t === "hello") {
        socket.send(JSON.stringify({ t: "welcome", version: "test", heartbeatMs: 200 }));
        if (n === 1) firstAt = performance.now();
        if (n === 2) redialed.resolve(performance.now() - firstAt);
      }
    };
    return response;
  });
  const daemon = new TestDaemon({ id: "lonely", url: `ws://127.0.0.1:${fake.addr.port}/ws` });
  try {
    const elapsed = await redialed.promise;
    assertLess(elapsed, 3_000);
  } finally {
    await daemon.stop();
    await fake.shutdown();
  }
});

Deno.test("a daemon that ignores stream credit fails that stream instead of growing the controller", async () => {
  await using server = await Server.listen({ port: 0, streamWindow: 64 * 1024 });
  const raw = await rawClient(server.url);
  raw.socket.onmessage = (event) => {
    if (typeof event.data !== "string") return;
    const message = JSON.parse(event.data);
    if (message.t !== "req" || message.op !== "spawn") return;
    raw.socket.send(
      JSON.stringify({ t: "res", rid: message.rid, ok: true, data: { proc: "p-1", pid: 1 } }),
    );
    // Flood stdout, never waiting for an ack: 1 MiB against a 64 KiB window.
    for (let offset = 0; offset < 1024 * 1024; offset += 32 * 1024) {
      raw.socket.send(encodeDataFrame(message.args.stdout, offset, new Uint8Array(32 * 1024)));
    }
  };
  raw.socket.send(JSON.stringify({
    t: "hello",
    id: "greedy",
    labels: {},
    hostname: "h",
    platform: "linux",
    arch: "x",
    version: "0",
    pid: 1,
    processes: 0,
    instance: "i",
  }));
  await server.waitForDaemon("greedy");
  const p = await server.spawn("greedy", "yes");
  await assertRejects(() => new Response(p.stdout).arrayBuffer(), ProtocolError, "credit");
  raw.socket.close();
  await raw.closed;
});

Deno.test("the controller drops a half-open link within three heartbeat intervals", async () => {
  const heartbeatMs = 500;
  await using server = await Server.listen({ port: 0, heartbeatMs });
  await using proxy = new LinkProxy(server.port);
  const daemon = new TestDaemon({ id: "bounded", url: proxy.url() });
  try {
    await server.waitForDaemon("bounded");
    const gone = nextEvent(server, "disconnect", "bounded");
    const started = performance.now();
    proxy.stall();
    await gone;
    // The last message arrived before the stall, so the bound counts from there; a little for timer latency.
    assertLess(performance.now() - started, 3 * heartbeatMs + 150);
  } finally {
    proxy.stall(false);
    await daemon.stop();
  }
});

Deno.test("the daemon answers the controller's pings without pinging back, and owns its heartbeat drop", async () => {
  const heartbeatMs = 200;
  let pings = 0;
  let pongs = 0;
  let lastPingAt = 0;
  let connections = 0;
  const redialed = Promise.withResolvers<number>();
  const pinging = Promise.withResolvers<void>();
  let timer: ReturnType<typeof setInterval> | undefined;
  const fake = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request, {
      protocol: SUBPROTOCOL,
      idleTimeout: 0,
    });
    const n = ++connections;
    socket.onmessage = (event) => {
      if (typeof event.data !== "string") return;
      const message = JSON.parse(event.data);
      if (message.t === "hello") {
        if (n === 2) {
          redialed.resolve(performance.now() - lastPingAt);
          return;
        }
        socket.send(JSON.stringify({ t: "welcome", version: "test", heartbeatMs }));
        // Ping like a controller for six intervals, then fall silent.
        let sent = 0;
        timer = setInterval(() => {
          if (sent++ === 6) {
            clearInterval(timer);
            pinging.resolve();
            return;
          }
          lastPingAt = performance.now();
          socket.send('{"t":"ping"}');
        }, heartbeatMs);
      } else if (message.t === "ping") pings++;
      else if (message.t === "pong") pongs++;
    };
    socket.onerror = () => {};
    return response;
  });
  const daemon = new TestDaemon({ id: "quiet", url: `ws://127.0.0.1:${fake.addr.port}/ws` });
  try {
    await pinging.promise;
    const elapsed = await redialed.promise;
    assertEquals(pings, 0, "the daemon pinged a controller that pings it");
    assert(pongs >= 5, `only ${pongs} pongs`);
    // Dropped within three intervals of the last ping (plus the redial delay of up to 100 ms).
    assertLess(elapsed, 3 * heartbeatMs + 100 + 200);
    const { stderr } = await daemon.stop();
    assert(stderr.includes("Controller silent"), stderr);
    assert(!stderr.includes("Controller closed the link"), stderr);
  } finally {
    clearInterval(timer);
    await daemon.stop();
    await fake.shutdown();
  }
});
