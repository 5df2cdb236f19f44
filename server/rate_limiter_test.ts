import { assert, assertEquals, assertMatch, assertThrows, fail } from "../tests/_assert.ts";
import { RateLimitedError, RateLimiter, TokenBucket } from "./rate_limiter.ts";

function clock(start = 1_000) {
  let time = start;
  return {
    now: () => time,
    advance: (ms: number) => {
      time += ms;
    },
    set: (ms: number) => {
      time = ms;
    },
  };
}

Deno.test("TokenBucket starts full and refuses beyond the burst", () => {
  const c = clock();
  const bucket = new TokenBucket({ rate: 10, burst: 5, now: c.now });
  assertEquals(bucket.available, 5);
  let taken = 0;
  for (let i = 0; i < 20; i++) if (bucket.tryTake()) taken++;
  assertEquals(taken, 5);
  assertEquals(bucket.available, 0);
  assertEquals(bucket.retryAfterMs(), 100);
  assertEquals(bucket.retryAfterMs(3), 300);
});

Deno.test("TokenBucket refills at the rate and caps at the burst", () => {
  const c = clock();
  const bucket = new TokenBucket({ rate: 4, burst: 8, now: c.now });
  assert(bucket.tryTake(8));
  c.advance(250);
  assertEquals(bucket.available, 1);
  assert(!bucket.tryTake(2), "only one token after 250 ms");
  assertEquals(bucket.available, 1, "a refused take takes nothing");
  c.advance(10_000);
  assertEquals(bucket.available, 8);
  assert(bucket.full);
});

Deno.test("TokenBucket sustained rate over a simulated minute", () => {
  const c = clock(0);
  const bucket = new TokenBucket({ rate: 50, burst: 10, now: c.now });
  let allowed = 0;
  // One attempt per millisecond for 60 s.
  for (let t = 0; t < 60_000; t++) {
    c.set(t);
    if (bucket.tryTake()) allowed++;
  }
  // Burst + rate * elapsed, give or take one token of rounding.
  assert(Math.abs(allowed - (10 + 50 * 59.999)) <= 1, `allowed ${allowed}`);
});

Deno.test("TokenBucket: retryAfterMs is exact and Infinity beyond the burst", () => {
  const c = clock();
  const bucket = new TokenBucket({ rate: 3, burst: 3, now: c.now });
  assertEquals(bucket.retryAfterMs(), 0);
  assert(bucket.tryTake(3));
  const wait = bucket.retryAfterMs(2);
  assertEquals(wait, 667);
  c.advance(wait - 1);
  assert(!bucket.tryTake(2));
  c.advance(1);
  assert(bucket.tryTake(2));
  assertEquals(bucket.retryAfterMs(4), Infinity);
  assert(!bucket.tryTake(4));
  assert(bucket.tryTake(0));
});

Deno.test("TokenBucket ignores a clock that steps back", () => {
  const c = clock(10_000);
  const bucket = new TokenBucket({ rate: 1, burst: 1, now: c.now });
  assert(bucket.tryTake());
  c.set(5_000);
  assert(!bucket.tryTake());
  c.set(5_999);
  assert(!bucket.tryTake(), "no credit for time before the last reading");
  c.set(10_000);
  assert(!bucket.tryTake(), "the step back did not move the reference backwards");
  c.set(11_000);
  assert(bucket.tryTake());
});

Deno.test("TokenBucket validates its arguments", () => {
  assertThrows(() => new TokenBucket({ rate: 0, burst: 1 }), RangeError);
  assertThrows(() => new TokenBucket({ rate: -1, burst: 1 }), Error, /-1/);
  assertThrows(() => new TokenBucket({ rate: Infinity, burst: 1 }), RangeError);
  assertThrows(() => new TokenBucket({ rate: 1, burst: 0.5 }), RangeError);
  assertThrows(() => new TokenBucket({ rate: 1, burst: NaN }), RangeError);
  assertThrows(
    () => new TokenBucket({ rate: 1, burst: 1, now: 5 as unknown as () => number }),
    TypeError,
  );
  const bucket = new TokenBucket({ rate: 1, burst: 1 });
  assertThrows(() => bucket.tryTake(-1), RangeError);
  assertThrows(() => bucket.tryTake(NaN), RangeError);
  assertThrows(() => bucket.retryAfterMs(Infinity), RangeError);
});

Deno.test("TokenBucket with the real clock", () => {
  const bucket = new TokenBucket({ rate: 1, burst: 2 });
  assert(bucket.tryTake());
  assert(bucket.tryTake());
  assert(!bucket.tryTake());
  const wait = bucket.retryAfterMs();
  assert(wait > 900 && wait <= 1000, `wait ${wait}`);
});

Deno.test("RateLimiter limits each key separately", () => {
  const c = clock();
  const limiter = new RateLimiter({ perKey: { rate: 1, burst: 2 }, now: c.now });
  assertEquals(limiter.check("a"), { ok: true });
  assertEquals(limiter.check("a"), { ok: true });
  assertEquals(limiter.check("a"), { ok: false, retryAfterMs: 1000, scope: "key" });
  assertEquals(limiter.check("b"), { ok: true });
  c.advance(1000);
  assertEquals(limiter.check("a"), { ok: true });
  assertEquals(limiter.size, 2);
});

