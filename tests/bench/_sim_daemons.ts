// `deno run -A _sim_daemons.ts sandd|echo URL COUNT PREFIX SUBPROTOCOL` opens COUNT simulated daemons to URL, for
// the benchmarks that need more daemons than a machine can run (19,000: a real daemon per target is impossible).
// - "sandd": each speaks the real handshake (hello, welcome), answers pings, and answers every `spawn` the way a
//   daemon running `true` does: the spawn reply, an empty stdout and stderr (eof at offset 0), then exit 0 (on a
//   revision-1 link, SUBPROTOCOL listing `sandd.v1.1` first, the eofs ride on the exit as the real daemon's do). Any
//   other request is refused with an error reply (these daemons run nothing else).
// - "echo": each sends one message once open, then echoes every message it receives (the peer of a bare
//   WebSocket server doing request/reply round trips: the baseline of a broadcast).
// A client whose connection fails before it is ready is opened again (up to 20 tries, 200 ms more apart each time);
// past that the process exits 1 naming the client. Prints "ready" once all are open, then waits for stdin to close.
const [mode, url, countText, prefix, subprotocol] = Deno.args;
const count = Number(countText);
if (mode !== "sandd" && mode !== "echo" || !url || !(count > 0) || !prefix) {
  console.error("Usage: _sim_daemons.ts sandd|echo URL COUNT PREFIX SUBPROTOCOL");
  Deno.exit(2);
}
const MAX_TRIES = 20;
let open = 0;
let closing = false;
const sockets: WebSocket[] = [];
const opened = Promise.withResolvers<void>();

/** What a simulated daemon answers to one controller message (sandd mode). */
function answer(socket: WebSocket, text: string, procs: { next: number }): void {
  if (text === '{"t":"ping"}') {
    socket.send('{"t":"pong"}');
    return;
  }
  const message = JSON.parse(text) as {
    t: string;
    rid?: number;
    op?: string;
    args?: { stdout?: number; stderr?: number };
  };
  if (message.t === "ping") {
    socket.send('{"t":"pong"}');
    return;
  }
  if (message.t !== "req") return;
  if (message.op !== "spawn") {
    socket.send(JSON.stringify({
      t: "res",
      rid: message.rid,
      ok: false,
      error: {
        code: "UNSUPPORTED",
        message: `A simulated daemon runs only spawn, not ${message.op}`,
      },
    }));
    return;
  }
  const proc = `sim-${++procs.next}`;
  socket.send(`{"t":"res","rid":${message.rid},"ok":true,"data":{"proc":"${proc}","pid":1}}`);
  const { stdout, stderr } = message.args!;
  if (socket.protocol.split(".").length > 2) {
    // A revision-1 link (the controller selected it): the eofs ride on the exit, as the real daemon sends them.
    const eofs = stderr !== undefined
      ? `[{"sid":${stdout},"offset":0},{"sid":${stderr},"offset":0}]`
      : `[{"sid":${stdout},"offset":0}]`;
    socket.send(
      `{"t":"exit","proc":"${proc}","exitCode":0,"signal":null,"timedOut":false,"eofs":${eofs}}`,
    );
    return;
  }
  socket.send(`{"t":"eof","sid":${stdout},"offset":0}`);
  if (stderr !== undefined) socket.send(`{"t":"eof","sid":${stderr},"offset":0}`);
  socket.send(`{"t":"exit","proc":"${proc}","exitCode":0,"signal":null,"timedOut":false}`);
}

function connect(i: number, tries: number): void {
  // SUBPROTOCOL may list several, comma-separated, in the order a daemon offers them.
  const socket = mode === "sandd"
    ? new WebSocket(url!, subprotocol!.split(","))
    : new WebSocket(url!);
  sockets[i] = socket;
  let ready = false;
  const procs = { next: 0 };
  const markReady = () => {
    if (ready) return;
    ready = true;
    if (++open === count) opened.resolve();
  };
  socket.onopen = () => {
    if (mode === "echo") {
      socket.send("hello");
      markReady();
      return;
    }
    socket.send(JSON.stringify({
      t: "hello",
      id: `${prefix}-${i}`,
      labels: { bench: "sim" },
      hostname: "sim",
      platform: "linux",
      arch: "x86_64",
      version: "sim",
      pid: i,
      processes: 0,
      instance: `${prefix}-${i}`,
    }));
  };
  socket.onmessage = (event) => {
    if (mode === "echo") {
      socket.send(event.data);
      return;
    }
    const text = event.data as string;
    if (!ready) {
      if (text.startsWith('{"t":"welcome"')) markReady();
      return;
    }
    answer(socket, text, procs);
  };
  socket.onerror = () => {};
  socket.onclose = () => {
    if (ready || closing) return;
    if (tries + 1 >= MAX_TRIES) {
      console.error(`${prefix}: client ${i} could not connect after ${MAX_TRIES} tries`);
      Deno.exit(1);
    }
    setTimeout(() => connect(i, tries + 1), 200 * (tries + 1));
  };
}

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
