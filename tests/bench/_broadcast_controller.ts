// A controller process for the broadcast benchmark: `deno run -A _broadcast_controller.ts sandd|echo ROOT` prints
// its port, then answers commands on stdin, one JSON line each, and exits when stdin closes:
// - `stats`: `{ sockets }`, connected daemons (sandd) or open sockets (echo);
// - `broadcast CONCURRENCY`: one round to every socket, CONCURRENCY at a time, answered with
//   `{ ms, longestTickMs, ok, failed, firstError?, real? }`: the wall time, the longest gap between ticks of a 10 ms
//   timer during the round (the worst event-loop stall), how many targets answered and how many failed. "sandd" runs
//   the checkout's `server.broadcast({}, "true", { concurrency })`, with one real daemon among the targets (`real`:
//   its exit code, the sanity check); "echo" is a bare Deno WebSocket server sending one message to each socket and
//   awaiting its echo, CONCURRENCY in flight: the floor of a request/reply round over the same sockets.
import { loadCheckout } from "./_checkout.ts";
import { BenchDaemon } from "./_daemon.ts";

const [kind, root] = Deno.args;
/** The real daemon's id. */
const REAL = "bench-real";

let last = performance.now();
let longest = 0;
const ticker = setInterval(() => {
  const now = performance.now();
  longest = Math.max(longest, now - last);
  last = now;
}, 10);

let sockets: () => number;
let round: (concurrency: number) => Promise<object>;
let stop = async () => {};
if (kind === "echo") {
  const open = new Set<WebSocket>();
  const waiting = new Map<WebSocket, () => void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request, { idleTimeout: 0 });
    socket.onopen = () => open.add(socket);
    socket.onclose = () => open.delete(socket);
    socket.onmessage = () => {
      const done = waiting.get(socket);
      waiting.delete(socket);
      done?.();
    };
    return response;
  });
  sockets = () => open.size;
  round = async (concurrency) => {
    const targets = [...open];
    let next = 0;
    let ok = 0;
    const worker = async () => {
      while (next < targets.length) {
        const socket = targets[next++]!;
        const answered = new Promise<void>((resolve) => waiting.set(socket, resolve));
        socket.send('{"t":"req","op":"spawn"}');
        await answered;
        ok++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, targets.length) }, worker));
    return { ok, failed: 0 };
  };
  stop = () => server.shutdown();
  console.log(server.addr.port);
} else {
  const checkout = await loadCheckout(root!);
  const server = await checkout.mod.Server.listen({ port: 0, handshakeTimeoutMs: 120_000 });
  const daemon = new BenchDaemon(checkout, { id: REAL, url: server.url });
  await server.waitForDaemon(REAL, { timeout: 60_000 });
  sockets = () => server.daemonCount;
  round = async (concurrency) => {
    const results = await server.broadcast({}, "true", { concurrency });
    let ok = 0;
    let failed = 0;
    let firstError: string | undefined;
    for (const result of results.values()) {
      if (result instanceof Error || result.exitCode !== 0) {
        failed++;
        firstError ??= result instanceof Error ? result.message : `exit ${result.exitCode}`;
      } else {
        ok++;
      }
    }
    const real = results.get(REAL);
    return {
      ok,
      failed,
      ...(firstError !== undefined ? { firstError } : {}),
      real: real === undefined ? "missing" : real instanceof Error ? real.message : real.exitCode,
    };
  };
  stop = async () => {
    await daemon.stop();
    await server.close();
  };
  console.log(server.port);
}

const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
let pending = "";
for await (const chunk of lines) {
  pending += chunk;
  let at;
  while ((at = pending.indexOf("\n")) >= 0) {
    const [command, ...args] = pending.slice(0, at).trim().split(" ");
    pending = pending.slice(at + 1);
    if (command === "stats") {
      console.log(JSON.stringify({ sockets: sockets() }));
    } else if (command === "broadcast") {
      longest = 0;
      last = performance.now();
      const started = performance.now();
      const result = await round(Number(args[0]));
      const ms = performance.now() - started;
      console.log(JSON.stringify({ ms, longestTickMs: longest, ...result }));
    }
  }
}
clearInterval(ticker);
await stop();
Deno.exit(0);
