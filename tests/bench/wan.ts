// The daemon behind a long link, against OpenSSH over the same link with a control master: exec p50/p99 against
// `ssh host true`, one process's output against `ssh host head -c`, and upload/download against scp. Two links:
// - 50 ms RTT through a user-space TCP relay (tests/_delay_relay.ts), which buffers without limit, so the
//   applications' own flow control (SandD's credit window, SSH's channel window) is what limits a stream;
// - 50 ms RTT and 1 % packet loss per IP packet (tests/bench/_packet_link.py: TUN devices and a network
//   namespace; this kernel has no netem), where TCP itself retransmits and backs off, as on a lossy WAN. The
//   daemon and sshd run in the namespace. Needs root; skipped with the reason otherwise.
// Skips the ssh baselines with the reason when sshd cannot run here.
import type { BenchContext, Section } from "./_context.ts";
import { withDaemon } from "./_daemon.ts";
import { DelayRelay } from "../_delay_relay.ts";
import { PacketLink } from "./_packet_link.ts";
import { runQuietly, sshdMissing, type SshdPlace, startSshd } from "./_sshd.ts";
import {
  type Figure,
  median,
  mibPerSecond,
  quantile,
  type SectionResult,
  type Skipped,
} from "./_stats.ts";

const RTT_MS = 50;
const LOSS = 0.01;

