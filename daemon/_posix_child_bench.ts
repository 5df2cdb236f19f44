// Copyright 2026 the SandD authors. MIT license.
// Spawn-to-exit of `/bin/sh -c true` with piped stdout/stderr: spawnPosixChild against Deno.Command
// (plain, and detached as the daemon used to run it), interleaved in one run so machine drift hits all three.
//
//   deno run -A daemon/_posix_child_bench.ts [rounds=300] [ballastMiB=0]
//
// `ballastMiB` grows this process's RSS first (fork cost grows with it, posix_spawn's does not).

import { holdPosixChildRuntime, spawnPosixChild } from "./_posix_child.ts";

const rounds = Number(Deno.args[0] ?? 300);
const ballastMiB = Number(Deno.args[1] ?? 0);
const ARGV = ["/bin/sh", "-c", "true"];

const ballast: Uint8Array[] = [];
for (let i = 0; i < ballastMiB; i++) ballast.push(new Uint8Array(1 << 20).fill(i & 0xff));

async function drain(read: () => Promise<Uint8Array | null>): Promise<void> {
  while ((await read()) !== null) {
    // discard
  }
}

async function ours(env: Record<string, string>): Promise<number> {
  const start = performance.now();
  const child = spawnPosixChild({ argv: ARGV, env, stdin: false });
  await Promise.all([drain(child.outputs[0]!), drain(child.outputs[1]!), child.status]);
  const elapsed = performance.now() - start;
  await child.dispose?.();
  return elapsed;
}

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

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

using _hold = holdPosixChildRuntime();
const env = Deno.env.toObject();
const results = { ours: [] as number[], plain: [] as number[], detached: [] as number[] };
for (let i = 0; i < 20; i++) {
  await ours(env);
  await command(false, env);
  await command(true, env);
}
const runs: [number[], () => Promise<number>][] = [
  [results.ours, () => ours(env)],
  [results.plain, () => command(false, env)],
  [results.detached, () => command(true, env)],
];
for (let i = 0; i < rounds; i++) {
  // A different order each round, so no variant always follows the same one.
  const order = [...runs].sort(() => Math.random() - 0.5);
  for (const [into, run] of order) into.push(await run());
}
const rss = (Deno.memoryUsage().rss / 2 ** 20).toFixed(0);
console.log(`sh -c true, spawn to exit, ${rounds} rounds each, RSS ${rss} MiB`);
for (const [name, values] of Object.entries(results)) {
  console.log(
    `${name.padEnd(9)} p50 ${median(values).toFixed(3)} ms  p90 ${
      percentile(values, 0.9).toFixed(3)
    } ms`,
  );
}
const overhead = median(results.ours) - median(results.plain);
console.log(
  `overhead over plain Deno.Command: ${overhead.toFixed(3)} ms p50 (ratio ${
    (median(results.ours) / median(results.plain)).toFixed(2)
  }); detached/ours ${(median(results.detached) / median(results.ours)).toFixed(1)}x`,
);
void ballast;
