// The cluster over NATS: three controller nodes, daemons spread over them, every call made through a node that
// does not hold the daemon.
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { haveNats } from "./_nats.ts";
import { TestCluster } from "./_cluster.ts";
import { TestDaemon } from "./_daemon.ts";

const NATS = haveNats();

Deno.test({
  name: "cluster: every node sees every daemon and runs exec on daemons held by other nodes",
  ignore: !NATS,
  async fn() {
    await using cluster = await TestCluster.start();
    const [a, b, c] = cluster.nodes as [
      typeof cluster.nodes[0],
      typeof cluster.nodes[0],
      typeof cluster.nodes[0],
    ];
    await cluster.daemon("w-a", 0, ["--label", "zone=a"]);
    await cluster.daemon("w-b", 1);
    await cluster.daemon("w-c", 2);
    for (const node of cluster.nodes) {
      assertEquals(node.daemons().map((d) => d.id).sort(), ["w-a", "w-b", "w-c"]);
      assertEquals(node.daemons({ labels: { zone: "a" } }).map((d) => d.id), ["w-a"]);
    }
    assertEquals(a.daemonCount, 1);
    // Through every other node.
    for (
      const [node, id] of [[b, "w-a"], [c, "w-a"], [a, "w-b"], [a, "w-c"], [b, "w-c"]] as const
    ) {
      const r = await node.exec(id, "echo hi; echo err >&2", { timeout: 20_000 });
      assertEquals(r.stdout, "hi\n");
      assertEquals(r.stderr, "err\n");
      assertEquals(r.exitCode, 0);
    }
    // Many at once, interleaved with the owner's own traffic on the same daemon link.
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => [a, b, c][i % 3]!.exec("w-a", `echo ${i}`)),
    );
    results.forEach((r, i) => assertEquals(r.stdout, `${i}\n`));
    // Stdin and a spawned process with streamed stdin, through node c.
    const piped = await c.exec("w-b", "cat", { stdin: "in\n" });
    assertEquals(piped.stdout, "in\n");
    const p = await c.spawn("w-a", "cat; echo done");
    const writer = p.stdin.getWriter();
    await writer.write(new TextEncoder().encode("line 1\n"));
    await writer.write(new TextEncoder().encode("line 2\n"));
    await writer.close();
    const out = await new Response(p.stdout).text();
    assertEquals(out, "line 1\nline 2\ndone\n");
    assertEquals((await p.status).exitCode, 0);
    // The owner's processes list shows it.
    const listed = await b.processes("w-a");
    assert(listed.some((q) => q.id === p.id));
  },
});

Deno.test({
  name: "cluster: a terminal through a node that does not hold the daemon",
  ignore: !NATS,
  async fn() {
    await using cluster = await TestCluster.start();
    await cluster.daemon("w-t", 0);
    const sh = await cluster.nodes[2]!.shell("w-t", { command: ["sh"] });
    const reader = sh.output.getReader();
    await sh.write("echo hello-$((6*7))\r");
    let text = "";
    const decoder = new TextDecoder();
    while (!text.includes("hello-42")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    assertStringIncludes(text, "hello-42");
    await sh.write("exit 3\r");
    while (!(await reader.read()).done) { /* drain */ }
    assertEquals((await sh.exited).exitCode, 3);
  },
});

Deno.test({
  name:
    "cluster: a second daemon claiming an id held by another node is refused; the first keeps working",
  ignore: !NATS,
  async fn() {
    await using cluster = await TestCluster.start();
    const first = await cluster.daemon("twin", 0);
    const second = new TestDaemon({ id: "twin", url: cluster.nodes[1]!.url });
    try {
      // Refused with close code 4009 as on one node; it keeps retrying with backoff.
      await second.waitForLog("already connected");
      for (const node of [cluster.nodes[0]!, cluster.nodes[2]!]) {
        assertEquals(node.daemon("twin")?.pid, first.pid);
      }
      assertEquals((await cluster.nodes[2]!.exec("twin", "echo $PPID")).exitCode, 0);
      assertEquals(cluster.nodes[0]!.daemonCount, 1);
      assertEquals(
        cluster.nodes[2]!.daemons().filter((d) => d.id === "twin").map((d) => d.pid),
        [first.pid],
      );
    } finally {
      await second.stop();
    }
  },
});

Deno.test({
  name: "cluster: /metrics of any node counts the daemons of every node and says NATS is up",
  ignore: !NATS,
  async fn() {
    await using cluster = await TestCluster.start(2, { metrics: true });
    await cluster.daemon("m-a", 0);
    await cluster.daemon("m-b", 1);
    await cluster.daemon("m-b2", 1);
    const url = cluster.nodes[0]!.url.replace(/^ws/, "http").replace(/\/ws$/, "/metrics");
    const text = await (await fetch(url)).text();
    assertStringIncludes(text, 'sandd_cluster_daemons{node="a"} 1');
    assertStringIncludes(text, 'sandd_cluster_daemons{node="b"} 2');
    assertStringIncludes(text, "sandd_cluster_nats_up 1");
    assertStringIncludes(text, "sandd_build_info");
  },
});
