/**
 * Token-bucket rate limiting, per key (a daemon, an identity, an address) and globally.
 *
 * @module
 */

/**
 * Options for a {@linkcode TokenBucket}.
 *
 * @example A bucket of 10 requests per second with bursts of 20
 * ```ts
 * import type { TokenBucketOptions } from "./rate_limiter.ts";
 * const options: TokenBucketOptions = { rate: 10, burst: 20 };
 * console.assert(options.burst === 20);
 * ```
 */
export interface TokenBucketOptions {
  /** Tokens added per second. A positive finite number. */
  rate: number;
  /** Bucket capacity: the most tokens that can be taken at once. A finite number, at least 1. */
  burst: number;
  /**
   * Clock in milliseconds; only differences matter. Inject one in tests.
   *
   * @default {performance.now}
   */
  now?: () => number;
}

/** Rate and burst for one scope of a {@linkcode RateLimiter}. */
export interface RateLimit {
  /** Tokens added per second. A positive finite number. */
  rate: number;
  /** Bucket capacity. A finite number, at least 1. */
  burst: number;
}

/**
 * Options for a {@linkcode RateLimiter}. Scopes left out are not limited.
 *
 * @example 5 commands per second per daemon, 200 overall
 * ```ts
 * import type { RateLimiterOptions } from "./rate_limiter.ts";
 * const options: RateLimiterOptions = {
 *   perKey: { rate: 5, burst: 10 },
 *   global: { rate: 200, burst: 400 },
 * };
 * console.assert(options.perKey?.rate === 5);
 * ```
 */
export interface RateLimiterOptions {
  /** Limit for each key separately. */
  perKey?: RateLimit;
  /** Limit shared by all keys. */
  global?: RateLimit;
  /**
   * Most per-key buckets kept. When a new key arrives and this many are held, buckets that have refilled
   * completely are dropped (they carry no state), then the least recently used until a tenth is free.
   *
   * @default {100_000}
   */
  maxKeys?: number;
  /**
   * Clock in milliseconds; only differences matter. Inject one in tests.
   *
   * @default {performance.now}
   */
  now?: () => number;
}

/** What {@linkcode RateLimiter.prototype.check} decided. */
export type RateLimitResult =
  | { ok: true }
  | { ok: false; retryAfterMs: number; scope: "key" | "global" };

/**
 * A request was refused by a rate limit. `retryAfterMs` is when the same request would next be allowed.
 *
 * @example Turn a refused check into an error
 * ```ts
 * import { RateLimitedError, RateLimiter } from "./rate_limiter.ts";
 * const limiter = new RateLimiter({ perKey: { rate: 1, burst: 1 } });
 * limiter.check("daemon-1");
 * const result = limiter.check("daemon-1");
 * if (!result.ok) {
 *   const error = new RateLimitedError(result.retryAfterMs, result.scope);
 *   console.assert(error.code === "RATE_LIMITED" && error.scope === "key");
 * }
 * ```
 */
export class RateLimitedError extends Error {
  /** Stable error code. */
  readonly code: "RATE_LIMITED" = "RATE_LIMITED";
  /** Milliseconds until the request would be allowed. */
  readonly retryAfterMs: number;
  /** Which limit refused the request: `"key"` or `"global"`. */
  readonly scope: string;
  /**
   * Make a rate-limited error.
   *
   * @param retryAfterMs Milliseconds until the request would be allowed.
   * @param scope Which limit refused the request.
   * @param options Standard error options (`cause`).
   */
  constructor(retryAfterMs: number, scope: string, options?: ErrorOptions) {
    super(`Rate limit exceeded (${scope}), retry after ${retryAfterMs} ms`, options);
    this.name = "RateLimitedError";
    this.retryAfterMs = retryAfterMs;
    this.scope = scope;
  }
}

function validateLimit(name: string, limit: unknown): RateLimit {
  if (typeof limit !== "object" || limit === null) {
    throw new TypeError(`Option '${name}' must be an object, got ${String(limit)}`);
  }
  const { rate, burst } = limit as RateLimit;
  if (typeof rate !== "number" || !Number.isFinite(rate) || rate <= 0) {
    throw new RangeError(`Option '${name}rate' must be a positive finite number, got ${rate}`);
  }
  if (typeof burst !== "number" || !Number.isFinite(burst) || burst < 1) {
    throw new RangeError(`Option '${name}burst' must be a finite number >= 1, got ${burst}`);
  }
  return { rate, burst };
}

