/**
 * The options of a {@linkcode Policy} and their validation.
 *
 * @module
 */

import { resolve } from "node:path";
import { Glob } from "./_glob.ts";
import { validateForwardFields } from "../forward/forward_policy.ts";

/**
 * Options of a {@linkcode Policy}. Every field is optional; an empty object allows everything the daemon can do.
 *
 * Command patterns (`allow`, `deny`) are globs: `*` matches any run of characters, `?` one character, `[abc]`,
 * `[a-z]`, `[!a-z]` (or `[^a-z]`) one character of a class; `\` makes the next character literal. A pattern
 * matches a whole name or line, never a part. The program part of a pattern (all of it, or what comes before its
 * first space) is a path glob: there `*`, `?` and classes never match `/` (`**` does), so `/usr/bin/*` matches
 * `/usr/bin/ls` but not `/usr/bin/sub/x`. After the first space, `*` matches anything (`rm -rf *` matches
 * `rm -rf /a/b`). See {@linkcode Policy.checkCommand} for what patterns are matched against.
 */
export interface PolicyOptions {
  /**
   * Command patterns; if non-empty, only commands matching one of them run, and shell strings are limited to a
   * single simple command (see {@linkcode Policy.checkCommand}).
   *
   * @default {[]}
   */
  allow?: string[];
  /**
   * Command patterns refused even if allowed, checked against every command a shell string would start.
   *
   * @default {[]}
   */
  deny?: string[];
  /**
   * Refuse string commands (run through `sh -c`), interactive login shells, and argv arrays that start a shell
   * program anywhere a command can start (`sh`, `bash -s`, `/bin/dash`, `env bash`, `busybox sh`, `env -S`...),
   * with or without `-c`; only argv arrays of other programs run.
   *
   * @default {false}
   */
  noShell?: boolean;
  /**
   * Refuse interactive PTY sessions.
   *
   * @default {false}
   */
  noPty?: boolean;
  /**
   * Refuse file transfers (upload, download, listing).
   *
   * @default {false}
   */
  noFiles?: boolean;
  /**
   * The one directory every file operation is confined to (the daemon's `--root` flag sets this field, and
   * replaces a policy file's `root`). A relative path is resolved against the current directory (against the
   * policy file's directory in {@linkcode Policy.fromFile}).
   *
   * @default {undefined} (no confinement)
   */
  root?: string;
  /**
   * User name or numeric uid to run children as. Only meaningful when the daemon runs as root; see
   * {@linkcode Policy.wrapArgv}.
   *
   * @default {undefined} (children run as the daemon's user)
   */
  runAs?: string;
  /**
   * Environment variable names removed from every child environment; globs allowed, e.g. `"AWS_*"`.
   *
   * @default {[]}
   */
  envStrip?: string[];
  /**
   * Names (globs) a request's `env` option may set. When given, any other name is refused with rule `"env"`.
   * When not given and an allow list is present, the names of {@linkcode ENV_DENY} are refused instead (loader,
   * shell start-up and tool-hook variables that make an allowed program run something else).
   *
   * @default {undefined} (with an allow list: everything but {@linkcode ENV_DENY}; without: everything)
   */
  envAllow?: string[];
  /**
   * Environment variables forced on every child, after stripping (so they win over `envStrip`).
   *
   * @default {{}}
   */
  envSet?: Record<string, string>;
  /**
   * Most processes (commands and sessions) running at once.
   *
   * @default {undefined} (no limit)
   */
  maxProcesses?: number;
  /**
   * Most interactive sessions open at once.
   *
   * @default {undefined} (no limit)
   */
  maxSessions?: number;
  /**
   * Timeout in milliseconds applied when a command asks for none.
   *
   * @default {undefined} (`maxTimeoutMs` if set, else no timeout)
   */
  defaultTimeoutMs?: number;
  /**
   * Largest timeout in milliseconds a command may ask for.
   *
   * @default {undefined} (no limit)
   */
  maxTimeoutMs?: number;
  /**
   * Most output bytes kept per process; enforced by the daemon core.
   *
   * @default {undefined} (the core's own default)
   */
  maxOutputBytes?: number;
  /**
   * CPU time limit per process in seconds (`RLIMIT_CPU`).
   *
   * @default {undefined} (no limit)
   */
  cpuSeconds?: number;
  /**
   * Address-space limit per process in bytes (`RLIMIT_AS`).
   *
   * @default {undefined} (no limit)
   */
  memoryBytes?: number;
  // --- port forwarding (daemon/forward/forward_policy.ts) ---
  /**
   * Worker ports a controller may open tunnel connections to: `"none"`, `"all"`, or ports and ranges
   * (`"3000,8000-8999"`).
   *
   * @default {"all"} (on the loopback address only), or `"none"` when `allow` restricts commands
   */
  forward?: string;
  /**
   * Hosts besides `127.0.0.1` a tunnel connection may be opened to (exact names or addresses).
   *
   * @default {[]}
   */
  forwardHosts?: string[];
  /**
   * Most tunnel connections open at once on one controller link.
   *
   * @default {256}
   */
  maxTunnels?: number;
}

