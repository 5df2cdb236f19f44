// Attacks on port forwarding from a hostile controller speaking the raw protocol against a real daemon: hosts
// other than 127.0.0.1, ports the policy does not list, forwarding disabled, more connections than allowed, and
// bytes past the credit granted. Each would reach a service on the worker the policy keeps out of reach.
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { encodeDataFrame } from "../protocol/frame.ts";
import { TestDaemon } from "./_daemon.ts";
import { denoServer } from "./_forward.ts";
import { type RawMessage, serveRawController } from "./_raw_daemon.ts";

/** A hand-written controller with one real daemon (started with `args`) connected to it. */
async function hostile(id: string, args: string[]) {
  const replies = new Map<number, (message: RawMessage) => void>();
  const resets = new Map<number, string>();
  const data = new Map<number, Uint8Array[]>();
  const eofs = new Set<number>();
  let pong: (() => void) | undefined;
  const { server, connected } = serveRawController((message) => {
    if (message.t === "pong") pong?.();
    else if (message.t === "res") replies.get(message.rid)?.(message);
    else if (message.t === "reset") resets.set(message.sid, message.reason);
    else if (message.t === "eof") eofs.add(message.sid);
  });
  const daemon = new TestDaemon({ id, url: `ws://127.0.0.1:${server.addr.port}/ws`, args });
  const socket = await connected;
  socket.addEventListener("message", (event) => {
    if (typeof event.data === "string") return;
    const bytes = new Uint8Array(event.data as ArrayBuffer);
    const sid = new DataView(bytes.buffer).getUint32(1);
    data.set(sid, [...(data.get(sid) ?? []), bytes.slice(13)]);
  });
  let rid = 0;
  return {
    socket,
    resets,
    data,
    eofs,
    request(op: string, args: Record<string, unknown>): Promise<RawMessage> {
      const id = ++rid;
      const { promise, resolve } = Promise.withResolvers<RawMessage>();
      replies.set(id, resolve);
      socket.send(JSON.stringify({ t: "req", rid: id, op, args }));
      return promise;
    },
    /** Everything the daemon sent before this has arrived. */
    sync(): Promise<void> {
      const { promise, resolve } = Promise.withResolvers<void>();
      pong = resolve;
      socket.send('{"t":"ping"}');
      return promise;
    },
    async [Symbol.asyncDispose]() {
      socket.close();
      await daemon.stop();
      await server.shutdown();
    },
  };
}

Deno.test("attack: a controller cannot tunnel to a host other than 127.0.0.1", async () => {
  await using c = await hostile("fw-attack-host", []);
  for (const host of ["10.0.0.1", "169.254.169.254", "localhost", "example.com", "0.0.0.0"]) {
    const reply = await c.request("connect", { port: 80, sid: 1, input: 2, window: 65536, host });
    assertEquals(reply.ok, false, `${host}: ${JSON.stringify(reply)}`);
    assertEquals(reply.error.code, "POLICY");
    assertEquals(reply.error.rule, "forwardHost");
    assertStringIncludes(reply.error.message, host);
  }
});

Deno.test("attack: forwarding off, or a port not listed, is refused by the daemon", async () => {
  await using echo = denoServer("echo");
  const port = await echo.port;
  {
    await using c = await hostile("fw-attack-none", ["--forward", "none"]);
    const reply = await c.request("connect", { port, sid: 1, input: 2, window: 65536 });
    assertEquals(reply.error?.code, "POLICY", JSON.stringify(reply));
    assertEquals(reply.error.rule, "forward");
    assertStringIncludes(reply.error.message, "disabled");
  }
  {
    // A command allow list makes forwarding default to off: such a controller cannot reach ports otherwise.
    await using c = await hostile("fw-attack-allow", ["--allow", "ls"]);
    const reply = await c.request("connect", { port, sid: 1, input: 2, window: 65536 });
    assertEquals(reply.error?.rule, "forward", JSON.stringify(reply));
  }
  {
    const other = port === 65535 ? port - 1 : port + 1;
    await using c = await hostile("fw-attack-list", ["--forward", `${other},1-2`]);
    const reply = await c.request("connect", { port, sid: 1, input: 2, window: 65536 });
    assertEquals(reply.error?.rule, "forward", JSON.stringify(reply));
    assertStringIncludes(reply.error.message, String(port));
  }
  {
    // Listed: it works, bytes both ways by hand, half-close by eof.
    await using c = await hostile("fw-attack-ok", ["--forward", `${port}`]);
    const reply = await c.request("connect", { port, sid: 1, input: 2, window: 65536 });
    assertEquals(reply.ok, true, JSON.stringify(reply));
    assert(reply.data.window >= 1 && reply.data.window <= 65536);
    c.socket.send(encodeDataFrame(2, 0, new TextEncoder().encode("ping")));
    c.socket.send(JSON.stringify({ t: "eof", sid: 2, offset: 4 }));
    while (!c.eofs.has(1)) await c.sync();
    const back = (c.data.get(1) ?? []).map((b) => new TextDecoder().decode(b)).join("");
    assertEquals(back, "ping");
  }
});

Deno.test("attack: at most --max-tunnels connections per link, and bytes past the credit reset", async () => {
  await using echo = denoServer("echo");
  const port = await echo.port;
  await using c = await hostile("fw-attack-max", ["--max-tunnels", "2"]);
  const a = await c.request("connect", { port, sid: 1, input: 2, window: 65536 });
  const b = await c.request("connect", { port, sid: 3, input: 4, window: 65536 });
  assertEquals([a.ok, b.ok], [true, true]);
  const third = await c.request("connect", { port, sid: 5, input: 6, window: 65536 });
  assertEquals(third.error?.rule, "maxTunnels", JSON.stringify(third));
  const same = await c.request("connect", { port, sid: 7, input: 7, window: 65536 });
  assertEquals(same.error?.code, "BAD_REQUEST");
  // A frame beyond the window the daemon granted resets the connection instead of queueing.
  const beyond = new Uint8Array(a.data.window + 1);
  c.socket.send(encodeDataFrame(2, 0, beyond));
  while (!c.resets.has(2)) await c.sync();
  assertStringIncludes(c.resets.get(2)!, "PROTOCOL");
  // That freed a slot.
  const again = await c.request("connect", { port, sid: 9, input: 10, window: 65536 });
  assertEquals(again.ok, true, JSON.stringify(again));
});
