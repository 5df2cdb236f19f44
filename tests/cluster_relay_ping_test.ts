// A relayed link times its round trip through the owner node: the owner answers a member's relay `ping` itself
// with its own link's round trip to the daemon (a number), and `gone` for a daemon it does not hold.
import { connect, headers } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { assert, assertEquals } from "./_assert.ts";
import { haveNats } from "./_nats.ts";
import { TestCluster } from "./_cluster.ts";

const NATS = haveNats();

Deno.test({
  name: "cluster: the owner answers a relay ping with its link's round trip, or gone",
  ignore: !NATS,
  async fn() {
    await using cluster = await TestCluster.start(2);
    await cluster.daemon("w-ping", 0);
    const nc = await connect({ servers: cluster.nats.url });
    try {
      const nodes = await new Kvm(nc).open("sandd_nodes");
      let ownerSlot = 0;
      for (let n = 1; n <= 255 && ownerSlot === 0; n++) {
        if ((await nodes.get(`slot.${n}`))?.string() === "a") ownerSlot = n;
      }
      assert(ownerSlot > 0);
      await nodes.create("slot.201", "probe");
      await nodes.put("node.probe", JSON.stringify({ slot: 201 }));
      await cluster.nodes[0]!.exec("w-ping", "true"); // the owner has seen the node key by now
      const answers: { d: string; k: string; text: string }[] = [];
      const got = Promise.withResolvers<void>();
      const sub = nc.subscribe("sandd.back.201", {
        callback: (_error, msg) => {
          answers.push({
            d: msg.headers?.get("d") ?? "",
            k: msg.headers?.get("k") ?? "",
            text: new TextDecoder().decode(msg.data),
          });
          if (answers.length === 2) got.resolve();
        },
      });
      for (const id of ["w-ping", "w-nobody"]) {
        const h = headers();
        h.set("d", id);
        h.set("k", "ping");
        nc.publish(`sandd.to.${ownerSlot}.probe`, new Uint8Array(0), { headers: h });
      }
      await got.promise;
      sub.unsubscribe();
      const pong = answers.find((a) => a.d === "w-ping")!;
      assertEquals(pong.k, "pong");
      assert(Number.isFinite(Number(pong.text)) && Number(pong.text) >= 0, pong.text);
      assertEquals(answers.find((a) => a.d === "w-nobody")?.k, "gone");
      await nodes.delete("node.probe");
      await nodes.delete("slot.201");
    } finally {
      await nc.close();
    }
  },
});
