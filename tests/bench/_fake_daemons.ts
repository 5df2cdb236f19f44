// `deno run -A _fake_daemons.ts sandd|echo URL COUNT PREFIX SUBPROTOCOL` opens COUNT WebSocket clients to URL.
// In "sandd" mode each speaks the real handshake (hello, then answers pings); in "echo" mode each sends one
// message. A client whose connection fails before it is ready is opened again (up to 5 tries, 200 ms apart), so
// a refused connect under load cannot leave the run waiting forever; past that the process exits 1 naming the
// count. Prints "ready" once all are open, then waits for stdin to close.
const [mode, url, countText, prefix, subprotocol] = Deno.args;
const count = Number(countText);
const MAX_TRIES = 5;
let open = 0;
const sockets: WebSocket[] = [];
const opened = Promise.withResolvers<void>();

function connect(i: number, tries: number): void {
  const socket = mode === "sandd" ? new WebSocket(url!, [subprotocol!]) : new WebSocket(url!);
  sockets[i] = socket;
  let ready = false;
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
      if (message.t === "welcome" && !ready) {
        ready = true;
        if (++open === count) opened.resolve();
      }
      if (message.t === "ping") socket.send('{"t":"pong"}');
    } else if (!ready) {
      ready = true;
      if (++open === count) opened.resolve();
    }
  };
  socket.onerror = () => {};
  socket.onclose = () => {
    if (ready || closing) return;
    if (tries + 1 >= MAX_TRIES) {
      console.error(`${prefix}: client ${i} could not connect after ${MAX_TRIES} tries`);
      Deno.exit(1);
    }
    setTimeout(() => connect(i, tries + 1), 200);
  };
}

let closing = false;
for (let i = 0; i < count; i++) {
  connect(i, 0);
  if (i % 500 === 499) await new Promise((r) => setTimeout(r, 20));
}
await opened.promise;
console.log("ready");
for await (const _ of Deno.stdin.readable) { /* wait for EOF */ }
closing = true;
for (const socket of sockets) socket.close();
Deno.exit(0);
