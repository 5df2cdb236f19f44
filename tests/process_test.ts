// The streaming process tests, run against both controllers (the embedded Server and a Client over the control
// API) where the test makes sense on both, then the Client's own: its HTTP streams resume after a cut, and detach.
import { assert, assertEquals, assertLess, assertRejects } from "./_assert.ts";
import {
  type Gap,
  ProcessExitedError,
  type ProcessHandle,
  Server,
  SignalNotAllowedError,
  UnknownProcessError,
} from "../mod.ts";
import { alive, eventually, startWorker, TestDaemon } from "./_daemon.ts";
import { LinkProxy } from "./_proxy.ts";
import { openController, startFleet, testBoth } from "./_controllers.ts";

async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  return await new Response(stream).text();
}

/** Read a stream until `pattern` appears; fails after `timeoutMs`. Returns the text so far. */
async function readUntil(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  pattern: RegExp,
  timeoutMs = 10_000,
): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(text)) {
    if (Date.now() > deadline) {
      throw new Error(`Timed out waiting for ${pattern}; got ${JSON.stringify(text)}`);
    }
    const { value, done } = await reader.read();
    if (done) throw new Error(`Stream ended before ${pattern}; got ${JSON.stringify(text)}`);
    text += decoder.decode(value, { stream: true });
  }
  return text;
}

testBoth("stdin round trip through cat and sort, ended by closing stdin", async (kind) => {
  await using t = await startFleet(kind, "p-stdin");
  const c = t.controller;
  const cat = await c.spawn("p-stdin", "cat");
  const writer = cat.stdin.getWriter();
  const reader = cat.stdout.getReader();
  await writer.write(new TextEncoder().encode("ping\n"));
  assertEquals(await readUntil(reader, /ping\n/), "ping\n");
  await writer.write(new TextEncoder().encode("pong\n"));
  assertEquals(await readUntil(reader, /pong\n/), "pong\n");
  await writer.close();
  assertEquals((await reader.read()).done, true);
  assertEquals((await cat.status).exitCode, 0);

  const sort = await c.spawn("p-stdin", ["sort", "-n"]);
  const input = Array.from({ length: 20_000 }, (_, i) => `${(i * 7919) % 20_000}\n`).join("");
  const [out] = await Promise.all([
    readAll(sort.stdout),
    new Blob([input]).stream().pipeTo(sort.stdin),
  ]);
  assertEquals(out, Array.from({ length: 20_000 }, (_, i) => `${i}\n`).join(""));
  assertEquals((await sort.status).exitCode, 0);
});

testBoth(
  "SIGINT is delivered to a trapping script; SIGKILL ends a process with its signal",
  async (kind) => {
    await using t = await startFleet(kind, "p-signal");
    const c = t.controller;
    const p = await c.spawn(
      "p-signal",
      "trap 'echo got INT; exit 42' INT; echo ready; while :; do sleep 0.05; done",
    );
    const reader = p.stdout.getReader();
    await readUntil(reader, /ready/);
    await p.kill("SIGINT");
    await readUntil(reader, /got INT/);
    reader.releaseLock();
    assertEquals((await p.status).exitCode, 42);

    const q = await c.spawn("p-signal", ["sleep", "100"]);
    await q.kill("SIGKILL");
    const status = await q.status;
    assertEquals(status.signal, "SIGKILL");
    assertEquals(status.exitCode, 137);
    assertEquals(q.exited, status);
    await assertRejects(() => q.kill("SIGTERM"), ProcessExitedError);
    await assertRejects(
      () => q.stdin.getWriter().write(new Uint8Array(1)),
      ProcessExitedError,
    );
    await assertRejects(() => q.kill("SIGSEGV" as Deno.Signal), SignalNotAllowedError, "SIGSEGV");
    await assertRejects(() => c.attach("p-signal", "p-nope-1"), UnknownProcessError, "p-nope-1");
    await q.stdout.cancel();
    await p.stdout.cancel();
  },
);

testBoth(
  "SIGTERM escalates to SIGKILL after the grace for a process that ignores it",
  async (kind) => {
    await using t = await startFleet(kind, "p-grace", ["--kill-grace", "0.3"]);
    const p = await t.controller.spawn("p-grace", "trap '' TERM; echo ready; sleep 100 & wait");
    const reader = p.stdout.getReader();
    await readUntil(reader, /ready/);
    reader.releaseLock();
    const started = performance.now();
    await p.kill();
    const status = await p.status;
    assertEquals(status.signal, "SIGKILL");
    assertLess(performance.now() - started, 5_000);
    await p.stdout.cancel();
  },
);

function expectedOutput(n: number, lines: number): string {
  let s = "";
  for (let i = 1; i <= lines; i++) s += `proc ${n} line ${i}\n`;
  return s;
}

