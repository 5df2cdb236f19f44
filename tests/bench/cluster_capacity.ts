// Cluster capacity (issue 14): three `sandd serve --cluster` nodes on this machine, each holding N simulated daemons
// (default 15,000, BENCH_CAPACITY_DAEMONS; 300 under --quick) that speak the real protocol and fail over like the
// real daemon over all three node URLs (_sim_daemons.ts "failover": the checkout's daemon/backoff.ts, round robin,
// the other nodes in varied order). Figures:
// - the memory (RSS) of a node holding N of the 3 N daemons, against one node alone holding N (no cluster), the
//   baseline measured first in the same run;
// - node A SIGKILLed: the time until all of its N daemons are registered on the other nodes, read from the
//   cluster registry itself (a watch on the `sandd_daemons` key-value bucket), against the time until all of them
//   were welcomed by the other nodes (what the daemons saw): the difference is the registry's lag;
// - the peak connects per second on the surviving nodes, against the mean rate of that failover.
// One process may hold 20,000 descriptors here: before the kill, B and C each let go of TRIM of their daemons
// (default so that N + N/2 - TRIM stays at 17,500), so the survivors end at most ~17,500 links each.
// The simulated daemons run in helper processes of at most STAGE (2,500) links; NATS, the nodes and the helpers share
// the machine's cores, so the client side's CPU is part of what is measured. The nodes are filled in stages (one
// helper process per node each), the next once the registry holds all started so far, at about the rate the previous
// stage was registered at (see server/CLUSTER.md, Capacity: connecting faster than the machine registers makes
// handshakes and heartbeats time out, and the fleet churns). Skipped when nats-server is missing.
import type { BenchContext, Section } from "./_context.ts";
import type { Checkout } from "./_checkout.ts";
import { type Figure, pause, rssOf, type SectionResult } from "./_stats.ts";
import { cpuOf, Fleet, PEAK_WINDOW_MS, peakPerSecond, startController } from "./failover.ts";
import { TestNats } from "../_nats.ts";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";

/** Connects per second while the fleets first connect (setup, not measured; BENCH_CAPACITY_SETUP_RATE, in all). */
const SETUP_RATE = Number(Deno.env.get("BENCH_CAPACITY_SETUP_RATE") ?? 1_500);
/** How long a phase may take before it is reported as far as it got. */
const LIMIT_MS = 120_000;
/** Simulated daemons per node per setup stage (one helper process each), and how long a stage may take. */
const STAGE = 2_500;
const STAGE_LIMIT_MS = 120_000;

/** A share of daemons in stages of at most STAGE. */
function stages(n: number): number[] {
  const out: number[] = [];
  for (let left = n; left > 0; left -= STAGE) out.push(Math.min(STAGE, left));
  return out;
}
/** Most links a surviving node should end with (descriptors: 20,000 per process here). */
const SURVIVOR_MAX = 17_500;
/** The nodes' heartbeat (a dead node's key leaves the nodes bucket three heartbeats after its last beat). */
const HEARTBEAT_MS = 2_000;
/** Diagnostics: the nodes' log level (BENCH_CAPACITY_NODE_LOG, e.g. "warning"; default: errors only). */
const NODE_LOG = Deno.env.get("BENCH_CAPACITY_NODE_LOG");
/** Diagnostics: a directory for a CPU profile of node B, one of the survivors (BENCH_CAPACITY_PROFILE_B). */
const PROFILE_B = Deno.env.get("BENCH_CAPACITY_PROFILE_B");
/**
 * nats-server's garbage collector setting: the one server/CLUSTER.md recommends ("Running nats-server"; another
 * with BENCH_NATS_GOGC). The failover measured the same with Go's default (3.97 and 4.23 s against 3.93 and 3.82
 * s, interleaved, 2026-12-03).
 */
const NATS_GOGC = Deno.env.get("BENCH_NATS_GOGC") ?? "400";

