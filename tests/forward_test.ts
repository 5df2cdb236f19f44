// Port forwarding end to end: a real daemon, real servers on the worker side (Deno TCP programs as child
// processes), and a local TCP listener on the controller (`server.forward`).
import { createHash } from "node:crypto";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "./_assert.ts";
import { startWorker } from "./_daemon.ts";
import { denoServer, freePort, readAll } from "./_forward.ts";
import { DaemonNotFoundError } from "../mod.ts";
import type { AuditRecord } from "../mod.ts";

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

Deno.test("forward: many concurrent connections echo through one tunnel", async () => {
  await using echo = denoServer("echo");
  await using worker = await startWorker("fw-echo");
  await using tunnel = await worker.server.forward("fw-echo", await echo.port);
  assertEquals(tunnel.hostname, "127.0.0.1");
  assert(tunnel.port > 0);
  const rounds = await Promise.all(Array.from({ length: 40 }, async (_, i) => {
    const conn = await Deno.connect({ hostname: tunnel.hostname, port: tunnel.port });
    const payload = crypto.getRandomValues(new Uint8Array(1000 + i * 997));
    const reading = readAll(conn);
    await writeAll(conn, payload);
    await conn.closeWrite();
    const back = await reading;
    conn.close();
    return { payload, back };
  }));
  for (const { payload, back } of rounds) assertEquals(back, payload);
});

Deno.test("forward: 100 MiB through a tunnel, compared by SHA-256, with backpressure", async () => {
  await using echo = denoServer("echo");
  await using worker = await startWorker("fw-big");
  await using tunnel = await worker.server.forward("fw-big", await echo.port);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: tunnel.port });
  const total = 100 * 1024 * 1024;
  const sent = createHash("sha256");
  const received = createHash("sha256");
  let got = 0;
  const reading = (async () => {
    const buffer = new Uint8Array(256 * 1024);
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) break;
      received.update(buffer.subarray(0, n));
      got += n;
    }
  })();
  const chunk = new Uint8Array(1024 * 1024);
  for (let at = 0; at < total; at += chunk.length) {
    crypto.getRandomValues(chunk.subarray(0, 65536));
    chunk.copyWithin(65536, 0, 65536 * 15);
    sent.update(chunk);
    await writeAll(conn, chunk);
  }
  await conn.closeWrite();
  await reading;
  conn.close();
  assertEquals(got, total);
  assertEquals(received.digest("hex"), sent.digest("hex"));
});

Deno.test("forward: half-close: the client shuts its write side and still reads the reply", async () => {
  await using count = denoServer("count");
  await using worker = await startWorker("fw-half");
  await using tunnel = await worker.server.forward("fw-half", await count.port);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: tunnel.port });
  await writeAll(conn, new TextEncoder().encode("hello world"));
  await conn.closeWrite();
  const reply = new TextDecoder().decode(await readAll(conn));
  conn.close();
  assertEquals(reply, "got 11 bytes");
});

Deno.test("forward: a refused port closes the local connection, and the audit names the port", async () => {
  const records: AuditRecord[] = [];
  const port = freePort();
  await using worker = await startWorker("fw-refused", [], {
    audit: (record) => void records.push(record),
  });
  await using tunnel = await worker.server.forward("fw-refused", port);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: tunnel.port });
  const bytes = await readAll(conn).catch(() => new Uint8Array(0));
  conn.close();
  assertEquals(bytes.length, 0);
  const failed = records.find((r) => r.action === "tunnel" && !r.ok);
  assert(failed, JSON.stringify(records));
  assertStringIncludes(String(failed.error), `127.0.0.1:${port}`);
  assertStringIncludes(String(failed.error), "refused");
  assert(records.some((r) => r.action === "forward" && r.ok));
});

Deno.test("forward: an unknown daemon or a bad port is refused before listening", async () => {
  await using worker = await startWorker("fw-args");
  await assertRejects(() => worker.server.forward("nobody", 80), DaemonNotFoundError);
  await assertRejects(() => worker.server.forward("fw-args", 0), RangeError, "remotePort");
  await assertRejects(() => worker.server.forward("fw-args", 80, { port: 70000 }), RangeError);
});

Deno.test("forward: a daemon that drops fails its connections; new ones work once it returns", async () => {
  await using echo = denoServer("echo");
  await using worker = await startWorker("fw-drop");
  await using tunnel = await worker.server.forward("fw-drop", await echo.port);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: tunnel.port });
  await writeAll(conn, new Uint8Array([1, 2, 3]));
  const first = new Uint8Array(3);
  assertEquals(await conn.read(first), 3);
  const gone = new Promise<void>((resolve) =>
    worker.server.addEventListener("disconnect", () => resolve(), { once: true })
  );
  await worker.daemon.stop("SIGKILL");
  await gone;
  // The connection ends (reset or end-of-file), it does not hang.
  await readAll(conn).catch(() => {});
  conn.close();
  // While the worker is away, a new connection is closed at once.
  const refused = await Deno.connect({ hostname: "127.0.0.1", port: tunnel.port });
  assertEquals((await readAll(refused).catch(() => new Uint8Array(0))).length, 0);
  refused.close();
  // It comes back under the same id: the same listener works again.
  const { TestDaemon } = await import("./_daemon.ts");
  await using again = new TestDaemon({ id: "fw-drop", url: worker.server.url });
  await worker.server.waitForDaemon("fw-drop", { timeout: 20_000 });
  const conn2 = await Deno.connect({ hostname: "127.0.0.1", port: tunnel.port });
  await writeAll(conn2, new TextEncoder().encode("back"));
  await conn2.closeWrite();
  assertEquals(new TextDecoder().decode(await readAll(conn2)), "back");
  conn2.close();
  void again;
});

Deno.test("forward and exposeHttp: the daemon's policy refusal reaches the caller with its reason", async () => {
  const records: AuditRecord[] = [];
  await using echo = denoServer("echo");
  const port = await echo.port;
  await using worker = await startWorker("fw-policy", ["--forward", "none"], {
    audit: (record) => void records.push(record),
  });
  await using tunnel = await worker.server.forward("fw-policy", port);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: tunnel.port });
  assertEquals((await readAll(conn).catch(() => new Uint8Array(0))).length, 0);
  conn.close();
  const refused = records.find((r) => r.action === "tunnel" && !r.ok);
  assertStringIncludes(String(refused?.error), "disabled");
  await using exposed = await worker.server.exposeHttp("fw-policy", { port });
  const response = await fetch(exposed.url);
  assertEquals(response.status, 502);
  assertStringIncludes(await response.text(), "disabled");
});

Deno.test("forward: the worker handle's forward and exposeHttp are the server's", async () => {
  await using echo = denoServer("echo");
  await using http = denoServer("http");
  await using worker = await startWorker("fw-handle");
  const w = worker.server.worker("fw-handle");
  await using tunnel = await w.forward(await echo.port);
  const conn = await Deno.connect({ hostname: tunnel.hostname, port: tunnel.port });
  const reading = readAll(conn);
  await writeAll(conn, new TextEncoder().encode("through the handle"));
  await conn.closeWrite();
  assertEquals(new TextDecoder().decode(await reading), "through the handle");
  conn.close();
  const exposed = await w.exposeHttp({ port: await http.port });
  const hello = new URL("hello", exposed.url);
  const response = await fetch(hello);
  assertEquals(await response.text(), "hello from the worker\n");
  await exposed.close();
  const gone = await fetch(hello);
  await gone.body?.cancel();
  assertEquals(gone.status, 404);
});
