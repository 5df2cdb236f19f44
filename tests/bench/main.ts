/**
 * `deno task bench`: the whole benchmark suite, every figure next to a baseline measured in the same run.
 *
 *   deno run -A tests/bench/main.ts [--only exec,stream,...] [--quick] [--json] [--root DIR]
 *
 * - `--only NAMES`: a comma-separated subset of the sections (also accepted as plain arguments).
 * - `--quick`: small counts and sizes, for smoke tests (the figures exist, they mean little).
 * - `--json`: one JSON document on stdout instead of the table (progress goes to stderr either way).
 * - `--json-file PATH`: also write that JSON document to PATH (to keep a run's numbers beside its table).
 * - `--root DIR`: measure another checkout: import DIR/mod.ts, run DIR/daemon/main.ts as the daemon, and take
 *   the baselines' daemon internals from DIR (see _checkout.ts). `compare.ts` uses this for before/after runs.
 *
 * Environment (also under --quick): BENCH_DAEMONS (throughput, default 100), BENCH_SOCKETS (memory, default
 * 19,000), BENCH_FILE_MIB (files, default 1024), BENCH_SNAPSHOT_FILES and BENCH_SNAPSHOT_MIB (snapshots,
 * default 10,000 files, 1024 MiB), BENCH_CAPACITY_DAEMONS (cluster-capacity, per node, default 15,000; 300 under
 * --quick), BENCH_CAPACITY_SETUP_RATE, BENCH_CAPACITY_TRIM.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { configFlags, loadCheckout, OWN_ROOT } from "./_checkout.ts";
import type { BenchContext, Section } from "./_context.ts";
import { compared, type Figure, type Skipped, table } from "./_stats.ts";
import { exec } from "./exec.ts";
import { spawn } from "./spawn.ts";
import { throughput } from "./throughput.ts";
import { stream } from "./stream.ts";
import { resume } from "./resume.ts";
import { pty } from "./pty.ts";
import { files } from "./files.ts";
import { memory } from "./memory.ts";
import { broadcast } from "./broadcast.ts";
import { wan } from "./wan.ts";
import { forward } from "./forward.ts";
import { metrics } from "./metrics.ts";
import { api } from "./_api.ts";
import { snapshots } from "./snapshots.ts";
import { consoleSection } from "./console.ts";
import { cli } from "./cli.ts";
import { failoverSection } from "./failover.ts";
import { cluster } from "./cluster.ts";
import { clusterCapacity } from "./cluster_capacity.ts";
import { machine } from "./machine.ts";

/** Every section, in the order a full run takes them. */
export const SECTIONS: readonly Section[] = [
  exec,
  spawn,
  throughput,
  stream,
  resume,
  pty,
  files,
  memory,
  broadcast,
  wan,
  forward,
  metrics,
  api,
  snapshots,
  consoleSection,
  cli,
  failoverSection,
  cluster,
  clusterCapacity,
  // Last: its round trips to a peer process left later sections of the same process measuring differently.
  machine,
];

/** What `--json` prints. */
export interface BenchReport {
  root: string;
  quick: boolean;
  date: string;
  deno: string;
  cores: number;
  sections: string[];
  /** Each figure with `compared`: its overhead, ratio or growth against its baseline. */
  figures: (Figure & { compared: number })[];
  skipped: Skipped[];
}

const USAGE =
  `Usage: deno task bench [--only NAMES] [--quick] [--json] [--json-file PATH] [--root DIR]
Sections:
${SECTIONS.map((s) => `  ${s.name.padEnd(11)} ${s.about}`).join("\n")}`;

function parse() {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      only: { type: "string" },
      quick: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      "json-file": { type: "string" },
      root: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const names = [...(values.only?.split(",") ?? []), ...positionals].map((n) => n.trim())
    .filter((n) => n);
  for (const name of names) {
    if (!SECTIONS.some((s) => s.name === name)) {
      throw new TypeError(`Unknown benchmark section "${name}"\n${USAGE}`);
    }
  }
  const root = values.root ? Deno.realPathSync(values.root) : OWN_ROOT;
  return { ...values, root, names };
}

async function main(): Promise<number> {
  let options;
  try {
    options = parse();
  } catch (error) {
    console.error((error as Error).message);
    return 2;
  }
  if (options.help) {
    console.log(USAGE);
    return 0;
  }
  // Another checkout's bare imports resolve through its own deno.json: run again under it.
  if (options.root !== OWN_ROOT && Deno.env.get("SANDD_BENCH_ROOT") !== options.root) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ...configFlags(options.root), import.meta.filename!, ...Deno.args],
      env: { SANDD_BENCH_ROOT: options.root },
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    return (await child.status).code;
  }

  const checkout = await loadCheckout(options.root);
  const sections = options.names.length
    ? SECTIONS.filter((s) => options.names.includes(s.name))
    : SECTIONS;
  const context: BenchContext = {
    checkout,
    quick: options.quick,
    log: (message) => console.error(`bench: ${message}`),
  };
  const figures: Figure[] = [];
  const skipped: Skipped[] = [];
  for (const section of sections) {
    context.log(`${section.name}…`);
    const started = performance.now();
    const result = await section.run(context);
    figures.push(...result.figures);
    skipped.push(...result.skipped);
    // Each section's rows as soon as it ends (stderr), so a run cut short keeps what it measured.
    console.error(table(result.figures, result.skipped));
    context.log(`${section.name} done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }
  const report: BenchReport = {
    root: checkout.root,
    quick: options.quick,
    date: new Date().toISOString(),
    deno: Deno.version.deno,
    cores: navigator.hardwareConcurrency,
    sections: sections.map((s) => s.name),
    figures: figures.map((f) => ({ ...f, compared: compared(f) })),
    skipped,
  };
  const json = JSON.stringify(report, null, 2);
  if (options["json-file"]) await Deno.writeTextFile(options["json-file"], `${json}\n`);
  if (options.json) {
    console.log(json);
  } else {
    console.log(
      `\n${checkout.root}, Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores${
        options.quick ? ", --quick" : ""
      }\n\n${table(figures, skipped)}\n`,
    );
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main());
