// GET /metrics: counters moved by real work on a real daemon, the text checked by promtool, scraped by a real
// Prometheus server, and the token.
import {
  assert,
  assertEquals,
  assertGreaterOrEqual,
  assertRejects,
  assertStringIncludes,
} from "./_assert.ts";
import { PolicyError, RateLimitedError, Server } from "../mod.ts";
import { startWorker, TestDaemon } from "./_daemon.ts";
import { LinkProxy } from "./_proxy.ts";

/** Samples of a scrape by series (`name{labels}` as rendered), and the text. */
async function scrape(
  server: Server,
  headers: HeadersInit = {},
): Promise<{ text: string; get(series: string): number }> {
  const response = await fetch(`http://127.0.0.1:${server.port}/metrics`, { headers });
  assertEquals(response.status, 200, "scrape status");
  assertStringIncludes(response.headers.get("content-type") ?? "", "text/plain; version=0.0.4");
  const text = await response.text();
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return { text, get: (series) => samples.get(series) ?? 0 };
}

function which(program: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    try {
      const path = `${dir}/${program}`;
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not here
    }
  }
  return null;
}

Deno.test("metrics: exec, spawn, shell, files and a reconnect move their counters", async () => {
  const server = await Server.listen({
    port: 0,
    reconnectGraceMs: 5_000,
    metrics: { labels: ["pool"] },
  });
  const proxy = new LinkProxy(server.port);
  const daemon = new TestDaemon({
    id: "m1",
    url: proxy.url(),
    args: ["--label", "pool=blue", "--deny", "forbidden*"],
  });
  const dir = await Deno.makeTempDir({ prefix: "sandd-metrics-" });
  try {
    await server.waitForDaemon("m1", { timeout: 20_000 });
    let m = await scrape(server);
    assertEquals(m.get('sandd_daemons{platform="linux"}'), 1);
    assertEquals(m.get('sandd_daemons_by_label{label="pool",value="blue"}'), 1);
    assertEquals(m.get("sandd_daemon_connects_total"), 1);
    assertEquals(m.get("sandd_daemon_reconnects_total"), 0);
    assertEquals(m.get('sandd_requests_total{op="spawn",outcome="ok"}'), 0);

    // exec with stdin: one spawn, its output and input counted.
    const r = await server.exec("m1", "cat; printf ab >&2", { stdin: "hello" });
    assertEquals(r.stdout, "hello");
    m = await scrape(server);
    assertEquals(m.get('sandd_requests_total{op="spawn",outcome="ok"}'), 1);
    assertEquals(m.get("sandd_exec_duration_seconds_count"), 1);
    assertEquals(m.get('sandd_exec_duration_seconds_bucket{le="+Inf"}'), 1);
    assertEquals(m.get('sandd_request_duration_seconds_count{op="spawn"}'), 1);
    assertEquals(m.get('sandd_stream_bytes_total{direction="received",kind="process_output"}'), 7);
    assertEquals(m.get('sandd_stream_bytes_total{direction="sent",kind="stdin"}'), 5);
    assertEquals(m.get('sandd_processes_started_total{kind="process"}'), 1);
    assertEquals(m.get('sandd_processes_running{kind="process"}'), 0);
    assertEquals(m.get("sandd_requests_in_flight"), 0);

    // A refusal by the daemon's policy.
    await assertRejects(() => server.exec("m1", ["forbidden-thing"]), PolicyError);
    m = await scrape(server);
    assertEquals(m.get("sandd_policy_refusals_total"), 1);
    assertEquals(m.get('sandd_requests_total{op="spawn",outcome="error"}'), 1);

    // A running process is counted until it ends.
    const p = await server.spawn("m1", ["sleep", "30"]);
    m = await scrape(server);
    assertEquals(m.get('sandd_processes_running{kind="process"}'), 1);
    await p.kill("SIGKILL");
    await p.status;
    m = await scrape(server);
    assertEquals(m.get('sandd_processes_running{kind="process"}'), 0);
    assertEquals(m.get('sandd_requests_total{op="signal",outcome="ok"}'), 1);

    // A shell: terminal bytes both ways.
    {
      await using sh = await server.shell("m1", { command: ["cat"], cols: 80, rows: 24 });
      m = await scrape(server);
      assertEquals(m.get('sandd_processes_running{kind="shell"}'), 1);
      await sh.write("xyz\r");
      const reader = sh.output.getReader();
      let seen = "";
      while (!seen.includes("xyz")) seen += new TextDecoder().decode((await reader.read()).value);
      reader.releaseLock();
      await sh.kill("SIGKILL");
      await sh.exited;
    }
    m = await scrape(server);
    assertEquals(m.get('sandd_processes_started_total{kind="shell"}'), 1);
    assertEquals(m.get('sandd_processes_running{kind="shell"}'), 0);
    assertEquals(m.get('sandd_stream_bytes_total{direction="sent",kind="terminal"}'), 4);
    assertGreaterOrEqual(
      m.get('sandd_stream_bytes_total{direction="received",kind="terminal"}'),
      3,
    );

    // Files both ways.
    const bytes = new Uint8Array(300_000).map((_, i) => i % 251);
    await server.upload("m1", `${dir}/f.bin`, bytes);
    const back = await server.download("m1", `${dir}/f.bin`);
    assertEquals(back.length, bytes.length);
    m = await scrape(server);
    assertEquals(m.get('sandd_stream_bytes_total{direction="sent",kind="file"}'), 300_000);
    assertEquals(m.get('sandd_stream_bytes_total{direction="received",kind="file"}'), 300_000);
    assertEquals(m.get('sandd_requests_total{op="upload",outcome="ok"}'), 1);
    assertEquals(m.get('sandd_requests_total{op="download",outcome="ok"}'), 1);

    // The link drops; the same daemon comes back: a disconnect and a reconnect.
    const back2 = new Promise<void>((resolve) =>
      server.addEventListener("connect", () => resolve(), { once: true })
    );
    await proxy.cut();
    await back2;
    m = await scrape(server);
    assertEquals(m.get("sandd_daemon_disconnects_total"), 1);
    assertEquals(m.get("sandd_daemon_connects_total"), 2);
    assertEquals(m.get("sandd_daemon_reconnects_total"), 1);
    assertEquals(m.get('sandd_daemons{platform="linux"}'), 1);
    assertEquals(m.get('sandd_daemons_by_label{label="pool",value="blue"}'), 1);
    assertGreaterOrEqual(m.get("sandd_process_resident_memory_bytes"), 1_000_000);
    assertEquals(m.get('sandd_auth_failures_total{endpoint="daemon"}'), 0);
  } finally {
    await daemon.stop();
    await server.close();
    await proxy.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("metrics: stream gaps and credit stalls are counted", async () => {
  await using w = await startWorker("m5", [], { metrics: true });
  const server = w.server;
  // More stdin than one flow-control window (1 MiB): the writer waits for the daemon's credit.
  const r = await server.exec("m5", "wc -c", { stdin: new Uint8Array(3 * 1024 * 1024) });
  assertEquals(r.stdout.trim(), String(3 * 1024 * 1024));
  let m = await scrape(server);
  assertGreaterOrEqual(m.get('sandd_stream_credit_stalls_total{kind="stdin"}'), 1);
  assertEquals(m.get("sandd_stream_gaps_total"), 0);
  // Output nobody reads overflows the daemon's retention: re-attaching from 0 finds a gap.
  const p = await server.spawn("m5", ["head", "-c", "300000", "/dev/zero"], {
    retainBytes: 65536,
    stdin: false,
  });
  await p.detach();
  const deadline = Date.now() + 20_000;
  while ((await server.processes("m5")).find((x) => x.id === p.id)?.state !== "exited") {
    assert(Date.now() < deadline, "the process did not exit");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const again = await server.attach("m5", p.id, { from: 0, stdin: false });
  let n = 0;
  for await (const chunk of again.stdout) n += chunk.length;
  for await (const _ of again.stderr) { /* drain */ }
  await again.status;
  m = await scrape(server);
  assertEquals(m.get("sandd_stream_gaps_total"), 1);
  assertEquals(m.get("sandd_stream_gap_bytes_total"), 300_000 - n);
  assertGreaterOrEqual(300_000 - n, 300_000 - 65536);
});

Deno.test("metrics: a token protects the endpoint; auth failures and rate limits are counted", async () => {
  await using w = await startWorker("m2", ["--token", "daemon-secret"], {
    token: "daemon-secret",
    metrics: { token: "scrape-secret" },
    rateLimit: { perDaemon: { rate: 0.001, burst: 1 } },
  });
  const url = `http://127.0.0.1:${w.server.port}/metrics`;
  const none = await fetch(url);
  assertEquals(none.status, 401);
  await none.body?.cancel();
  const wrong = await fetch(url, { headers: { authorization: "Bearer nope" } });
  assertEquals(wrong.status, 401);
  await wrong.body?.cancel();
  // A daemon credential that is wrong.
  const bad = await fetch(`http://127.0.0.1:${w.server.port}/ws`, {
    headers: { authorization: "Bearer wrong-daemon-token" },
  });
  assertEquals(bad.status, 401);
  await bad.body?.cancel();
  await w.server.exec("m2", ["true"]);
  await assertRejects(() => w.server.exec("m2", ["true"]), RateLimitedError);
  const m = await scrape(w.server, { authorization: "Bearer scrape-secret" });
  assertEquals(m.get('sandd_auth_failures_total{endpoint="metrics"}'), 2);
  assertEquals(m.get('sandd_auth_failures_total{endpoint="daemon"}'), 1);
  assertEquals(m.get('sandd_rate_limited_total{limit="commands"}'), 1);
  assertEquals(m.get('sandd_requests_total{op="spawn",outcome="ok"}'), 1);
});

Deno.test("metrics: with control API client tokens, a read-scoped client token may scrape", async () => {
  const reader = "metrics-reader-token-0123456789";
  const executor = "metrics-exec-only-token-0123456789";
  await using server = await Server.listen({
    hostname: "0.0.0.0",
    port: 0,
    metrics: true,
    control: {
      tokens: [{ token: reader, scopes: ["read"] }, { token: executor, scopes: ["exec"] }],
    },
  });
  const url = `http://127.0.0.1:${server.port}/metrics`;
  for (
    const [headers, status] of [[{}, 401], [{ authorization: `Bearer ${executor}` }, 401]] as const
  ) {
    const response = await fetch(url, { headers });
    assertEquals(response.status, status);
    await response.body?.cancel();
  }
  // A wrong client token on the control API counts as an API authentication failure.
  const refused = await fetch(`http://127.0.0.1:${server.port}/api/v1/daemons`, {
    headers: { authorization: "Bearer not-a-client-token-0123456789" },
  });
  assertEquals(refused.status, 401);
  await refused.body?.cancel();
  const m = await scrape(server, { authorization: `Bearer ${reader}` });
  assertEquals(m.get('sandd_auth_failures_total{endpoint="metrics"}'), 2);
  assertEquals(m.get('sandd_auth_failures_total{endpoint="api"}'), 1);
});

Deno.test("metrics: not served unless asked for; open metrics need loopback or insecure", async () => {
  {
    await using server = await Server.listen({ port: 0 });
    const response = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    assertEquals(response.status, 404);
    await response.body?.cancel();
  }
  await assertRejects(
    () => Server.listen({ hostname: "0.0.0.0", port: 0, metrics: true }),
    TypeError,
    "non-loopback",
  );
  await assertRejects(
    () => Server.listen({ port: 0, metrics: { token: "has space" } }),
    TypeError,
    "metrics.token",
  );
  await assertRejects(
    () => Server.listen({ port: 0, metrics: { labels: "pool" as unknown as string[] } }),
    TypeError,
    "metrics.labels",
  );
  await using open = await Server.listen({
    hostname: "0.0.0.0",
    port: 0,
    metrics: { insecure: true },
  });
  const m = await scrape(open);
  assertStringIncludes(m.text, "# TYPE sandd_daemon_connects_total counter");
});

Deno.test("metrics: promtool accepts the output of a busy controller", async () => {
  const promtool = which("promtool");
  if (!promtool) {
    console.log("skipped: promtool is not installed (Debian package prometheus)");
    return;
  }
  await using w = await startWorker("m3", ["--label", 'zone=a\\b"c'], {
    metrics: { labels: ["zone", "missing"] },
  });
  await w.server.exec("m3", "echo hi");
  const dir = await Deno.makeTempDir();
  try {
    await w.server.upload("m3", `${dir}/x`, new Uint8Array(10));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const m = await scrape(w.server);
  assertStringIncludes(m.text, 'sandd_daemons_by_label{label="zone",value="a\\\\b\\"c"} 1');
  const child = new Deno.Command(promtool, {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(m.text));
  await writer.close();
  const out = await child.output();
  const report = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, `promtool check metrics failed:\n${report}`);
  assertEquals(report.trim(), "", `promtool reported:\n${report}`);
});

Deno.test("metrics: a real Prometheus server scrapes sandd_daemons", async () => {
  const prometheus = which("prometheus");
  if (!prometheus) {
    console.log("skipped: prometheus is not installed (Debian package prometheus)");
    return;
  }
  await using w = await startWorker("m4", [], { metrics: { token: "prom-secret" } });
  const dir = await Deno.makeTempDir({ prefix: "sandd-prometheus-" });
  // Prometheus cannot listen on port 0: take a free port and hand it over.
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  await Deno.writeTextFile(
    `${dir}/prometheus.yml`,
    [
      "global:",
      "  scrape_interval: 1s",
      "scrape_configs:",
      "  - job_name: sandd",
      "    authorization:",
      "      credentials: prom-secret",
      "    static_configs:",
      `      - targets: ["127.0.0.1:${w.server.port}"]`,
      "",
    ].join("\n"),
  );
  const child = new Deno.Command(prometheus, {
    args: [
      `--config.file=${dir}/prometheus.yml`,
      `--storage.tsdb.path=${dir}/data`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const log = new Response(child.stderr).text();
  try {
    let value: string | undefined;
    const deadline = Date.now() + 60_000;
    while (value === undefined) {
      assert(Date.now() < deadline, "Prometheus did not report sandd_daemons within 60 s");
      try {
        const response = await fetch(
          `http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent("sandd_daemons")}`,
        );
        // 503 while Prometheus is still starting (its storage not ready): ask again.
        const body = response.status === 200
          ? await response.json()
          : await response.body?.cancel();
        const result = body?.data?.result?.[0];
        if (result) {
          assertEquals(result.metric.platform, "linux");
          assertEquals(result.metric.job, "sandd");
          value = result.value[1];
        }
      } catch (error) {
        if (!(error instanceof TypeError)) throw error; // not listening yet
      }
      if (value === undefined) await new Promise((r) => setTimeout(r, 250));
    }
    assertEquals(value, "1");
    const up = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=up`).then((r) => r.json());
    assertEquals(up.data.result[0].value[1], "1", "the scrape target is up");
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await log;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("metrics: the bench section reports its figures beside their baselines", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./bench/main.ts", import.meta.url).pathname,
      "--quick",
      "--json",
      "--only",
      "metrics",
    ],
    env: { BENCH_SOCKETS: "50" },
    stdin: "null",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, stderr);
  const report = JSON.parse(new TextDecoder().decode(out.stdout));
  const ids = report.figures.map((f: { id: string }) => f.id).sort();
  assertEquals(ids, ["metrics.exec_p50", "metrics.scrape_max", "metrics.scrape_p50"]);
  for (const figure of report.figures) {
    assert(figure.value > 0 && figure.baseline > 0, `${figure.id}: ${JSON.stringify(figure)}`);
  }
});
