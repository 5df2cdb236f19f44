// Lag-aware liveness (protocol/SPEC.md section 3): a side whose own event loop was stalled does not count the stall
// as its peer's silence, so a starved controller or daemon does not drop healthy links (and add their reconnects to
// the load that starved it); a peer that is truly silent while the loop is healthy is still dropped within
// 3 x heartbeatMs. The stalls here are real: a busy loop in this test process (the controller's), SIGSTOP (the
// daemon's).
import { Server, SUBPROTOCOL } from "../mod.ts";
import { assert, assertEquals, assertLess } from "./_assert.ts";
import { TestDaemon } from "./_daemon.ts";
import { within } from "./_raw_daemon.ts";

/** Keep this thread's event loop busy for `ms` (nothing else in this process runs meanwhile). */
function block(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // busy
  }
}

/**
 * A hand-written daemon on `url` that says hello and answers pings while `answering` is true. `pings` resolves
 * each time a ping arrives (a fresh promise after each), so a test can await the controller's next ping.
 */
function answeringDaemon(url: string, id: string) {
  const socket = new WebSocket(url, { protocols: [SUBPROTOCOL] });
  const closed = new Promise<CloseEvent>((resolve) => socket.onclose = resolve);
  const state = { answering: true, pings: 0, next: Promise.withResolvers<void>() };
  socket.onopen = () =>
    socket.send(JSON.stringify({
      t: "hello",
      id,
      labels: {},
      hostname: "lag",
      platform: "linux",
      arch: "x86_64",
      version: "0",
      pid: 1,
      processes: 0,
      instance: id,
    }));
  socket.onmessage = (event) => {
    if (typeof event.data !== "string" || !event.data.includes('"ping"')) return;
    state.pings++;
    if (state.answering) socket.send('{"t":"pong"}');
    const next = state.next;
    state.next = Promise.withResolvers<void>();
    next.resolve();
  };
  return {
    socket,
    closed,
    state,
    /** Resolves at the next ping after this call. */
    nextPing: () => state.next.promise,
  };
}

Deno.test("a controller whose loop was blocked past the silence bound keeps a daemon that answers", async () => {
  const heartbeatMs = 300;
  await using server = await Server.listen({ port: 0, heartbeatMs });
  const daemon = answeringDaemon(server.url, "lag-1");
  let dropped = false;
  server.addEventListener("disconnect", () => dropped = true);
  try {
    await server.waitForDaemon("lag-1");
    await daemon.nextPing();
    // The whole process stops for 5 intervals: the daemon's pong to the last ping is older than the bound
    // (3 intervals) when the controller's heartbeat runs again, which is this controller's stall, not silence.
    block(5 * heartbeatMs);
    // The next two pings are answered, so the link is seen alive again.
    await within(daemon.nextPing(), 20 * heartbeatMs, "a ping after the stall");
    await within(daemon.nextPing(), 20 * heartbeatMs, "a second ping after the stall");
    assertEquals(dropped, false, "the controller dropped an answering daemon after its own stall");
    assertEquals(server.daemonCount, 1);
  } finally {
    daemon.socket.close();
    await daemon.closed;
  }
});

Deno.test("after a stall, a daemon that goes silent is still dropped within 3 x heartbeatMs", async () => {
  const heartbeatMs = 300;
  await using server = await Server.listen({ port: 0, heartbeatMs });
  const daemon = answeringDaemon(server.url, "lag-2");
  try {
    await server.waitForDaemon("lag-2");
    await daemon.nextPing();
    block(5 * heartbeatMs);
    // Seen alive after the stall (a ping answered), then silent: the stall is before its last message, so it
    // extends nothing.
    await within(daemon.nextPing(), 20 * heartbeatMs, "a ping after the stall");
    const gone = new Promise<number>((resolve) =>
      server.addEventListener("disconnect", () => resolve(performance.now()), { once: true })
    );
    const muted = performance.now();
    daemon.state.answering = false;
    const at = await within(gone, 20 * heartbeatMs, "the silent daemon's drop");
    assertLess(at - muted, 3 * heartbeatMs + 300);
    const closed = await daemon.closed;
    assertEquals(closed.code, 4008);
  } finally {
    daemon.socket.close();
    await daemon.closed;
  }
});

/**
 * A controller written here: welcomes one daemon with `heartbeatMs`, pings it every `heartbeatMs` while `pinging`,
 * and counts its pongs. It never drops the link itself (the test watches the daemon's side).
 */
