// Red-team pass 2 on port tunnels: a hostile controller speaking the raw protocol to a real daemon, trying to leave
// worker-side connections open behind the link's back (stream ids shared between tunnels and other streams).
import { assert, assertEquals } from "./_assert.ts";
import { startWorker, TestDaemon } from "./_daemon.ts";
import { Server } from "../mod.ts";
import { type RawMessage, serveRawController, within } from "./_raw_daemon.ts";
import { FrameParser } from "../server/_forward_websocket.ts";

/** A TCP server on 127.0.0.1 that counts the connections it holds open (each closed when the peer closes). */
function countingServer() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  let accepted = 0;
  const reads: Promise<void>[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        accepted++;
        open.add(conn);
        reads.push((async () => {
          const buffer = new Uint8Array(4096);
          try {
            while ((await conn.read(buffer)) !== null) {
              // drain
            }
          } catch {
            // reset
          }
          open.delete(conn);
          try {
            conn.close();
          } catch {
            // closed
          }
        })());
      }
    } catch {
      // closed
    }
  })();
  return {
    port: listener.addr.port,
    get open() {
      return open.size;
    },
    get accepted() {
      return accepted;
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      for (const conn of open) {
        try {
          conn.close();
        } catch {
          // closed
        }
      }
      await Promise.all(reads);
    },
  };
}

/** A hand-written controller with one real daemon (started with `args`) connected to it. */
async function hostile(id: string, args: string[]) {
  const replies = new Map<number, (message: RawMessage) => void>();
  const { server, connected } = serveRawController((message) => {
    if (message.t === "res") replies.get(message.rid)?.(message);
  });
  const daemon = new TestDaemon({ id, url: `ws://127.0.0.1:${server.addr.port}/ws`, args });
  const socket = await connected;
  let rid = 0;
  return {
    socket,
    request(op: string, requestArgs: Record<string, unknown>): Promise<RawMessage> {
      const n = ++rid;
      const { promise, resolve } = Promise.withResolvers<RawMessage>();
      replies.set(n, resolve);
      socket.send(JSON.stringify({ t: "req", rid: n, op, args: requestArgs }));
      return promise;
    },
    async [Symbol.asyncDispose]() {
      socket.close();
      await daemon.stop();
      await server.shutdown();
    },
  };
}

/** Wait (bounded) until `check` holds, polling: the worker-side sockets close with no event the test can await. */
async function until(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return true;
}

