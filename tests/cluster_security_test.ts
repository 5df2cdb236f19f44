// A hostile cluster member (a NATS client posing as a node) cannot touch another node's streams through the
// owner's relay: every id in a relayed message must be in the sender's slot.
import { connect, headers } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { encodeDataFrame } from "@sandd/protocol/frame";
import { encodeBatch } from "../server/cluster/_relay_batch.ts";
import { assertEquals } from "./_assert.ts";
import { haveNats } from "./_nats.ts";
import { TestCluster } from "./_cluster.ts";

const NATS = haveNats();

Deno.test({
  name:
    "cluster: a member publishing a frame with another slot's stream id is refused by the owner",
  ignore: !NATS,
  async fn() {
    await using cluster = await TestCluster.start();
    await cluster.daemon("w-sec", 0);
    const nc = await connect({ servers: cluster.nats.url });
    try {
      const nodes = await new Kvm(nc).open("sandd_nodes");
      const slotOf = async (name: string) => {
        for (let n = 1; n <= 255; n++) {
          if ((await nodes.get(`slot.${n}`))?.string() === name) return n;
        }
        throw new Error(`no slot for ${name}`);
      };
      const ownerSlot = await slotOf("a");
      const victimSlot = await slotOf("c");
      // The hostile member joins as a node the usual way (a slot and a live node key).
      await nodes.create("slot.200", "evil");
      await nodes.put("node.evil", JSON.stringify({ slot: 200 }));
      await cluster.nodes[0]!.exec("w-sec", "true"); // the owner has seen the node key by now
      const p = await cluster.nodes[2]!.spawn("w-sec", "cat");
      const evil = new TextEncoder().encode("EVIL\n");
      const h = headers();
      h.set("d", "w-sec");
      h.set("k", "b");
      for (let k = 1; k <= 32; k++) {
        nc.publish(
          `sandd.to.${ownerSlot}.evil`,
          encodeDataFrame(victimSlot * 0x100_0000 + k, 0, evil),
          { headers: h },
        );
      }
      // The same frames several to a NATS message (the relay's batch envelope), and a truncated envelope.
      const hb = headers();
      hb.set("d", "w-sec");
      hb.set("k", "m");
      const frames = [];
      for (let k = 1; k <= 32; k++) {
        frames.push(encodeDataFrame(victimSlot * 0x100_0000 + k, 0, evil));
      }
      const batch = encodeBatch(frames);
      nc.publish(`sandd.to.${ownerSlot}.evil`, batch, { headers: hb });
      nc.publish(`sandd.to.${ownerSlot}.evil`, batch.subarray(0, batch.length - 3), {
        headers: hb,
      });
      await nc.flush();
      await cluster.nodes[0]!.exec("w-sec", "true"); // the owner has handled them by now
      const writer = p.stdin.getWriter();
      await writer.write(new TextEncoder().encode("ok\n"));
      await writer.close();
      assertEquals(await new Response(p.stdout).text(), "ok\n");
      assertEquals((await p.status).exitCode, 0);
      await nodes.delete("node.evil");
      await nodes.delete("slot.200");
    } finally {
      await nc.close();
    }
  },
});
