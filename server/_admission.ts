// Admission of daemon connects: a controller under a reconnect storm (its own restart, a cluster node's death, a
// network coming back) takes on new daemon links only as fast as it finishes them, and tells the rest when to come
// back, spread at the pace it is finishing them, so the links it already holds keep their heartbeats answered.
//
// A connect is "pending" from its upgrade until its hello has been handled: upgrades answered whose hello waits
// behind other work say how far behind the controller's loop is. (Registry claims in a cluster are not counted:
// they wait on NATS, not on this process, and a dead node's cleanup queues thousands of writes before them.)
// While `maxPending` are pending, a new upgrade is answered 503 before any WebSocket work, with a hint
// (`sandd-retry-after-ms`, and `retry-after` in whole seconds for other clients): the next free slot of a schedule
// that hands out slots at the measured rate of welcomes. The daemon waits that long with jitter
// (daemon/backoff.ts, admissionDelay) and tries its next controller URL.

/** Width of one bucket of the welcome rate. */
const BUCKET_MS = 250;
/** Buckets the welcome rate is measured over (2 s). */
const BUCKETS = 8;
/** Rate assumed while too few welcomes were seen to measure one (per second). */
const FLOOR_RATE = 50;
/** Shortest hint. */
const MIN_HINT_MS = 100;
/** Longest hint: beyond it a daemon's handles (30 s grace by default) would be lost waiting. */
export const MAX_HINT_MS = 20_000;

/** Options of {@linkcode Admission}. */
export interface AdmissionOptions {
  /** Daemon connects taken on at once; 0 or Infinity: no limit. */
  maxPending: number;
  /** Connects pending now (upgraded links whose hello has not been handled). */
  pending: () => number;
  /** The clock. @default Date.now */
  now?: () => number;
}

/** Decides whether a daemon's upgrade is taken on now, and if not, when it should come back. */
export class Admission {
  readonly #max: number;
  readonly #pending: () => number;
  readonly #now: () => number;
  /** Welcomes per bucket, a ring; `#bucketAt` is the start of the newest bucket. */
  readonly #welcomes = new Uint32Array(BUCKETS);
  #bucket = 0;
  #bucketAt = 0;
  /** The next slot handed to a refused daemon (ms since epoch). */
  #nextSlot = 0;
  /** Upgrades answered 503 so far. */
  deferred = 0;

  constructor(options: AdmissionOptions) {
    this.#max = options.maxPending > 0 ? options.maxPending : Infinity;
    this.#pending = options.pending;
    this.#now = options.now ?? Date.now;
  }

  /** 0 to take the upgrade on; otherwise the milliseconds the daemon should wait (counted as deferred). */
  check(): number {
    if (this.#max === Infinity || this.#pending() < this.#max) return 0;
    const now = this.#now();
    this.#roll(now);
    let sum = 0;
    for (let i = 0; i < BUCKETS; i++) sum += this.#welcomes[i]!;
    // Over the full buckets and the newest one's part so far.
    const spanMs = (BUCKETS - 1) * BUCKET_MS + Math.max(1, now - this.#bucketAt);
    const rate = Math.max(FLOOR_RATE, sum / (spanMs / 1000));
    const slot = Math.max(this.#nextSlot, now + MIN_HINT_MS);
    this.#nextSlot = Math.min(slot + 1000 / rate, now + MAX_HINT_MS);
    this.deferred++;
    return Math.min(Math.ceil(slot - now), MAX_HINT_MS);
  }

  /** A daemon was welcomed (for the rate). */
  welcomed(): void {
    this.#roll(this.#now());
    this.#welcomes[this.#bucket]!++;
  }

  #roll(now: number): void {
    if (now - this.#bucketAt < BUCKET_MS) return;
    const steps = Math.min(BUCKETS, Math.floor((now - this.#bucketAt) / BUCKET_MS));
    for (let i = 0; i < steps; i++) {
      this.#bucket = (this.#bucket + 1) % BUCKETS;
      this.#welcomes[this.#bucket] = 0;
    }
    this.#bucketAt = now - (now % BUCKET_MS);
  }
}
