// Daemon failover at scale (issue 14): N simulated daemons (default 15,000, BENCH_FAILOVER_DAEMONS) that reconnect
// with the REAL `reconnectDelay` of the checkout's daemon/backoff.ts over two controller URLs, as the daemon does
// (round robin, see _fake_daemons.ts "failover"), are connected to controller A (a `sandd serve` child process);
// A is SIGKILLed, and we measure the time until all N are connected to B (another `sandd serve`), and the peak
// connects per second B saw. Baseline in the same run: N fresh daemons connecting to an idle controller from cold,
// all at once (a daemon's first attempt has no delay).
//
// The simulated daemons run in their own processes (at most 5,000 sockets each: one process may hold 20,000
// descriptors here), on the same two cores as the controller: the client side's CPU is part of what is measured.
import type { BenchContext, Section } from "./_context.ts";
import type { Checkout } from "./_checkout.ts";
import { pause, type SectionResult } from "./_stats.ts";
import { lineReader, raised } from "./memory.ts";

const here = new URL(".", import.meta.url).pathname;
/** Simulated daemons per helper process. */
const PER_PROCESS = 5_000;

/** A `sandd serve` child with a raised descriptor limit. */
async function startController(
  checkout: Checkout,
): Promise<
  { wsUrl: string; child: Deno.ChildProcess; stop: (signal: Deno.Signal) => Promise<void> }
> {
  const child = raised([
    "run",
    ...checkout.daemonFlags,
    ...checkout.runFlags,
    checkout.daemonMain,
    "serve",
    "--port",
    "0",
    "--log-level",
    "error",
  ]);
  const out = lineReader(child.stdout);
  const first = await out.line();
  const match = first.match(/listening on \S+ \(daemons: (\S+),/);
  if (!match) throw new Error(`Unexpected first line of sandd serve: ${first}`);
  // Keep draining its stdout in the background; close it with the process.
  let stopped: Promise<void> | null = null;
  return {
    wsUrl: match[1]!,
    child,
    stop: (signal) =>
      stopped ??= (async () => {
        try {
          child.kill(signal);
        } catch {
          // exited already
        }
        await child.stdin.close().catch(() => {});
        await out.close();
        await child.status;
      })(),
  };
}

/** The simulated daemons: helper processes of at most PER_PROCESS each. */
class Fleet {
  readonly #children: Deno.ChildProcess[];
  readonly #outs: ReturnType<typeof lineReader>[];
  readonly #writers: WritableStreamDefaultWriter<Uint8Array>[];
  readonly count: number;

  constructor(checkout: Checkout, urls: string[], count: number, prefix: string) {
    this.count = count;
    const processes = Math.ceil(count / PER_PROCESS);
    this.#children = Array.from({ length: processes }, (_, i) => {
      const n = Math.floor(count / processes) + (i < count % processes ? 1 : 0);
      return raised([
        "run",
        "-A",
        `${here}_fake_daemons.ts`,
        "failover",
        urls.join(","),
        String(n),
        `${prefix}${i}`,
        checkout.subprotocol,
        `${checkout.root}/daemon/backoff.ts`,
      ]);
    });
    this.#outs = this.#children.map((c) => lineReader(c.stdout));
    this.#writers = this.#children.map((c) => c.stdin.getWriter());
  }

  async #ask(command: string): Promise<string[]> {
    const bytes = new TextEncoder().encode(`${command}\n`);
    await Promise.all(this.#writers.map((w) => w.write(bytes)));
    return await Promise.all(this.#outs.map((o) => o.line()));
  }

  /** Waits until every helper process has started. */
  async started(): Promise<void> {
    const lines = await Promise.all(this.#outs.map((o) => o.line()));
    if (lines.some((l) => l !== "started")) throw new Error(`Helpers said ${lines}`);
  }

  /** Starts every simulated daemon; returns when that was asked (ms since epoch). */
  async go(): Promise<number> {
    const at = Date.now();
    await this.#ask("go");
    return at;
  }

  /** Connected daemons per URL, and connect attempts so far, summed over the helpers. */
  async stats(): Promise<{ connected: number[]; attempts: number }> {
    const answers = (await this.#ask("stats")).map((l) =>
      JSON.parse(l) as { connected: number[]; attempts: number }
    );
    return {
      connected: answers[0]!.connected.map((_, u) =>
        answers.reduce((sum, a) => sum + a.connected[u]!, 0)
      ),
      attempts: answers.reduce((sum, a) => sum + a.attempts, 0),
    };
  }

  /** Welcome times (ms since epoch) on URL `index` since the previous call. */
  async welcomes(index: number): Promise<number[]> {
    const times: number[] = [];
    for (const line of await this.#ask("times")) {
      for (const [t, u] of (JSON.parse(line) as { welcomes: [number, number][] }).welcomes) {
        if (u === index) times.push(t);
      }
    }
    return times.sort((a, b) => a - b);
  }

  /** Polls until `done` holds (every 100 ms), or throws after `timeoutMs`. */
  async until(
    done: (s: { connected: number[]; attempts: number }) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const s = await this.stats();
      if (done(s)) return;
      if (Date.now() > deadline) {
        throw new Error(`${what}: not after ${timeoutMs} ms (${JSON.stringify(s)})`);
      }
      await pause(100);
    }
  }

  async close(): Promise<void> {
    for (const [i, child] of this.#children.entries()) {
      await this.#writers[i]!.close().catch(() => {});
      await this.#outs[i]!.close();
      await child.status;
    }
  }
}

