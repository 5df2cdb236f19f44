/**
 * Before/after: runs this suite against two checkouts, interleaved in one session (round i runs BEFORE then AFTER,
 * round i + 1 the other way round), and prints the medians of every figure side by side.
 *
 *   deno run -A tests/bench/compare.ts BEFORE_DIR AFTER_DIR [--rounds 3] [--only exec,...] [--quick] [--json]
 *
 * Each run is `main.ts --json --root DIR` in its own process, so both checkouts meet the same machine.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { BenchReport } from "./main.ts";
import { type Figure, formatValue, median, overheadUnit, type Skipped } from "./_stats.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

/** The medians of one figure over the rounds of one checkout. */
interface Medians {
  figure: Figure;
  value: number;
  baseline: number;
  compared: number;
  runs: number;
}

async function runOnce(root: string, extra: string[]): Promise<BenchReport> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "--json", "--root", root, ...extra],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`The benchmark of ${root} failed (exit code ${out.code})`);
  return JSON.parse(new TextDecoder().decode(out.stdout)) as BenchReport;
}

function medians(reports: BenchReport[]): Map<string, Medians> {
  const all = new Map<string, (Figure & { compared: number })[]>();
  for (const report of reports) {
    for (const f of report.figures) (all.get(f.id) ?? all.set(f.id, []).get(f.id)!).push(f);
  }
  const result = new Map<string, Medians>();
  for (const [id, list] of all) {
    result.set(id, {
      figure: list[0]!,
      value: median(list.map((f) => f.value)),
      baseline: median(list.map((f) => f.baseline)),
      compared: median(list.map((f) => f.compared)),
      runs: list.length,
    });
  }
  return result;
}

function formatCompared(m: Medians): string {
  const { comparison, unit } = m.figure;
  if (comparison === "ratio") return `${m.compared.toFixed(2)}×`;
  const sign = m.compared >= 0 ? "+" : "−";
  return `${sign}${formatValue(Math.abs(m.compared), overheadUnit(unit))}`;
}

/** The before/after table: values, their baselines, and each side set against its own same-run baseline. */
export function compareTable(before: BenchReport[], after: BenchReport[]): string {
  const b = medians(before), a = medians(after);
  const ids = [...new Set([...b.keys(), ...a.keys()])];
  const lines = [
    "| figure | before | after | after / before | before vs its baseline | after vs its baseline |",
    "|---|---|---|---|---|---|",
  ];
  for (const id of ids) {
    const x = b.get(id), y = a.get(id);
    const f = (x ?? y)!.figure;
    const value = (m: Medians | undefined) => m ? formatValue(m.value, f.unit) : "—";
    const vs = (m: Medians | undefined) =>
      m ? `${formatCompared(m)} (${formatValue(m.baseline, f.unit)} ${f.baselineLabel})` : "—";
    const change = !x || !y
      ? "—"
      : f.comparison === "growth"
      ? `growth ${formatCompared(x)} → ${formatCompared(y)}`
      : `${(y.value / x.value).toFixed(2)}× (${f.better} is better)`;
    lines.push(`| ${f.label} | ${value(x)} | ${value(y)} | ${change} | ${vs(x)} | ${vs(y)} |`);
  }
  const skipped = new Map<string, Skipped>();
  for (const r of [...before, ...after]) for (const s of r.skipped) skipped.set(s.id, s);
  for (const s of skipped.values()) lines.push(`\nskipped ${s.id}: ${s.reason}`);
  return lines.join("\n");
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      rounds: { type: "string", default: "3" },
      only: { type: "string" },
      quick: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
  });
  const rounds = Number(values.rounds);
  if (positionals.length !== 2 || !Number.isInteger(rounds) || rounds < 1) {
    console.error(
      `Usage: compare.ts BEFORE_DIR AFTER_DIR [--rounds N] [--only NAMES] [--quick] [--json] (got ${
        JSON.stringify(Deno.args)
      })`,
    );
    return 2;
  }
  const roots = positionals.map((p) => Deno.realPathSync(p)) as [string, string];
  const extra = [
    ...(values.only ? ["--only", values.only] : []),
    ...(values.quick ? ["--quick"] : []),
  ];
  const before: BenchReport[] = [], after: BenchReport[] = [];
  for (let i = 0; i < rounds; i++) {
    const order: [string, BenchReport[]][] = [[roots[0], before], [roots[1], after]];
    if (i % 2 === 1) order.reverse();
    for (const [root, into] of order) {
      console.error(`compare: round ${i + 1} of ${rounds}, ${root}`);
      into.push(await runOnce(root, extra));
    }
  }
  if (values.json) {
    console.log(
      JSON.stringify(
        { before: { root: roots[0], reports: before }, after: { root: roots[1], reports: after } },
        null,
        2,
      ),
    );
  } else {
    console.log(
      `\nbefore: ${roots[0]}\nafter:  ${
        roots[1]
      }\nmedians of ${rounds} interleaved rounds, Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores\n\n${
        compareTable(before, after)
      }\n`,
    );
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main());
