import { assertEquals } from "../tests/_assert.ts";
import { LAG_SLACK_MS, LoopStall } from "./_loop_stall.ts";

Deno.test("loop stall: lateness beyond the slack is a stall, spread over the ticks it covers", () => {
  const stall = new LoopStall({ tickMs: 100, ticks: 16, origin: 0 });
  assertEquals(stall.late(100, 100 + LAG_SLACK_MS), 0); // timer noise
  assertEquals(stall.late(200, 200 + LAG_SLACK_MS + 250), 250); // [220, 470): ticks 2, 3 and 4
  assertEquals(stall.totalMs, 250);
  assertEquals(stall.since(0, 500), 250);
  assertEquals(stall.since(400, 500), 70); // the tick of `since` counts whole: [400, 470)
  assertEquals(stall.since(500, 500), 0);
});

Deno.test("loop stall: history older than the ring is forgotten", () => {
  const stall = new LoopStall({ tickMs: 100, ticks: 4, origin: 0 });
  stall.late(0, 1_000 + LAG_SLACK_MS); // a 1 s stall: only the last 4 ticks are kept
  assertEquals(stall.totalMs, 1_000);
  assertEquals(stall.since(0, 1_020), 320); // ticks 7-10: [700, 1020)
  assertEquals(stall.since(0, 5_000), 0);
});

Deno.test("loop stall: two measures of one stall (a timer, a read) count it once", () => {
  const stall = new LoopStall({ tickMs: 100, ticks: 16, origin: 0 });
  // A read sent at 100 completes at 900: [120, 900). A timer due at 300 fired at 700 saw part of the same stall.
  assertEquals(stall.late(300, 700), 380); // [320, 700)
  assertEquals(stall.late(100, 900), 200); // only [700, 900) is new
  assertEquals(stall.totalMs, 580);
  assertEquals(stall.since(0, 1_000), 580);
  // A later stall that does not overlap counts whole.
  assertEquals(stall.late(1_000, 1_100), 80);
  assertEquals(stall.totalMs, 660);
});
