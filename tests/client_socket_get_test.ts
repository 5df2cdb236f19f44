// The Client's download GET on a socket of its own (server/_client_socket_get.ts), against raw HTTP peers that
// answer well, oddly and badly: the body arrives exact however it is split, errors are read whole, an answer it
// cannot frame is handed back to fetch, and a bad head, a cut body, an abort or a header with a line break each
// fail clearly with the connection closed (the resource sanitizer checks that); and a real Client download over
// https with a private CA, whole and from an offset.
import { assert, assertEquals, assertRejects, assertStrictEquals } from "./_assert.ts";
import { type SocketAnswer, socketGet } from "../server/_client_socket_get.ts";
import { hasOpenssl, makeTestCerts } from "./_certs.ts";
import { TestDaemon } from "./_daemon.ts";
import { Client, Server } from "../mod.ts";

const encoder = new TextEncoder();

/** A one-connection HTTP peer: `answer` gets the request head and the socket, and writes what it likes. */
async function withPeer(
  answer: (head: string, conn: Deno.Conn) => Promise<void>,
  fn: (url: URL) => Promise<void>,
): Promise<string> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let head = "";
  const served = (async () => {
    const conn = await listener.accept();
    try {
      const buffer = new Uint8Array(8192);
      while (!head.includes("\r\n\r\n")) {
        const n = await conn.read(buffer);
        if (n === null) return;
        head += new TextDecoder().decode(buffer.subarray(0, n));
      }
      await answer(head, conn);
    } catch {
      // the client left first
    } finally {
      try {
        conn.close();
      } catch {
        // closed
      }
    }
  })();
  try {
    await fn(new URL(`http://127.0.0.1:${listener.addr.port}/api/v1/daemons/w/files?path=%2Fx`));
  } finally {
    await served;
    listener.close();
  }
  return head;
}

const write = async (conn: Deno.Conn, text: string | Uint8Array) => {
  const bytes = typeof text === "string" ? encoder.encode(text) : text;
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
};

const options = (extra: Partial<Parameters<typeof socketGet>[1]> = {}) => ({
  headers: { authorization: "Bearer t0k" },
  caCerts: undefined,
  signal: new AbortController().signal,
  bodySignal: new AbortController().signal,
  ...extra,
});

Deno.test("socket get: the body arrives exact, part with the head and the rest in pieces, into small reads", async () => {
  const body = new Uint8Array(300_000).map((_, i) => (i * 13) & 0xff);
  const head = await withPeer(async (_head, conn) => {
    await write(
      conn,
      new Uint8Array([
        ...encoder.encode(
          `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nsandd-size: 9\r\n\r\n`,
        ),
        ...body.subarray(0, 1000),
      ]),
    );
    for (let at = 1000; at < body.length; at += 70_000) {
      await write(conn, body.subarray(at, at + 70_000));
    }
  }, async (url) => {
    const answer = await socketGet(url, options());
    assertStrictEquals(answer.status, 200);
    assertStrictEquals(answer.headers.get("sandd-size"), "9");
    const got: number[] = [];
    const target = new Uint8Array(4096);
    for (let n = await answer.body!.read(target); n !== null; n = await answer.body!.read(target)) {
      got.push(...target.subarray(0, n));
    }
    assertEquals(got.length, body.length);
    assert(got.every((b, i) => b === body[i]), "the bytes differ");
  });
  assert(head.startsWith("GET /api/v1/daemons/w/files?path=%2Fx HTTP/1.1\r\n"), head);
  assert(head.includes("authorization: Bearer t0k\r\n"), head);
  assert(head.includes("connection: close\r\n"), head);
});

