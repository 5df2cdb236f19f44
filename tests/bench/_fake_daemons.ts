// `deno run -A _fake_daemons.ts sandd|echo URL COUNT PREFIX SUBPROTOCOL` opens COUNT WebSocket clients to URL.
// In "sandd" mode each speaks the real handshake (hello, then answers pings); in "echo" mode each sends one
// message. A client whose connection fails before it is ready is opened again (up to 5 tries, 200 ms apart), so
// a refused connect under load cannot leave the run waiting forever; past that the process exits 1 naming the
// count. Prints "ready" once all are open, then waits for stdin to close.
//
// `deno run -A _fake_daemons.ts failover URL,URL,... COUNT PREFIX SUBPROTOCOL BACKOFF_MODULE`: COUNT simulated
// daemons that fail over like the real one (daemon/daemon.ts): each holds one link, starting on the first URL;
// when a connect fails or a link drops, it waits the REAL `reconnectDelay` of BACKOFF_MODULE (the checkout's
// daemon/backoff.ts, default options: 1 s first bound, 2 s cap for 5 minutes after a drop, 30 s otherwise) and
// tries the next URL (round robin); a link without a welcome within 10 s is dropped (the daemon's handshake
// timeout). Prints "started", then answers stdin lines: `go` starts every daemon at once, `go RATE` RATE per
// second (answers "going" once all are started);
// `stats` prints `{ connected: [per URL], attempts }`; `times` prints `{ welcomes: [[ms since epoch, URL index],
// ...] }` since the previous `times` (or `go`), where a link that dropped is listed as -1 - its URL index. Stdin closing closes every link and exits.
const [mode, url, countText, prefix, subprotocol] = Deno.args;
const count = Number(countText);
if (mode === "failover") {
  await failover();
  Deno.exit(0);
}
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

/** The "failover" mode (see the top of this file). */
async function failover(): Promise<void> {
  const urls = url!.split(",");
  const { reconnectDelay } = await import(new URL(Deno.args[5]!, "file:///").href) as {
    reconnectDelay: (attempt: number, sinceLostMs: number) => number;
  };
  const connected = urls.map(() => 0);
  let attempts = 0;
  let welcomes: [number, number][] = [];
  let stopping = false;
  const sockets = new Set<WebSocket>();

  function start(i: number): void {
    let attempt = 0;
    let lostAt = 0;
    let index = 0;
    const hello = JSON.stringify({
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
    });
    const once = () => {
      if (stopping) return;
      attempts++;
      const at = index;
      const socket = new WebSocket(urls[at]!, [subprotocol!]);
      sockets.add(socket);
      let welcomed = false;
      const handshake = setTimeout(() => socket.close(), 10_000);
      socket.onopen = () => socket.send(hello);
      socket.onmessage = (event) => {
        const message = JSON.parse(event.data as string) as { t: string };
        if (message.t === "welcome" && !welcomed) {
          welcomed = true;
          clearTimeout(handshake);
          connected[at]!++;
          welcomes.push([Date.now(), at]);
        } else if (message.t === "ping") socket.send('{"t":"pong"}');
      };
      socket.onerror = () => {};
      socket.onclose = () => {
        clearTimeout(handshake);
        sockets.delete(socket);
        if (stopping) return;
        if (welcomed) {
          connected[at]!--;
          welcomes.push([Date.now(), -1 - at]);
          attempt = 0;
          lostAt = Date.now();
        }
        const delay = reconnectDelay(attempt++, lostAt > 0 ? Date.now() - lostAt : Infinity);
        index = (index + 1) % urls.length;
        setTimeout(once, delay);
      };
    };
    once();
  }

  console.log("started");
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  let pending = "";
  for await (const chunk of lines) {
    pending += chunk;
    let at;
    while ((at = pending.indexOf("\n")) >= 0) {
      const command = pending.slice(0, at).trim();
      pending = pending.slice(at + 1);
      if (command === "go" || command.startsWith("go ")) {
        welcomes = [];
        const perSecond = Number(command.slice(3)) || Infinity;
        for (let i = 0; i < count; i++) {
          start(i);
          // Paced: 1/100 of the rate every 10 ms.
          if (perSecond < Infinity && i % Math.max(1, Math.round(perSecond / 100)) === 0) {
            await new Promise((resolve) => setTimeout(resolve, 10));
          }
        }
        console.log("going");
      } else if (command === "stats") {
        console.log(JSON.stringify({ connected, attempts }));
      } else if (command === "times") {
        console.log(JSON.stringify({ welcomes }));
        welcomes = [];
      }
    }
  }
  stopping = true;
  for (const socket of sockets) socket.close();
}
