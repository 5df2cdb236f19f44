// The registry's compare-and-set writes (server/cluster/_kv_writer.ts) against a real nats-server: what
// `@nats-io/kv` reads back is what was written, a stale revision is refused with JetStream's code, and a write
// nobody answers, or one to a server without JetStream, fails with a clear error instead of waiting forever.
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { haveNats, TestNats } from "./_nats.ts";
import { KvWriteError, KvWriter } from "../server/cluster/_kv_writer.ts";
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";

const NATS = haveNats();
const encoder = new TextEncoder();

Deno.test({
  name: "cluster kv writer: puts and deletes by revision, as the KV client reads them",
  ignore: !NATS,
  async fn() {
    await using nats = await TestNats.start();
    const nc = await connect({ servers: nats.url, name: "test-kv-writer" });
    const writer = new KvWriter(nc, "w_test");
    try {
      const kv = await new Kvm(nc).create("w_test", { history: 1 });
      const first = await writer.put("d.a", encoder.encode('{"n":1}'), 0);
      assertEquals((await kv.get("d.a"))?.json(), { n: 1 });
      assertEquals((await kv.get("d.a"))?.revision, first);
      // A write that expects no entry, or an old revision, loses the compare-and-set.
      const lost = await assertRejects(
        () => writer.put("d.a", encoder.encode('{"n":2}'), 0),
        KvWriteError,
        "wrong last sequence",
      );
      assertEquals(lost.code, 10071);
      const second = await writer.put("d.a", encoder.encode('{"n":2}'), first);
      assert(second > first);
      assertEquals((await kv.get("d.a"))?.json(), { n: 2 });
      await assertRejects(() => writer.delete("d.a", first), KvWriteError, "wrong last sequence");
      await writer.delete("d.a", second);
      const deleted = await kv.get("d.a");
      assertEquals(deleted?.operation, "DEL");
      // A deleted key is written again on its delete marker's revision, as `KV.create` does.
      await writer.put("d.a", encoder.encode('{"n":3}'), deleted!.revision);
      assertEquals((await kv.get("d.a"))?.json(), { n: 3 });
      assertEquals(writer.waiting, 0);
    } finally {
      writer.close();
      await nc.close();
    }
  },
});

Deno.test({
  name: "cluster kv writer: no JetStream, no answer, or closed: the write fails with a clear error",
  ignore: !NATS,
  async fn() {
    await using nats = await TestNats.start();
    const nc = await connect({ servers: nats.url, name: "test-kv-writer-errors" });
    // No stream takes `$KV.none.>`: the server says nobody answers (503).
    const none = new KvWriter(nc, "none");
    // A plain subscriber takes `$KV.silent.>` and never answers: the write times out.
    const silent = new KvWriter(nc, "silent", 300);
    const sub = nc.subscribe("$KV.silent.>", { callback: () => {} });
    try {
      const refused = await assertRejects(
        () => none.put("d.a", encoder.encode("{}"), 0),
        KvWriteError,
        "did not take the write",
      );
      assertEquals(refused.code, 503);
      await nc.flush();
      const timedOut = await assertRejects(
        () => silent.put("d.a", encoder.encode("{}"), 0),
        KvWriteError,
        "within 300 ms",
      );
      assertEquals(timedOut.code, 408);
      assertEquals(silent.waiting, 0);
      // Closing fails what still waits, and refuses what comes after.
      const waiting = silent.put("d.b", encoder.encode("{}"), 0);
      silent.close();
      await assertRejects(() => waiting, KvWriteError, "closed");
      await assertRejects(() => silent.delete("d.b", 0), KvWriteError, "closed");
    } finally {
      none.close();
      silent.close();
      sub.unsubscribe();
      await nc.close();
    }
  },
});

Deno.test({
  name:
    "cluster kv writer: a write waiting when the NATS connection closes fails then, not at its deadline",
  ignore: !NATS,
  async fn() {
    await using nats = await TestNats.start();
    const nc = await connect({ servers: nats.url, name: "test-kv-writer-close" });
    // Nobody answers `$KV.silent.>`: the write waits for its (long) deadline.
    const writer = new KvWriter(nc, "silent", 60_000);
    const sub = nc.subscribe("$KV.silent.>", { callback: () => {} });
    try {
      await nc.flush();
      const waiting = writer.put("d.a", encoder.encode("{}"), 0);
      const started = performance.now();
      await nc.close();
      await assertRejects(() => waiting, KvWriteError, "closed");
      assert(performance.now() - started < 5_000, "failed at once, not at the deadline");
      assertEquals(writer.waiting, 0);
      await assertRejects(
        () => writer.put("d.b", encoder.encode("{}"), 0),
        KvWriteError,
        "NATS closed",
      );
    } finally {
      sub.unsubscribe();
      writer.close();
    }
  },
});
