// Argument parsing shared by the operator commands: node:util parseArgs with usage errors (exit 64), the split at
// `--`, WORKER:PATH, KEY=VALUE lists and numbers.
import { parseArgs, type ParseArgsConfig } from "node:util";
import { isDaemonId } from "@sandd/protocol/constants";
import { usageError } from "./exit_codes.ts";

/** Options every command that talks to a controller accepts. */
export const CONNECTION_OPTIONS = {
  url: { type: "string" },
  token: { type: "string" },
  "token-file": { type: "string" },
  profile: { type: "string" },
  "ca-cert": { type: "string" },
} as const satisfies ParseArgsConfig["options"];

/** Options every command accepts. */
export const COMMON_OPTIONS = {
  help: { type: "boolean", short: "h" },
  json: { type: "boolean" },
} as const satisfies ParseArgsConfig["options"];

/** Usage lines of the connection options, for each command's help. */
export const CONNECTION_HELP = `Connection (see 'sandd help config'):
  --url URL               controller base URL, e.g. http://host:8765 (env SANDD_URL)
  --token TOKEN           API token (env SANDD_API_TOKEN; prefer --token-file: argv is visible to local users)
  --token-file FILE       read the API token from FILE
  --profile NAME          use a profile of the config file (env SANDD_PROFILE)
  --ca-cert FILE          trust this PEM CA for https, besides the system roots`;

/** Parse `args` with node:util's parseArgs; a bad flag is a usage error. */
export function parse<T extends ParseArgsConfig["options"]>(
  args: string[],
  options: T,
): {
  values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  positionals: string[];
} {
  try {
    const { values, positionals } = parseArgs({
      args,
      options: options as ParseArgsConfig["options"],
      strict: true,
      allowPositionals: true,
    });
    return {
      values: values as Record<string, string | boolean | string[] | undefined>,
      positionals,
    };
  } catch (error) {
    throw usageError((error as Error).message);
  }
}

/** The arguments before the first `--` and those after it (null when there is no `--`). */
export function splitAtDashes(args: string[]): { before: string[]; after: string[] | null } {
  const at = args.indexOf("--");
  if (at < 0) return { before: args, after: null };
  return { before: args.slice(0, at), after: args.slice(at + 1) };
}

/** A string flag's value, or undefined. */
export function str(values: Record<string, unknown>, name: string): string | undefined {
  const value = values[name];
  return typeof value === "string" ? value : undefined;
}

/** A repeatable string flag's values. */
export function list(values: Record<string, unknown>, name: string): string[] {
  const value = values[name];
  return Array.isArray(value) ? value.map(String) : typeof value === "string" ? [value] : [];
}

/** `KEY=VALUE` pairs of a repeatable flag as a record. */
export function pairs(values: string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of values) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw usageError(`--${flag} must be KEY=VALUE, got '${pair}'`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

/** A number of seconds (> 0) as milliseconds. */
export function seconds(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n <= 0) {
    throw usageError(`--${flag} must be a number of seconds > 0, got '${value}'`);
  }
  return Math.round(n * 1000);
}

/** A non-negative integer. */
export function integer(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isSafeInteger(n) || n < 0) {
    throw usageError(`--${flag} must be an integer >= 0, got '${value}'`);
  }
  return n;
}

/** A worker id given as a positional argument. */
export function workerId(value: string | undefined, what = "WORKER"): string {
  if (value === undefined || value === "") throw usageError(`Missing ${what}`);
  if (!isDaemonId(value)) throw usageError(`Bad worker id '${value}'`);
  return value;
}

/** A `WORKER:PATH` argument, or a local path. */
export type Location = { worker: string; path: string } | { worker: null; path: string };

/**
 * Parse a `cp` operand: `WORKER:PATH` is remote, anything else local (`./a:b` or `/x:y` stay local, as with
 * scp). A remote path must not be empty. A worker id holding ':' (`host:1`) needs an absolute path
 * (`host:1:/tmp`), which ends the id at the first ':/'.
 */
export function location(value: string): Location {
  // A worker id may itself hold ':' (host:1): the first ':/' then ends it, else the first ':'.
  const absolute = value.indexOf(":/");
  const colon = absolute > 0 && !value.slice(0, absolute).includes("/")
    ? absolute
    : value.indexOf(":");
  const slash = value.indexOf("/");
  if (colon <= 0 || (slash >= 0 && slash < colon)) return { worker: null, path: value };
  const worker = value.slice(0, colon);
  const path = value.slice(colon + 1);
  if (!isDaemonId(worker)) {
    throw usageError(`Bad WORKER:PATH '${value}': bad worker id '${worker}'`);
  }
  if (path === "") throw usageError(`Bad WORKER:PATH '${value}': the path is empty`);
  return { worker, path };
}

/** A `WORKER:PATH` that must be remote. */
export function remoteLocation(value: string | undefined): { worker: string; path: string } {
  if (value === undefined) throw usageError("Missing WORKER:PATH");
  const at = location(value);
  if (at.worker === null) {
    throw usageError(`Bad WORKER:PATH '${value}': expected WORKER:PATH, e.g. worker-1:/tmp`);
  }
  return at;
}

/** Refuse positionals beyond those expected. */
export function noMore(positionals: string[], from: number): void {
  if (positionals.length > from) throw usageError(`Unexpected argument '${positionals[from]}'`);
}
