// Daemon failover at scale (issue 14): N simulated daemons (default 15,000, BENCH_FAILOVER_DAEMONS) that reconnect
// with the REAL `reconnectDelay` of the checkout's daemon/backoff.ts over two controller URLs, as the daemon does
// (round robin, see _sim_daemons.ts "failover"), are connected to controller A (a `sandd serve` child process);
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
/** Connects per second while the fleet first connects to A (setup, not measured; BENCH_FAILOVER_SETUP_RATE). */
const SETUP_RATE = Number(Deno.env.get("BENCH_FAILOVER_SETUP_RATE") ?? 2_000);
/** Simulated daemons per helper process. */
const PER_PROCESS = 5_000;

/**
 * A `sandd serve` child with a raised descriptor limit (`extra`: more `sandd serve` flags; `denoFlags`: more
 * `deno run` flags, e.g. `--cpu-prof`).
 */
export async function startController(
  checkout: Checkout,
  port = 0,
  extra: string[] = [],
  denoFlags: string[] = [],
): Promise<
  { wsUrl: string; child: Deno.ChildProcess; stop: (signal: Deno.Signal) => Promise<void> }
> {
  const child = raised([
    "run",
    ...checkout.daemonFlags,
    ...checkout.runFlags,
    ...denoFlags,
    checkout.daemonMain,
    "serve",
    "--port",
    String(port),
    "--log-level",
    "error",
    ...extra,
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

/** CPU time a process has used, in milliseconds (schedstat: nanoseconds on the CPU). */
export function cpuOf(pid: number): number {
  return Number(Deno.readTextFileSync(`/proc/${pid}/schedstat`).split(" ")[0]) / 1e6;
}

/** A port nothing listens on yet (bound, then released). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Helper processes started so far: each connects from its own loopback address (see _sim_link.ts). */
let helpers = 0;

/** The next helper's local address: 127.1.0.1, 127.1.0.2, ... (all of 127.0.0.0/8 is this machine). */
function nextLocalAddress(): string {
  const n = ++helpers;
  return `127.1.${(n >> 8) & 255}.${n & 255}`;
}

/** The simulated daemons: helper processes of at most PER_PROCESS each. */
/**
 * Diagnostics: CPU profiles of the helper processes whose prefix starts with PREFIX, into DIR
 * (BENCH_FLEET_PROFILE=PREFIX:DIR; written when the helper exits).
 */
const FLEET_PROFILE = (() => {
  const value = Deno.env.get("BENCH_FLEET_PROFILE");
  const at = value?.indexOf(":") ?? -1;
  return value && at > 0 ? { prefix: value.slice(0, at), dir: value.slice(at + 1) } : null;
})();

export class Fleet {
  readonly #children: Deno.ChildProcess[];
  readonly #outs: ReturnType<typeof lineReader>[];
  readonly #writers: WritableStreamDefaultWriter<Uint8Array>[];
  readonly count: number;

  constructor(checkout: Checkout, urls: string[], count: number, prefix: string) {
    this.count = count;
    const processes = Math.ceil(count / PER_PROCESS);
    this.#children = Array.from({ length: processes }, (_, i) => {
      const n = Math.floor(count / processes) + (i < count % processes ? 1 : 0);
      const profile = FLEET_PROFILE && prefix.startsWith(FLEET_PROFILE.prefix)
        ? ["--cpu-prof", `--cpu-prof-dir=${FLEET_PROFILE.dir}`]
        : [];
      return raised([
        "run",
        "-A",
        ...profile,
        `${here}_sim_daemons.ts`,
        "failover",
        urls.join(","),
        String(n),
        `${prefix}${i}`,
        checkout.subprotocol,
        `${checkout.root}/daemon/backoff.ts`,
        nextLocalAddress(),
      ]);
    });
    this.#outs = this.#children.map((c) => lineReader(c.stdout));
    this.#writers = this.#children.map((c) => c.stdin.getWriter());
  }

  /** CPU time the helper processes have used, in ms. */
  cpu(): number {
    return this.#children.reduce((sum, c) => sum + cpuOf(c.pid), 0);
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

  /**
   * Starts every simulated daemon, all at once or `perSecond` in all; returns when that was asked (ms since
   * epoch).
   */
  async go(perSecond?: number): Promise<number> {
    const at = Date.now();
    const share = perSecond === undefined ? "" : ` ${Math.ceil(perSecond / this.#children.length)}`;
    await this.#ask(`go${share}`);
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

  /**
   * Welcome times (ms since epoch, sorted) on each URL index asked for, since the previous call; a negative index
   * `-1 - i` asks for the times links to URL `i` dropped.
   */
  async welcomes(...indexes: number[]): Promise<number[][]> {
    const times: number[][] = indexes.map(() => []);
    for (const line of await this.#ask("times")) {
      for (const [t, u] of (JSON.parse(line) as { welcomes: [number, number][] }).welcomes) {
        const k = indexes.indexOf(u);
        if (k >= 0) times[k]!.push(t);
      }
    }
    return times.map((list) => list.sort((a, b) => a - b));
  }

  /** Polls until `done` holds (every 100 ms): true, or false after `timeoutMs`. */
  async until(
    done: (s: { connected: number[]; attempts: number }) => boolean,
    timeoutMs: number,
  ): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const s = await this.stats();
      if (done(s)) return true;
      if (Date.now() > deadline) return false;
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
export const PEAK_WINDOW_MS = 100;

/** The peak rate, per second, of timestamps (sorted, ms) within any PEAK_WINDOW_MS window. */
export function peakPerSecond(times: number[]): number {
  let peak = 0;
  let start = 0;
  for (let end = 0; end < times.length; end++) {
    while (times[end]! - times[start]! >= PEAK_WINDOW_MS) start++;
    peak = Math.max(peak, end - start + 1);
  }
  return peak * (1_000 / PEAK_WINDOW_MS);
}

/** How long a phase may take before it is reported as far as it got. */
const LIMIT_MS = 90_000;

interface Phase {
  /** From the start (go, or A's SIGKILL) to the last welcome (or to LIMIT_MS when not all came), ms. */
  allMs: number;
  /** Peak welcomes per second (counted in PEAK_WINDOW_MS windows). */
  peak: number;
  /** Connect attempts in the phase. */
  attempts: number;
  /** Whether every daemon was connected by the end (else the phase hit LIMIT_MS). */
  complete: boolean;
  /** Welcomes in the phase (more than N when links dropped and came back, e.g. on a handshake timeout). */
  welcomes: number;
  /** CPU time in the phase, ms: the controller that took the daemons, and the simulated daemons. */
  cpu: { controller: number; fleet: number };
  /** Welcomes by 1, 2, 4 and 8 s into the phase. */
  by: string;
}

/** What a phase measured, from the welcomes on the controller it is about. */
function phase(
  times: number[],
  from: number,
  all: boolean,
  attempts: number,
  cpu: Phase["cpu"],
): Phase {
  return {
    allMs: all ? times[times.length - 1]! - from : LIMIT_MS,
    peak: peakPerSecond(times),
    attempts,
    complete: all,
    welcomes: times.length,
    cpu,
    by: [1_000, 2_000, 4_000, 8_000].map((t) =>
      `${t / 1000} s: ${times.filter((x) => x - from <= t).length}`
    ).join(", "),
  };
}

/** Baseline: N fresh daemons connect to an idle controller from cold, all at once. */
async function cold(checkout: Checkout, count: number): Promise<Phase> {
  const b = await startController(checkout);
  const fleet = new Fleet(checkout, [b.wsUrl], count, "cold");
  try {
    await fleet.started();
    const cpuB = cpuOf(b.child.pid);
    const cpuFleet = fleet.cpu();
    const at = await fleet.go();
    // All at once, the controller may thrash (connections still waiting for their head are evicted at its cap of
    // pending connections; handshakes time out): bounded, and reported as far as it got.
    const all = await fleet.until((s) => s.connected[0] === count, LIMIT_MS);
    const cpu = { controller: cpuOf(b.child.pid) - cpuB, fleet: fleet.cpu() - cpuFleet };
    const [times = []] = await fleet.welcomes(0);
    return phase(times, at, all, (await fleet.stats()).attempts, cpu);
  } finally {
    await fleet.close();
    await b.stop("SIGTERM");
  }
}

/** N daemons on A, A SIGKILLed: until all are on B. */
async function failover(
  checkout: Checkout,
  count: number,
  log: (message: string) => void,
): Promise<Phase> {
  const a = await startController(checkout);
  // B listens only once every daemon is on A: until then a failed connect to A tries B's port in vain and comes
  // back to A, so the whole fleet ends up on A.
  const port = freePort();
  const bUrl = a.wsUrl.replace(/:\d+\//, `:${port}/`);
  let b: Awaited<ReturnType<typeof startController>> | undefined;
  const fleet = new Fleet(checkout, [a.wsUrl, bUrl], count, "fo");
  try {
    await fleet.started();
    // Setting up, not measured: paced, so A is not stampeded.
    const startedAt = await fleet.go(SETUP_RATE);
    let polls = 0;
    const onA = (s: { connected: number[]; attempts: number }) => {
      if (++polls % 50 === 0) log(`failover: setting up: ${JSON.stringify(s)}`);
      return s.connected[0] === count;
    };
    if (!await fleet.until(onA, LIMIT_MS)) {
      const s = await fleet.stats();
      throw new SetupError(
        `only ${s.connected[0]} of ${count} simulated daemons were on A after ${
          LIMIT_MS / 1000
        } s of ` +
          `connecting at ${SETUP_RATE}/s (${s.attempts} attempts: links dropped by heartbeat or handshake ` +
          `timeouts while the controller and the simulated daemons share the 2 cores; load average ` +
          `${
            Deno.loadavg()[0]!.toFixed(1)
          }); try a smaller BENCH_FAILOVER_DAEMONS or BENCH_FAILOVER_SETUP_RATE`,
      );
    }
    log(`failover: ${count} daemons on A after ${Date.now() - startedAt} ms`);
    b = await startController(checkout, port);
    await pause(2_000); // settle
    await fleet.welcomes(0); // forget the welcomes so far
    const before = (await fleet.stats()).attempts;
    const cpuB = cpuOf(b.child.pid);
    const cpuFleet = fleet.cpu();
    const killedAt = Date.now();
    await a.stop("SIGKILL");
    const all = await fleet.until((s) => s.connected[1] === count, LIMIT_MS);
    const cpu = { controller: cpuOf(b.child.pid) - cpuB, fleet: fleet.cpu() - cpuFleet };
    const [times = [], lost = []] = await fleet.welcomes(1, -1);
    log(
      `failover: the simulated daemons saw their links to A drop ${lost[0]! - killedAt} to ` +
        `${lost[lost.length - 1]! - killedAt} ms after the SIGKILL`,
    );
    return phase(times, killedAt, all, (await fleet.stats()).attempts - before, cpu);
  } finally {
    await fleet.close();
    await a.stop("SIGKILL");
    await b?.stop("SIGTERM");
  }
}

/** The fleet could not be set up on A: the section is skipped with this reason. */
class SetupError extends Error {}

/** One line on a phase, for the log. */
function describe(p: Phase, count: number): string {
  const perWelcome = (p.cpu.controller / Math.max(1, p.welcomes)).toFixed(2);
  return `${p.complete ? "all" : "not all"} ${count} in ${p.allMs} ms (${p.welcomes} welcomes; ` +
    `by ${p.by}), peak ${p.peak}/s, ${p.attempts} attempts; CPU: controller ` +
    `${p.cpu.controller.toFixed(0)} ms (${perWelcome} ms a welcome), simulated daemons ` +
    `${p.cpu.fleet.toFixed(0)} ms; load average ${Deno.loadavg()[0]!.toFixed(1)}`;
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
  let moved: Phase;
  try {
    moved = await failover(checkout, count, log);
  } catch (error) {
    if (!(error instanceof SetupError)) throw error;
    return { figures: [], skipped: [{ id: "failover", reason: error.message }] };
  }
  log(`failover: on B after A's SIGKILL: ${describe(moved, count)}`);
  const baseline = await cold(checkout, count);
  log(`failover: cold, all at once: ${describe(baseline, count)}`);
  const short = (p: Phase) => p.complete ? "" : `; not all connected after ${LIMIT_MS / 1000} s`;
  const baselineLabel =
    `${count} fresh daemons connecting to an idle controller from cold, all at once${
      short(baseline)
    }`;
  return {
    figures: [
      {
        id: "failover.all_on_b",
        label: `time until all ${count} daemons of a SIGKILLed controller are on the other ` +
          `(${moved.attempts} connect attempts${short(moved)})`,
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
          `peak connects per second on the surviving controller (${count} daemons failing over; ` +
          `busiest ${PEAK_WINDOW_MS} ms)`,
        unit: "/s",
        value: moved.peak,
        baseline: baseline.peak,
        baselineLabel,
        comparison: "ratio",
        better: "lower",
        // The first retry after a drop is uniform in [0, reconnect-initial = 1 s): on average N per second.
        goal:
          `jitter ceiling ≈ ${count}/s on average: the first retry after a drop is uniform over ` +
          `reconnect-initial (1 s), every retry ≤ ${bound} ms (a busy 100 ms may run above the average)`,
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