Deno.test("socket get: an error answer is read whole; a 2xx without a length goes back to fetch", async () => {
  const error = JSON.stringify({ code: "FILE_NOT_FOUND", message: "no such file" });
  await withPeer(async (_head, conn) => {
    await write(
      conn,
      `HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: ${error.length}\r\n\r\n`,
    );
    await write(conn, error);
  }, async (url) => {
    const answer: SocketAnswer = await socketGet(url, options());
    assertStrictEquals(answer.status, 404);
    assertStrictEquals(answer.body, null);
    assertEquals(JSON.parse(answer.text), JSON.parse(error));
  });
  await withPeer(async (_head, conn) => {
    await write(conn, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
  }, async (url) => {
    const answer = await socketGet(url, options());
    assertStrictEquals(answer.unframed, true);
    assertStrictEquals(answer.body, null);
  });
});

Deno.test("socket get: a bad status line, an endless head and a peer that closes first each fail clearly", async () => {
  for (
    const [send, message] of [
      ["SSH-2.0-OpenSSH\r\n\r\n", /bad status line "SSH-2.0-OpenSSH"/],
      ["HTTP/1.1 200 OK\r\nx: " + "a".repeat(70 * 1024), /answer head is over 65536 bytes/],
      ["HTTP/1.1 200 OK\r\n", /closed the connection before answering/],
      ["HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", /bad header line/],
    ] as const
  ) {
    await withPeer(async (_head, conn) => {
      await write(conn, send);
    }, async (url) => {
      await assertRejects(() => socketGet(url, options()), TypeError, undefined).then((e) => {
        assert(message.test((e as Error).message), (e as Error).message);
      });
    });
  }
});

Deno.test("socket get: a body cut short rejects the read with a TypeError (a resumable download asks again)", async () => {
  await withPeer(async (_head, conn) => {
    await write(conn, "HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n");
    await write(conn, new Uint8Array(5000));
  }, async (url) => {
    const answer = await socketGet(url, options());
    const target = new Uint8Array(200_000);
    let got = 0;
    const error = await assertRejects(async () => {
      while (true) got += (await answer.body!.read(target))!;
    }, TypeError);
    assertStrictEquals(got, 5000);
    assert(
      (error as Error).message.includes("95000 byte(s) of the body unsent"),
      (error as Error).message,
    );
  });
});

Deno.test("socket get: aborting while the head is awaited, or while the body is read, closes the connection", async () => {
  const release = Promise.withResolvers<void>();
  const asked = Promise.withResolvers<void>();
  await withPeer(async () => {
    asked.resolve();
    await release.promise;
  }, async (url) => {
    const abort = new AbortController();
    const pending = socketGet(url, options({ signal: abort.signal }));
    await asked.promise;
    abort.abort(new Error("stop"));
    await assertRejects(() => pending);
    release.resolve();
  });
  const more = Promise.withResolvers<void>();
  await withPeer(async (_head, conn) => {
    await write(conn, "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab");
    await more.promise;
  }, async (url) => {
    const abort = new AbortController();
    const answer = await socketGet(url, options({ bodySignal: abort.signal }));
    const target = new Uint8Array(10);
    assertStrictEquals(await answer.body!.read(target), 2);
    const read = answer.body!.read(target);
    abort.abort();
    await assertRejects(() => read, TypeError);
    more.resolve();
  });
});

Deno.test("socket get: a header value with a line break is refused, nothing is sent", async () => {
  const head = await withPeer(async () => {}, async (url) => {
    await assertRejects(
      () => socketGet(url, options({ headers: { authorization: "Bearer x\r\nx-admin: yes" } })),
      TypeError,
      "holds a line break",
    );
  });
  assertStrictEquals(head, "");
});

Deno.test("socket get: the Client's transport asks fetch again for an answer it cannot frame, and maps errors", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const heads: string[] = [];
  const answers = [
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    'HTTP/1.1 404 Not Found\r\ncontent-length: 58\r\n\r\n{"code":"DAEMON_NOT_FOUND","message":"No daemon \'w\' here"}',
  ];
  const served = (async () => {
    for (const answer of answers) {
      const conn = await listener.accept();
      let head = "";
      const buffer = new Uint8Array(8192);
      while (!head.includes("\r\n\r\n")) {
        const n = await conn.read(buffer);
        if (n === null) break;
        head += new TextDecoder().decode(buffer.subarray(0, n));
      }
      heads.push(head);
      await write(conn, answer);
      conn.close();
    }
  })();
  const { Transport } = await import("../server/_client_http.ts");
  const transport = new Transport({
    base: `http://127.0.0.1:${listener.addr.port}`,
    token: "t0k",
    requestTimeoutMs: 10_000,
    reconnectTimeoutMs: 1_000,
    caCerts: undefined,
  });
  try {
    const got = await transport.get("/daemons/w/files", { query: { path: "/x" } });
    assert(got.body instanceof ReadableStream, "fetch's stream");
    assertStrictEquals(await new Response(got.body).text(), "abc");
    const error = await assertRejects(() =>
      transport.get("/daemons/w/files", { query: { path: "/x" }, context: { daemonId: "w" } })
    );
    assertStrictEquals((error as { code?: string }).code, "DAEMON_NOT_FOUND");
  } finally {
    transport.close();
    await served;
    listener.close();
  }
  assertStrictEquals(heads.length, 3);
  assert(heads[0]!.includes("connection: close"), "the socket GET first");
  assert(!heads[1]!.includes("connection: close"), "then fetch");
});

