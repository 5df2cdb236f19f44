// Simulated daemons, for the benchmarks that need more daemons than a machine can run (15,000-19,000: a real daemon
// per target is impossible). One module for every such bench (memory, metrics, broadcast, failover, cluster-capacity).
//
// `deno run -A _sim_daemons.ts sandd|echo URL COUNT PREFIX SUBPROTOCOL` opens COUNT simulated daemons to URL.
// - "sandd": each speaks the real handshake (hello, welcome), answers pings, and answers every `spawn` the way a
//   daemon running `true` does: the spawn reply, an empty stdout and stderr (eof at offset 0), then exit 0 (on a
//   revision-1 link, SUBPROTOCOL listing `sandd.v1.1` first, the eofs ride on the exit as the real daemon's do). Any
//   other request is refused with an error reply (these daemons run nothing else).
// - "echo": each sends one message once open, then echoes every message it receives (the peer of a bare
//   WebSocket server doing request/reply round trips: the baseline of a broadcast).
// - "idle": each sends one message once open, then stays silent.
// - "heartbeat": the peers of the bare echo server that is the memory bench's baseline. Each sends one message
//   once open, then a `{"t":"ping"}` every HEARTBEAT_MS (a 6th argument, default 5,000: the Server's default
//   `heartbeatMs`), the first one HEARTBEAT_MS after it opened, and ignores what comes back (never echoing an
//   echo: that would keep every socket busy forever). An idle sandd link carries the same: the controller sends
//   a link it has sent nothing to for an interval one `ping` and the daemon answers one `pong` (the daemon sends
//   no pings of its own), so per interval each socket carries one small message each way, the phases spread by
//   when the sockets opened, as the controller's are.
// At most 128 clients are being opened at once. A client whose connection fails before it is ready is opened again
// (up to 20 tries, 200 ms more apart each time);
// past that the process exits 1 naming the client. Prints "ready" once all are open, then waits for stdin to close.
//
// `deno run -A _sim_daemons.ts failover URL,URL,... COUNT PREFIX SUBPROTOCOL BACKOFF_MODULE [LOCAL_ADDRESS]`: COUNT
// simulated daemons that fail over like the real one (daemon/daemon.ts, several `--server-url`s), each over the
// lean client of _sim_link.ts from LOCAL_ADDRESS (default 127.0.0.1; the bench gives each helper process its own
// 127.1.x.y, as a fleet has many addresses: from one, the kernel's search for a free port dominated at 15,000 per
// node); `go RATE` is paced by the clock, not by a sleep per daemon (which held it near 100/s). Each holds one link,
// starting on the first URL; when a connect fails or a link drops, it waits the REAL `reconnectDelay` of
// BACKOFF_MODULE (the checkout's daemon/backoff.ts, default options: 1 s first bound, 2 s cap for 5 minutes after a
// drop, 30 s otherwise) and tries the next URL (round robin); a link without a welcome within 10 s is dropped (the
// daemon's handshake timeout). Daemon i is given the URLs after the first in an order rotated by i (with three URLs
// A,B,C: even daemons A,B,C, odd ones A,C,B), as a fleet configured with the other nodes in varied order; with two
// URLs every daemon has A,B. Each answers like a "sandd" one once welcomed. Prints "started", then answers stdin
// lines: `go` starts every daemon at once, `go RATE` RATE per second (answers "going" once all are started);
// `stats` prints `{ connected: [per URL], attempts }`; `times` prints `{ welcomes: [[ms since epoch, URL index],
// ...] }` since the previous `times` (or `go`), where a link that dropped is listed as -1 - its URL index and the
// start of a connect attempt as 1000 + its URL index. Stdin
// closing closes every link and exits.
const [mode, url, countText, prefix, subprotocol] = Deno.args;
const count = Number(countText);
if (
  mode !== "sandd" && mode !== "echo" && mode !== "idle" && mode !== "heartbeat" &&
    mode !== "failover" ||
  !url ||
  !(count > 0) || !prefix
) {
  console.error(
    "Usage: _sim_daemons.ts sandd|echo|idle|heartbeat URL COUNT PREFIX SUBPROTOCOL [HEARTBEAT_MS] | failover URL,... COUNT PREFIX SUBPROTOCOL BACKOFF [LOCAL_ADDRESS]",
  );
  Deno.exit(2);
}
if (mode === "failover") {
  await failover();
  Deno.exit(0);
}
import { WebSocketClient } from "../../daemon/_websocket_client.ts";
import { SimLink } from "./_sim_link.ts";

/** A "sandd" daemon's socket is the real daemon's WebSocket client; the other modes use Deno's. */
type SimSocket = WebSocket | WebSocketClient;
const MAX_TRIES = 20;
/**
 * Sockets being opened at once (a retry keeps its place). Opening thousands at once made the controller's listener
 * close most of them (it holds at most 1,024 connections waiting for a request head, replacing the oldest) and the
 * retries, with the handshakes, starved links already open of their heartbeat answers: on a loaded machine
 * thousands were dropped as silent.
 */
const MAX_OPENING = 128;
let opening = 0;
let nextToOpen = 0;

