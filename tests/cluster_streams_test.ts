// Bulk streams through a node that does not hold the daemon: a 100 MiB upload and download checked with SHA-256,
// and a slow reader far away still throttling the process (the daemon's credit holds; nothing piles up in NATS).
import { createHash } from "node:crypto";
import { assert, assertEquals, assertLessOrEqual } from "./_assert.ts";
import { haveNats } from "./_nats.ts";
import { TestCluster } from "./_cluster.ts";
import { eventually } from "./_daemon.ts";

const NATS = haveNats();
const MIB = 1024 * 1024;

/** `total` bytes of a deterministic pattern, in 256 KiB chunks, hashed as they go. */
function pattern(total: number, hash: ReturnType<typeof createHash>): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= total) {
        controller.close();
        return;
      }
      const chunk = new Uint8Array(Math.min(256 * 1024, total - sent));
      for (let i = 0; i < chunk.length; i += 4096) chunk[i] = (sent + i) / 4096 & 0xff;
      chunk[chunk.length - 1] = 7;
      sent += chunk.length;
      hash.update(chunk);
      controller.enqueue(chunk);
    },
  });
}

Deno.test({
  name: "cluster: a 100 MiB upload and download through nodes that do not hold the daemon",
  ignore: !NATS,
  async fn() {
    await using cluster = await TestCluster.start();
    await cluster.daemon("w-files", 0);
    const dir = await Deno.makeTempDir({ prefix: "sandd-cluster-" });
    try {
      const sent = createHash("sha256");
      const up = await cluster.nodes[2]!.upload(
        "w-files",
        `${dir}/big.bin`,
        pattern(100 * MIB, sent),
      );
      const sentHex = sent.digest("hex");
      assertEquals(up.bytes, 100 * MIB);
      assertEquals(up.sha256, sentHex);
      const got = createHash("sha256");
      let bytes = 0;
      for await (
        const chunk of await cluster.nodes[1]!.downloadStream("w-files", `${dir}/big.bin`)
      ) {
        got.update(chunk);
        bytes += chunk.length;
      }
      assertEquals(bytes, 100 * MIB);
      assertEquals(got.digest("hex"), sentHex);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "cluster: a slow reader through another node throttles the process",
  ignore: !NATS,
  async fn() {
    await using cluster = await TestCluster.start();
    await cluster.daemon("w-slow", 0);
    // 200 MiB of zeros; how much dd managed to write so far is in /proc/PID/io (wchar).
    const p = await cluster.nodes[1]!.spawn(
      "w-slow",
      ["dd", "if=/dev/zero", "bs=65536", "count=3200", "status=none"],
      { stdin: false },
    );
    const written = () => {
      const io = Deno.readTextFileSync(`/proc/${p.pid}/io`);
      return Number(io.match(/^wchar: (\d+)$/m)![1]);
    };
    const reader = p.stdout.getReader();
    await reader.read();
    // Not reading (this pause is the behaviour under test): dd blocks once the credit is used up.
    let last = -1;
    let since = Date.now();
    await eventually(
      () => {
        const now = written();
        if (now !== last) [last, since] = [now, Date.now()];
        return Date.now() - since > 1_000;
      },
      30_000,
      "the writer to block",
    );
    // Window (1 MiB) + the daemon's retention (4 MiB) + the pipe, far below the 200 MiB it would write.
    assertLessOrEqual(last, 12 * MIB);
    // Reading again lets it go on.
    let read = 0;
    while (read < 16 * MIB) {
      const { value, done } = await reader.read();
      assert(!done);
      read += value.length;
    }
    assert(written() > last);
    await p.kill("SIGKILL");
    await reader.cancel();
    assertEquals((await p.status).signal, "SIGKILL");
  },
});
