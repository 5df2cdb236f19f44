// Liveness of daemon links, checked lazily per connection. Each link sits in one slot of a timing wheel (slot
// width: a quarter interval) at its next deadline; a tick looks only at its slot's links, in batches that yield
// to the event loop. A link is pinged only when the controller has sent it nothing for an interval, or heard
// nothing from it for an interval (and has not pinged it since): a busy link gets no pings at all. A link silent
// for HEARTBEAT_MISSES intervals is dropped, and the slot rounding is taken off that bound, so a half-open link is
// found within HEARTBEAT_MISSES x interval of its last message.
import { HEARTBEAT_MISSES } from "@sandd/protocol/constants";
import type { Connection } from "./_connection.ts";

/** Slots per interval: the check granularity is interval / SLOTS_PER_INTERVAL. */
const SLOTS_PER_INTERVAL = 4;
/** Deadlines are at most HEARTBEAT_MISSES intervals ahead; one more slot keeps the wheel from wrapping onto itself. */
const SLOTS = HEARTBEAT_MISSES * SLOTS_PER_INTERVAL + 1;
/** Links handled before yielding to the event loop. */
const BATCH = 256;

export interface HeartbeatOptions {
  intervalMs: number;
  /** Send a ping. */
  ping(conn: Connection): void;
  /** Drop a silent link. */
  drop(conn: Connection, silentMs: number): void;
}

export class Heartbeat {
  readonly #interval: number;
  readonly #slotMs: number;
  /** Silence after which a link is dropped, less one slot of rounding. */
  readonly #dropAfter: number;
  readonly #options: HeartbeatOptions;
  readonly #slots: Set<Connection>[] = Array.from({ length: SLOTS }, () => new Set());
  readonly #slotOf: Map<Connection, number> = new Map();
  /** When each link was last pinged (a ping answers for `lastSent` too, but not for silence). */
  readonly #pingedAt: WeakMap<Connection, number> = new WeakMap();
  readonly #origin = Date.now();
  /** The last tick handled; ticks are counted from the clock, so a late timer does not delay deadlines. */
  #tick = 0;
  #running: Promise<void> | null = null;
  #closed = false;
  readonly #timer: ReturnType<typeof setInterval>;
  #yieldTimer: ReturnType<typeof setTimeout> | undefined;
  #yielded: (() => void) | undefined;

  constructor(options: HeartbeatOptions) {
    this.#options = options;
    this.#interval = options.intervalMs;
    this.#slotMs = this.#interval / SLOTS_PER_INTERVAL;
    this.#dropAfter = HEARTBEAT_MISSES * this.#interval - this.#slotMs;
    this.#timer = setInterval(() => {
      if (this.#running) return;
      this.#running = this.#drain().finally(() => this.#running = null);
    }, this.#slotMs);
  }

  add(conn: Connection): void {
    this.#schedule(conn, Date.now() + this.#interval);
  }

  delete(conn: Connection): void {
    const slot = this.#slotOf.get(conn);
    if (slot === undefined) return;
    this.#slotOf.delete(conn);
    this.#slots[slot]!.delete(conn);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    clearTimeout(this.#yieldTimer);
    this.#yielded?.();
    await this.#running;
    for (const slot of this.#slots) slot.clear();
    this.#slotOf.clear();
  }

  #schedule(conn: Connection, at: number): void {
    // The first tick at or after `at`, but never the current one, nor further than the wheel reaches.
    const tick = Math.min(
      Math.max(Math.ceil((at - this.#origin) / this.#slotMs), this.#tick + 1),
      this.#tick + SLOTS - 1,
    );
    const slot = tick % SLOTS;
    const old = this.#slotOf.get(conn);
    if (old !== undefined) this.#slots[old]!.delete(conn);
    this.#slotOf.set(conn, slot);
    this.#slots[slot]!.add(conn);
  }

  async #drain(): Promise<void> {
    while (!this.#closed && this.#tick < Math.floor((Date.now() - this.#origin) / this.#slotMs)) {
      this.#tick++;
      const slot = this.#tick % SLOTS;
      const due = this.#slots[slot]!;
      this.#slots[slot] = new Set();
      let n = 0;
      for (const conn of due) {
        if (this.#closed) break;
        if (this.#slotOf.get(conn) !== slot) continue;
        this.#slotOf.delete(conn);
        this.#check(conn);
        if (++n % BATCH === 0) await this.#yield();
      }
    }
  }

  #yield(): Promise<void> {
    return new Promise((resolve) => {
      this.#yielded = resolve;
      this.#yieldTimer = setTimeout(resolve, 0);
    });
  }

  #check(conn: Connection): void {
    if (conn.closed) return;
    const now = Date.now();
    const silent = now - conn.lastSeen;
    if (silent >= this.#dropAfter) {
      this.#options.drop(conn, silent);
      return;
    }
    const pingedAt = this.#pingedAt.get(conn) ?? 0;
    if (
      now - conn.lastSent >= this.#interval ||
      (silent >= this.#interval && pingedAt < conn.lastSeen)
    ) {
      this.#options.ping(conn);
      this.#pingedAt.set(conn, now);
    }
    // Next look: when the link would need a ping again, or would be dropped.
    const next = Math.min(
      conn.lastSent + this.#interval,
      silent >= this.#interval ? conn.lastSeen + this.#dropAfter : conn.lastSeen + this.#interval,
    );
    this.#schedule(conn, Math.max(next, now + 1));
  }
}
