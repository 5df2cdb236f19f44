// Protocol revision 1 (sandd.v1.1): an exit carries the eofs of the process's streams, so a command such as
// `true` costs the reply and one exit. Negotiated on the upgrade, so old controllers and daemons keep working.
import { Server, SUBPROTOCOL } from "../mod.ts";
import { SUBPROTOCOL_REVISED, SUBPROTOCOLS } from "../protocol/version.ts";
import { assert, assertEquals } from "./_assert.ts";
import { TestDaemon } from "./_daemon.ts";
import { type RawMessage, serveRawController, within } from "./_raw_daemon.ts";

/** What a raw controller saw of one process: its text messages about it and the binary frames, in order. */
type Seen = { kind: "text"; message: RawMessage } | { kind: "data"; sid: number; bytes: number };

/**
 * A hand-written controller that selects `protocol` from the daemon's offer, welcomes it, and records everything
 * the daemon sends after the hello.
 */
function rawController(protocol: string | null) {
  const seen: Seen[] = [];
  let notify = () => {};
  const { promise: connected, resolve: onSocket } = Promise.withResolvers<WebSocket>();
  let offered = "";
  const record = (entry: Seen) => {
    seen.push(entry);
    notify();
  };
  const onText = (message: RawMessage) => record({ kind: "text", message });
  let server: Deno.HttpServer<Deno.NetAddr>;
  if (protocol === SUBPROTOCOL) {
    // The shared helper is exactly a controller that speaks only sandd.v1.
    const raw = serveRawController(onText);
    server = raw.server;
    raw.connected.then((socket) => {
      socket.addEventListener("message", (event) => {
        if (typeof event.data !== "string") record(frameOf(event.data as ArrayBuffer));
      });
      onSocket(socket);
    });
  } else {
    server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
      offered = request.headers.get("sec-websocket-protocol") ?? "";
      const { socket, response } = Deno.upgradeWebSocket(request, {
        ...(protocol ? { protocol } : {}),
        idleTimeout: 0,
      });
      socket.binaryType = "arraybuffer";
      socket.onerror = () => {};
      socket.onmessage = (event) => {
        if (typeof event.data !== "string") {
          record(frameOf(event.data as ArrayBuffer));
          return;
        }
        const message = JSON.parse(event.data);
        if (message.t === "hello") {
          socket.send(JSON.stringify({ t: "welcome", version: "0", heartbeatMs: 60_000 }));
          onSocket(socket);
        } else if (message.t === "ping") socket.send('{"t":"pong"}');
        else onText(message);
      };
      return response;
    });
  }
  /** Resolves once `done(seen)` holds. */
  const until = (done: (seen: Seen[]) => boolean, what: string): Promise<void> =>
    within(
      new Promise<void>((resolve) => {
        const check = () => {
          if (done(seen)) resolve();
        };
        notify = check;
        check();
      }),
      20_000,
      what,
    );
  return {
    server,
    connected,
    seen,
    until,
    get offered() {
      return offered;
    },
  };
}

function frameOf(data: ArrayBuffer): Seen {
  const view = new DataView(data);
  return { kind: "data", sid: view.getUint32(1), bytes: data.byteLength - 13 };
}

/** Spawn `command` with stdout on `sid` and stderr on `sid + 1`; wait for its exit and both ends. */
async function run(
  controller: ReturnType<typeof rawController>,
  socket: WebSocket,
  rid: number,
  command: string[],
): Promise<Seen[]> {
  const sid = rid * 2;
  const from = controller.seen.length;
  socket.send(JSON.stringify({
    t: "req",
    rid,
    op: "spawn",
    args: { command, stdout: sid, stderr: sid + 1, window: 1 << 20 },
  }));
  const mine = () => controller.seen.slice(from);
  const ends = (seen: Seen[]) => {
    const ended = new Set<number>();
    let exited = false;
    for (const entry of seen) {
      if (entry.kind !== "text") continue;
      const m = entry.message;
      if (m.t === "eof") ended.add(m.sid);
      if (m.t === "exit") {
        exited = true;
        for (const eof of m.eofs ?? []) ended.add(eof.sid);
      }
    }
    return exited && ended.has(sid) && ended.has(sid + 1);
  };
  await controller.until(() => ends(mine()), `the exit and both ends of ${command.join(" ")}`);
  return mine();
}

/** Each stream of the run ended exactly once, at `offsets`, whether by an eof message or in the exit's eofs. */
function assertEndedOnce(seen: Seen[], sid: number, offsets: [number, number]): void {
  const ends: [number, number][] = [];
  for (const entry of seen) {
    if (entry.kind !== "text") continue;
    const m = entry.message;
    if (m.t === "eof") ends.push([m.sid, m.offset]);
    if (m.t === "exit") { for (const eof of m.eofs ?? []) ends.push([eof.sid, eof.offset]); }
  }
  ends.sort((a, b) => a[0] - b[0]);
  assertEquals(ends, [[sid, offsets[0]], [sid + 1, offsets[1]]]);
}

/** No data frame of a stream whose end an exit carried comes after that exit. */
function assertCarriedLast(seen: Seen[]): void {
  const exitAt = seen.findIndex((e) => e.kind === "text" && e.message.t === "exit");
  const exit = (seen[exitAt] as { message: RawMessage }).message;
  for (const { sid } of exit.eofs ?? []) {
    const late = seen.slice(exitAt + 1).some((e) => e.kind === "data" && e.sid === sid);
    assert(!late, `data on stream ${sid} after the exit that carried its end`);
  }
}