/** Width of the windows the peak connect rate is counted in (a 1 s window would hide a burst inside it). */
const PEAK_WINDOW_MS = 100;

/** The peak rate, per second, of timestamps (sorted, ms) within any PEAK_WINDOW_MS window. */
function peakPerSecond(times: number[]): number {
  let peak = 0;
  let start = 0;
  for (let end = 0; end < times.length; end++) {
    while (times[end]! - times[start]! >= PEAK_WINDOW_MS) start++;
    peak = Math.max(peak, end - start + 1);
  }
  return peak * (1_000 / PEAK_WINDOW_MS);
}

interface Phase {
  /** From the start (go, or A's SIGKILL) to the last welcome, ms. */
  allMs: number;
  /** Peak welcomes per second (counted in PEAK_WINDOW_MS windows). */
  peak: number;
  /** Connect attempts in the phase. */
  attempts: number;
}

/** Baseline: N fresh daemons connect to an idle controller from cold, all at once. */
async function cold(checkout: Checkout, count: number): Promise<Phase> {
  const b = await startController(checkout);
  const fleet = new Fleet(checkout, [b.wsUrl], count, "cold");
  try {
    await fleet.started();
    const at = await fleet.go();
    await fleet.until((s) => s.connected[0] === count, 120_000, "cold connect");
    const times = await fleet.welcomes(0);
    return {
      allMs: times[times.length - 1]! - at,
      peak: peakPerSecond(times),
      attempts: (await fleet.stats()).attempts,
    };
  } finally {
    await fleet.close();
    await b.stop("SIGTERM");
  }
}

/** N daemons on A, A SIGKILLed: until all are on B. */
async function failover(
  checkout: Checkout,
  count: number,
  log: (m: string) => void,
): Promise<Phase> {
  const a = await startController(checkout);
  const b = await startController(checkout);
  const fleet = new Fleet(checkout, [a.wsUrl, b.wsUrl], count, "fo");
  try {
    await fleet.started();
    const startedAt = await fleet.go();
    await fleet.until((s) => s.connected[0] === count, 120_000, "connect to A");
    log(`failover: ${count} daemons on A after ${Date.now() - startedAt} ms; settling`);
    await pause(2_000);
    await fleet.welcomes(0); // forget the welcomes so far
    const before = (await fleet.stats()).attempts;
    const killedAt = Date.now();
    await a.stop("SIGKILL");
    await fleet.until((s) => s.connected[1] === count, 120_000, "fail over to B");
    const times = await fleet.welcomes(1);
    return {
      allMs: times[times.length - 1]! - killedAt,
      peak: peakPerSecond(times),
      attempts: (await fleet.stats()).attempts - before,
    };
  } finally {
    await fleet.close();
    await a.stop("SIGKILL");
    await b.stop("SIGTERM");
  }
}

async function run({ checkout, quick, log }: BenchContext): Promise<SectionResult> {
  const count = Number(Deno.env.get("BENCH_FAILOVER_DAEMONS") ?? (quick ? 300 : 15_000));
  let backoff: { RECENT_MAX_MS?: number };
  try {
    backoff = await import(`file://${checkout.root}/daemon/backoff.ts`);
  } catch (error) {
    return {
      figures: [],
      skipped: [{ id: "failover", reason: `no daemon/backoff.ts: ${(error as Error).message}` }],
    };
  }
  const bound = backoff.RECENT_MAX_MS ?? 2_000;
  const baseline = await cold(checkout, count);
  log(
    `failover: cold connect of ${count}: ${baseline.allMs} ms, peak ${baseline.peak}/s, ` +
      `${baseline.attempts} attempts`,
  );
  const moved = await failover(checkout, count, log);
  log(
    `failover: all ${count} on B ${moved.allMs} ms after A's SIGKILL, peak ${moved.peak}/s, ` +
      `${moved.attempts} attempts`,
  );
  const baselineLabel =
    `${count} fresh daemons connecting to an idle controller from cold, all at once`;
  return {
    figures: [
      {
        id: "failover.all_on_b",
        label: `time until all ${count} daemons of a SIGKILLed controller are on the other ` +
          `(${moved.attempts} connect attempts)`,
        unit: "ms",
        value: moved.allMs,
        baseline: baseline.allMs,
        baselineLabel,
        comparison: "overhead",
        better: "lower",
        goal: `≤ ${bound + 2_000} ms (backoff bound ${bound} ms + 2 s)`,
      },
      {
        id: "failover.peak_connects",
        label:
          `peak connects per second on the surviving controller (${count} daemons failing over)`,
        unit: "/s",
        value: moved.peak,
        baseline: baseline.peak,
        baselineLabel,
        comparison: "ratio",
        better: "lower",
        // The first retry after a drop is uniform in [0, reconnect-initial = 1 s): on average N per second.
        goal: `under the jitter's ceiling: ${count}/s (N over the first retry's 1 s spread; ` +
          `every retry ≤ ${bound} ms)`,
      },
    ],
    skipped: [],
  };
}

/** The section. */
export const failoverSection: Section = {
  name: "failover",
  about:
    "daemons of a SIGKILLed controller reaching another (time, peak connects/s) vs a cold start",
  run,
};
