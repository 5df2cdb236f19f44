// One process streaming zeros through a daemon, against the same command over a local pipe; the CPU time and the
// minor page faults the daemon and the controller spend per MiB (figures that hold on a busy machine, where the rates
// do not), against the local reader's; the RSS both sides reach meanwhile; and the RSS growth while nothing reads a
// stream that could deliver as much. A second baseline is the floor of any design on Deno's WebSocket here: a bare
// Deno.upgradeWebSocket receiver taking the same bytes from a Deno WebSocket client in another process, in the
// daemon's message size with the same credit window.
import type { BenchContext, Section } from "./_context.ts";
import { withDaemon } from "./_daemon.ts";
import { type Figure, mibPerSecond, pause, rssOf, type SectionResult, toMiB } from "./_stats.ts";
import { processCounters } from "./_websocket_sender.ts";
import { threadsCpuMs } from "./_cpu.ts";

/** The daemon's message: a full data frame (256 KiB of output after the 13-byte frame header). */
const DAEMON_MESSAGE = 256 * 1024 + 13;
/** The controller's default stream window. */
const WINDOW = 1024 * 1024;
const SENDER = new URL("./_websocket_sender.ts", import.meta.url).pathname;

/**
 * Faults per MiB, at least 0.001: a run that faulted nothing (memory reused throughout) still reports a positive
 * figure, as every figure must (the bench smoke test).
 */
function perMiB(faults: number, bytes: number): number {
  return Math.max(faults / toMiB(bytes), 0.001);
}

/**
 * Read `stream` to its end through a BYOB reader and one reused 256 KiB buffer; returns the byte count. (A checkout
 * whose process output is not a byte stream is read with a default reader, so that `compare.ts` can run it.)
 */
async function readByob(stream: ReadableStream<Uint8Array>): Promise<number> {
  let reader: ReadableStreamBYOBReader;
  try {
    reader = stream.getReader({ mode: "byob" });
  } catch {
    let n = 0;
    for await (const chunk of stream) n += chunk.length;
    return n;
  }
  let buffer = new ArrayBuffer(256 * 1024);
  let n = 0;
  while (true) {
    const { value, done } = await reader.read(new Uint8Array(buffer));
    if (done) break;
    n += value.byteLength;
    buffer = value.buffer as ArrayBuffer;
  }
  reader.releaseLock();
  return n;
}

/** What the bare WebSocket stream cost: its rate, and CPU time (ms) and minor faults per MiB on each side. */
interface WebSocketFloor {
  rate: number;
  receiver: { cpu: number; faults: number };
  sender: { cpu: number; faults: number };
}

/**
 * `size` bytes from a Deno WebSocket client in another process to a Deno.upgradeWebSocket receiver here, in
 * `message`-byte messages, at most `window` bytes unacknowledged (acked every quarter window, as the controller
 * returns credit). The receiver does nothing with the bytes but count them.
 */
async function websocketFloor(
  size: number,
  message: number,
  window: number,
): Promise<WebSocketFloor> {
  const done = Promise.withResolvers<void>();
  let started = 0;
  let receiverStart = { cpu: 0, faults: 0 };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.binaryType = "arraybuffer";
    let received = 0;
    let acked = 0;
    socket.onopen = () => {
      started = performance.now();
      receiverStart = { cpu: threadsCpuMs("self"), faults: processCounters("self").faults };
    };
    socket.onmessage = (event) => {
      received += (event.data as ArrayBuffer).byteLength;
      if (received - acked >= window / 4 || received >= size) {
        acked = received;
        socket.send(String(received));
      }
      if (received >= size) done.resolve();
    };
    socket.onerror = () => done.reject(new Error("The bare WebSocket stream failed"));
    return response;
  });
  try {
    const url = `ws://127.0.0.1:${server.addr.port}/`;
    const sender = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", SENDER, url, String(size), String(message), String(window)],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const output = new Response(sender.stdout).text();
    await Promise.race([done.promise, sender.status]);
    await done.promise;
    const elapsed = performance.now() - started;
    const receiver = {
      cpu: (threadsCpuMs("self") - receiverStart.cpu) / toMiB(size),
      faults: perMiB(processCounters("self").faults - receiverStart.faults, size),
    };
    const status = await sender.status;
    if (!status.success) throw new Error(`The WebSocket sender failed: exit ${status.code}`);
    const { faults, cpuMs } = JSON.parse(await output) as { faults: number; cpuMs: number };
    return {
      rate: mibPerSecond(size, elapsed),
      receiver,
      sender: { cpu: cpuMs / toMiB(size), faults: perMiB(faults, size) },
    };
  } finally {
    await server.shutdown();
  }
}

