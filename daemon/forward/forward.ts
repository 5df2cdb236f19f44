/**
 * Port forwarding on the worker: the `connect` request opens one TCP connection to a port the daemon's policy
 * allows (`127.0.0.1` unless the policy lists other hosts) and carries its bytes both ways as two credit-controlled
 * streams ({@linkcode Tunnel}). Connections do not outlive their link; at most `maxTunnels` are open per link.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { MAX_WINDOW_BYTES } from "@sandd/protocol/constants";
import type { RequestArgs } from "@sandd/protocol/messages";
import type { Link } from "../_link.ts";
import { DaemonRequestError } from "../process_table.ts";
import { PolicyError } from "../policy/mod.ts";
import {
  DEFAULT_FORWARD_HOST,
  forwardAllows,
  type ForwardPolicy,
  forwardPolicy,
  type ForwardPolicyFields,
} from "./forward_policy.ts";
import { socketErrorCode, Tunnel } from "./_tunnel.ts";

const log = getLogger(["sandd", "daemon", "forward"]);

/** The receive window the daemon grants on a tunnel's `input` at most (its buffer per connection). */
export const TUNNEL_INPUT_WINDOW: number = 4 * 1024 * 1024;

/** How long connecting to the worker's port may take. */
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Serves `connect` requests under a forwarding policy.
 *
 * @example Wire it into a daemon
 * ```ts ignore
 * const forward = new ForwardService(policy.options);
 * handlers.connect = (args, link) => forward.connect(args, link);
 * ```
 */
export class ForwardService {
  /** The policy in effect. */
  readonly policy: ForwardPolicy;
  readonly #open: Map<Link, Set<Tunnel>> = new Map();
  /** Per link with open connections: stop listening for its close (once its last connection ended). */
  readonly #unlisten: Map<Link, () => void> = new Map();
  /** Connections being set up per link (they count toward the limit too). */
  readonly #pending: Map<Link, number> = new Map();
  /** Stream ids of connections being set up per link: no other `connect` may claim them meanwhile. */
  readonly #reserved: Map<Link, Set<number>> = new Map();

  /**
   * @param options The policy options (`forward`, `forwardHosts`, `maxTunnels`, `allow`).
   */
  constructor(options: ForwardPolicyFields) {
    this.policy = forwardPolicy(options);
  }

