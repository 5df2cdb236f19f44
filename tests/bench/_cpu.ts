// CPU time of a process across all its threads (Deno's worker threads included), for per-MiB CPU figures.
import process from "node:process";

/** CPU time (every thread) a process has used, in milliseconds (Linux: the threads' schedstat, in ns). */
export function threadsCpuMs(pid: number | "self"): number {
  if (pid === "self") {
    const { user, system } = process.cpuUsage();
    return (user + system) / 1000;
  }
  let ns = 0;
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/schedstat`).split(" ")[0]);
    } catch {
      // the thread ended meanwhile
    }
  }
  return ns / 1e6;
}
