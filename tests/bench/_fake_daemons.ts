// `deno run -A _fake_daemons.ts sandd|echo URL COUNT PREFIX SUBPROTOCOL` opens COUNT WebSocket clients to URL.
// In "sandd" mode each speaks the real handshake (hello, then answers pings); in "echo" mode each sends one
// message. Prints "ready" once all are open, then waits for stdin to close.
const [mode, url, countText, prefix, subprotocol] = Deno.args;
const count = Number(countText);
let open = 0;
const sockets: WebSocket[] = [];
const opened = Promise.withResolvers<void>();
for (let i = 0; i < count; i++) {
  const socket = mode === "sandd" ? new WebSocket(url!, [subprotocol!]) : new WebSocket(url!);
  sockets.push(socket);
  socket.onopen = () => {
    if (mode === "sandd") {
      socket.send(JSON.stringify({
        t: "hello",
        id: `${prefix}-${i}`,
        labels: { bench: "1" },
        hostname: "bench",
        platform: "linux",
        arch: "x86_64",
        version: "bench",
        pid: i,
        processes: 0,
        instance: `${prefix}-${i}`,
      }));
    } else {
      socket.send("hello");
    }
  };
  socket.onmessage = (event) => {
    if (mode === "sandd") {
      const message = JSON.parse(event.data as string);
      if (message.t === "welcome" && ++open === count) opened.resolve();
      if (message.t === "ping") socket.send('{"t":"pong"}');
    } else if (++open === count) opened.resolve();
  };
  socket.onerror = () => {};
  if (i % 500 === 499) await new Promise((r) => setTimeout(r, 20));
}
await opened.promise;
console.log("ready");
for await (const _ of Deno.stdin.readable) { /* wait for EOF */ }
for (const socket of sockets) socket.close();
Deno.exit(0);
