// Request deadlines share one timer per connection (armed for the oldest pending request): each request still
// fails at its own deadline, never at an earlier request's, and answered requests in between change nothing.
import { assert, assertEquals, assertLess, assertRejects } from "./_assert.ts";
import { RequestTimeoutError, Server } from "../mod.ts";
import { rawDaemonSocket, type RawMessage, within } from "./_raw_daemon.ts";

Deno.test("staggered unanswered requests each time out at their own deadline", async () => {
  const requestTimeoutMs = 400;
  await using server = await Server.listen({ port: 0, requestTimeoutMs });
  const received: RawMessage[] = [];
  let arrived = Promise.withResolvers<void>();
  const socket = rawDaemonSocket(server.url, "slow-1", "", (message) => {
    if (message.t !== "req") return;
    received.push(message);
    arrived.resolve();
    // The third request is answered at once (with a refusal); the others never.
    if (received.length === 3) {
      socket.send(JSON.stringify({
        t: "res",
        rid: message.rid,
        ok: false,
        error: { code: "UNSUPPORTED", message: "not here" },
      }));
    }
  });
  const closed = new Promise<void>((resolve) => socket.onclose = () => resolve());
  try {
    await server.waitForDaemon("slow-1");
    const timed = async () => {
      const started = performance.now();
      const error = await assertRejects(
        () => server.processes("slow-1"),
        RequestTimeoutError,
        "processes",
      );
      return { error, elapsed: performance.now() - started };
    };
    const first = timed();
    await arrived.promise;
    arrived = Promise.withResolvers<void>();
    // Staggered by half a deadline: a sweep for the first must leave the second pending.
    await new Promise((resolve) => setTimeout(resolve, requestTimeoutMs / 2));
    const second = timed();
    await arrived.promise;
    arrived = Promise.withResolvers<void>();
    const refused = await within(
      assertRejects(() => server.processes("slow-1"), Error, "not here"),
      5_000,
      "the answered request",
    );
    assert(!(refused instanceof RequestTimeoutError), "the answered request timed out");
    for (const { error, elapsed } of [await first, await second]) {
      assertEquals(error.code, "REQUEST_TIMEOUT");
      // Not before its own deadline (a little for timer rounding), and not long after it.
      assert(elapsed >= requestTimeoutMs - 5, `timed out after ${elapsed.toFixed(0)} ms`);
      assertLess(elapsed, requestTimeoutMs + 3_000);
    }
    // The link stays up, and a later request gets a fresh deadline.
    const late = await timed();
    assert(late.elapsed >= requestTimeoutMs - 5, `timed out after ${late.elapsed.toFixed(0)} ms`);
    assertEquals(server.daemonCount, 1);
  } finally {
    socket.close();
    await closed;
  }
});
