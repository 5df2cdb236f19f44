// Controller RSS with many connected daemons (fake ones that speak the handshake and answer pings), against a
// bare Deno WebSocket echo server holding the same number of sockets, each in its own process.
//
// The baseline is fair when it carries the traffic an idle fleet does: the controller pings every link it has sent
// nothing to for an interval (5 s by default) and each daemon answers with a pong (daemons send no pings of their
// own). So the echo server's peers ("heartbeat" sims) each send one small message per interval, phased by when they
// opened, and the echo server sends it back: one message each way per socket per interval, as on the sandd links.
// The peers never answer the echo (peers that echoed the echo made every socket ping-pong forever: a storm, not a
// baseline; fully silent peers made it an idle server at ~1 % of a core, a ratio with nothing to compare).
//
// What an idle link costs the controller (read from the code and measured with heap snapshots after a GC, 1,000 vs
// 3,000 links, loaded machine): per interval one heartbeat look (the timing wheel in server/_heartbeat.ts), one
// `ping` sent (a constant string) and one `pong` received (taken without a JSON parse): the same one message each
// way as the baseline. Per link the JS heap holds ~4.2 KB (the bare echo server's sockets ~3.2 KB): Deno's own
// WebSocket state (its event listeners, promises, the read loop's generator) is most of both; the controller adds
// the Connection (~200 B, the heartbeat's wheel state included), its DaemonInfo, labels and connect Date (96 B), and
// the accepted socket's state (72 B). RSS grows ~23 KB per link against ~20.5 KB for the echo server: most of a
// link's memory is native (socket buffers), not JavaScript.
// Snapshot diffs of 0 vs 2,000 links (2026-12-02, node:v8 writeHeapSnapshot, JIT code included, ~150-200 B/link of
// noise): the echo server 4,151 B/link; the controller 4,771 B/link before the heartbeat's per-link record and map
// entry went (4,707) and before the accept closures were replaced by one shared handler pair (4,601). The
// controller's fixed heap is ~8.5 MB larger than the echo server's (its modules), whatever the link count.
// Where the idle stalls at 19,000 links go (--trace-gc on the controller, loaded machine): not the heartbeat sweep
// (it yields every 4 ms, and the pongs it provokes come back at most ~150 per event-loop turn, one slice's pings),
// but garbage collection: scavenges every 4-10 s of 53-206 ms (each copies the young state of every socket that
// received a message since the last one: Deno's per-socket read promises, alive until the next message) and an
// incremental mark-compact of a 234 MB heap (91 MB live) whose final pause was 92 ms. The levers left are bytes per
// link and per message (Deno's WebSocket read loop holds 3 promises, 2 reactions and a generator per socket).
// On a quiet machine (load 1.3, 5,000 idle links, 20 s): the longest 10 ms timer gap (57 ms) was a 32 ms scavenge
// (the other gaps 26-28 ms, with no GC); scavenges came every ~10 s and promoted ~5 MB each (old space +0.5 MB/s).
// Heap per link with 5,000 links (memoryUsage after gc(), same run): 4,419 B before this branch, 4,218 B after.
//
// The exec rows run twice: on the one real daemon (spawns of `true`, which cap at a few hundred a second on two
// cores), and on a simulated daemon that answers a spawn at once (the controller's own cost per exec, which is what
// a crowd of connected daemons can slow down), each with the crowd connected and again with 1,000 connected.
import type { BenchContext, Section } from "./_context.ts";
import { pause, rssOf, type SectionResult, toMiB } from "./_stats.ts";
import type { Checkout } from "./_checkout.ts";

const here = new URL(".", import.meta.url).pathname;

/**
 * Extra `deno run` flags for the sandd controller process, from BENCH_CONTROLLER_FLAGS (space-separated): e.g.
 * `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile the controller at scale. None for the echo baseline.
 */
export function controllerFlags(kind: "sandd" | "echo"): string[] {
  const flags = Deno.env.get("BENCH_CONTROLLER_FLAGS")?.trim();
  return kind === "sandd" && flags ? flags.split(/\s+/) : [];
}

/** The Server's default `heartbeatMs`: the interval the echo baseline's peers send their heartbeat at. */
const HEARTBEAT_MS = 5_000;