function natsInstalled(): boolean {
  try {
    new Deno.Command("nats-server", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync();
    return true;
  } catch {
    return false;
  }
}

const MIB = 1024 * 1024;

/** The cluster registry as a bench sees it: a watch on the daemons bucket, entry key to node name. */
class RegistryWatch {
  readonly #nc: NatsConnection;
  readonly #byKey: Map<string, string> = new Map();
  #stop: (() => void) | null = null;
  #done: Promise<void> | null = null;
  /** Keys being followed (`follow`), and the nodes they must reach. */
  #pending: Set<string> = new Set();
  #targets: Set<string> = new Set();
  /** Checked after every change; resolved once true. */
  #waiters: { check: () => boolean; resolve: () => void }[] = [];

  private constructor(nc: NatsConnection) {
    this.#nc = nc;
  }

  static async open(url: string): Promise<RegistryWatch> {
    const nc = await connect({ servers: url, name: "bench-capacity" });
    const watch = new RegistryWatch(nc);
    await watch.#start();
    return watch;
  }

  async #start(): Promise<void> {
    // The first node creates the bucket; wait for it.
    const kvm = new Kvm(this.#nc);
    for (let i = 0;; i++) {
      try {
        const kv = await kvm.open("sandd_daemons");
        await kv.status();
        const iter = await kv.watch({ key: "d.>" });
        this.#stop = () => iter.stop();
        this.#done = (async () => {
          for await (const e of iter) {
            if (e.operation === "PUT") {
              const node = (e.json() as { node: string }).node;
              this.#byKey.set(e.key, node);
              if (this.#targets.has(node)) this.#pending.delete(e.key);
            } else this.#byKey.delete(e.key);
            this.#waiters = this.#waiters.filter((w) => {
              if (!w.check()) return true;
              w.resolve();
              return false;
            });
          }
        })();
        return;
      } catch (error) {
        if (i >= 100) throw error;
        await pause(100);
      }
    }
  }

  /** Entries per node, of the keys `match` accepts (all when absent). */
  count(match?: (key: string) => boolean): Map<string, number> {
    const out = new Map<string, number>();
    for (const [key, node] of this.#byKey) {
      if (match && !match(key)) continue;
      out.set(node, (out.get(node) ?? 0) + 1);
    }
    return out;
  }

  /** Follow the keys `node` holds now until each is held by one of `targets` (see `left`). */
  follow(node: string, targets: string[]): number {
    this.#pending = new Set([...this.#byKey].filter(([, n]) => n === node).map(([k]) => k));
    this.#targets = new Set(targets);
    return this.#pending.size;
  }

  /** How many of the followed keys have not reached a target yet. */
  left(): number {
    return this.#pending.size;
  }

  /** Resolves true once `check` holds (checked on every change), false after `timeoutMs`. */
  until(check: () => boolean, timeoutMs: number): Promise<boolean> {
    if (check()) return Promise.resolve(true);
    const { promise, resolve } = Promise.withResolvers<boolean>();
    const timer = setTimeout(() => {
      this.#waiters = this.#waiters.filter((w) => w !== waiter);
      resolve(false);
    }, timeoutMs);
    const waiter = {
      check,
      resolve: () => {
        clearTimeout(timer);
        resolve(true);
      },
    };
    this.#waiters.push(waiter);
    return promise;
  }

  async close(): Promise<void> {
    this.#stop?.();
    await this.#done?.catch(() => {});
    await this.#nc.close();
  }
}

/** The RSS of a process after a settle, MiB. */
async function settledRss(pid: number, settleMs: number): Promise<number> {
  await pause(settleMs);
  return rssOf(pid) / MIB;
}

/** Baseline: one node alone (no cluster) holding N daemons; its RSS once they are all connected. */
async function alone(
  checkout: Checkout,
  count: number,
  settleMs: number,
  log: (m: string) => void,
): Promise<{ rss: number; held: number }> {
  const node = await startController(checkout);
  // In stages of STAGE, as the cluster's nodes are filled (each stage once the previous is all connected).
  const fleets = stages(count).map((size, k) => new Fleet(checkout, [node.wsUrl], size, `al${k}-`));
  const held = async () =>
    (await Promise.all(fleets.map((f) => f.stats()))).reduce((sum, s) => sum + s.connected[0]!, 0);
  try {
    await Promise.all(fleets.map((f) => f.started()));
    for (const fleet of fleets) {
      await fleet.go(SETUP_RATE);
      if (!await fleet.until((s) => s.connected[0] === fleet.count, STAGE_LIMIT_MS)) {
        // Reported, not fatal: the baseline then names the count it was measured with.
        log(`cluster-capacity: the single node got only ${await held()}`);
        break;
      }
    }
    const rss = await settledRss(node.child.pid, settleMs);
    return { rss, held: await held() };
  } finally {
    for (const fleet of fleets) await fleet.close();
    await node.stop("SIGTERM");
  }
}

