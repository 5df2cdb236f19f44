/**
 * Where an operator command finds its controller: flags, environment, or a named profile of the config file.
 *
 * The config file is `$SANDD_CONFIG`, else `$XDG_CONFIG_HOME/sandd/config.json`, else
 * `~/.config/sandd/config.json`:
 *
 * ```json
 * {
 *   "default": "lab",
 *   "profiles": {
 *     "lab": { "url": "http://10.0.0.5:8765", "tokenFile": "~/.config/sandd/lab.token" },
 *     "prod": { "url": "https://ctl.example:8765", "token": "...", "caCert": "/etc/sandd/ca.pem" }
 *   }
 * }
 * ```
 *
 * Precedence, first found wins: `--url`/`--token`/`--token-file`/`--ca-cert`; the profile named by `--profile`
 * or `SANDD_PROFILE`; `SANDD_URL`/`SANDD_API_TOKEN`; the config file's `default` profile;
 * `http://127.0.0.1:8765` without a token.
 *
 * @module
 */

import { CliError, EXIT } from "./exit_codes.ts";

/** Where to reach a controller and how to authenticate. */
export interface ConnectionSettings {
  /** Base URL of the controller, e.g. `http://host:8765`. */
  url: string;
  /** API token, if any. */
  token?: string;
  /** PEM CA certificates to trust for https, besides the system roots. */
  caCerts: string[];
  /** The profile used, if any. */
  profile?: string;
}

/** One profile of the config file. */
export interface Profile {
  /** Base URL of the controller. */
  url?: string;
  /** API token (prefer `tokenFile`). */
  token?: string;
  /** File holding the API token; `~/` is the home directory. */
  tokenFile?: string;
  /** PEM CA file for https; `~/` is the home directory. */
  caCert?: string;
}

/** The config file's content. */
export interface ConfigFile {
  /** Profile used when none is named. */
  default?: string;
  /** Profiles by name. */
  profiles: Record<string, Profile>;
}

/** The default controller URL. */
export const DEFAULT_URL = "http://127.0.0.1:8765";

/**
 * The config file's path for this environment.
 *
 * @example Where the file is
 * ```ts
 * import { configPath } from "./config.ts";
 * console.assert(configPath({ HOME: "/home/a" }) === "/home/a/.config/sandd/config.json");
 * ```
 *
 * @param env The environment.
 * @returns The path, or undefined when neither XDG_CONFIG_HOME nor HOME is set.
 */
export function configPath(env: Record<string, string | undefined>): string | undefined {
  if (env.SANDD_CONFIG) return env.SANDD_CONFIG;
  if (env.XDG_CONFIG_HOME) return `${env.XDG_CONFIG_HOME}/sandd/config.json`;
  if (env.HOME) return `${env.HOME}/.config/sandd/config.json`;
  return undefined;
}

function expandHome(path: string, env: Record<string, string | undefined>): string {
  return path.startsWith("~/") && env.HOME ? `${env.HOME}${path.slice(1)}` : path;
}

/** Read and validate the config file; undefined when it does not exist. */
export function readConfig(path: string): ConfigFile | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new CliError(
      EXIT.CONFIG,
      `Cannot read config file '${path}': ${(error as Error).message}`,
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new CliError(
      EXIT.CONFIG,
      `Config file '${path}' is not JSON: ${(error as Error).message}`,
    );
  }
  const bad = (what: string) => new CliError(EXIT.CONFIG, `Config file '${path}': ${what}`);
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw bad("expected an object");
  }
  const { default: def, profiles, ...rest } = data as Record<string, unknown>;
  const unknown = Object.keys(rest)[0];
  if (unknown !== undefined) throw bad(`unknown field '${unknown}'`);
  if (def !== undefined && typeof def !== "string") throw bad("'default' must be a string");
  if (profiles !== undefined && (typeof profiles !== "object" || profiles === null)) {
    throw bad("'profiles' must be an object");
  }
  const out: ConfigFile = { profiles: {} };
  if (def !== undefined) out.default = def;
  for (const [name, value] of Object.entries((profiles ?? {}) as Record<string, unknown>)) {
    if (typeof value !== "object" || value === null) {
      throw bad(`profile '${name}' must be an object`);
    }
    const profile: Profile = {};
    for (const [key, field] of Object.entries(value)) {
      if (!["url", "token", "tokenFile", "caCert"].includes(key)) {
        throw bad(`profile '${name}' has an unknown field '${key}'`);
      }
      if (typeof field !== "string") throw bad(`profile '${name}' field '${key}' must be a string`);
      profile[key as keyof Profile] = field;
    }
    out.profiles[name] = profile;
  }
  return out;
}

