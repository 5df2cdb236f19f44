// A link cut by a proxy between daemon and controller: time from the reconnect to the first resumed byte.
import { LinkProxy } from "../_proxy.ts";
import type { BenchContext, Section } from "./_context.ts";
import { withDaemon } from "./_daemon.ts";
import { quantile, type SectionResult } from "./_stats.ts";

async function run({ checkout, quick }: BenchContext): Promise<SectionResult> {
  const cuts = quick ? 2 : 10;
  let proxy = null as LinkProxy | null;
  try {
    return await withDaemon(checkout, "bench-resume", async (server) => {
      const p = await server.spawn("bench-resume", "while :; do echo tick; sleep 0.001; done", {
        stdin: false,
      });
      const reader = p.stdout.getReader();
      await reader.read();
      const overheads: number[] = [];
      const totals: number[] = [];
      for (let i = 0; i < cuts; i++) {
        let reconnectedAt = 0;
        const onConnect = () => reconnectedAt = performance.now();
        server.addEventListener("connect", onConnect, { once: true });
        // Drain what is buffered, then cut and time the first byte that arrives after the reconnect.
        const cutAt = performance.now();
        await proxy!.cut();
        while (true) {
          const { value } = await reader.read();
          if (reconnectedAt && value && value.length) break;
        }
        const firstByte = performance.now();
        overheads.push(firstByte - reconnectedAt);
        totals.push(firstByte - cutAt);
      }
      reader.releaseLock();
      await p.kill("SIGKILL");
      await p.stdout.cancel();
      await p.status.catch(() => {});
      return {
        figures: [{
          id: "resume.first_byte_p50",
          label: "resume after a link cut: reconnect → first resumed byte, p50",
          unit: "ms",
          value: quantile(overheads, 0.5),
          baseline: quantile(totals, 0.5),
          baselineLabel: "cut → first byte (backoff ≤ 200 ms)",
          comparison: "ratio",
          better: "lower",
          goal: "≤ 50 ms",
        }],
        skipped: [],
      };
    }, {
      listen: { reconnectGraceMs: 30_000 },
      url: (server) => (proxy = new LinkProxy(server.port)).url(),
      args: ["--reconnect-initial", "0.2"],
    });
  } finally {
    await proxy?.close();
  }
}

/** Resume after a link cut. */
export const resume: Section = {
  name: "resume",
  about: "reconnect → first resumed byte after a link cut (proxy between daemon and controller)",
  run,
};
