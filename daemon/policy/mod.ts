/**
 * The daemon's own policy: what it lets a controller do on this machine, whatever the controller asks. See
 * {@linkcode Policy}; the daemon calls {@linkcode Policy.checkSpawn} before every spawn.
 *
 * - `policy.ts`: the {@linkcode Policy} (one `checkSpawn`, and the checks it is made of);
 * - `options.ts`: {@linkcode PolicyOptions} and their validation;
 * - `policy_error.ts`: {@linkcode PolicyError};
 * - `_glob.ts`: linear-time globs; `_shell_lexer.ts`: the shell lexer; `_program.ts`: program paths;
 *   `_env.ts`: the `env` rule and {@linkcode ENV_DENY}; `_user.ts`: user lookup; `_wrapper.ts`: setpriv/prlimit.
 *
 * @module
 */

export { ENV_DENY } from "./_env.ts";
export type { PolicyOptions } from "./options.ts";
export { Policy, type SpawnRequest, type SpawnState } from "./policy.ts";
export { PolicyError, type PolicyErrorOptions } from "./policy_error.ts";
