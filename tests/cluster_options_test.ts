// Cluster options are checked before anything starts, with errors naming the field and the bad value.
import { Server } from "../mod.ts";
import { assertEquals, assertRejects, assertStringIncludes } from "./_assert.ts";
import { sandd } from "./_cli.ts";

Deno.test("cluster options: bad values are refused with the field and the value", async () => {
  const bad: [unknown, string][] = [
    [{}, "cluster.servers"],
    [{ servers: "http://x:4222" }, '"http://x:4222"'],
    [{ servers: [] }, "cluster.servers"],
    [{ servers: "nats://127.0.0.1:4222", name: "a b" }, '"a b"'],
    [{ servers: "nats://127.0.0.1:4222", prefix: "x.y" }, '"x.y"'],
    [{ servers: "nats://127.0.0.1:4222", user: "u" }, "user and cluster.pass"],
    [{ servers: "nats://127.0.0.1:4222", heartbeatMs: 5 }, "5"],
    [{ servers: "nats://127.0.0.1:4222", tls: { certFile: "c" } }, "keyFile"],
    [{ servers: "nats://127.0.0.1:4222", nope: 1 }, "'nope'"],
  ];
  for (const [cluster, needle] of bad) {
    const error = await assertRejects(() =>
      Server.listen({ port: 0, cluster: cluster as { servers: string } })
    );
    assertStringIncludes((error as Error).message, needle);
  }
});

Deno.test("cluster options: an unreachable NATS fails listen, and nothing is left open", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await assertRejects(() =>
    Server.listen({ port: 0, cluster: { servers: `nats://127.0.0.1:${port}` } })
  );
});

Deno.test("sandd serve: cluster flags need --cluster", async () => {
  const r = await sandd(["serve", "--cluster-name", "a"]);
  assertEquals(r.code, 64);
  assertStringIncludes(r.stderr, "--cluster-name needs --cluster");
});