interface Measured {
  /** RSS of each node holding N daemons, MiB. */
  rss: number[];
  /** Daemons each node held when its RSS was read (N each, unless some moved on a handshake timeout). */
  held: number[];
  /** Daemons A held when it was killed. */
  onA: number;
  /** SIGKILL to the last of A's daemons registered on B or C (registry), ms; null when not all within LIMIT_MS. */
  registeredMs: number | null;
  /** SIGKILL to the last of A's daemons welcomed by B or C (the daemons' view), ms. */
  welcomedMs: number | null;
  /** Peak welcomes per second on B and C together, and the mean over the failover. */
  peak: number;
  mean: number;
  attempts: number;
  cpu: { b: number; c: number; fleet: number };
  /** Entries of A left in the registry once its key expired (stale: should be 0). */
  staleOfA: number;
  trim: number;
}

async function cluster(
  checkout: Checkout,
  natsUrl: string,
  count: number,
  settleMs: number,
  log: (m: string) => void,
): Promise<Measured | { reason: string }> {
  const flags = (name: string) => [
    "--cluster",
    natsUrl,
    "--cluster-name",
    name,
    "--cluster-heartbeat-ms",
    String(HEARTBEAT_MS),
    ...(NODE_LOG ? ["--log-level", NODE_LOG] : []),
  ];
  const trim = Number(
    Deno.env.get("BENCH_CAPACITY_TRIM") ??
      Math.max(0, Math.min(count, count + Math.ceil(count / 2) - SURVIVOR_MAX)),
  );
  const nodes: Awaited<ReturnType<typeof startController>>[] = [];
  const fleets: Fleet[] = [];
  let registry: RegistryWatch | undefined;
  try {
    for (const name of ["cap-a", "cap-b", "cap-c"]) {
      const profile = name === "cap-b" && PROFILE_B
        ? ["--cpu-prof", `--cpu-prof-dir=${PROFILE_B}`]
        : [];
      nodes.push(await startController(checkout, 0, flags(name), profile));
    }
    const [a, b, c] = nodes as [typeof nodes[0], typeof nodes[0], typeof nodes[0]];
    registry = await RegistryWatch.open(natsUrl);
    // A's daemons know all three nodes (A first, then B and C in varied order); so do B's and C's. Each node's
    // share comes in stages of STAGE daemons (one helper process each); B's and C's last stage is the TRIM let go
    // before the kill.
    const urls = [[a.wsUrl, b.wsUrl, c.wsUrl], [b.wsUrl, c.wsUrl, a.wsUrl], [
      c.wsUrl,
      a.wsUrl,
      b.wsUrl,
    ]];
    const perNode: Fleet[][] = ["ka", "kb", "kc"].map((prefix, n) => {
      const sizes = stages(n === 0 ? count : count - trim);
      if (n > 0 && trim > 0) sizes.push(...stages(trim));
      return sizes.map((size, k) => new Fleet(checkout, urls[n]!, size, `${prefix}${k}-`));
    });
    const trimStages = trim > 0 ? stages(trim).length : 0;
    const groups = perNode.map((g, n) => n === 0 ? g : g.slice(0, g.length - trimStages));
    const trimmed = perNode.slice(1).flatMap((g) => g.slice(g.length - trimStages));
    fleets.push(...perNode.flat());
    await Promise.all(fleets.map((f) => f.started()));
    const startedAt = Date.now();
    const total = () => [...registry!.count().values()].reduce((x, y) => x + y, 0);
    let cpuBefore = { nodes: nodes.map((n) => cpuOf(n.child.pid)), fleet: 0, at: Date.now() };
    cpuBefore.fleet = fleets.reduce((sum, f) => sum + f.cpu(), 0);
    const progress = setInterval(() => {
      const now = JSON.stringify(Object.fromEntries(registry!.count()));
      // CPU share of each node and of all the simulated daemons since the previous line (1.0 = one core).
      const cpuNow = {
        nodes: nodes.map((n) => cpuOf(n.child.pid)),
        fleet: fleets.reduce((sum, f) => sum + f.cpu(), 0),
        at: Date.now(),
      };
      const span = cpuNow.at - cpuBefore.at;
      const share = (x: number, y: number) => ((x - y) / span).toFixed(2);
      log(
        `cluster-capacity: setting up, registry ${now}; CPU nodes ${
          cpuNow.nodes.map((c, i) => share(c, cpuBefore.nodes[i]!)).join(", ")
        }, daemons ${share(cpuNow.fleet, cpuBefore.fleet)}; load ${Deno.loadavg()[0]!.toFixed(1)}`,
      );
      cpuBefore = cpuNow;
    }, 10_000);
    // Stage by stage: the next starts once the registry holds every daemon started so far (a fleet connecting as
    // fast as the machine registers it, not faster: past that, handshakes and heartbeats time out and links churn).
    // Under load a handshake can time out and its daemon go on to its next URL: counted wherever it is.
    let expected = 0;
    // The first stage at a fifth of the setup rate; each next one at most 1.5 times faster (see below).
    let rate = SETUP_RATE / 5;
    const registered = () => total() === expected;
    try {
      for (let k = 0;; k++) {
        const starting = perNode.map((g) => g[k]).filter((f): f is Fleet => f !== undefined);
        if (starting.length === 0) break;
        const size = starting.reduce((sum, f) => sum + f.count, 0);
        expected += size;
        const stageAt = Date.now();
        await Promise.all(starting.map((f) => f.go(rate / starting.length)));
        const done = await registry.until(registered, STAGE_LIMIT_MS);
        if (!done) {
          return {
            reason: `only ${JSON.stringify(Object.fromEntries(registry.count()))} of ${expected} ` +
              `(${count} per node in all) were registered ${STAGE_LIMIT_MS / 1000} s after stage ${
                k + 1
              } started connecting at ${rate.toFixed(0)}/s (load average ${
                Deno.loadavg()[0]!.toFixed(1)
              }); try a smaller BENCH_CAPACITY_DAEMONS`,
          };
        }
        // The next stage connects at about the rate this one was registered at (1.5×, at most SETUP_RATE): on a
        // machine busy with other work the connects do not queue up past the handshake timeout.
        rate = Math.max(100, Math.min(SETUP_RATE, 1.5 * size / ((Date.now() - stageAt) / 1_000)));
      }
    } finally {
      clearInterval(progress);
    }
    log(`cluster-capacity: 3 × ${count} registered after ${Date.now() - startedAt} ms`);
    await pause(settleMs);
    const rss = nodes.map((n) => rssOf(n.child.pid) / MIB);
    const held = ["cap-a", "cap-b", "cap-c"].map((n) => registry!.count().get(n) ?? 0);
    log(
      `cluster-capacity: RSS per node ${rss.map((r) => r.toFixed(0)).join(", ")} MiB, holding ` +
        held.join(", "),
    );
    // Make room on B and C for A's daemons (descriptors), then wait for the registry to say so.
    for (const f of trimmed) await f.close();
    fleets.splice(fleets.length - trimmed.length);
    expected -= 2 * trim;
    if (!await registry.until(registered, LIMIT_MS)) {
      return {
        reason: `B and C let go of ${trim} daemons each, yet the registry still says ` +
          JSON.stringify(Object.fromEntries(registry.count())),
      };
    }
    await pause(HEARTBEAT_MS);
    // Forget the welcomes so far; A's URL is index 0, 2 and 1 in the three groups' lists.
    const live = groups.flat();
    const others = groups.flatMap((g, n) => g.map(() => [[1, 2], [0, 1], [0, 2]][n]!));
    await Promise.all(live.map((f) => f.welcomes()));
    const attempts0 = await Promise.all(live.map(async (f) => (await f.stats()).attempts));
    const fleetCpu = () => live.reduce((sum, f) => sum + f.cpu(), 0);
    const cpu0 = { b: cpuOf(b.child.pid), c: cpuOf(c.child.pid), fleet: fleetCpu() };
    const onA = registry.follow("cap-a", ["cap-b", "cap-c"]);
    const overflows0 = netstat("ListenOverflows");
    const synRetrans0 = netstat("TCPSynRetrans");
    const machine0 = machineCpu();
    const killedAt = Date.now();
    await a.stop("SIGKILL");
    const movedInTime = await registry.until(() => registry!.left() === 0, LIMIT_MS);
    const registeredMs = movedInTime ? Date.now() - killedAt : null;
    const machine1 = machineCpu();
    const cpu = {
      b: cpuOf(b.child.pid) - cpu0.b,
      c: cpuOf(c.child.pid) - cpu0.c,
      fleet: fleetCpu() - cpu0.fleet,
    };
    const welcomedAll = movedInTime;
    const lists = await Promise.all(
      live.map((f, i) => f.welcomes(...others[i]!, 1000, 1001, 1002)),
    );
    const times = lists.map((l) => l.slice(0, -3)).flat(2).sort((x, y) => x - y);
    const starts = lists.map((l) => l.slice(-3)).flat(2).sort((x, y) => x - y);
    const attempts = (await Promise.all(live.map(async (f) => (await f.stats()).attempts)))
      .reduce((sum, n, i) => sum + n - attempts0[i]!, 0);
    const span = times.length > 1 ? times[times.length - 1]! - times[0]! : 1;
    log(
      `cluster-capacity: after A's SIGKILL: registered on B/C in ${
        registeredMs ?? "(not all)"
      } ms, ` +
        `${times.length} welcomed by B and C (A held ${onA}), last at ${
          times.length ? times[times.length - 1]! - killedAt : "-"
        } ms; ${attempts} attempts; CPU B ${cpu.b.toFixed(0)} ms, C ${cpu.c.toFixed(0)} ms, ` +
        `daemons ${cpu.fleet.toFixed(0)} ms; load average ${Deno.loadavg()[0]!.toFixed(1)}`,
    );
    // Where the time goes: welcomes on B and C per 250 ms after the kill (arrivals paced by the daemons' jitter, or
    // a node that cannot keep up).
    const perSlice = (list: number[]) => {
      const slices: number[] = [];
      for (const t of list) {
        const k = Math.max(0, Math.floor((t - killedAt) / 250));
        while (slices.length <= k) slices.push(0);
        slices[k]!++;
      }
      return slices.join(" ");
    };
    log(
      `cluster-capacity: per 250 ms after the kill, connect attempts begun: ${perSlice(starts)}; ` +
        `welcomes: ${perSlice(times)}; ` +
        `connections the kernel dropped with a full accept queue meanwhile: ${
          netstat("ListenOverflows") - overflows0
        }, SYNs sent again: ${netstat("TCPSynRetrans") - synRetrans0}; the machine's cores were ${
          (100 * (machine1.busy - machine0.busy) / (machine1.total - machine0.total)).toFixed(0)
        } % busy until all were registered`,
    );
    // A's key leaves the nodes bucket three heartbeats after its last beat; then no entry of A may be left.
    await pause(3 * HEARTBEAT_MS + 2_000);
    const staleOfA = registry.count().get("cap-a") ?? 0;
    return {
      rss,
      held,
      onA,
      registeredMs,
      welcomedMs: welcomedAll && times.length ? times[times.length - 1]! - killedAt : null,
      peak: peakPerSecond(times),
      mean: times.length / (span / 1_000),
      attempts,
      cpu,
      staleOfA,
      trim,
    };
  } finally {
    for (const f of fleets) await f.close();
    // A profiled node is let close, which is when its profile is written.
    for (const n of nodes) await n.stop(PROFILE_B && n === nodes[1] ? "SIGTERM" : "SIGKILL");
    await registry?.close();
  }
}

