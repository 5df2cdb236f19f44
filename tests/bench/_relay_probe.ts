// Ad-hoc probe (not a bench section): CPU and minor page faults per MiB of each process on a relayed stream, the
// owner node in a `sandd serve --cluster` process of its own, the reading node here, against the same stream from
// a daemon of the reading node itself (interleaved). Usage: deno run -A tests/bench/_relay_probe.ts [MiB] [rounds]
import { Server } from "../../mod.ts";
import { TestNats } from "../_nats.ts";
import { startServe } from "../_cli.ts";
import { TestDaemon } from "../_daemon.ts";
import { processCounters } from "./_websocket_sender.ts";

const mib = Number(Deno.args[0] ?? 64);
const rounds = Number(Deno.args[1] ?? 3);
const byob = Deno.env.get("PROBE_BYOB") === "1";
const size = mib * 1024 * 1024;

function natsPid(port: number): number {
  const out = new Deno.Command("pgrep", { args: ["-f", `nats-server .*-p ${port}`] }).outputSync();
  return Number(new TextDecoder().decode(out.stdout).trim().split("\n")[0]);
}

await using nats = await TestNats.start();
const owner = await startServe(["--cluster", nats.url, "--cluster-name", "probe-owner"]);
const window = Number(Deno.env.get("PROBE_WINDOW") ?? 0);
const front = await Server.listen({
  port: 0,
  cluster: { servers: nats.url, name: "probe-front" },
  ...(window > 0 ? { streamWindow: window, maxStreamWindow: window } : {}),
});
const far = new TestDaemon({ id: "far", url: owner.wsUrl });
const near = new TestDaemon({ id: "near", url: front.url });
try {
  await front.waitForDaemon("far", { timeout: 30_000 });
  await front.waitForDaemon("near", { timeout: 30_000 });
  const pids: Record<string, number | "self"> = {
    front: "self",
    owner: owner.child.pid,
    nats: natsPid(nats.port),
    farDaemon: far.pid,
    nearDaemon: near.pid,
  };
  const snap = () =>
    Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, processCounters(pid)]));
  const stream = async (id: string): Promise<number> => {
    const p = await front.spawn(id, ["head", "-c", String(size), "/dev/zero"], { stdin: false });
    let n = 0;
    const t = performance.now();
    if (byob) {
      const reader = p.stdout.getReader({ mode: "byob" });
      let buffer = new ArrayBuffer(256 * 1024);
      for (;;) {
        const { value, done } = await reader.read(new Uint8Array(buffer));
        if (done) break;
        n += value.byteLength;
        buffer = value.buffer as ArrayBuffer;
      }
    } else {
      for await (const chunk of p.stdout) n += chunk.length;
    }
    await p.status;
    if (n !== size) throw new Error(`got ${n}`);
    return mib / ((performance.now() - t) / 1000);
  };
  await stream("near");
  await stream("far");
  const rows: Record<
    string,
    { rate: number[]; cpu: Record<string, number[]>; faults: Record<string, number[]> }
  > = {
    direct: { rate: [], cpu: {}, faults: {} },
    relayed: { rate: [], cpu: {}, faults: {} },
  };
  for (let r = 0; r < rounds; r++) {
    for (
      const [kind, id] of r % 2
        ? [["relayed", "far"], ["direct", "near"]]
        : [["direct", "near"], ["relayed", "far"]]
    ) {
      const before = snap();
      const rate = await stream(id!);
      const after = snap();
      const row = rows[kind!]!;
      row.rate.push(rate);
      for (const k of Object.keys(pids)) {
        (row.cpu[k] ??= []).push((after[k]!.cpuMs - before[k]!.cpuMs) / mib);
        (row.faults[k] ??= []).push((after[k]!.faults - before[k]!.faults) / mib);
      }
    }
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const load = Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  console.log(
    `${mib} MiB x ${rounds} rounds, ${byob ? "BYOB" : "default"} reader, window ${
      window || "default"
    }, load ${load}`,
  );
  for (const [kind, row] of Object.entries(rows)) {
    const parts = Object.keys(pids).map((k) =>
      `${k} ${med(row.cpu[k]!).toFixed(1)}ms/${med(row.faults[k]!).toFixed(0)}f`
    );
    console.log(`${kind}: ${med(row.rate).toFixed(1)} MiB/s; per MiB: ${parts.join(", ")}`);
  }
} finally {
  await far.stop();
  await near.stop();
  await front.close();
  await owner.stop();
}