Deno.test("on a sandd.v1.1 link the exit of a quick command carries both eofs: a reply and one exit", async () => {
  const controller = rawController(SUBPROTOCOL_REVISED);
  await using _server = controller.server;
  await using _daemon = new TestDaemon({
    id: "ends",
    url: `ws://127.0.0.1:${controller.server.addr.port}/ws`,
  });
  const socket = await within(controller.connected, 20_000, "the daemon's hello");
  assertEquals(controller.offered, SUBPROTOCOLS.join(", "));
  let carried = 0;
  for (let rid = 1; rid <= 20; rid++) {
    const seen = await run(controller, socket, rid, ["true"]);
    assertEndedOnce(seen, rid * 2, [0, 0]);
    assertCarriedLast(seen);
    const texts = seen.flatMap((e) => e.kind === "text" ? [e.message] : []);
    assertEquals(texts[0].t, "res");
    assertEquals(texts[0].rid, rid);
    assertEquals(texts.find((m) => m.t === "exit").exitCode, 0);
    // The whole conversation: the reply and one exit carrying both ends.
    if (texts.length === 2 && texts[1].eofs?.length === 2) carried++;
  }
  // The ends of a command that exits at once leave with its exit (a loaded machine may split a few).
  assert(carried >= 10, `only ${carried} of 20 exits carried both eofs`);
  // With output, the data comes first and the ends still ride on the exit.
  const seen = await run(controller, socket, 21, ["sh", "-c", "printf hello; printf oops >&2"]);
  assertEndedOnce(seen, 42, [5, 4]);
  assertCarriedLast(seen);
  assertEquals(seen.filter((e) => e.kind === "data").length, 2);
});

Deno.test("the first end waits only briefly: an exit is not held while a job keeps the pipes open", async () => {
  const controller = rawController(SUBPROTOCOL_REVISED);
  await using _server = controller.server;
  await using _daemon = new TestDaemon({
    id: "held",
    url: `ws://127.0.0.1:${controller.server.addr.port}/ws`,
  });
  const socket = await within(controller.connected, 20_000, "the daemon's hello");
  // sh exits at once; its background job holds stdout and stderr for a while, then writes.
  const seen = await run(controller, socket, 1, ["sh", "-c", "(sleep 0.3; printf late) &"]);
  assertEndedOnce(seen, 2, [4, 0]);
  const exitAt = seen.findIndex((e) => e.kind === "text" && e.message.t === "exit");
  const dataAt = seen.findIndex((e) => e.kind === "data");
  assert(exitAt >= 0 && dataAt > exitAt, "the exit waited for the job's output");
  // And the reverse: outputs closed long before the exit go out on their own, without waiting for it.
  const early = await run(controller, socket, 2, ["sh", "-c", "exec >&- 2>&-; sleep 0.3"]);
  assertEndedOnce(early, 4, [0, 0]);
  const texts = early.flatMap((e) => e.kind === "text" ? [e.message.t] : []);
  assertEquals(texts, ["res", "eof", "eof", "exit"]);
});

Deno.test("an old controller (sandd.v1 only) gets eof messages and exits without eofs", async () => {
  const controller = rawController(SUBPROTOCOL);
  await using _server = controller.server;
  await using _daemon = new TestDaemon({
    id: "old-controller",
    url: `ws://127.0.0.1:${controller.server.addr.port}/ws`,
  });
  const socket = await within(controller.connected, 20_000, "the daemon's hello");
  for (let rid = 1; rid <= 10; rid++) {
    const seen = await run(controller, socket, rid, ["true"]);
    assertEndedOnce(seen, rid * 2, [0, 0]);
    for (const entry of seen) {
      if (entry.kind === "text" && entry.message.t === "exit") {
        assertEquals(entry.message.eofs, undefined);
      }
    }
  }
});

Deno.test("the controller selects sandd.v1.1 when offered and sandd.v1 for an old daemon", async () => {
  await using server = await Server.listen({ port: 0 });
  for (
    const [offer, selected] of [
      [[SUBPROTOCOL_REVISED, SUBPROTOCOL], SUBPROTOCOL_REVISED],
      [[SUBPROTOCOL], SUBPROTOCOL],
      [[SUBPROTOCOL, "sandd.v1.7"], SUBPROTOCOL],
    ] as const
  ) {
    const socket = new WebSocket(server.url, [...offer]);
    const closed = new Promise((resolve) => socket.onclose = resolve);
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = () => reject(new Error("the upgrade failed"));
    });
    assertEquals(socket.protocol, selected);
    socket.close();
    await closed;
  }
  // And a real daemon on the revised link: exec works end to end (the ends come with the exits).
  await using _daemon = new TestDaemon({ id: "new", url: server.url });
  await server.waitForDaemon("new");
  for (let i = 0; i < 5; i++) {
    const result = await server.exec("new", ["sh", "-c", `printf ${i}; printf e >&2; exit ${i}`]);
    assertEquals([result.stdout, result.stderr, result.exitCode], [String(i), "e", i]);
  }
});
