/**
 * The events a {@linkcode Server} fires: `connect` and `disconnect`, each a {@linkcode DaemonEvent}.
 *
 * @module
 */

import type { DaemonInfo } from "./_connection.ts";
// For {@linkcode} in the docs.
// deno-lint-ignore no-unused-vars
import type { Server } from "./server.ts";

/**
 * Fired on `connect` and `disconnect`.
 *
 * @example Log connects
 * ```ts ignore
 * server.addEventListener("connect", (event) => console.log(event.daemon.id));
 * ```
 */
export class DaemonEvent extends Event {
  /** The daemon. */
  readonly daemon: DaemonInfo;
  /**
   * Make the event.
   *
   * @param type `connect` or `disconnect`.
   * @param daemon The daemon.
   */
  constructor(type: "connect" | "disconnect", daemon: DaemonInfo) {
    super(type);
    this.daemon = daemon;
  }
}

/** The events a {@linkcode Server} fires, by type. */
export interface ServerEventMap {
  /** A daemon completed its handshake. */
  connect: DaemonEvent;
  /** A daemon's link closed. */
  disconnect: DaemonEvent;
}
