// The controller's choice of HTTP engine (`httpEngine`): SandD's own HTTP/1.1 engine (the default for plain
// connections) and Deno's server both carry daemons, the control API and terminals; a bad choice is refused; and on
// Deno's server (always used for TLS) a Host header that would move the routed path is refused.
import { assert, assertEquals, assertMatch, assertRejects, assertStrictEquals } from "./_assert.ts";
import { call, startApiWorker } from "./_control.ts";
import { hasOpenssl, makeTestCerts } from "./_certs.ts";
import { Server } from "../mod.ts";
import { serveHttp } from "../server/_http_listener.ts";

for (const engine of ["sandd", "deno"] as const) {
  Deno.test(`http engine ${engine}: a daemon connects, the API executes, a terminal opens`, async () => {
    await using w = await startApiWorker(`engine-${engine}`, { httpEngine: engine });
    const answer = await call(`${w.base}/daemons/engine-${engine}/exec`, {
      method: "POST",
      json: { command: ["sh", "-c", "echo hi"] },
    });
    assertStrictEquals(answer.status, 200);
    assertEquals((answer.body as { stdout: string; exitCode: number }).stdout, "hi\n");
    const ws = new WebSocket(
      `ws://127.0.0.1:${w.server.port}/api/v1/daemons/engine-${engine}/terminal?command=cat`,
    );
    ws.binaryType = "arraybuffer";
    const opened = Promise.withResolvers<unknown>();
    ws.onmessage = (event) => {
      if (typeof event.data === "string") opened.resolve(JSON.parse(event.data));
    };
    ws.onerror = () => opened.reject(new Error("the terminal WebSocket failed"));
    const first = await opened.promise as { type: string };
    assertStrictEquals(first.type, "open");
    const closed = new Promise((resolve) => ws.onclose = resolve);
    ws.close();
    await closed;
  });
}

Deno.test("http engine: an unknown engine is refused before listening", async () => {
  await assertRejects(
    // deno-lint-ignore no-explicit-any
    () => Server.listen({ port: 0, httpEngine: "hyper" as any }),
    TypeError,
    'engine must be "sandd" or "deno", got "hyper"',
  );
});

