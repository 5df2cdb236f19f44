/**
 * The daemon's port-forwarding policy: which worker ports (and hosts) a controller may open tunnel connections to,
 * and how many at once. Read from the policy options `forward`, `forwardHosts` and `maxTunnels` (flags
 * `--forward none|all|PORTS`, `--forward-host HOST`, `--max-tunnels N`). See `daemon/SECURITY.md` for the default.
 *
 * @module
 */

/** The host a tunnel connects to when the request names none, and the only one allowed unless listed. */
export const DEFAULT_FORWARD_HOST = "127.0.0.1";

/** Most tunnel connections open at once on one controller link, unless `maxTunnels` says otherwise. */
export const DEFAULT_MAX_TUNNELS = 256;

/** Which ports may be forwarded: none, all, or the listed ranges. */
export interface ForwardPorts {
  /** `none`: forwarding is off; `all`: every port; `list`: the ranges. */
  kind: "none" | "all" | "list";
  /** Inclusive `[low, high]` ranges, for `list`. */
  ranges: readonly (readonly [number, number])[];
}

/**
 * Parse a port specification: `none`, `all`, or a comma-separated list of ports and ranges (`3000,8000-8999`).
 *
 * @example Parse a list
 * ```ts
 * import { forwardAllows, parseForwardPorts } from "./forward_policy.ts";
 * const ports = parseForwardPorts("3000,8000-8999");
 * console.assert(forwardAllows(ports, 8080) && !forwardAllows(ports, 22));
 * ```
 *
 * @param spec The specification.
 * @returns The parsed ports.
 * @throws {RangeError} Naming the bad part.
 */
export function parseForwardPorts(spec: string): ForwardPorts {
  const text = spec.trim();
  if (text === "none") return { kind: "none", ranges: [] };
  if (text === "all") return { kind: "all", ranges: [] };
  const ranges: [number, number][] = [];
  for (const part of text.split(",")) {
    const match = /^\s*(\d{1,5})(?:\s*-\s*(\d{1,5}))?\s*$/.exec(part);
    const low = match ? Number(match[1]) : NaN;
    const high = match?.[2] !== undefined ? Number(match[2]) : low;
    if (!match || low < 1 || high > 65535 || low > high) {
      throw new RangeError(
        `Forward ports must be none, all, or ports and ranges 1-65535 like 3000,8000-8999; got ${
          JSON.stringify(spec)
        } (bad part ${JSON.stringify(part)})`,
      );
    }
    ranges.push([low, high]);
  }
  return { kind: "list", ranges };
}

/**
 * Whether `port` may be forwarded under `ports`.
 *
 * @param ports Parsed ports.
 * @param port The port asked for.
 * @returns True when allowed.
 */
export function forwardAllows(ports: ForwardPorts, port: number): boolean {
  if (ports.kind === "all") return true;
  if (ports.kind === "none") return false;
  return ports.ranges.some(([low, high]) => port >= low && port <= high);
}

/** The forwarding fields of the policy options. */
export interface ForwardPolicyFields {
  /** Command allow list: when set, forwarding defaults to off. */
  allow?: readonly string[];
  /** `none`, `all` or a port list. */
  forward?: string;
  /** Hosts besides 127.0.0.1 a tunnel may connect to. */
  forwardHosts?: readonly string[];
  /** Most tunnel connections at once per link. */
  maxTunnels?: number;
}

/** The forwarding policy in effect. */
export interface ForwardPolicy {
  /** Which ports. */
  ports: ForwardPorts;
  /** Hosts a tunnel may connect to (always includes 127.0.0.1). */
  hosts: ReadonlySet<string>;
  /** Most tunnel connections at once per link. */
  maxTunnels: number;
}

/**
 * The forwarding policy of a set of policy options. Default: every loopback port, unless a command allow list
 * restricts the controller (then none): a controller that may run any command can reach those ports anyway
 * (`curl`, `nc`), one held to an allow list could not.
 *
 * @example Defaults
 * ```ts
 * import { forwardPolicy } from "./forward_policy.ts";
 * console.assert(forwardPolicy({}).ports.kind === "all");
 * console.assert(forwardPolicy({ allow: ["ls"] }).ports.kind === "none");
 * ```
 *
 * @param options The policy options.
 * @returns The forwarding policy.
 */
export function forwardPolicy(options: ForwardPolicyFields): ForwardPolicy {
  const ports = options.forward !== undefined
    ? parseForwardPorts(options.forward)
    : { kind: options.allow?.length ? "none" : "all", ranges: [] } as ForwardPorts;
  return {
    ports,
    hosts: new Set([DEFAULT_FORWARD_HOST, ...(options.forwardHosts ?? [])]),
    maxTunnels: options.maxTunnels ?? DEFAULT_MAX_TUNNELS,
  };
}

/**
 * Validate the forwarding fields of raw policy options (for `validateOptions`).
 *
 * @param raw The raw options.
 * @returns The validated fields to merge into the options.
 * @throws {TypeError} For a wrong type.
 * @throws {RangeError} For a bad port list, host or count.
 */
export function validateForwardFields(
  raw: Record<string, unknown>,
): { forward?: string; forwardHosts?: string[]; maxTunnels?: number } {
  const out: { forward?: string; forwardHosts?: string[]; maxTunnels?: number } = {};
  if (raw.forward !== undefined) {
    if (typeof raw.forward !== "string") {
      throw new TypeError(`Policy field 'forward' must be a string, got ${typeof raw.forward}`);
    }
    parseForwardPorts(raw.forward);
    out.forward = raw.forward.trim();
  }
  if (raw.forwardHosts !== undefined) {
    const hosts = raw.forwardHosts;
    if (!Array.isArray(hosts)) {
      throw new TypeError(`Policy field 'forwardHosts' must be an array of host names`);
    }
    for (const [i, host] of hosts.entries()) {
      if (typeof host !== "string" || !/^[A-Za-z0-9.:_-]{1,253}$/.test(host)) {
        throw new RangeError(
          `Policy field 'forwardHosts[${i}]' must be a host name or address, got ${
            JSON.stringify(host)
          }`,
        );
      }
    }
    out.forwardHosts = Object.freeze([...hosts]) as string[];
  }
  if (raw.maxTunnels !== undefined) {
    const n = raw.maxTunnels;
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 1) {
      throw new RangeError(`Policy field 'maxTunnels' must be a positive integer, got ${n}`);
    }
    out.maxTunnels = n;
  }
  return out;
}
