// Controller RSS with many connected daemons (fake ones that speak the handshake and answer pings), against a
// bare Deno WebSocket echo server holding the same number of sockets, each in its own process.
import type { BenchContext, Section } from "./_context.ts";
import { pause, rssOf, type SectionResult, toMiB } from "./_stats.ts";
import type { Checkout } from "./_checkout.ts";

const here = new URL(".", import.meta.url).pathname;

function raised(args: string[]): Deno.ChildProcess {
  return new Deno.Command("sh", {
    args: [
      "-c",
      'ulimit -n 1048576 2>/dev/null || ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"',
      "sh",
      Deno.execPath(),
      ...args,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
}

async function firstLine(stream: ReadableStream<Uint8Array>): Promise<string> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`Helper process ended before a line (${JSON.stringify(text)})`);
    text += value;
  }
  // Keep draining so the helper never blocks on a full pipe.
  (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })().catch(() => {});
  return text.trim();
}

async function rssWith(
  checkout: Checkout,
  kind: "sandd" | "echo",
  sockets: number,
  settle: number,
): Promise<number> {
  const controller = raised([
    "run",
    "-A",
    ...checkout.runFlags,
    `${here}_controller.ts`,
    kind,
    checkout.root,
  ]);
  const port = Number(await firstLine(controller.stdout));
  const url = kind === "sandd" ? `ws://127.0.0.1:${port}/ws` : `ws://127.0.0.1:${port}/`;
  const clientCount = Math.ceil(sockets / 5_000);
  const clients = Array.from({ length: clientCount }, (_, i) => {
    const n = Math.floor(sockets / clientCount) + (i < sockets % clientCount ? 1 : 0);
    return raised([
      "run",
      "-A",
      `${here}_fake_daemons.ts`,
      kind,
      url,
      String(n),
      `c${i}`,
      checkout.subprotocol,
    ]);
  });
  try {
    await Promise.all(clients.map((c) => firstLine(c.stdout)));
    await pause(settle);
    return rssOf(controller.pid);
  } finally {
    for (const c of clients) {
      await c.stdin.close();
      await c.status;
    }
    await controller.stdin.close();
    await controller.status;
  }
}

async function run({ checkout, quick, log }: BenchContext): Promise<SectionResult> {
  // The goal is 20,000; one process here may hold at most 20,000 descriptors (hard limit, not raisable in our
  // sandbox), so the default leaves room for the controller's own files.
  const sockets = quick ? 200 : Number(Deno.env.get("BENCH_SOCKETS") ?? 19_000);
  const settle = quick ? 300 : 2_000;
  const echo = await rssWith(checkout, "echo", sockets, settle);
  log(`memory: echo server ${toMiB(echo).toFixed(1)} MiB with ${sockets} sockets`);
  const sandd = await rssWith(checkout, "sandd", sockets, settle);
  return {
    figures: [{
      id: "memory.controller_rss",
      label: `controller RSS with ${sockets} connected daemons`,
      unit: "MiB",
      value: toMiB(sandd),
      baseline: toMiB(echo),
      baselineLabel: "bare Deno WebSocket echo server",
      comparison: "ratio",
      better: "lower",
      goal: "≤ 1.1×",
    }],
    skipped: [],
  };
}

/** Controller memory at scale. */
export const memory: Section = {
  name: "memory",
  about: "controller RSS with 19,000 daemons (BENCH_SOCKETS) against a bare WebSocket echo server",
  run,
};
