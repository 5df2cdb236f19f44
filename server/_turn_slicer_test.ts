import { assert, assertEquals } from "../tests/_assert.ts";
import { TurnSlicer } from "./_turn_slicer.ts";

/** Keeps the thread busy for `ms` (a slice of work). */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* working */ }
}

Deno.test("turn slicer: a chain of work continued in microtasks lets a due timer run once a slice is used", async () => {
  const slicer = new TurnSlicer(5);
  let fired = false;
  const timer = setTimeout(() => fired = true, 0);
  let slices = 0;
  // Without the slicer this loop never leaves its turn (each await is a microtask) and the timer never fires.
  while (!fired && slices < 1_000) {
    busy(1);
    await slicer.pause();
    slices++;
  }
  clearTimeout(timer);
  slicer.close();
  assert(fired, `the timer did not run in ${slices} slices`);
});

Deno.test("turn slicer: callers share one yield, and close releases them with no timer left", async () => {
  const slicer = new TurnSlicer(0);
  busy(1);
  const parked = [slicer.pause(), slicer.pause(), slicer.pause()];
  assertEquals(new Set(parked).size, 1);
  slicer.close();
  await Promise.all(parked);
});
