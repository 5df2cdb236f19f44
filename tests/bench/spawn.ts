// The daemon's spawn primitive (spawnPosixChild, taken from the checkout's internals) against Deno.Command,
// plain and detached (as the daemon used to run children), spawn to exit of `/bin/sh -c true` with piped
// stdout/stderr, interleaved in a new random order each round so machine drift hits all three alike.
import type { BenchContext, Section } from "./_context.ts";
import { quantile, type SectionResult } from "./_stats.ts";

const ARGV = ["/bin/sh", "-c", "true"];

async function command(detached: boolean, env: Record<string, string>): Promise<number> {
  const start = performance.now();
  const child = new Deno.Command(ARGV[0]!, {
    args: ARGV.slice(1),
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    detached,
  }).spawn();
  await Promise.all([
    child.stdout.pipeTo(new WritableStream()),
    child.stderr.pipeTo(new WritableStream()),
    child.status,
  ]);
  return performance.now() - start;
}

async function run({ checkout, quick }: BenchContext): Promise<SectionResult> {
  if (Deno.build.os === "windows") {
    return { figures: [], skipped: [{ id: "spawn", reason: "POSIX spawn primitive only" }] };
  }
  const daemonSpawn = await checkout.loadDaemonSpawn();
  const rounds = quick ? 20 : 300;
  const env = Deno.env.toObject();
  using _hold = daemonSpawn.hold();
  const ours: number[] = [], plain: number[] = [], detached: number[] = [];
  const variants: [number[], () => Promise<number>][] = [
    [ours, () => daemonSpawn.run(ARGV, env)],
    [plain, () => command(false, env)],
    [detached, () => command(true, env)],
  ];
  for (let i = 0; i < (quick ? 3 : 20); i++) {
    for (const [, once] of variants) await once();
  }
  for (let i = 0; i < rounds; i++) {
    const order = [...variants].sort(() => Math.random() - 0.5);
    for (const [into, once] of order) into.push(await once());
  }
  const figure = (q: number, baseline: number[], baselineLabel: string) => ({
    label: `daemon spawn primitive, \`sh -c true\` spawn to exit, p${
      q * 100
    }, against ${baselineLabel}`,
    unit: "ms" as const,
    value: quantile(ours, q),
    baseline: quantile(baseline, q),
    baselineLabel,
    better: "lower" as const,
  });
  return {
    figures: [
      {
        id: "spawn.p50",
        ...figure(0.5, plain, "Deno.Command"),
        comparison: "overhead",
        goal: "≤ Deno.Command",
      },
      {
        id: "spawn.p90",
        ...figure(0.9, plain, "Deno.Command"),
        comparison: "overhead",
        goal: "≤ Deno.Command",
      },
      {
        id: "spawn.detached_p50",
        ...figure(0.5, detached, "detached Deno.Command"),
        comparison: "ratio",
        goal: "< 1×",
      },
    ],
    skipped: [],
  };
}

/** The in-daemon spawn primitive. */
export const spawn: Section = {
  name: "spawn",
  about: "the daemon's spawn primitive against Deno.Command, plain and detached (daemon internals)",
  run,
};
