// Lag-aware node liveness (issue 14): a node whose own event loop was stalled must not take healthy nodes for dead
// (forget their daemons) for a silence it caused itself; a node that really died (SIGKILL) is still found within
// its bound. The stalled node is the embedded one in this test process (a busy loop blocks it); the healthy nodes
// are `sandd serve` processes of their own.
import { assert, assertEquals } from "./_assert.ts";
import { haveNats, TestNats } from "./_nats.ts";
import { startServe } from "./_cli.ts";
import { eventually, TestDaemon } from "./_daemon.ts";
import { type DaemonEvent, Server } from "../mod.ts";

const NATS = haveNats();
const BEAT_MS = 1_000;

/** Block this process's event loop for `ms` (as a node starved of CPU, or a long synchronous task). */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // spin
  }
}

Deno.test({
  name:
    "cluster: a node whose loop stalls for 5 heartbeats keeps the healthy nodes and their daemons; a SIGKILLed node is still found",
  ignore: !NATS,
  async fn() {
    await using nats = await TestNats.start();
    const serveArgs = (name: string) => [
      "--cluster",
      nats.url,
      "--cluster-name",
      name,
      "--cluster-heartbeat-ms",
      String(BEAT_MS),
    ];
    const b = await startServe(serveArgs("b"));
    let bStopped = false;
    const c = await startServe(serveArgs("c"));
    let cStopped = false;
    try {
      await using x = await Server.listen({
        port: 0,
        cluster: { servers: nats.url, name: "x", heartbeatMs: BEAT_MS },
      });
      await using db = new TestDaemon({ id: "w-b", url: b.wsUrl });
      await using dc = new TestDaemon({ id: "w-c", url: c.wsUrl });
      await x.waitForDaemon("w-b", { timeout: 20_000 });
      await x.waitForDaemon("w-c", { timeout: 20_000 });
      const gone: string[] = [];
      const disconnects: { id: string; at: number }[] = [];
      x.addEventListener("disconnect", (e) => {
        const id = (e as DaemonEvent).daemon.id;
        gone.push(id);
        disconnects.push({ id, at: performance.now() });
      });
      // Both healthy nodes are known to x and have beaten a few times.
      await new Promise((resolve) => setTimeout(resolve, 3 * BEAT_MS));

      // x follows a process on node b's daemon through the relay while its loop stalls.
      const p = await x.spawn("w-b", ["sh", "-c", "seq 1 200000; sleep 4; seq 200001 400000"], {
        stdin: false,
      });
      const reader = p.stdout.getReader();
      const chunks: Uint8Array[] = [];
      let got = 0;
      while (got < 100_000) {
        const { value, done } = await reader.read();
        if (done) break;
        chunks.push(value);
        got += value.length;
      }
      // x's loop stalls for 5 heartbeats (its timers, NATS reads and watches all wait).
      busy(5 * BEAT_MS);
      // Then it runs again for 4 heartbeats: its checks see peers whose beats it did not read in time.
      const watchUntil = performance.now() + 4 * BEAT_MS;
      while (performance.now() < watchUntil) {
        assertEquals(gone, [], "x forgot daemons of healthy nodes after its own stall");
        assertEquals(
          x.daemons().map((d) => d.id).sort(),
          ["w-b", "w-c"],
          "x lists the healthy nodes' daemons",
        );
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      // The rest arrives (before the change it never did: node b had reset x's stream when x's key expired, and
      // x's handle waited on a link it still took for live).
      for (;;) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const next = await Promise.race([
          reader.read(),
          new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), 20_000)),
        ]);
        clearTimeout(timer);
        if (next === null) {
          await reader.cancel().catch(() => {});
          await p.kill("SIGKILL").catch(() => {});
          throw new Error(
            `The relayed stream stopped after ${got} bytes (gaps ${JSON.stringify(p.gaps)})`,
          );
        }
        if (next.done) break;
        chunks.push(next.value);
        got += next.value.length;
      }
      const text = new TextDecoder().decode(
        chunks.reduce((all, c) => {
          const out = new Uint8Array(all.length + c.length);
          out.set(all);
          out.set(c, all.length);
          return out;
        }, new Uint8Array(0)),
      );
      let expected = "";
      for (let i = 1; i <= 400_000; i++) expected += i + "\n";
      assertEquals(text.length, expected.length, "the relayed stream lost or doubled bytes");
      assert(text === expected, "the relayed stream's bytes differ");
      assertEquals((await p.status).exitCode, 0);
      assertEquals(p.gaps.length, 0);
      assertEquals((await x.exec("w-b", "echo b")).stdout, "b\n");
      assertEquals((await x.exec("w-c", "echo c")).stdout, "c\n");

      // A node that really dies is still found within its bound: three heartbeats (NATS forgets its key) plus
      // one beat here to look, with slack for a loaded machine.
      const killedAt = performance.now();
      await c.stop("SIGKILL");
      cStopped = true;
      await eventually(() => gone.includes("w-c"), 20_000, "x takes node c for dead");
      const foundMs = disconnects.find((d) => d.id === "w-c")!.at - killedAt;
      console.log(
        `node c found dead after ${Math.round(foundMs)} ms (bound ${5 * BEAT_MS} + slack)`,
      );
      assert(foundMs < 5 * BEAT_MS + 3_000, `node c found dead after ${foundMs} ms`);
      assert(!gone.includes("w-b"), "node b stays");
      assertEquals(x.daemons().map((d) => d.id), ["w-b"]);
      await dc.stop();
      await db.stop();
    } finally {
      if (!bStopped) await b.stop();
      bStopped = true;
      if (!cStopped) await c.stop();
    }
  },
});
