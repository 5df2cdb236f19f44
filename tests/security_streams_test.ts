// Attacks on the stream layer (issue 10, items 7 and 9), each against a real controller or a real daemon:
// - a hostile daemon speaking the raw protocol that ignores credit (data past the window, gaps that try to reset
//   the credit check, a download pushed without acks) must have the stream refused, not grow the controller;
// - `download()` stops at `maxBytes`;
// - a hostile controller may not raise the daemon's retention above `--retain-bytes`, nor queue stdin without
//   bound for a child that never reads.
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { type Gap, ProtocolError, Server } from "../mod.ts";
import { encodeDataFrame } from "../protocol/frame.ts";
import { startWorker, TestDaemon } from "./_daemon.ts";
import { rawDaemonSocket, serveRawController } from "./_raw_daemon.ts";
import { sessionOf } from "../server/_process_session.ts";

const TOKEN = "streams-token-0123456789abcdef";
const MiB = 1024 * 1024;

/** A hostile daemon: says hello, then lets the test answer requests and push raw frames. */
class FakeDaemon {
  readonly socket: WebSocket;
  readonly ready: Promise<void>;
  /** Every `reset` the controller sent, by stream id. */
  readonly resets: Map<number, string> = new Map();
  acks = 0;
  #pong: (() => void) | undefined;
  #requests: ((message: Record<string, unknown>) => void)[] = [];
  #pending: Record<string, unknown>[] = [];
  #closed: Promise<void>;

  constructor(url: string, id: string) {
    const { promise: ready, resolve } = Promise.withResolvers<void>();
    const { promise: closed, resolve: close } = Promise.withResolvers<void>();
    this.ready = ready;
    this.#closed = closed;
    this.socket = rawDaemonSocket(url, id, TOKEN, (message) => {
      if (message.t === "welcome") resolve();
      else if (message.t === "pong") this.#pong?.();
      else if (message.t === "reset") this.resets.set(message.sid, message.reason);
      else if (message.t === "ack") this.acks++;
      else if (message.t === "req") {
        const waiter = this.#requests.shift();
        if (waiter) waiter(message);
        else this.#pending.push(message);
      }
    });
    this.socket.onerror = () => {};
    this.socket.onclose = () => {
      resolve();
      close();
    };
  }

