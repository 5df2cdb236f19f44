import { assert, assertEquals, assertGreater, assertLess, assertRejects } from "./_assert.ts";
import { CommandTimeoutError, DaemonNotFoundError, Server } from "../mod.ts";
import { alive, eventually, startWorker, TestDaemon } from "./_daemon.ts";
import { createHash } from "node:crypto";

Deno.test("exec returns stdout, stderr, exit code and duration", async () => {
  await using t = await startWorker("w1");
  const r = await t.server.exec("w1", "echo out; echo err >&2; exit 3");
  assertEquals(r.stdout, "out\n");
  assertEquals(r.stderr, "err\n");
  assertEquals(r.exitCode, 3);
  assertEquals(r.signal, null);
  assertGreater(r.durationMs, 0);
  assertEquals(r.truncated, { stdout: false, stderr: false });
});

Deno.test("exec passes env and cwd, runs argv directly", async () => {
  await using t = await startWorker("w1");
  const dir = await Deno.makeTempDir();
  try {
    const r = await t.server.exec("w1", 'printf "%s|" "$SANDD_A" "$(pwd)"', {
      env: { SANDD_A: "x y" },
      cwd: dir,
    });
    assertEquals(r.stdout, `x y|${await Deno.realPath(dir)}|`);
    const argv = await t.server.exec("w1", ["printf", "%s", "a b;c"]);
    assertEquals(argv.stdout, "a b;c");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("exec feeds stdin and ends it", async () => {
  await using t = await startWorker("w1");
  const r = await t.server.exec("w1", "sort", { stdin: "b\nc\na\n" });
  assertEquals(r.stdout, "a\nb\nc\n");
  const bytes = await t.server.exec("w1", ["wc", "-c"], { stdin: new Uint8Array(300_000) });
  assertEquals(bytes.stdout.trim(), "300000");
});

Deno.test("a missing program exits 127 with the shell's message", async () => {
  await using t = await startWorker("w1");
  const viaShell = await t.server.exec("w1", "no-such-program-xyz");
  assertEquals(viaShell.exitCode, 127);
  assert(viaShell.stderr.includes("no-such-program-xyz"), viaShell.stderr);
  const argv = await t.server.exec("w1", ["no-such-program-xyz", "--flag"]);
  assertEquals(argv.exitCode, 127);
  assert(argv.stderr.includes("no-such-program-xyz"), argv.stderr);
  const badCwd = await t.server.exec("w1", ["true"], { cwd: "/no/such/dir" });
  assertEquals(badCwd.exitCode, 127);
});

Deno.test("a timeout kills the whole process group and reports partial output", async () => {
  await using t = await startWorker("w1");
  const started = performance.now();
  const error = await assertRejects(
    () => t.server.exec("w1", "sleep 300 & echo $!; echo partial; sleep 300", { timeout: 500 }),
    CommandTimeoutError,
  );
  assertLess(performance.now() - started, 5_000);
  const [bgPid, word] = error.partial.stdout.trim().split("\n");
  assertEquals(word, "partial");
  const pid = Number(bgPid);
  assert(pid > 0);
  await eventually(() => !alive(pid), 3_000, `background sleep ${pid} to die`);
});

Deno.test("10 concurrent one-second commands finish in about a second", async () => {
  await using t = await startWorker("w1");
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: 10 }, (_, i) => t.server.exec("w1", `sleep 1; echo ${i}`)),
  );
  const elapsed = performance.now() - started;
  results.forEach((r, i) => assertEquals(r.stdout, `${i}\n`));
  assertLess(elapsed, 2_500);
});

