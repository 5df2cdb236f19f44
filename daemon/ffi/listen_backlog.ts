// Copyright 2026 the SandD authors. MIT license.
/**
 * The kernel's accept queue of a listening TCP socket, raised after the fact. `Deno.listen` takes no backlog and
 * listens with 511; a controller whose thousands of daemons reconnect at once (a node of a cluster died) fills
 * that in a moment, and the kernel then drops new connections' handshakes, which their clients send again only
 * after TCP's one-second retransmission timeout (and three seconds after a second drop). Calling `listen()` again
 * on a listening socket changes its backlog (POSIX leaves it open; Linux and macOS both apply it, capped by
 * `net.core.somaxconn` / `kern.ipc.somaxconn`).
 *
 * Deno does not expose a listener's descriptor, so this finds it: the descriptors below a bound that are
 * listening sockets (`SO_ACCEPTCONN`) bound to the port.
 *
 * @module
 */

import { acquireLibc, releaseLibc } from "./libc.ts";

const IS_DARWIN = Deno.build.os === "darwin";
const SOL_SOCKET = IS_DARWIN ? 0xffff : 1;
const SO_ACCEPTCONN = IS_DARWIN ? 0x0002 : 30;
const AF_INET = 2;
const AF_INET6 = IS_DARWIN ? 30 : 10;

/** Options of {@linkcode raiseListenBacklog}. */
export interface RaiseBacklogOptions {
  /** Descriptors looked at: 0 up to this. @default 4096 */
  maxFd?: number;
}

/**
 * Set the accept queue of this process's listening TCP sockets on `port` (IPv4 and IPv6) to `backlog`, which the
 * kernel caps at its own maximum.
 *
 * @example Raise the backlog of a Deno listener
 * ```ts
 * import { raiseListenBacklog } from "./listen_backlog.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const raised = raiseListenBacklog(listener.addr.port, 4096);
 * console.assert(Deno.build.os === "windows" || raised === 1);
 * listener.close();
 * ```
 *
 * @param port The port the sockets listen on.
 * @param backlog The queue length asked for (1-65535).
 * @param options Options.
 * @returns How many sockets were changed (0 on Windows, or when none listens on `port` here).
 * @throws {RangeError} For a port or backlog out of range.
 */
export function raiseListenBacklog(
  port: number,
  backlog: number,
  options: RaiseBacklogOptions = {},
): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`port must be an integer from 1 to 65535, got ${port}`);
  }
  if (!Number.isInteger(backlog) || backlog < 1 || backlog > 65535) {
    throw new RangeError(`backlog must be an integer from 1 to 65535, got ${backlog}`);
  }
  if (Deno.build.os === "windows") return 0;
  const maxFd = options.maxFd ?? 4096;
  const libc = acquireLibc();
  try {
    const value = new Int32Array(1);
    const valueLength = new Uint32Array(1);
    const address = new Uint8Array(128);
    const addressLength = new Uint32Array(1);
    let raised = 0;
    for (let fd = 0; fd < maxFd; fd++) {
      valueLength[0] = 4;
      if (libc.getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, value, valueLength) !== 0) continue;
      if (value[0] === 0) continue;
      addressLength[0] = address.length;
      if (libc.getsockname(fd, address, addressLength) !== 0) continue;
      // sockaddr_in / sockaddr_in6: the family (a 16-bit host-order field on Linux; a length byte and a family
      // byte on macOS), then the port in network order.
      const family = IS_DARWIN ? address[1]! : address[0]! | (address[1]! << 8);
      if (family !== AF_INET && family !== AF_INET6) continue;
      if (((address[2]! << 8) | address[3]!) !== port) continue;
      if (libc.listen(fd, backlog) === 0) raised++;
    }
    return raised;
  } finally {
    releaseLibc();
  }
}
