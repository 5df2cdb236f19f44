// How long this process's event loop was stalled, measured from how late its timers fire: one copy for every
// liveness check of the controller that must not blame a peer for its own lag (the daemon heartbeat,
// server/_heartbeat.ts; cluster node liveness, server/cluster/_registry.ts). A timer due at `due` that fires at
// `now` was held `now - due` by the loop's other work; up to LAG_SLACK_MS of that is timer noise, the excess is a
// stall. Stalls are kept per tick (a fixed width of time) in a ring, and summed over the ticks since a moment only
// when asked, so recording costs nothing per link or peer.

/** Lateness of a timer up to this is timer noise, not a stall, in ms; above it, only the excess counts. */
export const LAG_SLACK_MS = 20;

/** Options of {@linkcode LoopStall}. */
export interface LoopStallOptions {
  /** Width of one tick of history, in ms. */
  tickMs: number;
  /** Ticks of history kept (older stalls are forgotten). */
  ticks: number;
  /**
   * Where tick 0 starts (`Date.now()`).
   * @default Date.now()
   */
  origin?: number;
}

/**
 * The stall history of this event loop.
 *
 * @example Leave a stall of this loop out of a peer's silence
 * ```ts
 * import { LoopStall } from "./_loop_stall.ts";
 * const stall = new LoopStall({ tickMs: 500, ticks: 256 });
 * const lastSeen = Date.now();
 * const due = Date.now() + 500;
 * // ... the timer due at `due` fires:
 * stall.late(due, Date.now());
 * const silent = Date.now() - lastSeen - stall.since(lastSeen, Date.now());
 * console.assert(silent >= 0);
 * ```
 */
export class LoopStall {
  readonly #tickMs: number;
  readonly #ticks: number;
  readonly #origin: number;
  /** The tick each ring entry holds, and the ms the loop was stalled during that tick. */
  readonly #tick: Float64Array;
  readonly #ms: Float64Array;
  #total = 0;
  /** The end of the latest stall recorded: an overlapping one adds only what lies beyond it. */
  #recordedUntil = -Infinity;

  constructor(options: LoopStallOptions) {
    this.#tickMs = options.tickMs;
    this.#ticks = options.ticks;
    this.#origin = options.origin ?? Date.now();
    this.#tick = new Float64Array(options.ticks).fill(-1);
    this.#ms = new Float64Array(options.ticks);
  }

  /** Total stall measured since the start, in ms. */
  get totalMs(): number {
    return this.#total;
  }

  /**
   * A timer due at `due` fired at `now` (or a read expected then completed): lateness beyond LAG_SLACK_MS is
   * recorded as a stall ending at `now`, from no earlier than the end of the latest stall recorded (two measures
   * of one stall count it once; calls come in time order, so at worst a little is left out, never counted twice).
   * Returns the stall recorded (0 for a timer on time).
   */
  late(due: number, now: number): number {
    // Several measures (timers, reads) may see the same stall: only time not recorded yet counts.
    const late = now - Math.max(due + LAG_SLACK_MS, this.#recordedUntil);
    if (!(late > 0)) return 0;
    this.#recordedUntil = now;
    this.#total += late;
    // Spread [now - late, now) over the ticks it covers (at most the ring: older stall time is forgotten).
    let from = now - late;
    let tick = Math.floor((from - this.#origin) / this.#tickMs);
    const last = Math.floor((now - this.#origin) / this.#tickMs);
    if (last - tick >= this.#ticks) {
      tick = last - this.#ticks + 1;
      from = this.#origin + tick * this.#tickMs;
    }
    for (; tick <= last; tick++) {
      const end = Math.min(now, this.#origin + (tick + 1) * this.#tickMs);
      const i = tick % this.#ticks;
      if (this.#tick[i] !== tick) {
        this.#tick[i] = tick;
        this.#ms[i] = 0;
      }
      this.#ms[i]! += end - from;
      from = end;
    }
    return late;
  }

  /** How long this loop was stalled since `since` (whole ticks: the tick of `since` counts fully), in ms. */
  since(since: number, now: number): number {
    const last = Math.floor((now - this.#origin) / this.#tickMs);
    const first = Math.max(
      Math.floor((since - this.#origin) / this.#tickMs),
      last - this.#ticks + 1,
    );
    let sum = 0;
    for (let tick = first; tick <= last; tick++) {
      const i = tick % this.#ticks;
      if (this.#tick[i] === tick) sum += this.#ms[i]!;
    }
    return sum;
  }
}
