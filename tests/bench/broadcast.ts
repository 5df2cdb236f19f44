// `broadcast({}, "true")` to a whole fleet (19,000 daemons: BENCH_SOCKETS): wall time, the longest event-loop
// stall and the controller's RSS growth during it, against a bare Deno WebSocket server doing one request/reply
// round trip with each of as many sockets at the same concurrency (the floor of any broadcast over WebSockets).
// A real daemon per target is impossible at 19,000 (one process per daemon), so all but one are simulated daemons
// (_sim_daemons.ts) that answer a spawn at once the way a daemon running `true` does; the one real daemon among
// them is the sanity check (its result must be exit 0).
import type { BenchContext, Section } from "./_context.ts";
import { controllerFlags, lineReader, offeredSubprotocols, raised } from "./memory.ts";
import { pause, peakOf, resetPeak, type SectionResult, toMiB } from "./_stats.ts";
import type { Checkout } from "./_checkout.ts";

const here = new URL(".", import.meta.url).pathname;

/** What `_broadcast_controller.ts` answers to `broadcast`. */
interface Round {
  ms: number;
  longestTickMs: number;
  ok: number;
  failed: number;
  firstError?: string;
  real?: number | string;
}

interface Measured {
  /** Median wall time of the rounds, ms. */
  ms: number;
  /** Longest stall over all rounds, ms. */
  stall: number;
  /** RSS before the first round and the peak over the rounds, bytes. */
  rssBefore: number;
  rssPeak: number;
}

async function measure(
  checkout: Checkout,
  kind: "sandd" | "echo",
  sockets: number,
  rounds: number,
  concurrency: number,
): Promise<Measured> {
  const controller = raised([
    "run",
    "-A",
    ...checkout.runFlags,
    ...controllerFlags(kind),
    `${here}_broadcast_controller.ts`,
    kind,
    checkout.root,
  ]);
  const out = lineReader(controller.stdout);
  const encoder = new TextEncoder();
  const control = controller.stdin.getWriter();
  const ask = async <T>(command: string): Promise<T> => {
    await control.write(encoder.encode(`${command}\n`));
    return JSON.parse(await out.line()) as T;
  };
  // The sandd controller holds the one real daemon besides the simulated ones.
  const own = kind === "sandd" ? 1 : 0;
  const port = Number(await out.line());
  const url = kind === "sandd" ? `ws://127.0.0.1:${port}/ws` : `ws://127.0.0.1:${port}/`;
  const simulated = sockets - own;
  const offered = kind === "sandd" ? await offeredSubprotocols(checkout) : checkout.subprotocol;
  const clientCount = Math.ceil(simulated / 5_000);
  const clients = Array.from({ length: clientCount }, (_, i) => {
    const n = Math.floor(simulated / clientCount) + (i < simulated % clientCount ? 1 : 0);
    return raised([
      "run",
      "-A",
      `${here}_sim_daemons.ts`,
      kind,
      url,
      String(n),
      `s${i}`,
      offered,
    ]);
  });
  const clientOuts = clients.map((c) => lineReader(c.stdout));
  try {
    await Promise.all(clientOuts.map((o) => o.line()));
    // Polled: the echo server counts a socket at its open event, which may come after the client's. A loaded
    // machine may see a few links dropped as silent meanwhile: the run goes on with those left, and says so.
    const deadline = performance.now() + 30_000;
    let connected = 0;
    while ((connected = (await ask<{ sockets: number }>("stats")).sockets) < sockets) {
      if (performance.now() > deadline) break;
      await pause(50);
    }
    if (connected < sockets) {
      console.error(
        `bench: broadcast: the ${kind} controller holds ${connected} of ${sockets} sockets`,
      );
    }
    await pause(1_000);
    const rssBefore = resetPeak(controller.pid);
    const times: number[] = [];
    let stall = 0;
    for (let i = 0; i < rounds; i++) {
      const round = await ask<Round>(`broadcast ${concurrency}`);
      if (kind === "sandd" && round.real !== 0) {
        throw new Error(`bench: broadcast: the real daemon's result was ${round.real}, not exit 0`);
      }
      if (round.ok !== sockets) {
        console.error(
          `bench: broadcast: the ${kind} round reached ${round.ok} of ${sockets} targets, ${round.failed} failed` +
            ` (first: ${round.firstError ?? "none"})`,
        );
      }
      times.push(round.ms);
      stall = Math.max(stall, round.longestTickMs);
    }
    times.sort((a, b) => a - b);
    return {
      ms: times[Math.floor(times.length / 2)]!,
      stall,
      rssBefore,
      rssPeak: peakOf(controller.pid),
    };
  } finally {
    for (const [i, c] of clients.entries()) {
      await c.stdin.close();
      await clientOuts[i]!.close();
      await c.status;
    }
    await control.close();
    await out.close();
    await controller.status;
  }
}

async function run({ checkout, quick, log }: BenchContext): Promise<SectionResult> {
  const sockets = Number(Deno.env.get("BENCH_SOCKETS") ?? (quick ? 200 : 19_000));
  const rounds = quick ? 1 : 3;
  const concurrency = 256;
  const echo = await measure(checkout, "echo", sockets, rounds, concurrency);
  log(`broadcast: echo server round ${echo.ms.toFixed(0)} ms over ${sockets} sockets`);
  const sandd = await measure(checkout, "sandd", sockets, rounds, concurrency);
  const targets = `${sockets} daemons (${sockets - 1} simulated, answering at once; 1 real)`;
  const baselineLabel =
    `bare Deno WebSocket server, one round trip per socket, ${concurrency} in flight`;
  return {
    figures: [
      {
        id: "broadcast.time",
        label: `broadcast({}, "true") to ${targets}, median of ${rounds}`,
        unit: "ms",
        value: sandd.ms,
        baseline: echo.ms,
        baselineLabel,
        comparison: "ratio",
        better: "lower",
        goal: "≤ 1,500 ms",
      },
      {
        id: "broadcast.longest_stall",
        label:
          `controller event-loop stall during the broadcast (longest 10 ms timer gap, ${rounds} rounds)`,
        unit: "ms",
        value: sandd.stall,
        baseline: echo.stall,
        baselineLabel,
        comparison: "overhead",
        better: "lower",
        goal: "≤ 50 ms",
      },
      {
        id: "broadcast.rss_growth",
        label: `controller RSS peak during ${rounds} broadcasts to ${sockets} daemons`,
        unit: "MiB",
        value: toMiB(sandd.rssPeak),
        baseline: toMiB(sandd.rssBefore),
        baselineLabel: `RSS before (the echo server grew ${
          toMiB(echo.rssPeak - echo.rssBefore).toFixed(1)
        } MiB)`,
        comparison: "growth",
        better: "lower",
        goal: "bounded",
      },
    ],
    skipped: [],
  };
}

/** `broadcast` to a fleet. */
export const broadcast: Section = {
  name: "broadcast",
  about:
    "broadcast of `true` to 19,000 daemons (BENCH_SOCKETS; simulated but one) against a bare WebSocket server's round trips",
  run,
};
