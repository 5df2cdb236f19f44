// Ad-hoc probe (not a bench section): both nodes in this process, for `deno run --cpu-prof`: relayed streams only.
// Usage: deno run -A --cpu-prof --cpu-prof-dir=DIR tests/bench/_relay_profile.ts [MiB] [rounds]
import { Server } from "../../mod.ts";
import { TestNats } from "../_nats.ts";
import { TestDaemon } from "../_daemon.ts";
import { startServe } from "../_cli.ts";

const mib = Number(Deno.args[0] ?? 64);
const rounds = Number(Deno.args[1] ?? 4);
const size = mib * 1024 * 1024;
await using nats = await TestNats.start();
// PROBE_APART=1: the owner in a `sandd serve` of its own (the profile is then the reading node's alone).
const apart = Deno.env.get("PROBE_APART") === "1";
const ownerServe = apart
  ? await startServe(["--cluster", nats.url, "--cluster-name", "prof-owner"])
  : null;
const owner = apart
  ? null
  : await Server.listen({ port: 0, cluster: { servers: nats.url, name: "prof-owner" } });
const window = Number(Deno.env.get("PROBE_WINDOW") ?? 0);
const front = await Server.listen({
  port: 0,
  cluster: { servers: nats.url, name: "prof-front" },
  ...(window > 0 ? { streamWindow: window, maxStreamWindow: window } : {}),
});
const far = new TestDaemon({ id: "far", url: ownerServe?.wsUrl ?? owner!.url });
try {
  await front.waitForDaemon("far", { timeout: 30_000 });
  const t = performance.now();
  for (let r = 0; r < rounds; r++) {
    const p = await front.spawn("far", ["head", "-c", String(size), "/dev/zero"], { stdin: false });
    let n = 0;
    if (Deno.env.get("PROBE_BYOB") === "1") {
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
  }
  console.log(`${((mib * rounds) / ((performance.now() - t) / 1000)).toFixed(1)} MiB/s relayed`);
} finally {
  await far.stop();
  await front.close();
  await owner?.close();
  await ownerServe?.stop();
}
