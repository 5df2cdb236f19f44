// The cost of `/metrics`: exec p50 on a controller scraped every 100 ms against one without metrics (same run,
// interleaved), and the scrape time with many connected daemons (the memory section's fake daemons) against
// `/health` on the same controller.
import type { BenchContext, Section } from "./_context.ts";
import { BenchDaemon } from "./_daemon.ts";
import type { Checkout, Server } from "./_checkout.ts";
import { lineReader, raised } from "./memory.ts";
import { pause, quantile, type SectionResult } from "./_stats.ts";

const here = new URL(".", import.meta.url).pathname;

async function listenWithDaemon(
  checkout: Checkout,
  id: string,
  metrics: boolean,
): Promise<{ server: Server; daemon: BenchDaemon }> {
  const server = await checkout.mod.Server.listen({ port: 0, ...(metrics ? { metrics } : {}) });
  const daemon = new BenchDaemon(checkout, { id, url: server.url });
  await server.waitForDaemon(id, { timeout: 60_000 });
  return { server, daemon };
}

/** exec p50 with and without metrics scraped every 100 ms. */
async function execCost(
  checkout: Checkout,
  quick: boolean,
): Promise<{ on: number; off: number; scrapes: number }> {
  const rounds = quick ? 30 : 400;
  const warmup = quick ? 5 : 50;
  const a = await listenWithDaemon(checkout, "bench-metrics-on", true);
  const b = await listenWithDaemon(checkout, "bench-metrics-off", false);
  let scraping = true;
  let scrapes = 0;
  const scraper = (async () => {
    while (scraping) {
      const response = await fetch(`http://127.0.0.1:${a.server.port}/metrics`);
      if (response.status !== 200) throw new Error(`/metrics answered ${response.status}`);
      await response.text();
      scrapes++;
      await pause(100);
    }
  })();
  try {
    const on: number[] = [];
    const off: number[] = [];
    for (let i = 0; i < warmup; i++) {
      await a.server.exec("bench-metrics-on", ["true"]);
      await b.server.exec("bench-metrics-off", ["true"]);
    }
    const time = async (server: Server, id: string, into: number[]) => {
      const t = performance.now();
      await server.exec(id, ["true"]);
      into.push(performance.now() - t);
    };
    for (let i = 0; i < rounds; i++) {
      // Interleaved, the order swapped every round, so both see the same machine noise and neither goes first.
      if (i % 2 === 0) {
        await time(a.server, "bench-metrics-on", on);
        await time(b.server, "bench-metrics-off", off);
      } else {
        await time(b.server, "bench-metrics-off", off);
        await time(a.server, "bench-metrics-on", on);
      }
    }
    return { on: quantile(on, 0.5), off: quantile(off, 0.5), scrapes };
  } finally {
    scraping = false;
    await scraper.catch(() => {});
    for (const { server, daemon } of [a, b]) {
      await daemon.stop();
      await server.close();
    }
  }
}

/** Scrape and /health times with `daemons` fake daemons connected. */
async function scrapeAtScale(
  checkout: Checkout,
  daemons: number,
  samples: number,
  log: (message: string) => void,
): Promise<{ scrape: number[]; health: number[]; bytes: number; connected: number }> {
  const controller = raised([
    "run",
    "-A",
    ...checkout.runFlags,
    `${here}_metrics_controller.ts`,
    checkout.root,
  ]);
  const out = lineReader(controller.stdout);
  const port = Number(await out.line());
  const base = `http://127.0.0.1:${port}`;
  const clientCount = Math.ceil(daemons / 5_000);
  const clients = Array.from({ length: clientCount }, (_, i) => {
    const n = Math.floor(daemons / clientCount) + (i < daemons % clientCount ? 1 : 0);
    return raised([
      "run",
      "-A",
      `${here}_sim_daemons.ts`,
      "sandd",
      `ws://127.0.0.1:${port}/ws`,
      String(n),
      `m${i}`,
      checkout.subprotocol,
    ]);
  });
  const clientOuts = clients.map((c) => lineReader(c.stdout));
  const get = async (path: string): Promise<{ ms: number; text: string }> => {
    const t = performance.now();
    const response = await fetch(`${base}${path}`);
    const text = await response.text();
    return { ms: performance.now() - t, text };
  };
  try {
    await Promise.all(clientOuts.map((o) => o.line()));
    // Every daemon counted (the hello of the last ones may still be on its way); links a loaded machine dropped
    // are reported, and the figure names the count it was measured with.
    const deadline = Date.now() + 30_000;
    let connected = 0;
    while (true) {
      const { text } = await get("/metrics");
      connected = Number(/^sandd_daemons\{platform="linux"\} (\d+)$/m.exec(text)?.[1] ?? 0);
      if (connected >= daemons) break;
      if (Date.now() > deadline) {
        log(
          `metrics: only ${connected} of ${daemons} daemons still connected; measuring with those`,
        );
        break;
      }
      await pause(200);
    }
    log(`metrics: ${connected} daemons connected; scraping`);
    const scrape: number[] = [];
    const health: number[] = [];
    let bytes = 0;
    for (let i = 0; i < samples; i++) {
      const m = await get("/metrics");
      scrape.push(m.ms);
      bytes = m.text.length;
      health.push((await get("/health")).ms);
      await pause(20);
    }
    return { scrape, health, bytes, connected };
  } finally {
    for (const [i, c] of clients.entries()) {
      await c.stdin.close();
      await clientOuts[i]!.close();
      await c.status;
    }
    await controller.stdin.close();
    await out.close();
    await controller.status;
  }
}

async function run({ checkout, quick, log }: BenchContext): Promise<SectionResult> {
  const exec = await execCost(checkout, quick);
  log(
    `metrics: exec p50 ${exec.on.toFixed(2)} ms scraped (${exec.scrapes} scrapes), ${
      exec.off.toFixed(2)
    } ms without`,
  );
  const daemons = Number(Deno.env.get("BENCH_SOCKETS") ?? (quick ? 200 : 19_000));
  const at = await scrapeAtScale(checkout, daemons, quick ? 10 : 100, log);
  return {
    figures: [
      {
        id: "metrics.exec_p50",
        label: "exec round trip of `true`, p50, /metrics scraped every 100 ms",
        unit: "ms",
        value: exec.on,
        baseline: exec.off,
        baselineLabel: "controller without metrics, same run",
        comparison: "overhead",
        better: "lower",
        goal: "no measurable overhead",
      },
      {
        id: "metrics.scrape_p50",
        label: `GET /metrics with ${at.connected} connected daemons, p50 (${at.bytes} bytes)`,
        unit: "ms",
        value: quantile(at.scrape, 0.5),
        baseline: quantile(at.health, 0.5),
        baselineLabel: "GET /health, same controller",
        comparison: "overhead",
        better: "lower",
        goal: "≤ 50 ms",
      },
      {
        id: "metrics.scrape_max",
        label: `GET /metrics with ${at.connected} connected daemons, max`,
        unit: "ms",
        value: quantile(at.scrape, 1),
        baseline: quantile(at.health, 1),
        baselineLabel: "GET /health, same controller",
        comparison: "overhead",
        better: "lower",
        goal: "≤ 50 ms",
      },
    ],
    skipped: [],
  };
}

/** The cost of metrics. */
export const metrics: Section = {
  name: "metrics",
  about:
    "exec p50 with /metrics scraped every 100 ms vs without; scrape time with 19,000 daemons (BENCH_SOCKETS)",
  run,
};
