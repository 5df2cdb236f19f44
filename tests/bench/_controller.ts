// A controller process for the memory benchmark: `deno run -A _controller.ts sandd|echo ROOT` prints its port and
// stays up until stdin closes. "sandd" is the checkout's Server; "echo" a bare Deno WebSocket echo server.
const [kind, root] = Deno.args;

if (kind === "echo") {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request, { idleTimeout: 0 });
    socket.onmessage = (event) => socket.send(event.data);
    return response;
  });
  console.log(server.addr.port);
} else {
  const { Server } = await import(`file://${root}/mod.ts`) as typeof import("../../mod.ts");
  const server = await Server.listen({ port: 0, heartbeatMs: 30_000, handshakeTimeoutMs: 120_000 });
  console.log(server.port);
}
for await (const _ of Deno.stdin.readable) { /* wait for EOF */ }
Deno.exit(0);