testBoth(
  "daemon links cut every 300 ms: streaming processes lose no byte and double none",
  async (kind) => {
    await using t = await openController(kind, { server: { reconnectGraceMs: 30_000 } });
    await using proxy = new LinkProxy(t.server.port);
    const daemon = new TestDaemon({ id: "p-cut", url: proxy.url() });
    try {
      await t.controller.waitForDaemon("p-cut");
      const lines = 1500;
      const procs: ProcessHandle[] = [];
      // Twenty on the Server; ten on the Client, whose output streams over HTTP wait out each cut (several times
      // as long in all).
      const count = kind === "server" ? 20 : 10;
      for (let n = 0; n < count; n++) {
        procs.push(
          await t.controller.spawn(
            "p-cut",
            `i=1; while [ $i -le ${lines} ]; do echo "proc ${n} line $i"; [ $((i % 100)) -eq 0 ] && sleep 0.1; i=$((i+1)); done; exit ${n}`,
          ),
        );
      }
      let cutting = true;
      let cuts = 0;
      const cutter = (async () => {
        while (cutting) {
          await new Promise((r) => setTimeout(r, 300));
          if (!cutting) break;
          await proxy.cut();
          cuts++;
        }
      })();
      const results = await Promise.all(procs.map(async (p) => {
        const [out, err] = await Promise.all([readAll(p.stdout), readAll(p.stderr)]);
        return { out, err, status: await p.status, gaps: p.gaps };
      }));
      cutting = false;
      await cutter;
      assert(cuts >= 3, `only ${cuts} cuts happened`);
      results.forEach((r, n) => {
        assertEquals(r.gaps, []);
        assertEquals(r.err, "");
        assertEquals(r.out, expectedOutput(n, lines), `process ${n} output differs`);
        assertEquals(r.status.exitCode, n);
      });
    } finally {
      await daemon.stop();
    }
  },
);

testBoth(
  "a gap is reported when output overflows the retention window while nobody reads",
  async (kind) => {
    await using t = await startFleet(kind, "p-gap");
    const c = t.controller;
    const p = await c.spawn("p-gap", "read x; head -c 300000 /dev/zero; echo; echo tail", {
      retainBytes: 65_536,
    });
    const id = p.id;
    await p.detach();
    // Release the child only after detaching, then wait until it has exited.
    const helper = await c.attach("p-gap", id, { from: null });
    const writer = helper.stdin.getWriter();
    await writer.write(new TextEncoder().encode("go\n"));
    await writer.close();
    await helper.detach();
    let exited = false;
    const deadline = Date.now() + 10_000;
    while (!exited && Date.now() < deadline) {
      exited = (await c.processes("p-gap")).some((x) => x.id === id && x.state === "exited");
      if (!exited) await new Promise((r) => setTimeout(r, 20));
    }
    assert(exited);
    const gaps: Gap[] = [];
    const late = await c.attach("p-gap", id, { from: 0, onGap: (g) => gaps.push(g) });
    const bytes = new Uint8Array(await new Response(late.stdout).arrayBuffer());
    const total = 300_000 + "\ntail\n".length;
    assertEquals(gaps.length, 1);
    assertEquals(gaps[0]!.stream, "stdout");
    assertEquals(gaps[0]!.from, 0);
    assertEquals(gaps[0]!.to, total - 65_536);
    assertEquals(bytes.length, 65_536);
    assert(new TextDecoder().decode(bytes).endsWith("\ntail\n"));
    assertEquals(late.gaps, gaps);
    assertEquals((await late.status).exitCode, 0);
    await late.stderr.cancel();
  },
);

testBoth(
  "attach after exit replays output and learns the exit code; several consumers at once",
  async (kind) => {
    await using t = await startFleet(kind, "p-late");
    const c = t.controller;
    const p = await c.spawn("p-late", "echo one; echo two >&2; exit 5");
    assertEquals((await p.status).exitCode, 5);
    assertEquals(await readAll(p.stdout), "one\n");
    const a = await c.attach("p-late", p.id, { from: 0 });
    const b = await c.attach("p-late", p.id, { from: 2 });
    assertEquals(await readAll(a.stdout), "one\n");
    assertEquals(await readAll(a.stderr), "two\n");
    assertEquals(await readAll(b.stdout), "e\n");
    assertEquals((await a.status).exitCode, 5);
    assertEquals((await b.status).exitCode, 5);
    const listed = (await c.processes("p-late")).find((x) => x.id === p.id);
    assertEquals(listed?.state, "exited");
    assertEquals(listed?.exitCode, 5);
    assert(listed?.startedAt instanceof Date);
    await Promise.all([p.stderr.cancel(), b.stderr.cancel()]);
  },
);