Deno.test({
  name:
    "socket get: a Client download over https with a private CA arrives whole, and resumes from an offset",
  ignore: !(await hasOpenssl()),
  fn: async () => {
    await using certs = await makeTestCerts();
    await using server = await Server.listen({
      port: 0,
      cert: certs.cert,
      key: certs.key,
      control: { tokens: [{ token: "client-token-0123456789" }] },
    });
    await using _daemon = new TestDaemon({
      id: "tls-dl",
      url: server.url,
      args: ["--ca-cert", certs.caFile],
    });
    await server.waitForDaemon("tls-dl");
    const dir = await Deno.makeTempDir();
    try {
      const data = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) => (i * 31 + (i >> 11)) & 0xff);
      await Deno.writeFile(`${dir}/f.bin`, data);
      const base = `https://127.0.0.1:${server.port}`;
      await using client = await Client.connect(base, {
        token: "client-token-0123456789",
        caCerts: [certs.caCert],
      });
      const whole = await client.download("tls-dl", `${dir}/f.bin`);
      assertEquals(whole.length, data.length);
      assert(whole.every((b, i) => b === data[i]), "the bytes differ");
      const tail = await client.download("tls-dl", `${dir}/f.bin`, { from: 1_000_000 });
      assertEquals(tail.length, data.length - 1_000_000);
      assert(tail.every((b, i) => b === data[i + 1_000_000]), "the tail's bytes differ");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("socket get: an abort while the connect is still waiting rejects at once, and a late connection is closed", async () => {
  // A listener whose accept queue is full drops new SYNs, so the connect waits (the kernel retries it); once the
  // queue is emptied the connect completes, and the abandoned connection must be closed by the client.
  const script = `
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)
port = s.getsockname()[1]
fill = []
for i in range(4):
    c = socket.socket(); c.setblocking(False)
    try: c.connect(("127.0.0.1", port))
    except BlockingIOError: pass
    fill.append(c)
print(port, flush=True)
sys.stdin.readline()
mine = [f.getsockname() for f in fill]
while True:
    c, peer = s.accept()
    if peer in mine: continue
    c.settimeout(30)
    print("eof" if c.recv(1) == b"" else "data", flush=True)
    break
`;
  const python = new Deno.Command("python3", {
    args: ["-c", script],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const lines = python.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const line = async () => {
    while (!text.includes("\n")) {
      const { done, value } = await lines.read();
      if (done) throw new Error(`python3 ended: ${text}`);
      text += value;
    }
    const [first, ...rest] = text.split("\n");
    text = rest.join("\n");
    return first!;
  };
  const writer = python.stdin.getWriter();
  try {
    const port = Number(await line());
    const abort = new AbortController();
    const started = performance.now();
    const pending = socketGet(
      new URL(`http://127.0.0.1:${port}/x`),
      options({ signal: abort.signal }),
    );
    abort.abort(new Error("given up"));
    // Bounded, so that a client ignoring the abort fails here rather than waiting for a connect that cannot come.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      pending.then(() => "answered", (error: Error) => error.message),
      new Promise<string>((resolve) => timer = setTimeout(() => resolve("still pending"), 2_000)),
    ]);
    clearTimeout(timer);
    pending.catch(() => {});
    assertStrictEquals(outcome, "given up");
    assert(performance.now() - started < 500, "rejected at once, not when the connect completed");
    // Let the connect complete: the client closes it, which the listener sees as an end.
    await writer.write(new TextEncoder().encode("go\n"));
    assertStrictEquals(await line(), "eof");
  } finally {
    await writer.close().catch(() => {});
    await lines.cancel().catch(() => {});
    await python.status;
  }
});
