// A controller process for the at-scale benchmark: `deno run -A _controller.ts sandd|echo ROOT` prints its port,
// then answers commands on stdin, one JSON line each, and exits when stdin closes:
// - `stats`: `{ sockets, longestTickMs }`: connected daemons or open sockets, and the longest gap between ticks of
//   a 10 ms timer since the previous `stats` (the worst event-loop stall);
// - `exec SECONDS IN_FLIGHT` (sandd only): `{ perSecond, p50, p99, max }` of execs of `true` on the one real
//   daemon this controller starts, IN_FLIGHT at a time for SECONDS;
// - `exec SECONDS IN_FLIGHT PREFIX` (sandd only): the same on a simulated daemon (the first connected one whose id
//   starts with PREFIX), which answers at once: the controller's own cost per exec, with no real spawn to wait for.
// Either answers `{ error }` too when an exec failed (the run stops at the first failure).
// "sandd" is the checkout's Server with its default heartbeat; "echo" a bare Deno WebSocket echo server that sends
// every message back (its peers send it one heartbeat message per interval, see memory.ts).
import { loadCheckout } from "./_checkout.ts";
import { BenchDaemon } from "./_daemon.ts";
import { quantile } from "./_stats.ts";

const [kind, root] = Deno.args;
/** The real daemon's id. */
const REAL = "bench-real";

let sockets: () => number;
let exec: (seconds: number, inFlight: number, prefix?: string) => Promise<object> = () => {
  throw new Error("exec needs the sandd controller");
};
let stop = async () => {};
if (kind === "echo") {
  let open = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request, { idleTimeout: 0 });
    socket.onopen = () => open++;
    socket.onclose = () => open--;
    socket.onmessage = (event) => socket.send(event.data);
    return response;
  });
  sockets = () => open;
  console.log(server.addr.port);
} else {
  const checkout = await loadCheckout(root!);
  const server = await checkout.mod.Server.listen({ port: 0, handshakeTimeoutMs: 120_000 });
  const daemon = new BenchDaemon(checkout, { id: REAL, url: server.url });
  await server.waitForDaemon(REAL, { timeout: 60_000 });
  sockets = () => server.daemonCount;
  exec = async (seconds, inFlight, prefix) => {
    // A simulated daemon: the first connected one whose id starts with PREFIX (a loaded machine may have dropped
    // some as silent). The run stops at the first failure and reports it (a daemon dropped mid-run).
    let id = REAL;
    if (prefix !== undefined) {
      const found = server.daemons().find((info: { id: string }) => info.id.startsWith(prefix));
      if (!found) {
        return { perSecond: 0, p50: 0, p99: 0, max: 0, error: `No daemon ${prefix}* is connected` };
      }
      id = found.id;
    }
    const samples: number[] = [];
    const end = performance.now() + seconds * 1000;
    let error: string | undefined;
    await Promise.all(Array.from({ length: inFlight }, async () => {
      while (performance.now() < end && error === undefined) {
        const t = performance.now();
        try {
          await server.exec(id, ["true"]);
        } catch (e) {
          error ??= `${id}: ${(e as Error).message}`;
          return;
        }
        samples.push(performance.now() - t);
      }
    }));
    return {
      perSecond: samples.length / seconds,
      p50: quantile(samples, 0.5),
      p99: quantile(samples, 0.99),
      max: quantile(samples, 1),
      ...(error !== undefined ? { error } : {}),
    };
  };
  stop = async () => {
    await daemon.stop();
    await server.close();
  };
  console.log(server.port);
}

let last = performance.now();
let longest = 0;
const ticker = setInterval(() => {
  const now = performance.now();
  longest = Math.max(longest, now - last);
  last = now;
}, 10);

const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
let pending = "";
for await (const chunk of lines) {
  pending += chunk;
  let at;
  while ((at = pending.indexOf("\n")) >= 0) {
    const [command, ...args] = pending.slice(0, at).trim().split(" ");
    pending = pending.slice(at + 1);
    if (command === "stats") {
      console.log(JSON.stringify({ sockets: sockets(), longestTickMs: longest }));
      longest = 0;
    } else if (command === "exec") {
      console.log(JSON.stringify(await exec(Number(args[0]), Number(args[1]), args[2])));
    }
  }
}
clearInterval(ticker);
await stop();
Deno.exit(0);
