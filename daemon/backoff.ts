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

/** Cap of the reconnect delay shortly after a link that was up dropped. */
export const RECENT_MAX_MS = 2_000;

/** Options of {@linkcode reconnectDelay}. */
export interface ReconnectDelayOptions extends BackoffOptions {
  /**
   * For this long after a link that was up dropped, delays are capped at {@linkcode RECENT_MAX_MS}.
   * @default 300_000
   */
  recentMs?: number;
}

/**
 * The daemon's delay before reconnect attempt `attempt`: {@linkcode backoffDelay}, capped at
 * {@linkcode RECENT_MAX_MS} while the last link that was up dropped less than `recentMs` ago. That fits the
 * controller's grace (handles wait `reconnectGraceMs`, 30 s by default): after an outage of the controller or the
 * network, a daemon is back within about 2 s of its return, still with full jitter against a stampede.
 *
 * @example Prompt retries after a drop, long ones for a daemon that never connected
 * ```ts
 * import { reconnectDelay } from "./backoff.ts";
 * console.assert(reconnectDelay(12, 10_000) < 2_000);
 * console.assert(reconnectDelay(12, Infinity, { random: () => 0.99 }) > 2_000);
 * ```
 *
 * @param attempt Zero-based attempt number since the last link that was up.
 * @param sinceLostMs Milliseconds since that link dropped; Infinity when none was ever up.
 * @param options Bounds, the recent window and randomness.
 * @returns Milliseconds to wait.
 */
export function reconnectDelay(
  attempt: number,
  sinceLostMs: number,
  options: ReconnectDelayOptions = {},
): number {
  const max = options.maxMs ?? 30_000;
  const recent = sinceLostMs < (options.recentMs ?? 300_000);
  return backoffDelay(attempt, { ...options, maxMs: recent ? Math.min(max, RECENT_MAX_MS) : max });
}