/** How the daemon and sshd are reached over one kind of link. */
interface Link {
  /** Figure id prefix (`wan.` + this). */
  prefix: string;
  /** How the link reads in labels. */
  describe: string;
  /** Where sshd runs. */
  sshd: SshdPlace;
  /** The ssh host and port that reach sshd (listening on `port`) over the link. */
  sshRoute(port: number): Promise<{ host: string; port: number; dispose(): Promise<void> }>;
  /** Options of withDaemon that put the daemon behind the link. */
  daemon: Parameters<typeof withDaemon>[3];
  streamBytes: number;
  fileBytes: number;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function run({ checkout, quick, log }: BenchContext): Promise<SectionResult> {
  const work = await Deno.makeTempDir({ prefix: "sandd-bench-wan-" });
  const skipped: Skipped[] = [];
  const figures: Figure[] = [];
  try {
    let relay: DelayRelay | null = null;
    const relayed: Link = {
      prefix: "",
      describe: `${RTT_MS} ms RTT`,
      sshd: {},
      sshRoute: (port) => {
        const r = new DelayRelay(port, RTT_MS);
        return Promise.resolve({
          host: "127.0.0.1",
          port: r.port,
          dispose: () => r[Symbol.asyncDispose](),
        });
      },
      daemon: {
        url: (server) => {
          relay = new DelayRelay(server.port, RTT_MS);
          return `ws://127.0.0.1:${relay.port}/ws`;
        },
      },
      streamBytes: quick ? 16 * 1024 * 1024 : 256 * 1024 * 1024,
      fileBytes: quick ? 16 * 1024 * 1024 : 256 * 1024 * 1024,
    };
    try {
      await measure(checkout, quick, work, relayed, figures, skipped);
    } finally {
      await (relay as DelayRelay | null)?.[Symbol.asyncDispose]();
    }
    const missing = PacketLink.missing();
    if (missing) {
      skipped.push({ id: "wan.loss", reason: missing });
    } else {
      log(
        `wan: ${RTT_MS} ms RTT with ${
          LOSS * 100
        } % packet loss (a packet link to a network namespace)`,
      );
      await using link = await PacketLink.start({ rttMs: RTT_MS, loss: LOSS });
      const lossy: Link = {
        prefix: "loss_",
        describe: `${RTT_MS} ms RTT, ${LOSS * 100} % loss`,
        sshd: { hostname: link.peerAddress, wrap: link.wrap },
        sshRoute: (port) =>
          Promise.resolve({ host: link.peerAddress, port, dispose: () => Promise.resolve() }),
        daemon: {
          listen: { hostname: link.hostAddress },
          url: (server) => `ws://${link.hostAddress}:${server.port}/ws`,
          wrap: link.wrap,
        },
        streamBytes: quick ? 4 * 1024 * 1024 : 32 * 1024 * 1024,
        fileBytes: quick ? 4 * 1024 * 1024 : 32 * 1024 * 1024,
      };
      await measure(checkout, quick, work, lossy, figures, skipped);
    }
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
  return { figures, skipped };
}

/** The figures of one link. */
async function measure(
  checkout: BenchContext["checkout"],
  quick: boolean,
  work: string,
  link: Link,
  figures: Figure[],
  skipped: Skipped[],
): Promise<void> {
  const execRounds = quick ? 5 : 30;
  const { streamBytes, fileBytes } = link;
  const size = `${streamBytes / 1024 / 1024} MiB`;
  const id = `wan.${link.prefix}`;
  const source = `${work}/source-${fileBytes}.bin`;
  await runQuietly("head", ["-c", String(fileBytes), "/dev/urandom", "-o", source]).catch(
    async () => {
      const f = await Deno.open(source, { write: true, create: true });
      const chunk = crypto.getRandomValues(new Uint8Array(65536));
      for (let n = 0; n < fileBytes; n += chunk.length) await f.write(chunk);
      f.close();
    },
  );
  // ssh over the same link, with a control master (the fair baseline for repeated commands).
  let ssh: { args: string[]; scp: string[]; host: string } | null = null;
  const missing = sshdMissing();
  const sshDir = `${work}/ssh-${link.prefix || "relay"}`;
  await Deno.mkdir(sshDir);
  const sshd = missing ? null : await startSshd(sshDir, link.sshd);
  await using _sshd = sshd ?? { [Symbol.asyncDispose]: async () => {} };
  let route: Awaited<ReturnType<Link["sshRoute"]>> | null = null;
  if (sshd) {
    route = await link.sshRoute(Number(sshd.scpArgs[sshd.scpArgs.indexOf("-P") + 1]));
    const common = sshd.scpArgs.filter((a, i, all) =>
      a !== "-q" && a !== "-P" && all[i - 1] !== "-P"
    );
    const master = [
      "-o",
      "ControlMaster=auto",
      "-o",
      `ControlPath=${sshDir}/cm`,
      "-o",
      "ControlPersist=300",
    ];
    ssh = {
      args: ["-p", String(route.port), ...common, ...master],
      scp: ["-q", "-P", String(route.port), ...common, ...master],
      host: `root@${route.host}`,
    };
    await runQuietly("ssh", [...ssh.args, ssh.host, "true"]);
  } else {
    skipped.push({ id: `${id}ssh`, reason: missing ?? "sshd did not start" });
  }
  try {
    await withDaemon(checkout, "bench-wan", async (server) => {
      const daemonId = "bench-wan";
      // exec
      const remote: number[] = [];
      const local: number[] = [];
      await server.exec(daemonId, ["true"]);
      for (let i = 0; i < execRounds; i++) {
        remote.push(await timed(() => server.exec(daemonId, ["true"])));
        if (ssh) {
          local.push(await timed(() => runQuietly("ssh", [...ssh!.args, ssh!.host, "true"])));
        }
      }
      const execFigure = (q: number, name: string): Figure => ({
        id: `${id}exec_${name}`,
        label: `exec of \`true\` over ${link.describe}, ${name}`,
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
            const p = await server.spawn(daemonId, argv, { stdin: false });
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
        id: `${id}stream`,
        label: `stream ${size} from one process over ${link.describe}`,
        unit: "MiB/s",
        value: mibPerSecond(streamBytes, median(ours)),
        baseline: ssh ? mibPerSecond(streamBytes, median(theirs)) : 0,
        baselineLabel: ssh ? "ssh host head -c" : "(no ssh)",
        comparison: "ratio",
        better: "higher",
        goal: "≥ 1×",
      });

      // files
      const target = `${work}/up-${link.prefix}.bin`;
      const up = await timed(() => server.upload(daemonId, target, Deno.openSync(source).readable));
      const down = await timed(async () => {
        const s = await server.downloadStream(daemonId, target);
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
          id: `${id}${name}`,
          label: `${name} ${fileBytes / 1024 / 1024} MiB over ${link.describe}`,
          unit: "MiB/s",
          value: mibPerSecond(fileBytes, ms),
          baseline: ssh ? mibPerSecond(fileBytes, base) : 0,
          baselineLabel: ssh ? `scp ${name}` : "(no ssh)",
          comparison: "ratio",
          better: "higher",
          goal: "≥ 1.2×",
        });
      }
    }, link.daemon);
  } finally {
    if (ssh) await runQuietly("ssh", [...ssh.args, "-O", "exit", ssh.host]).catch(() => {});
    await route?.dispose();
  }
}

/** A long link. */
export const wan: Section = {
  name: "wan",
  about:
    `daemon behind a ${RTT_MS} ms RTT relay, then a ${RTT_MS} ms RTT link with ${
      LOSS * 100
    } % packet loss: ` +
    "exec p50/p99, one process's output, upload/download, against ssh with a control master and scp over the same link",
  run,
};
