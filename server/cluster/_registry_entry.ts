/**
 * One entry of the cluster registry (the `<prefix>_daemons` bucket): a daemon's description and the node that
 * holds it, its key, and the server's daemon description made of it.
 *
 * @module
 */

import type { DaemonInfo } from "../_connection.ts";

/** A registry entry: the daemon's description and who holds it. */
export interface Entry {
  id: string;
  node: string;
  slot: number;
  instance: string;
  labels: Record<string, string>;
  hostname: string;
  platform: string;
  arch: string;
  version: string;
  pid: number;
  connectedAt: string;
  remoteAddress: string;
  identity: string;
}

/** A daemon id as a NATS key: characters other than letters, digits and `-` as `_xx`. */
export function daemonKey(id: string): string {
  return "d." +
    id.replace(/[^A-Za-z0-9-]/g, (c) => `_${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** A registry entry as the server's daemon description. */
export function infoOf(entry: Entry): DaemonInfo {
  return {
    id: entry.id,
    labels: { ...entry.labels },
    hostname: entry.hostname,
    platform: entry.platform,
    arch: entry.arch,
    version: entry.version,
    pid: entry.pid,
    connectedAt: new Date(entry.connectedAt),
    remoteAddress: entry.remoteAddress,
    identity: entry.identity,
  };
}