Deno.test({
  name: "http engine: over TLS (Deno's server) a Host that would move the path is 400, not routed",
  ignore: !await hasOpenssl(),
  fn: async () => {
    await using certs = await makeTestCerts();
    await using server = await Server.listen({
      port: 0,
      cert: certs.cert,
      key: certs.key,
      control: true,
    });
    const ask = async (host: string) => {
      const conn = await Deno.connectTls({
        hostname: "127.0.0.1",
        port: server.port,
        caCerts: [certs.caCert],
      });
      try {
        await conn.write(
          new TextEncoder().encode(
            `GET /nothing-here HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
          ),
        );
        const chunks: Uint8Array[] = [];
        const buffer = new Uint8Array(16 * 1024);
        while (true) {
          const n = await conn.read(buffer).catch(() => null);
          if (n === null) break;
          chunks.push(buffer.slice(0, n));
        }
        return new TextDecoder().decode(
          chunks.reduce((all, c) => new Uint8Array([...all, ...c]), new Uint8Array()),
        );
      } finally {
        conn.close();
      }
    };
    // Before: Deno's server built request.url from the Host, and this was answered with the daemon list.
    assertMatch(await ask("127.0.0.1/api/v1/daemons#"), /^HTTP\/1\.1 400 /);
    assertMatch(await ask(`127.0.0.1:${server.port}`), /^HTTP\/1\.1 404 /);
  },
});

Deno.test("http engine: a body whose producer reuses its buffer after each read arrives intact", async () => {
  // Like the controller's download and output streams, which hand out views of memory they reuse (or detach) once
  // the next piece is read: the engine must write each piece before it reads the next (it once held the first
  // piece while it looked whether a second one followed).
  const shared = new Uint8Array(1024);
  const pieces = 5;
  const expected: number[] = [];
  const server = serveHttp({ port: 0 }, () => {
    let n = 0;
    return new Response(
      new ReadableStream<Uint8Array>({
        pull(controller) {
          if (n === pieces) return controller.close();
          shared.fill(65 + n++);
          controller.enqueue(shared);
        },
      }, { highWaterMark: 0 }),
    );
  });
  for (let i = 0; i < pieces; i++) for (let k = 0; k < 1024; k++) expected.push(65 + i);
  try {
    for (const declared of [false, true]) {
      const response = await fetch(`http://127.0.0.1:${server.addr.port}/`, {
        headers: declared ? { "x-declared": "1" } : {},
      });
      assertEquals([...new Uint8Array(await response.arrayBuffer())], expected);
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("http engine: read buffers of ended connections serve new ones without carrying bytes across", async () => {
  // The engine gives an ended connection's read buffer to the next one (fresh memory is dear). Connections end
  // every way here (mid-head, after an answer, the client leaving while a streamed answer waits and a pipelined
  // request is on its way in, an upgrade), interleaved with connections that send their request a few bytes at a
  // time: each must be answered with its own marker, whatever the buffer held before. (A buffer is not given back
  // while a read is in flight; that hazard could not be produced here: Deno cancels a closed socket's pending read
  // without writing into its buffer, and this test passed with that guard removed.)
  const hold = Promise.withResolvers<void>();
  const server = serveHttp({ port: 0 }, (request) => {
    const url = new URL(request.url);
    if (url.pathname === "/ws") return Deno.upgradeWebSocket(request as Request).response;
    if (url.pathname === "/stream") {
      return new Response(
        new ReadableStream<Uint8Array>({
          async pull(controller) {
            controller.enqueue(new TextEncoder().encode("first piece\n"));
            await hold.promise;
            controller.close();
          },
        }, { highWaterMark: 0 }),
      );
    }
    return new Response(request.headers.get("x-marker") ?? "none");
  });
  const port = server.addr.port;
  const encoder = new TextEncoder();
  const ended = async (round: number) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const junk = `GARBAGE-${round}-`.repeat(200);
    if (round % 4 === 0) {
      await conn.write(encoder.encode(`GET /x HTTP/1.1\r\nhost: a\r\nx-marker: ${junk}`)); // never ends
    } else if (round % 4 === 1) {
      await conn.write(encoder.encode(`GET /x HTTP/1.1\r\nhost: a\r\nx-marker: ${junk}\r\n\r\n`));
      await conn.read(new Uint8Array(64 * 1024));
    } else if (round % 4 === 2) {
      await conn.write(encoder.encode(`GET /stream HTTP/1.1\r\nhost: a\r\n\r\n`));
      await conn.read(new Uint8Array(1024));
      await conn.write(encoder.encode(`GET /x HTTP/1.1\r\nhost: a\r\nx-marker: ${junk}\r\n\r\n`));
    } else {
      await conn.write(encoder.encode(
        `GET /ws HTTP/1.1\r\nhost: a\r\nupgrade: websocket\r\nconnection: Upgrade\r\n` +
          `sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n${junk}`,
      ));
      await conn.read(new Uint8Array(1024));
    }
    conn.close();
  };
  const fresh = async (round: number) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const marker = `marker-${round}`;
    const bytes = encoder.encode(`GET /x HTTP/1.1\r\nhost: a\r\nx-marker: ${marker}\r\n\r\n`);
    for (let at = 0; at < bytes.length; at += 7) {
      await conn.write(bytes.subarray(at, at + 7));
    }
    let text = "";
    const buffer = new Uint8Array(4096);
    while (!text.endsWith(marker) && !text.includes("none")) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    conn.close();
    return text.slice(text.indexOf("\r\n\r\n") + 4);
  };
  try {
    for (let batch = 0; batch < 10; batch++) {
      const rounds = Array.from({ length: 16 }, (_, i) => batch * 16 + i);
      const [answers] = await Promise.all([
        Promise.all(rounds.map(fresh)),
        Promise.all(rounds.map(ended)),
      ]);
      assertEquals(answers, rounds.map((r) => `marker-${r}`));
    }
  } finally {
    hold.resolve();
    await server.shutdown();
  }
});

/** One request on a connection of its own: `parts` written one by one (each whole), the answer read to its end. */
async function exchange(port: number, parts: readonly Uint8Array[]): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  try {
    for (const part of parts) {
      for (let at = 0; at < part.length;) at += await conn.write(part.subarray(at));
    }
    return new TextDecoder().decode(await new Response(conn.readable).arrayBuffer());
  } finally {
    try {
      conn.close();
    } catch {
      // closed by the readable's end
    }
  }
}

Deno.test("http engine: a request body is a byte stream, read straight into a BYOB reader's own buffer", async () => {
  // The control API's uploads read the body into one reused buffer (no new array per socket read): each read lands
  // in the buffer the reader passed (it comes back, transferred, at the offset asked for), whether the bytes were
  // already buffered with the head or come from the socket later, for Content-Length and chunked bodies alike.
  const server = serveHttp({ port: 0 }, async (request) => {
    const reader = request.body!.getReader({ mode: "byob" });
    let buffer = new ArrayBuffer(4096);
    let filled = 0;
    const received: number[] = [];
    let reads = 0;
    while (true) {
      if (filled === buffer.byteLength) {
        received.push(...new Uint8Array(buffer));
        filled = 0;
      }
      const { done, value } = await reader.read(new Uint8Array(buffer, filled));
      if (done) {
        // The buffer comes back, transferred, with the end too.
        buffer = value!.buffer as ArrayBuffer;
        break;
      }
      reads++;
      if (value.byteOffset !== filled || value.buffer.byteLength !== 4096) {
        return new Response(
          `read ${reads} came back at ${value.byteOffset} in ${value.buffer.byteLength}`,
          {
            status: 500,
          },
        );
      }
      buffer = value.buffer as ArrayBuffer;
      filled += value.length;
    }
    received.push(...new Uint8Array(buffer, 0, filled));
    const sum = received.reduce((a, b) => (a * 31 + b) >>> 0, 7);
    return new Response(`${received.length} ${sum}`);
  });
  const body = new Uint8Array(100_000).map((_, i) => (i * 7 + (i >> 9)) & 0xff);
  const expected = `${body.length} ${body.reduce((a, b) => (a * 31 + b) >>> 0, 7)}`;
  const encoder = new TextEncoder();
  try {
    for (const chunked of [false, true]) {
      const head = `POST /up HTTP/1.1\r\nhost: a\r\nconnection: close\r\n` +
        (chunked ? "transfer-encoding: chunked\r\n\r\n" : `content-length: ${body.length}\r\n\r\n`);
      // The first part goes with the head (buffered by the engine), the rest a piece at a time.
      const parts: Uint8Array[] = [];
      for (let at = 0, size = 1000; at < body.length; at += size, size = size * 3 + 1) {
        const piece = body.subarray(at, at + size);
        parts.push(
          chunked
            ? new Uint8Array([
              ...encoder.encode(`${piece.length.toString(16)}\r\n`),
              ...piece,
              ...encoder.encode("\r\n"),
            ])
            : piece,
        );
      }
      if (chunked) parts.push(encoder.encode("0\r\n\r\n"));
      parts[0] = new Uint8Array([...encoder.encode(head), ...parts[0]!]);
      const answer = await exchange(server.addr.port, parts);
      assertMatch(answer, /^HTTP\/1\.1 200 /);
      assertStrictEquals(answer.slice(answer.indexOf("\r\n\r\n") + 4), expected);
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("http engine: a default reader's body pieces are arrays of their own size (no 64 KiB kept per byte)", async () => {
  // A body in one-byte chunks (or a byte per packet) must not make the handler hold a large buffer per piece: that
  // turned 120 KB of chunked body into over a GiB of memory, before any sign-in, through a handler reading text.
  let held = 0;
  let got = 0;
  const server = serveHttp({ port: 0 }, async (request) => {
    for await (const piece of request.body!) {
      held += piece.buffer.byteLength;
      got += piece.length;
    }
    return new Response("ok");
  });
  const encoder = new TextEncoder();
  try {
    const pieces = 3000;
    // A chunk per write, so that most reach the engine in reads of their own.
    const answer = await exchange(server.addr.port, [
      encoder.encode(
        "POST /up HTTP/1.1\r\nhost: a\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n",
      ),
      ...Array.from({ length: pieces }, () => encoder.encode("1\r\nX\r\n")),
      encoder.encode("0\r\n\r\n"),
    ]);
    assertMatch(answer, /^HTTP\/1\.1 200 /);
    assertStrictEquals(got, pieces);
    assert(
      held <= 2 * pieces + 64 * 1024,
      `the handler was given ${held} bytes of buffers for ${got} bytes`,
    );
  } finally {
    await server.shutdown();
  }
});
