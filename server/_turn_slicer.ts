// Bounding how long a fan-out (broadcast) keeps the event loop: work started from promise continuations all runs in
// the turn whose I/O settled them, so 256 workers each starting its next command as its last one ends can hold a
// turn for as long as those starts take (at 19,000 daemons answering at once, most of a round happened in a few
// long turns and timers, heartbeats and other requests waited). A slicer lets a turn start work for `sliceMs`,
// then parks every caller on one shared macrotask (a 0 ms timer), so timers and I/O run before the next slice.

/** How long a slice may start work before yielding, in milliseconds. @default 8 */
export const DEFAULT_SLICE_MS = 8;

/**
 * Yields to the event loop once a slice of work has run for `sliceMs`.
 *
 * @example Pace workers that start work as earlier work ends
 * ```ts
 * import { TurnSlicer } from "./_turn_slicer.ts";
 * const slicer = new TurnSlicer();
 * for (let i = 0; i < 3; i++) await slicer.pause();
 * slicer.close();
 * ```
 */
export class TurnSlicer {
  readonly #sliceMs: number;
  #since: number = performance.now();
  #yielding: Promise<void> | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #resolve: (() => void) | undefined;

  constructor(sliceMs: number = DEFAULT_SLICE_MS) {
    this.#sliceMs = sliceMs;
  }

  /** Resolves at once while the slice has time left; otherwise after one macrotask (shared by every caller). */
  pause(): Promise<void> {
    if (this.#yielding) return this.#yielding;
    if (performance.now() - this.#since < this.#sliceMs) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#resolve = resolve;
    this.#timer = setTimeout(() => this.#next(), 0);
    this.#yielding = promise;
    return promise;
  }

  /** Releases any caller parked on the yield and clears its timer (nothing is left pending). */
  close(): void {
    clearTimeout(this.#timer);
    this.#next();
  }

  #next(): void {
    this.#timer = undefined;
    this.#yielding = undefined;
    this.#since = performance.now();
    const resolve = this.#resolve;
    this.#resolve = undefined;
    resolve?.();
  }
}
