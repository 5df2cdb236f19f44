// A transfer progress bar on stderr with the rate and, when the total is known, the ETA. Drawn only when stderr is
// a terminal (and not --quiet), at most ten times a second; erased at the end.
import { size } from "./_format.ts";

const encoder = new TextEncoder();

/** What `cp` reports progress to. */
export interface Progress {
  /** Bytes so far and the total when known. */
  update(bytes: number, total: number | undefined): void;
  /** Erase the bar (or print nothing when none was drawn). */
  done(): void;
}

/** A progress bar for `label`, or a silent one when `enabled` is false. */
export function progressBar(label: string, enabled: boolean): Progress {
  if (!enabled) return { update() {}, done() {} };
  const started = performance.now();
  let lastDraw = 0;
  let drawn = false;
  return {
    update(bytes, total) {
      const now = performance.now();
      if (now - lastDraw < 100 && !(total !== undefined && bytes >= total)) return;
      lastDraw = now;
      const elapsed = (now - started) / 1000;
      const rate = elapsed > 0 ? bytes / elapsed : 0;
      let columns = 80;
      try {
        columns = Deno.consoleSize().columns;
      } catch {
        // not a terminal after all
      }
      const tail = total !== undefined
        ? ` ${size(bytes)}/${size(total)} ${size(rate)}/s ETA ${
          rate > 0 ? eta((total - bytes) / rate) : "--:--"
        }`
        : ` ${size(bytes)} ${size(rate)}/s`;
      let bar = "";
      const name = label.length > 30 ? `…${label.slice(-29)}` : label;
      if (total !== undefined && total > 0) {
        const width = Math.max(10, Math.min(40, columns - name.length - tail.length - 10));
        const filled = Math.round(width * Math.min(1, bytes / total));
        bar = ` [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${
          Math.floor(100 * Math.min(1, bytes / total))
        }%`;
      }
      const line = `${name}${bar}${tail}`.slice(0, Math.max(20, columns - 1));
      Deno.stderr.writeSync(encoder.encode(`\r\x1b[2K${line}`));
      drawn = true;
    },
    done() {
      if (drawn) Deno.stderr.writeSync(encoder.encode("\r\x1b[2K"));
    },
  };
}

function eta(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const m = Math.floor(s / 60);
  return m >= 60
    ? `${Math.floor(m / 60)}:${String(m % 60).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`
    : `${String(m).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}
