/**
 * The cluster's registry and node liveness (see server/CLUSTER.md): the `<prefix>_daemons` bucket of which node
 * holds which daemon, watched into a local cache, with the one-node duplicate policy across nodes; and the
 * `<prefix>_nodes` bucket, where every node re-puts its key each heartbeat (the bucket's `max_age` forgets a silent
 * node) and keeps its slot. The relay (cluster.ts) reads the cache and is told when a daemon's entry changes.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { KV, KvWatchEntry } from "@nats-io/kv";
import { CLOSE_CODES } from "@sandd/protocol/constants";
import type { Connection } from "../_connection.ts";
import type { Hub } from "../_hub.ts";
import { LoopStall } from "../_loop_stall.ts";
import { daemonKey, type Entry } from "./_registry_entry.ts";
import type { KvWriter } from "./_kv_writer.ts";

export { daemonKey, type Entry, infoOf } from "./_registry_entry.ts";

const log = getLogger(["sandd", "cluster"]);

/** What a node knows of another. */
interface NodeState {
  slot: number;
  /** When its last heartbeat arrived here (`Date.now()`). */
  seen: number;
}

const encoder = new TextEncoder();

/** Whether two byte arrays hold the same bytes. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Registry writes (claims, removals, a dead node's cleanup) in flight at once on one node. 15,000 daemons connecting
 * or failing over at once would otherwise be 15,000-30,000 JetStream requests at once: their replies time out and
 * the heartbeats wait behind them. Heartbeats are not counted.
 */
const MAX_WRITES = 64;
/** Attempts of one registry read or write that failed without an answer (a timeout under load). */
const READ_TRIES = 4;
/** Heartbeats a node's key lives in the nodes bucket (its `max_age`): silent that long, a node is gone. */
const BEATS_ALIVE = 3;
/**
 * This node's own beats lapsed this long (its loop stalled): other nodes may have found its key expired and
 * released what it followed on their daemons, so its relayed links start afresh. Less than BEATS_ALIVE: a key
 * expires by the NATS server's clock, and a put sent late here may land after that.
 */
const LAPSED_BEATS = BEATS_ALIVE - 0.5;

/** What the registry asks of the cluster node it belongs to. */
export interface RegistryHost {
  /** The server's hub, once the server exists. */
  hub(): Hub | null;
  /** Whether NATS is reachable now. */
  up(): boolean;
  /** Whether the node is closing. */
  closed(): boolean;
  /** Run a background task the node waits for when it closes. */
  task(promise: Promise<unknown>): void;
  /** A daemon's entry (or its holder's liveness) changed: bring events and relayed links in line. */
  changed(id: string): void;
  /** A node stopped (its key left the nodes bucket): release what it followed here. */
  nodeGone(slot: number): void;
  /** A heartbeat while NATS is reachable (the node times its relayed links then). */
  beat(): void;
  /**
   * This node's loop stalled so long that its key may have expired (its key is put again first): other nodes may
   * have taken it for dead and reset what it followed on their daemons, so its relayed links start afresh.
   */
  lapsed(): void;
}

