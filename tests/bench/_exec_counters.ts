// Load-robust counters of the exec path, for diagnosis (not a section of `deno task bench`): the daemon's CPU time
// and its threads' voluntary context switches (each one a sleep and a wake-up) per exec of `true`, the same for the
// controller (this process), with the round trip beside them. On a shared 2-core machine the round trip drifts with the load; these counters hardly do.
//
//   deno run -A tests/bench/_exec_counters.ts [ROOT ...] [--rounds 400]
//
// Each ROOT (default: this checkout) gets its own controller and daemon, one after the other.
import { parseArgs } from "node:util";
import { loadCheckout, OWN_ROOT } from "./_checkout.ts";
import { BenchDaemon } from "./_daemon.ts";
import { quantile } from "./_stats.ts";

/** CPU time (user + system) of a process, in ms. */
function cpuMs(pid: number): number {
  const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1]!.split(" ");
  // utime and stime, in clock ticks of 10 ms (Linux's USER_HZ).
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Voluntary context switches of all the threads of a process, and how many threads it has. */
function switches(pid: number): { voluntary: number; threads: number } {
  let voluntary = 0;
  let threads = 0;
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const status = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/status`);
      voluntary += Number(/\nvoluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? 0);
      threads++;
    } catch {
      // the thread ended meanwhile
    }
  }
  return { voluntary, threads };
}

async function measure(root: string, rounds: number): Promise<Record<string, number | string>> {
  const checkout = await loadCheckout(root);
  await using server = await checkout.mod.Server.listen({ port: 0 });
  const id = "exec-counters";
  await using daemon = new BenchDaemon(checkout, { id, url: server.url });
  await server.waitForDaemon(id, { timeout: 60_000 });
  for (let i = 0; i < 50; i++) await server.exec(id, ["true"]);
  const cpu0 = cpuMs(daemon.pid);
  const switches0 = switches(daemon.pid);
  const ownCpu0 = cpuMs(Deno.pid);
  const ownSwitches0 = switches(Deno.pid);
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    await server.exec(id, ["true"]);
    times.push(performance.now() - t);
  }
  const switches1 = switches(daemon.pid);
  const ownSwitches1 = switches(Deno.pid);
  return {
    root,
    cpuMsPerExec: (cpuMs(daemon.pid) - cpu0) / rounds,
    wakeUpsPerExec: (switches1.voluntary - switches0.voluntary) / rounds,
    threads: switches1.threads,
    controllerCpuMsPerExec: (cpuMs(Deno.pid) - ownCpu0) / rounds,
    controllerWakeUpsPerExec: (ownSwitches1.voluntary - ownSwitches0.voluntary) / rounds,
    p50Ms: quantile(times, 0.5),
    p99Ms: quantile(times, 0.99),
  };
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { rounds: { type: "string", default: "400" } },
    allowPositionals: true,
  });
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds <= 0) {
    throw new RangeError(`--rounds must be a positive integer: received ${values.rounds}`);
  }
  if (Deno.build.os !== "linux") {
    console.error("exec counters: skipped, they read /proc (Linux only)");
  } else {
    console.log(`load: ${Deno.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
    for (const root of positionals.length > 0 ? positionals : [OWN_ROOT]) {
      console.log(JSON.stringify(await measure(root, rounds)));
    }
  }
}