  /** The next request the controller sends. */
  request(): Promise<Record<string, unknown>> {
    const pending = this.#pending.shift();
    if (pending) return Promise.resolve(pending);
    return new Promise((resolve) => this.#requests.push(resolve));
  }

  reply(rid: unknown, data: Record<string, unknown>): void {
    this.socket.send(JSON.stringify({ t: "res", rid, ok: true, data }));
  }

  send(message: Record<string, unknown>): void {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  data(sid: number, offset: number, bytes: Uint8Array): void {
    if (this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(encodeDataFrame(sid, offset, bytes));
    }
  }

  /** Resolves once the controller has handled everything sent before. */
  sync(): Promise<void> {
    if (this.socket.readyState !== WebSocket.OPEN) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#pong = resolve;
    this.socket.send('{"t":"ping"}');
    return promise;
  }

  async close(): Promise<void> {
    this.socket.close();
    await this.#closed;
  }
}

async function hostileSetup(id: string): Promise<{ server: Server; fake: FakeDaemon }> {
  const server = await Server.listen({ port: 0, token: TOKEN, reconnectGraceMs: 50 });
  const fake = new FakeDaemon(server.url, id);
  await fake.ready;
  await server.waitForDaemon(id);
  return { server, fake };
}

Deno.test("attack: a daemon that sends gaps to reset the credit check has the stream refused", async () => {
  const { server, fake } = await hostileSetup("gapper");
  try {
    const spawning = server.spawn("gapper", ["cat"]);
    const req = await fake.request();
    assertEquals(req.op, "spawn");
    const args = req.args as { stdout: number; window: number };
    fake.reply(req.rid, { proc: "p-x-1", pid: 42 });
    const p = await spawning;
    // Nobody reads stdout: every byte pushed sits in the controller's memory. The gap each round tries to grant
    // itself another window; 64 rounds would be 64 windows.
    const chunk = new Uint8Array(args.window);
    let offset = 0;
    for (let round = 0; round < 64 && !fake.resets.has(args.stdout); round++) {
      fake.data(args.stdout, offset, chunk);
      offset += chunk.length;
      fake.send({ t: "gap", sid: args.stdout, from: offset, to: offset + 1 });
      offset += 1;
      await fake.sync();
    }
    await fake.sync();
    assert(fake.resets.has(args.stdout), "the controller never refused the stream");
    await assertRejects(() => new Response(p.stdout).arrayBuffer(), ProtocolError);
    sessionOf(p).fail(new Error("test over"));
  } finally {
    await fake.close();
    await server.close();
  }
});

Deno.test("attack: a gap may not start beyond the granted window", async () => {
  const { server, fake } = await hostileSetup("gapper2");
  try {
    const spawning = server.spawn("gapper2", ["cat"]);
    const req = await fake.request();
    const args = req.args as { stdout: number; window: number };
    fake.reply(req.rid, { proc: "p-x-2", pid: 43 });
    const p = await spawning;
    // A gap that starts past everything granted (a well-behaved daemon only sends one inside its credit).
    fake.send({ t: "gap", sid: args.stdout, from: 10 * args.window, to: 10 * args.window + 1 });
    await fake.sync();
    assert(fake.resets.has(args.stdout), "the controller accepted a gap beyond its credit");
    await assertRejects(() => new Response(p.stdout).arrayBuffer(), ProtocolError);
    sessionOf(p).fail(new Error("test over"));
  } finally {
    await fake.close();
    await server.close();
  }
});

Deno.test("attack: a download pushed without credit is refused", async () => {
  const { server, fake } = await hostileSetup("pusher");
  try {
    const downloading = server.downloadStream("pusher", "/big");
    const req = await fake.request();
    assertEquals(req.op, "download");
    const args = req.args as { sid: number; window: number };
    fake.reply(req.rid, { size: 64 * args.window, mode: 0o644, mtime: null }); // a complete reply: replies are validated
    const stream = await downloading;
    // Never read: all of it would pile up in the controller.
    const chunk = new Uint8Array(256 * 1024);
    let offset = 0;
    while (offset < 4 * args.window && !fake.resets.has(args.sid)) {
      fake.data(args.sid, offset, chunk);
      offset += chunk.length;
      if (offset % (4 * MiB) === 0) await fake.sync();
    }
    await fake.sync();
    assert(fake.resets.has(args.sid), `the controller took ${offset} bytes with no credit check`);
    await assertRejects(() => new Response(stream).arrayBuffer(), ProtocolError);
  } finally {
    await fake.close();
    await server.close();
  }
});

Deno.test("download() stops at maxBytes; downloadStream is bounded by its reader", async () => {
  await using t = await startWorker("dl-max");
  const dir = await Deno.makeTempDir({ prefix: "sandd-maxbytes-" });
  try {
    const path = `${dir}/three-mib`;
    await Deno.writeFile(path, new Uint8Array(3 * MiB).fill(7));
    const error = await assertRejects(
      () => t.server.download("dl-max", path, { maxBytes: MiB }),
      Error,
      "maxBytes",
    );
    assert(String(error).includes(String(MiB)), String(error));
    assertEquals((await t.server.download("dl-max", path, { maxBytes: 3 * MiB })).length, 3 * MiB);
    await assertRejects(
      () => t.server.download("dl-max", path, { maxBytes: -1 }),
      RangeError,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("attack: a controller cannot raise retention above the daemon's --retain-bytes", async () => {
  await using t = await startWorker("retain-cap", ["--retain-bytes", "65536"]);
  const p = await t.server.spawn(
    "retain-cap",
    "read x; head -c 300000 /dev/zero; echo; echo tail",
    {
      retainBytes: 1024 * MiB,
    },
  );
  const id = p.id;
  await p.detach();
  const helper = await t.server.attach("retain-cap", id, { from: null });
  const writer = helper.stdin.getWriter();
  await writer.write(new TextEncoder().encode("go\n"));
  await writer.close();
  await helper.detach();
  let exited = false;
  const deadline = Date.now() + 10_000;
  while (!exited && Date.now() < deadline) {
    exited = (await t.server.processes("retain-cap")).some((x) =>
      x.id === id && x.state === "exited"
    );
    if (!exited) await new Promise((r) => setTimeout(r, 20));
  }
  assert(exited);
  const gaps: Gap[] = [];
  const late = await t.server.attach("retain-cap", id, { from: 0, onGap: (g) => gaps.push(g) });
  const bytes = new Uint8Array(await new Response(late.stdout).arrayBuffer());
  const total = 300_000 + "\ntail\n".length;
  assertEquals(gaps.length, 1, "the 1 GiB retention asked for was granted");
  assertEquals(gaps[0]!.to, total - 65_536);
  assertEquals(bytes.length, 65_536);
  await late.status;
});

Deno.test("attack: stdin pushed past its window to a child that never reads is refused", async () => {
  const responses = new Map<number, (message: Record<string, unknown>) => void>();
  const resets = new Map<number, string>();
  let pong: (() => void) | undefined;
  const { server: controller, connected } = serveRawController((message) => {
    if (message.t === "pong") pong?.();
    else if (message.t === "reset") resets.set(message.sid, message.reason);
    else if (message.t === "res") responses.get(message.rid)?.(message);
  });
  const daemon = new TestDaemon({
    id: "stdin-victim",
    url: `ws://127.0.0.1:${controller.addr.port}/ws`,
  });
  try {
    const socket = await connected;
    const sync = () => {
      const { promise, resolve } = Promise.withResolvers<void>();
      pong = resolve;
      socket.send('{"t":"ping"}');
      return promise;
    };
    const { promise: spawned, resolve } = Promise.withResolvers<Record<string, unknown>>();
    responses.set(1, resolve);
    const window = 64 * 1024;
    socket.send(JSON.stringify({
      t: "req",
      rid: 1,
      op: "spawn",
      args: { command: ["sleep", "30"], stdout: 1, stderr: 2, stdin: 3, window },
    }));
    const reply = await spawned;
    assertEquals(reply.ok, true, JSON.stringify(reply));
    // `sleep` never reads its stdin: everything past the pipe's buffer would queue in the daemon.
    const chunk = new Uint8Array(window);
    let offset = 0;
    for (let i = 0; i < 256 && !resets.has(3); i++) {
      socket.send(encodeDataFrame(3, offset, chunk));
      offset += chunk.length;
      if (i % 16 === 15) await sync();
    }
    await sync();
    assert(
      resets.has(3),
      `the daemon queued ${offset} bytes of stdin beyond a ${window}-byte window`,
    );
    socket.send(
      JSON.stringify({
        t: "req",
        rid: 2,
        op: "signal",
        args: { proc: reply.data && (reply.data as { proc: string }).proc, signal: "SIGKILL" },
      }),
    );
    await sync();
    socket.close();
  } finally {
    await daemon.stop();
    await controller.shutdown();
  }
});

Deno.test("attach from: null replays what is retained even when it starts far past the window", async () => {
  await using t = await startWorker("from-null", ["--retain-bytes", "65536"]);
  const total = 5_000_000 + "\ntail\n".length;
  const p = await t.server.spawn("from-null", "read x; head -c 5000000 /dev/zero; echo; echo tail");
  const id = p.id;
  await p.detach();
  const helper = await t.server.attach("from-null", id, { from: null });
  const writer = helper.stdin.getWriter();
  await writer.write(new TextEncoder().encode("go\n"));
  await writer.close();
  await helper.detach();
  let exited = false;
  const deadline = Date.now() + 20_000;
  while (!exited && Date.now() < deadline) {
    exited = (await t.server.processes("from-null")).some((x) =>
      x.id === id && x.state === "exited"
    );
    if (!exited) await new Promise((r) => setTimeout(r, 20));
  }
  assert(exited);
  const gaps: Gap[] = [];
  const late = await t.server.attach("from-null", id, { from: null, onGap: (g) => gaps.push(g) });
  const bytes = new Uint8Array(await new Response(late.stdout).arrayBuffer());
  assertEquals(bytes.length, 65_536);
  assert(new TextDecoder().decode(bytes).endsWith("\ntail\n"));
  assertEquals(gaps, [{ stream: "stdout", from: 0, to: total - 65_536 }]);
  assertEquals((await late.status).exitCode, 0);
});
