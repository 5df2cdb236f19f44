/**
 * The permissions the `sandd` daemon runs with. The compile task embeds exactly these flags and the tests run
 * `daemon/main.ts` with them, so what is tested is what ships.
 *
 * @module
 */

/**
 * Deno permission flags of the daemon.
 *
 * @example Use them to run the daemon
 * ```ts
 * import { DAEMON_PERMISSION_FLAGS } from "./permissions.ts";
 * console.assert(DAEMON_PERMISSION_FLAGS.includes("--allow-ffi"));
 * ```
 */
export const DAEMON_PERMISSION_FLAGS: readonly string[] = [
  "--allow-net",
  "--allow-run",
  "--allow-env",
  "--allow-read",
  "--allow-write",
  "--allow-sys",
  "--allow-ffi",
];
