// Output helpers of the operator commands: plain tables, durations, sizes, JSON, and writes that finish.

const encoder = new TextEncoder();

/** Write all of `data` to a writer (stdout, stderr, a file). */
export async function writeAll(
  writer: { write(p: Uint8Array): Promise<number> },
  data: Uint8Array | string,
): Promise<void> {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  for (let at = 0; at < bytes.length;) at += await writer.write(bytes.subarray(at));
}

/** Print a line on stdout. */
export function out(line: string): Promise<void> {
  return writeAll(Deno.stdout, `${line}\n`);
}

/** Print a value as JSON on stdout (Dates as ISO strings, byte arrays left out by the caller). */
export function json(value: unknown): Promise<void> {
  return out(JSON.stringify(value, null, 2));
}

/** A table: a header row and rows, columns padded, the last one not. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

/** A duration, short: 45s, 12m, 3h12m, 2d4h. */
export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${s % 60 ? `${s % 60}s` : ""}`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${m % 60 ? `${m % 60}m` : ""}`;
  const d = Math.floor(h / 24);
  return `${d}d${h % 24 ? `${h % 24}h` : ""}`;
}

/** A size, short: 512B, 1.5KiB, 20.0MiB. */
export function size(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value}B` : `${value.toFixed(1)}${units[unit]}`;
}

/** `k=v,k=v`, or `-` for none. */
export function labels(record: Record<string, string>): string {
  const entries = Object.entries(record);
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(",") : "-";
}

/** A command as one line (an argv array joined with shell-like quoting). */
export function commandLine(command: string | string[]): string {
  if (typeof command === "string") return command;
  return command.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`))
    .join(" ");
}

/** File mode bits as `rwxr-xr-x` with a type letter. */
export function modeString(type: string, mode: number): string {
  const t = type === "directory" ? "d" : type === "symlink" ? "l" : type === "file" ? "-" : "?";
  let s = t;
  for (let shift = 6; shift >= 0; shift -= 3) {
    const bits = (mode >> shift) & 7;
    s += (bits & 4 ? "r" : "-") + (bits & 2 ? "w" : "-") + (bits & 1 ? "x" : "-");
  }
  return s;
}
