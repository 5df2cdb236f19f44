// The exec tests, run against both controllers (the embedded Server and a Client over the control API) where the
// test makes sense on both, then what only the Client has: connecting, error mapping, a daemon dropping during a
// call, events.
import { assert, assertEquals, assertGreater, assertLess, assertRejects } from "./_assert.ts";
import {
  AuthenticationError,
  Client,
  CommandTimeoutError,
  ControlApiError,
  DaemonDisconnectedError,
  type DaemonEvent,
  DaemonNotFoundError,
  Server,
  UnknownProcessError,
} from "../mod.ts";
import { alive, eventually, TestDaemon } from "./_daemon.ts";
import { openController, startFleet, testBoth } from "./_controllers.ts";
import { createHash } from "node:crypto";

testBoth("exec returns stdout, stderr, exit code and duration", async (kind) => {
  await using t = await startFleet(kind, "w1");
  const r = await t.controller.exec("w1", "echo out; echo err >&2; exit 3");
  assertEquals(r.stdout, "out\n");
  assertEquals(r.stderr, "err\n");
  assertEquals(r.exitCode, 3);
  assertEquals(r.signal, null);
  assertGreater(r.durationMs, 0);
  assertEquals(r.truncated, { stdout: false, stderr: false });
});

testBoth("exec passes env and cwd, runs argv directly", async (kind) => {
  await using t = await startFleet(kind, "w1");
  const dir = await Deno.makeTempDir();
  try {
    const r = await t.controller.exec("w1", 'printf "%s|" "$SANDD_A" "$(pwd)"', {
      env: { SANDD_A: "x y" },
      cwd: dir,
    });
    assertEquals(r.stdout, `x y|${await Deno.realPath(dir)}|`);
    const argv = await t.controller.exec("w1", ["printf", "%s", "a b;c"]);
    assertEquals(argv.stdout, "a b;c");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

testBoth("exec feeds stdin and ends it", async (kind) => {
  await using t = await startFleet(kind, "w1");
  const r = await t.controller.exec("w1", "sort", { stdin: "b\nc\na\n" });
  assertEquals(r.stdout, "a\nb\nc\n");
  const bytes = await t.controller.exec("w1", ["wc", "-c"], { stdin: new Uint8Array(300_000) });
  assertEquals(bytes.stdout.trim(), "300000");
});

testBoth("a missing program exits 127 with the shell's message", async (kind) => {
  await using t = await startFleet(kind, "w1");
  const viaShell = await t.controller.exec("w1", "no-such-program-xyz");
  assertEquals(viaShell.exitCode, 127);
  assert(viaShell.stderr.includes("no-such-program-xyz"), viaShell.stderr);
  const argv = await t.controller.exec("w1", ["no-such-program-xyz", "--flag"]);
  assertEquals(argv.exitCode, 127);
  assert(argv.stderr.includes("no-such-program-xyz"), argv.stderr);
  const badCwd = await t.controller.exec("w1", ["true"], { cwd: "/no/such/dir" });
  assertEquals(badCwd.exitCode, 127);
});

testBoth("a timeout kills the whole process group and reports partial output", async (kind) => {
  await using t = await startFleet(kind, "w1");
  const started = performance.now();
  const error = await assertRejects(
    () => t.controller.exec("w1", "sleep 300 & echo $!; echo partial; sleep 300", { timeout: 500 }),
    CommandTimeoutError,
  );
  assertLess(performance.now() - started, 5_000);
  assertEquals(error.timeoutMs, 500);
  const [bgPid, word] = error.partial.stdout.trim().split("\n");
  assertEquals(word, "partial");
  const pid = Number(bgPid);
  assert(pid > 0);
  await eventually(() => !alive(pid), 3_000, `background sleep ${pid} to die`);
});

testBoth("10 concurrent one-second commands finish in about a second", async (kind) => {
  await using t = await startFleet(kind, "w1");
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: 10 }, (_, i) => t.controller.exec("w1", `sleep 1; echo ${i}`)),
  );
  const elapsed = performance.now() - started;
  results.forEach((r, i) => assertEquals(r.stdout, `${i}\n`));
  assertLess(elapsed, 2_500);
});

