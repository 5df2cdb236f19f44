// Admission of daemon connects (a reconnect storm): past `maxPendingConnects` upgrades whose hello is not through,
// the controller answers a daemon's upgrade 503 with a hint of when to come back; the real daemon waits that hint
// (with jitter) instead of its backoff; a storm of connects against a small limit all get in, none dropped; a
// hostile controller's hint cannot park a daemon for longer than the protocol's cap.
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { RawHttp } from "./_http1.ts";
import { TestDaemon } from "./_daemon.ts";
import { startServe } from "./_cli.ts";
import { within } from "./_raw_daemon.ts";
import { Server, SUBPROTOCOL } from "../mod.ts";
import { WebSocketClient } from "../daemon/_websocket_client.ts";
import { admissionDelay } from "../daemon/backoff.ts";
import { MAX_RETRY_AFTER_MS, RETRY_AFTER_MS_HEADER } from "../protocol/constants.ts";

const TOKEN = "admission-token";

/** Upgrades that never say hello: each holds one pending connect until closed. */
async function silentUpgrades(port: number, count: number): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  for (let i = 0; i < count; i++) {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`, {
      protocols: [SUBPROTOCOL],
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    socket.onerror = () => {};
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    socket.onopen = () => resolve();
    socket.onclose = () => reject(new Error("silent upgrade closed before it opened"));
    await within(promise, 10_000, "a silent upgrade");
    socket.onclose = null;
    sockets.push(socket);
  }
  return sockets;
}

async function closeAll(sockets: WebSocket[]): Promise<void> {
  await Promise.all(sockets.map((socket) => {
    if (socket.readyState === WebSocket.CLOSED) return;
    const { promise, resolve } = Promise.withResolvers<void>();
    socket.onclose = () => resolve();
    socket.close();
    return promise;
  }));
}

/** A raw daemon upgrade; the answer's head and body. */
async function upgrade(port: number) {
  await using http = await RawHttp.connect(port);
  await http.write(
    `GET /ws HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n` +
      `sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n` +
      `sec-websocket-protocol: ${SUBPROTOCOL}\r\nauthorization: Bearer ${TOKEN}\r\n\r\n`,
  );
  const head = await http.readHead();
  if (head.status !== 503) return { status: head.status, headers: head.headers, body: null };
  const answer = await http.readBody(head);
  return {
    status: head.status,
    headers: head.headers,
    body: JSON.parse(new TextDecoder().decode(answer.body)),
  };
}

async function deferredCount(server: Server): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${server.port}/metrics`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  const text = await response.text();
  const line = text.split("\n").find((l) =>
    l.startsWith('sandd_rate_limited_total{limit="connects"}')
  );
  assert(line, `no connects sample in /metrics:\n${text.slice(0, 500)}`);
  return Number(line.split(" ")[1]);
}

