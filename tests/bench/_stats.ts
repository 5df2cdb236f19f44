// Small statistics helpers for the benchmarks.
export function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

export function rssOf(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) * 1024;
}

export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export function ms(value: number): string {
  return `${value.toFixed(3)} ms`;
}

export interface Row {
  figure: string;
  sandd: string;
  baseline: string;
  ratio: string;
  goal: string;
}

export function printTable(rows: Row[]): string {
  const lines = [
    "| figure | SandD | baseline (same run) | ratio / overhead | goal |",
    "|---|---|---|---|---|",
    ...rows.map((r) => `| ${r.figure} | ${r.sandd} | ${r.baseline} | ${r.ratio} | ${r.goal} |`),
  ];
  return lines.join("\n");
}