testBoth(
  "a consumer that does not read stops the child (backpressure), then everything arrives",
  async (kind) => {
    await using t = await startFleet(kind, "p-bp", ["--retain-bytes", "1048576"]);
    const p = await t.controller.spawn("p-bp", "head -c 50000000 /dev/zero");
    const io = () => {
      const text = Deno.readTextFileSync(`/proc/${p.pid}/io`);
      return Number(/wchar: (\d+)/.exec(text)![1]);
    };
    // Nothing reads: the child must stall once the windows and buffers are full. There is no event for "nothing
    // happens", so observe for a bounded time.
    let last = -1;
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 50));
      last = io();
    }
    assertLess(last, 4 * 1024 * 1024);
    let total = 0;
    for await (const chunk of p.stdout) total += chunk.length;
    assertEquals(total, 50_000_000);
    assertEquals((await p.status).exitCode, 0);
  },
);

testBoth(
  "small writes are echoed without a delayed-ACK stall (the controller's sockets have Nagle off)",
  async (kind) => {
    // With Nagle's algorithm on the controller's accepted sockets, a small frame queued behind an unacknowledged one
    // waits for the daemon's delayed ACK: about 40 ms per round trip. Without it, a round trip here takes well under
    // a millisecond on an idle machine and a few on a loaded one. The bound sits far from both.
    await using t = await startFleet(kind, "p-nodelay");
    const cat = await t.controller.spawn("p-nodelay", "cat");
    const writer = cat.stdin.getWriter();
    const reader = cat.stdout.getReader();
    const times: number[] = [];
    for (let i = 0; i < 41; i++) {
      const started = performance.now();
      await writer.write(new TextEncoder().encode(`${i % 10}`));
      await readUntil(reader, new RegExp(`${i % 10}`));
      times.push(performance.now() - started);
    }
    times.sort((a, b) => a - b);
    const median = times[Math.floor(times.length / 2)]!;
    assertLess(median, 25, `median round trip ${median.toFixed(1)} ms`);
    await writer.close();
    reader.releaseLock();
    await cat.stdout.cancel();
    await cat.status;
  },
);

// The embedded controller only: the control API holds the processes started through it until they exit, so a
// Client's detach leaves no orphan on the daemon.
Deno.test("server: an orphaned process is killed after the orphan timeout", async () => {
  await using t = await startWorker("p-orphan", ["--orphan-timeout", "0.3"]);
  const p = await t.server.spawn("p-orphan", ["sleep", "100"]);
  const pid = p.pid;
  await p.detach();
  await eventually(() => !alive(pid), 5_000, "orphan to be killed");
  let listed;
  const deadline = Date.now() + 5_000;
  while (
    (listed = (await t.server.processes("p-orphan")).find((x) => x.id === p.id))?.state !==
      "exited"
  ) {
    if (Date.now() > deadline) throw new Error("orphan not reported as exited");
    await new Promise((r) => setTimeout(r, 20));
  }
  assertEquals(listed?.signal, "SIGKILL");
});

// A Server restart: the embedded controller only.
Deno.test("server: a fresh Server attaches to a process started by a previous one", async () => {
  let server = await Server.listen({ port: 0 });
  const port = server.port;
  const daemon = new TestDaemon({ id: "p-fresh", url: server.url });
  try {
    await server.waitForDaemon("p-fresh");
    const p = await server.spawn("p-fresh", "echo before; read line; echo after $line; exit 9");
    const reader = p.stdout.getReader();
    await readUntil(reader, /before/);
    reader.releaseLock();
    const id = p.id;
    await server.close();
    server = await Server.listen({ port });
    await server.waitForDaemon("p-fresh", { timeout: 10_000 });
    const again = await server.attach("p-fresh", id, { from: 0 });
    const writer = again.stdin.getWriter();
    await writer.write(new TextEncoder().encode("x\n"));
    await writer.close();
    assertEquals(await readAll(again.stdout), "before\nafter x\n");
    assertEquals((await again.status).exitCode, 9);
  } finally {
    await daemon.stop();
    await server.close();
  }
});

function zombiesOf(parent: number): number[] {
  const out: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (rest[0] === "Z" && Number(rest[1]) === parent) out.push(Number(entry.name));
    } catch {
      // gone
    }
  }
  return out;
}

