import { assert, assertEquals } from "../tests/_assert.ts";
import { backoffDelay } from "./backoff.ts";

Deno.test("backoff grows exponentially with full jitter and a cap", () => {
  assertEquals(backoffDelay(0, { random: () => 0.999 }), 999);
  assertEquals(backoffDelay(3, { random: () => 0.5 }), 4_000);
  assertEquals(backoffDelay(50, { random: () => 0.999 }), 29_970);
  assertEquals(backoffDelay(5, { random: () => 0 }), 0);
  for (let i = 0; i < 1000; i++) assert(backoffDelay(i % 12) < 30_000);
});
