/**
 * Options of a controller node in a cluster ({@linkcode ServerOptions.cluster}), and their checks.
 *
 * @module
 */

/** TLS to the NATS servers. */
export interface ClusterTlsOptions {
  /** PEM file of the CA that signed the NATS servers' certificates. @default the system's roots */
  caFile?: string;
  /** PEM client certificate, when NATS asks for one (with `keyFile`). @default undefined */
  certFile?: string;
  /** PEM private key of `certFile`. @default undefined */
  keyFile?: string;
}

/**
 * Join a cluster of controller nodes over NATS (JetStream enabled): daemons connected to any node are reachable
 * from every node. See server/CLUSTER.md.
 *
 * @example Three nodes share one NATS
 * ```ts
 * import type { ClusterOptions } from "./options.ts";
 * const cluster: ClusterOptions = { servers: "nats://127.0.0.1:4222", name: "node-a" };
 * console.assert(cluster.name === "node-a");
 * ```
 */
export interface ClusterOptions {
  /** NATS server URL(s), `nats://host:4222` (or `tls://`). */
  servers: string | string[];
  /** This node's name, unique in the cluster: letters, digits, `-`, `_`. @default `hostname-pid-random` */
  name?: string;
  /** NATS token. @default undefined */
  token?: string;
  /** NATS user (with `pass`). @default undefined */
  user?: string;
  /** NATS password. @default undefined */
  pass?: string;
  /** TLS to NATS. @default undefined (plain, unless the URL is `tls://`) */
  tls?: ClusterTlsOptions;
  /** Prefix of the subjects and key-value buckets, so several clusters can share one NATS. @default "sandd" */
  prefix?: string;
  /**
   * How often a node says it is alive; a node silent for three of these is dead (its daemons are forgotten and
   * what it followed on this node's daemons is released). @default 2_000
   */
  heartbeatMs?: number;
}

const NAME = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Check cluster options; throws a `TypeError` or `RangeError` naming the bad field and value.
 *
 * @param options The options.
 */
export function checkClusterOptions(options: unknown): asserts options is ClusterOptions {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(`cluster must be an object, got ${JSON.stringify(options)}`);
  }
  const o = options as Record<string, unknown>;
  const known = ["servers", "name", "token", "user", "pass", "tls", "prefix", "heartbeatMs"];
  for (const key of Object.keys(o)) {
    if (!known.includes(key)) throw new TypeError(`cluster has an unknown option '${key}'`);
  }
  const servers = typeof o.servers === "string" ? [o.servers] : o.servers;
  if (!Array.isArray(servers) || servers.length === 0) {
    throw new TypeError(
      `cluster.servers must be a NATS URL or a non-empty array of them, got ${
        JSON.stringify(o.servers)
      }`,
    );
  }
  for (const url of servers) {
    if (typeof url !== "string" || !/^(nats|tls):\/\/[^\s/]+(:\d+)?\/?$/.test(url)) {
      throw new TypeError(
        `cluster.servers must hold nats:// or tls:// URLs, got ${JSON.stringify(url)}`,
      );
    }
  }
  for (const key of ["name", "prefix"] as const) {
    if (o[key] !== undefined && (typeof o[key] !== "string" || !NAME.test(o[key] as string))) {
      throw new TypeError(
        `cluster.${key} must be 1-64 letters, digits, '-' or '_', got ${JSON.stringify(o[key])}`,
      );
    }
  }
  for (const key of ["token", "user", "pass"] as const) {
    if (o[key] !== undefined && (typeof o[key] !== "string" || o[key] === "")) {
      throw new TypeError(`cluster.${key} must be a non-empty string`);
    }
  }
  if ((o.user === undefined) !== (o.pass === undefined)) {
    throw new TypeError("cluster.user and cluster.pass go together");
  }
  if (o.tls !== undefined) {
    if (typeof o.tls !== "object" || o.tls === null || Array.isArray(o.tls)) {
      throw new TypeError(`cluster.tls must be an object, got ${JSON.stringify(o.tls)}`);
    }
    const tls = o.tls as Record<string, unknown>;
    for (const [key, value] of Object.entries(tls)) {
      if (!["caFile", "certFile", "keyFile"].includes(key)) {
        throw new TypeError(`cluster.tls has an unknown option '${key}'`);
      }
      if (typeof value !== "string" || value === "") {
        throw new TypeError(`cluster.tls.${key} must be a file path, got ${JSON.stringify(value)}`);
      }
    }
    if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
      throw new TypeError("cluster.tls.certFile and cluster.tls.keyFile go together");
    }
  }
  const hb = o.heartbeatMs;
  if (
    hb !== undefined && (typeof hb !== "number" || !Number.isInteger(hb) || hb < 100 || hb > 60_000)
  ) {
    throw new RangeError(
      `cluster.heartbeatMs must be an integer from 100 to 60000, got ${JSON.stringify(hb)}`,
    );
  }
}
