// Programs that play the worker's servers in the forwarding tests, run as child processes (`deno run`):
//   echo   a TCP echo server (writes back what it reads; shuts its write side at the client's end-of-file)
//   count  reads to end-of-file, then answers "got N bytes" and closes (a half-close test)
//   http   an HTTP server: /echo (POST: the body back, streamed), /big?n=N (N bytes), /ws (WebSocket echo),
//          /redirect (302 to /hello), /hello, /headers (the request headers as JSON)
// It prints `PORT <n>` on stdout once listening, and runs until killed.
const mode = Deno.args[0];

if (mode === "echo" || mode === "count") {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  console.log(`PORT ${listener.addr.port}`);
  for await (const conn of listener) {
    (async () => {
      const buffer = new Uint8Array(64 * 1024);
      let total = 0;
      try {
        while (true) {
          const n = await conn.read(buffer);
          if (n === null) break;
          total += n;
          if (mode === "echo") {
            for (let at = 0; at < n;) at += await conn.write(buffer.subarray(at, n));
          }
        }
        if (mode === "count") await conn.write(new TextEncoder().encode(`got ${total} bytes`));
        await conn.closeWrite();
      } catch {
        // client went away
      } finally {
        try {
          conn.close();
        } catch {
          // closed
        }
      }
    })();
  }
} else if (mode === "http") {
  Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: ({ port }) => console.log(`PORT ${port}`),
  }, (request) => {
    const url = new URL(request.url);
    if (url.pathname === "/ws") {
      const { socket, response } = Deno.upgradeWebSocket(request, {
        ...(request.headers.get("sec-websocket-protocol") ? { protocol: "echo" } : {}),
      });
      socket.onmessage = (event) => {
        if (event.data === "close-me") socket.close(4001, "asked to");
        else socket.send(event.data);
      };
      return response;
    }
    if (url.pathname === "/echo") return new Response(request.body);
    if (url.pathname === "/big") {
      let left = Number(url.searchParams.get("n") ?? "0");
      const chunk = new Uint8Array(65536).fill(120);
      return new Response(
        new ReadableStream({
          pull(controller) {
            if (left <= 0) return controller.close();
            const n = Math.min(left, chunk.length);
            controller.enqueue(chunk.slice(0, n));
            left -= n;
          },
        }),
      );
    }
    if (url.pathname === "/redirect") {
      return new Response(null, { status: 302, headers: { location: "/hello" } });
    }
    if (url.pathname === "/hello") return new Response("hello from the worker\n");
    if (url.pathname === "/headers") {
      return Response.json(Object.fromEntries(request.headers));
    }
    return new Response("no such page\n", { status: 404 });
  });
} else {
  console.error(`usage: _forward_servers.ts echo|count|http`);
  Deno.exit(2);
}
