/**
 * Reconnect delays: exponential backoff with full jitter, so a fleet of daemons does not stampede a restarted
 * controller.
 *
 * @module
 */

/** Options of {@linkcode backoffDelay}. */
export interface BackoffOptions {
  /** Upper bound of the first delay. @default 1_000 */
  initialMs?: number;
  /** Cap of any delay. @default 30_000 */
  maxMs?: number;
  /** Source of randomness in [0, 1). @default Math.random */
  random?: () => number;
}

/**
 * The delay before reconnect attempt `attempt` (0-based): a uniform random value in `[0, min(maxMs,
 * initialMs * 2^attempt))`.
 *
 * @example First retry within a second, later ones capped
 * ```ts
 * import { backoffDelay } from "./backoff.ts";
 * console.assert(backoffDelay(0) < 1_000);
 * console.assert(backoffDelay(20) < 30_000);
 * ```
 *
 * @param attempt Zero-based attempt number.
 * @param options Bounds and randomness.
 * @returns Milliseconds to wait.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const initial = options.initialMs ?? 1_000;
  const max = options.maxMs ?? 30_000;
  const random = options.random ?? Math.random;
  const ceiling = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}