/** The fields of {@linkcode PolicyOptions}. */
const KNOWN_FIELDS: ReadonlySet<string> = new Set([
  "allow",
  "deny",
  "noShell",
  "noPty",
  "noFiles",
  "root",
  "runAs",
  "envStrip",
  "envAllow",
  "envSet",
  "maxProcesses",
  "maxSessions",
  "defaultTimeoutMs",
  "maxTimeoutMs",
  "maxOutputBytes",
  "cpuSeconds",
  "memoryBytes",
  // port forwarding
  "forward",
  "forwardHosts",
  "maxTunnels",
]);

/**
 * Merge policy options from a file with options from command-line flags: each field set in `flags` replaces the
 * file's field entirely (arrays and `envSet` are not concatenated).
 *
 * @param file Options read from a policy file.
 * @param flags Options given as flags.
 * @returns The merged options (not validated).
 */
export function mergeOptions(file: PolicyOptions, flags: PolicyOptions): PolicyOptions {
  const merged: Record<string, unknown> = {};
  for (const source of [file, flags]) {
    for (const [key, value] of Object.entries(source ?? {})) {
      if (value !== undefined) merged[key] = value;
    }
  }
  return merged as PolicyOptions;
}

/**
 * Validate policy options.
 *
 * @param input The options.
 * @param where What they are, for messages.
 * @returns A frozen copy, `root` absolute.
 * @throws {TypeError} For an unknown field or a wrong type.
 * @throws {RangeError} For a value out of range or a malformed pattern.
 */