  /** Tunnel connections open now, over every link. */
  get size(): number {
    let n = 0;
    for (const set of this.#open.values()) n += set.size;
    return n;
  }

  /**
   * Serve one `connect` request: check the policy, dial, bind the streams, and answer with the input window.
   *
   * @param args The validated arguments.
   * @param link The controller link.
   * @returns The reply data.
   * @throws {PolicyError} When the policy refuses the host, the port or one more connection.
   * @throws {DaemonRequestError} `ECONNREFUSED` (naming host and port), `ETIMEDOUT`, ... or `BAD_REQUEST`.
   */
  async connect(args: RequestArgs<"connect">, link: Link): Promise<{ window: number }> {
    const host = args.host ?? DEFAULT_FORWARD_HOST;
    const { port, sid, input } = args;
    if (!this.policy.hosts.has(host)) {
      throw new PolicyError(
        `Forwarding to host '${host}' is not allowed: only ${
          [...this.policy.hosts].join(", ")
        } (see --forward-host)`,
        { rule: "forwardHost" },
      );
    }
    if (!forwardAllows(this.policy.ports, port)) {
      throw new PolicyError(
        this.policy.ports.kind === "none"
          ? `Port forwarding is disabled on this worker (asked for port ${port}; see --forward)`
          : `Forwarding port ${port} is not allowed on this worker (see --forward)`,
        { rule: "forward" },
      );
    }
    if (sid === input) {
      throw new DaemonRequestError(
        "BAD_REQUEST",
        `Stream ids sid and input must differ, got ${sid}`,
      );
    }
    const reserved = this.#reserved.get(link);
    const inUse = (id: number) => link.routes.has(id) || (reserved?.has(id) ?? false);
    if (inUse(sid) || inUse(input)) {
      throw new DaemonRequestError(
        "BAD_REQUEST",
        `Stream id ${inUse(sid) ? sid : input} is in use`,
      );
    }
    const open = this.#open.get(link)?.size ?? 0;
    const pending = this.#pending.get(link) ?? 0;
    if (open + pending >= this.policy.maxTunnels) {
      throw new PolicyError(
        `Too many tunnel connections: ${
          open + pending
        } open, at most ${this.policy.maxTunnels} (see --max-tunnels)`,
        { rule: "maxTunnels" },
      );
    }
    const address = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
    this.#pending.set(link, pending + 1);
    // The ids are claimed while dialling: two connects naming the same ids once both passed the check above,
    // and the second's tunnel bound over the first's, whose socket then had no route left to close it.
    let ids = reserved;
    if (!ids) this.#reserved.set(link, ids = new Set());
    ids.add(sid).add(input);
    let conn: Deno.TcpConn;
    try {
      conn = await dial(host, port, address);
    } finally {
      const left = (this.#pending.get(link) ?? 1) - 1;
      if (left > 0) this.#pending.set(link, left);
      else this.#pending.delete(link);
      ids.delete(sid);
      ids.delete(input);
      if (ids.size === 0 && this.#reserved.get(link) === ids) this.#reserved.delete(link);
    }
    if (!link.open) {
      conn.close();
      throw new DaemonRequestError("ECONNABORTED", "The link closed while connecting");
    }
    if (link.routes.has(sid) || link.routes.has(input)) {
      // Another stream (a download, stdin...) took one of the ids while dialling.
      conn.close();
      throw new DaemonRequestError(
        "BAD_REQUEST",
        `Stream id ${link.routes.has(sid) ? sid : input} is in use`,
      );
    }
    try {
      conn.setNoDelay(true);
    } catch {
      // not every platform supports it
    }
    const inputWindow = Math.min(TUNNEL_INPUT_WINDOW, MAX_WINDOW_BYTES, args.window);
    let set = this.#open.get(link);
    if (!set) {
      this.#open.set(link, set = new Set());
      // Connections never outlive their link, even one whose stream ids another stream has taken over since
      // (then neither of its routes hears the close).
      const tunnelsOfLink = set;
      this.#unlisten.set(
        link,
        link.onClosed(() => {
          for (const tunnel of [...tunnelsOfLink]) tunnel.abort("the link closed");
        }),
      );
    }
    const tunnels = set;
    const tunnel: Tunnel = new Tunnel(
      link,
      conn,
      { sid, input, window: args.window, inputWindow, address },
      () => {
        tunnels.delete(tunnel);
        if (tunnels.size === 0 && this.#open.get(link) === tunnels) {
          this.#open.delete(link);
          this.#unlisten.get(link)?.();
          this.#unlisten.delete(link);
        }
      },
    );
    tunnels.add(tunnel);
    log.debug("Tunnel to {address} on streams {sid}/{input}", { address, sid, input });
    tunnel.start();
    return { window: inputWindow };
  }

  /** Abort every connection (the daemon is stopping). */
  closeAll(): void {
    for (const set of [...this.#open.values()]) {
      for (const tunnel of [...set]) tunnel.abort("the daemon is stopping");
    }
  }
}

/** Connect to `host:port`, with a deadline; errors become wire errors naming the address. */
async function dial(host: string, port: number, address: string): Promise<Deno.TcpConn> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const connecting = Deno.connect({ hostname: host, port, transport: "tcp" });
  try {
    return await Promise.race([
      connecting,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new DaemonRequestError(
                "ETIMEDOUT",
                `Connecting to ${address} on the worker timed out after ${CONNECT_TIMEOUT_MS} ms`,
              ),
            ),
          CONNECT_TIMEOUT_MS,
        );
      }),
    ]);
  } catch (error) {
    if (error instanceof DaemonRequestError) {
      // Close the connection if it completes after the deadline.
      connecting.then((conn) => conn.close(), () => {});
      throw error;
    }
    const code = socketErrorCode(error);
    throw new DaemonRequestError(
      code,
      code === "ECONNREFUSED"
        ? `Connection refused by ${address} on the worker: nothing listens on port ${port}`
        : `Cannot connect to ${address} on the worker: ${(error as Error).message}`,
    );
  } finally {
    clearTimeout(timer);
  }
}