async function run({ checkout, quick, log }: BenchContext): Promise<SectionResult> {
  if (!natsInstalled()) {
    return {
      figures: [],
      skipped: [{ id: "cluster-capacity", reason: "nats-server is not installed" }],
    };
  }
  const count = Number(Deno.env.get("BENCH_CAPACITY_DAEMONS") ?? (quick ? 300 : 15_000));
  const settleMs = quick ? 500 : 3_000;
  let bound = 2_000;
  try {
    const backoff = await import(`file://${checkout.root}/daemon/backoff.ts`) as {
      RECENT_MAX_MS?: number;
    };
    bound = backoff.RECENT_MAX_MS ?? bound;
  } catch {
    // an old checkout: the 2 s cap it had
  }
  // Diagnostics: BENCH_CAPACITY_ALONE=0 skips the single-node baseline (its figure then says so).
  const { rss: single, held } = Deno.env.get("BENCH_CAPACITY_ALONE") === "0"
    ? { rss: NaN, held: 0 }
    : await alone(checkout, count, settleMs, log);
  log(`cluster-capacity: one node alone with ${held} daemons: ${single.toFixed(0)} MiB`);
  // Diagnostics: BENCH_CAPACITY_NATS_MONITOR=PORT serves nats-server's monitoring (varz, jsz) on that port.
  const monitor = Deno.env.get("BENCH_CAPACITY_NATS_MONITOR");
  await using nats = await TestNats.start(monitor ? ["-m", monitor] : [], {
    env: { GOGC: NATS_GOGC },
  });
  log(
    `cluster-capacity: nats-server with GOGC=${NATS_GOGC}; the nodes' accept queues are capped by ` +
      `net.core.somaxconn = ${somaxconn()}`,
  );
  const m = await cluster(checkout, nats.url, count, settleMs, log);
  if ("reason" in m) {
    return { figures: [], skipped: [{ id: "cluster-capacity", reason: m.reason }] };
  }
  const mean = m.rss.reduce((x, y) => x + y, 0) / m.rss.length;
  const notAll = m.registeredMs === null ? `; not all within ${LIMIT_MS / 1000} s` : "";
  const figures: Figure[] = [
    {
      id: "cluster-capacity.rss_per_node",
      label: `RSS of a node holding ~${count} of 3 × ${count} daemons (mean of 3: ${
        m.rss.map((r) => r.toFixed(0)).join(", ")
      } MiB, holding ${m.held.join(", ")})`,
      unit: "MiB",
      value: mean,
      baseline: single,
      baselineLabel: `one node alone (no cluster) holding ${held}${
        held < count ? ` (of ${count}: not all connected within ${LIMIT_MS / 1000} s)` : ""
      }`,
      comparison: "growth",
      better: "lower",
      goal: "bounded: the registry cache of the other nodes' daemons",
    },
    {
      id: "cluster-capacity.all_back_ms",
      label: `time until all ${m.onA} daemons of a SIGKILLed node are registered on the others ` +
        `(${m.attempts} connect attempts; ${m.staleOfA} stale entries of it after its key expired${notAll})`,
      unit: "ms",
      value: m.registeredMs ?? LIMIT_MS,
      baseline: m.welcomedMs ?? LIMIT_MS,
      baselineLabel: "until all were welcomed by the others (the daemons' view)",
      comparison: "overhead",
      better: "lower",
      goal: `≤ ${bound + 2_000} ms (reconnect backoff bound ${bound} ms + 2 s)`,
    },
    {
      id: "cluster-capacity.peak_connects",
      label: `peak connects per second on the 2 surviving nodes (busiest ${PEAK_WINDOW_MS} ms; ` +
        `they held ${m.held[1]! - m.trim} and ${m.held[2]! - m.trim} before)`,
      unit: "/s",
      value: m.peak,
      baseline: m.mean,
      baselineLabel: "mean connects per second over that failover",
      comparison: "ratio",
      better: "lower",
      goal: `jitter ceiling ≈ ${count}/s on average (first retry uniform over 1 s, every retry ≤ ` +
        `${bound} ms); a busy ${PEAK_WINDOW_MS} ms may run above it`,
    },
  ];
  return { figures, skipped: [] };
}