/**
 * What simulated daemons offer, comma-separated: the revised subprotocol first when the checkout has one, as the
 * real daemon does (a revision-1 link carries a process's eofs on its exit: 3 messages per exec, not 5).
 */
export async function offeredSubprotocols(checkout: Checkout): Promise<string> {
  try {
    const version = await import(`file://${checkout.root}/protocol/version.ts`) as {
      SUBPROTOCOL_REVISED?: unknown;
    };
    if (typeof version.SUBPROTOCOL_REVISED === "string") {
      return `${version.SUBPROTOCOL_REVISED},${checkout.subprotocol}`;
    }
  } catch {
    // an older checkout: the plain subprotocol only
  }
  return checkout.subprotocol;
}

export function raised(args: string[]): Deno.ChildProcess {
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

/** Reads a child's stdout line by line; `close` discards the rest. */
export function lineReader(
  stream: ReadableStream<Uint8Array>,
): { line: () => Promise<string>; close: () => Promise<void> } {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const close = () => reader.cancel().catch(() => {});
  const line = async () => {
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`Helper process ended before a line (${JSON.stringify(text)})`);
      text += value;
    }
    const at = text.indexOf("\n");
    const line = text.slice(0, at).trim();
    text = text.slice(at + 1);
    return line;
  };
  return { line, close };
}

/** CPU time a process has used, in milliseconds (schedstat: nanoseconds on the CPU). */
function cpuOf(pid: number): number {
  return Number(Deno.readTextFileSync(`/proc/${pid}/schedstat`).split(" ")[0]) / 1e6;
}

interface AtScale {
  /** RSS in bytes once every socket is up and settled. */
  rss: number;
  /** Share of one core used while idle over the window, in percent. */
  cpu: number;
  /** The longest gap between ticks of a 10 ms timer over the window, in ms. */
  longestTick: number;
  /**
   * sandd only: execs on one real daemon with every socket connected, then with `fleetSize` left (0: as `alone`),
   * then with the crowd gone.
   */
  exec?: { crowd: ExecLoad; fleet: ExecLoad; fleetSize: number; alone: ExecLoad };
  /**
   * sandd only: execs on a simulated daemon (answering at once) with every socket connected, and with `fleetSize`
   * left (undefined when there is no smaller fleet: the quick run).
   */
  simExec?: { crowd: ExecLoad; fleet?: ExecLoad };
}

/** What the controller's `exec` command reports. */
interface ExecLoad {
  perSecond: number;
  p50: number;
  p99: number;
  max: number;
  /** The first failure, which ended the run early (a daemon dropped on a loaded machine). */
  error?: string;
}

/** The fleet the exec rate is compared with (the "as at 1,000 daemons"). */
const SMALL_FLEET = 1_000;

