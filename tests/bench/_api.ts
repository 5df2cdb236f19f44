// The control API against the embedded controller, same daemon, same run: exec of `true` (one HTTP request with
// keep-alive against `server.exec`), and a process's output streamed through `GET .../output` against
// `server.spawn` read directly.
import type { BenchContext, Section } from "./_context.ts";
import { withDaemon } from "./_daemon.ts";
import { mibPerSecond, quantile, type SectionResult } from "./_stats.ts";

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
    try {
      const body = JSON.stringify({ command: ["true"] });
      const apiExec = async () => {
        const response = await fetch(`${base}/daemons/${ID}/exec`, {
          method: "POST",
          body,
          headers: { "content-type": "application/json" },
          client,
        });
        const result = await response.json();
        if (result.exitCode !== 0) throw new Error(`API exec failed: ${JSON.stringify(result)}`);
      };
      for (let i = 0; i < warmup; i++) await apiExec();
      for (let i = 0; i < warmup; i++) await server.exec(ID, ["true"]);
      const api: number[] = [];
      const embedded: number[] = [];
      for (let i = 0; i < rounds; i++) {
        // Interleaved, so both see the same machine noise.
        let t = performance.now();
        await apiExec();
        api.push(performance.now() - t);
        t = performance.now();
        await server.exec(ID, ["true"]);
        embedded.push(performance.now() - t);
      }

      // Output throughput, interleaved rounds (medians): the API read by a separate client process (curl, as a
      // real client would be; in-process fetch without curl) against an embedded spawn read in process.
      const argv = ["head", "-c", String(size), "/dev/zero"];
      const curl = await new Deno.Command("curl", { args: ["--version"], stdout: "null" }).output()
        .then((o) => o.success, () => false);
      const embeddedRates: number[] = [];
      const apiRates: number[] = [];
      for (let round = 0; round < (quick ? 1 : 3); round++) {
        let t = performance.now();
        const p = await server.spawn(ID, argv, { stdin: false });
        let n = 0;
        for await (const chunk of p.stdout) n += chunk.length;
        await p.status;
        embeddedRates.push(mibPerSecond(n, performance.now() - t));
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
        apiRates.push(mibPerSecond(n, performance.now() - t));
        if (n !== size) throw new Error(`API stream gave ${n} bytes, expected ${size}`);
      }
      const embeddedRate = quantile(embeddedRates, 0.5);
      const apiRate = quantile(apiRates, 0.5);

      return {
        figures: [
          {
            id: "api.exec_p50",
            label: "exec of `true` through the HTTP API (keep-alive), p50",
            unit: "ms",
            value: quantile(api, 0.5),
            baseline: quantile(embedded, 0.5),
            baselineLabel: "embedded server.exec",
            comparison: "overhead",
            better: "lower",
            goal: "overhead ≤ 0.3 ms",
          },
          {
            id: "api.exec_p99",
            label: "exec of `true` through the HTTP API (keep-alive), p99",
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
    }
  }, { listen: { control: true } });
}

/** The control API's overhead. */
export const api: Section = {
  name: "api",
  about: "HTTP control API: exec p50 and streamed output against the embedded controller",
  run,
};