Deno.test("10 MB of output arrives byte-exact", async () => {
  await using t = await startWorker("w1");
  const file = await Deno.makeTempFile();
  try {
    const data = new Uint8Array(10 * 1024 * 1024);
    for (let i = 0; i < data.length; i += 65536) {
      crypto.getRandomValues(data.subarray(i, i + 65536));
    }
    await Deno.writeFile(file, data);
    const r = await t.server.exec("w1", ["cat", file]);
    assertEquals(r.stdoutBytes.length, data.length);
    assertEquals(
      createHash("sha256").update(r.stdoutBytes).digest("hex"),
      createHash("sha256").update(data).digest("hex"),
    );
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("non-UTF-8 bytes pass unchanged", async () => {
  await using t = await startWorker("w1");
  const r = await t.server.exec("w1", ["printf", "\\377\\376\\000\\200abc"]);
  assertEquals([...r.stdoutBytes], [0xff, 0xfe, 0x00, 0x80, 0x61, 0x62, 0x63]);
});

Deno.test("output beyond maxOutputBytes is truncated and flagged", async () => {
  await using t = await startWorker("w1");
  const r = await t.server.exec("w1", "head -c 100000 /dev/zero", { maxOutputBytes: 1000 });
  assertEquals(r.stdoutBytes.length, 1000);
  assertEquals(r.truncated.stdout, true);
  assertEquals(r.exitCode, 0);
});

Deno.test("an aborted exec kills the command", async () => {
  await using t = await startWorker("w1");
  const controller = new AbortController();
  const pending = t.server.exec("w1", "echo $$; sleep 300", { signal: controller.signal });
  const list = async () => (await t.server.processes("w1")).filter((p) => p.state === "running");
  let running: Awaited<ReturnType<typeof list>> = [];
  const deadline = Date.now() + 5_000;
  while ((running = await list()).length === 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assertEquals(running.length, 1);
  controller.abort(new Error("stop"));
  await assertRejects(() => pending, Error, "stop");
  await eventually(() => !alive(running[0]!.pid), 3_000, "aborted command to die");
});

Deno.test("bad arguments are refused before anything is sent", async () => {
  await using t = await startWorker("w1");
  await assertRejects(() => t.server.exec("w1", ""), TypeError, "empty");
  await assertRejects(() => t.server.exec("w1", []), TypeError);
  await assertRejects(() => t.server.exec("w1", "true", { timeout: -1 }), RangeError, "-1");
  await assertRejects(
    () => t.server.exec("w1", "true", { env: { A: 1 as unknown as string } }),
    TypeError,
    "env.A",
  );
  await assertRejects(() => t.server.exec("nobody", "true"), DaemonNotFoundError, "nobody");
  await assertRejects(() => t.server.exec("bad id!", "true"), TypeError, "bad id!");
  // The server and daemon still work.
  assertEquals((await t.server.exec("w1", "echo ok")).stdout, "ok\n");
});

Deno.test("daemons are listed with labels and broadcast reaches the matching ones", async () => {
  const server = await Server.listen({ port: 0 });
  const a = new TestDaemon({
    id: "gpu-1",
    url: server.url,
    args: ["--label", "role=gpu", "--label", "zone=a"],
  });
  const b = new TestDaemon({ id: "cpu-1", url: server.url, args: ["--label", "role=cpu"] });
  try {
    await Promise.all([server.waitForDaemon("gpu-1"), server.waitForDaemon("cpu-1")]);
    assertEquals(server.daemonCount, 2);
    const gpus = server.daemons({ labels: { role: "gpu" } });
    assertEquals(gpus.map((d) => d.id), ["gpu-1"]);
    assertEquals(gpus[0]!.labels, { role: "gpu", zone: "a" });
    assertEquals(gpus[0]!.platform, Deno.build.os);
    assertEquals(server.daemon("cpu-1")?.pid, b.pid);
    const results = await server.broadcast({ labels: { role: "gpu" } }, "echo hi");
    assertEquals([...results.keys()], ["gpu-1"]);
    const r = results.get("gpu-1");
    assert(r && !(r instanceof Error));
    assertEquals(r.stdout, "hi\n");
    const stats = await (await fetch(`http://127.0.0.1:${server.port}/stats`)).json();
    assertEquals(stats.daemons, 2);
    assertEquals(stats.byPlatform[Deno.build.os], 2);
    const health = await (await fetch(`http://127.0.0.1:${server.port}/health`)).json();
    assertEquals(health.status, "ok");
  } finally {
    await Promise.all([a.stop(), b.stop()]);
    await server.close();
  }
});

Deno.test("the daemon's --max-output-bytes policy drops output beyond the cap and says so", async () => {
  await using t = await startWorker("w-cap", ["--max-output-bytes", "1000"]);
  const r = await t.server.exec("w-cap", "head -c 500000 /dev/zero; echo done >&2");
  assertEquals(r.exitCode, 0);
  assertEquals(r.stdoutBytes.length, 1000);
  assertEquals(r.truncated, { stdout: true, stderr: false });
  assertEquals(r.stderr, "done\n");
});

Deno.test("broadcast runs at most `concurrency` commands at once and reports each result as it comes", async () => {
  await using server = await Server.listen({ port: 0 });
  const ids = ["bc-1", "bc-2", "bc-3"];
  const daemons = ids.map((id) => new TestDaemon({ id, url: server.url }));
  const dir = await Deno.makeTempDir();
  try {
    await Promise.all(ids.map((id) => server.waitForDaemon(id)));
    // Each command marks its start and end in one shared log; one at a time means no interleaving.
    const log = `${dir}/log`;
    const seen: string[] = [];
    const results = await server.broadcast(
      {},
      `echo start >> ${log}; sleep 0.2; echo end >> ${log}`,
      {
        concurrency: 1,
        onResult: (id, r) => seen.push(`${id}:${r instanceof Error ? "error" : r.exitCode}`),
      },
    );
    assertEquals([...results.keys()].sort(), ids);
    assertEquals(seen.sort(), ids.map((id) => `${id}:0`));
    assertEquals(await Deno.readTextFile(log), "start\nend\n".repeat(3));
    // All at once by default: the three starts come before any end.
    await Deno.writeTextFile(log, "");
    await server.broadcast({}, `echo start >> ${log}; sleep 0.5; echo end >> ${log}`);
    assertEquals(await Deno.readTextFile(log), "start\n".repeat(3) + "end\n".repeat(3));
    await assertRejects(
      () => server.broadcast({}, "true", { concurrency: 0 }),
      RangeError,
      "concurrency",
    );
  } finally {
    await Promise.all(daemons.map((d) => d.stop()));
    await Deno.remove(dir, { recursive: true });
  }
});
