// The daemon's side of the heartbeat bound (protocol/SPEC.md section 3): the controller pings a link that has been
// quiet for an interval and the daemon answers, so a live controller is never silent for long, and the daemon sends
// no pings of its own (that would double the heartbeat traffic). A link on which nothing arrived for
// HEARTBEAT_MISSES intervals is dropped, checked by one timer re-armed lazily for the time left.
//
// Lag-aware: a daemon whose own loop was stalled (a starved machine, a stopped process) finds the controller's pings
// waiting unread. So the time the watch's timer fired late since the last message (beyond LAG_SLACK_MS) is not
// counted as the controller's silence, and before dropping the link the loop gets one more turn to read what is
// waiting.

/**
 * Lateness of the watch's timer up to this is timer noise, in ms; beyond it, it is time this daemon's own loop was
 * stalled.
 */
export const LAG_SLACK_MS = 20;

/**
 * Watches one link for the controller's silence.
 *
 * @example Drop a link silent for 15 s (the default heartbeat's bound)
 * ```ts
 * import { SilenceWatch } from "./_silence_watch.ts";
 * let lastSeen = Date.now();
 * const watch = new SilenceWatch(15_000, () => lastSeen, (silent, stalled) => {
 *   console.log(`silent for ${silent} ms (${stalled} ms of them this loop stalled)`);
 * });
 * lastSeen = Date.now(); // a message arrived
 * watch.stop();
 * ```
 */
export class SilenceWatch {
  readonly #limitMs: number;
  readonly #lastSeen: () => number;
  readonly #onSilent: (silentMs: number, stalledMs: number) => void;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When the armed timer is due (`Date.now()`): how late it fires is this loop's stall. */
  #due: number;
  /** Stall measured since `#stalledFrom` (the last-message time it counts from), in ms. */
  #stalled = 0;
  #stalledFrom: number;
  #confirming = false;

  /**
   * @param limitMs Silence after which the link is dropped (`heartbeatMs × HEARTBEAT_MISSES`).
   * @param lastSeen When the last message arrived on the link (`Date.now()`).
   * @param onSilent Called once when the link is to be dropped, with the silence and the stall left out of it.
   */
  constructor(
    limitMs: number,
    lastSeen: () => number,
    onSilent: (silentMs: number, stalledMs: number) => void,
  ) {
    this.#limitMs = limitMs;
    this.#lastSeen = lastSeen;
    this.#onSilent = onSilent;
    this.#stalledFrom = lastSeen();
    this.#due = Date.now() + limitMs;
    this.#timer = setTimeout(() => this.#check(), limitMs);
  }

  /** Stop watching (the link closed). */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #check(): void {
    const now = Date.now();
    const lastSeen = this.#lastSeen();
    if (this.#stalledFrom !== lastSeen) {
      this.#stalledFrom = lastSeen;
      this.#stalled = 0;
    }
    const late = now - this.#due - LAG_SLACK_MS;
    if (late > 0) this.#stalled += late;
    const silent = now - lastSeen;
    if (silent - this.#stalled >= this.#limitMs) {
      if (!this.#confirming) {
        // One more turn of the loop to read what may be waiting before blaming the controller.
        this.#confirming = true;
        this.#arm(now, 0);
        return;
      }
      this.#timer = undefined;
      this.#onSilent(silent, this.#stalled);
      return;
    }
    this.#confirming = false;
    this.#arm(now, this.#limitMs + this.#stalled - silent);
  }

  #arm(now: number, wait: number): void {
    this.#due = now + wait;
    this.#timer = setTimeout(() => this.#check(), wait);
  }
}
