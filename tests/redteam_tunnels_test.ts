// Red-team pass 2 on port tunnels: a hostile controller speaking the raw protocol to a real daemon, trying to leave
// worker-side connections open behind the link's back (stream ids shared between tunnels and other streams).
import { assert, assertEquals } from "./_assert.ts";
import { TestDaemon } from "./_daemon.ts";
import { type RawMessage, serveRawController, within } from "./_raw_daemon.ts";

/** A TCP server on 127.0.0.1 that counts the connections it holds open (each closed when the peer closes). */
function countingServer() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  let accepted = 0;
  const reads: Promise<void>[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        accepted++;
        open.add(conn);
        reads.push((async () => {
          const buffer = new Uint8Array(4096);
          try {
            while ((await conn.read(buffer)) !== null) {
              // drain
            }
          } catch {
            // reset
          }
          open.delete(conn);
          try {
            conn.close();
          } catch {
            // closed
          }
        })());
      }
    } catch {
      // closed
    }
  })();
  return {
    port: listener.addr.port,
    get open() {
      return open.size;
    },
    get accepted() {
      return accepted;
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      for (const conn of open) {
        try {
          conn.close();
        } catch {
          // closed
        }
      }
      await Promise.all(reads);
    },
  };
}

/** A hand-written controller with one real daemon (started with `args`) connected to it. */
async function hostile(id: string, args: string[]) {
  const replies = new Map<number, (message: RawMessage) => void>();
  const { server, connected } = serveRawController((message) => {
    if (message.t === "res") replies.get(message.rid)?.(message);
  });
  const daemon = new TestDaemon({ id, url: `ws://127.0.0.1:${server.addr.port}/ws`, args });
  const socket = await connected;
  let rid = 0;
  return {
    socket,
    request(op: string, requestArgs: Record<string, unknown>): Promise<RawMessage> {
      const n = ++rid;
      const { promise, resolve } = Promise.withResolvers<RawMessage>();
      replies.set(n, resolve);
      socket.send(JSON.stringify({ t: "req", rid: n, op, args: requestArgs }));
      return promise;
    },
    async [Symbol.asyncDispose]() {
      socket.close();
      await daemon.stop();
      await server.shutdown();
    },
  };
}

/** Wait (bounded) until `check` holds, polling: the worker-side sockets close with no event the test can await. */
async function until(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return true;
}

Deno.test("redteam2: connects racing on the same stream ids leave no tunnel behind a dropped link", async () => {
  await using target = countingServer();
  await using c = await hostile("rt2-tunnel-race", []);
  // Two connects with the same ids, sent back to back: both used to pass the "in use" check while dialling, and
  // the second bound over the first, whose socket no route could close any more.
  const pairs = 12;
  const replies = await within(
    Promise.all(
      Array.from({ length: pairs }, (_, k) => [
        c.request("connect", {
          port: target.port,
          sid: 2 * k + 1,
          input: 2 * k + 2,
          window: 65536,
        }),
        c.request("connect", {
          port: target.port,
          sid: 2 * k + 1,
          input: 2 * k + 2,
          window: 65536,
        }),
      ]).flat(),
    ),
    15_000,
    "connect replies",
  );
  for (let k = 0; k < pairs; k++) {
    const ok = [replies[2 * k]!.ok, replies[2 * k + 1]!.ok].filter(Boolean).length;
    assertEquals(ok, 1, `pair ${k}: ${JSON.stringify([replies[2 * k], replies[2 * k + 1]])}`);
  }
  // A tunnel whose routes another stream took over (downloads on both of its ids) is still the link's.
  const tunnel = await c.request("connect", {
    port: target.port,
    sid: 901,
    input: 902,
    window: 65536,
  });
  assertEquals(tunnel.ok, true, JSON.stringify(tunnel));
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/a`, "a");
    for (const sid of [901, 902]) {
      const reply = await c.request("download", { path: `${dir}/a`, sid, window: 65536 });
      assertEquals(reply.ok, true, JSON.stringify(reply));
    }
    assert(
      await until(() => target.accepted >= pairs + 1, 5_000),
      "the tunnels reached the server",
    );
    // The link drops: every worker-side connection must go with it.
    c.socket.close();
    const closed = await until(() => target.open === 0, 5_000);
    assert(closed, `${target.open} worker-side connection(s) still open after the link closed`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
