/**
 * A controller node in a cluster over NATS (see server/CLUSTER.md). The cluster relays the daemon protocol itself:
 *
 * - Each node claims a slot (1-255) in the `<prefix>_nodes` key-value bucket and allocates every request and
 *   stream id in that slot's range, so all nodes' traffic shares a daemon's one link without collisions.
 * - The registry of which node holds which daemon is the `<prefix>_daemons` bucket, watched into a local cache;
 *   a node says it is alive every heartbeat (the nodes bucket's `max_age` forgets a silent one).
 * - A node that does not hold a daemon reaches it through a relayed link (`Connection` over a `VirtualSocket`)
 *   publishing raw protocol messages to the owner (`<prefix>.to.<ownerSlot>.<node>`); the owner checks that every id
 *   in them is in the sender's slot, sends them on the daemon's socket, and publishes what the daemon sends about
 *   ids in that slot back (`<prefix>.back.<slot>`). Offsets, credit flow control and resume are end to end.
 *
 * The registry cache and node liveness are in `_registry.ts`; the owner side of the relay is in `_owner_relay.ts`,
 * as are the id checks and the virtual socket in their own files.
 *
 * @module
 */

import { hostname } from "node:os";
import { getLogger } from "@logtape/logtape";
import { connect, headers, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { type KV, Kvm, type KvOptions } from "@nats-io/kv";
import type { Connection, DaemonInfo } from "../_connection.ts";
import type { Hub, HubRelay } from "../_hub.ts";
import { KvWriter } from "./_kv_writer.ts";
import { OwnerRelay } from "./_owner_relay.ts";
import { type Entry, infoOf, Registry } from "./_registry.ts";
import { VirtualSocket } from "./_virtual_socket.ts";
import { decodeBatch } from "./_relay_batch.ts";
import { connectDeno } from "./_nats_transport.ts";
import type { ClusterOptions } from "./options.ts";

const log = getLogger(["sandd", "cluster"]);

/** A relayed link to a daemon held by another node. */
interface Virtual {
  conn: Connection;
  socket: VirtualSocket;
  node: string;
  instance: string;
}

/** What the server gives the cluster once it exists. */
export interface ClusterHost {
  hub: Hub;
  /** A daemon held by another node appeared in (or left) the cluster: the server's `connect`/`disconnect`. */
  connect(info: DaemonInfo): void;
  disconnect(info: DaemonInfo): void;
}

/** The default node name: `hostname-pid-random`, reduced to the characters NATS subjects allow. */
function defaultName(): string {
  const host = hostname().replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 40) || "node";
  return `${host}-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
}

const decoder = new TextDecoder();

export class Cluster {
  /** This node's name. */
  readonly name: string;
  /** This node's slot. */
  readonly slot: number;
  readonly #nc: NatsConnection;
  readonly #prefix: string;
  readonly #heartbeatMs: number;
  #host: ClusterHost | null = null;
  #up = true;
  #closed = false;
  readonly #subs: Subscription[] = [];
  readonly #tasks: Set<Promise<unknown>> = new Set();
  /** Compare-and-set writes to the daemons bucket (server/cluster/_kv_writer.ts). */
  readonly #writer: KvWriter;
  /** The registry cache and node liveness (server/cluster/_registry.ts). */
  readonly #registry: Registry;
  /** Daemons held elsewhere that this node announced (`connect`), by id. */
  readonly #shown: Map<string, Entry> = new Map();
  readonly #virtuals: Map<string, Virtual> = new Map();
  /** Daemons whose relayed link should be made again when they appear (something followed them here). */
  readonly #wanted: Set<string> = new Set();
  /** Owner side: other nodes' traffic to the daemons held here (server/cluster/_owner_relay.ts). */
  readonly #owner: OwnerRelay;

  private constructor(
    nc: NatsConnection,
    name: string,
    slot: number,
    prefix: string,
    heartbeatMs: number,
    daemons: KV,
    nodes: KV,
  ) {
    this.#nc = nc;
    this.#writer = new KvWriter(nc, `${prefix}_daemons`);
    this.name = name;
    this.slot = slot;
    this.#prefix = prefix;
    this.#heartbeatMs = heartbeatMs;
    this.#registry = new Registry(name, slot, heartbeatMs, daemons, this.#writer, nodes, {
      hub: () => this.#host?.hub ?? null,
      up: () => this.#up,
      closed: () => this.#closed,
      task: (promise) => this.#task(promise),
      changed: (id) => this.#refresh(id),
      nodeGone: (slot) => this.#owner.nodeGone(slot),
      beat: () => this.#pingQuiet(),
      lapsed: () => this.#relinkAll(),
    });
    this.#owner = new OwnerRelay({
      nc,
      prefix,
      slot,
      slotOf: (node) => this.#registry.slotOf(node),
      local: (id) => this.#host?.hub.local(id) ?? null,
    });
  }

  /** Relayed messages refused (ids outside the sender's slot, or not valid). */
  get refused(): number {
    return this.#owner.refused;
  }

  /**
   * Connect to NATS, open the buckets and claim a slot.
   *
   * @throws When NATS cannot be reached or JetStream is not enabled, or every slot is taken.
   */
  static async connect(options: ClusterOptions): Promise<Cluster> {
    const name = options.name ?? defaultName();
    const prefix = options.prefix ?? "sandd";
    const heartbeatMs = options.heartbeatMs ?? 2_000;
    // Deno's own TCP (server/cluster/_nats_transport.ts), but for TLS client certificates (node's sockets only).
    // Its read buffers are reused for the relay's messages back to this node (#fromOwner copies what it keeps).
    const dial = options.tls?.certFile !== undefined
      ? connect
      : (o: Parameters<typeof connect>[0]) => connectDeno(o ?? {}, `${prefix}.back.`);
    const nc = await dial({
      servers: options.servers,
      name: `sandd-${name}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      // No stack captured per request (an Error and its trace for every registry write, in case it fails
      // later): 2-5 % of a surviving node's CPU in a failover's profile. Failures keep their messages.
      noAsyncTraces: true,
      ...(options.token !== undefined ? { token: options.token } : {}),
      ...(options.user !== undefined ? { user: options.user, pass: options.pass } : {}),
      ...(options.tls !== undefined ? { tls: { ...options.tls } } : {}),
    });
    try {
      const { daemons, nodes } = await openBuckets(nc, prefix, heartbeatMs);
      // The bucket's max_age was set by the node that made it: beat often enough for it.
      const ttl = (await nodes.status()).ttl;
      const beat = ttl > 0 ? Math.min(heartbeatMs, Math.max(50, Math.floor(ttl / 3))) : heartbeatMs;
      if (beat !== heartbeatMs) {
        log.warn(
          "The cluster's nodes bucket forgets a node after {ttl} ms: heartbeat every {beat} ms, not {heartbeatMs}",
          { ttl, beat, heartbeatMs },
        );
      }
      let slot = 0;
      for (let n = 1; n <= 255 && slot === 0; n++) {
        try {
          await nodes.create(`slot.${n}`, name);
          slot = n;
        } catch {
          // taken
        }
      }
      if (slot === 0) throw new Error("Every cluster slot (255 nodes) is taken");
      await nodes.put(`node.${name}`, JSON.stringify({ slot }));
      return new Cluster(nc, name, slot, prefix, beat, daemons, nodes);
    } catch (error) {
      await nc.close().catch(() => {});
      throw error;
    }
  }

  /** Whether NATS is reachable now. */
  get up(): boolean {
    return this.#up;
  }

  /** Daemons held by other nodes, as this node sees them. */
  remoteDaemons(): DaemonInfo[] {
    if (!this.#up) return [];
    return [...this.#shown.values()].map(infoOf);
  }

  /** One daemon held by another node. */
  remoteDaemon(id: string): DaemonInfo | undefined {
    const entry = this.#up ? this.#shown.get(id) : undefined;
    return entry ? infoOf(entry) : undefined;
  }

  /** Daemons in the whole cluster by the node that holds them (alive nodes only). */
  daemonsByNode(): Map<string, number> {
    return this.#registry.daemonsByNode();
  }

  /** What the hub calls. */
  readonly relay: HubRelay = {
    slot: 0,
    connected: (conn) => this.#localConnected(conn),
    disconnected: (conn) => this.#localDisconnected(conn),
    toFront: (conn, slot, data) => this.#owner.toFront(conn.info.id, slot, data),
    exit: (conn, text) => this.#owner.exit(conn.info.id, text),
    remote: (id) => this.#remote(id),
  };

  /** Start: subscriptions, watches and heartbeats. Called once the server exists. */
  start(host: ClusterHost): void {
    this.#host = host;
    (this.relay as { slot: number }).slot = this.slot;
    this.#subs.push(
      this.#nc.subscribe(`${this.#prefix}.to.${this.slot}.*`, {
        callback: (error, msg) => {
          if (error) return;
          this.#owner.fromFront(
            msg.subject,
            msg.headers?.get("d") ?? "",
            msg.headers?.get("k") ?? "",
            msg.data,
          );
        },
      }),
      this.#nc.subscribe(`${this.#prefix}.back.${this.slot}`, {
        callback: (error, msg) => {
          if (error) return;
          this.#fromOwner(msg.headers?.get("d") ?? "", msg.headers?.get("k") ?? "", msg.data);
        },
      }),
    );
    this.#registry.start();
    this.#task(this.#watchStatus());
  }

  #task(promise: Promise<unknown>): void {
    const p = promise.catch((error) => {
      if (!this.#closed) log.warn("Cluster task failed: {message}", { message: String(error) });
    }).finally(() => this.#tasks.delete(p));
    this.#tasks.add(p);
  }

  /**
   * Time the round trip of relayed links (it sizes new streams' windows): once, then while they follow something.
   * Timed only while quiet: behind a window of data in NATS a ping would time the queue (and grow the next windows
   * with it), and a link's first moments (its owner just answered its first requests) are noisy.
   */
  #pingQuiet(): void {
    const quiet = Date.now() - this.#heartbeatMs;
    for (const [id, virtual] of this.#virtuals) {
      const { conn } = virtual;
      const wanted = conn.routes.size > 0 || conn.info.rttMs === undefined;
      if (wanted && conn.lastSeen <= quiet && conn.lastSent <= quiet) this.#ping(id, virtual);
    }
  }

  async #watchStatus(): Promise<void> {
    for await (const status of this.#nc.status()) {
      if (status.type === "disconnect") {
        if (!this.#up) continue;
        this.#up = false;
        log.warn("NATS is unreachable: daemons held by other nodes cannot be reached");
        for (const id of [...this.#virtuals.keys()]) this.#dropVirtual(id, true);
      } else if (status.type === "reconnect") {
        this.#up = true;
        log.info("NATS is back: registering this node's daemons again");
        this.#task(this.#reconnected());
      }
    }
  }

  /**
   * NATS is back. A restarted server has lost the buckets (they are held in memory): make them again (the same
   * configuration: nothing changes where they survived), then register this node's daemons and watch afresh.
   */
  async #reconnected(): Promise<void> {
    for (let attempt = 1; !this.#closed; attempt++) {
      try {
        await openBuckets(this.#nc, this.#prefix, this.#heartbeatMs);
        break;
      } catch (error) {
        // JetStream may still be starting on a server that just came back.
        if (attempt >= 40) {
          log.warn("Could not make the cluster's buckets again: {message}", {
            message: String(error),
          });
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
    if (!this.#closed) this.#registry.reconnected();
  }

  // --- the registry's view: events and relayed links ---

  /** Bring events and relayed links in line with the registry for one daemon. */
  #refresh(id: string): void {
    const host = this.#host;
    if (!host) return;
    const entry = this.#registry.entry(id);
    const visible = entry !== undefined && entry.node !== this.name &&
      this.#registry.alive(entry.node) && host.hub.local(id) === null;
    const shown = this.#shown.get(id);
    const same = shown !== undefined && entry !== undefined && shown.node === entry.node &&
      shown.instance === entry.instance;
    if (shown && (!visible || !same)) {
      this.#shown.delete(id);
      host.disconnect(infoOf(shown));
    }
    const virtual = this.#virtuals.get(id);
    if (
      virtual && (!visible || virtual.node !== entry?.node || virtual.instance !== entry?.instance)
    ) {
      this.#dropVirtual(id, true);
    }
    if (visible && !same) {
      this.#shown.set(id, entry);
      host.connect(infoOf(entry));
    }
    // Something here followed this daemon: link again at once, so its processes resume.
    if (visible && this.#wanted.has(id) && !this.#virtuals.has(id)) this.#remote(id);
  }

  #localConnected(conn: Connection): void {
    this.#registry.localConnected(conn);
  }

  #localDisconnected(conn: Connection): void {
    this.#owner.forget(conn.info.id);
    this.#registry.localDisconnected(conn);
  }

  // --- front side: relayed links to daemons held elsewhere ---

  #remote(id: string): Connection | null {
    if (!this.#up || this.#closed || !this.#host) return null;
    const entry = this.#registry.entry(id);
    if (!entry || entry.node === this.name || !this.#registry.alive(entry.node)) return null;
    const existing = this.#virtuals.get(id);
    if (existing && !existing.conn.closed) return existing.conn;
    const subject = `${this.#prefix}.to.${entry.slot}.${this.name}`;
    const socket = new VirtualSocket((kind, payload) => {
      const h = headers();
      h.set("d", id);
      h.set("k", kind);
      this.#nc.publish(subject, payload, { headers: h });
    });
    this.#wanted.add(id);
    return this.#host.hub.attachVirtual(
      socket.asWebSocket(),
      infoOf(entry),
      entry.instance,
      this.slot,
      (conn) =>
        this.#virtuals.set(id, { conn, socket, node: entry.node, instance: entry.instance }),
    );
  }

  /**
   * This node's loop stalled past its key's life: the owners may have taken it for dead and reset the streams it
   * followed on their daemons (their handles here would wait on a link that no longer carries them). So every
   * relayed link ends, telling its owner (`bye`: what is still open there is reset, in order before anything new),
   * and is made again: handles re-attach from their offsets, nothing lost or doubled.
   */
  #relinkAll(): void {
    for (const id of [...this.#virtuals.keys()]) {
      this.#bye(id);
      this.#dropVirtual(id, true);
      this.#refresh(id);
    }
  }

  /** Tell a daemon's owner that this node let go of its relayed link (it resets the streams still open there). */
  #bye(id: string): void {
    const entry = this.#registry.entry(id);
    if (!entry) return;
    const h = headers();
    h.set("d", id);
    h.set("k", "bye");
    this.#nc.publish(`${this.#prefix}.to.${entry.slot}.${this.name}`, new Uint8Array(0), {
      headers: h,
    });
  }

  /** Time the relayed link's round trip (the owner answers `pong` with its own link's). */
  #ping(id: string, virtual: Virtual): void {
    const entry = this.#registry.entry(id);
    if (!entry) return;
    virtual.socket.pinged();
    const h = headers();
    h.set("d", id);
    h.set("k", "ping");
    this.#nc.publish(`${this.#prefix}.to.${entry.slot}.${this.name}`, new Uint8Array(0), {
      headers: h,
    });
  }

  /** End a relayed link; its handles wait for the daemon to appear again (`keep`: link again when it does). */
  #dropVirtual(id: string, keep: boolean): void {
    const virtual = this.#virtuals.get(id);
    if (!virtual) return;
    this.#virtuals.delete(id);
    if (!keep) this.#wanted.delete(id);
    virtual.socket.close();
    this.#host?.hub.detachVirtual(virtual.conn);
  }

  #fromOwner(id: string, kind: string, data: Uint8Array): void {
    const virtual = this.#virtuals.get(id);
    if (!virtual) return;
    const hub = this.#host!.hub;
    // `data` is a view of a NATS read that is read into again once this returns: a data frame is copied into a
    // buffer of its own (which the inbound stream hands to its reader, or frees once read), text is decoded.
    if (kind === "t") hub.deliver(virtual.conn, decoder.decode(data));
    else if (kind === "b") hub.deliver(virtual.conn, data.slice());
    else if (kind === "m") {
      try {
        decodeBatch(
          data,
          (message) =>
            hub.deliver(virtual.conn, typeof message === "string" ? message : message.slice()),
        );
      } catch (error) {
        log.warn("Dropped a bad relayed batch for daemon {id}: {message}", {
          id,
          message: (error as Error).message,
        });
      }
    } else if (kind === "pong") {
      const rtt = virtual.socket.ponged(virtual.conn.info.rttMs, Number(decoder.decode(data)));
      if (rtt !== undefined) virtual.conn.info.rttMs = rtt;
    } else if (kind === "gone") this.#dropVirtual(id, true);
  }

  /** Leave the cluster: relayed links end, this node's entries and slot are removed. */
  async close(): Promise<void> {
    if (this.#closed) return;
    for (const id of [...this.#virtuals.keys()]) {
      if (this.#up) this.#bye(id);
      this.#dropVirtual(id, false);
    }
    this.#owner.close();
    // Registry updates of the daemons the hub just dropped, then this node's keys.
    await this.#registry.settle();
    this.#closed = true;
    await this.#registry.stop();
    this.#writer.close();
    for (const sub of this.#subs) sub.unsubscribe();
    await this.#nc.close().catch(() => {});
    await Promise.allSettled([...this.#tasks]);
  }
}

/**
 * Make (or open) the registry's buckets, held in nats-server's memory: the registry is soft state, kept current
 * by the nodes (a node registers its daemons again whenever NATS comes back), so it need not be written to disk
 * (in a failover of 15,000 daemons the file store cost nats-server CPU the nodes needed). A bucket that exists
 * already (made by another node, or earlier with file storage) is used as it is: NATS does not change it.
 */
async function openBuckets(
  nc: NatsConnection,
  prefix: string,
  heartbeatMs: number,
): Promise<{ daemons: KV; nodes: KV }> {
  const kvm = new Kvm(nc);
  const open = (name: string, config: { history: number; ttl?: number }) =>
    kvm.create(name, { ...config, storage: "memory" as KvOptions["storage"] });
  const daemons = await open(`${prefix}_daemons`, { history: 1 });
  const nodes = await open(`${prefix}_nodes`, { history: 1, ttl: 3 * heartbeatMs });
  return { daemons, nodes };
}
