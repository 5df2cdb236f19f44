// One accepted daemon socket's state on the controller, from its upgrade to its close (server/_hub.ts).
import type { Connection } from "./_connection.ts";
import type { Identity } from "./auth.ts";

/**
 * One accepted socket's state from its upgrade to its close. The socket's handlers are the hub's, shared by every
 * socket, and find this by the event's target: one small object per link instead of two closures and their scope
 * (heap snapshots at 2,000 links: ~100 bytes a link less).
 *
 * @example
 * ```ts ignore
 * const accepted = new AcceptedSocket(socket, "127.0.0.1:40000", identity);
 * ```
 */
export class AcceptedSocket {
  /** The socket. */
  readonly socket: WebSocket;
  /** Where it connected from. */
  readonly remoteAddress: string;
  /** The identity its upgrade authenticated. */
  readonly identity: Identity;
  /** The link once the hello was taken. */
  conn: Connection | null = null;
  /** Set once the socket was refused: what it sends after is ignored. */
  refused = false;
  /** Cleared and released at the hello: a connected link keeps no timer of its own. */
  handshake: ReturnType<typeof setTimeout> | undefined;

  constructor(socket: WebSocket, remoteAddress: string, identity: Identity) {
    this.socket = socket;
    this.remoteAddress = remoteAddress;
    this.identity = identity;
  }
}