async function run({ checkout, quick }: BenchContext): Promise<SectionResult> {
  const size = quick ? 8 * 1024 * 1024 : 1024 * 1024 * 1024;
  const sizeLabel = quick ? "8 MiB" : "1 GiB";
  const argv = ["head", "-c", String(size), "/dev/zero"];
  return await withDaemon(checkout, "bench-stream", async (server, daemon) => {
    let cpu = threadsCpuMs("self");
    let faults = processCounters("self").faults;
    let t = performance.now();
    const local = new Deno.Command(argv[0]!, { args: argv.slice(1), stdout: "piped" }).spawn();
    let n = 0;
    for await (const chunk of local.stdout) n += chunk.length;
    await local.status;
    const localRate = mibPerSecond(n, performance.now() - t);
    const localCpu = (threadsCpuMs("self") - cpu) / toMiB(n);
    const localFaults = perMiB(processCounters("self").faults - faults, n);

    const before = { daemon: rssOf(daemon.pid), controller: rssOf("self") };
    const peak = { ...before };
    cpu = threadsCpuMs("self");
    faults = processCounters("self").faults;
    const daemonCpu = threadsCpuMs(daemon.pid);
    const daemonFaults = processCounters(daemon.pid).faults;
    t = performance.now();
    const p = await server.spawn("bench-stream", argv, { stdin: false });
    n = 0;
    let chunks = 0;
    for await (const chunk of p.stdout) {
      n += chunk.length;
      if (++chunks % 256 === 0) {
        peak.daemon = Math.max(peak.daemon, rssOf(daemon.pid));
        peak.controller = Math.max(peak.controller, rssOf("self"));
      }
    }
    await p.status;
    const remoteRate = mibPerSecond(n, performance.now() - t);
    const cpuPerMiB = {
      daemon: (threadsCpuMs(daemon.pid) - daemonCpu) / toMiB(n),
      controller: (threadsCpuMs("self") - cpu) / toMiB(n),
    };
    const faultsPerMiB = {
      daemon: perMiB(processCounters(daemon.pid).faults - daemonFaults, n),
      controller: perMiB(processCounters("self").faults - faults, n),
    };
    if (n !== size) throw new Error(`Streamed ${n} bytes, expected ${size}`);

    // A stalled consumer: nothing reads for a while the child could write the whole size.
    const idle = { daemon: rssOf(daemon.pid), controller: rssOf("self") };
    const stalled = await server.spawn("bench-stream", argv, { stdin: false });
    await pause(quick ? 300 : 2_000);
    const after = { daemon: rssOf(daemon.pid), controller: rssOf("self") };
    await stalled.kill("SIGKILL");
    await stalled.stdout.cancel();
    await stalled.status.catch(() => {});

    const floor = await websocketFloor(size, DAEMON_MESSAGE, WINDOW);

    // The same with BYOB readers (one reused buffer) on both sides: no fresh memory per chunk for the reader.
    cpu = threadsCpuMs("self");
    faults = processCounters("self").faults;
    t = performance.now();
    const localByob = new Deno.Command(argv[0]!, { args: argv.slice(1), stdout: "piped" }).spawn();
    n = await readByob(localByob.stdout);
    await localByob.status;
    const byobLocal = {
      rate: mibPerSecond(n, performance.now() - t),
      cpu: (threadsCpuMs("self") - cpu) / toMiB(n),
      faults: perMiB(processCounters("self").faults - faults, n),
    };
    cpu = threadsCpuMs("self");
    faults = processCounters("self").faults;
    t = performance.now();
    const byobProcess = await server.spawn("bench-stream", argv, { stdin: false });
    n = await readByob(byobProcess.stdout);
    await byobProcess.status;
    const byobRemote = {
      rate: mibPerSecond(n, performance.now() - t),
      cpu: (threadsCpuMs("self") - cpu) / toMiB(n),
      faults: perMiB(processCounters("self").faults - faults, n),
    };
    if (n !== size) throw new Error(`Streamed ${n} bytes to a BYOB reader, expected ${size}`);

    const memory = (
      id: string,
      label: string,
      value: number,
      baseline: number,
      baselineLabel: string,
      goal: string,
    ): Figure => ({
      id,
      label,
      unit: "MiB",
      value: toMiB(value),
      baseline: toMiB(baseline),
      baselineLabel,
      comparison: "growth",
      better: "lower",
      goal,
    });
    return {
      figures: [
        {
          id: "stream.mib_per_second",
          label: `stream ${sizeLabel} from one process`,
          unit: "MiB/s",
          value: remoteRate,
          baseline: localRate,
          baselineLabel: "local pipe",
          comparison: "ratio",
          better: "higher",
          goal: "≥ 0.9×",
        },
        ...(["daemon", "controller"] as const).map((side): Figure => ({
          id: `stream.${side}_cpu_per_mib`,
          label: `${side} CPU time per MiB streamed (${sizeLabel})`,
          unit: "ms",
          value: cpuPerMiB[side],
          baseline: localCpu,
          baselineLabel: "local pipe reader",
          comparison: "ratio",
          better: "lower",
          goal: "—",
        })),
        ...(["daemon", "controller"] as const).map((side): Figure => ({
          id: `stream.${side}_faults_per_mib`,
          label: `${side} minor page faults per MiB streamed (${sizeLabel})`,
          unit: "faults/MiB",
          value: faultsPerMiB[side],
          baseline: localFaults,
          baselineLabel: "local pipe reader",
          comparison: "overhead",
          better: "lower",
          goal: "—",
        })),
        {
          id: "stream.byob_mib_per_second",
          label: `stream ${sizeLabel} from one process, BYOB reader (one 256 KiB buffer)`,
          unit: "MiB/s",
          value: byobRemote.rate,
          baseline: byobLocal.rate,
          baselineLabel: "local pipe, BYOB reader",
          comparison: "ratio",
          better: "higher",
          goal: "≥ 0.9×",
        },
        {
          id: "stream.byob_controller_cpu_per_mib",
          label: `controller CPU time per MiB streamed to a BYOB reader (${sizeLabel})`,
          unit: "ms",
          value: byobRemote.cpu,
          baseline: byobLocal.cpu,
          baselineLabel: "local pipe, BYOB reader",
          comparison: "ratio",
          better: "lower",
          goal: "—",
        },
        {
          id: "stream.byob_controller_faults_per_mib",
          label: `controller minor page faults per MiB streamed to a BYOB reader (${sizeLabel})`,
          unit: "faults/MiB",
          value: byobRemote.faults,
          baseline: byobLocal.faults,
          baselineLabel: "local pipe, BYOB reader",
          comparison: "overhead",
          better: "lower",
          goal: "—",
        },
        {
          id: "stream.websocket_mib_per_second",
          label: `bare Deno WebSocket stream ${sizeLabel} between two processes (256 KiB messages)`,
          unit: "MiB/s",
          value: floor.rate,
          baseline: localRate,
          baselineLabel: "local pipe",
          comparison: "ratio",
          better: "higher",
          goal: "— (the floor on Deno's WebSocket)",
        },
        ...(["receiver", "sender"] as const).map((side): Figure => ({
          id: `stream.websocket_${side}_cpu_per_mib`,
          label: `bare Deno WebSocket ${side} CPU time per MiB (${sizeLabel})`,
          unit: "ms",
          value: floor[side].cpu,
          baseline: localCpu,
          baselineLabel: "local pipe reader",
          comparison: "ratio",
          better: "lower",
          goal: "—",
        })),
        ...(["receiver", "sender"] as const).map((side): Figure => ({
          id: `stream.websocket_${side}_faults_per_mib`,
          label: `bare Deno WebSocket ${side} minor page faults per MiB (${sizeLabel})`,
          unit: "faults/MiB",
          value: floor[side].faults,
          baseline: localFaults,
          baselineLabel: "local pipe reader",
          comparison: "overhead",
          better: "lower",
          goal: "—",
        })),
        memory(
          "stream.controller_peak_rss",
          `controller peak RSS while streaming ${sizeLabel}`,
          peak.controller,
          before.controller,
          "before",
          "bounded",
        ),
        memory(
          "stream.daemon_peak_rss",
          `daemon peak RSS while streaming ${sizeLabel}`,
          peak.daemon,
          before.daemon,
          "before",
          "bounded",
        ),
        memory(
          "stream.stalled_controller_rss",
          `controller RSS after a stalled consumer (${
            quick ? "0.3" : "2"
          } s, ${sizeLabel} offered)`,
          after.controller,
          idle.controller,
          "before",
          "bounded by the credit (1 MiB)",
        ),
        memory(
          "stream.stalled_daemon_rss",
          `daemon RSS after a stalled consumer (${quick ? "0.3" : "2"} s, ${sizeLabel} offered)`,
          after.daemon,
          idle.daemon,
          "before",
          "bounded by the window (4 MiB)",
        ),
      ],
      skipped: [],
    };
  });
}

/** Process output streaming. */
export const stream: Section = {
  name: "stream",
  about:
    "one process streaming 1 GiB against a local pipe and a bare Deno WebSocket stream; CPU and page faults per MiB; RSS while streaming and with a stalled reader",
  run,
};