function pingingController(heartbeatMs: number) {
  const state = {
    pinging: true,
    pongs: 0,
    nextPong: Promise.withResolvers<void>(),
  };
  const socketReady = Promise.withResolvers<WebSocket>();
  const closed = Promise.withResolvers<CloseEvent>();
  let timer: ReturnType<typeof setInterval> | undefined;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request, {
      protocol: SUBPROTOCOL,
      idleTimeout: 0,
    });
    socket.onerror = () => {};
    socket.onclose = (event) => {
      clearInterval(timer);
      closed.resolve(event);
    };
    socket.onmessage = (event) => {
      if (typeof event.data !== "string") return;
      const message = JSON.parse(event.data);
      if (message.t === "hello") {
        socket.send(JSON.stringify({ t: "welcome", version: "0", heartbeatMs }));
        timer = setInterval(() => {
          if (state.pinging && socket.readyState === WebSocket.OPEN) socket.send('{"t":"ping"}');
        }, heartbeatMs);
        socketReady.resolve(socket);
      } else if (message.t === "pong") {
        state.pongs++;
        const next = state.nextPong;
        state.nextPong = Promise.withResolvers<void>();
        next.resolve();
      } else if (message.t === "ping") socket.send('{"t":"pong"}');
    };
    return response;
  });
  return {
    server,
    state,
    socket: socketReady.promise,
    closed: closed.promise,
    url: `ws://127.0.0.1:${server.addr.port}/ws`,
    stop: async () => {
      clearInterval(timer);
      await server.shutdown();
    },
  };
}

Deno.test("a daemon whose loop was stopped past the silence bound keeps a controller that pings", async () => {
  const heartbeatMs = 300;
  const controller = pingingController(heartbeatMs);
  const daemon = new TestDaemon({ id: "lag-daemon-1", url: controller.url });
  try {
    await within(controller.socket, 30_000, "the daemon's hello");
    await within(controller.state.nextPong.promise, 10_000, "a first pong");
    // The daemon's process stops for 6 intervals (twice its bound) while the controller keeps pinging: the pings
    // wait in its socket, which is its own stall, not the controller's silence.
    Deno.kill(daemon.pid, "SIGSTOP");
    const stoppedAt = performance.now();
    while (performance.now() - stoppedAt < 6 * heartbeatMs) {
      await new Promise((resolve) => setTimeout(resolve, heartbeatMs));
    }
    Deno.kill(daemon.pid, "SIGCONT");
    // Three more pongs (about three intervals) and the link is still the same one.
    for (let i = 0; i < 3; i++) {
      await within(
        controller.state.nextPong.promise,
        20 * heartbeatMs,
        `pong ${i + 1} after the stop`,
      );
    }
    const closedEarly = await Promise.race([controller.closed, Promise.resolve(null)]);
    assertEquals(closedEarly, null, "the daemon dropped a controller that kept pinging");
    assert(!daemon.log.includes("Controller silent"), daemon.log);
  } finally {
    Deno.kill(daemon.pid, "SIGCONT");
    await daemon.stop();
    await controller.stop();
  }
});

Deno.test("a daemon drops a controller that stops pinging within 3 x heartbeatMs", async () => {
  const heartbeatMs = 300;
  const controller = pingingController(heartbeatMs);
  const daemon = new TestDaemon({ id: "lag-daemon-2", url: controller.url });
  try {
    await within(controller.socket, 30_000, "the daemon's hello");
    await within(controller.state.nextPong.promise, 10_000, "a first pong");
    const muted = performance.now();
    controller.state.pinging = false;
    const closed = await within(controller.closed, 20 * heartbeatMs, "the daemon's drop");
    // Silent since the last ping (at most one interval before muting): 3 intervals from then, plus a margin for
    // the close to travel and the one turn the daemon gives its loop before blaming the controller.
    assertLess(performance.now() - muted, 3 * heartbeatMs + 400);
    assertEquals(closed.code, 4008);
    await daemon.waitForLog("Controller silent");
  } finally {
    await daemon.stop();
    await controller.stop();
  }
});