Deno.test("admission: past its pending connects, an upgrade is answered 503 with a hint; a free slot admits again", async () => {
  await using server = await Server.listen({
    port: 0,
    token: TOKEN,
    maxPendingConnects: 2,
    handshakeTimeoutMs: 60_000,
    metrics: {},
  });
  const silent = await silentUpgrades(server.port, 2);
  try {
    const refused = await upgrade(server.port);
    assertEquals(refused.status, 503);
    const hint = refused.headers.get(RETRY_AFTER_MS_HEADER);
    assertMatch(hint ?? "", /^[0-9]+$/);
    assert(Number(hint) >= 100 && Number(hint) <= 20_000, `hint ${hint} out of range`);
    assertEquals(refused.headers.get("retry-after"), String(Math.ceil(Number(hint) / 1000)));
    assertEquals(refused.body.code, "BUSY");
    assertEquals(refused.body.retryAfterMs, Number(hint));
    assertEquals(await deferredCount(server), 1);
    // Health, stats and the API are not daemon connects: never deferred.
    const health = await fetch(`http://127.0.0.1:${server.port}/health`);
    assertEquals(health.status, 200);
    await health.body?.cancel();
    const stats = await fetch(`http://127.0.0.1:${server.port}/stats`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assertEquals(stats.status, 200);
    await stats.body?.cancel();
  } finally {
    await closeAll(silent);
  }
  // The slots are free once the server has seen the silent links go: a daemon is admitted.
  const socket = new WebSocketClient(`ws://127.0.0.1:${server.port}/ws`, {
    protocols: [SUBPROTOCOL],
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  let status: number | undefined;
  for (let tries = 0; tries < 50; tries++) {
    const answer = await upgrade(server.port);
    status = answer.status;
    if (status === 101) break;
    await new Promise((resolve) =>
      setTimeout(resolve, Number(answer.headers.get(RETRY_AFTER_MS_HEADER)))
    );
  }
  socket.close();
  assertEquals(status, 101);
});

Deno.test("admission: the real daemon waits the controller's hint, not its backoff, and gets in once there is room", async () => {
  await using server = await Server.listen({
    port: 0,
    token: TOKEN,
    maxPendingConnects: 1,
    handshakeTimeoutMs: 60_000,
    metrics: {},
  });
  const silent = await silentUpgrades(server.port, 1);
  // A backoff of up to 60 s per attempt: without the hint the daemon would not be back in time.
  await using daemon = new TestDaemon({
    id: "admitted-1",
    url: `ws://127.0.0.1:${server.port}/ws`,
    args: [
      "--token",
      TOKEN,
      "--reconnect-initial",
      "60",
      "--reconnect-max",
      "60",
      "--log-level",
      "info",
    ],
  });
  try {
    await within(daemon.waitForLog("is taking on other daemons"), 20_000, "a deferral in the log");
    const line = daemon.log.split("\n").find((l) => l.includes("is taking on other daemons"))!;
    const delay = Number(/in (\d+) ms/.exec(line)?.[1]);
    assert(delay >= 50 && delay < 30_000, `the daemon waits ${delay} ms after a hint: ${line}`);
    assert(await deferredCount(server) >= 1);
  } finally {
    await closeAll(silent);
  }
  await within(server.waitForDaemon("admitted-1"), 20_000, "the deferred daemon's connect");
});

Deno.test("admission: a storm of 300 connects against a limit of 8 all get in, none dropped", async () => {
  await using server = await Server.listen({
    port: 0,
    token: TOKEN,
    maxPendingConnects: 8,
    metrics: {},
  });
  const count = 300;
  let welcomed = 0;
  let dropped = 0;
  let deferrals = 0;
  const { promise: all, resolve } = Promise.withResolvers<void>();
  const sockets: WebSocketClient[] = [];
  const connect = (i: number) => {
    const socket = new WebSocketClient(`ws://127.0.0.1:${server.port}/ws`, {
      protocols: [SUBPROTOCOL],
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    sockets.push(socket);
    let up = false;
    socket.onopen = () =>
      socket.send(JSON.stringify({
        t: "hello",
        id: `storm-${i}`,
        labels: {},
        hostname: "storm",
        platform: "linux",
        arch: "x86_64",
        version: "0",
        pid: i,
        processes: 0,
        instance: `instance-${i}`,
      }));
    socket.onmessage = (event) => {
      const text = event.data as string;
      if (text.startsWith('{"t":"welcome"')) {
        up = true;
        if (++welcomed === count) resolve();
      } else if (text === '{"t":"ping"}') socket.send('{"t":"pong"}');
    };
    socket.onerror = () => {};
    socket.onclose = () => {
      if (up) {
        dropped++;
        return;
      }
      const hint = socket.upgradeStatus === 503 ? socket.upgradeRetryAfterMs : undefined;
      if (hint === undefined) throw new Error(`storm-${i}: closed without a hint`);
      deferrals++;
      setTimeout(() => connect(i), admissionDelay(hint));
    };
  };
  for (let i = 0; i < count; i++) connect(i);
  try {
    await within(all, 60_000, `${count} welcomes (${welcomed} so far)`);
    assertEquals(dropped, 0);
    assertEquals(server.daemons().length, count);
    assert(deferrals > 0, "no connect was deferred: the storm did not reach the limit");
    assertEquals(await deferredCount(server), deferrals);
  } finally {
    for (const socket of sockets) socket.close();
  }
});

Deno.test("admission: sandd serve --max-pending-connects sets the limit", async () => {
  const serve = await startServe(["--max-pending-connects", "1"]);
  try {
    const port = Number(new URL(serve.url).port);
    const silent = await silentUpgrades(port, 1);
    try {
      assertEquals((await upgrade(port)).status, 503);
    } finally {
      await closeAll(silent);
    }
  } finally {
    await serve.stop();
  }
});

Deno.test("admission: a hostile controller's hint is capped, and a malformed one ignored", async () => {
  const hints = ["900000000", "-5", "12abc", "1e9", "99999999999"];
  let next = 0;
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    for await (const conn of listener) {
      const hint = hints[next++]!;
      const buffer = new Uint8Array(4096);
      await conn.read(buffer);
      await conn.write(new TextEncoder().encode(
        `HTTP/1.1 503 Busy\r\n${RETRY_AFTER_MS_HEADER}: ${hint}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`,
      ));
      conn.close();
    }
  })();
  try {
    const seen: (number | undefined)[] = [];
    for (let i = 0; i < hints.length; i++) {
      const socket = new WebSocketClient(`ws://127.0.0.1:${listener.addr.port}/ws`, {
        protocols: [SUBPROTOCOL],
      });
      const { promise, resolve } = Promise.withResolvers<void>();
      socket.onerror = () => {};
      socket.onclose = () => resolve();
      await within(promise, 10_000, "the refused upgrade");
      assertEquals(socket.upgradeStatus, 503);
      seen.push(socket.upgradeRetryAfterMs);
    }
    assertEquals(seen, [900_000_000, undefined, undefined, undefined, undefined]);
    // The daemon's wait for the huge one is bounded by the protocol's cap.
    assert(admissionDelay(900_000_000, () => 0.999) < 1.5 * MAX_RETRY_AFTER_MS);
  } finally {
    listener.close();
    await serving.catch(() => {});
  }
});
