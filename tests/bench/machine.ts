// What this machine charges for the two things every SandD data path and round trip is made of, measured so the
// other sections' floors can be read: touching fresh memory (every received message lands in a new buffer) and
// waking another process (every remote call crosses at least two processes twice).
import type { BenchContext, Section } from "./_context.ts";
import { OWN_ROOT } from "./_checkout.ts";
import { type Figure, median, type SectionResult } from "./_stats.ts";

const PAGE = 4096;

/**
 * Fresh pages (a new 64 MiB buffer each round, first touch) against the same pages touched again, in µs per page,
 * measured in a process of its own (_fresh_pages.ts).
 */
async function pages(rounds: number): Promise<{ fresh: number; touched: number }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", `${OWN_ROOT}/tests/bench/_fresh_pages.ts`, String(rounds)],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error("The fresh-memory probe failed");
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/** p50 of one-byte round trips on `conn`, each after a `gapMs` pause (0: back to back). */
async function roundTrips(conn: Deno.TcpConn, count: number, gapMs: number): Promise<number> {
  const byte = new Uint8Array([7]);
  const answer = new Uint8Array(1);
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
    const t = performance.now();
    await conn.write(byte);
    if ((await conn.read(answer)) !== 1) throw new Error("The echo closed");
    times.push(performance.now() - t);
  }
  return median(times);
}

/** An echo in this process, on its own connection. */
async function localEcho(): Promise<{ conn: Deno.TcpConn; close(): Promise<void> }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: (listener.addr as Deno.NetAddr).port,
  });
  conn.setNoDelay(true);
  const server = await accepted;
  (server as Deno.TcpConn).setNoDelay(true);
  const serving = (async () => {
    const buffer = new Uint8Array(1024);
    while (true) {
      const n = await server.read(buffer).catch(() => null);
      if (n === null) break;
      await server.write(buffer.subarray(0, n));
    }
  })();
  return {
    conn,
    close: async () => {
      conn.close();
      await serving;
      server.close();
      listener.close();
    },
  };
}

async function run({ quick }: BenchContext): Promise<SectionResult> {
  const memory = await pages(quick ? 3 : 9);
  const count = quick ? 50 : 500;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", `${OWN_ROOT}/tests/bench/_echo_peer.ts`],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let said = "";
  while (!said.includes("\n")) {
    const { done, value } = await lines.read();
    if (done) throw new Error("The echo peer exited before it listened");
    said += value;
  }
  const remote = await Deno.connect({ hostname: "127.0.0.1", port: Number(said.trim()) });
  remote.setNoDelay(true);
  const local = await localEcho();
  const hot = { remote: [] as number[], local: [] as number[] };
  const cold = { remote: [] as number[], local: [] as number[] };
  try {
    for (let round = 0; round < 3; round++) {
      hot.remote.push(await roundTrips(remote, count, 0));
      hot.local.push(await roundTrips(local.conn, count, 0));
      cold.remote.push(await roundTrips(remote, count / 5, 4));
      cold.local.push(await roundTrips(local.conn, count / 5, 4));
    }
  } finally {
    remote.close();
    await local.close();
    child.kill();
    await child.status;
    await lines.cancel().catch(() => {});
  }
  const trip = (id: string, label: string, of: { remote: number[]; local: number[] }): Figure => ({
    id,
    label,
    unit: "ms",
    value: median(of.remote),
    baseline: median(of.local),
    baselineLabel: "the same to an echo in this process",
    comparison: "overhead",
    better: "lower",
    goal: "informational: what each process crossing costs here",
  });
  const figures: Figure[] = [
    {
      id: "machine.fresh_memory_ms_per_mib",
      label: "first write to fresh memory (a new 64 MiB buffer, one byte per 4 KiB page), per MiB",
      unit: "ms",
      value: memory.fresh * (1024 * 1024 / PAGE) / 1000,
      baseline: memory.touched * (1024 * 1024 / PAGE) / 1000,
      baselineLabel: "the same pages written again",
      comparison: "ratio",
      better: "lower",
      goal: "informational: the price of a new buffer per message",
    },
    trip(
      "machine.round_trip_p50",
      "1-byte round trip to another process over loopback TCP, back to back, p50",
      hot,
    ),
    trip(
      "machine.cold_round_trip_p50",
      "the same after 4 ms idle (as between execs), p50",
      cold,
    ),
  ];
  return { figures, skipped: [] };
}

/** This machine's costs of fresh memory and of process crossings. */
export const machine: Section = {
  name: "machine",
  about:
    "this machine's floors: first touch of fresh memory, round trips to another process (hot and after idle)",
  run,
};