export function validateOptions(input: unknown, where: string): Readonly<PolicyOptions> {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new TypeError(`Policy ${where} must be an object, got ${describe(input)}`);
  }
  const raw = input as Record<string, unknown>;
  const out: PolicyOptions = {};
  for (const key of Object.keys(raw)) {
    if (!KNOWN_FIELDS.has(key)) {
      throw new TypeError(`Unknown policy field '${key}'`);
    }
  }
  for (const field of ["allow", "deny", "envStrip", "envAllow"] as const) {
    const value = raw[field];
    if (value === undefined) continue;
    if (!Array.isArray(value)) {
      throw new TypeError(
        `Policy field '${field}' must be an array of strings, got ${describe(value)}`,
      );
    }
    const patterns: string[] = [];
    for (const [i, pattern] of value.entries()) {
      if (typeof pattern !== "string") {
        throw new TypeError(
          `Policy field '${field}[${i}]' must be a string, got ${describe(pattern)}`,
        );
      }
      if (pattern === "" || pattern.includes("\0")) {
        throw new RangeError(
          `Policy field '${field}[${i}]' must be a non-empty pattern without NUL, got ${
            JSON.stringify(pattern)
          }`,
        );
      }
      try {
        new Glob(pattern, { path: field === "allow" || field === "deny" });
      } catch (error) {
        throw new RangeError(`Policy field '${field}[${i}]': ${messageOf(error)}`, {
          cause: error,
        });
      }
      patterns.push(pattern);
    }
    out[field] = Object.freeze(patterns) as string[];
  }
  for (const field of ["noShell", "noPty", "noFiles"] as const) {
    const value = raw[field];
    if (value === undefined) continue;
    if (typeof value !== "boolean") {
      throw new TypeError(`Policy field '${field}' must be a boolean, got ${describe(value)}`);
    }
    out[field] = value;
  }
  if (raw.root !== undefined) {
    const root = raw.root;
    if (typeof root !== "string") {
      throw new TypeError(`Policy field 'root' must be a string, got ${describe(root)}`);
    }
    if (root === "" || root.includes("\0")) {
      throw new RangeError(
        `Policy field 'root' must be a non-empty path, got ${JSON.stringify(root)}`,
      );
    }
    out.root = resolve(root);
  }
  if (raw.runAs !== undefined) {
    const runAs = raw.runAs;
    if (typeof runAs !== "string") {
      throw new TypeError(
        `Policy field 'runAs' must be a user name or uid string, got ${describe(runAs)}`,
      );
    }
    if (!/^(?:\d+|[A-Za-z_][A-Za-z0-9_.-]*\$?)$/.test(runAs) || runAs.length > 256) {
      throw new RangeError(
        `Policy field 'runAs' must be a user name or numeric uid, got ${JSON.stringify(runAs)}`,
      );
    }
    out.runAs = runAs;
  }
  if (raw.envSet !== undefined) {
    const envSet = raw.envSet;
    if (typeof envSet !== "object" || envSet === null || Array.isArray(envSet)) {
      throw new TypeError(
        `Policy field 'envSet' must be an object of strings, got ${describe(envSet)}`,
      );
    }
    const entries: [string, string][] = [];
    for (const [name, value] of Object.entries(envSet)) {
      if (name === "" || name.includes("=") || name.includes("\0")) {
        throw new RangeError(
          `Policy field 'envSet' has an invalid variable name ${JSON.stringify(name)}`,
        );
      }
      if (typeof value !== "string") {
        throw new TypeError(
          `Policy field 'envSet.${name}' must be a string, got ${describe(value)}`,
        );
      }
      if (value.includes("\0")) {
        throw new RangeError(`Policy field 'envSet.${name}' must not contain a NUL character`);
      }
      entries.push([name, value]);
    }
    out.envSet = Object.freeze(Object.fromEntries(entries));
  }
  for (
    const field of [
      "maxProcesses",
      "maxSessions",
      "maxOutputBytes",
      "cpuSeconds",
      "memoryBytes",
    ] as const
  ) {
    const value = raw[field];
    if (value === undefined) continue;
    if (typeof value !== "number") {
      throw new TypeError(`Policy field '${field}' must be a number, got ${describe(value)}`);
    }
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`Policy field '${field}' must be a positive integer, got ${value}`);
    }
    out[field] = value;
  }
  for (const field of ["defaultTimeoutMs", "maxTimeoutMs"] as const) {
    const value = raw[field];
    if (value === undefined) continue;
    if (typeof value !== "number") {
      throw new TypeError(`Policy field '${field}' must be a number, got ${describe(value)}`);
    }
    if (!Number.isFinite(value) || value <= 0) {
      throw new RangeError(
        `Policy field '${field}' must be a positive finite number, got ${value}`,
      );
    }
    out[field] = value;
  }
  // port forwarding
  Object.assign(out, validateForwardFields(raw));
  if (
    out.defaultTimeoutMs !== undefined && out.maxTimeoutMs !== undefined &&
    out.defaultTimeoutMs > out.maxTimeoutMs
  ) {
    throw new RangeError(
      `Policy field 'defaultTimeoutMs' (${out.defaultTimeoutMs}) must not exceed 'maxTimeoutMs' (${out.maxTimeoutMs})`,
    );
  }
  return Object.freeze(out);
}

/**
 * A value described for an error message.
 *
 * @param value The value.
 * @returns A short description.
 */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "object") return "an object";
  return `${typeof value} ${String(value)}`;
}

/**
 * The message of a thrown value.
 *
 * @param error The thrown value.
 * @returns Its message.
 */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
