// exposeHttp end to end: a real daemon; on the worker side `python3 -m http.server` in a temp dir and a Deno HTTP
// server with a WebSocket echo (child processes); the controller's own HTTP server proxies /x/<token>/.
import { assert, assertEquals, assertMatch, assertStringIncludes } from "./_assert.ts";
import { startWorker, TestDaemon } from "./_daemon.ts";
import { denoServer, freePort, ServerProgram } from "./_forward.ts";
import type { AuditRecord } from "../mod.ts";

/** Whether python3 is on this machine (the first test needs it; it skips with the reason otherwise). */
function hasPython(): boolean {
  try {
    return new Deno.Command("python3", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}
const PYTHON = hasPython();
if (!PYTHON) console.warn("expose_http_test: python3 is missing: skipping the http.server test");

function python(dir: string): ServerProgram {
  return new ServerProgram(
    "python3",
    ["-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", dir],
    { portFrom: /port (\d+)/ },
  );
}

Deno.test({
  name:
    "exposeHttp: python3 -m http.server through a capability URL; relative links resolve under it",
  ignore: !PYTHON,
}, async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/sub`);
    await Deno.writeTextFile(`${dir}/sub/page.html`, '<a href="other.txt">other</a>');
    await Deno.writeTextFile(`${dir}/sub/other.txt`, "the other file\n");
    await using py = python(dir);
    await using worker = await startWorker("ex-py");
    await using exposed = await worker.server.exposeHttp("ex-py", { port: await py.port });
    assertMatch(exposed.url, /^http:\/\/127\.0\.0\.1:\d+\/x\/[A-Za-z0-9_-]{43}\/$/);
    const page = await fetch(new URL("sub/page.html", exposed.url));
    assertEquals(page.status, 200);
    assertEquals(await page.text(), '<a href="other.txt">other</a>');
    const other = await fetch(new URL("other.txt", new URL("sub/page.html", exposed.url)));
    assertEquals(await other.text(), "the other file\n");
    // A directory without its slash: python redirects, the Location stays under the prefix.
    const redirect = await fetch(new URL("sub", exposed.url), { redirect: "manual" });
    await redirect.body?.cancel();
    assertEquals(redirect.status, 301);
    assertStringIncludes(redirect.headers.get("location")!, new URL(exposed.url).pathname);
    const listing = await fetch(new URL("sub/", exposed.url));
    assertStringIncludes(await listing.text(), 'href="page.html"');
    const missing = await fetch(new URL("nope.txt", exposed.url));
    await missing.body?.cancel();
    assertEquals(missing.status, 404);
    const head = await fetch(new URL("sub/other.txt", exposed.url), { method: "HEAD" });
    assertEquals(head.status, 200);
    assertEquals(head.headers.get("content-length"), "15");
    await head.body?.cancel();
    // Without the trailing slash, the URL itself redirects to it.
    const bare = await fetch(exposed.url.slice(0, -1), { redirect: "manual" });
    await bare.body?.cancel();
    assertEquals(bare.status, 308);
    assertEquals(bare.headers.get("location"), new URL(exposed.url).pathname);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("exposeHttp: streamed bodies both ways, many concurrent requests, Host rewritten", async () => {
  await using http = denoServer("http");
  const port = await http.port;
  await using worker = await startWorker("ex-stream");
  await using exposed = await worker.server.exposeHttp("ex-stream", { port });
  // A chunked request body (unknown length) streams through and back.
  const parts = Array.from({ length: 64 }, (_, i) => new Uint8Array(16384).fill(i));
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = parts.shift();
      if (next) controller.enqueue(next);
      else controller.close();
    },
  });
  const echoed = await fetch(new URL("echo", exposed.url), { method: "POST", body });
  const bytes = new Uint8Array(await echoed.arrayBuffer());
  assertEquals(bytes.length, 64 * 16384);
  assertEquals(bytes[16384 * 5], 5);
  const big = await fetch(new URL("big?n=20000000", exposed.url));
  assertEquals((await big.arrayBuffer()).byteLength, 20_000_000);
  const headers = await (await fetch(new URL("headers", exposed.url))).json();
  assertEquals(headers.host, `127.0.0.1:${port}`);
  assertEquals(headers["x-forwarded-prefix"], new URL(exposed.url).pathname.slice(0, -1));
  assertEquals(headers["x-forwarded-for"], "127.0.0.1");
  const results = await Promise.all(
    Array.from({ length: 30 }, () => fetch(new URL("hello", exposed.url)).then((r) => r.text())),
  );
  for (const text of results) assertEquals(text, "hello from the worker\n");
  const redirect = await fetch(new URL("redirect", exposed.url), { redirect: "manual" });
  await redirect.body?.cancel();
  assertEquals(redirect.headers.get("location"), new URL(exposed.url).pathname + "hello");
});

Deno.test("exposeHttp: WebSocket upgrade relays text, binary and close codes", async () => {
  await using http = denoServer("http");
  await using worker = await startWorker("ex-ws");
  await using exposed = await worker.server.exposeHttp("ex-ws", { port: await http.port });
  const url = new URL("ws", exposed.url);
  url.protocol = "ws:";
  const socket = new WebSocket(url, ["echo"]);
  socket.binaryType = "arraybuffer";
  const messages: (string | Uint8Array)[] = [];
  const closed = new Promise<CloseEvent>((resolve) => socket.onclose = resolve);
  let wake: (() => void) | null = null;
  socket.onmessage = (event) => {
    messages.push(
      typeof event.data === "string" ? event.data : new Uint8Array(event.data as ArrayBuffer),
    );
    wake?.();
  };
  const next = async (count: number) => {
    while (messages.length < count) await new Promise<void>((resolve) => wake = resolve);
  };
  await new Promise((resolve) => socket.onopen = resolve);
  try {
    assertEquals(socket.protocol, "echo");
    socket.send("hello");
    const binary = new Uint8Array(200_000).map((_, i) => (i * 7919) % 251);
    socket.send(binary);
    socket.send("ünïcödé");
    await next(3);
    assertEquals(messages[0], "hello");
    assertEquals(messages[1], binary);
    assertEquals(messages[2], "ünïcödé");
    socket.send("close-me");
  } catch (error) {
    socket.close();
    await closed;
    throw error;
  }
  const event = await closed;
  assertEquals(event.code, 4001);
  assertEquals(event.reason, "asked to");
});

Deno.test("exposeHttp: revoked URL and guessed tokens are 404; a refused port is 502 with the reason", async () => {
  const records: AuditRecord[] = [];
  await using http = denoServer("http");
  await using worker = await startWorker("ex-revoke", [], {
    audit: (record) => void records.push(record),
  });
  const exposed = await worker.server.exposeHttp("ex-revoke", { port: await http.port });
  const ok = await fetch(new URL("hello", exposed.url));
  assertEquals(await ok.text(), "hello from the worker\n");
  const base = `http://127.0.0.1:${worker.server.port}/x/`;
  const token = new URL(exposed.url).pathname.split("/")[2]!;
  for (
    const guess of [
      "A".repeat(43),
      token.slice(0, -1) + (token.endsWith("A") ? "B" : "A"),
      token.slice(0, 20),
      token + "A",
      "",
    ]
  ) {
    const response = await fetch(`${base}${guess}/hello`);
    await response.body?.cancel();
    assertEquals(response.status, 404, guess);
  }
  await exposed.close();
  const revoked = await fetch(new URL("hello", exposed.url));
  await revoked.body?.cancel();
  assertEquals(revoked.status, 404);
  assert(records.some((r) => r.action === "exposeHttp" && r.ok));
  assert(records.some((r) => r.action === "exposeHttp.close"));
  assert(records.some((r) => r.action === "tunnel" && r.ok));

  const port = freePort();
  await using refused = await worker.server.exposeHttp("ex-revoke", { port });
  const bad = await fetch(new URL("anything", refused.url));
  assertEquals(bad.status, 502);
  const text = await bad.text();
  assertStringIncludes(text, "ECONNREFUSED".length ? "refused" : "");
  assertStringIncludes(text, `127.0.0.1:${port}`);
});

Deno.test("exposeHttp: a worker that drops is 503 until it returns", async () => {
  await using http = denoServer("http");
  await using worker = await startWorker("ex-drop");
  await using exposed = await worker.server.exposeHttp("ex-drop", { port: await http.port });
  assertEquals(
    await (await fetch(new URL("hello", exposed.url))).text(),
    "hello from the worker\n",
  );
  const gone = new Promise<void>((resolve) =>
    worker.server.addEventListener("disconnect", () => resolve(), { once: true })
  );
  await worker.daemon.stop("SIGKILL");
  await gone;
  const away = await fetch(new URL("hello", exposed.url));
  assertEquals(away.status, 503);
  assertStringIncludes(await away.text(), "ex-drop");
  await using again = new TestDaemon({ id: "ex-drop", url: worker.server.url });
  await worker.server.waitForDaemon("ex-drop", { timeout: 20_000 });
  assertEquals(
    await (await fetch(new URL("hello", exposed.url))).text(),
    "hello from the worker\n",
  );
  void again;
});

Deno.test("exposeHttp: exactly framed HTTP/1.1 responses keep the tunnel connection for the next request", async () => {
  const records: AuditRecord[] = [];
  await using http = denoServer("http");
  await using worker = await startWorker("ex-keep", [], {
    audit: (record) => void records.push(record),
  });
  await using exposed = await worker.server.exposeHttp("ex-keep", { port: await http.port });
  for (let i = 0; i < 10; i++) {
    assertEquals(
      await (await fetch(new URL("hello", exposed.url))).text(),
      "hello from the worker\n",
    );
  }
  const opened = records.filter((r) => r.action === "tunnel" && r.ok).length;
  assert(opened >= 1 && opened <= 2, `${opened} tunnel connections for 10 sequential requests`);
  // A POST with a body still works on a kept connection, and a streamed (chunked) answer too.
  const echoed = await fetch(new URL("echo", exposed.url), { method: "POST", body: "abc" });
  assertEquals(await echoed.text(), "abc");
  const big = await fetch(new URL("big?n=300000", exposed.url));
  assertEquals((await big.arrayBuffer()).byteLength, 300000);
  assertEquals(
    await (await fetch(new URL("hello", exposed.url))).text(),
    "hello from the worker\n",
  );
});