Deno.test("a controller whose reads lag behind a flood of inbound messages keeps a daemon that answers", async () => {
  // Timers alone do not see this stall: reading a backlog, the loop completes some sockets' reads seconds late
  // while its timers fire nearly on time (server/_read_canary.ts). Before the read canary, the daemon below,
  // answering every ping from its own process, was dropped as silent during the flood. (It is hand-written, with
  // no silence watch of its own: the controller's pings are late too, and a real daemon with a healthy loop
  // rightly counts that as the controller's silence, protocol/SPEC.md section 3.)
  const heartbeatMs = 500;
  await using server = await Server.listen({ port: 0, heartbeatMs });
  const target = new URL(server.url);
  const daemon = new Deno.Command("python3", {
    args: ["-c", ANSWERING_DAEMON, target.hostname, target.port, target.pathname, SUBPROTOCOL],
    stdin: "piped",
    stdout: "null",
  }).spawn();
  const flood = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./_read_flood.ts", import.meta.url).pathname, server.url, "1000"],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const out = flood.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await server.waitForDaemon("answering-1", { timeout: 30_000 });
    const dropped = new Promise<string>((resolve) =>
      server.addEventListener("disconnect", (event) => {
        if (event.daemon.id === "answering-1") resolve("dropped");
      })
    );
    assertEquals((await within(out.read(), 60_000, "the flood's links")).value?.trim(), "flooding");
    // Twelve silence bounds of flood: the answering daemon's link must live through all of it.
    const outcome = await Promise.race([
      dropped,
      new Promise<string>((resolve) =>
        timer = setTimeout(() => resolve("kept"), 12 * 3 * heartbeatMs)
      ),
    ]);
    assertEquals(
      outcome,
      "kept",
      "the controller dropped an answering daemon while its reads lagged",
    );
    assertEquals(server.daemons().some((d) => d.id === "answering-1"), true);
  } finally {
    clearTimeout(timer);
    await flood.stdin.close().catch(() => {});
    await out.cancel().catch(() => {});
    await flood.status;
    await daemon.stdin.close().catch(() => {});
    await daemon.status;
  }
});

/**
 * Python: daemon "answering-1" on HOST PORT PATH (SUBPROTOCOL): hello, then a pong for every ping; stdin ends it.
 * With a 6th argument it prints "upgraded" after the 101 and sends its hello only once a line comes on stdin.
 */
const ANSWERING_DAEMON = `
import json, os, socket, struct, sys, threading
host, port, path, protocol = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection((host, port))
s.sendall((f"GET {path} HTTP/1.1\\r\\nHost: {host}:{port}\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
    f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n"
    f"Sec-WebSocket-Protocol: {protocol}\\r\\n\\r\\n").encode())
def frame(text):
    data = text.encode()
    head = bytes([0x81, 0x80 | len(data)]) if len(data) < 126 else bytes([0x81, 0x80 | 126]) + struct.pack(">H", len(data))
    return head + b"\\0\\0\\0\\0" + data
buf = b""
while b"\\r\\n\\r\\n" not in buf:
    buf += s.recv(4096)
head, buf = buf.split(b"\\r\\n\\r\\n", 1)
assert head.startswith(b"HTTP/1.1 101"), head
if len(sys.argv) > 5:
    print("upgraded", flush=True)
    sys.stdin.readline()
s.sendall(frame(json.dumps({"t": "hello", "id": "answering-1", "labels": {}, "hostname": "py", "platform": "linux",
    "arch": "x86_64", "version": "0", "pid": os.getpid(), "processes": 0, "instance": "answering-1"})))
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
while True:
    while len(buf) >= 2:
        n, at = buf[1] & 0x7f, 2
        if n == 126:
            if len(buf) < 4: break
            n, at = struct.unpack(">H", buf[2:4])[0], 4
        elif n == 127:
            if len(buf) < 10: break
            n, at = struct.unpack(">Q", buf[2:10])[0], 10
        if len(buf) < at + n: break
        payload, buf = buf[at:at + n], buf[at + n:]
        if buf is not None and b'"ping"' in payload:
            s.sendall(frame('{"t":"pong"}'))
    chunk = s.recv(65536)
    if not chunk:
        os._exit(0)
    buf += chunk
`;

Deno.test("a controller whose loop was blocked past the handshake timeout takes the hello that waited", async () => {
  // The daemon's hello arrives while the controller's loop is blocked for three handshake timeouts: it waits
  // unread, which is the controller's lag, not the daemon's. Before, the handshake timer fired first and closed it.
  const handshakeTimeoutMs = 500;
  await using server = await Server.listen({ port: 0, handshakeTimeoutMs });
  const target = new URL(server.url);
  const daemon = new Deno.Command("python3", {
    args: [
      "-c",
      ANSWERING_DAEMON,
      target.hostname,
      target.port,
      target.pathname,
      SUBPROTOCOL,
      "wait",
    ],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const out = daemon.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stdin = daemon.stdin.getWriter();
  try {
    assertEquals((await within(out.read(), 30_000, "the upgrade")).value?.trim(), "upgraded");
    await stdin.write(new TextEncoder().encode("go\n"));
    block(3 * handshakeTimeoutMs);
    const info = await server.waitForDaemon("answering-1", { timeout: 10_000 });
    assertEquals(info.id, "answering-1");
  } finally {
    await stdin.close().catch(() => {});
    await out.cancel().catch(() => {});
    await daemon.status;
  }
});