async function measure(
  checkout: Checkout,
  kind: "sandd" | "echo",
  sockets: number,
  settle: number,
  window: number,
  load: { seconds: number; inFlight: number },
): Promise<AtScale> {
  const controller = raised([
    "run",
    "-A",
    ...checkout.runFlags,
    ...controllerFlags(kind),
    `${here}_controller.ts`,
    kind,
    checkout.root,
  ]);
  const controllerOut = lineReader(controller.stdout);
  const encoder = new TextEncoder();
  const control = controller.stdin.getWriter();
  const ask = async <T>(command: string): Promise<T> => {
    await control.write(encoder.encode(`${command}\n`));
    const answer = JSON.parse(await controllerOut.line()) as T & { error?: string };
    if (answer.error !== undefined) {
      // Reported, not fatal, like dropped links: the figure says how much ran.
      console.error(`bench: memory: ${kind} controller, \`${command}\`: ${answer.error}`);
    }
    return answer;
  };
  const stats = () => ask<{ sockets: number; longestTickMs: number }>("stats");
  // The sandd controller also holds the one real daemon it runs the exec load on.
  const own = kind === "sandd" ? 1 : 0;
  const port = Number(await controllerOut.line());
  const url = kind === "sandd" ? `ws://127.0.0.1:${port}/ws` : `ws://127.0.0.1:${port}/`;
  // The first client holds SMALL_FLEET sockets (when there are more): the exec load runs again with only those
  // connected, the 1,000-daemon baseline of the exec rate.
  const small = sockets > SMALL_FLEET ? SMALL_FLEET : 0;
  const rest = sockets - small;
  const restCount = Math.ceil(rest / 5_000);
  const sizes = [
    ...(small > 0 ? [small] : []),
    ...Array.from(
      { length: restCount },
      (_, i) => Math.floor(rest / restCount) + (i < rest % restCount ? 1 : 0),
    ),
  ];
  const offered = kind === "sandd" ? await offeredSubprotocols(checkout) : checkout.subprotocol;
  const clients = sizes.map((n, i) =>
    raised([
      "run",
      "-A",
      `${here}_sim_daemons.ts`,
      kind === "echo" ? "heartbeat" : kind,
      url,
      String(n),
      `c${i}`,
      offered,
      String(HEARTBEAT_MS),
    ])
  );
  // A simulated daemon of the first client: connected in both the crowd and the small fleet.
  const simExec = `exec ${load.seconds} ${load.inFlight} c0-`;
  const clientOuts = clients.map((c) => lineReader(c.stdout));
  const closed = new Set<number>();
  const closeClient = async (i: number) => {
    if (closed.has(i)) return;
    closed.add(i);
    await clients[i]!.stdin.close();
    await clientOuts[i]!.close();
    await clients[i]!.status;
  };
  const closeClients = async (from = 0) => {
    for (let i = from; i < clients.length; i++) await closeClient(i);
  };
  try {
    await Promise.all(clientOuts.map((out) => out.line()));
    await pause(settle);
    const rss = rssOf(controller.pid);
    await stats();
    const cpuBefore = cpuOf(controller.pid);
    await pause(window);
    const cpu = (cpuOf(controller.pid) - cpuBefore) / window * 100;
    const after = await stats();
    if (after.sockets !== sockets + own) {
      // Reported, not fatal: a figure measured with fewer sockets is still worth a line, and says so.
      console.error(
        `bench: memory: the ${kind} controller holds ${after.sockets} sockets at the end of the idle window, ` +
          `expected ${sockets + own} (links dropped as silent)`,
      );
    }
    if (kind === "echo") return { rss, cpu, longestTick: after.longestTickMs };
    const execLoad = `exec ${load.seconds} ${load.inFlight}`;
    const crowd = await ask<ExecLoad>(execLoad);
    const simCrowd = await ask<ExecLoad>(simExec);
    // The same load with SMALL_FLEET daemons left, then once the crowd has gone (polled: the controller sees the
    // closes when it sees them).
    let fleet: ExecLoad | undefined;
    let simFleet: ExecLoad | undefined;
    if (small > 0) {
      await closeClients(1);
      while ((await stats()).sockets > small + own) await pause(100);
      fleet = await ask<ExecLoad>(execLoad);
      simFleet = await ask<ExecLoad>(simExec);
    }
    await closeClients();
    while ((await stats()).sockets > own) await pause(100);
    const alone = await ask<ExecLoad>(execLoad);
    return {
      rss,
      cpu,
      longestTick: after.longestTickMs,
      exec: { crowd, fleet: fleet ?? alone, fleetSize: small, alone },
      simExec: { crowd: simCrowd, ...(simFleet ? { fleet: simFleet } : {}) },
    };
  } finally {
    await closeClients();
    await control.close();
    await controllerOut.close();
    await controller.status;
  }
}

