// exec of `true` through the controller and a daemon, against a local Deno.Command spawn, interleaved in a random
// order (see `run`).
//
// Where an exec's time goes (2026-12-02, timeOrigin + performance.now() marks in both processes of a patched copy,
// 300 execs, shared 2-core machine at load 14-16, so every figure is inflated; p50 (p10) per stage):
//   1 controller JS + send → daemon's onmessage                       0.39 (0.25) ms
//   2 daemon: parse, validate, policy, table, PATH lookup, pipes       0.30 (0.23) ms
//   3 posix_spawn (the parent waits while the vfork child resets
//     its signals, closes fds and execs; the local spawn pays it too)  2.1 (0.9) ms
//   4 child handle, pidfd, first reads, poller start, reply written   0.27 (0.16) ms
//   5 `true` runs and exits; the worker thread's poll returns and
//     the event loop resumes (one thread hand-off more than the
//     local spawn, whose pidfd and pipes sit in the event loop's own
//     epoll)                                                          6.2 (2.7) ms after the reply
//   6 serve, reap, read the ends, table, exit (+eofs) written          0.44 (0.28) ms (a second poll round when the
//     pidfd lags the pipes' hang-up: the kernel closes a child's files before it signals its exit)
//   7 exit written → controller resolved                               0.61 (0.41) ms
// So the overhead is two WebSocket hops, one thread hand-off and ~0.6 ms (p10, loaded) of JavaScript around the
// spawn on the daemon, none dominant. Per exec the daemon makes ~1.5 poll calls, 2 socket writes, 1 pidfd_open,
// 1 waitpid and one statx per PATH entry (`strace -c -f`); `_exec_counters.ts` prints load-robust counters (CPU
// and thread wake-ups per exec of the daemon and of the controller). A `SIGCHLD` listener to learn of the exit
// on the event loop does not save the hand-off: Deno delivers signals through its own signal thread (see
// daemon/ffi/poller.ts).
import { type BenchContext, localSpawn, type Section } from "./_context.ts";
import { BenchDaemon, withDaemon } from "./_daemon.ts";
import { FrameCounter } from "./_frame_counter.ts";
import { BareExecPeer } from "./_bare_exec.ts";
import type { Checkout, Server } from "./_checkout.ts";
import { type Figure, quantile, type SectionResult, shuffle } from "./_stats.ts";

/**
 * Messages a daemon sends per exec of `true` (reply, exit, eofs), counted by a relay on its link: on a link as this
 * checkout negotiates it, or made plain sandd.v1 (as an older controller would select it).
 */
async function messagesPerExec(
  checkout: Checkout,
  server: Server,
  plainV1: boolean,
  rounds: number,
): Promise<number> {
  await using counter = FrameCounter.start(server.url, { plainV1 });
  const id = plainV1 ? "bench-exec-v1" : "bench-exec-counted";
  await using _daemon = new BenchDaemon(checkout, { id, url: counter.url });
  await server.waitForDaemon(id, { timeout: 60_000 });
  for (let i = 0; i < 5; i++) await server.exec(id, ["true"]);
  counter.reset();
  for (let i = 0; i < rounds; i++) await server.exec(id, ["true"]);
  // Heartbeat traffic is not the exec's.
  return (counter.count("up") - counter.count("up", "pong") - counter.count("up", "ping")) / rounds;
}

async function run({ checkout, quick }: BenchContext): Promise<SectionResult> {
  const rounds = quick ? 30 : 400;
  const warmup = quick ? 5 : 50;
  return await withDaemon(checkout, "bench-exec", async (server) => {
    const remote: number[] = [];
    const local: number[] = [];
    const bare: number[] = [];
    await using peer = await BareExecPeer.start();
    for (let i = 0; i < warmup; i++) await server.exec("bench-exec", ["true"]);
    for (let i = 0; i < warmup; i++) await localSpawn(["true"]);
    for (let i = 0; i < warmup; i++) await peer.exec(["true"]);
    const runs: [() => Promise<unknown>, number[]][] = [
      [() => server.exec("bench-exec", ["true"]), remote],
      [() => localSpawn(["true"]), local],
      [() => peer.exec(["true"]), bare],
    ];
    for (let i = 0; i < rounds; i++) {
      // Interleaved, so both see the same machine noise, in a random order each round (as in _api.ts): with a
      // fixed order (remote, local, remote, ...) every remote exec followed a local spawn, which left the daemon
      // idle (cold caches, a sleeping CPU to wake) for ~3.5 ms, and every local spawn followed a remote exec, which
      // left the controller's process warm. Measured 2026-12-02 (quiet): remote 4.87 ms p50 alone and 5.06
      // interleaved, local 3.45 alone and 3.98 interleaved; at load 9-17 the order effect was larger than the
      // overhead itself (remote after local 17.7-23.3 ms, local after remote 12.0-15.6 ms, both after themselves
      // 13.4-21.4 ms). A random order gives each the same mix of predecessors.
      for (const [run, times] of shuffle([...runs])) {
        const t = performance.now();
        await run();
        times.push(performance.now() - t);
      }
    }
    const counted = quick ? 10 : 100;
    const messages: Figure = {
      id: "exec.daemon_messages",
      label: "daemon → controller messages per exec of `true`",
      unit: "messages",
      value: await messagesPerExec(checkout, server, false, counted),
      baseline: await messagesPerExec(checkout, server, true, counted),
      baselineLabel: "on a sandd.v1 link",
      comparison: "ratio",
      better: "lower",
      goal: "reply + exit",
    };
    return {
      figures: [
        {
          id: "exec.p50",
          label: "exec round trip of `true`, p50",
          unit: "ms",
          value: quantile(remote, 0.5),
          baseline: quantile(local, 0.5),
          baselineLabel: "local Deno.Command",
          comparison: "overhead",
          better: "lower",
          goal: "overhead ≤ 0.3 ms",
        },
        {
          id: "exec.bare_p50",
          label:
            "floor: the same round trip to a bare remote peer (Deno WebSocket + Deno.Command, no SandD), p50",
          unit: "ms",
          value: quantile(bare, 0.5),
          baseline: quantile(local, 0.5),
          baselineLabel: "local Deno.Command",
          comparison: "overhead",
          better: "lower",
          goal: "informational: what any remote exec pays here",
        },
        {
          id: "exec.over_bare_p50",
          label: "exec round trip of `true` over the bare remote peer's, p50",
          unit: "ms",
          value: quantile(remote, 0.5),
          baseline: quantile(bare, 0.5),
          baselineLabel: "bare remote peer",
          comparison: "overhead",
          better: "lower",
          goal: "informational: SandD's own cost",
        },
        {
          id: "exec.p99",
          label: "exec round trip of `true`, p99",
          unit: "ms",
          value: quantile(remote, 0.99),
          baseline: quantile(local, 0.99),
          baselineLabel: "local Deno.Command",
          comparison: "overhead",
          better: "lower",
          goal: "≤ 5 ms",
        },
        messages,
      ],
      skipped: [],
    };
  });
}

/** exec latency. */
export const exec: Section = {
  name: "exec",
  about: "exec of `true`: p50/p99 round trip against a local Deno.Command spawn",
  run,
};