function readSecret(path: string, what: string): string {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch (error) {
    throw new CliError(EXIT.CONFIG, `Cannot read ${what} '${path}': ${(error as Error).message}`);
  }
}

/** The flags that choose the connection. */
export interface ConnectionFlags {
  /** `--url`. */
  url?: string | undefined;
  /** `--token`. */
  token?: string | undefined;
  /** `--token-file`. */
  tokenFile?: string | undefined;
  /** `--profile`. */
  profile?: string | undefined;
  /** `--ca-cert`. */
  caCert?: string | undefined;
}

/**
 * Resolve the connection from flags, environment and the config file.
 *
 * @example Flags win
 * ```ts
 * import { resolveConnection } from "./config.ts";
 * const c = resolveConnection({ url: "http://h:1" }, { SANDD_URL: "http://other:2" });
 * console.assert(c.url === "http://h:1");
 * ```
 *
 * @param flags The command-line flags.
 * @param env The environment.
 * @returns Where to connect.
 */
export function resolveConnection(
  flags: ConnectionFlags,
  env: Record<string, string | undefined>,
): ConnectionSettings {
  const path = configPath(env);
  const named = flags.profile ?? env.SANDD_PROFILE;
  let profile: Profile | undefined;
  let profileName: string | undefined;
  let fallback: Profile | undefined;
  const config = path === undefined ? undefined : readConfig(path);
  if (named !== undefined) {
    profile = config?.profiles[named];
    if (profile === undefined) {
      throw new CliError(
        EXIT.CONFIG,
        `Unknown profile '${named}'${
          config
            ? ` (config file '${path}' has: ${Object.keys(config.profiles).join(", ") || "none"})`
            : ` (no config file at '${path}')`
        }`,
      );
    }
    profileName = named;
  } else if (config?.default !== undefined) {
    fallback = config.profiles[config.default];
    if (fallback === undefined) {
      throw new CliError(
        EXIT.CONFIG,
        `Config file '${path}': default profile '${config.default}' does not exist`,
      );
    }
  }
  const fromProfile = (p: Profile | undefined) => ({
    url: p?.url,
    token: p?.token ??
      (p?.tokenFile ? readSecret(expandHome(p.tokenFile, env), "token file") : undefined),
    caCert: p?.caCert ? expandHome(p.caCert, env) : undefined,
  });
  const explicit = fromProfile(profile);
  const implicit = fromProfile(fallback);
  const url = flags.url ?? explicit.url ?? (env.SANDD_URL || undefined) ?? implicit.url ??
    DEFAULT_URL;
  const token = flags.token ??
    (flags.tokenFile !== undefined ? readSecret(flags.tokenFile, "--token-file") : undefined) ??
    explicit.token ?? (env.SANDD_API_TOKEN || undefined) ?? implicit.token;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new CliError(EXIT.USAGE, `Bad controller URL '${url}': expected http(s)://HOST:PORT`, {
      showUsage: true,
    });
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new CliError(
      EXIT.USAGE,
      `Bad controller URL '${url}': expected http:// or https://`,
      { showUsage: true },
    );
  }
  const caFile = flags.caCert ?? explicit.caCert ?? implicit.caCert;
  const caCerts = caFile !== undefined ? [readSecret(caFile, "CA certificate")] : [];
  return {
    url: url.replace(/\/+$/, ""),
    ...(token ? { token } : {}),
    caCerts,
    ...(profileName !== undefined ? { profile: profileName } : {}),
  };
}
