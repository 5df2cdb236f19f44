// A controller node dies (SIGKILL of a real `sandd serve --cluster`) while a process on one of its daemons streams
// to a client on another node: the daemon moves to a third node, the client's stream resumes from its offset.
import { assert, assertEquals } from "./_assert.ts";
import { haveNats, TestNats } from "./_nats.ts";
import { SwitchRelay } from "./_cluster.ts";
import { startServe } from "./_cli.ts";
import { eventually, TestDaemon } from "./_daemon.ts";
import { Server } from "../mod.ts";

const NATS = haveNats();

function expectedSeq(n: number): Uint8Array {
  let text = "";
  const parts: string[] = [];
  for (let i = 1; i <= n; i++) {
    text += i + "\n";
    if (text.length > 1 << 20) {
      parts.push(text);
      text = "";
    }
  }
  parts.push(text);
  return new TextEncoder().encode(parts.join(""));
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test({
  name:
    "cluster: SIGKILL of the node holding a daemon while seq streams through another node loses nothing",
  ignore: !NATS,
  async fn() {
    await using nats = await TestNats.start();
    const cluster = (name: string) => ({ servers: nats.url, name, heartbeatMs: 2_000 });
    const a = await startServe([
      "--cluster",
      nats.url,
      "--cluster-name",
      "a",
      "--cluster-heartbeat-ms",
      "2000",
    ]);
    let aKilled = false;
    await using b = await Server.listen({ port: 0, cluster: cluster("b") });
    await using c = await Server.listen({ port: 0, cluster: cluster("c") });
    await using relay = new SwitchRelay(Number(new URL(a.wsUrl).port));
    await using daemon = new TestDaemon({ id: "w-move", url: relay.url() });
    try {
      await c.waitForDaemon("w-move", { timeout: 20_000 });
      assertEquals(c.daemon("w-move")?.id, "w-move");
      assertEquals(b.daemonCount, 0);
      const p = await c.spawn("w-move", ["seq", "1", "2000000"], { stdin: false });
      const reader = p.stdout.getReader();
      const chunks: Uint8Array[] = [];
      let got = 0;
      while (got < 2_000_000) {
        const { value, done } = await reader.read();
        if (done) break;
        chunks.push(value);
        got += value.length;
      }
      // Kill node a for real; the daemon's next link goes to node b.
      relay.target = b.port;
      await a.stop("SIGKILL");
      aKilled = true;
      await eventually(() => b.daemonCount === 1, 20_000, "the daemon on node b");
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        chunks.push(value);
      }
      const all = new Uint8Array(chunks.reduce((n, x) => n + x.length, 0));
      let at = 0;
      for (const x of chunks) {
        all.set(x, at);
        at += x.length;
      }
      const expected = expectedSeq(2_000_000);
      assertEquals(all.length, expected.length);
      assertEquals(await sha256(all), await sha256(expected));
      assertEquals((await p.status).exitCode, 0);
      assertEquals(p.gaps.length, 0);
      // Node c now lists the daemon at its new place only once, and exec works through it.
      assertEquals(c.daemons().filter((d) => d.id === "w-move").length, 1);
      assertEquals((await c.exec("w-move", "echo moved")).stdout, "moved\n");
      assert(daemon.pid > 0);
    } finally {
      if (!aKilled) await a.stop();
    }
  },
});

Deno.test({
  name:
    "cluster: a daemon given every node's --server-url fails over by itself when its node is SIGKILLed; seq loses nothing",
  ignore: !NATS,
  async fn() {
    await using nats = await TestNats.start();
    const cluster = (name: string) => ({ servers: nats.url, name, heartbeatMs: 2_000 });
    const a = await startServe([
      "--cluster",
      nats.url,
      "--cluster-name",
      "a",
      "--cluster-heartbeat-ms",
      "2000",
    ]);
    let aKilled = false;
    try {
      await using b = await Server.listen({ port: 0, cluster: cluster("b") });
      await using c = await Server.listen({ port: 0, cluster: cluster("c") });
      // The real daemon, no relay in between: node a first, then b and c (it tries them round robin).
      await using daemon = new TestDaemon({
        id: "w-urls",
        url: a.wsUrl,
        args: ["--server-url", b.url, "--server-url", c.url],
      });
      await c.waitForDaemon("w-urls", { timeout: 20_000 });
      assertEquals(b.daemonCount + c.daemonCount, 0);
      const p = await c.spawn("w-urls", ["seq", "1", "2000000"], { stdin: false });
      const reader = p.stdout.getReader();
      const chunks: Uint8Array[] = [];
      let got = 0;
      while (got < 2_000_000) {
        const { value, done } = await reader.read();
        if (done) break;
        chunks.push(value);
        got += value.length;
      }
      await a.stop("SIGKILL");
      aKilled = true;
      await eventually(
        () => b.daemonCount + c.daemonCount === 1,
        20_000,
        "the daemon on node b or c",
      );
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        chunks.push(value);
      }
      const all = new Uint8Array(chunks.reduce((n, x) => n + x.length, 0));
      let at = 0;
      for (const x of chunks) {
        all.set(x, at);
        at += x.length;
      }
      const expected = expectedSeq(2_000_000);
      assertEquals(all.length, expected.length);
      assertEquals(await sha256(all), await sha256(expected));
      assertEquals((await p.status).exitCode, 0);
      assertEquals(p.gaps.length, 0);
      // Every surviving node lists it once, at its new place, and reaches it.
      for (const node of [b, c]) {
        assertEquals(node.daemons().filter((d) => d.id === "w-urls").length, 1);
        assertEquals((await node.exec("w-urls", "echo moved")).stdout, "moved\n");
      }
      assert(daemon.pid > 0);
    } finally {
      if (!aKilled) await a.stop();
    }
  },
});
