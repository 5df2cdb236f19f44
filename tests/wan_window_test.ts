// A long link is not capped at window / RTT: the controller measures each link's round trip with its pings and
// sizes a new stream's window from it (between `streamWindow` and `maxStreamWindow`; the daemon caps it at its
// retention). Through a relay adding 100 ms of round trip, a fixed 64 KiB window would carry 640 KiB/s.
import { assert, assertEquals } from "./_assert.ts";
import { eventually, TestDaemon } from "./_daemon.ts";
import { DelayRelay } from "./_delay_relay.ts";
import { streamWindowFor } from "../server/_exec.ts";
import { Server } from "../mod.ts";

const MiB = 1024 * 1024;

Deno.test("wan: the window is sized from the round trip, between the configured floor and ceiling", () => {
  assertEquals(streamWindowFor(undefined, MiB, 16 * MiB), MiB);
  assertEquals(streamWindowFor(0.2, MiB, 16 * MiB), MiB);
  assertEquals(streamWindowFor(50, MiB, 16 * MiB), Math.ceil(256 * MiB / 20));
  assertEquals(streamWindowFor(1_000, MiB, 16 * MiB), 16 * MiB);
});

Deno.test("wan: a bad maxStreamWindow is refused at listen", async () => {
  for (const bad of [0, -1, 1.5, 128 * MiB]) {
    let error: unknown;
    try {
      await Server.listen({ port: 0, maxStreamWindow: bad });
    } catch (e) {
      error = e;
    }
    assert(error instanceof RangeError || error instanceof TypeError, String(bad));
    assert(String(error).includes("maxStreamWindow"), String(error));
  }
});

Deno.test("wan: over a 100 ms round trip a stream's window grows with the RTT", async () => {
  await using server = await Server.listen({
    port: 0,
    streamWindow: 64 * 1024,
    maxStreamWindow: 4 * MiB,
  });
  await using relay = new DelayRelay(server.port, 100);
  await using daemon = new TestDaemon({ id: "far", url: `ws://127.0.0.1:${relay.port}/ws` });
  await server.waitForDaemon(daemon.id, { timeout: 20_000 });
  // The first ping goes out with the welcome; its pong is a round trip later (no event for it).
  await eventually(() => server.daemon(daemon.id)?.rttMs !== undefined, 10_000, "a measured RTT");
  const rtt = server.daemon(daemon.id)!.rttMs!;
  assert(rtt >= 95, `rtt ${rtt} ms`);
  const size = 16 * MiB;
  const started = performance.now();
  const p = await server.spawn(daemon.id, ["head", "-c", String(size), "/dev/zero"], {
    stdin: false,
  });
  let n = 0;
  for await (const chunk of p.stdout) n += chunk.length;
  assertEquals(n, size);
  assertEquals((await p.status).exitCode, 0);
  // With the 64 KiB floor as the window this takes 16 MiB / (64 KiB / 0.1 s) = 25.6 s; the grown window (4 MiB,
  // the daemon's retention) needs about 0.4 s of round trips. A generous bound tells the two apart on a busy machine.
  const seconds = (performance.now() - started) / 1000;
  assert(seconds < 12, `16 MiB took ${seconds.toFixed(1)} s`);
});
