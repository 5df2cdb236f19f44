// The control API against the embedded controller, same daemon, same run: exec of `true` (one HTTP request with
// keep-alive against `server.exec`; from a lean HTTP/1.1 client, as curl or Python's http.client would send it,
// and from Deno's fetch, whose own cost is shown by the same GET from both), and a process's output streamed through `GET .../output` against
// `server.spawn` read directly.
//
// The lean client runs in this process, beside the controller. Tried and rejected: the same client in a process of
// its own (as real API users are), driven over a pipe and timing itself. Its GET p50 was 0.24 ms against 0.07 ms in
// process (interleaved, same run; a loaded machine, load 14 on 2 cores): every request then pays two cross-process
// wake-ups, which the embedded baseline never does, so the figure would measure the scheduler more than the API. In
// process the client's own work (its write, read and parse; some tens of µs of CPU a request on that loaded machine)
// runs on the controller's thread, which makes the overhead shown here, if anything, a little high.
import type { BenchContext, Section } from "./_context.ts";
import { withDaemon } from "./_daemon.ts";
import { mibPerSecond, quantile, type SectionResult, shuffle } from "./_stats.ts";
import { LeanHttpClient } from "./_lean_http.ts";

const ID = "bench-api";

async function run({ checkout, quick }: BenchContext): Promise<SectionResult> {
  const rounds = quick ? 30 : 400;
  const warmup = quick ? 5 : 50;
  const size = quick ? 8 * 1024 * 1024 : 256 * 1024 * 1024;
  const sizeLabel = quick ? "8 MiB" : "256 MiB";
  return await withDaemon(checkout, ID, async (server) => {
    const base = `http://127.0.0.1:${server.port}/api/v1`;
    const probe = await fetch(`${base}/openapi.json`);
    await probe.body?.cancel();
    if (probe.status !== 200) {
      return {
        figures: [],
        skipped: [{ id: "api", reason: "this checkout has no control API" }],
      };
    }
    // One client, so every request reuses the same keep-alive connection.
    const client = Deno.createHttpClient({});
    const lean = await LeanHttpClient.connect(server.port);
    // The floor of any HTTP API on Deno's own server: a bare Deno.serve handler around the same server.exec
    // (request.json, server.exec, Response.json; no routing, auth, validation or audit), from its own lean client.
    const bare = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      async (request) => {
        const { command } = await request.json() as { command: string[] };
        const result = await server.exec(ID, command);
        return Response.json({
          stdout: result.stdout,
          stderr: result.stderr,
          exitCode: result.exitCode,
          signal: result.signal,
          durationMs: result.durationMs,
          truncated: result.truncated,
        });
      },
    );
    const leanBare = await LeanHttpClient.connect(bare.addr.port);
    try {
      const body = JSON.stringify({ command: ["true"] });
      const check = (text: string) => {
        const result = JSON.parse(text);
        if (result.exitCode !== 0) throw new Error(`API exec failed: ${text}`);
      };
      const fetchExec = async () => {
        const response = await fetch(`${base}/daemons/${ID}/exec`, {
          method: "POST",
          body,
          headers: { "content-type": "application/json" },
          client,
        });
        check(await response.text());
      };
      // The API's own share of a call, free of the exec's noise: the round trip less the `server.exec` the
      // handler awaited inside it (timed by wrapping this server's method; the embedded runs use it too).
      let inner = 0;
      const exec = server.exec.bind(server);
      server.exec = async (...args: Parameters<typeof server.exec>) => {
        const t = performance.now();
        try {
          return await exec(...args);
        } finally {
          inner = performance.now() - t;
        }
      };
      const share: number[] = [];
      const leanExec = async () => {
        inner = 0;
        const t = performance.now();
        check(await lean.request("POST", `/api/v1/daemons/${ID}/exec`, body));
        share.push(performance.now() - t - inner);
      };
      const bareShare: number[] = [];
      const bareExec = async () => {
        inner = 0;
        const t = performance.now();
        check(await leanBare.request("POST", "/exec", body));
        bareShare.push(performance.now() - t - inner);
      };
      const fetchGet = async () => {
        const response = await fetch(`${base}/daemons/${ID}`, { client });
        await response.text();
      };
      const leanGet = async () => void await lean.request("GET", `/api/v1/daemons/${ID}`);
      const embeddedExec = async () => void await server.exec(ID, ["true"]);
      const runs = { leanExec, fetchExec, embeddedExec, leanGet, fetchGet, bareExec };
      const times: Record<keyof typeof runs, number[]> = {
        bareExec: [],
        leanExec: [],
        fetchExec: [],
        embeddedExec: [],
        leanGet: [],
        fetchGet: [],
      };
      for (const fn of Object.values(runs)) for (let i = 0; i < warmup; i++) await fn();
      for (let i = 0; i < rounds; i++) {
        // Interleaved, so all see the same machine noise, in a new order each round, so none always pays for the
        // work its predecessor leaves behind (acknowledgements, a connection's end of response).
        for (const [name, fn] of shuffle(Object.entries(runs))) {
          const t = performance.now();
          await fn();
          times[name as keyof typeof runs].push(performance.now() - t);
        }
      }
      const api = times.leanExec;
      const embedded = times.embeddedExec;

      // Output throughput, interleaved rounds (medians): the API read by a separate client process (curl, as a
      // real client would be; in-process fetch without curl) against an embedded spawn read in process.
      const argv = ["head", "-c", String(size), "/dev/zero"];
      const curl = await new Deno.Command("curl", { args: ["--version"], stdout: "null" }).output()
        .then((o) => o.success, () => false);
      const embeddedRates: number[] = [];
      const apiRates: number[] = [];
      // Round 0 of each warms the streaming code up and is not counted: the exec rounds before it leave the output
      // path cold (a probe's first API round ran at 547 MiB/s against 621-730 for the seven after it, and medians
      // of three rounds counted from the first ranged 0.56-1.00x across one day's runs).
      for (let round = 0; round < (quick ? 1 : 6); round++) {
        const counted = quick || round > 0;
        let t = performance.now();
        const p = await server.spawn(ID, argv, { stdin: false });
        let n = 0;
        for await (const chunk of p.stdout) n += chunk.length;
        await p.status;
        if (counted) embeddedRates.push(mibPerSecond(n, performance.now() - t));
        if (n !== size) throw new Error(`Embedded stream gave ${n} bytes, expected ${size}`);

        t = performance.now();
        const spawned = await fetch(`${base}/daemons/${ID}/processes`, {
          method: "POST",
          body: JSON.stringify({ command: argv }),
          client,
        });
        const { id } = await spawned.json();
        const url = `${base}/daemons/${ID}/processes/${id}/output`;
        if (curl) {
          const out = await new Deno.Command("curl", {
            args: ["-s", "-o", "/dev/null", "-w", "%{size_download}", url],
            stderr: "null",
          }).output();
          n = Number(new TextDecoder().decode(out.stdout));
        } else {
          const output = await fetch(url, { client });
          n = 0;
          for await (const chunk of output.body!) n += chunk.length;
        }
        if (counted) apiRates.push(mibPerSecond(n, performance.now() - t));
        if (n !== size) throw new Error(`API stream gave ${n} bytes, expected ${size}`);
      }
      const embeddedRate = quantile(embeddedRates, 0.5);
      const apiRate = quantile(apiRates, 0.5);

      return {
        figures: [
          {
            id: "api.exec_p50",
            label: "exec of `true` through the HTTP API (keep-alive, lean client), p50",
            unit: "ms",
            value: quantile(api, 0.5),
            baseline: quantile(embedded, 0.5),
            baselineLabel: "embedded server.exec",
            comparison: "overhead",
            better: "lower",
            goal: "overhead ≤ 0.3 ms",
          },
          {
            id: "api.exec_share_p50",
            label:
              "the HTTP API's own share of an exec (round trip less the inner server.exec), p50",
            unit: "ms",
            value: quantile(share.slice(-rounds), 0.5),
            baseline: 0,
            baselineLabel: "none (embedded)",
            comparison: "overhead",
            better: "lower",
            goal: "informational: the exec_p50 overhead without the exec's own noise",
          },
          {
            id: "api.bare_exec_p50",
            label:
              "floor: exec of `true` through a bare Deno.serve handler (no SandD routing, auth, checks or " +
              "audit), lean client, p50",
            unit: "ms",
            value: quantile(times.bareExec, 0.5),
            baseline: quantile(embedded, 0.5),
            baselineLabel: "embedded server.exec",
            comparison: "overhead",
            better: "lower",
            goal: "informational: what any HTTP API on Deno's server pays here",
          },
          {
            id: "api.bare_share_p50",
            label:
              "floor: that bare handler's share of an exec (round trip less the inner server.exec), p50",
            unit: "ms",
            value: quantile(bareShare.slice(-rounds), 0.5),
            baseline: 0,
            baselineLabel: "none (embedded)",
            comparison: "overhead",
            better: "lower",
            goal: "informational",
          },
          {
            id: "api.exec_fetch_p50",
            label: "exec of `true` through the HTTP API with Deno's `fetch`, p50",
            unit: "ms",
            value: quantile(times.fetchExec, 0.5),
            baseline: quantile(embedded, 0.5),
            baselineLabel: "embedded server.exec",
            comparison: "overhead",
            better: "lower",
            goal: "informational: fetch's own cost is the next row",
          },
          {
            id: "api.get_fetch_p50",
            label: "`GET /api/v1/daemons/{id}` with Deno's `fetch`, p50",
            unit: "ms",
            value: quantile(times.fetchGet, 0.5),
            baseline: quantile(times.leanGet, 0.5),
            baselineLabel: "the same GET from a lean client",
            comparison: "overhead",
            better: "lower",
            goal: "informational",
          },
          {
            id: "api.exec_p99",
            label: "exec of `true` through the HTTP API (keep-alive, lean client), p99",
            unit: "ms",
            value: quantile(api, 0.99),
            baseline: quantile(embedded, 0.99),
            baselineLabel: "embedded server.exec",
            comparison: "overhead",
            better: "lower",
            goal: "informational",
          },
          {
            id: "api.stream_mib_per_second",
            label: `process output (${sizeLabel}) streamed through the HTTP API (${
              curl ? "curl" : "fetch"
            })`,
            unit: "MiB/s",
            value: apiRate,
            baseline: embeddedRate,
            baselineLabel: "embedded spawn, stdout read",
            comparison: "ratio",
            better: "higher",
            goal: "≥ 0.8×",
          },
        ],
        skipped: [],
      };
    } finally {
      client.close();
      lean.close();
      leanBare.close();
      await bare.shutdown();
    }
  }, { listen: { control: true } });
}

/** The control API's overhead. */
export const api: Section = {
  name: "api",
  about: "HTTP control API: exec p50 and streamed output against the embedded controller",
  run,
};
