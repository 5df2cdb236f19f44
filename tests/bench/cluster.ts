// The cluster over NATS: a command and a stream through a node that does not hold the daemon, against the same
// through the node that holds it, interleaved round by round (medians).
import process from "node:process";
import type { BenchContext, Section } from "./_context.ts";
import { BenchDaemon } from "./_daemon.ts";
import {
  type Figure,
  median,
  mibPerSecond,
  peakOf,
  quantile,
  resetPeak,
  type SectionResult,
  type Skipped,
  toMiB,
} from "./_stats.ts";
import { startServe } from "./cli.ts";
import type { Checkout } from "./_checkout.ts";
import { TestNats } from "../_nats.ts";
import { natsStreamFloor } from "./_nats_stream.ts";

/** Message size and credit window of the bare NATS stream (the fastest of those tried here, see _nats_stream.ts). */
const FLOOR_MESSAGE_BYTES = 128 * 1024;
const FLOOR_WINDOW_BYTES = 4 * 1024 * 1024;
/**
 * The nats-server garbage collector setting the bench runs NATS with: the one server/CLUSTER.md recommends for
 * relayed streams ("Running nats-server"). The relayed stream is also timed through a second nats-server left at
 * Go's default (`GOGC=100`), interleaved, so the table shows what the setting buys. `BENCH_NATS_GOGC` sets
 * another value.
 */
const NATS_GOGC = Deno.env.get("BENCH_NATS_GOGC") ?? "400";
import { NatsEcho } from "./_nats_echo.ts";
import { processCounters } from "./_websocket_sender.ts";
import type { Server } from "./_checkout.ts";

