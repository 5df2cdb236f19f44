// The cluster registry converges on the links a node holds: an entry of a node for a daemon it does not hold (its
// removal failed, e.g. timed out under load) is removed by that node's next sweep, and every node stops listing it.
import { assert, assertEquals } from "./_assert.ts";
import { haveNats } from "./_nats.ts";
import { TestCluster } from "./_cluster.ts";
import type { DaemonEvent } from "../mod.ts";
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";

const NATS = haveNats();

/** Resolves on the first `type` event of `node` about daemon `id`; rejects after `timeoutMs`. */
function nextEvent(node: EventTarget, type: string, id: string, timeoutMs = 20_000): Promise<void> {
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  const timer = setTimeout(() => {
    node.removeEventListener(type, listener);
    reject(new Error(`No ${type} event for ${id} within ${timeoutMs} ms`));
  }, timeoutMs);
  const listener = (event: Event) => {
    if ((event as DaemonEvent).daemon.id !== id) return;
    node.removeEventListener(type, listener);
    clearTimeout(timer);
    resolve();
  };
  node.addEventListener(type, listener);
  return promise;
}

Deno.test({
  name: "cluster registry: a node's entry for a daemon it does not hold is swept away",
  ignore: !NATS,
  async fn() {
    await using cluster = await TestCluster.start();
    const [a, b] = cluster.nodes as [typeof cluster.nodes[0], typeof cluster.nodes[0]];
    await cluster.daemon("w-a", 0);
    const nc = await connect({ servers: cluster.nats.url, name: "test-sweep" });
    try {
      const kv = await new Kvm(nc).open("sandd_daemons");
      const held = await kv.get("d.w-a");
      assert(held && held.operation === "PUT", "w-a is registered");
      // A leftover of node a: a daemon that left a without its entry being removed.
      const ghost = { ...held.json<Record<string, unknown>>(), id: "ghost", instance: "gone" };
      const shown = nextEvent(b, "connect", "ghost");
      const gone = nextEvent(b, "disconnect", "ghost");
      await kv.put("d.ghost", JSON.stringify(ghost));
      await shown; // b lists it while the entry is there (a is alive)...
      await gone; // ...until a's sweep removes it
      const left = await kv.get("d.ghost");
      assert(!left || left.operation !== "PUT", "the entry is gone from the bucket");
      assertEquals(b.daemons().map((d) => d.id), ["w-a"]);
      assertEquals(a.daemons().map((d) => d.id), ["w-a"]);
      // The daemon a holds is untouched.
      assertEquals((await b.exec("w-a", "echo ok")).stdout, "ok\n");
    } finally {
      await nc.close();
    }
  },
});