async function run({ checkout, quick, log }: BenchContext): Promise<SectionResult> {
  // The goal is 20,000; one process here may hold at most 20,000 descriptors (hard limit, not raisable in our
  // sandbox), so the default leaves room for the controller's own files.
  const sockets = Number(Deno.env.get("BENCH_SOCKETS") ?? (quick ? 200 : 19_000));
  const settle = quick ? 300 : 2_000;
  // Idle CPU and stalls over two heartbeat sweeps (5 s apart by default).
  const window = quick ? 500 : 11_000;
  const load = { seconds: quick ? 0.5 : 5, inFlight: quick ? 10 : 100 };
  const echo = await measure(checkout, "echo", sockets, settle, window, load);
  log(`memory: echo server ${toMiB(echo.rss).toFixed(1)} MiB with ${sockets} sockets`);
  const sandd = await measure(checkout, "sandd", sockets, settle, window, load);
  const { crowd, fleet, fleetSize, alone } = sandd.exec!;
  const sim = sandd.simExec!;
  const simLabel =
    `with ${sockets} connected daemons, ${load.inFlight} in flight on one simulated daemon (answering at once)`;
  const simBaselineLabel = sim.fleet
    ? `same controller, ${fleetSize} connected daemons`
    : "same run (no smaller fleet in a quick run)";
  const baselineLabel = "bare Deno WebSocket echo server";
  const execLabel = `with ${sockets} connected daemons, ${load.inFlight} in flight on one daemon`;
  return {
    figures: [
      {
        id: "memory.controller_rss",
        label: `controller RSS with ${sockets} connected daemons`,
        unit: "MiB",
        value: toMiB(sandd.rss),
        baseline: toMiB(echo.rss),
        baselineLabel,
        comparison: "ratio",
        better: "lower",
        goal: "≤ 1.1×",
      },
      {
        id: "memory.idle_cpu",
        label: `idle controller CPU with ${sockets} connected daemons (${window / 1000} s)`,
        unit: "% of a core",
        value: sandd.cpu,
        baseline: echo.cpu,
        baselineLabel,
        comparison: "ratio",
        better: "lower",
        goal: "≤ 1.3×",
      },
      {
        id: "memory.longest_stall",
        label:
          `controller event-loop stall with ${sockets} connected daemons (longest 10 ms timer gap)`,
        unit: "ms",
        value: sandd.longestTick,
        baseline: echo.longestTick,
        baselineLabel,
        comparison: "overhead",
        better: "lower",
        goal: "≤ 10 ms over the timer",
      },
      {
        id: "memory.exec_per_second",
        label: `exec/s ${execLabel}`,
        unit: "/s",
        value: crowd.perSecond,
        baseline: fleet.perSecond,
        baselineLabel: fleetSize > 0
          ? `same controller, ${fleetSize} connected daemons`
          : "same controller, crowd gone",
        comparison: "ratio",
        better: "higher",
        goal: "≥ 10,000/s (as at 1,000 daemons)",
      },
      {
        id: "memory.exec_per_second_alone",
        label: `exec/s with no other daemon connected, ${load.inFlight} in flight on one daemon`,
        unit: "/s",
        value: alone.perSecond,
        baseline: crowd.perSecond,
        baselineLabel: `with ${sockets} connected daemons`,
        comparison: "ratio",
        better: "higher",
        goal: "—",
      },
      {
        id: "memory.exec_p99",
        label: `exec p99 ${execLabel}`,
        unit: "ms",
        value: crowd.p99,
        baseline: alone.p99,
        baselineLabel: "same controller, crowd gone",
        comparison: "overhead",
        better: "lower",
        goal: "≤ 20 ms",
      },
      {
        id: "memory.sim_exec_per_second",
        label: `exec/s ${simLabel}`,
        unit: "/s",
        value: sim.crowd.perSecond,
        baseline: (sim.fleet ?? sim.crowd).perSecond,
        baselineLabel: simBaselineLabel,
        comparison: "ratio",
        better: "higher",
        goal: "≥ 10,000/s (as at 1,000 daemons)",
      },
      {
        id: "memory.sim_exec_p99",
        label: `exec p99 ${simLabel}`,
        unit: "ms",
        value: sim.crowd.p99,
        baseline: (sim.fleet ?? sim.crowd).p99,
        baselineLabel: simBaselineLabel,
        comparison: "overhead",
        better: "lower",
        goal: "≤ 20 ms",
      },
      {
        id: "memory.exec_max",
        label: `exec max ${execLabel}`,
        unit: "ms",
        value: crowd.max,
        baseline: alone.max,
        baselineLabel: "same controller, crowd gone",
        comparison: "overhead",
        better: "lower",
        goal: "—",
      },
    ],
    skipped: [],
  };
}

/** Controller memory at scale. */
export const memory: Section = {
  name: "memory",
  about:
    "controller RSS, idle CPU and stalls with 19,000 daemons (BENCH_SOCKETS) against a bare WebSocket echo server; exec load with and without them",
  run,
};