function natsInstalled(): boolean {
  try {
    new Deno.Command("nats-server", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync();
    return true;
  } catch {
    return false;
  }
}

/** Chunks the last {@linkcode streamRate} read (about one per data frame the daemon sent). */
let lastChunks = 0;
/** CPU time (user + system, ms) this process spent in the last {@linkcode streamRate}. */
let lastCpuMs = 0;
/** Minor page faults of this process (both nodes) in the last {@linkcode streamRate}. */
let lastFaults = 0;

/** CPU time (user + system) of this process so far, in ms. */
function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

async function streamRate(server: Server, id: string, size: number): Promise<number> {
  const t = performance.now();
  const cpu = cpuMs();
  const faults = processCounters("self").faults;
  const p = await server.spawn(id, ["head", "-c", String(size), "/dev/zero"], { stdin: false });
  let n = 0;
  lastChunks = 0;
  for await (const chunk of p.stdout) {
    n += chunk.length;
    lastChunks++;
  }
  await p.status;
  lastCpuMs = cpuMs() - cpu;
  lastFaults = processCounters("self").faults - faults;
  if (n !== size) throw new Error(`Streamed ${n} bytes, expected ${size}`);
  return mibPerSecond(n, performance.now() - t);
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Messages NATS received so far (its monitoring endpoint), or NaN. */
async function natsMessages(monitor: number): Promise<number> {
  try {
    const res = await fetch(`http://127.0.0.1:${monitor}/varz`);
    return ((await res.json()) as { in_msgs: number }).in_msgs;
  } catch {
    return NaN;
  }
}

async function run({ checkout, quick, log }: BenchContext): Promise<SectionResult> {
  if (!natsInstalled()) {
    return { figures: [], skipped: [{ id: "cluster", reason: "nats-server is not installed" }] };
  }
  const monitor = freePort();
  await using nats = await TestNats.start(["-m", String(monitor)], { env: { GOGC: NATS_GOGC } });
  await using natsDefaultGc = await TestNats.start();
  // The floor's bytes go through a nats-server of their own (same GOGC), so that each server's peak RSS is its
  // relayed streams' alone.
  await using natsFloor = await TestNats.start([], { env: { GOGC: NATS_GOGC } });
  const listen = (name: string) =>
    checkout.mod.Server.listen(
      {
        port: 0,
        cluster: { servers: nats.url, name },
      } as Parameters<typeof checkout.mod.Server.listen>[0],
    );
  let owner: Server;
  try {
    owner = await listen("bench-a");
  } catch (error) {
    return {
      figures: [],
      skipped: [{ id: "cluster", reason: `no cluster option: ${(error as Error).message}` }],
    };
  }
  const front = await listen("bench-b");
  const id = "bench-cluster";
  const daemon = new BenchDaemon(checkout, { id, url: owner.url });
  /** Two nodes on the nats-server left at the default GOGC, and a daemon of one of them. */
  const listenDefaultGc = (name: string) =>
    checkout.mod.Server.listen(
      {
        port: 0,
        cluster: { servers: natsDefaultGc.url, name },
      } as Parameters<typeof checkout.mod.Server.listen>[0],
    );
  const ownerDefaultGc = await listenDefaultGc("bench-gc-a");
  const frontDefaultGc = await listenDefaultGc("bench-gc-b");
  const idDefaultGc = "bench-cluster-gc";
  const daemonDefaultGc = new BenchDaemon(checkout, { id: idDefaultGc, url: ownerDefaultGc.url });
  try {
    await front.waitForDaemon(id, { timeout: 60_000 });
    await frontDefaultGc.waitForDaemon(idDefaultGc, { timeout: 60_000 });
    await owner.exec(id, "true");
    await front.exec(id, "true");
    // exec: rounds alternate the node (same node first in even rounds); each round also times one bare NATS
    // request/reply, the floor of what routing through another node adds.
    const rounds = quick ? 20 : 400;
    const same: number[] = [];
    const cross: number[] = [];
    const floor: number[] = [];
    await using echo = await NatsEcho.start(nats.url);
    for (let i = 0; i < 20; i++) await echo.request();
    for (let i = 0; i < rounds; i++) {
      for (
        const [server, out] of i % 2 ? [[front, cross], [owner, same]] as const : [
          [owner, same],
          [front, cross],
        ] as const
      ) {
        const t = performance.now();
        await server.exec(id, ["true"]);
        out.push(performance.now() - t);
      }
      const t = performance.now();
      await echo.request();
      floor.push(performance.now() - t);
    }
    log(
      `cluster exec p50: same node ${median(same).toFixed(3)} ms, other node ${
        median(cross).toFixed(3)
      } ms`,
    );
    // Streaming: alternate direct and through the other node.
    const size = quick ? 8 * 1024 * 1024 : 256 * 1024 * 1024;
    const direct: number[] = [];
    const relayed: number[] = [];
    /** NATS messages and chunks read per MiB of each relayed stream. */
    const perMib: number[] = [];
    const chunksPerMib: number[] = [];
    /** CPU ms this process (both nodes) spent per MiB, direct and relayed. */
    const directCpu: number[] = [];
    const relayedCpu: number[] = [];
    /** Minor page faults of this process per MiB, direct and relayed. */
    const directFaults: number[] = [];
    const relayedFaults: number[] = [];
    const mib = size / (1024 * 1024);
    /** The floor: the same bytes through NATS alone (a writer process, nats-server, a reader here; no SandD). */
    const bare: number[] = [];
    /** The relayed stream through the nats-server at the default GOGC, and each nats-server's CPU ms per MiB. */
    const relayedDefaultGc: number[] = [];
    const natsCpu: number[] = [];
    const natsDefaultGcCpu: number[] = [];
    const natsPid = natsServerPid(nats.port);
    const natsDefaultGcPid = natsServerPid(natsDefaultGc.port);
    const natsCpuMs = (pid: number) => Number.isNaN(pid) ? NaN : processCounters(pid).cpuMs;
    /** Each nats-server's peak RSS over each relayed stream alone (MiB). */
    const natsPeaks: number[] = [];
    const natsDefaultGcPeaks: number[] = [];
    for (let i = 0; i < (quick ? 1 : 3); i++) {
      bare.push(
        await natsStreamFloor(natsFloor.url, size, FLOOR_MESSAGE_BYTES, FLOOR_WINDOW_BYTES),
      );
      direct.push(await streamRate(owner, id, size));
      directCpu.push(lastCpuMs / mib);
      directFaults.push(lastFaults / mib);
      const before = await natsMessages(monitor);
      let natsBefore = natsCpuMs(natsPid);
      if (!Number.isNaN(natsPid)) resetPeak(natsPid);
      relayed.push(await streamRate(front, id, size));
      natsCpu.push((natsCpuMs(natsPid) - natsBefore) / mib);
      natsPeaks.push(Number.isNaN(natsPid) ? NaN : toMiB(peakOf(natsPid)));
      relayedCpu.push(lastCpuMs / mib);
      relayedFaults.push(lastFaults / mib);
      perMib.push(((await natsMessages(monitor)) - before) / mib);
      chunksPerMib.push(lastChunks / mib);
      natsBefore = natsCpuMs(natsDefaultGcPid);
      if (!Number.isNaN(natsDefaultGcPid)) resetPeak(natsDefaultGcPid);
      relayedDefaultGc.push(await streamRate(frontDefaultGc, idDefaultGc, size));
      natsDefaultGcCpu.push((natsCpuMs(natsDefaultGcPid) - natsBefore) / mib);
      natsDefaultGcPeaks.push(
        Number.isNaN(natsDefaultGcPid) ? NaN : toMiB(peakOf(natsDefaultGcPid)),
      );
    }
    const natsPeakRss = Math.max(...natsPeaks);
    const natsDefaultGcPeakRss = Math.max(...natsDefaultGcPeaks);
    log(
      `cluster stream through another node: nats-server GOGC=${NATS_GOGC} ${
        median(relayed).toFixed(0)
      } MiB/s, ${median(natsCpu).toFixed(2)} ms CPU/MiB, peak RSS ${
        natsPeakRss.toFixed(0)
      } MiB; default GOGC ${median(relayedDefaultGc).toFixed(0)} MiB/s, ${
        median(natsDefaultGcCpu).toFixed(2)
      } ms CPU/MiB, peak RSS ${natsDefaultGcPeakRss.toFixed(0)} MiB`,
    );
    log(
      `cluster stream: direct ${median(direct).toFixed(0)} MiB/s, relayed ${
        median(relayed).toFixed(0)
      } MiB/s; NATS messages per MiB relayed ${median(perMib).toFixed(1)} (chunks read per MiB ${
        median(chunksPerMib).toFixed(1)
      })`,
    );
    const sizeLabel = quick ? "8 MiB" : "256 MiB";
    const apart = await ownerInItsOwnProcess(
      checkout,
      front,
      nats.url,
      nats.port,
      quick,
      size,
      log,
    );
    const figures: Figure[] = [
      {
        id: "cluster.exec_p50",
        label: "exec true through another node (p50)",
        unit: "ms",
        value: median(cross),
        baseline: median(same),
        baselineLabel: "through the node holding the daemon",
        comparison: "overhead",
        better: "lower",
        goal: "≤ +0.5 ms",
      },
      {
        id: "cluster.nats_request_p50",
        label: "floor: a bare NATS request/reply between two connections (no SandD), p50",
        unit: "ms",
        value: median(floor),
        baseline: 0,
        baselineLabel: "nothing",
        comparison: "overhead",
        better: "lower",
        goal: "informational: what any request routed through NATS adds here",
      },
      {
        id: "cluster.exec_p99",
        label: "exec true through another node (p99)",
        unit: "ms",
        value: quantile(cross, 0.99),
        baseline: quantile(same, 0.99),
        baselineLabel: "through the node holding the daemon",
        comparison: "overhead",
        better: "lower",
        goal: "bounded",
      },
      {
        id: "cluster.stream_mib_per_second",
        label: `stream ${sizeLabel} through another node`,
        unit: "MiB/s",
        value: median(relayed),
        baseline: median(direct),
        baselineLabel: "through the node holding the daemon",
        comparison: "ratio",
        better: "higher",
        goal: "≥ 0.7×",
      },
      {
        id: "cluster.stream_default_gc_mib_per_second",
        label: `stream ${sizeLabel} through another node, nats-server at Go's default GOGC=100`,
        unit: "MiB/s",
        value: median(relayedDefaultGc),
        baseline: median(direct),
        baselineLabel: "through the node holding the daemon",
        comparison: "ratio",
        better: "higher",
        goal: `informational: the rows above run nats-server with GOGC=${NATS_GOGC}`,
      },
      {
        id: "cluster.nats_cpu_gogc_ms_per_mib",
        label:
          `CPU of nats-server per MiB of a ${sizeLabel} stream through another node, GOGC=${NATS_GOGC}`,
        unit: "ms",
        value: median(natsCpu),
        baseline: median(natsDefaultGcCpu),
        baselineLabel: "the same at the default GOGC=100 (interleaved)",
        comparison: "ratio",
        better: "lower",
        goal: "informational",
      },
      {
        id: "cluster.nats_peak_rss_gogc_mib",
        label:
          `peak RSS of nats-server during one of those relayed streams (the highest), GOGC=${NATS_GOGC}`,
        unit: "MiB",
        value: natsPeakRss,
        baseline: natsDefaultGcPeakRss,
        baselineLabel: "the same at the default GOGC=100",
        comparison: "ratio",
        better: "lower",
        goal: "informational: what the setting costs",
      },
      {
        id: "cluster.nats_stream_mib_per_second",
        label:
          `floor: ${sizeLabel} through NATS alone (a writer process → nats-server → a reader, credit ` +
          `flow control, ${FLOOR_MESSAGE_BYTES / 1024} KiB messages, ${
            FLOOR_WINDOW_BYTES / 1024 / 1024
          } MiB window; no SandD)`,
        unit: "MiB/s",
        value: median(bare),
        baseline: median(direct),
        baselineLabel: "a stream through the node holding the daemon",
        comparison: "ratio",
        better: "higher",
        goal: "informational: the most a stream routed through NATS can keep of a direct one here",
      },
    ];
    figures.push({
      id: "cluster.stream_cpu_ms_per_mib",
      label:
        `CPU of both nodes (one process) per MiB of a ${sizeLabel} stream through another node`,
      unit: "ms",
      value: median(relayedCpu),
      baseline: median(directCpu),
      baselineLabel: "through the node holding the daemon",
      comparison: "ratio",
      better: "lower",
      goal: "bounded",
    });
    figures.push({
      id: "cluster.stream_faults_per_mib",
      label:
        `minor page faults of both nodes (one process) per MiB of a ${sizeLabel} stream through another node`,
      unit: "faults/MiB",
      value: median(relayedFaults),
      baseline: median(directFaults),
      baselineLabel: "through the node holding the daemon",
      comparison: "overhead",
      better: "lower",
      goal: "—",
    });
    if (!Number.isNaN(median(perMib))) {
      figures.push({
        id: "cluster.stream_nats_messages_per_mib",
        label: `NATS messages per MiB of a ${sizeLabel} stream through another node`,
        unit: "messages",
        value: median(perMib),
        baseline: median(chunksPerMib),
        baselineLabel: "chunks the reader got per MiB (about the daemon's data frames)",
        comparison: "ratio",
        better: "lower",
        goal: "fewer than one per data frame",
      });
    }
    // 3 × 15,000 daemons and the kill-to-back time: section cluster-capacity (tests/bench/cluster_capacity.ts).
    const skipped: Skipped[] = [];
    if ("reason" in apart) {
      skipped.push({ id: "cluster.process", reason: apart.reason });
    } else {
      figures.push(
        {
          id: "cluster.process_exec_p50",
          label: "exec true through another node in its own process (p50)",
          unit: "ms",
          value: median(apart.crossExec),
          baseline: median(apart.localExec),
          baselineLabel: "a daemon of the node itself",
          comparison: "overhead",
          better: "lower",
          goal: "≤ +0.5 ms",
        },
        {
          id: "cluster.process_nats_request_p50",
          label:
            "floor: a bare NATS request/reply answered by another process (no SandD), p50, interleaved with the above",
          unit: "ms",
          value: median(apart.floorExec),
          baseline: 0,
          baselineLabel: "nothing",
          comparison: "overhead",
          better: "lower",
          goal: "informational: what routing a request to a node in another process adds here",
        },
        {
          id: "cluster.process_stream_mib_per_second",
          label: `stream ${sizeLabel} through another node in its own process`,
          unit: "MiB/s",
          value: median(apart.crossRates),
          baseline: median(apart.localRates),
          baselineLabel: "a daemon of the node itself",
          comparison: "ratio",
          better: "higher",
          goal: "≥ 0.7×",
        },
        {
          id: "cluster.process_reader_cpu_ms_per_mib",
          label:
            `CPU of the reading node per MiB of a ${sizeLabel} stream relayed from a node in its own process`,
          unit: "ms",
          value: median(apart.cross.reader.cpu),
          baseline: median(apart.local.reader.cpu),
          baselineLabel: "the same node reading a daemon of its own",
          comparison: "ratio",
          better: "lower",
          goal: "bounded",
        },
        {
          id: "cluster.process_reader_faults_per_mib",
          label:
            `minor page faults of the reading node per MiB of a ${sizeLabel} stream relayed from a node in its own process`,
          unit: "faults/MiB",
          value: median(apart.cross.reader.faults),
          baseline: median(apart.local.reader.faults),
          baselineLabel: "the same node reading a daemon of its own",
          comparison: "overhead",
          better: "lower",
          goal: "—",
        },
        {
          id: "cluster.process_owner_cpu_ms_per_mib",
          label:
            `CPU of the owner node (its own process) per MiB it relays of a ${sizeLabel} stream`,
          unit: "ms",
          value: median(apart.cross.owner.cpu),
          baseline: median(apart.local.reader.cpu),
          baselineLabel: "the reading node per MiB of a direct stream",
          comparison: "ratio",
          better: "lower",
          goal: "bounded",
        },
        {
          id: "cluster.process_owner_faults_per_mib",
          label:
            `minor page faults of the owner node (its own process) per MiB it relays of a ${sizeLabel} stream`,
          unit: "faults/MiB",
          value: median(apart.cross.owner.faults),
          baseline: median(apart.local.reader.faults),
          baselineLabel: "the reading node per MiB of a direct stream",
          comparison: "overhead",
          better: "lower",
          goal: "—",
        },
        {
          id: "cluster.process_nats_cpu_ms_per_mib",
          label: `CPU of nats-server per MiB of a ${sizeLabel} stream relayed between two nodes`,
          unit: "ms",
          value: median(apart.cross.nats.cpu),
          baseline: 0,
          baselineLabel: "nothing (a direct stream does not use NATS)",
          comparison: "overhead",
          better: "lower",
          goal: "informational",
        },
      );
    }
    return { figures, skipped };
  } finally {
    await daemon.stop();
    await daemonDefaultGc.stop();
    await front.close();
    await owner.close();
    await frontDefaultGc.close();
    await ownerDefaultGc.close();
  }
}

/** What {@linkcode ownerInItsOwnProcess} measured. */
interface Apart {
  crossExec: number[];
  localExec: number[];
  /** A bare NATS request/reply answered by another process (the floor of `crossExec`), ms. */
  floorExec: number[];
  crossRates: number[];
  localRates: number[];
  /** CPU ms and minor page faults per MiB of each process, by process, for the relayed and the direct streams. */
  cross: Record<ProcessName, { cpu: number[]; faults: number[] }>;
  local: Record<ProcessName, { cpu: number[]; faults: number[] }>;
}

/** The processes a relayed stream goes through. */
type ProcessName = "reader" | "owner" | "nats" | "daemon";

/** The pid of the `nats-server` listening on `port` (NaN when not found). */
function natsServerPid(port: number): number {
  try {
    const out = new Deno.Command("pgrep", { args: ["-f", `nats-server .*-p ${port}`] })
      .outputSync();
    return Number(new TextDecoder().decode(out.stdout).trim().split("\n")[0] || NaN);
  } catch {
    return NaN;
  }
}

/** Stream through `server` while counting the CPU and faults of each process (per MiB). */
async function streamCounted(
  server: Server,
  id: string,
  size: number,
  pids: Record<ProcessName, number | "self">,
  into: Record<ProcessName, { cpu: number[]; faults: number[] }>,
): Promise<number> {
  const read = () => {
    const out = {} as Record<ProcessName, { faults: number; cpuMs: number }>;
    for (const [name, pid] of Object.entries(pids) as [ProcessName, number | "self"][]) {
      out[name] = Number.isNaN(pid) ? { faults: NaN, cpuMs: NaN } : processCounters(pid);
    }
    return out;
  };
  const before = read();
  const rate = await streamRate(server, id, size);
  const after = read();
  const mib = size / (1024 * 1024);
  for (const name of Object.keys(pids) as ProcessName[]) {
    into[name].cpu.push((after[name].cpuMs - before[name].cpuMs) / mib);
    into[name].faults.push((after[name].faults - before[name].faults) / mib);
  }
  return rate;
}

/** Empty per-process counters. */
function perProcess(): Record<ProcessName, { cpu: number[]; faults: number[] }> {
  return {
    reader: { cpu: [], faults: [] },
    owner: { cpu: [], faults: [] },
    nats: { cpu: [], faults: [] },
    daemon: { cpu: [], faults: [] },
  };
}

/**
 * The same figures with the owner in its own process (a `sandd serve --cluster` child), as nodes run in a real
 * deployment: `front` reaches one daemon through that node and another daemon of its own, interleaved. In the
 * in-process figures above, a relayed byte is handled twice on the bench's one event loop.
 */
async function ownerInItsOwnProcess(
  checkout: Checkout,
  front: Server,
  natsUrl: string,
  natsPort: number,
  quick: boolean,
  size: number,
  log: (line: string) => void,
): Promise<Apart | { reason: string }> {
  let serve: Awaited<ReturnType<typeof startServe>>;
  try {
    serve = await startServe(checkout.daemonMain, checkout.daemonFlags, [
      "--cluster",
      natsUrl,
      "--cluster-name",
      "bench-apart",
    ]);
  } catch (error) {
    return { reason: `sandd serve --cluster did not start: ${(error as Error).message}` };
  }
  const far = "bench-cluster-far";
  const near = "bench-cluster-near";
  const farDaemon = new BenchDaemon(checkout, { id: far, url: serve.wsUrl });
  const nearDaemon = new BenchDaemon(checkout, { id: near, url: front.url });
  try {
    await front.waitForDaemon(far, { timeout: 60_000 });
    await front.waitForDaemon(near, { timeout: 60_000 });
    for (let i = 0; i < 20; i++) {
      await front.exec(far, ["true"]);
      await front.exec(near, ["true"]);
    }
    await using echo = await NatsEcho.start(natsUrl, { apart: true });
    for (let i = 0; i < 20; i++) await echo.request();
    const out: Apart = {
      crossExec: [],
      localExec: [],
      floorExec: [],
      crossRates: [],
      localRates: [],
      cross: perProcess(),
      local: perProcess(),
    };
    const rounds = quick ? 20 : 400;
    for (let i = 0; i < rounds; i++) {
      const order = i % 2 ? [[far, out.crossExec], [near, out.localExec]] as const : [
        [near, out.localExec],
        [far, out.crossExec],
      ] as const;
      for (const [id, times] of order) {
        const t = performance.now();
        await front.exec(id, ["true"]);
        times.push(performance.now() - t);
      }
      const t = performance.now();
      await echo.request();
      out.floorExec.push(performance.now() - t);
    }
    const nats = natsServerPid(natsPort);
    const crossPids = {
      reader: "self",
      owner: serve.child.pid,
      nats,
      daemon: farDaemon.pid,
    } as const;
    const localPids = { reader: "self", owner: NaN, nats, daemon: nearDaemon.pid } as const;
    for (let i = 0; i < (quick ? 1 : 3); i++) {
      out.localRates.push(await streamCounted(front, near, size, localPids, out.local));
      out.crossRates.push(await streamCounted(front, far, size, crossPids, out.cross));
    }
    const per = (row: { cpu: number[]; faults: number[] }) =>
      `${median(row.cpu).toFixed(1)} ms ${median(row.faults).toFixed(0)} faults`;
    log(
      `cluster, owner in its own process, per MiB relayed: reading node ${
        per(out.cross.reader)
      }, owner node ${per(out.cross.owner)}, nats-server ${per(out.cross.nats)}, daemon ${
        per(out.cross.daemon)
      }; direct: node ${per(out.local.reader)}, daemon ${per(out.local.daemon)}`,
    );
    log(
      `cluster, owner in its own process: exec p50 ${median(out.crossExec).toFixed(3)} vs ${
        median(out.localExec).toFixed(3)
      } ms (bare NATS request/reply to another process ${
        median(out.floorExec).toFixed(3)
      } ms), stream ${median(out.crossRates).toFixed(0)} vs ${
        median(out.localRates).toFixed(0)
      } MiB/s`,
    );
    return out;
  } finally {
    await farDaemon.stop();
    await nearDaemon.stop();
    await serve.stop();
  }
}

/** The cluster over NATS. */
export const cluster: Section = {
  name: "cluster",
  about:
    "exec and streaming through a node that does not hold the daemon, against the one that does",
  run,
};
