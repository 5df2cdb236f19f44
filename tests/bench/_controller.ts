// A controller process for the memory-at-scale benchmark: `deno run -A _controller.ts sandd|echo ROOT` prints its
// port, then answers each "stats" line on stdin with one JSON line `{ sockets, longestTickMs }` (connected
// daemons or open sockets, and the longest gap between ticks of a 10 ms timer since the previous "stats": the
// worst event-loop stall), and exits when stdin closes. "sandd" is the checkout's Server with its default
// heartbeat; "echo" a bare Deno WebSocket echo server.
const [kind, root] = Deno.args;

let sockets: () => number;
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
  const { Server } = await import(`file://${root}/mod.ts`) as typeof import("../../mod.ts");
  const server = await Server.listen({ port: 0, handshakeTimeoutMs: 120_000 });
  sockets = () => server.daemonCount;
  console.log(server.port);
}

let last = performance.now();
let longest = 0;
setInterval(() => {
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
    const line = pending.slice(0, at).trim();
    pending = pending.slice(at + 1);
    if (line === "stats") {
      console.log(JSON.stringify({ sockets: sockets(), longestTickMs: longest }));
      longest = 0;
    }
  }
}
Deno.exit(0);
