// Terminals: keystroke echo round trip through `cat` on a raw-mode terminal, and bulk `cat` of a file, through a
// remote shell, against the daemon's own local Pty (from the checkout's internals) and against plain pipes, all in
// the same run; with the peak RSS of the controller and the daemon during the bulk output.
//
// Both are measured in interleaved rounds (remote, local pty, pipes; the order turns each round), so that a change
// in the machine's load during the run falls on every side alike: the echo samples are pooled across rounds, the
// bulk rates are the median of the rounds. Beside the rates, the CPU time the daemon and the controller spend per
// MiB of the remote `cat`, against the local pty reader's (medians of the rounds): a figure that holds on a busy
// machine, where the rates do not.
import type { BenchContext, Section } from "./_context.ts";
import { withDaemon } from "./_daemon.ts";
import {
  type Figure,
  mibPerSecond,
  peakOf,
  quantile,
  resetPeak,
  type SectionResult,
  toMiB,
} from "./_stats.ts";
import { threadsCpuMs } from "./_cpu.ts";

type Read = () => Promise<Uint8Array | null>;
type Write = (bytes: Uint8Array) => Promise<void>;

const ENV = { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", TERM: "dumb" };
const ECHO = ["sh", "-c", "stty raw -echo && echo READY && exec cat"];

/** `keys` times: type one byte, await its echo. Waits for READY first when `ready` is set. */
async function echo(write: Write, read: Read, keys: number, ready: boolean): Promise<number[]> {
  let seen = "";
  const decoder = new TextDecoder();
  while (ready && !seen.includes("READY")) {
    const chunk = await read();
    if (!chunk) throw new Error("Ended before READY");
    seen += decoder.decode(chunk, { stream: true });
  }
  const key = new Uint8Array([0x61]);
  const samples: number[] = [];
  for (let i = 0; i < keys; i++) {
    const start = performance.now();
    await write(key);
    let got = 0;
    while (got < 1) {
      const chunk = await read();
      if (!chunk) throw new Error("Ended during echo");
      got += chunk.length;
    }
    samples.push(performance.now() - start);
  }
  return samples;
}

/** MiB/s of reading to the end; checks the byte count. */
async function drain(read: Read, expected: number): Promise<number> {
  const start = performance.now();
  let total = 0;
  for (let chunk = await read(); chunk !== null; chunk = await read()) total += chunk.length;
  const elapsed = performance.now() - start;
  if (total !== expected) throw new Error(`Expected ${expected} bytes, got ${total}`);
  return mibPerSecond(expected, elapsed);
}

/** `items` turned left by `round` places: each round starts with another side. */
function rotate<T>(items: readonly T[], round: number): T[] {
  const at = round % items.length;
  return [...items.slice(at), ...items.slice(0, at)];
}

function readerOf(stream: ReadableStream<Uint8Array>): { read: Read; release: () => void } {
  const reader = stream.getReader();
  return {
    read: async () => {
      const { value, done } = await reader.read();
      return done ? null : value;
    },
    release: () => reader.releaseLock(),
  };
}

async function pipeEcho(keys: number): Promise<number[]> {
  const child = new Deno.Command("cat", { stdin: "piped", stdout: "piped" }).spawn();
  const writer = child.stdin.getWriter();
  const out = readerOf(child.stdout);
  const samples = await echo((b) => writer.write(b), out.read, keys, false);
  await writer.close();
  out.release();
  await child.stdout.cancel();
  await child.status;
  return samples;
}

async function pipeCat(file: string, bytes: number): Promise<number> {
  const child = new Deno.Command("cat", { args: [file], stdout: "piped" }).spawn();
  const out = readerOf(child.stdout);
  const rate = await drain(out.read, bytes);
  out.release();
  await child.status;
  return rate;
}

async function run({ checkout, quick }: BenchContext): Promise<SectionResult> {
  const spawnPty = await checkout.loadPty();
  const megabytes = quick ? 2 : 100;
  const keys = quick ? 50 : 2000;
  const rounds = quick ? 1 : 5;
  const warmup = quick ? 5 : 50;
  const bytes = megabytes * 1024 * 1024;
  const file = await Deno.makeTempFile({ prefix: "sandd_bench_pty_" });
  try {
    {
      const block = new Uint8Array(1024 * 1024).map((_, i) => (i * 7) % 256);
      using f = await Deno.open(file, { write: true });
      for (let i = 0; i < megabytes; i++) {
        for (let at = 0; at < block.length;) at += await f.write(block.subarray(at));
      }
    }
    const cat = ["sh", "-c", `stty raw -echo && exec cat '${file}'`];
    const localPty = (argv: string[]) =>
      spawnPty({ command: argv[0]!, args: argv.slice(1), env: ENV });
    return await withDaemon(checkout, "bench-pty", async (server, daemon) => {
      // Echo: remote shell, local pty, pipes.
      const remoteEcho = async (count: number) => {
        const sh = await server.shell("bench-pty", { command: ECHO, env: ENV });
        const out = readerOf(sh.output);
        const samples = await echo((b) => sh.write(b), out.read, count, true);
        out.release();
        await sh.close();
        return samples;
      };
      const localEcho = async (count: number) => {
        await using pty = localPty(ECHO);
        return await echo((b) => pty.write(b), () => pty.read(), count, true);
      };
      await remoteEcho(warmup);
      await localEcho(warmup);
      await pipeEcho(warmup);
      const remote: number[] = [];
      const local: number[] = [];
      const pipe: number[] = [];
      const echoRounds: [number[], (count: number) => Promise<number[]>][] = [
        [remote, remoteEcho],
        [local, localEcho],
        [pipe, pipeEcho],
      ];
      for (let round = 0; round < rounds; round++) {
        for (const [samples, measure] of rotate(echoRounds, round)) {
          samples.push(...await measure(Math.ceil(keys / rounds)));
        }
      }

      // Bulk output: remote shell (with peak RSS), local pty, pipe.
      // Peak RSS over the first remote round (the first of all), as one remote `cat` moves the bytes.
      const start = { controller: resetPeak("self"), daemon: resetPeak(daemon.pid) };
      let peak: { controller: number; daemon: number } | undefined;
      // CPU ms per MiB of each round: the daemon's and the controller's (remote), the local reader's.
      const cpu = { daemon: [] as number[], controller: [] as number[], local: [] as number[] };
      const remoteCat = async () => {
        const before = { daemon: threadsCpuMs(daemon.pid), controller: threadsCpuMs("self") };
        const sh = await server.shell("bench-pty", { command: cat, env: ENV });
        const out = readerOf(sh.output);
        const rate = await drain(out.read, bytes);
        out.release();
        await sh.exited;
        cpu.daemon.push((threadsCpuMs(daemon.pid) - before.daemon) / megabytes);
        cpu.controller.push((threadsCpuMs("self") - before.controller) / megabytes);
        peak ??= { controller: peakOf("self"), daemon: peakOf(daemon.pid) };
        return rate;
      };
      const localCat = async () => {
        const before = threadsCpuMs("self");
        const rate = await (async () => {
          await using pty = localPty(cat);
          return await drain(() => pty.read(), bytes);
        })();
        cpu.local.push((threadsCpuMs("self") - before) / megabytes);
        return rate;
      };
      const rates = { remote: [] as number[], local: [] as number[], pipe: [] as number[] };
      const catRounds: [number[], () => Promise<number>][] = [
        [rates.remote, remoteCat],
        [rates.local, localCat],
        [rates.pipe, () => pipeCat(file, bytes)],
      ];
      for (let round = 0; round < rounds; round++) {
        for (const [samples, measure] of rotate(catRounds, round)) samples.push(await measure());
      }
      const remoteRate = quantile(rates.remote, 0.5);
      const localRate = quantile(rates.local, 0.5);
      const pipeRate = quantile(rates.pipe, 0.5);

      const latency = (
        id: string,
        label: string,
        values: number[],
        baselines: number[],
        q: number,
        baselineLabel: string,
        goal: string,
      ): Figure => ({
        id,
        label: `${label}, p${q * 100}`,
        unit: "ms",
        value: quantile(values, q),
        baseline: quantile(baselines, q),
        baselineLabel,
        comparison: "overhead",
        better: "lower",
        goal,
      });
      const echoLabel = `keystroke echo through raw \`cat\` (${keys} keys in ${rounds} rounds)`;
      const catLabel = `\`cat\` of ${megabytes} MiB on a raw terminal, median of ${rounds} rounds`;
      const memory = (side: "controller" | "daemon"): Figure => ({
        id: `pty.${side}_peak_rss`,
        label: `${side} peak RSS during the (first) remote \`cat\` of ${megabytes} MiB`,
        unit: "MiB",
        value: toMiB(peak![side]),
        baseline: toMiB(start[side]),
        baselineLabel: "at the start",
        comparison: "growth",
        better: "lower",
        goal: "bounded",
      });
      return {
        figures: [
          latency(
            "pty.echo_p50",
            `remote ${echoLabel}`,
            remote,
            local,
            0.5,
            "local pty",
            "≤ +0.3 ms",
          ),
          latency(
            "pty.echo_p99",
            `remote ${echoLabel}`,
            remote,
            local,
            0.99,
            "local pty",
            "≤ 5 ms",
          ),
          latency("pty.local_echo_p50", `local pty ${echoLabel}`, local, pipe, 0.5, "pipes", "—"),
          latency("pty.local_echo_p99", `local pty ${echoLabel}`, local, pipe, 0.99, "pipes", "—"),
          {
            id: "pty.cat_mib_per_second",
            label: `remote ${catLabel}`,
            unit: "MiB/s",
            value: remoteRate,
            baseline: localRate,
            baselineLabel: "local pty",
            comparison: "ratio",
            better: "higher",
            goal: "≥ 0.9×",
          },
          {
            id: "pty.local_cat_mib_per_second",
            label: `local pty ${catLabel}`,
            unit: "MiB/s",
            value: localRate,
            baseline: pipeRate,
            baselineLabel: "pipe",
            comparison: "ratio",
            better: "higher",
            goal: "—",
          },
          ...(["daemon", "controller"] as const).map((side): Figure => ({
            id: `pty.${side}_cpu_per_mib`,
            label: `${side} CPU time per MiB of the remote ${catLabel}`,
            unit: "ms",
            value: quantile(cpu[side], 0.5),
            baseline: quantile(cpu.local, 0.5),
            baselineLabel: "local pty reader",
            comparison: "ratio",
            better: "lower",
            goal: "—",
          })),
          memory("controller"),
          memory("daemon"),
        ],
        skipped: [],
      };
    });
  } finally {
    await Deno.remove(file);
  }
}

/** Terminals. */
export const pty: Section = {
  name: "pty",
  about: "PTY keystroke echo and bulk `cat`: remote shell against a local pty and pipes",
  run,
};