Deno.test("RateLimiter global limit is shared and a refusal takes no tokens anywhere", () => {
  const c = clock();
  const limiter = new RateLimiter({
    perKey: { rate: 1, burst: 3 },
    global: { rate: 2, burst: 4 },
    now: c.now,
  });
  const results = ["a", "a", "b", "b"].map((key) => limiter.check(key).ok);
  assertEquals(results, [true, true, true, true]);
  // The global bucket is empty: "c" is refused globally and its own bucket keeps its tokens.
  assertEquals(limiter.check("c"), { ok: false, retryAfterMs: 500, scope: "global" });
  c.advance(1500); // global gets 3 tokens, "a" gets 1.5 (has 2.5 of 3)
  assert(limiter.check("c", 3).ok, "c still had its full bucket");
  assertEquals(limiter.check("a", 3), { ok: false, retryAfterMs: 500, scope: "key" });
  // The key refusal did not take from the global bucket (it has 0 after c took 3).
  c.advance(500);
  assert(limiter.check("a", 1).ok);
});

Deno.test("RateLimiter: key scope is reported before global", () => {
  const c = clock();
  const limiter = new RateLimiter({
    perKey: { rate: 1, burst: 1 },
    global: { rate: 1, burst: 1 },
    now: c.now,
  });
  assert(limiter.check("a").ok);
  const result = limiter.check("a");
  assert(!result.ok && result.scope === "key");
  const other = limiter.check("b");
  assert(!other.ok && other.scope === "global");
});

Deno.test("RateLimiter without limits allows everything", () => {
  const limiter = new RateLimiter();
  for (let i = 0; i < 1000; i++) assert(limiter.check("k", 1e6).ok);
  assertEquals(limiter.size, 0);
});

Deno.test("RateLimiter keeps at most maxKeys buckets, dropping full ones first, then LRU", () => {
  const c = clock();
  const limiter = new RateLimiter({ perKey: { rate: 1, burst: 2 }, maxKeys: 3, now: c.now });
  assert(limiter.check("a", 2).ok); // empty
  assert(limiter.check("b", 2).ok); // empty
  assert(limiter.check("c", 2).ok); // empty
  assertEquals(limiter.size, 3);
  // All are drained, so "d" evicts the least recently used: "a".
  assert(!limiter.check("b").ok); // touches b: order is now a, c, b
  assert(limiter.check("d", 2).ok);
  assertEquals(limiter.size, 3);
  assert(limiter.check("a").ok, "a was evicted and starts over");
  // "c" was evicted to make room for "a"; b and d are still drained.
  assert(!limiter.check("b").ok);
  assert(!limiter.check("d").ok);
  // After a refill, a full bucket is evicted before a drained one.
  c.advance(5_000);
  assert(limiter.check("b", 2).ok); // b drained again, most recent
  assert(limiter.check("e").ok); // drops the full buckets d and a
  assertEquals(limiter.size, 2);
  assert(!limiter.check("b").ok, "b kept its (empty) state");
});

Deno.test("RateLimiter.prune drops only full buckets", () => {
  const c = clock();
  const limiter = new RateLimiter({ perKey: { rate: 1, burst: 5 }, now: c.now });
  for (let i = 0; i < 100; i++) limiter.check(`k${i}`, i % 2 === 0 ? 5 : 1);
  c.advance(1000);
  // Odd keys took 1 token and refilled; even keys took 5 and have 1.
  assertEquals(limiter.prune(), 50);
  assertEquals(limiter.size, 50);
  c.advance(10_000);
  assertEquals(limiter.prune(), 50);
  assertEquals(limiter.size, 0);
});

Deno.test("RateLimiter.take throws RateLimitedError", () => {
  const c = clock();
  const limiter = new RateLimiter({ global: { rate: 10, burst: 1 }, now: c.now });
  limiter.take("x");
  try {
    limiter.take("x");
    fail("expected a RateLimitedError");
  } catch (error) {
    assert(error instanceof RateLimitedError);
    assertEquals(error.code, "RATE_LIMITED");
    assertEquals(error.retryAfterMs, 100);
    assertEquals(error.scope, "global");
    assertMatch(error.message, /global.*100 ms/);
  }
});

Deno.test("RateLimiter validates its arguments", () => {
  assertThrows(() => new RateLimiter({ perKey: { rate: 0, burst: 1 } }), Error, /perKey\.rate/);
  assertThrows(() => new RateLimiter({ global: { rate: 1, burst: 0 } }), Error, /global\.burst/);
  assertThrows(() => new RateLimiter({ maxKeys: 0 }), RangeError);
  assertThrows(() => new RateLimiter({ maxKeys: 1.5 }), RangeError);
  const limiter = new RateLimiter({ perKey: { rate: 1, burst: 1 } });
  assertThrows(() => limiter.check(1 as unknown as string), TypeError);
  assertThrows(() => limiter.check("k", -2), RangeError);
  const beyond = limiter.check("k", 2);
  assert(!beyond.ok && beyond.retryAfterMs === Infinity);
});

Deno.test("RateLimiter handles many keys at the default cap quickly", () => {
  const c = clock();
  const limiter = new RateLimiter({ perKey: { rate: 1, burst: 1 }, now: c.now });
  const start = performance.now();
  for (let i = 0; i < 200_000; i++) limiter.check(`key-${i}`);
  const elapsed = performance.now() - start;
  assert(limiter.size <= 100_000 && limiter.size >= 90_000, `size ${limiter.size}`);
  console.log(
    `200k distinct keys: ${elapsed.toFixed(0)} ms (${(elapsed * 5).toFixed(0)} ns/check)`,
  );
});