Deno.test("redteam2: connects racing on the same stream ids leave no tunnel behind a dropped link", async () => {
  await using target = countingServer();
  await using c = await hostile("rt2-tunnel-race", []);
  // Two connects with the same ids, sent back to back: both used to pass the "in use" check while dialling, and
  // the second bound over the first, whose socket no route could close any more.
  const pairs = 12;
  const replies = await within(
    Promise.all(
      Array.from({ length: pairs }, (_, k) => [
        c.request("connect", {
          port: target.port,
          sid: 2 * k + 1,
          input: 2 * k + 2,
          window: 65536,
        }),
        c.request("connect", {
          port: target.port,
          sid: 2 * k + 1,
          input: 2 * k + 2,
          window: 65536,
        }),
      ]).flat(),
    ),
    15_000,
    "connect replies",
  );
  for (let k = 0; k < pairs; k++) {
    const ok = [replies[2 * k]!.ok, replies[2 * k + 1]!.ok].filter(Boolean).length;
    assertEquals(ok, 1, `pair ${k}: ${JSON.stringify([replies[2 * k], replies[2 * k + 1]])}`);
  }
  // A tunnel whose routes another stream took over (downloads on both of its ids) is still the link's.
  const tunnel = await c.request("connect", {
    port: target.port,
    sid: 901,
    input: 902,
    window: 65536,
  });
  assertEquals(tunnel.ok, true, JSON.stringify(tunnel));
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/a`, "a");
    for (const sid of [901, 902]) {
      const reply = await c.request("download", { path: `${dir}/a`, sid, window: 65536 });
      assertEquals(reply.ok, true, JSON.stringify(reply));
    }
    assert(
      await until(() => target.accepted >= pairs + 1, 5_000),
      "the tunnels reached the server",
    );
    // The link drops: every worker-side connection must go with it.
    c.socket.close();
    const closed = await until(() => target.open === 0, 5_000);
    assert(closed, `${target.open} worker-side connection(s) still open after the link closed`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("redteam2: other spellings of loopback and of listed hosts are refused, never resolved", async () => {
  await using c = await hostile("rt2-hosts", ["--forward-host", "::1"]);
  const spellings = [
    "127.0.0.1.",
    "127.1",
    "127.0.0.01",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "[::1]",
    "0:0:0:0:0:0:0:1",
    "localhost.",
    "LOCALHOST",
    " 127.0.0.1",
    "127.0.0.1 ",
    "127.0.0.1%lo",
    "127.0.0.1:22",
  ];
  let sid = 1;
  for (const host of spellings) {
    const reply = await c.request("connect", {
      port: 22,
      sid: sid++,
      input: sid++,
      window: 65536,
      host,
    });
    assertEquals(
      reply.error?.rule,
      "forwardHost",
      `${JSON.stringify(host)}: ${JSON.stringify(reply)}`,
    );
  }
});

/**
 * A hostile HTTP server on the worker, raw TCP so it can send anything: it answers by the request path, then closes.
 * `/echo` returns the request head it received.
 */
function hostileHttp() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const answers: Record<string, (head: string) => string> = {
    "/echo": (head) =>
      `HTTP/1.1 200 OK\r\ncontent-length: ${encoder.encode(head).length}\r\n\r\n${head}`,
    "/takeover": () =>
      "HTTP/1.1 200 OK\r\n" +
      "set-cookie: a=1; Path=/; HttpOnly\r\n" +
      "set-cookie: b=2; path=/other; Secure\r\n" +
      "set-cookie: c=3\r\n" +
      "set-cookie: d=4; Domain=127.0.0.1; Path=/x\r\n" +
      "service-worker-allowed: /\r\n" +
      'clear-site-data: "*"\r\n' +
      "content-length: 2\r\n\r\nok",
    "/huge": () => "HTTP/1.1 200 OK\r\nx-a: " + "a".repeat(70 * 1024),
    "/101": () => "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\nraw bytes",
    "/split": () => "HTTP/1.1 200 OK\r\nx-a: a\rset-cookie: evil=1\r\ncontent-length: 0\r\n\r\n",
  };
  const tasks: Promise<void>[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        tasks.push((async () => {
          try {
            let text = "";
            const buffer = new Uint8Array(65536);
            while (!text.includes("\r\n\r\n")) {
              const n = await conn.read(buffer);
              if (n === null) return;
              text += decoder.decode(buffer.subarray(0, n));
            }
            const head = text.slice(0, text.indexOf("\r\n\r\n") + 4);
            const path = head.split(" ")[1] ?? "";
            const answer = answers[path]?.(head) ??
              "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
            const bytes = encoder.encode(answer);
            for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
          } catch {
            // the proxy went away
          } finally {
            try {
              conn.close();
            } catch {
              // closed
            }
          }
        })());
      }
    } catch {
      // closed
    }
  })();
  return {
    port: listener.addr.port,
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      await Promise.all(tasks);
    },
  };
}

Deno.test("redteam2: a client cannot forge the X-Forwarded headers the worker's server sees", async () => {
  await using target = hostileHttp();
  await using worker = await startWorker("rt2-xfwd");
  await using exposed = await worker.server.exposeHttp("rt2-xfwd", { port: target.port });
  const response = await fetch(new URL("echo", exposed.url), {
    headers: {
      "x-forwarded-proto": "https",
      "x-forwarded-host": "evil.example",
      "x-forwarded-prefix": "/evil",
      "x-forwarded-port": "443",
      "x-real-ip": "10.9.9.9",
      "forwarded": "for=10.9.9.9;host=evil.example;proto=https",
    },
  });
  const head = (await response.text()).toLowerCase();
  const values = (name: string) =>
    head.split("\r\n").filter((line) => line.startsWith(`${name}:`)).map((line) =>
      line.slice(name.length + 1).trim()
    );
  const prefix = new URL(exposed.url).pathname.replace(/\/$/, "").toLowerCase();
  assertEquals(values("x-forwarded-proto"), ["http"], head);
  assertEquals(values("x-forwarded-host"), [new URL(exposed.url).host], head);
  assertEquals(values("x-forwarded-prefix"), [prefix], head);
  assertEquals(values("x-forwarded-port"), [], head);
  assertEquals(values("x-real-ip"), [], head);
  assertEquals(values("forwarded"), [], head);
  assertEquals(values("host"), [`127.0.0.1:${target.port}`], head);
});

Deno.test("redteam2: a worker's server cannot take over the controller's origin (cookies, service workers)", async () => {
  await using target = hostileHttp();
  await using worker = await startWorker("rt2-origin");
  await using exposed = await worker.server.exposeHttp("rt2-origin", { port: target.port });
  const prefix = new URL(exposed.url).pathname;
  const response = await fetch(new URL("takeover", exposed.url));
  assertEquals(await response.text(), "ok");
  // Every exposed URL shares the controller's origin: a worker's server may not scope state beyond its prefix.
  assertEquals(response.headers.get("service-worker-allowed"), null);
  assertEquals(response.headers.get("clear-site-data"), null);
  const cookies = response.headers.getSetCookie();
  assertEquals(cookies.length, 4, JSON.stringify(cookies));
  for (const cookie of cookies) {
    // A cookie without a path defaults to the request's directory, under the prefix.
    const path = /;\s*path=([^;]*)/i.exec(cookie)?.[1];
    assert(path === undefined || path.startsWith(prefix), `${cookie} escapes ${prefix}`);
    assert(!/;\s*domain=/i.test(cookie), `${cookie} names a domain`);
  }
  assert(cookies.some((c) => c.startsWith("b=2") && c.includes(`${prefix}other`)), cookies.join());
});

Deno.test("redteam2: a worker's server sending a huge head, a stray 101 or a bare CR gets a 502, nothing more", async () => {
  await using target = hostileHttp();
  await using worker = await startWorker("rt2-badhttp");
  await using exposed = await worker.server.exposeHttp("rt2-badhttp", { port: target.port });
  for (const path of ["huge", "101", "split"]) {
    const response = await fetch(new URL(path, exposed.url));
    const text = await response.text();
    assertEquals(response.status, 502, `${path}: ${text}`);
    assertEquals(response.headers.getSetCookie(), [], path);
  }
  // The exposure still serves.
  const ok = await fetch(new URL("echo", exposed.url));
  assertEquals(ok.status, 200);
  await ok.body?.cancel();
});

Deno.test("redteam2: a client that leaves before the worker answers does not keep the tunnel connection", async () => {
  // The worker's server reads requests and never answers (a hung handler, or a long poll).
  await using target = countingServer();
  await using worker = await startWorker("rt2-leave");
  // The controller cannot see a client leave before the worker answers: the response deadline bounds it.
  await using exposed = await worker.server.exposeHttp("rt2-leave", {
    port: target.port,
    responseTimeoutMs: 500,
  });
  const url = new URL(exposed.url);
  const rounds = 8;
  for (let i = 0; i < rounds; i++) {
    const client = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
    const request = `GET ${url.pathname}poll HTTP/1.1\r\nhost: ${url.host}\r\n\r\n`;
    await client.write(new TextEncoder().encode(request));
    assert(await until(() => target.accepted > i, 5_000), "the request reached the worker");
    client.close();
  }
  // Each client left: its tunnel connection (one of the daemon's --max-tunnels) must not stay.
  const released = await until(() => target.open === 0, 5_000);
  assert(
    released,
    `${target.open} of ${rounds} tunnel connections still open after their clients left`,
  );
});

Deno.test("redteam2: a big WebSocket frame from a worker arriving in small reads costs linear time", () => {
  // A hostile (or merely chatty) worker's server sends 16 MiB frames; the tunnel delivers them in small pieces.
  // Each piece used to be joined onto everything before it: gigabytes copied on the controller's one thread.
  const size = 16 * 1024 * 1024;
  const header = new Uint8Array([0x82, 127, 0, 0, 0, 0, 0, 0, 0, 0]);
  new DataView(header.buffer).setUint32(6, size);
  const piece = new Uint8Array(4096).fill(7);
  const parser = new FrameParser();
  const started = performance.now();
  for (let round = 0; round < 2; round++) {
    parser.push(header);
    for (let sent = 0; sent < size; sent += piece.length) {
      parser.push(piece);
      if (sent + piece.length < size) assertEquals(parser.next(), null);
    }
    const frame = parser.next();
    assert(frame !== null && frame.payload.length === size && frame.fin && frame.opcode === 2);
    assertEquals(parser.next(), null);
  }
  const ms = performance.now() - started;
  assert(ms < 3_000, `two 16 MiB frames in 4 KiB reads took ${Math.round(ms)} ms`);
});

Deno.test("redteam2: a WebSocket client that never reads cannot make the controller buffer a worker's stream", async () => {
  // The worker's server: accepts the upgrade, then writes 1 MiB binary messages as fast as it is let.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let written = 0;
  let workerConn: Deno.Conn | undefined;
  const limit = 256 * 1024 * 1024;
  const serving = (async () => {
    const conn = workerConn = await listener.accept();
    let head = "";
    const buffer = new Uint8Array(8192);
    while (!head.includes("\r\n\r\n")) {
      const n = await conn.read(buffer);
      if (n === null) return;
      head += new TextDecoder().decode(buffer.subarray(0, n));
    }
    const key = /sec-websocket-key: *(\S+)/i.exec(head)![1]!;
    const digest = await crypto.subtle.digest(
      "SHA-1",
      new TextEncoder().encode(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"),
    );
    const accept = btoa(String.fromCharCode(...new Uint8Array(digest)));
    await conn.write(new TextEncoder().encode(
      `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${accept}\r\n\r\n`,
    ));
    const size = 1024 * 1024;
    const frame = new Uint8Array(10 + size);
    frame[0] = 0x82;
    frame[1] = 127;
    new DataView(frame.buffer).setUint32(6, size);
    try {
      while (written < limit) {
        for (let at = 0; at < frame.length;) at += await conn.write(frame.subarray(at));
        written += frame.length;
      }
    } catch {
      // the proxy closed
    }
  })();
  await using worker = await startWorker("rt2-wsflood");
  await using exposed = await worker.server.exposeHttp("rt2-wsflood", { port: listener.addr.port });
  const url = new URL(exposed.url);
  const client = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
  try {
    await client.write(new TextEncoder().encode(
      `GET ${url.pathname}ws HTTP/1.1\r\nhost: ${url.host}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n` +
        `sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n`,
    ));
    // The client never reads. Wait until the worker's writes stall (or it wrote everything).
    let last = -1;
    const deadline = Date.now() + 60_000;
    while (written < limit && Date.now() < deadline) {
      last = written;
      await new Promise((r) => setTimeout(r, 1_500));
      if (written === last && written > 0) break;
    }
    assert(
      written < 96 * 1024 * 1024,
      `the worker pushed ${Math.round(written / 1048576)} MiB at a client that reads nothing`,
    );
  } finally {
    client.close();
    workerConn?.close();
    listener.close();
    await serving;
  }
});

Deno.test("redteam2: requests through an exposed URL cannot take every connection daemons need", async () => {
  // The worker's server accepts and never answers; a client with the URL keeps requests in flight.
  await using target = countingServer();
  await using server = await Server.listen({ port: 0, maxConnections: 8 });
  const first = new TestDaemon({ id: "rt2-cap-a", url: server.url, args: [] });
  let second: TestDaemon | undefined;
  const clients: Deno.Conn[] = [];
  try {
    await server.waitForDaemon("rt2-cap-a", { timeout: 20_000 });
    await using exposed = await server.exposeHttp("rt2-cap-a", {
      port: target.port,
      responseTimeoutMs: 120_000,
    });
    const url = new URL(exposed.url);
    for (let i = 0; i < 8; i++) {
      const client = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
      clients.push(client);
      await client.write(
        new TextEncoder().encode(`GET ${url.pathname}hang HTTP/1.1\r\nhost: ${url.host}\r\n\r\n`),
      );
    }
    // Half the cap at most goes to exposed URLs; those requests reach the worker, the rest are refused at once.
    assert(
      await until(() => target.accepted >= 4, 10_000),
      `${target.accepted} requests reached the worker`,
    );
    // A daemon that connects now still gets in.
    second = new TestDaemon({ id: "rt2-cap-b", url: server.url, args: [] });
    await server.waitForDaemon("rt2-cap-b", { timeout: 15_000 });
  } finally {
    for (const client of clients) client.close();
    await first.stop();
    await second?.stop();
  }
});
