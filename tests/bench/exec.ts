// exec of `true` through the controller and a daemon, against a local Deno.Command spawn, interleaved.
import { type BenchContext, localSpawn, type Section } from "./_context.ts";
import { withDaemon } from "./_daemon.ts";
import { quantile, type SectionResult } from "./_stats.ts";

async function run({ checkout, quick }: BenchContext): Promise<SectionResult> {
  const rounds = quick ? 30 : 400;
  const warmup = quick ? 5 : 50;
  return await withDaemon(checkout, "bench-exec", async (server) => {
    const remote: number[] = [];
    const local: number[] = [];
    for (let i = 0; i < warmup; i++) await server.exec("bench-exec", ["true"]);
    for (let i = 0; i < warmup; i++) await localSpawn(["true"]);
    for (let i = 0; i < rounds; i++) {
      // Interleaved, so both see the same machine noise.
      let t = performance.now();
      await server.exec("bench-exec", ["true"]);
      remote.push(performance.now() - t);
      t = performance.now();
      await localSpawn(["true"]);
      local.push(performance.now() - t);
    }
    return {
      figures: [
        {
          id: "exec.p50",
          label: "exec round trip of `true`, p50",
          unit: "ms",
          value: quantile(remote, 0.5),
          baseline: quantile(local, 0.5),
          baselineLabel: "local Deno.Command",
          comparison: "overhead",
          better: "lower",
          goal: "overhead ≤ 0.3 ms",
        },
        {
          id: "exec.p99",
          label: "exec round trip of `true`, p99",
          unit: "ms",
          value: quantile(remote, 0.99),
          baseline: quantile(local, 0.99),
          baselineLabel: "local Deno.Command",
          comparison: "overhead",
          better: "lower",
          goal: "≤ 5 ms",
        },
      ],
      skipped: [],
    };
  });
}

/** exec latency. */
export const exec: Section = {
  name: "exec",
  about: "exec of `true`: p50/p99 round trip against a local Deno.Command spawn",
  run,
};
