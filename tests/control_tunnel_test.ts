// Port tunnels through the control API (what `Client.forward`, `Client.exposeHttp` and `sandd forward` use): a
// local listener whose connections each ride one API WebSocket, under credit both ways; exposed URLs made and
// revoked over HTTP. Attacks: a client past its credit, a client without the exec scope, bad ports.
import { createHash } from "node:crypto";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./_assert.ts";
import { call, startApiWorker } from "./_control.ts";
import { denoServer, freePort, readAll } from "./_forward.ts";
import { exposeThroughApi, forwardThroughApi } from "../server/_client_forward.ts";
import { Client, RemoteWorker } from "../mod.ts";

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

const READER = "reader-token-0123456789";
const RUNNER = "runner-token-0123456789";
const toError = async (r: Response) => new Error(`${r.status} ${await r.text()}`);

Deno.test("control tunnel: connections through an API tunnel echo, 32 MiB compared by SHA-256", async () => {
  await using echo = denoServer("echo");
  await using worker = await startApiWorker("tun-echo");
  const api = { baseUrl: `http://127.0.0.1:${worker.server.port}`, headers: {} };
  await using tunnel = await forwardThroughApi(api, "tun-echo", await echo.port);
  const rounds = await Promise.all(Array.from({ length: 8 }, async (_, i) => {
    const conn = await Deno.connect({ hostname: tunnel.hostname, port: tunnel.port });
    const payload = crypto.getRandomValues(new Uint8Array(1000 + i * 4099));
    const reading = readAll(conn);
    await writeAll(conn, payload);
    await conn.closeWrite();
    const back = await reading;
    conn.close();
    return { payload, back };
  }));
  for (const { payload, back } of rounds) assertEquals(back, payload);
  // Bulk, past many windows in both directions.
  const conn = await Deno.connect({ hostname: tunnel.hostname, port: tunnel.port });
  const size = 32 * 1024 * 1024;
  const sent = createHash("sha256");
  const reading = (async () => {
    const got = createHash("sha256");
    let n = 0;
    const buffer = new Uint8Array(65536);
    while (true) {
      const r = await conn.read(buffer);
      if (r === null) break;
      got.update(buffer.subarray(0, r));
      n += r;
    }
    return { n, hash: got.digest("hex") };
  })();
  const chunk = new Uint8Array(1024 * 1024);
  for (let i = 0; i < size / chunk.length; i++) {
    chunk.fill(i);
    sent.update(chunk);
    await writeAll(conn, chunk);
  }
  await conn.closeWrite();
  const { n, hash } = await reading;
  conn.close();
  assertEquals(n, size);
  assertEquals(hash, sent.digest("hex"));
});

Deno.test("control tunnel: a refused port, a bad port and a missing scope are clear errors", async () => {
  await using worker = await startApiWorker("tun-errors", {
    control: {
      tokens: [{ token: READER, scopes: ["read"] }, { token: RUNNER, scopes: ["exec"] }],
    },
  });
  const base = `${worker.base}/daemons/tun-errors`;
  const upgrade = {
    upgrade: "websocket",
    connection: "Upgrade",
    "sec-websocket-version": "13",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
  };
  const refused = await call(`${base}/tunnel?port=${freePort()}`, {
    token: RUNNER,
    headers: upgrade,
  });
  assertEquals(refused.status, 502);
  assertStringIncludes(refused.text, "ECONNREFUSED");
  const bad = await call(`${base}/tunnel?port=70000`, { token: RUNNER, headers: upgrade });
  assertEquals(bad.status, 400);
  assertStringIncludes(bad.text, "port");
  const extra = await call(`${base}/tunnel?port=1&host=10.0.0.1`, {
    token: RUNNER,
    headers: upgrade,
  });
  assertEquals(extra.status, 400);
  assertStringIncludes(extra.text, "host");
  const forbidden = await call(`${base}/tunnel?port=1`, { token: READER, headers: upgrade });
  assertEquals(forbidden.status, 403);
  const expose = await call(`${base}/expose`, {
    token: READER,
    method: "POST",
    json: { port: 80 },
  });
  assertEquals(expose.status, 403);
  const junk = await call(`${base}/expose`, {
    token: RUNNER,
    method: "POST",
    json: { port: 80, x: 1 },
  });
  assertEquals(junk.status, 400);
  const unknown = await call(`${base}/expose/x-nope/close`, { token: RUNNER, method: "POST" });
  assertEquals(unknown.status, 404);
});

Deno.test("control tunnel: a client sending past its credit is cut off, the worker connection aborted", async () => {
  await using echo = denoServer("count");
  await using worker = await startApiWorker("tun-flood");
  const url =
    `ws://127.0.0.1:${worker.server.port}/api/v1/daemons/tun-flood/tunnel?port=${await echo.port}`;
  const socket = new WebSocket(url);
  const closed = new Promise<CloseEvent>((resolve) => socket.onclose = resolve);
  const texts: string[] = [];
  socket.onmessage = (event) => {
    if (typeof event.data === "string") texts.push(event.data);
  };
  await new Promise((resolve) => socket.onopen = resolve);
  // 4 MiB without waiting for a single ack: four windows.
  for (let i = 0; i < 64; i++) socket.send(new Uint8Array(64 * 1024));
  await closed;
  // The reason comes first as a text frame (the close code itself may be lost while the client still sends).
  const error = texts.map((t) => JSON.parse(t)).find((m) => m.type === "error");
  assertEquals(error?.code, "PROTOCOL");
  assertStringIncludes(error?.message, "beyond the credit granted");
});

Deno.test("control tunnel: an exposed URL made and revoked over the API", async () => {
  await using http = denoServer("http");
  await using worker = await startApiWorker("tun-expose");
  const api = { baseUrl: `http://127.0.0.1:${worker.server.port}`, headers: {} };
  const exposed = await exposeThroughApi(api, "tun-expose", { port: await http.port }, toError);
  const hello = new URL("hello", exposed.url);
  assertEquals(await (await fetch(hello)).text(), "hello from the worker\n");
  await exposed.close();
  const gone = await fetch(hello);
  await gone.body?.cancel();
  assertEquals(gone.status, 404);
  await assertRejects(
    () => exposeThroughApi(api, "no-such-daemon", { port: 80 }, toError),
    Error,
    "404",
  );
  assert(exposed.url.startsWith(`http://127.0.0.1:${worker.server.port}/x/`));
});

Deno.test("control tunnel: Client.forward and Client.exposeHttp, and the worker handle on a Client", async () => {
  await using echo = denoServer("echo");
  await using http = denoServer("http");
  await using worker = await startApiWorker("tun-client");
  await using client = await Client.connect(`http://127.0.0.1:${worker.server.port}`);
  const w = new RemoteWorker(client, "tun-client");
  await using tunnel = await w.forward(await echo.port);
  const conn = await Deno.connect({ hostname: tunnel.hostname, port: tunnel.port });
  const reading = readAll(conn);
  await writeAll(conn, new TextEncoder().encode("via the client"));
  await conn.closeWrite();
  assertEquals(new TextDecoder().decode(await reading), "via the client");
  conn.close();
  const exposed = await client.exposeHttp("tun-client", { port: await http.port });
  assertEquals(
    await (await fetch(new URL("hello", exposed.url))).text(),
    "hello from the worker\n",
  );
  await exposed.close();
  await assertRejects(() => client.forward("bad id!", 80), TypeError);
});