testBoth("10 MB of output arrives byte-exact", async (kind) => {
  await using t = await startFleet(kind, "w1");
  const file = await Deno.makeTempFile();
  try {
    const data = new Uint8Array(10 * 1024 * 1024);
    for (let i = 0; i < data.length; i += 65536) {
      crypto.getRandomValues(data.subarray(i, i + 65536));
    }
    await Deno.writeFile(file, data);
    const r = await t.controller.exec("w1", ["cat", file]);
    assertEquals(r.stdoutBytes.length, data.length);
    assertEquals(
      createHash("sha256").update(r.stdoutBytes).digest("hex"),
      createHash("sha256").update(data).digest("hex"),
    );
  } finally {
    await Deno.remove(file);
  }
});

testBoth("non-UTF-8 bytes pass unchanged", async (kind) => {
  await using t = await startFleet(kind, "w1");
  const r = await t.controller.exec("w1", ["printf", "\\377\\376\\000\\200abc"]);
  assertEquals([...r.stdoutBytes], [0xff, 0xfe, 0x00, 0x80, 0x61, 0x62, 0x63]);
});

testBoth("output beyond maxOutputBytes is truncated and flagged", async (kind) => {
  await using t = await startFleet(kind, "w1");
  const r = await t.controller.exec("w1", "head -c 100000 /dev/zero", { maxOutputBytes: 1000 });
  assertEquals(r.stdoutBytes.length, 1000);
  assertEquals(r.truncated.stdout, true);
  assertEquals(r.exitCode, 0);
});

