import { assert, assertEquals } from "../tests/_assert.ts";
import { backoffDelay, RECENT_MAX_MS, reconnectDelay } from "./backoff.ts";

Deno.test("backoff grows exponentially with full jitter and a cap", () => {
  assertEquals(backoffDelay(0, { random: () => 0.999 }), 999);
  assertEquals(backoffDelay(3, { random: () => 0.5 }), 4_000);
  assertEquals(backoffDelay(50, { random: () => 0.999 }), 29_970);
  assertEquals(backoffDelay(5, { random: () => 0 }), 0);
  for (let i = 0; i < 1000; i++) assert(backoffDelay(i % 12) < 30_000);
});

Deno.test("reconnect delay: capped at 2 s for the recent window after a drop, then back to the cap", () => {
  const high = { random: () => 0.999 };
  for (let attempt = 0; attempt < 40; attempt++) {
    assert(reconnectDelay(attempt, 0, high) < RECENT_MAX_MS);
    assert(reconnectDelay(attempt, 299_999, high) < RECENT_MAX_MS);
  }
  assertEquals(reconnectDelay(10, 300_000, high), 29_970);
  assertEquals(reconnectDelay(10, Infinity, high), 29_970);
  // Still jittered, and a smaller configured cap wins.
  assertEquals(reconnectDelay(10, 0, { random: () => 0 }), 0);
  assertEquals(reconnectDelay(10, 0, { random: () => 0.5, maxMs: 500 }), 250);
  assertEquals(reconnectDelay(10, 5_000, { ...high, recentMs: 1_000 }), 29_970);
});
