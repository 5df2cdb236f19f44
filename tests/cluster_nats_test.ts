// NATS itself goes away and comes back: nodes keep serving the daemons they hold, cross-node calls fail fast with
// ClusterUnavailableError, and once NATS returns the registry is rebuilt and followed processes resume.
import { ClusterUnavailableError } from "../mod.ts";
import { assertEquals, assertRejects } from "./_assert.ts";
import { haveNats } from "./_nats.ts";
import { TestCluster } from "./_cluster.ts";
import { eventually } from "./_daemon.ts";

const NATS = haveNats();

Deno.test({
  name:
    "cluster: NATS restarted under load; local daemons keep working, remote calls fail fast, then resume",
  ignore: !NATS,
  async fn() {
    await using cluster = await TestCluster.start();
    const [a, b, c] = cluster.nodes as [
      typeof cluster.nodes[0],
      typeof cluster.nodes[0],
      typeof cluster.nodes[0],
    ];
    await cluster.daemon("w-a", 0);
    await cluster.daemon("w-b", 1);
    // A process on the daemon of node a followed from node c; it writes once NATS is back (bytes in flight in
    // NATS when it stops are not this test's subject: see server/CLUSTER.md).
    const dir = await Deno.makeTempDir({ prefix: "sandd-cluster-" });
    const p = await c.spawn(
      "w-a",
      `while [ ! -e ${dir}/go ]; do sleep 0.05; done; seq 1 300000`,
      { stdin: false },
    );
    const text = new Response(p.stdout).text();
    // Load: calls through other nodes in flight while NATS stops.
    let stop = false;
    const load = (async () => {
      let ok = 0;
      while (!stop) {
        // A failure comes at once while NATS is away: yield to the event loop between tries.
        await b.exec("w-a", "echo x").then(
          () => ok++,
          () => new Promise((r) => setTimeout(r, 10)),
        );
      }
      return ok;
    })();
    await cluster.nats.stop();
    await eventually(() => c.daemons().length === 0, 20_000, "node c to notice NATS is gone");
    // Local daemons work; a daemon held elsewhere fails fast with a clear error.
    assertEquals((await a.exec("w-a", "echo local")).stdout, "local\n");
    assertEquals(a.daemons().map((d) => d.id), ["w-a"]);
    const error = await assertRejects(() => c.exec("w-a", "true"), ClusterUnavailableError);
    assertEquals((error as ClusterUnavailableError).code, "CLUSTER_UNAVAILABLE");
    await cluster.nats.restart();
    for (const node of cluster.nodes) {
      await eventually(() => node.daemons().length === 2, 30_000, "the registry to be rebuilt");
    }
    assertEquals((await c.exec("w-b", "echo back")).stdout, "back\n");
    // The registry works again, not only the cache the nodes kept: a daemon that connects now (after a restart
    // that lost the buckets held in memory) is seen from every node.
    await cluster.daemon("w-late", 1);
    for (const node of cluster.nodes) {
      await eventually(
        () => node.daemons().some((d) => d.id === "w-late"),
        30_000,
        "a daemon connected after the restart to be seen everywhere",
      );
    }
    assertEquals((await c.exec("w-late", "echo late")).stdout, "late\n");
    await a.exec("w-a", ["touch", `${dir}/go`]);
    assertEquals((await a.exec("w-b", "echo back")).stdout, "back\n");
    stop = true;
    await load;
    // The stream resumed from its offset: every line once.
    const lines = (await text).split("\n");
    assertEquals(lines.length, 300_001);
    for (let i = 0; i < 300_000; i++) {
      if (lines[i] !== String(i + 1)) throw new Error(`line ${i + 1} is '${lines[i]}'`);
    }
    assertEquals((await p.status).exitCode, 0);
    assertEquals(p.gaps.length, 0);
    await Deno.remove(dir, { recursive: true });
  },
});