// The daemon's reaping, through the embedded controller only (the Client adds nothing to it but HTTP requests).
Deno.test("server: 1,000 spawns with kills and timeouts leave no zombie and no running child", async () => {
  await using t = await startWorker("p-reap", [], { reconnectGraceMs: 1_000 });
  const started = performance.now();
  for (let batch = 0; batch < 20; batch++) {
    await Promise.all(Array.from({ length: 50 }, async (_, i) => {
      switch (i % 3) {
        case 0:
          assertEquals((await t.server.exec("p-reap", ["true"])).exitCode, 0);
          return;
        case 1: {
          const p = await t.server.spawn("p-reap", "sleep 30 & sleep 30", { stdin: false });
          await p.kill("SIGKILL");
          assertEquals((await p.status).signal, "SIGKILL");
          return;
        }
        default:
          await assertRejects(() => t.server.exec("p-reap", "sleep 30", { timeout: 20 }));
      }
    }));
  }
  const running = (await t.server.processes("p-reap")).filter((p) => p.state === "running");
  assertEquals(running, []);
  assertEquals(zombiesOf(t.daemon.pid), []);
  assertLess(performance.now() - started, 120_000);
});

// --- the Client's own HTTP streams, cut between the Client and the controller ---

Deno.test("client: process output resumes from the last byte after the Client's HTTP connection is cut", async () => {
  await using t = await startFleet("client", "p-http", [], { proxy: true });
  const proxy = t.proxy!;
  const lines = 3000;
  const p = await t.controller.spawn(
    "p-http",
    `i=1; while [ $i -le ${lines} ]; do echo "line $i"; echo "err $i" >&2; [ $((i % 200)) -eq 0 ] && sleep 0.1; i=$((i+1)); done; exit 7`,
  );
  let cuts = 0;
  let cutting = true;
  const cutter = (async () => {
    while (cutting) {
      await new Promise((r) => setTimeout(r, 250));
      if (!cutting) break;
      await proxy.cut();
      cuts++;
    }
  })();
  const [out, err, status] = await Promise.all([readAll(p.stdout), readAll(p.stderr), p.status]);
  cutting = false;
  await cutter;
  assert(cuts >= 3, `only ${cuts} cuts happened`);
  let expectedOut = "";
  let expectedErr = "";
  for (let i = 1; i <= lines; i++) {
    expectedOut += `line ${i}\n`;
    expectedErr += `err ${i}\n`;
  }
  assertEquals(out, expectedOut);
  assertEquals(err, expectedErr);
  assertEquals(status.exitCode, 7);
  assertEquals(p.gaps, []);
});

Deno.test("client: a cut while nobody reads resumes past what the daemon dropped, as a gap", async () => {
  await using t = await startFleet("client", "p-http-gap", [], { proxy: true });
  const proxy = t.proxy!;
  const p = await t.controller.spawn("p-http-gap", "echo first; read x; head -c 400000 /dev/zero", {
    retainBytes: 65_536,
  });
  const reader = p.stdout.getReader();
  await readUntil(reader, /first\n/);
  // Cut the Client's stream and keep it away (its new connection goes into a black hole) while the process
  // overflows its retention; then let it through again.
  proxy.stall();
  await proxy.cut();
  const helper = await t.server.attach("p-http-gap", p.id, { from: null });
  const w = helper.stdin.getWriter();
  await w.write(new TextEncoder().encode("go\n"));
  await w.close();
  // A handle that does not read would hold the child back: detach, then wait for the exit.
  await helper.detach();
  const deadline = Date.now() + 10_000;
  while (
    (await t.server.processes("p-http-gap")).some((x) => x.id === p.id && x.state === "running")
  ) {
    assert(Date.now() < deadline, "the process did not exit");
    await new Promise((r) => setTimeout(r, 20));
  }
  proxy.stall(false);
  await proxy.cut();
  let received = 0;
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    received += value.length;
  }
  assertEquals(received, 65_536);
  assertEquals(p.gaps.length, 1);
  assertEquals(p.gaps[0]!.stream, "stdout");
  assertEquals(p.gaps[0]!.from, "first\n".length);
  assertEquals(p.gaps[0]!.to, "first\n".length + 400_000 - 65_536);
  assertEquals((await p.status).exitCode, 0);
});

Deno.test("client: detach stops the streams and the status, the process runs on", async () => {
  await using t = await startFleet("client", "p-detach");
  const c = t.controller;
  const p = await c.spawn("p-detach", "echo $$; sleep 100");
  const reader = p.stdout.getReader();
  const pid = Number((await readUntil(reader, /\d+\n/)).trim());
  await p.detach();
  await assertRejects(() => reader.read(), Error, "Detached");
  await assertRejects(() => p.status, Error, "Detached");
  assert(alive(pid));
  const again = await c.attach("p-detach", p.id);
  await again.kill("SIGKILL");
  assertEquals((await again.status).signal, "SIGKILL");
  await Promise.all([again.stdout.cancel(), again.stderr.cancel()]);
  await assertRejects(() => p.stderr.getReader().read(), Error, "Detached");
});