function validateClock(now: unknown): () => number {
  if (now === undefined) return () => performance.now();
  if (typeof now !== "function") {
    throw new TypeError(`Option 'now' must be a function, got ${typeof now}`);
  }
  return now as () => number;
}

function validateCount(n: unknown): number {
  if (typeof n !== "number" || !Number.isFinite(n) || n < 0) {
    throw new RangeError(`Token count must be a non-negative finite number, got ${String(n)}`);
  }
  return n;
}

/**
 * A token bucket: holds up to `burst` tokens, refills at `rate` tokens per second, starts full.
 *
 * @example Allow bursts of 2, then 1 per second
 * ```ts
 * import { TokenBucket } from "./rate_limiter.ts";
 * let time = 0;
 * const bucket = new TokenBucket({ rate: 1, burst: 2, now: () => time });
 * console.assert(bucket.tryTake() && bucket.tryTake() && !bucket.tryTake());
 * console.assert(bucket.retryAfterMs() === 1000);
 * time += 1000;
 * console.assert(bucket.tryTake());
 * ```
 */
export class TokenBucket {
  #rate: number;
  #burst: number;
  #now: () => number;
  #tokens: number;
  #last: number;

  /**
   * Make a full bucket.
   *
   * @param options Rate, capacity and clock.
   * @throws {RangeError} If `rate` is not positive or `burst` is below 1.
   */
  constructor(options: TokenBucketOptions) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`Token bucket options must be an object, got ${String(options)}`);
    }
    const { rate, burst } = validateLimit("", options);
    this.#rate = rate;
    this.#burst = burst;
    this.#now = validateClock(options.now);
    this.#tokens = burst;
    this.#last = this.#now();
  }

  #refill(): void {
    const now = this.#now();
    // A clock that steps back is treated as no time passing.
    if (now > this.#last) {
      this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#last) / 1000 * this.#rate);
      this.#last = now;
    }
  }

  /** Tokens available now (may be fractional). */
  get available(): number {
    this.#refill();
    return this.#tokens;
  }

  /** Whether the bucket is full, so dropping it loses nothing. */
  get full(): boolean {
    return this.available >= this.#burst;
  }

  /**
   * Take `n` tokens if they are all available; take nothing otherwise.
   *
   * @param n How many tokens.
   * @default {1}
   * @returns Whether the tokens were taken.
   * @throws {RangeError} If `n` is negative or not finite.
   */
  tryTake(n: number = 1): boolean {
    validateCount(n);
    this.#refill();
    if (this.#tokens < n) return false;
    this.#tokens -= n;
    return true;
  }

  /**
   * Milliseconds until `n` tokens are available: 0 if they are now, `Infinity` if `n` exceeds the burst.
   *
   * @param n How many tokens.
   * @default {1}
   * @returns Whole milliseconds, rounded up.
   * @throws {RangeError} If `n` is negative or not finite.
   */
  retryAfterMs(n: number = 1): number {
    validateCount(n);
    if (n > this.#burst) return Infinity;
    this.#refill();
    if (this.#tokens >= n) return 0;
    return Math.ceil((n - this.#tokens) / this.#rate * 1000);
  }
}

/**
 * Rate limiting per key and globally. A request is allowed only if every configured limit has the tokens for
 * it; a refused request takes no tokens from any limit.
 *
 * @example Limit commands per daemon
 * ```ts
 * import { RateLimiter } from "./rate_limiter.ts";
 * let time = 0;
 * const limiter = new RateLimiter({ perKey: { rate: 2, burst: 2 }, now: () => time });
 * console.assert(limiter.check("a").ok && limiter.check("a").ok);
 * const refused = limiter.check("a");
 * console.assert(!refused.ok && refused.scope === "key" && refused.retryAfterMs === 500);
 * console.assert(limiter.check("b").ok);
 * time += 500;
 * console.assert(limiter.check("a").ok);
 * ```
 */
export class RateLimiter {
  #perKey: RateLimit | undefined;
  #global: TokenBucket | undefined;
  #maxKeys: number;
  #now: () => number;
  #buckets = new Map<string, { bucket: TokenBucket; used: number }>();
  #sequence = 0;

  /**
   * Make a rate limiter.
   *
   * @param options Limits; scopes left out are not limited.
   * @throws {RangeError} If a rate, burst or `maxKeys` is out of range.
   */
  constructor(options: RateLimiterOptions = {}) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`Rate limiter options must be an object, got ${String(options)}`);
    }
    this.#now = validateClock(options.now);
    if (options.perKey !== undefined) this.#perKey = validateLimit("perKey.", options.perKey);
    if (options.global !== undefined) {
      const global = validateLimit("global.", options.global);
      this.#global = new TokenBucket({ ...global, now: this.#now });
    }
    const maxKeys = options.maxKeys ?? 100_000;
    if (!Number.isSafeInteger(maxKeys) || maxKeys < 1) {
      throw new RangeError(`Option 'maxKeys' must be a positive integer, got ${maxKeys}`);
    }
    this.#maxKeys = maxKeys;
  }

  /** How many per-key buckets are held now. */
  get size(): number {
    return this.#buckets.size;
  }

  /**
   * Take `n` tokens for `key` from every limit, or from none if any limit lacks them.
   *
   * @param key Whose budget to charge (a daemon id, an identity subject, an address).
   * @param n How many tokens.
   * @default {1}
   * @returns `{ ok: true }`, or which limit refused and when to retry.
   * @throws {TypeError} If `key` is not a string.
   * @throws {RangeError} If `n` is negative or not finite.
   */
  check(key: string, n: number = 1): RateLimitResult {
    if (typeof key !== "string") {
      throw new TypeError(`Rate limit key must be a string, got ${typeof key}`);
    }
    validateCount(n);
    let bucket: TokenBucket | undefined;
    if (this.#perKey !== undefined) {
      bucket = this.#bucket(key);
      const wait = bucket.retryAfterMs(n);
      if (wait > 0) return { ok: false, retryAfterMs: wait, scope: "key" };
    }
    if (this.#global !== undefined) {
      const wait = this.#global.retryAfterMs(n);
      if (wait > 0) return { ok: false, retryAfterMs: wait, scope: "global" };
      this.#global.tryTake(n);
    }
    bucket?.tryTake(n);
    return { ok: true };
  }

  /**
   * Like {@linkcode RateLimiter.prototype.check}, but throws when refused.
   *
   * @param key Whose budget to charge.
   * @param n How many tokens.
   * @default {1}
   * @throws {RateLimitedError} If a limit refused the request.
   */
  take(key: string, n: number = 1): void {
    const result = this.check(key, n);
    if (!result.ok) throw new RateLimitedError(result.retryAfterMs, result.scope);
  }

  /**
   * Drop per-key buckets that have refilled completely; they behave exactly like new ones.
   *
   * @returns How many buckets were dropped.
   */
  prune(): number {
    let dropped = 0;
    for (const [key, { bucket }] of this.#buckets) {
      if (bucket.full) {
        this.#buckets.delete(key);
        dropped++;
      }
    }
    return dropped;
  }

  #bucket(key: string): TokenBucket {
    const entry = this.#buckets.get(key);
    if (entry !== undefined) {
      entry.used = ++this.#sequence;
      return entry.bucket;
    }
    if (this.#buckets.size >= this.#maxKeys) this.#sweep();
    const bucket = new TokenBucket({ ...this.#perKey!, now: this.#now });
    this.#buckets.set(key, { bucket, used: ++this.#sequence });
    return bucket;
  }

  /**
   * Make room: drop full buckets (no state lost), then the least recently used until a tenth of `maxKeys` is
   * free, so the next sweep is at least that many new keys away (amortized O(log n) per new key).
   */
  #sweep(): void {
    this.prune();
    const target = Math.min(this.#maxKeys - 1, Math.floor(this.#maxKeys * 0.9));
    if (this.#buckets.size <= target) return;
    const entries = [...this.#buckets].sort((a, b) => a[1].used - b[1].used);
    for (const [key] of entries) {
      if (this.#buckets.size <= target) break;
      this.#buckets.delete(key);
    }
  }
}