/** The registry and liveness state of one cluster node. */
export class Registry {
  readonly #name: string;
  readonly #slot: number;
  readonly #heartbeatMs: number;
  readonly #daemons: KV;
  /** Writes to the daemons bucket (server/cluster/_kv_writer.ts). */
  readonly #writer: KvWriter;
  readonly #nodes: KV;
  readonly #host: RegistryHost;
  #timer: ReturnType<typeof setInterval> | undefined;
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
  /** This event loop's stalls (server/_loop_stall.ts): not counted as other nodes' silence. */
  readonly #stall: LoopStall;
  /** When the heartbeat last ran, and when it last put this node's key (`Date.now()`). */
  #lastBeat = 0;
  #lastPut = 0;
  /** Nodes whose key is being checked. */
  readonly #suspects: Set<string> = new Set();
  /** Revision of this node's registry entry of each local daemon. */
  readonly #claimed: Map<string, number> = new Map();
  /**
   * This node's own registry writes by key (the bytes and the entry they encode): the watch brings each back, and
   * its bytes are compared rather than parsed again.
   */
  readonly #mine: Map<string, { value: Uint8Array; entry: Entry }> = new Map();
  /** Registry writes per daemon, one at a time. */
  readonly #chains: Map<string, Promise<void>> = new Map();
  /** The daemon id of each registry key in the cache. */
  readonly #idOfKey: Map<string, string> = new Map();
  /** Cleanups of dead nodes' entries, waiting to see whether the node comes back. */
  readonly #cleanups: Set<ReturnType<typeof setTimeout>> = new Set();
  /** Registry writes in flight (at most MAX_WRITES), and those waiting for a turn. */
  #writing = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(
    name: string,
    slot: number,
    heartbeatMs: number,
    daemons: KV,
    writer: KvWriter,
    nodes: KV,
    host: RegistryHost,
  ) {
    this.#name = name;
    this.#slot = slot;
    this.#heartbeatMs = heartbeatMs;
    this.#daemons = daemons;
    this.#writer = writer;
    this.#nodes = nodes;
    this.#host = host;
    this.#stall = new LoopStall({ tickMs: heartbeatMs / 4, ticks: 64 * 4 });
  }

  /** The registry entry of a daemon, if any. */
  entry(id: string): Entry | undefined {
    return this.#entries.get(id)?.entry;
  }

  /** The ids of every daemon in the registry cache. */
  ids(): string[] {
    return [...this.#entries.keys()];
  }

  /** The slot of a node seen (alive, or taken for dead but not gone on purpose). */
  slotOf(node: string): number | undefined {
    return this.#slots.get(node);
  }

  /** Whether a node is this one or a live peer. */
  alive(node: string): boolean {
    return node === this.#name || this.#peers.has(node);
  }

  /** Daemons in the whole cluster by the node that holds them (alive nodes only). */
  daemonsByNode(): Map<string, number> {
    const out = new Map<string, number>();
    for (const { entry } of this.#entries.values()) {
      if (entry.node !== this.#name && !this.alive(entry.node)) continue;
      out.set(entry.node, (out.get(entry.node) ?? 0) + 1);
    }
    return out;
  }

  /** Start the watches and the heartbeat. */
  start(): void {
    this.#host.task(this.#watchNodes());
    this.#host.task(this.#watchDaemons());
    this.#lastBeat = this.#lastPut = Date.now();
    this.#timer = setInterval(() => this.#beat(), this.#heartbeatMs);
  }

  // --- liveness ---

  /**
   * Lag-aware (as the daemon heartbeat, server/_heartbeat.ts): how late this timer fires is this loop's own stall,
   * left out of other nodes' silence, so a node that was blocked does not even suspect the nodes whose beats it did
   * not read meanwhile (and a suspect is gone only once NATS, by its own clock, has forgotten its key). A stall of
   * this node's own beats that long may have let its key expire: it puts it again, then starts its relayed links
   * afresh (`lapsed`).
   */
  #beat(): void {
    if (this.#host.closed()) return;
    const now = Date.now();
    if (this.#lastBeat > 0) this.#stall.late(this.#lastBeat + this.#heartbeatMs, now);
    this.#lastBeat = now;
    if (this.#host.up()) {
      const sincePut = now - this.#lastPut;
      const lapsed = sincePut >= LAPSED_BEATS * this.#heartbeatMs;
      this.#lastPut = now;
      const put = this.#nodes.put(`node.${this.#name}`, JSON.stringify({ slot: this.#slot }));
      this.#host.task(Promise.all([put, this.#keepSlot()]));
      if (lapsed) {
        log.warn(
          "This node's heartbeats lapsed for {ms} ms (its event loop stalled): its relayed links start afresh",
          { ms: sincePut },
        );
        this.#host.task(put.then(() => {
          if (!this.#host.closed() && this.#host.up()) this.#host.lapsed();
        }));
      }
      const bound = BEATS_ALIVE * this.#heartbeatMs;
      for (const [name, state] of [...this.#peers]) {
        const silent = now - state.seen;
        if (silent >= bound && silent - this.#stall.since(state.seen, now) >= bound) {
          this.#host.task(this.#suspect(name, state));
        }
      }
      this.#sweep();
      this.#host.beat();
    }
  }

  /** Renew this node's slot key, never overwriting another node's (after an outage longer than its TTL). */
  async #keepSlot(): Promise<void> {
    const key = `slot.${this.#slot}`;
    const current = await this.#nodes.get(key);
    if (!current || current.operation !== "PUT") {
      await this.#nodes.create(key, this.#name).catch(() => {});
      return;
    }
    const holder = current.string();
    if (holder === this.#name) {
      await this.#nodes.update(key, this.#name, current.revision).catch(() => {});
    } else if (!this.#slotLost) {
      this.#slotLost = true;
      log.error(
        "Cluster slot {slot} of this node was taken by node {holder} while NATS was away; restart this node",
        { slot: this.#slot, holder },
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

  async #watchNodes(): Promise<void> {
    const watch = await this.#retry(() => this.#nodes.watch({ key: "node.*" }));
    this.#stopNodes?.();
    this.#stopNodes = () => watch.stop();
    for await (const e of watch) this.#onNode(e);
  }

  #onNode(e: KvWatchEntry): void {
    const name = e.key.slice("node.".length);
    if (name === this.#name) return;
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
      for (const id of this.#entries.keys()) this.#host.changed(id);
    }
  }

  /**
   * A node stopped: forget its daemons, release what it followed here. Their entries are removed by one node only
   * (the live one with the lowest slot), and only three heartbeats later if the node is still gone then (a node
   * whose heartbeats were only late under load comes back with its daemons), each only if unchanged since (by
   * revision: most are taken over by their daemons' new nodes meanwhile), paced like every registry write.
   */
  #nodeGone(name: string, slot: number): void {
    if (!this.#peers.delete(name)) return;
    log.warn("Cluster node {name} (slot {slot}) is gone", { name, slot });
    const cleaner = [...this.#peers.values()].every((peer) => peer.slot > this.#slot);
    const stale: [string, number][] = [];
    for (const [id, { entry, revision }] of [...this.#entries]) {
      if (entry.node !== name) continue;
      this.#host.changed(id);
      stale.push([id, revision]);
    }
    this.#host.nodeGone(slot);
    if (!cleaner || stale.length === 0) return;
    const timer = setTimeout(() => {
      this.#cleanups.delete(timer);
      if (this.#peers.has(name) || !this.#host.up() || this.#host.closed()) return;
      this.#host.task(this.#cleanUp(name, stale));
    }, 3 * this.#heartbeatMs);
    this.#cleanups.add(timer);
  }

  /**
   * Remove a dead node's entries that were not taken over, unless its key is back in the bucket: a node starved of
   * CPU (or cut from NATS) for a few heartbeats is alive again, and removing its thousands of entries would only make
   * it write them all again.
   */
  async #cleanUp(name: string, stale: [string, number][]): Promise<void> {
    const key = await this.#nodes.get(`node.${name}`).catch(() => null);
    if (key && key.operation === "PUT") {
      log.info("Cluster node {name} is back; its registry entries stay", { name });
      return;
    }
    if (this.#peers.has(name) || !this.#host.up() || this.#host.closed()) return;
    for (const [id, revision] of stale) {
      this.#host.task(
        this.#gated(async () => {
          if (!this.#host.up() || this.#entries.get(id)?.revision !== revision) return;
          await this.#writer.delete(daemonKey(id), revision);
        }).catch(() => {}),
      );
    }
  }

  /** Run one registry write when fewer than MAX_WRITES are in flight (in the order asked). */
  async #gated<T>(work: () => Promise<T>): Promise<T> {
    if (this.#writing < MAX_WRITES) this.#writing++;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve)); // handed a turn
    try {
      return await work();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#writing--;
    }
  }

  /** NATS is back: beat, register this node's daemons again, watch both buckets afresh. */
  reconnected(): void {
    const now = Date.now();
    this.#lastPut = now;
    for (const state of this.#peers.values()) state.seen = now;
    this.#beat();
    const hub = this.#host.hub();
    if (hub) {
      for (const conn of hub.connections.values()) {
        this.#serial(conn.info.id, () => this.#claim(conn));
      }
    }
    for (const id of this.#entries.keys()) this.#host.changed(id);
    this.#host.task(this.#rewatch());
  }

  /**
   * Bring the registry in line with the links held here, each heartbeat: a daemon held here without a registered
   * entry (its claim failed: requests timed out under load, or the entry kept changing) is claimed again, and an
   * entry of this node for a daemon no longer held here (its removal failed) is removed, by revision. Daemons
   * with a registry write under way are left to it. Without this, a node starved of CPU for a while (its writes
   * timing out) would keep daemons connected yet missing from the registry, or listed after they left. A daemon
   * another live node holds is not taken from it here (that link is the newer one, or this is a duplicate).
   */
  #sweep(): void {
    const hub = this.#host.hub();
    if (!hub) return;
    for (const conn of hub.connections.values()) {
      const id = conn.info.id;
      if (conn.closed || this.#claimed.has(id) || this.#chains.has(id)) continue;
      // Held by another live node: its link is newer, or a duplicate it was given first (left to that node).
      const other = this.#entries.get(id)?.entry;
      if (other && other.node !== this.#name && this.alive(other.node)) continue;
      this.#serial(id, () => this.#claim(conn));
    }
    for (const [id, { entry, revision }] of this.#entries) {
      if (entry.node !== this.#name || this.#chains.has(id) || hub.local(id)) continue;
      this.#serial(id, async () => {
        if (!this.#host.up() || hub.local(id) || this.#entries.get(id)?.revision !== revision) {
          return;
        }
        await this.#writer.delete(daemonKey(id), revision).catch(() => {
          // changed meanwhile (taken over elsewhere): the watch brings the new entry
        });
      });
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
        if (this.#host.closed() || attempt >= 40) throw error;
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
    this.#mine.clear(); // echoes lost with the old watch: the new one is parsed
    const generation = ++this.#generation;
    this.#host.task(this.#watchNodes());
    this.#host.task(this.#watchDaemons());
    const keys = new Set<string>();
    for await (const key of await this.#retry(() => this.#daemons.keys("d.>"))) keys.add(key);
    for (const [id, known] of [...this.#entries]) {
      if (known.generation < generation && !keys.has(daemonKey(id))) {
        this.#forget(id);
        this.#host.changed(id);
      }
    }
  }

  /** Drop a daemon from the cache. */
  #forget(id: string): void {
    this.#entries.delete(id);
    this.#idOfKey.delete(daemonKey(id));
  }

  #onEntry(e: KvWatchEntry): void {
    // This node's write of the key was overtaken (or is being delivered now, below): forget it either way.
    const mine = this.#mine.get(e.key);
    if (mine) this.#mine.delete(e.key);
    if (e.operation !== "PUT") {
      const id = this.#idOfKey.get(e.key);
      const known = id === undefined ? undefined : this.#entries.get(id);
      if (id === undefined || !known) return;
      this.#forget(id);
      this.#host.changed(id);
      // Not in the registry, yet held here: register it again (someone cleaned it up).
      const conn = this.#host.hub()?.local(id);
      if (conn && known.entry.node === this.#name && this.#claimed.has(id)) {
        this.#serial(id, () => this.#claim(conn));
      }
      return;
    }
    let entry: Entry;
    if (mine && sameBytes(mine.value, e.value)) {
      entry = mine.entry;
    } else {
      try {
        entry = e.json() as Entry;
      } catch {
        return;
      }
    }
    if (typeof entry?.id !== "string" || daemonKey(entry.id) !== e.key) return;
    this.#entries.set(entry.id, { entry, revision: e.revision, generation: this.#generation });
    this.#idOfKey.set(e.key, entry.id);
    const hub = this.#host.hub();
    const local = hub?.local(entry.id);
    const claimed = this.#claimed.get(entry.id);
    if (local && entry.node !== this.#name && claimed !== undefined && e.revision > claimed) {
      // Another node took this daemon over (the same daemon reconnected there): the newer link wins.
      log.info("Daemon {id} moved to node {node}; closing its link here", {
        id: entry.id,
        node: entry.node,
      });
      this.#claimed.delete(entry.id);
      hub!.drop(local, CLOSE_CODES.REPLACED, "replaced by a newer connection of the same daemon");
    }
    this.#host.changed(entry.id);
  }

  /** Run registry writes for one daemon one after another (each paced with every other write). */
  #serial(id: string, work: () => Promise<void>): void {
    const next = (this.#chains.get(id) ?? Promise.resolve()).then(() => this.#gated(work)).catch(
      (error) => {
        if (!this.#host.closed()) {
          log.warn("Cluster registry update of {id} failed: {message}", {
            id,
            message: String(error),
          });
        }
      },
    );
    this.#chains.set(id, next);
    this.#host.task(next.finally(() => {
      if (this.#chains.get(id) === next) this.#chains.delete(id);
    }));
  }

  /** A daemon connected here: register it. */
  localConnected(conn: Connection): void {
    const id = conn.info.id;
    this.#claimed.delete(id);
    this.#host.changed(id);
    this.#serial(id, () => this.#claim(conn));
  }

  /** A daemon held here dropped: remove its entry (only if still this link's). */
  localDisconnected(conn: Connection): void {
    const id = conn.info.id;
    const hub = this.#host.hub();
    if (hub?.local(id)) return; // replaced here by a newer link of the same daemon
    this.#claimed.delete(id);
    this.#host.changed(id);
    if (this.#host.closed()) return;
    this.#serial(id, async () => {
      if (!this.#host.up() || hub?.local(id)) return;
      const current = await this.#read(daemonKey(id));
      if (!current || current.operation !== "PUT") return;
      const entry = current.json() as Entry;
      if (entry.node !== this.#name || entry.instance !== conn.instance) return;
      await this.#writer.delete(daemonKey(id), current.revision).catch(
        async (error) => {
          // Changed since the read: fine when it is no longer this link's (taken over elsewhere); otherwise
          // the failure is reported, and the next sweep removes the entry.
          const now = await this.#read(daemonKey(id)).catch(() => null);
          if (!now || now.operation !== "PUT") return;
          const held = now.json() as Entry;
          if (held.node === this.#name && held.instance === conn.instance) throw error;
        },
      );
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
      node: this.#name,
      slot: this.#slot,
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
      if (conn.closed || !this.#host.up()) return;
      // First from the cache (one write when it is current: a new daemon, or one taking over its entry from a
      // dead node); after a failed write, or before refusing, from the bucket itself.
      const cached = attempt === 0 ? this.#entries.get(id) : undefined;
      let other: Entry | null;
      let previous: number;
      if (attempt === 0) {
        other = cached?.entry ?? null;
        previous = cached?.revision ?? 0;
      } else {
        const current = await this.#read(key);
        other = current && current.operation === "PUT" ? current.json() as Entry : null;
        previous = current?.revision ?? 0;
      }
      let revision: number;
      try {
        if (other) {
          if (
            other.node !== this.#name && this.alive(other.node) &&
            (other.instance !== conn.instance || other.identity !== info.identity)
          ) {
            if (attempt === 0) continue; // the cache may be behind: refuse only on the bucket's word
            log.warn("Refused daemon id {id}: node {node} holds another daemon with it", {
              id,
              node: other.node,
            });
            this.#host.hub()?.drop(
              conn,
              CLOSE_CODES.ID_IN_USE,
              `Daemon id '${id}' is already connected`,
            );
            return;
          }
        }
        // `previous`: the cached revision (0 when none: a key with a delete marker then loses the compare-and-set,
        // and the next attempt writes on the marker's revision, read from the bucket).
        this.#mine.set(key, { value, entry });
        revision = await this.#writer.put(key, value, previous);
      } catch {
        if (this.#mine.get(key)?.value === value) this.#mine.delete(key);
        continue; // someone wrote in between: decide again
      }
      if (conn.closed) {
        await this.#writer.delete(key, revision).catch(() => {});
        return;
      }
      this.#claimed.set(id, revision);
      return;
    }
    throw new Error(`Could not register daemon '${id}': the registry entry kept changing`);
  }

  /** Read a registry entry, again after a failure without an answer (a timeout under load). */
  async #read(key: string): ReturnType<KV["get"]> {
    for (let attempt = 1;; attempt++) {
      try {
        return await this.#daemons.get(key);
      } catch (error) {
        if (this.#host.closed() || !this.#host.up() || attempt >= READ_TRIES) throw error;
      }
    }
  }

  /** Wait for the registry writes under way (the daemons a closing hub just dropped). */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.#chains.values()]);
  }

  /** Stop beating and watching; remove this node's keys when NATS is reachable (leaving on purpose). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    for (const timer of this.#cleanups) clearTimeout(timer);
    this.#cleanups.clear();
    if (this.#host.up()) {
      await Promise.allSettled([
        this.#nodes.delete(`node.${this.#name}`),
        this.#nodes.delete(`slot.${this.#slot}`),
      ]);
    }
    this.#stopNodes?.();
    this.#stopDaemons?.();
  }
}
