// The outage policy: a process's output survives a controller outage. When the link drops, the daemon keeps the
// backpressure of the lost reader on the child for `--detached-hold` (the child blocks, as behind a stalled ssh
// connection), so a controller that is back within it resumes with nothing lost; after the hold, output is read
// on and the oldest bytes are dropped, reported as an explicit gap.
import { assert, assertEquals } from "./_assert.ts";
import { TestDaemon } from "./_daemon.ts";
import { LinkProxy } from "./_proxy.ts";
import { Server } from "../mod.ts";

const LINES = 3_000_000;
/** `seq 1 3000000` is 22,888,896 bytes: over five times the daemon's default 4 MiB retention. */
const SEQ_BYTES = 22_888_896;

async function outage(holdSeconds: number | null, outageMs: number) {
  await using server = await Server.listen({ port: 0, reconnectGraceMs: 30_000 });
  await using proxy = new LinkProxy(server.port);
  await using daemon = new TestDaemon({
    id: "outage",
    url: proxy.url(),
    args: holdSeconds === null ? [] : ["--detached-hold", String(holdSeconds)],
  });
  await server.waitForDaemon(daemon.id, { timeout: 20_000 });
  const p = await server.spawn(daemon.id, ["seq", "1", String(LINES)]);
  const reader = p.stdout.getReader();
  let bytes = 0;
  let tail = new Uint8Array(0);
  const take = (chunk: Uint8Array) => {
    bytes += chunk.length;
    tail = chunk.length >= 16 ? chunk.slice(-16) : Uint8Array.from([...tail, ...chunk].slice(-16));
  };
  while (bytes < 1024 * 1024) {
    const { value, done } = await reader.read();
    if (done) break;
    take(value);
  }
  // The outage: the link drops and the controller cannot be reached for `outageMs`. Its length is the scenario
  // itself (there is no event to wait for: the point is what the daemon does meanwhile).
  const disconnected = new Promise<void>((resolve) =>
    server.addEventListener("disconnect", () => resolve(), { once: true })
  );
  proxy.refuse(true);
  await proxy.cut();
  await disconnected;
  await new Promise((r) => setTimeout(r, outageMs));
  proxy.refuse(false);
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    take(value);
  }
  const status = await p.status;
  return { bytes, tail: new TextDecoder().decode(tail), gaps: p.gaps, status };
}

Deno.test("outage: a 3 s outage loses nothing of a 23 MB stream (the default hold)", async () => {
  const r = await outage(null, 3_000);
  assertEquals(r.gaps, []);
  assertEquals(r.bytes, SEQ_BYTES);
  assert(r.tail.endsWith(`\n${LINES}\n`), r.tail);
  assertEquals(r.status.exitCode, 0);
});

Deno.test("outage: after the hold, output is read on and the loss is an explicit gap", async () => {
  const r = await outage(0.5, 3_000);
  assert(r.gaps.length > 0, "a gap is reported");
  const lost = r.gaps.reduce((n, g) => n + (g.to - g.from), 0);
  assertEquals(r.bytes + lost, SEQ_BYTES);
  assert(r.tail.endsWith(`\n${LINES}\n`), r.tail);
});

Deno.test("outage: after a 6 s controller outage the daemon is back within ~2 s and handles survive", async () => {
  // Default grace and default reconnect schedule (the test helper's faster one is overridden).
  await using server = await Server.listen({ port: 0 });
  await using proxy = new LinkProxy(server.port);
  await using daemon = new TestDaemon({
    id: "outage-backoff",
    url: proxy.url(),
    args: ["--reconnect-initial", "1", "--reconnect-max", "30"],
  });
  await server.waitForDaemon(daemon.id, { timeout: 20_000 });
  const p = await server.spawn(daemon.id, "echo start; sleep 9; echo end");
  const output = new Response(p.stdout).text();
  const disconnected = new Promise<void>((resolve) =>
    server.addEventListener("disconnect", () => resolve(), { once: true })
  );
  proxy.refuse(true);
  await proxy.cut();
  await disconnected;
  // The outage's length is the scenario: every attempt in it is refused.
  await new Promise((r) => setTimeout(r, 6_000));
  const back = new Promise<number>((resolve) =>
    server.addEventListener("connect", () => resolve(performance.now()), { once: true })
  );
  const restored = performance.now();
  proxy.refuse(false);
  const delay = (await back) - restored;
  assert(delay < 3_000, `back ${Math.round(delay)} ms after the controller was reachable again`);
  assertEquals(await output, "start\nend\n");
  assertEquals((await p.status).exitCode, 0);
});