/** Starts opening sockets while fewer than MAX_OPENING are being opened. */
function openMore(): void {
  while (opening < MAX_OPENING && nextToOpen < count) {
    opening++;
    connect(nextToOpen++, 0);
  }
}
/** The "heartbeat" mode's interval. */
const HEARTBEAT_MS = Number(Deno.args[5] ?? 5_000);
let open = 0;
let closing = false;
const sockets: SimSocket[] = [];
const opened = Promise.withResolvers<void>();

/** What a simulated daemon answers to one controller message (sandd mode). */
function answer(
  socket: { send(data: string): void; readonly protocol: string },
  text: string,
  procs: { next: number },
): void {
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

/** The hello of simulated daemon `id` (pid `i`). */
function hello(id: string, i: number): string {
  return JSON.stringify({
    t: "hello",
    id,
    labels: { bench: "sim" },
    hostname: "sim",
    platform: "linux",
    arch: "x86_64",
    version: "sim",
    pid: i,
    processes: 0,
    instance: id,
  });
}

function connect(i: number, tries: number): void {
  // SUBPROTOCOL may list several, comma-separated, in the order a daemon offers them.
  // The daemon's own client for "sandd": it sets TCP_NODELAY and writes a burst of messages at once, as a real
  // daemon does. Deno's WebSocket client leaves Nagle's algorithm on, so the exit sent right after a spawn's reply
  // waited for the controller's delayed ACK (~40 ms per exec: the exec rows and the broadcast measured that).
  const socket: SimSocket = mode === "sandd"
    ? new WebSocketClient(url!, { protocols: subprotocol!.split(",") })
    : new WebSocket(url!);
  sockets[i] = socket;
  let beat: ReturnType<typeof setInterval> | undefined;
  let ready = false;
  const procs = { next: 0 };
  const markReady = () => {
    if (ready) return;
    ready = true;
    opening--;
    if (++open === count) opened.resolve();
    openMore();
  };
  socket.onopen = () => {
    if (mode !== "sandd") {
      socket.send("hello");
      if (mode === "heartbeat") {
        beat = setInterval(() => {
          if (socket.readyState === WebSocket.OPEN) socket.send('{"t":"ping"}');
        }, HEARTBEAT_MS);
      }
      markReady();
      return;
    }
    socket.send(hello(`${prefix}-${i}`, i));
  };
  socket.onmessage = (event: { data: unknown }) => {
    if (mode !== "sandd") {
      if (mode === "echo") socket.send(event.data as string);
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
    clearInterval(beat);
    if (ready || closing) return;
    if (tries + 1 >= MAX_TRIES) {
      console.error(`${prefix}: client ${i} could not connect after ${MAX_TRIES} tries`);
      Deno.exit(1);
    }
    setTimeout(() => connect(i, tries + 1), 200 * (tries + 1));
  };
}

openMore();
await opened.promise;
console.log("ready");
for await (const _ of Deno.stdin.readable) { /* wait for EOF */ }
closing = true;
for (const socket of sockets) socket.close();
Deno.exit(0);

/** The "failover" mode (see the top of this file). */
async function failover(): Promise<void> {
  const urls = url!.split(",");
  const parsed = urls.map((u) => new URL(u));
  const localAddress = Deno.args[6] ?? "127.0.0.1";
  const { reconnectDelay } = await import(new URL(Deno.args[5]!, "file:///").href) as {
    reconnectDelay: (attempt: number, sinceLostMs: number) => number;
  };
  const connected = urls.map(() => 0);
  let attempts = 0;
  let welcomes: [number, number][] = [];
  let stopping = false;
  const links = new Set<SimLink>();

  function start(i: number): void {
    let attempt = 0;
    let lostAt = 0;
    let index = 0;
    const text = hello(`${prefix}-${i}`, i);
    // This daemon's URL list: the first URL, then the others rotated by i.
    const tail = urls.slice(1);
    const shift = tail.length > 0 ? i % tail.length : 0;
    const order = [0, ...tail.map((_, k) => 1 + (k + shift) % tail.length)];
    const procs = { next: 0 };
    const once = () => {
      if (stopping) return;
      attempts++;
      const at = order[index]!;
      welcomes.push([Date.now(), 1000 + at]); // an attempt begins (listed as 1000 + its URL index)
      let welcomed = false;
      let handshake: ReturnType<typeof setTimeout> | undefined = undefined;
      const link = new SimLink(parsed[at]!, subprotocol!, localAddress, {
        onOpen: (link) => link.send(text),
        onText: (link, data) => {
          if (welcomed) {
            answer(link, data, procs);
          } else if (data.startsWith('{"t":"welcome"')) {
            welcomed = true;
            clearTimeout(handshake);
            connected[at]!++;
            welcomes.push([Date.now(), at]);
          }
        },
        onClose: (link) => {
          clearTimeout(handshake);
          links.delete(link);
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
        },
      });
      links.add(link);
      handshake = setTimeout(() => link.close(), 10_000);
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
        // Paced by the clock: every 10 ms, those due by then (a sleep per daemon would cap the rate near 100/s).
        const begun = performance.now();
        for (let i = 0; i < count;) {
          const due = perSecond === Infinity
            ? count
            : Math.min(count, Math.floor((performance.now() - begun) * perSecond / 1_000) + 1);
          while (i < due) start(i++);
          if (i < count) await new Promise((resolve) => setTimeout(resolve, 10));
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
  for (const link of links) link.close();
}