/** The section. */
export const clusterCapacity: Section = {
  name: "cluster-capacity",
  about:
    "3 nodes × N simulated daemons: RSS per node vs one node alone; a node SIGKILLed: time until its daemons are registered elsewhere",
  run,
};

/**
 * A counter of the kernel's TCP extensions (Linux `/proc/net/netstat`), else NaN: `ListenOverflows` counts
 * connections dropped because a listener's accept queue was full, `TCPSynRetrans` the SYNs sent again.
 */
function netstat(name: string): number {
  try {
    const lines = Deno.readTextFileSync("/proc/net/netstat").split("\n");
    for (let i = 0; i + 1 < lines.length; i += 2) {
      const names = lines[i]!.split(/\s+/);
      const at = names.indexOf(name);
      if (at > 0) return Number(lines[i + 1]!.split(/\s+/)[at]);
    }
  } catch {
    // not Linux
  }
  return NaN;
}

/** Linux's cap on a listening socket's accept queue (`net.core.somaxconn`), or "unknown". */
function somaxconn(): string {
  try {
    return Deno.readTextFileSync("/proc/sys/net/core/somaxconn").trim();
  } catch {
    return "unknown";
  }
}

/** The machine's CPU time so far, busy and in all (Linux `/proc/stat`, in clock ticks), else NaN. */
function machineCpu(): { busy: number; total: number } {
  try {
    const fields = Deno.readTextFileSync("/proc/stat").split("\n")[0]!.trim().split(/\s+/).slice(1)
      .map(Number);
    const total = fields.slice(0, 8).reduce((x, y) => x + y, 0);
    return { busy: total - fields[3]! - fields[4]!, total };
  } catch {
    return { busy: NaN, total: NaN };
  }
}
