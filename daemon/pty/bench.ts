// Copyright 2026 the SandD authors. MIT license.
/**
 * Pty benchmark: keystroke echo round trip and bulk output throughput, each next to a baseline
 * measured in the same run (the same program over plain pipes with `Deno.Command`).
 *
 * Run: `deno run --allow-all daemon/pty/bench.ts [--mb 100] [--keys 2000]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Pty } from "./pty.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { mb: { type: "string", default: "100" }, keys: { type: "string", default: "2000" } },
});
const MEGABYTES = Number(values.mb);
const KEYSTROKES = Number(values.keys);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;
}

function summary(samples: number[]): { p50: number; p99: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99) };
}

/** One byte to `cat` in raw mode, await its echo; `count` times. */
async function ptyEcho(count: number): Promise<number[]> {
  await using pty = Pty.spawn({
    command: "sh",
    args: ["-c", "stty raw -echo && echo READY && exec cat"],
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", TERM: "dumb" },
  });
  let seen = "";
  while (!seen.includes("READY")) seen += new TextDecoder().decode((await pty.read())!);
  const key = new Uint8Array([0x61]);
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    await pty.write(key);
    const echo = await pty.read();
    samples.push(performance.now() - start);
    if (echo === null || echo.length !== 1) throw new Error("Unexpected echo");
  }
  return samples;
}

/** Baseline: the same byte through `cat` over two pipes. */
async function pipeEcho(count: number): Promise<number[]> {
  const child = new Deno.Command("cat", { stdin: "piped", stdout: "piped" }).spawn();
  const writer = child.stdin.getWriter();
  const reader = child.stdout.getReader();
  const key = new Uint8Array([0x61]);
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    await writer.write(key);
    const { value } = await reader.read();
    samples.push(performance.now() - start);
    if (value?.length !== 1) throw new Error("Unexpected echo");
  }
  await writer.close();
  reader.releaseLock();
  await child.stdout.cancel();
  await child.status;
  return samples;
}

async function ptyCat(file: string): Promise<number> {
  await using pty = Pty.spawn({
    command: "sh",
    args: ["-c", 'stty raw -echo && exec cat "$0"', file],
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
  });
  let bytes = 0;
  for (let chunk = await pty.read(); chunk !== null; chunk = await pty.read()) {
    bytes += chunk.length;
  }
  return bytes;
}

async function pipeCat(file: string): Promise<number> {
  const child = new Deno.Command("cat", { args: [file], stdout: "piped" }).spawn();
  let bytes = 0;
  for await (const chunk of child.stdout) bytes += chunk.length;
  await child.status;
  return bytes;
}

async function timed(run: () => Promise<number>): Promise<{ bytes: number; ms: number }> {
  const start = performance.now();
  const bytes = await run();
  return { bytes, ms: performance.now() - start };
}

const format = (n: number) => n.toFixed(3);

await ptyEcho(50); // warm up
await pipeEcho(50);
const ptyKeys = summary(await ptyEcho(KEYSTROKES));
const pipeKeys = summary(await pipeEcho(KEYSTROKES));
console.log(`keystroke echo round trip over ${KEYSTROKES} keys (ms):`);
console.log(`  pty  p50 ${format(ptyKeys.p50)}  p99 ${format(ptyKeys.p99)}`);
console.log(`  pipe p50 ${format(pipeKeys.p50)}  p99 ${format(pipeKeys.p99)}  (baseline)`);
console.log(`  ratio p50 ${(ptyKeys.p50 / pipeKeys.p50).toFixed(2)}x`);

const file = await Deno.makeTempFile({ prefix: "pty_bench_" });
try {
  const block = new Uint8Array(1024 * 1024);
  crypto.getRandomValues(block.subarray(0, 65536));
  for (let i = 65536; i < block.length; i++) block[i] = block[i % 65536] ?? 0;
  using handle = await Deno.open(file, { write: true });
  for (let i = 0; i < MEGABYTES; i++) await handle.write(block);
  const ptyRun = await timed(() => ptyCat(file));
  const pipeRun = await timed(() => pipeCat(file));
  const expected = MEGABYTES * block.length;
  if (ptyRun.bytes !== expected || pipeRun.bytes !== expected) {
    throw new Error(`Byte count mismatch: pty ${ptyRun.bytes}, pipe ${pipeRun.bytes}`);
  }
  const rate = (run: { bytes: number; ms: number }) => run.bytes / 1e6 / (run.ms / 1000);
  console.log(`cat of ${MEGABYTES} MB (raw mode), MB/s:`);
  console.log(`  pty  ${rate(ptyRun).toFixed(0)} MB/s (${ptyRun.ms.toFixed(0)} ms)`);
  console.log(`  pipe ${rate(pipeRun).toFixed(0)} MB/s (${pipeRun.ms.toFixed(0)} ms)  (baseline)`);
  console.log(`  ratio ${(rate(ptyRun) / rate(pipeRun)).toFixed(2)}x`);
} finally {
  await Deno.remove(file);
}
