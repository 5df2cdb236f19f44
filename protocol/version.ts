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

/**
 * The revision of protocol {@linkcode PROTOCOL_VERSION} this package speaks: optional additions to version 1 that a
 * side uses only on a link whose peer selected them (revision 1: an `exit` may carry the `eof`s of the link's
 * streams, `eofs`). A link negotiated as plain {@linkcode SUBPROTOCOL} is revision 0 and carries none of them, so
 * old and new controllers and daemons keep interoperating.
 */
export const PROTOCOL_REVISION: number = 1;

/**
 * The WebSocket subprotocol of this revision, `sandd.v1.1`. A daemon offers it before {@linkcode SUBPROTOCOL}; a
 * controller that knows it selects it, an older one selects `sandd.v1`.
 *
 * @example The revised subprotocol
 * ```ts
 * import { SUBPROTOCOL_REVISED } from "./version.ts";
 * console.assert(SUBPROTOCOL_REVISED === "sandd.v1.1");
 * ```
 */
export const SUBPROTOCOL_REVISED: string = `sandd.v${PROTOCOL_VERSION}.${PROTOCOL_REVISION}`;

/**
 * The subprotocols a daemon offers on its upgrade, most preferred first.
 *
 * @example Offer them
 * ```ts
 * import { SUBPROTOCOLS } from "./version.ts";
 * console.assert(SUBPROTOCOLS.join(", ") === "sandd.v1.1, sandd.v1");
 * ```
 */
export const SUBPROTOCOLS: readonly string[] = [SUBPROTOCOL_REVISED, SUBPROTOCOL];

/**
 * The revision of protocol 1 that a selected subprotocol stands for: 0 for `sandd.v1`, n for `sandd.v1.n` (up to
 * {@linkcode PROTOCOL_REVISION}), and -1 for anything else.
 *
 * @example What a link may carry
 * ```ts
 * import { protocolRevision } from "./version.ts";
 * console.assert(protocolRevision("sandd.v1.1") === 1);
 * console.assert(protocolRevision("sandd.v1") === 0);
 * console.assert(protocolRevision("other") === -1);
 * ```
 *
 * @param selected The subprotocol the controller selected (`Sec-WebSocket-Protocol` of its 101 answer).
 * @returns The revision, or -1 when it is not a version-1 subprotocol.
 */
export function protocolRevision(selected: string): number {
  if (selected === SUBPROTOCOL) return 0;
  const prefix = `${SUBPROTOCOL}.`;
  if (!selected.startsWith(prefix)) return -1;
  const tail = selected.slice(prefix.length);
  if (!/^[1-9][0-9]{0,5}$/.test(tail)) return -1;
  return Math.min(Number(tail), PROTOCOL_REVISION);
}

/**
 * The subprotocol a controller selects from a daemon's offer: the highest revision of version 1 it speaks that the
 * daemon offered, or null when `sandd.v1` is not among them (refused with HTTP 426).
 *
 * @example Negotiate
 * ```ts
 * import { selectSubprotocol } from "./version.ts";
 * console.assert(selectSubprotocol(["sandd.v1.1", "sandd.v1"]) === "sandd.v1.1");
 * console.assert(selectSubprotocol(["sandd.v1"]) === "sandd.v1");
 * console.assert(selectSubprotocol(["sandd.v2"]) === null);
 * ```
 *
 * @param offered The subprotocols the daemon offered.
 * @returns The one to select, or null.
 */
export function selectSubprotocol(offered: readonly string[]): string | null {
  if (!offered.includes(SUBPROTOCOL)) return null;
  return offered.includes(SUBPROTOCOL_REVISED) ? SUBPROTOCOL_REVISED : SUBPROTOCOL;
}
