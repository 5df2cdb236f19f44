// `deno task bench` cannot rot: the suite runs with --quick --json on a subset, and every figure it must report
// comes back as a positive number beside a positive same-run baseline.
import { assert, assertEquals } from "./_assert.ts";
import type { BenchReport } from "./bench/main.ts";
import { compareTable } from "./bench/compare.ts";

const MAIN = new URL("./bench/main.ts", import.meta.url).pathname;

async function bench(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

const EXPECTED = [
  "exec.bare_p50",
  "exec.daemon_messages",
  "exec.over_bare_p50",
  "exec.p50",
  "exec.p99",
  "stream.mib_per_second",
  "stream.daemon_cpu_per_mib",
  "stream.controller_cpu_per_mib",
  "stream.daemon_faults_per_mib",
  "stream.controller_faults_per_mib",
  "stream.websocket_mib_per_second",
  "stream.byob_mib_per_second",
  "stream.byob_controller_cpu_per_mib",
  "stream.byob_controller_faults_per_mib",
  "stream.websocket_receiver_cpu_per_mib",
  "stream.websocket_sender_cpu_per_mib",
  "stream.websocket_receiver_faults_per_mib",
  "stream.websocket_sender_faults_per_mib",
  "stream.controller_peak_rss",
  "stream.daemon_peak_rss",
  "stream.stalled_controller_rss",
  "stream.stalled_daemon_rss",
  "pty.echo_p50",
  "pty.echo_p99",
  "pty.local_echo_p50",
  "pty.local_echo_p99",
  "pty.cat_mib_per_second",
  "pty.local_cat_mib_per_second",
  "pty.daemon_cpu_per_mib",
  "pty.controller_cpu_per_mib",
  "pty.controller_peak_rss",
  "pty.daemon_peak_rss",
  "files.upload_vs_cp",
  "files.download_vs_cp",
  "files.controller_rss_upload",
  "files.controller_rss_download",
  "files.controller_rss_byob_download",
  "files.daemon_rss_upload",
  "files.daemon_rss_download",
  "memory.controller_rss",
  "memory.idle_cpu",
  "memory.longest_stall",
  "memory.exec_per_second",
  "memory.exec_per_second_alone",
  "memory.exec_p99",
  "memory.exec_max",
  "memory.sim_exec_per_second",
  "memory.sim_exec_p99",
];
const SCP = ["files.upload_vs_scp", "files.download_vs_scp", "files.download_byob_vs_scp"];

Deno.test("deno task bench --quick --json reports every figure beside its baseline", async () => {
  const { code, stdout, stderr } = await bench([
    "--quick",
    "--json",
    "--only",
    "exec,stream,pty,files,memory",
  ]);
  assertEquals(code, 0, stderr);
  const report = JSON.parse(stdout) as BenchReport;
  assertEquals(report.sections, ["exec", "stream", "pty", "files", "memory"]);
  assertEquals(report.quick, true);
  const ids = report.figures.map((f) => f.id);
  assertEquals(new Set(ids).size, ids.length, `Duplicate figure ids: ${ids}`);
  const scpSkipped = report.skipped.some((s) => s.id === "files.scp");
  const expected = scpSkipped ? EXPECTED : [...EXPECTED, ...SCP];
  assertEquals([...ids].sort(), [...expected].sort());
  for (const figure of report.figures) {
    for (const key of ["value", "baseline"] as const) {
      const n = figure[key];
      assert(
        Number.isFinite(n) && n > 0,
        `${figure.id}: ${key} is ${n}, expected a positive number`,
      );
    }
    assert(Number.isFinite(figure.compared), `${figure.id}: compared is ${figure.compared}`);
    assert(figure.label.length > 0 && figure.baselineLabel.length > 0, figure.id);
    if (figure.comparison === "growth") assertEquals(figure.unit, "MiB", figure.id);
  }
  for (const skipped of report.skipped) assert(skipped.reason.length > 0, skipped.id);

  // The before/after table has one row per figure.
  const table = compareTable([report], [report]);
  for (const figure of report.figures) assert(table.includes(figure.label), figure.id);
});

Deno.test("deno task bench rejects an unknown section, naming it", async () => {
  const { code, stderr } = await bench(["--only", "exec,nope"]);
  assertEquals(code, 2);
  assert(stderr.includes('"nope"'), stderr);
});
