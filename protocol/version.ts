/**
 * Version constants shared by the controller and the daemon.
 *
 * @module
 */

import config from "./deno.json" with { type: "json" };

/**
 * The package version of SandD: the one place it lives is `protocol/deno.json`; the server and daemon packages
 * carry the same number (a test checks it). Controller and daemon ship together.
 */
export const VERSION: string = config.version;

/** The wire protocol version. Bumped on any incompatible change. */
export const PROTOCOL_VERSION: number = 1;

/**
 * The WebSocket subprotocol that carries {@linkcode PROTOCOL_VERSION}. A daemon offers it on the upgrade; the
 * controller refuses an upgrade that does not offer it, with HTTP 426 and a reason.
 *
 * @example Offer the subprotocol from a client
 * ```ts
 * import { SUBPROTOCOL } from "./version.ts";
 * console.assert(SUBPROTOCOL === "sandd.v1");
 * ```
 */
export const SUBPROTOCOL: string = `sandd.v${PROTOCOL_VERSION}`;
