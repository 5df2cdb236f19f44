// Statistics, memory readings and the figure record every benchmark section returns.

/** How a figure is set against its baseline in the table. */
export type Comparison =
  /** `value - baseline`, in the figure's unit (latencies). */
  | "overhead"
  /** `value / baseline` (rates). */
  | "ratio"
  /** `value - baseline` in MiB: the baseline is the RSS at the start, the value the peak or the RSS after. */
  | "growth";

/** One measured figure and the baseline measured beside it in the same run. */
export interface Figure {
  /** Stable key, `section.name`: what `compare.ts` and the smoke test match on. */
  id: string;
  label: string;
  unit: "ms" | "MiB/s" | "/s" | "MiB" | "% of a core" | "messages" | "faults/MiB";
  value: number;
  baseline: number;
  /** What the baseline is, e.g. "local Deno.Command spawn". */
  baselineLabel: string;
  comparison: Comparison;
  /** Whether a smaller value is the better one (for before/after tables). */
  better: "lower" | "higher";
  goal: string;
}

/** A section or figure that could not be measured here, with the reason. */
export interface Skipped {
  id: string;
  reason: string;
}

/** What a section returns. */
export interface SectionResult {
  figures: Figure[];
  skipped: Skipped[];
}

/** The nearest-rank quantile `q` (0..1) of `values`. */
export function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

/** The median (upper median for even counts, as the old benches computed it). */
export function median(values: number[]): number {
  return quantile(values, 0.5);
}

function procStatus(pid: number | "self", field: "VmRSS" | "VmHWM"): number {
  const text = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
  if (!match) throw new Error(`No ${field} in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** Resident set size of a process, in bytes. */
export function rssOf(pid: number | "self"): number {
  return procStatus(pid, "VmRSS");
}

/** Peak resident set size (VmHWM) since start or since the last {@link resetPeak}, in bytes. */
export function peakOf(pid: number | "self"): number {
  return procStatus(pid, "VmHWM");
}

/** Resets the peak-RSS counter (Linux: 5 into clear_refs); returns the RSS at that moment, in bytes. */
export function resetPeak(pid: number | "self"): number {
  Deno.writeTextFileSync(`/proc/${pid}/clear_refs`, "5");
  return rssOf(pid);
}

/** Bytes to MiB. */
export function toMiB(bytes: number): number {
  return bytes / 1024 / 1024;
}

/** Bytes over milliseconds to MiB/s. */
export function mibPerSecond(bytes: number, milliseconds: number): number {
  return toMiB(bytes) / (milliseconds / 1000);
}

/** Resolves after `milliseconds` (a measuring window, never a wait for an event). */
export function pause(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

/** `value` set against `baseline` the way the figure asks for. */
export function compared(figure: Pick<Figure, "value" | "baseline" | "comparison">): number {
  return figure.comparison === "ratio"
    ? figure.value / figure.baseline
    : figure.value - figure.baseline;
}

/** A number in a figure's unit, for the table. */
export function formatValue(value: number, unit: Figure["unit"]): string {
  if (!Number.isFinite(value)) return String(value);
  switch (unit) {
    case "ms":
      return `${value.toFixed(3)} ms`;
    case "/s":
      return `${value.toFixed(0)}/s`;
    default:
      return `${value.toFixed(1)} ${unit}`;
  }
}

/** The unit of an overhead or growth: the figure's own for latencies and fault counts, else MiB. */
export function overheadUnit(unit: Figure["unit"]): Figure["unit"] {
  return unit === "ms" || unit === "faults/MiB" ? unit : "MiB";
}

/** The comparison column: `+0.512 ms`, `0.97×` or `+12.0 MiB`. */
export function formatComparison(figure: Figure): string {
  const c = compared(figure);
  if (figure.comparison === "ratio") return `${c.toFixed(2)}×`;
  const sign = c >= 0 ? "+" : "−";
  return `${sign}${formatValue(Math.abs(c), overheadUnit(figure.unit))}`;
}

/** The figures as a Markdown table, with the skipped ones listed below it. */
export function table(figures: Figure[], skipped: Skipped[]): string {
  const lines = [
    "| figure | SandD | baseline (same run) | ratio / overhead | goal |",
    "|---|---|---|---|---|",
    ...figures.map((f) =>
      `| ${f.label} | ${formatValue(f.value, f.unit)} | ${
        formatValue(f.baseline, f.unit)
      } ${f.baselineLabel} | ${formatComparison(f)} | ${f.goal} |`
    ),
  ];
  for (const s of skipped) lines.push(`\nskipped ${s.id}: ${s.reason}`);
  return lines.join("\n");
}

/** `items` in a random order (Fisher-Yates, in place), so interleaved runs do not always follow the same one. */
export function shuffle<T>(items: T[]): T[] {
  for (let k = items.length - 1; k > 0; k--) {
    const j = Math.floor(Math.random() * (k + 1));
    [items[k], items[j]] = [items[j]!, items[k]!];
  }
  return items;
}
