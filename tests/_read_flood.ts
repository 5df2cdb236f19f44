// A flood of inbound messages for a controller, run as a child process by tests/heartbeat_lag_test.ts: COUNT raw
// daemon links (upgrade, hello), then each writes batches of BATCH pongs as fast as the controller reads them.
// A controller reading such a backlog completes some sockets' reads seconds late while its timers stay nearly on
// time. Prints "flooding" once every link was welcomed; stdin closing ends it.
//
// deno run -A tests/_read_flood.ts URL COUNT
import { SUBPROTOCOL } from "../mod.ts";
import { helloText } from "./_raw_daemon.ts";
import { textFrame } from "./bench/_sim_link.ts";

const [url, countText] = Deno.args;
const count = Number(countText);
const BATCH = 64;
const target = new URL(url!);
const encoder = new TextEncoder();

const pong = textFrame('{"t":"pong"}');
const batch = new Uint8Array(pong.length * BATCH);
for (let i = 0; i < BATCH; i++) batch.set(pong, i * pong.length);

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  while (bytes.length > 0) bytes = bytes.subarray(await conn.write(bytes));
}

/** One link: upgraded and welcomed; then its reads are drained in the background. */
async function open(i: number): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: target.hostname, port: Number(target.port) });
  await writeAll(
    conn,
    encoder.encode(
      `GET ${target.pathname} HTTP/1.1\r\nhost: ${target.host}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n` +
        `sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n` +
        `sec-websocket-protocol: ${SUBPROTOCOL}\r\n\r\n`,
    ),
  );
  const hello = helloText(`flood-${i}`, "flood");
  const buffer = new Uint8Array(65536);
  let seen = "";
  let helloSent = false;
  while (!seen.includes('"welcome"')) {
    const n = await conn.read(buffer);
    if (n === null) {
      throw new Error(`flood link ${i} closed before its welcome: ${seen.slice(0, 200)}`);
    }
    seen += new TextDecoder().decode(buffer.subarray(0, n));
    if (!helloSent && seen.includes("\r\n\r\n")) {
      if (!seen.startsWith("HTTP/1.1 101")) {
        throw new Error(`flood link ${i}: ${seen.slice(0, 200)}`);
      }
      helloSent = true;
      await writeAll(conn, textFrame(hello));
    }
  }
  void (async () => {
    try {
      while (await conn.read(buffer) !== null) { /* pings and the like: ignored */ }
    } catch {
      // closed
    }
  })();
  return conn;
}

const conns: Deno.TcpConn[] = [];
for (let i = 0; i < count; i += 50) {
  conns.push(
    ...await Promise.all(Array.from({ length: Math.min(50, count - i) }, (_, k) => open(i + k))),
  );
}
console.log("flooding");
let stopping = false;
for (const conn of conns) {
  void (async () => {
    try {
      while (!stopping) await writeAll(conn, batch);
    } catch {
      // the controller closed it
    }
  })();
}
for await (const _ of Deno.stdin.readable) { /* until stdin closes */ }
stopping = true;
for (const conn of conns) conn.close();
Deno.exit(0);
