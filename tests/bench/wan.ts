// The daemon behind a long link (50 ms RTT through a user-space delay relay, see _delay_relay.ts), against
// OpenSSH over the same relay with a control master: exec p50/p99 against `ssh host true`, one process's output
// against `ssh host head -c`, and upload/download against scp. Skips the ssh baselines with the reason when sshd
// cannot run here.
import type { BenchContext, Section } from "./_context.ts";
import { withDaemon } from "./_daemon.ts";
import { DelayRelay } from "../_delay_relay.ts";
import { runQuietly, sshdMissing, startSshd } from "./_sshd.ts";
import {
  type Figure,
  median,
  mibPerSecond,
  quantile,
  type SectionResult,
  type Skipped,
} from "./_stats.ts";

const RTT_MS = 50;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function run({ checkout, quick }: BenchContext): Promise<SectionResult> {
  const execRounds = quick ? 5 : 30;
  const streamBytes = quick ? 16 * 1024 * 1024 : 256 * 1024 * 1024;
  const fileBytes = quick ? 16 * 1024 * 1024 : 256 * 1024 * 1024;
  const size = `${streamBytes / 1024 / 1024} MiB`;
  const work = await Deno.makeTempDir({ prefix: "sandd-bench-wan-" });
  const skipped: Skipped[] = [];
  const figures: Figure[] = [];
  try {
    const source = `${work}/source.bin`;
    await runQuietly("head", ["-c", String(fileBytes), "/dev/urandom", "-o", source]).catch(
      async () => {
        const f = await Deno.open(source, { write: true, create: true });
        const chunk = crypto.getRandomValues(new Uint8Array(65536));
        for (let n = 0; n < fileBytes; n += chunk.length) await f.write(chunk);
        f.close();
      },
    );
    // ssh through the same relay, with a control master (the fair baseline for repeated commands).
    let ssh: { args: string[]; scp: string[]; host: string } | null = null;
    const missing = sshdMissing();
    const sshd = missing ? null : await startSshd(work);
    await using _sshd = sshd ?? { [Symbol.asyncDispose]: async () => {} };
    let sshRelay: DelayRelay | null = null;
    if (sshd) {
      const port = Number(sshd.scpArgs[sshd.scpArgs.indexOf("-P") + 1]);
      sshRelay = new DelayRelay(port, RTT_MS);
      const common = sshd.scpArgs.filter((a, i, all) =>
        a !== "-q" && a !== "-P" && all[i - 1] !== "-P"
      );
      const master = [
        "-o",
        "ControlMaster=auto",
        "-o",
        `ControlPath=${work}/cm`,
        "-o",
        "ControlPersist=300",
      ];
      ssh = {
        args: ["-p", String(sshRelay.port), ...common, ...master],
        scp: ["-q", "-P", String(sshRelay.port), ...common, ...master],
        host: "root@127.0.0.1",
      };
      await runQuietly("ssh", [...ssh.args, ssh.host, "true"]);
    } else {
      skipped.push({ id: "wan.ssh", reason: missing ?? "sshd did not start on loopback" });
    }
    await using _sshRelay = sshRelay ?? { [Symbol.asyncDispose]: async () => {} };

    let relay: DelayRelay | null = null;
    try {
      await withDaemon(checkout, "bench-wan", async (server) => {
        const id = "bench-wan";
        // exec
        const remote: number[] = [];
        const local: number[] = [];
        await server.exec(id, ["true"]);
        for (let i = 0; i < execRounds; i++) {
          remote.push(await timed(() => server.exec(id, ["true"])));
          if (ssh) {
            local.push(await timed(() => runQuietly("ssh", [...ssh!.args, ssh!.host, "true"])));
          }
        }
        const execFigure = (q: number, name: string): Figure => ({
          id: `wan.exec_${name}`,
          label: `exec of \`true\` over ${RTT_MS} ms RTT, ${name}`,
          unit: "ms",
          value: quantile(remote, q),
          baseline: ssh ? quantile(local, q) : RTT_MS,
          baselineLabel: ssh ? "ssh with a control master" : "the RTT",
          comparison: "overhead",
          better: "lower",
          goal: "RTT + a few ms",
        });
        figures.push(execFigure(0.5, "p50"), execFigure(0.99, "p99"));

        // one process's output
        const argv = ["head", "-c", String(streamBytes), "/dev/zero"];
        const ours: number[] = [];
        const theirs: number[] = [];
        for (let round = 0; round < (quick ? 1 : 2); round++) {
          ours.push(
            await timed(async () => {
              const p = await server.spawn(id, argv, { stdin: false });
              let n = 0;
              for await (const chunk of p.stdout) n += chunk.length;
              await p.status;
              if (n !== streamBytes) throw new Error(`streamed ${n} of ${streamBytes} bytes`);
            }),
          );
          if (ssh) {
            theirs.push(
              await timed(() => runQuietly("ssh", [...ssh!.args, ssh!.host, argv.join(" ")])),
            );
          }
        }
        figures.push({
          id: "wan.stream",
          label: `stream ${size} from one process over ${RTT_MS} ms RTT`,
          unit: "MiB/s",
          value: mibPerSecond(streamBytes, median(ours)),
          baseline: ssh ? mibPerSecond(streamBytes, median(theirs)) : 0,
          baselineLabel: ssh ? "ssh host head -c" : "(no ssh)",
          comparison: "ratio",
          better: "higher",
          goal: "≥ 1×",
        });

        // files
        const target = `${work}/up.bin`;
        const up = await timed(() => server.upload(id, target, Deno.openSync(source).readable));
        const down = await timed(async () => {
          const s = await server.downloadStream(id, target);
          let n = 0;
          for await (const chunk of s) n += chunk.length;
          if (n !== fileBytes) throw new Error(`downloaded ${n} of ${fileBytes} bytes`);
        });
        let scpUp = 0, scpDown = 0;
        if (ssh) {
          scpUp = await timed(() =>
            runQuietly("scp", [...ssh!.scp, source, `${ssh!.host}:${work}/scp-up.bin`])
          );
          scpDown = await timed(() =>
            runQuietly("scp", [...ssh!.scp, `${ssh!.host}:${source}`, `${work}/scp-down.bin`])
          );
        }
        for (
          const [name, ms, base] of [["upload", up, scpUp], ["download", down, scpDown]] as const
        ) {
          figures.push({
            id: `wan.${name}`,
            label: `${name} ${fileBytes / 1024 / 1024} MiB over ${RTT_MS} ms RTT`,
            unit: "MiB/s",
            value: mibPerSecond(fileBytes, ms),
            baseline: ssh ? mibPerSecond(fileBytes, base) : 0,
            baselineLabel: ssh ? `scp ${name}` : "(no ssh)",
            comparison: "ratio",
            better: "higher",
            goal: "≥ 1.2×",
          });
        }
      }, {
        url: (server) => {
          relay = new DelayRelay(server.port, RTT_MS);
          return `ws://127.0.0.1:${relay.port}/ws`;
        },
      });
    } finally {
      await (relay as DelayRelay | null)?.[Symbol.asyncDispose]();
    }
    if (ssh) await runQuietly("ssh", [...ssh.args, "-O", "exit", ssh.host]).catch(() => {});
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
  return { figures, skipped };
}

/** A long link. */
export const wan: Section = {
  name: "wan",
  about:
    `daemon behind a ${RTT_MS} ms RTT relay: exec p50/p99, one process's output, upload/download, ` +
    "against ssh with a control master and scp over the same relay",
  run,
};
