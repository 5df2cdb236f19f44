// exec/s with many daemons and as many execs in flight, against local spawns at the same concurrency.
import { type BenchContext, localSpawn, type Section } from "./_context.ts";
import { BenchDaemon } from "./_daemon.ts";
import type { SectionResult } from "./_stats.ts";

async function run({ checkout, quick, log }: BenchContext): Promise<SectionResult> {
  const count = Number(Deno.env.get("BENCH_DAEMONS") ?? (quick ? 3 : 100));
  const seconds = quick ? 1 : 5;
  const server = await checkout.mod.Server.listen({ port: 0 });
  const daemons = Array.from(
    { length: count },
    (_, i) => new BenchDaemon(checkout, { id: `tp-${i}`, url: server.url }),
  );
  try {
    for (let i = 0; i < count; i++) await server.waitForDaemon(`tp-${i}`, { timeout: 120_000 });
    log(`throughput: ${count} daemons connected`);
    const runFor = async (one: (i: number) => Promise<void>) => {
      let done = 0;
      const end = performance.now() + seconds * 1000;
      await Promise.all(Array.from({ length: count }, async (_, i) => {
        while (performance.now() < end) {
          await one(i);
          done++;
        }
      }));
      return done / seconds;
    };
    const remoteOne = (i: number) => server.exec(`tp-${i}`, ["true"]).then(() => {});
    await runFor(remoteOne); // warm up
    const remote = await runFor(remoteOne);
    const local = await runFor(() => localSpawn(["true"]));
    return {
      figures: [{
        id: "throughput.exec_per_second",
        label: `exec throughput, ${count} daemons, ${count} in flight`,
        unit: "/s",
        value: remote,
        baseline: local,
        baselineLabel: "local spawn, same concurrency",
        comparison: "ratio",
        better: "higher",
        goal: "≥ 0.8×",
      }],
      skipped: [],
    };
  } finally {
    await Promise.all(daemons.map((d) => d.stop()));
    await server.close();
  }
}

/** exec throughput. */
export const throughput: Section = {
  name: "throughput",
  about: "exec/s with many daemons (BENCH_DAEMONS, default 100) against local spawns",
  run,
};