testBoth("an aborted exec kills the command", async (kind) => {
  await using t = await startFleet(kind, "w1");
  const controller = new AbortController();
  const pending = t.controller.exec("w1", "echo $$; sleep 300", { signal: controller.signal });
  const list = async () =>
    (await t.controller.processes("w1")).filter((p) => p.state === "running");
  let running: Awaited<ReturnType<typeof list>> = [];
  const deadline = Date.now() + 5_000;
  while ((running = await list()).length === 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assertEquals(running.length, 1);
  controller.abort(new Error("stop"));
  await assertRejects(() => pending, Error, "stop");
  await eventually(() => !alive(running[0]!.pid), 3_000, "aborted command to die");
}, ["server"]);

// Over the API an aborted exec closes its request at once; killing the command is then up to the controller
// noticing that its client left, which its hardened listener does not report (docs/client.md: use a timeout).
Deno.test("client: an aborted exec rejects at once with the signal's reason", async () => {
  await using t = await startFleet("client", "w1");
  const controller = new AbortController();
  const pending = t.controller.exec("w1", "sleep 300", {
    signal: controller.signal,
    timeout: 2_000,
  });
  while ((await t.controller.processes("w1")).every((p) => p.state !== "running")) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const started = performance.now();
  controller.abort(new Error("stop"));
  await assertRejects(() => pending, Error, "stop");
  assertLess(performance.now() - started, 1_000);
  await assertRejects(
    () => t.controller.exec("w1", "true", { signal: AbortSignal.abort(new Error("early")) }),
    Error,
    "early",
  );
});

testBoth("bad arguments are refused before anything is sent", async (kind) => {
  await using t = await startFleet(kind, "w1");
  const c = t.controller;
  await assertRejects(() => c.exec("w1", ""), TypeError, "empty");
  await assertRejects(() => c.exec("w1", []), TypeError);
  await assertRejects(() => c.exec("w1", "true", { timeout: -1 }), RangeError, "-1");
  await assertRejects(
    () => c.exec("w1", "true", { env: { A: 1 as unknown as string } }),
    TypeError,
    "env.A",
  );
  await assertRejects(() => c.exec("nobody", "true"), DaemonNotFoundError, "nobody");
  await assertRejects(() => c.exec("bad id!", "true"), TypeError, "bad id!");
  // The controller and daemon still work.
  assertEquals((await c.exec("w1", "echo ok")).stdout, "ok\n");
});

testBoth("daemons are listed with labels and broadcast reaches the matching ones", async (kind) => {
  await using t = await openController(kind);
  const a = new TestDaemon({
    id: "gpu-1",
    url: t.server.url,
    args: ["--label", "role=gpu", "--label", "zone=a"],
  });
  const b = new TestDaemon({ id: "cpu-1", url: t.server.url, args: ["--label", "role=cpu"] });
  try {
    const c = t.controller;
    await Promise.all([c.waitForDaemon("gpu-1"), c.waitForDaemon("cpu-1")]);
    assertEquals((await c.daemons()).length, 2);
    const gpus = await c.daemons({ labels: { role: "gpu" } });
    assertEquals(gpus.map((d) => d.id), ["gpu-1"]);
    assertEquals(gpus[0]!.labels, { role: "gpu", zone: "a" });
    assertEquals(gpus[0]!.platform, Deno.build.os);
    assert(gpus[0]!.connectedAt instanceof Date);
    assertEquals((await c.daemon("cpu-1"))?.pid, b.pid);
    assertEquals(await c.daemon("nobody"), undefined);
    const results = await c.broadcast({ labels: { role: "gpu" } }, "echo hi");
    assertEquals([...results.keys()], ["gpu-1"]);
    const r = results.get("gpu-1");
    assert(r && !(r instanceof Error));
    assertEquals(r.stdout, "hi\n");
    // With stdin, the broadcast fans out exec calls (the Client's route takes no stdin).
    const sorted = await c.broadcast({ labels: { role: "cpu" } }, "sort", { stdin: "b\na\n" });
    const s = sorted.get("cpu-1");
    assert(s && !(s instanceof Error));
    assertEquals(s.stdout, "a\nb\n");
    if (kind === "server") {
      // The embedded Server's synchronous listing, and its own HTTP endpoints.
      assertEquals(t.server.daemonCount, 2);
      assertEquals(t.server.daemon("cpu-1")?.pid, b.pid);
      const stats = await (await fetch(`http://127.0.0.1:${t.server.port}/stats`)).json();
      assertEquals(stats.daemons, 2);
      assertEquals(stats.byPlatform[Deno.build.os], 2);
      const health = await (await fetch(`http://127.0.0.1:${t.server.port}/health`)).json();
      assertEquals(health.status, "ok");
    }
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

testBoth(
  "the daemon's --max-output-bytes policy drops output beyond the cap and says so",
  async (kind) => {
    await using t = await startFleet(kind, "w-cap", ["--max-output-bytes", "1000"]);
    const r = await t.controller.exec("w-cap", "head -c 500000 /dev/zero; echo done >&2");
    assertEquals(r.exitCode, 0);
    assertEquals(r.stdoutBytes.length, 1000);
    assertEquals(r.truncated, { stdout: true, stderr: false });
    assertEquals(r.stderr, "done\n");
  },
);

// The Client's broadcast has no concurrency or onResult (the API's route runs all at once and answers once).
Deno.test("server: broadcast runs at most `concurrency` commands at once and reports each result as it comes", async () => {
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

// --- what only the Client has ---

Deno.test("client: connect checks the URL, the controller and the token", async () => {
  await assertRejects(() => Client.connect("ftp://127.0.0.1:1"), TypeError, "ftp://");
  await assertRejects(() => Client.connect("not a url"), TypeError, "not a url");
  await assertRejects(() => Client.connect("http://u:p@127.0.0.1:1"), TypeError, "credentials");
  await assertRejects(
    () => Client.connect("http://127.0.0.1:1", { requestTimeoutMs: 0 }),
    RangeError,
    "requestTimeoutMs",
  );
  await assertRejects(
    () => Client.connect("http://127.0.0.1:1", { token: "has space" }),
    TypeError,
    "token",
  );
  // Nothing listens: UNREACHABLE names the URL.
  const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (free.addr as Deno.NetAddr).port;
  free.close();
  const unreachable = await assertRejects(
    () => Client.connect(`http://127.0.0.1:${port}`),
    ControlApiError,
    `127.0.0.1:${port}`,
  );
  assertEquals(unreachable.code, "UNREACHABLE");
  // A controller without the API: NOT_FOUND.
  {
    await using bare = await Server.listen({ port: 0 });
    const none = await assertRejects(
      () => Client.connect(`http://127.0.0.1:${bare.port}`),
      ControlApiError,
      "control",
    );
    assertEquals(none.code, "NOT_FOUND");
  }
  // Tokens: a wrong one is refused at connect; a daemon's token never works for the API.
  const token = "client-token-0123456789";
  await using server = await Server.listen({
    port: 0,
    token: "daemon-token-0123456789",
    control: { tokens: [{ token, name: "agent" }] },
  });
  const url = `http://127.0.0.1:${server.port}/`;
  await assertRejects(() => Client.connect(url), AuthenticationError, "refused");
  await assertRejects(
    () => Client.connect(url, { token: "wrong-token-0123456789" }),
    AuthenticationError,
  );
  await assertRejects(
    () => Client.connect(url, { token: "daemon-token-0123456789" }),
    AuthenticationError,
  );
  await using client = await Client.connect(url, { token });
  assertEquals(client.url, `http://127.0.0.1:${server.port}`);
  assertEquals(await client.daemons(), []);
  // The signal option closes the client; its calls then fail with CLOSED.
  const stop = new AbortController();
  const closing = await Client.connect(url, { token, signal: stop.signal });
  stop.abort();
  const closed = await assertRejects(() => closing.daemons(), ControlApiError);
  assertEquals(closed.code, "CLOSED");
});

Deno.test("client: the API's errors come back as the same classes", async () => {
  await using t = await startFleet("client", "w1");
  const c = t.controller;
  const notFound = await assertRejects(() => c.exec("nobody", "true"), DaemonNotFoundError);
  assertEquals(notFound.code, "DAEMON_NOT_FOUND");
  assertEquals(notFound.daemonId, "nobody");
  await assertRejects(() => c.processes("nobody"), DaemonNotFoundError);
  const unknown = await assertRejects(() => c.attach("w1", "p-nope-1"), UnknownProcessError);
  assertEquals(unknown.daemonId, "w1");
  await assertRejects(
    () => c.waitForDaemon("late", { timeout: 100 }),
    DaemonNotFoundError,
    "did not connect within 100 ms",
  );
  const aborted = new AbortController();
  const waiting = c.waitForDaemon("late", { signal: aborted.signal });
  aborted.abort(new Error("gave up"));
  await assertRejects(() => waiting, Error, "gave up");
});

Deno.test("client: a daemon that drops during an exec fails it with DaemonDisconnectedError", async () => {
  await using t = await startFleet("client", "w-drop", [], { server: { reconnectGraceMs: 200 } });
  const pending = t.controller.exec("w-drop", "echo started; sleep 10");
  // Wait until the command runs, then take the daemon away for good.
  while ((await t.controller.processes("w-drop")).every((p) => p.state !== "running")) {
    await new Promise((r) => setTimeout(r, 20));
  }
  await t.daemon.stop("SIGKILL");
  const error = await assertRejects(() => pending, DaemonDisconnectedError);
  assertEquals(error.daemonId, "w-drop");
});

Deno.test("client: connect and disconnect events arrive over the event stream while listened to", async () => {
  await using t = await openController("client");
  const c = t.controller;
  const seen: string[] = [];
  const connected = Promise.withResolvers<DaemonEvent>();
  const disconnected = Promise.withResolvers<DaemonEvent>();
  const onConnect = (event: DaemonEvent) => {
    seen.push(`connect ${event.daemon.id}`);
    connected.resolve(event);
  };
  const onDisconnect = (event: DaemonEvent) => {
    seen.push(`disconnect ${event.daemon.id}`);
    disconnected.resolve(event);
  };
  c.addEventListener("connect", onConnect);
  c.addEventListener("disconnect", onDisconnect, { once: true });
  // The daemon takes far longer to start than the event stream to open.
  const daemon = new TestDaemon({ id: "w-events", url: t.server.url });
  try {
    const event = await connected.promise;
    assertEquals(event.daemon.id, "w-events");
    assertEquals(event.daemon.pid, daemon.pid);
    assert(event.daemon.connectedAt instanceof Date);
  } finally {
    await daemon.stop();
  }
  assertEquals((await disconnected.promise).daemon.id, "w-events");
  c.removeEventListener("connect", onConnect);
  assertEquals(seen, ["connect w-events", "disconnect w-events"]);
});
