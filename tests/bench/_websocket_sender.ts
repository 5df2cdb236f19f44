// The sending half of the stream section's bare WebSocket baseline, run as a process of its own: Deno's built-in
// WebSocket client sends `total` bytes in binary messages of `size` bytes to `url`, keeping at most `window` bytes
// unacknowledged (the receiver answers with the count it has taken as a text message, as a controller returns
// credit), then prints its CPU time (ms) and minor page faults as JSON and exits.
//
//   deno run -A tests/bench/_websocket_sender.ts URL TOTAL SIZE WINDOW
import { threadsCpuMs } from "./_cpu.ts";

/**
 * Minor page faults and CPU time (ms) of a process so far (Linux /proc). The CPU time is the threads' schedstat,
 * in nanoseconds: stat's 10 ms ticks read 0 for a quick run on a fast machine.
 */
export function processCounters(pid: number | "self"): { faults: number; cpuMs: number } {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Fields after the command name: state is the first, minflt the 8th.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { faults: Number(fields[7]), cpuMs: threadsCpuMs(pid) };
}

if (import.meta.main) {
  const [url, totalArg, sizeArg, windowArg] = Deno.args;
  const total = Number(totalArg);
  const size = Number(sizeArg);
  const window = Number(windowArg);
  if (!url || !(total > 0) || !(size > 0) || !(window >= size)) {
    console.error("usage: _websocket_sender.ts URL TOTAL SIZE WINDOW");
    Deno.exit(2);
  }
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  await new Promise<void>((resolve, reject) => {
    socket.onopen = () => resolve();
    socket.onerror = () => reject(new Error(`Cannot reach ${url}`));
  });
  // One message buffer, sent again and again (the socket copies it); a first byte like a data frame's.
  const message = new Uint8Array(size);
  message[0] = 1;
  let acked = 0;
  let wake: (() => void) | null = null;
  socket.onmessage = (event) => {
    acked = Number(event.data);
    wake?.();
  };
  const start = processCounters("self");
  let sent = 0;
  while (sent < total) {
    while (sent - acked + size > window) {
      await new Promise<void>((resolve) => wake = resolve);
      wake = null;
    }
    const n = Math.min(size, total - sent);
    socket.send(n === size ? message : message.subarray(0, n));
    sent += n;
  }
  while (acked < total) {
    await new Promise<void>((resolve) => wake = resolve);
    wake = null;
  }
  const end = processCounters("self");
  console.log(
    JSON.stringify({ faults: end.faults - start.faults, cpuMs: end.cpuMs - start.cpuMs }),
  );
  socket.close();
  await new Promise((resolve) => socket.onclose = resolve);
}
