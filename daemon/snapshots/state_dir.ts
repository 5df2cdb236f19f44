/**
 * Where the daemon keeps its state (the snapshot store) when `--state-dir` is not given.
 *
 * @module
 */

import { join } from "node:path";

/**
 * The default state directory: `$XDG_STATE_HOME/sandd`, else `$HOME/.local/state/sandd`, else
 * `/var/lib/sandd`.
 *
 * @example Pick the default
 * ```ts
 * import { defaultStateDir } from "./state_dir.ts";
 * console.assert(defaultStateDir({ HOME: "/home/a" }) === "/home/a/.local/state/sandd");
 * ```
 *
 * @param env The environment to read `XDG_STATE_HOME` and `HOME` from.
 * @returns An absolute path.
 */
export function defaultStateDir(env: Record<string, string | undefined>): string {
  const xdg = env.XDG_STATE_HOME;
  if (xdg && xdg.startsWith("/")) return join(xdg, "sandd");
  const home = env.HOME;
  if (home && home.startsWith("/")) return join(home, ".local", "state", "sandd");
  return "/var/lib/sandd";
}
