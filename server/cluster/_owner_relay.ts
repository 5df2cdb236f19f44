// The owner side of the cluster relay: other nodes' protocol messages to the daemons held here (each id checked
// to be in the sender's slot), what those daemons send about other slots' ids back to those nodes, and the
// release of what a node held when it goes away.
import { getLogger } from "@logtape/logtape";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import type { Connection } from "../_connection.ts";
import { checkRelayed } from "./_ids.ts";
import { batchBytesFor, decodeBatch, RelayBatch } from "./_relay_batch.ts";

const log = getLogger(["sandd", "cluster"]);

/** Most stream ids remembered per node and daemon for releasing them when that node dies. */
const MAX_TRACKED_SIDS = 65_536;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What the relay needs from its cluster node. */
export interface OwnerRelayHost {
  nc: NatsConnection;
  prefix: string;
  /** This node's slot. */
  slot: number;
  /** The slot of a live node, by name. */
  slotOf(node: string): number | undefined;
  /** The link of a daemon held here. */
  local(id: string): Connection | null;
}

export class OwnerRelay {
  readonly #host: OwnerRelayHost;
  /** What each other node's slot opened on each local daemon (stream ids), by daemon id. */
  readonly #fronts: Map<string, Map<number, Set<number>>> = new Map();
  /** What each local daemon sends to each other node, batched; by `<slot> <daemon id>`. */
  readonly #batches: Map<string, RelayBatch> = new Map();
  #closed = false;
  /** Relayed messages refused (ids outside the sender's slot, or not valid). */
  refused = 0;

  constructor(host: OwnerRelayHost) {
    this.#host = host;
  }

  /** A message another node published to a daemon held here (`<prefix>.to.<slot>.<node>`). */
  fromFront(subject: string, id: string, kind: string, data: Uint8Array): void {
    const node = subject.slice(subject.lastIndexOf(".") + 1);
    const slot = this.#host.slotOf(node);
    if (slot === undefined || slot === this.#host.slot) {
      this.refused++;
      log.warn("Refused a relayed message from unknown cluster node {node}", { node });
      return;
    }
    if (kind === "bye") {
      this.#release(id, slot);
      return;
    }
    const conn = this.#host.local(id);
    if (kind === "ping" && conn && !conn.closed) {
      // The relayed link's round trip: NATS both ways (timed by the sender) plus this node's link to the daemon.
      const h = headers();
      h.set("d", id);
      h.set("k", "pong");
      this.#host.nc.publish(
        `${this.#host.prefix}.back.${slot}`,
        encoder.encode(String(conn.info.rttMs ?? 0)),
        { headers: h },
      );
      return;
    }
    if (!conn || conn.closed) {
      const h = headers();
      h.set("d", id);
      h.set("k", "gone");
      this.#host.nc.publish(`${this.#host.prefix}.back.${slot}`, new Uint8Array(0), {
        headers: h,
      });
      return;
    }
    if (kind === "m") {
      try {
        decodeBatch(data, (message) => this.#one(node, slot, id, conn, message));
      } catch (error) {
        this.refused++;
        log.warn("Refused a relayed batch from node {node} for daemon {id}: {message}", {
          node,
          id,
          message: (error as Error).message,
        });
      }
      return;
    }
    this.#one(node, slot, id, conn, kind === "t" ? decoder.decode(data) : data);
  }

  /** One message of a node for a local daemon: checked, followed, sent. */
  #one(
    node: string,
    slot: number,
    id: string,
    conn: Connection,
    payload: string | Uint8Array,
  ): void {
    let checked;
    try {
      checked = checkRelayed(payload, slot);
    } catch (error) {
      this.refused++;
      log.warn("Refused a relayed message from node {node} for daemon {id}: {message}", {
        node,
        id,
        message: (error as Error).message,
      });
      return;
    }
    if (checked.op !== undefined || checked.ends) {
      // Requests make the node a follower of the daemon's exits; their streams are released if it dies.
      let fronts = this.#fronts.get(id);
      if (!fronts) this.#fronts.set(id, fronts = new Map());
      let sids = fronts.get(slot);
      if (!sids) fronts.set(slot, sids = new Set());
      if (checked.ends) sids.delete(checked.sids[0]!);
      else {
        for (const sid of checked.sids) sids.add(sid);
        if (sids.size > MAX_TRACKED_SIDS) sids.delete(sids.values().next().value!);
      }
    }
    if (conn.socket.readyState === WebSocket.OPEN) conn.socket.send(payload);
  }

  /** A message of a local daemon about another slot's ids: published to that node as it is. */
  toFront(id: string, slot: number, data: string | Uint8Array): void {
    // Published even while NATS looks down here: the client holds it until it is back, and the other node may
    // be back first (an answer dropped here would leave its request waiting for its whole deadline).
    if (this.#closed) return;
    const key = `${slot} ${id}`;
    let batch = this.#batches.get(key);
    if (!batch) {
      const subject = `${this.#host.prefix}.back.${slot}`;
      batch = new RelayBatch({
        maxBytes: batchBytesFor(this.#host.nc.info?.max_payload),
        // The daemon's messages for other nodes are the relay's alone (server/_hub.ts: a whole WebSocket message).
        releaseBinary: true,
        publish: (kind, payload) => {
          const h = headers();
          h.set("d", id);
          h.set("k", kind);
          this.#host.nc.publish(subject, payload, { headers: h });
        },
      });
      this.#batches.set(key, batch);
    }
    batch.send(data);
  }

  /** Send what the batches hold now and drop them (the node leaves the cluster). */
  close(): void {
    this.#closed = true;
    for (const key of [...this.#batches.keys()]) this.#endBatch(key, true);
  }

  /** End one batch, sending what it holds first (`flush`: else dropped). */
  #endBatch(key: string, flush: boolean): void {
    const batch = this.#batches.get(key);
    if (!batch) return;
    this.#batches.delete(key);
    try {
      if (flush) batch.flush();
    } catch (error) {
      log.warn("Could not publish relayed messages: {message}", {
        message: (error as Error).message,
      });
    } finally {
      batch.close();
    }
  }

  /** A local daemon's process exited: every node that relayed for that daemon hears it too. */
  exit(id: string, text: string): void {
    const fronts = this.#fronts.get(id);
    if (fronts) { for (const slot of fronts.keys()) this.toFront(id, slot, text); }
  }

  /** A node is gone: release what it held on every local daemon. */
  nodeGone(slot: number): void {
    for (const id of [...this.#fronts.keys()]) this.#release(id, slot);
    for (const key of [...this.#batches.keys()]) {
      if (Number(key.slice(0, key.indexOf(" "))) === slot) this.#endBatch(key, false);
    }
  }

  /** A local daemon left: nothing to release on it any more. */
  forget(id: string): void {
    this.#fronts.delete(id);
    for (const key of [...this.#batches.keys()]) {
      if (key.slice(key.indexOf(" ") + 1) === id) this.#endBatch(key, true);
    }
  }

  /** A node went away (or dropped its link): reset on the daemon the streams it had open there. */
  #release(id: string, slot: number): void {
    const fronts = this.#fronts.get(id);
    const sids = fronts?.get(slot);
    if (!fronts || !sids) return;
    fronts.delete(slot);
    if (fronts.size === 0) this.#fronts.delete(id);
    const conn = this.#host.local(id);
    if (!conn) return;
    for (const sid of sids) conn.send({ t: "reset", sid, reason: "cluster node gone" });
  }
}
