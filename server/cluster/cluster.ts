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
 * Over ~600 lines: the registry cache, node liveness and the relayed links all read and write one node state
 * (the NATS connection, the buckets, the peers, the entries), kept in one class; the owner side of the relay is
 * split out (`_owner_relay.ts`), as are the id checks and the virtual socket.
 *
 * @module
 */

import { hostname } from "node:os";
import { getLogger } from "@logtape/logtape";
import { connect, headers, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { type KV, Kvm, type KvWatchEntry } from "@nats-io/kv";
import { CLOSE_CODES } from "@sandd/protocol/constants";
import type { Connection, DaemonInfo } from "../_connection.ts";
import type { Hub, HubRelay } from "../_hub.ts";
import { OwnerRelay } from "./_owner_relay.ts";
import { VirtualSocket } from "./_virtual_socket.ts";
import { decodeBatch } from "./_relay_batch.ts";
import type { ClusterOptions } from "./options.ts";

const log = getLogger(["sandd", "cluster"]);

/** A registry entry: the daemon's description and who holds it. */
interface Entry {
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

/** What a node knows of another. */
interface NodeState {
  slot: number;
  /** When its last heartbeat arrived here (`Date.now()`). */
  seen: number;
}

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

/** A daemon id as a NATS key: characters other than letters, digits and `-` as `_xx`. */
export function daemonKey(id: string): string {
  return "d." +
    id.replace(/[^A-Za-z0-9-]/g, (c) => `_${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** The default node name: `hostname-pid-random`, reduced to the characters NATS subjects allow. */
function defaultName(): string {
  const host = hostname().replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 40) || "node";
  return `${host}-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
}

function infoOf(entry: Entry): DaemonInfo {
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

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class Cluster {
  /** This node's name. */
  readonly name: string;
  /** This node's slot. */
  readonly slot: number;
  readonly #nc: NatsConnection;
  readonly #prefix: string;
  readonly #heartbeatMs: number;
  readonly #daemons: KV;
  readonly #nodes: KV;
  #host: ClusterHost | null = null;
  #up = true;
  #closed = false;
  readonly #timers: ReturnType<typeof setInterval>[] = [];
  readonly #subs: Subscription[] = [];
  readonly #tasks: Set<Promise<unknown>> = new Set();
  /** The registry, by daemon id, with each entry's revision (and the NATS connection generation it came in). */
  readonly #entries: Map<string, { entry: Entry; revision: number; generation: number }> =
    new Map();
  /** Counts NATS reconnects. */
  #generation = 0;
  /** Another node holds this node's slot now (logged once). */
  #slotLost = false;
  #stopNodes: (() => void) | null = null;
  #stopDaemons: (() => void) | null = null;
  /** Other nodes, by name. */
  readonly #peers: Map<string, NodeState> = new Map();
  /**
   * The slot of every node seen, kept when it is taken for dead (a node that still sends is alive: its messages
   * are not refused while its next heartbeat is on the way); dropped when it leaves on purpose (its key deleted).
   */
  readonly #slots: Map<string, number> = new Map();
  /** Nodes whose key is being checked. */
  readonly #suspects: Set<string> = new Set();
  /** Daemons held elsewhere that this node announced (`connect`), by id. */
  readonly #shown: Map<string, Entry> = new Map();
  readonly #virtuals: Map<string, Virtual> = new Map();
  /** Daemons whose relayed link should be made again when they appear (something followed them here). */
  readonly #wanted: Set<string> = new Set();
  /** Revision of this node's registry entry of each local daemon. */
  readonly #claimed: Map<string, number> = new Map();
  /** Registry writes per daemon, one at a time. */
  readonly #chains: Map<string, Promise<void>> = new Map();
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
    this.name = name;
    this.slot = slot;
    this.#prefix = prefix;
    this.#heartbeatMs = heartbeatMs;
    this.#daemons = daemons;
    this.#nodes = nodes;
    this.#owner = new OwnerRelay({
      nc,
      prefix,
      slot,
      slotOf: (node) => this.#slots.get(node),
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
    const nc = await connect({
      servers: options.servers,
      name: `sandd-${name}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      ...(options.token !== undefined ? { token: options.token } : {}),
      ...(options.user !== undefined ? { user: options.user, pass: options.pass } : {}),
      ...(options.tls !== undefined ? { tls: { ...options.tls } } : {}),
    });
    try {
      const kvm = new Kvm(nc);
      const daemons = await kvm.create(`${prefix}_daemons`, { history: 1 });
      const nodes = await kvm.create(`${prefix}_nodes`, { history: 1, ttl: 3 * heartbeatMs });
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
    const out = new Map<string, number>();
    for (const { entry } of this.#entries.values()) {
      if (entry.node !== this.name && !this.#alive(entry.node)) continue;
      out.set(entry.node, (out.get(entry.node) ?? 0) + 1);
    }
    return out;
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
    this.#task(this.#watchNodes());
    this.#task(this.#watchDaemons());
    this.#task(this.#watchStatus());
    this.#timers.push(setInterval(() => this.#beat(), this.#heartbeatMs));
  }

  #task(promise: Promise<unknown>): void {
    const p = promise.catch((error) => {
      if (!this.#closed) log.warn("Cluster task failed: {message}", { message: String(error) });
    }).finally(() => this.#tasks.delete(p));
    this.#tasks.add(p);
  }

  // --- liveness ---

  #beat(): void {
    if (this.#closed) return;
    if (this.#up) {
      this.#task(Promise.all([
        this.#nodes.put(`node.${this.name}`, JSON.stringify({ slot: this.slot })),
        this.#keepSlot(),
      ]));
      // The round trip of relayed links (it sizes new streams' windows): once, then while they follow something.
      // Timed only while quiet: behind a window of data in NATS a ping would time the queue (and grow the next
      // windows with it), and a link's first moments (its owner just answered its first requests) are noisy.
      const quiet = Date.now() - this.#heartbeatMs;
      for (const [id, virtual] of this.#virtuals) {
        const { conn } = virtual;
        const wanted = conn.routes.size > 0 || conn.info.rttMs === undefined;
        if (wanted && conn.lastSeen <= quiet && conn.lastSent <= quiet) this.#ping(id, virtual);
      }
      const deadline = Date.now() - 3 * this.#heartbeatMs;
      for (const [name, state] of [...this.#peers]) {
        if (state.seen < deadline) this.#task(this.#suspect(name, state));
      }
    }
  }

  /** Renew this node's slot key, never overwriting another node's (after an outage longer than its TTL). */
  async #keepSlot(): Promise<void> {
    const key = `slot.${this.slot}`;
    const current = await this.#nodes.get(key);
    if (!current || current.operation !== "PUT") {
      await this.#nodes.create(key, this.name).catch(() => {});
      return;
    }
    const holder = current.string();
    if (holder === this.name) {
      await this.#nodes.update(key, this.name, current.revision).catch(() => {});
    } else if (!this.#slotLost) {
      this.#slotLost = true;
      log.error(
        "Cluster slot {slot} of this node was taken by node {holder} while NATS was away; restart this node",
        { slot: this.slot, holder },
      );
    }
  }

  /**
   * A node's heartbeat is late here (this event loop may be the slow one): it is gone only once its key left the
   * bucket, which NATS expires by the server's clock three heartbeats after its last put.
   */
  async #suspect(name: string, state: NodeState): Promise<void> {
    if (this.#suspects.has(name)) return;
    this.#suspects.add(name);
    try {
      const entry = await this.#nodes.get(`node.${name}`);
      if (this.#peers.get(name) !== state) return;
      if (entry && entry.operation === "PUT") state.seen = Date.now();
      else this.#nodeGone(name, state.slot);
    } finally {
      this.#suspects.delete(name);
    }
  }

  #alive(node: string): boolean {
    return node === this.name || this.#peers.has(node);
  }

  async #watchNodes(): Promise<void> {
    const watch = await this.#retry(() => this.#nodes.watch({ key: "node.*" }));
    this.#stopNodes?.();
    this.#stopNodes = () => watch.stop();
    for await (const e of watch) this.#onNode(e);
  }

  #onNode(e: KvWatchEntry): void {
    const name = e.key.slice("node.".length);
    if (name === this.name) return;
    if (e.operation !== "PUT") {
      this.#slots.delete(name);
      const state = this.#peers.get(name);
      if (state) this.#nodeGone(name, state.slot);
      return;
    }
    let slot: number;
    try {
      slot = (e.json() as { slot: number }).slot;
    } catch {
      return;
    }
    const known = this.#peers.get(name);
    if (known && known.slot === slot) known.seen = Date.now();
    else this.#peers.set(name, { slot, seen: Date.now() });
    this.#slots.set(name, slot);
    if (!known) {
      log.info("Cluster node {name} (slot {slot}) is up", { name, slot });
      for (const id of this.#entries.keys()) this.#refresh(id);
    }
  }

  /** A node stopped: forget its daemons (and clean their entries), release what it followed here. */
  #nodeGone(name: string, slot: number): void {
    if (!this.#peers.delete(name)) return;
    log.info("Cluster node {name} (slot {slot}) is gone", { name, slot });
    for (const [id, { entry, revision }] of [...this.#entries]) {
      if (entry.node !== name) continue;
      this.#refresh(id);
      if (this.#up) {
        this.#task(this.#daemons.delete(daemonKey(id), { previousSeq: revision }).catch(() => {}));
      }
    }
    this.#owner.nodeGone(slot);
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
        const now = Date.now();
        for (const state of this.#peers.values()) state.seen = now;
        this.#beat();
        const hub = this.#host?.hub;
        if (hub) {
          for (const conn of hub.connections.values()) {
            this.#serial(conn.info.id, () => this.#claim(conn));
          }
        }
        for (const id of this.#entries.keys()) this.#refresh(id);
        this.#task(this.#rewatch());
      }
    }
  }

  // --- the registry ---

  async #watchDaemons(): Promise<void> {
    const watch = await this.#retry(() => this.#daemons.watch({ key: "d.>" }));
    this.#stopDaemons?.();
    this.#stopDaemons = () => watch.stop();
    for await (const e of watch) this.#onEntry(e);
  }

  /** Try again (JetStream may still be starting on a server that just came back). */
  async #retry<T>(work: () => Promise<T>): Promise<T> {
    for (let attempt = 1;; attempt++) {
      try {
        return await work();
      } catch (error) {
        if (this.#closed || attempt >= 40) throw error;
        // close() waits for this task, so the timer never outlives the cluster.
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
  }

  /**
   * NATS is back: watch both buckets afresh (a watch may not survive a restarted server), then forget the
   * entries deleted meanwhile (known before, absent from the bucket now and not delivered again since).
   */
  async #rewatch(): Promise<void> {
    const generation = ++this.#generation;
    this.#task(this.#watchNodes());
    this.#task(this.#watchDaemons());
    const keys = new Set<string>();
    for await (const key of await this.#retry(() => this.#daemons.keys("d.>"))) keys.add(key);
    for (const [id, known] of [...this.#entries]) {
      if (known.generation < generation && !keys.has(daemonKey(id))) {
        this.#entries.delete(id);
        this.#refresh(id);
      }
    }
  }

  #onEntry(e: KvWatchEntry): void {
    if (e.operation !== "PUT") {
      for (const [id, known] of this.#entries) {
        if (daemonKey(id) === e.key) {
          this.#entries.delete(id);
          this.#refresh(id);
          // Not in the registry, yet held here: register it again (someone cleaned it up).
          const conn = this.#host?.hub.local(id);
          if (conn && known.entry.node === this.name && this.#claimed.has(id)) {
            this.#serial(id, () => this.#claim(conn));
          }
          break;
        }
      }
      return;
    }
    let entry: Entry;
    try {
      entry = e.json() as Entry;
    } catch {
      return;
    }
    if (typeof entry?.id !== "string" || daemonKey(entry.id) !== e.key) return;
    this.#entries.set(entry.id, { entry, revision: e.revision, generation: this.#generation });
    const local = this.#host?.hub.local(entry.id);
    const claimed = this.#claimed.get(entry.id);
    if (local && entry.node !== this.name && claimed !== undefined && e.revision > claimed) {
      // Another node took this daemon over (the same daemon reconnected there): the newer link wins.
      log.info("Daemon {id} moved to node {node}; closing its link here", {
        id: entry.id,
        node: entry.node,
      });
      this.#claimed.delete(entry.id);
      this.#host!.hub.drop(
        local,
        CLOSE_CODES.REPLACED,
        "replaced by a newer connection of the same daemon",
      );
    }
    this.#refresh(entry.id);
  }

  /** Bring events and relayed links in line with the registry for one daemon. */
  #refresh(id: string): void {
    const host = this.#host;
    if (!host) return;
    const entry = this.#entries.get(id)?.entry;
    const visible = entry !== undefined && entry.node !== this.name &&
      this.#alive(entry.node) && host.hub.local(id) === null;
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

  /** Run registry writes for one daemon one after another. */
  #serial(id: string, work: () => Promise<void>): void {
    const next = (this.#chains.get(id) ?? Promise.resolve()).then(work).catch((error) => {
      if (!this.#closed) {
        log.warn("Cluster registry update of {id} failed: {message}", {
          id,
          message: String(error),
        });
      }
    });
    this.#chains.set(id, next);
    this.#task(next.finally(() => {
      if (this.#chains.get(id) === next) this.#chains.delete(id);
    }));
  }

  #localConnected(conn: Connection): void {
    const id = conn.info.id;
    this.#claimed.delete(id);
    this.#refresh(id);
    this.#serial(id, () => this.#claim(conn));
  }

  #localDisconnected(conn: Connection): void {
    const id = conn.info.id;
    this.#owner.forget(id);
    const hub = this.#host?.hub;
    if (hub?.local(id)) return; // replaced here by a newer link of the same daemon
    this.#claimed.delete(id);
    this.#refresh(id);
    if (this.#closed) return;
    this.#serial(id, async () => {
      if (!this.#up || hub?.local(id)) return;
      const current = await this.#daemons.get(daemonKey(id));
      if (!current || current.operation !== "PUT") return;
      const entry = current.json() as Entry;
      if (entry.node !== this.name || entry.instance !== conn.instance) return;
      await this.#daemons.delete(daemonKey(id), { previousSeq: current.revision });
    });
  }

  /**
   * Register a daemon held here, with the one-node policy across nodes: an entry of another live node for the
   * same daemon instance and identity is taken over (that node closes its older link); any other holder refuses
   * this link with `ID_IN_USE`. The compare-and-set on the entry's revision decides a race.
   */
  async #claim(conn: Connection): Promise<void> {
    const id = conn.info.id;
    const key = daemonKey(id);
    const info = conn.info;
    const entry: Entry = {
      id,
      node: this.name,
      slot: this.slot,
      instance: conn.instance,
      labels: info.labels,
      hostname: info.hostname,
      platform: info.platform,
      arch: info.arch,
      version: info.version,
      pid: info.pid,
      connectedAt: info.connectedAt.toISOString(),
      remoteAddress: info.remoteAddress,
      identity: info.identity,
    };
    const value = encoder.encode(JSON.stringify(entry));
    for (let attempt = 0; attempt < 8; attempt++) {
      if (conn.closed || !this.#up) return;
      const current = await this.#daemons.get(key);
      let revision: number;
      try {
        if (!current || current.operation !== "PUT") {
          revision = await this.#daemons.create(key, value);
        } else {
          const other = current.json() as Entry;
          if (
            other.node !== this.name && this.#alive(other.node) &&
            (other.instance !== conn.instance || other.identity !== info.identity)
          ) {
            log.warn("Refused daemon id {id}: node {node} holds another daemon with it", {
              id,
              node: other.node,
            });
            this.#host?.hub.drop(
              conn,
              CLOSE_CODES.ID_IN_USE,
              `Daemon id '${id}' is already connected`,
            );
            return;
          }
          revision = await this.#daemons.update(key, value, current.revision);
        }
      } catch {
        continue; // someone wrote in between: decide again
      }
      if (conn.closed) {
        await this.#daemons.delete(key, { previousSeq: revision }).catch(() => {});
        return;
      }
      this.#claimed.set(id, revision);
      return;
    }
    throw new Error(`Could not register daemon '${id}': the registry entry kept changing`);
  }

  // --- front side: relayed links to daemons held elsewhere ---

  #remote(id: string): Connection | null {
    if (!this.#up || this.#closed || !this.#host) return null;
    const entry = this.#entries.get(id)?.entry;
    if (!entry || entry.node === this.name || !this.#alive(entry.node)) return null;
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

  /** Time the relayed link's round trip (the owner answers `pong` with its own link's). */
  #ping(id: string, virtual: Virtual): void {
    const entry = this.#entries.get(id)?.entry;
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
    if (kind === "t") hub.deliver(virtual.conn, decoder.decode(data));
    else if (kind === "b") hub.deliver(virtual.conn, data);
    else if (kind === "m") {
      try {
        decodeBatch(data, (message) => hub.deliver(virtual.conn, message));
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
      const virtual = this.#virtuals.get(id)!;
      if (this.#up) {
        const entry = this.#entries.get(id)?.entry;
        if (entry) {
          const h = headers();
          h.set("d", id);
          h.set("k", "bye");
          this.#nc.publish(`${this.#prefix}.to.${entry.slot}.${this.name}`, new Uint8Array(0), {
            headers: h,
          });
        }
      }
      this.#dropVirtual(id, false);
      void virtual;
    }
    this.#owner.close();
    // Registry updates of the daemons the hub just dropped, then this node's keys.
    await Promise.allSettled([...this.#chains.values()]);
    this.#closed = true;
    for (const timer of this.#timers) clearInterval(timer);
    if (this.#up) {
      await Promise.allSettled([
        this.#nodes.delete(`node.${this.name}`),
        this.#nodes.delete(`slot.${this.slot}`),
      ]);
    }
    this.#stopNodes?.();
    this.#stopDaemons?.();
    for (const sub of this.#subs) sub.unsubscribe();
    await this.#nc.close().catch(() => {});
    await Promise.allSettled([...this.#tasks]);
  }
}
