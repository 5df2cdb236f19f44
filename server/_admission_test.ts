import { assert, assertEquals } from "../tests/_assert.ts";
import { Admission, MAX_HINT_MS } from "./_admission.ts";

function clock(start = 1_000_000): { now: () => number; at: number } {
  const c = { at: start, now: () => c.at };
  return c;
}

Deno.test("admission: takes connects on below the limit, defers at it", () => {
  let pending = 0;
  const c = clock();
  const admission = new Admission({ maxPending: 3, pending: () => pending, now: c.now });
  for (pending = 0; pending < 3; pending++) assertEquals(admission.check(), 0);
  assert(admission.check() > 0);
  assertEquals(admission.deferred, 1);
  pending = 2;
  assertEquals(admission.check(), 0);
  assertEquals(admission.deferred, 1);
});

Deno.test("admission: no limit at 0", () => {
  const admission = new Admission({ maxPending: 0, pending: () => 1e9 });
  assertEquals(admission.check(), 0);
});

Deno.test("admission: deferred connects get slots spread at the measured welcome rate", () => {
  const c = clock();
  const admission = new Admission({ maxPending: 1, pending: () => 1, now: c.now });
  // 200 welcomes over the last 2 s: 100 per second, so one slot every 10 ms.
  for (let i = 0; i < 200; i++) {
    c.at += 10;
    admission.welcomed();
  }
  const hints = Array.from({ length: 50 }, () => admission.check());
  assertEquals(hints[0], 100); // the shortest hint
  for (let i = 1; i < hints.length; i++) {
    const step = hints[i]! - hints[i - 1]!;
    assert(step >= 9 && step <= 11, `slots ${hints[i - 1]} and ${hints[i]} are not ~10 ms apart`);
  }
  // Without welcomes the rate falls to the floor (50/s: 20 ms apart).
  c.at += 10_000;
  const a = admission.check();
  const b = admission.check();
  assertEquals(a, 100);
  assert(b - a >= 19 && b - a <= 21, `slots ${a} and ${b} are not ~20 ms apart`);
});

Deno.test("admission: a hint never exceeds its cap, however many are waiting", () => {
  const c = clock();
  const admission = new Admission({ maxPending: 1, pending: () => 5, now: c.now });
  let last = 0;
  for (let i = 0; i < 10_000; i++) last = admission.check();
  assertEquals(last, MAX_HINT_MS);
});
