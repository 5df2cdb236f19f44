/**
 * Remote terminal benchmark, each figure next to the same measure on a local Pty in the same run:
 *
 * - keystroke echo round trip: one byte typed into `cat` on a raw-mode terminal, until its echo is back
 *   (controller -> WebSocket -> daemon -> pty -> daemon -> WebSocket -> controller), p50/p99;
 * - bulk output: `cat` of a file (default 100 MB) on a raw-mode terminal, in MB/s, with the controller's and the
 *   daemon's peak RSS (VmHWM).
 *
 * Run: `deno run -A tests/bench_shell.ts [--mb 100] [--keys 2000]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Server } from "../mod.ts";
import { Pty } from "../daemon/pty/pty.ts";
import { TestDaemon } from "./_daemon.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { mb: { type: "string", default: "100" }, keys: { type: "string", default: "2000" } },
});
const MEGABYTES = Number(values.mb);
const KEYS = Number(values.keys);
const ENV = { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", TERM: "dumb" };

function summary(samples: number[]): string {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
  return `p50 ${at(0.5).toFixed(3)} ms, p99 ${at(0.99).toFixed(3)} ms`;
}

function peakRss(pid: number | "self"): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

/** Reads chunks from a pull function until `count` bytes arrived. */
type Read = () => Promise<Uint8Array | null>;

async function echo(write: (b: Uint8Array) => Promise<void>, read: Read): Promise<number[]> {
  let seen = "";
  const decoder = new TextDecoder();
  while (!seen.includes("READY")) {
    const chunk = await read();
    if (!chunk) throw new Error("ended before READY");
    seen += decoder.decode(chunk);
  }
  const key = new Uint8Array([0x61]);
  const samples: number[] = [];
  for (let i = 0; i < KEYS; i++) {
    const start = performance.now();
    await write(key);
    let got = 0;
    while (got < 1) {
      const chunk = await read();
      if (!chunk) throw new Error("ended during echo");
      got += chunk.length;
    }
    samples.push(performance.now() - start);
  }
  return samples;
}

async function drain(read: Read, expected: number): Promise<number> {
  const start = performance.now();
  let total = 0;
  for (let chunk = await read(); chunk !== null; chunk = await read()) total += chunk.length;
  const seconds = (performance.now() - start) / 1000;
  if (total !== expected) throw new Error(`Expected ${expected} bytes, got ${total}`);
  return expected / 1e6 / seconds;
}

const file = await Deno.makeTempFile({ suffix: ".bin" });
const block = new Uint8Array(1024 * 1024).map((_, i) => (i * 7) % 256);
{
  using f = await Deno.open(file, { write: true });
  for (let i = 0; i < MEGABYTES; i++) await f.write(block);
}
const bytes = MEGABYTES * 1024 * 1024;
const echoCommand = ["sh", "-c", "stty raw -echo && echo READY && exec cat"];
const catCommand = ["sh", "-c", `stty raw -echo && exec cat '${file}'`];

const server = await Server.listen({ port: 0 });
const daemon = new TestDaemon({ id: "bench", url: server.url });
try {
  await server.waitForDaemon("bench", { timeout: 20_000 });

  // Remote echo.
  const sh = await server.shell("bench", { command: echoCommand, env: ENV });
  const reader = sh.output.getReader();
  const remoteRead: Read = async () => {
    const { value, done } = await reader.read();
    return done ? null : value;
  };
  const remoteEcho = await echo((b) => sh.write(b), remoteRead);
  reader.releaseLock();
  await sh.close();

  // Local echo.
  const localEcho = await (async () => {
    await using pty = Pty.spawn({ command: echoCommand[0]!, args: echoCommand.slice(1), env: ENV });
    return await echo((b) => pty.write(b), () => pty.read());
  })();

  // Remote bulk output.
  const controllerBefore = peakRss("self");
  const cat = await server.shell("bench", { command: catCommand, env: ENV });
  const catReader = cat.output.getReader();
  const remoteMBps = await drain(async () => {
    const { value, done } = await catReader.read();
    return done ? null : value;
  }, bytes);
  await cat.exited;
  const controllerPeak = peakRss("self");
  const daemonPeak = peakRss(daemon.pid);

  // Local bulk output.
  const localMBps = await (async () => {
    await using pty = Pty.spawn({ command: catCommand[0]!, args: catCommand.slice(1), env: ENV });
    return await drain(() => pty.read(), bytes);
  })();

  console.log(`keystroke echo (${KEYS} keys, raw cat):`);
  console.log(`  remote shell: ${summary(remoteEcho)}`);
  console.log(`  local pty:    ${summary(localEcho)}`);
  console.log(`cat of ${MEGABYTES} MiB (raw terminal):`);
  console.log(
    `  remote shell: ${remoteMBps.toFixed(1)} MB/s (${(remoteMBps / localMBps).toFixed(2)}x local)`,
  );
  console.log(`  local pty:    ${localMBps.toFixed(1)} MB/s`);
  console.log(
    `peak RSS: controller ${controllerPeak.toFixed(0)} MiB (${
      controllerBefore.toFixed(0)
    } MiB before the transfer), daemon ${daemonPeak.toFixed(0)} MiB`,
  );
} finally {
  await daemon.stop();
  await server.close();
  await Deno.remove(file);
}
