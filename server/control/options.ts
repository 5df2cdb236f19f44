/**
 * Options of the HTTP control API (`Server.listen({ control })`): client tokens and their scopes.
 *
 * @module
 */

/**
 * What a client token may do: `read` (list, get, stat, logs, events), `exec` (exec, spawn, stdin, signal,
 * terminals, broadcast), `files` (upload, download, mkdir, remove, move, directories), `admin` (everything).
 */
export type Scope = "read" | "exec" | "files" | "admin";

/** Every scope, in order. */
export const SCOPES: readonly Scope[] = ["read", "exec", "files", "admin"];

/**
 * A bearer token a client of the control API sends as `Authorization: Bearer <token>`.
 *
 * @example A read-only token
 * ```ts
 * import type { ClientToken } from "./options.ts";
 * const token: ClientToken = { token: "a-long-random-secret", scopes: ["read"], name: "dashboard" };
 * console.assert(token.scopes?.[0] === "read");
 * ```
 */
export interface ClientToken {
  /** The secret: at least 16 characters, no whitespace or control characters. */
  token: string;
  /** What it may do. @default all scopes */
  scopes?: Scope[];
  /** Its name in the audit trail (`client:<name>`). @default "token-<n>" (its position, from 1) */
  name?: string;
}

/**
 * Options of the control API (`ServerOptions.control`).
 *
 * @example Two clients
 * ```ts
 * import type { ControlOptions } from "./options.ts";
 * const control: ControlOptions = {
 *   tokens: [
 *     { token: "0123456789abcdef-ops", name: "ops" },
 *     { token: "0123456789abcdef-ro", scopes: ["read"], name: "dashboard" },
 *   ],
 * };
 * console.assert(control.tokens?.length === 2);
 * ```
 */
export interface ControlOptions {
  /**
   * Client tokens. With none, the API is open to anyone who can reach it (every scope), which `Server.listen`
   * only allows on a loopback address unless `insecure` is set. @default []
   */
  tokens?: ClientToken[];
  /** Allow an open API (no tokens) on a non-loopback address. @default false */
  insecure?: boolean;
  /** Largest JSON request body, in bytes; a bigger one is answered 413. @default 1 MiB */
  maxJsonBytes?: number;
  /** Most events queued for one SSE client that does not read; beyond it the client is dropped. @default 1_024 */
  maxEventQueue?: number;
}

const TOKEN_RULE = /^[\x21-\x7e]{16,4096}$/;
const NAME_RULE = /^[A-Za-z0-9._@-]{1,64}$/;

/** Whether `hostname` is a loopback address (or `localhost`). */
export function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * Check `ServerOptions.control` before the socket opens.
 *
 * @param control The option.
 * @param hostname Where the server listens.
 * @param daemonToken The daemons' shared token, which no client token may equal.
 * @returns The options, normalized.
 */
export function checkControlOptions(
  control: unknown,
  hostname: string,
  daemonToken: string | undefined,
): ControlOptions {
  if (control === true) control = {};
  if (typeof control !== "object" || control === null || Array.isArray(control)) {
    throw new TypeError(
      `control must be true or an object, got ${JSON.stringify(control) ?? typeof control}`,
    );
  }
  const options = control as ControlOptions;
  for (const key of Object.keys(options)) {
    if (!["tokens", "insecure", "maxJsonBytes", "maxEventQueue"].includes(key)) {
      throw new TypeError(`control has an unknown option '${key}'`);
    }
  }
  if (options.insecure !== undefined && typeof options.insecure !== "boolean") {
    throw new TypeError(`control.insecure must be a boolean, got ${typeof options.insecure}`);
  }
  for (const name of ["maxJsonBytes", "maxEventQueue"] as const) {
    const value = options[name];
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) {
      throw new RangeError(`control.${name} must be a positive integer, got ${value}`);
    }
  }
  const tokens = options.tokens ?? [];
  if (!Array.isArray(tokens)) {
    throw new TypeError(`control.tokens must be an array, got ${typeof tokens}`);
  }
  const seen = new Set<string>();
  const names = new Set<string>();
  tokens.forEach((entry, i) => {
    const where = `control.tokens[${i}]`;
    if (typeof entry !== "object" || entry === null) {
      throw new TypeError(`${where} must be an object, got ${String(entry)}`);
    }
    for (const key of Object.keys(entry)) {
      if (key !== "token" && key !== "scopes" && key !== "name") {
        throw new TypeError(`${where} has an unknown field '${key}'`);
      }
    }
    if (typeof entry.token !== "string" || !TOKEN_RULE.test(entry.token)) {
      throw new TypeError(
        `${where}.token must be 16 to 4096 printable characters without spaces`,
      );
    }
    if (seen.has(entry.token)) throw new TypeError(`${where}.token is listed twice`);
    seen.add(entry.token);
    if (daemonToken !== undefined && entry.token === daemonToken) {
      throw new TypeError(`${where}.token equals the daemons' token; client tokens must differ`);
    }
    if (entry.scopes !== undefined) {
      if (!Array.isArray(entry.scopes)) {
        throw new TypeError(`${where}.scopes must be an array, got ${typeof entry.scopes}`);
      }
      for (const scope of entry.scopes) {
        if (!SCOPES.includes(scope)) {
          throw new TypeError(
            `${where}.scopes has an unknown scope ${JSON.stringify(scope)} (expected ${
              SCOPES.join(", ")
            })`,
          );
        }
      }
    }
    const name = entry.name ?? `token-${i + 1}`;
    if (typeof name !== "string" || !NAME_RULE.test(name)) {
      throw new TypeError(
        `${where}.name must be 1 to 64 letters, digits or ._@-, got ${JSON.stringify(name)}`,
      );
    }
    if (names.has(name)) throw new TypeError(`${where}.name '${name}' is used twice`);
    names.add(name);
  });
  if (tokens.length === 0 && options.insecure !== true && !isLoopback(hostname)) {
    throw new TypeError(
      `The control API has no client tokens and the server listens on '${hostname}', not a loopback ` +
        `address: configure control.tokens, or set control.insecure to open it to anyone who can reach it`,
    );
  }
  return { ...options, tokens };
}
