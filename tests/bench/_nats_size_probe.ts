import { TestNats } from "/work/wt/relay3/tests/_nats.ts";
import { headers } from "@nats-io/transport-node";
import { connectDeno } from "/work/wt/relay3/server/cluster/_nats_transport.ts";
import { processCounters } from "/work/wt/relay3/tests/bench/_websocket_sender.ts";
await using nats = await TestNats.start();
const pid = Number(
  new TextDecoder().decode(
    new Deno.Command("pgrep", { args: ["-f", `nats-server .*-p ${nats.port}`] }).outputSync()
      .stdout,
  ).trim(),
);
const pub = await connectDeno({ servers: nats.url });
const sub = await connectDeno({ servers: nats.url });
const total = 128 * 1024 * 1024;
const withHeaders = Deno.env.get("H") === "1";
const inflight = Number(Deno.env.get("INFLIGHT") ?? 2097152);
for (
  const size
    of (Deno.args.length
      ? Deno.args.map(Number)
      : [512 * 1024, 256 * 1024, 64 * 1024, 60 * 1024, 32 * 1024])
) {
  let got = 0;
  const done = Promise.withResolvers<void>();
  const s = sub.subscribe("x." + size, {
    callback: (_e, m) => {
      got += m.data.length;
      if (got >= total) done.resolve();
    },
  });
  await sub.flush();
  const before = processCounters(pid);
  const self = processCounters("self");
  const t = performance.now();
  const payload = new Uint8Array(size);
  // windowed: at most 2 MiB in flight
  let sent = 0;
  while (sent < total) {
    while (sent - got < inflight && sent < total) {
      if (withHeaders) {
        const h = headers();
        h.set("d", "bench-cluster");
        h.set("k", "b");
        pub.publish("x." + size, payload, { headers: h });
      } else pub.publish("x." + size, payload);
      sent += size;
    }
    await new Promise((r) => setTimeout(r, 0));
  }
  await done.promise;
  const ms = performance.now() - t;
  const after = processCounters(pid);
  const selfAfter = processCounters("self");
  const mib = total / 1048576;
  console.log(
    `${size / 1024} KiB: ${(mib / (ms / 1000)).toFixed(0)} MiB/s, nats-server ${
      ((after.cpuMs - before.cpuMs) / mib).toFixed(2)
    } ms/MiB ${((after.faults - before.faults) / mib).toFixed(1)} f/MiB; deno ${
      ((selfAfter.cpuMs - self.cpuMs) / mib).toFixed(2)
    } ms/MiB ${((selfAfter.faults - self.faults) / mib).toFixed(0)} f/MiB`,
  );
  s.unsubscribe();
}
await pub.close();
await sub.close();
