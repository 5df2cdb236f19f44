// The controller's heartbeat on an idle link: about one ping per interval (never one per slot of the wheel), a
// link that answers stays up, and the pong that answers is taken whether or not it is spelled the usual way.
import { Server } from "../mod.ts";
import { assert, assertEquals, assertLess } from "./_assert.ts";
import { rawDaemonSocket } from "./_raw_daemon.ts";

Deno.test("an idle link gets one ping per heartbeat interval and stays connected", async () => {
  const heartbeatMs = 500;
  await using server = await Server.listen({ port: 0, heartbeatMs });
  const pings: number[] = [];
  const socket = new WebSocket(`${server.url}`, { protocols: ["sandd.v1"] });
  const closed = new Promise<void>((resolve) => socket.onclose = () => resolve());
  const welcomed = Promise.withResolvers<void>();
  socket.onopen = () =>
    socket.send(JSON.stringify({
      t: "hello",
      id: "idle-1",
      labels: {},
      hostname: "test",
      platform: "linux",
      arch: "x86_64",
      version: "0",
      pid: 1,
      processes: 0,
      instance: "idle-1",
    }));
  let spelled = 0;
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data as string);
    if (message.t === "welcome") welcomed.resolve();
    if (message.t !== "ping") return;
    pings.push(performance.now());
    // Alternate the usual spelling with an equivalent one that must go through the parser.
    socket.send(spelled++ % 2 === 0 ? '{"t":"pong"}' : '{ "t": "pong" }');
  };
  try {
    await welcomed.promise;
    const started = performance.now();
    // Watch 8 intervals: measuring a rate, not waiting for an event.
    await new Promise((resolve) => setTimeout(resolve, 8 * heartbeatMs));
    const window = performance.now() - started;
    assertEquals(server.daemonCount, 1, "the answering link was dropped");
    const seen = pings.filter((t) => t >= started).length;
    // One per interval at most (plus one for where the window falls), a few fewer on a loaded machine.
    assertLess(seen, window / heartbeatMs + 2);
    assert(seen >= 3, `only ${seen} pings in ${window.toFixed(0)} ms`);
    // Both spellings of pong counted as signs of life and as round trips.
    assert(server.daemon("idle-1")?.rttMs !== undefined, "no round trip measured");
  } finally {
    socket.close();
    await closed;
  }
});

Deno.test("a raw daemon that stops answering is dropped although pings keep going out", async () => {
  const heartbeatMs = 500;
  await using server = await Server.listen({ port: 0, heartbeatMs });
  let answering = true;
  const socket = rawDaemonSocket(server.url, "mute-1", "", () => {});
  const closed = new Promise<void>((resolve) => socket.onclose = () => resolve());
  const original = socket.onmessage!;
  let pingsWhileMute = 0;
  socket.onmessage = (event) => {
    if (answering) return original.call(socket, event);
    if (typeof event.data === "string" && event.data.includes('"ping"')) pingsWhileMute++;
  };
  await server.waitForDaemon("mute-1");
  const gone = new Promise<number>((resolve) =>
    server.addEventListener("disconnect", () => resolve(performance.now()), { once: true })
  );
  const muted = performance.now();
  answering = false;
  const at = await gone;
  // Dropped within three intervals of the last pong (a little for timers), after asking at least once.
  assertLess(at - muted, 3 * heartbeatMs + 300);
  assert(pingsWhileMute >= 1, "no ping while the daemon was silent");
  await closed;
});
