// One process streaming zeros through a daemon, against the same command over a local pipe; the CPU time the daemon
// and the controller spend per MiB (a figure that holds on a busy machine, where the rates do not), against the local
// reader's; the RSS both sides reach meanwhile; and the RSS growth while nothing reads a stream that could deliver as
// much.
import process from "node:process";
import type { BenchContext, Section } from "./_context.ts";
import { withDaemon } from "./_daemon.ts";
import { type Figure, mibPerSecond, pause, rssOf, type SectionResult, toMiB } from "./_stats.ts";

/** CPU time (every thread) a process has used, in milliseconds (Linux: the threads' schedstat, in ns). */
function cpuOf(pid: number | "self"): number {
  if (pid === "self") {
    const { user, system } = process.cpuUsage();
    return (user + system) / 1000;
  }
  let ns = 0;
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/schedstat`).split(" ")[0]);
    } catch {
      // the thread ended meanwhile
    }
  }
  return ns / 1e6;
}

async function run({ checkout, quick }: BenchContext): Promise<SectionResult> {
  const size = quick ? 8 * 1024 * 1024 : 1024 * 1024 * 1024;
  const sizeLabel = quick ? "8 MiB" : "1 GiB";
  const argv = ["head", "-c", String(size), "/dev/zero"];
  return await withDaemon(checkout, "bench-stream", async (server, daemon) => {
    let cpu = cpuOf("self");
    let t = performance.now();
    const local = new Deno.Command(argv[0]!, { args: argv.slice(1), stdout: "piped" }).spawn();
    let n = 0;
    for await (const chunk of local.stdout) n += chunk.length;
    await local.status;
    const localRate = mibPerSecond(n, performance.now() - t);
    const localCpu = (cpuOf("self") - cpu) / toMiB(n);

    const before = { daemon: rssOf(daemon.pid), controller: rssOf("self") };
    const peak = { ...before };
    cpu = cpuOf("self");
    const daemonCpu = cpuOf(daemon.pid);
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
      daemon: (cpuOf(daemon.pid) - daemonCpu) / toMiB(n),
      controller: (cpuOf("self") - cpu) / toMiB(n),
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
    "one process streaming 1 GiB against a local pipe; RSS while streaming and with a stalled reader",
  run,
};
