// Liveness of daemon links, checked lazily per connection. Each link sits in one slot of a timing wheel (slot
// width: a quarter interval) at its next deadline; a tick looks only at its slot's links, in slices of at most
// SLICE_MS that yield to the event loop. A link is pinged only when the controller has sent it nothing for an interval, or heard
// nothing from it for an interval (and has not pinged it since): a busy link gets no pings at all. A link silent
// for HEARTBEAT_MISSES intervals is dropped, and the slot rounding is taken off that bound, so a half-open link is
// found within HEARTBEAT_MISSES x interval of its last message.
//
// Cost at scale (19,000 idle links): an idle link is looked at once per interval, when its ping is due (not again
// when the pong is expected: the pong moves `lastSeen`, which only the drop deadline reads). The wheel keeps a
// link's place on the link itself (`beatTick`, `pingedAt` on the Connection: no record or map entry per link, ~70
// bytes a link less than a Map of records), and its slots are arrays reused from tick to tick, so an idle
// controller allocates nothing here that outlives a scavenge (hash sets rebuilt per tick were promoted to the old
// generation and grew the heap by megabytes a minute).
//
// Lag-aware (issue 14, server/CLUSTER.md "Capacity"): a controller whose own event loop is starved reads its links'
// pongs late, and dropping those links as silent only adds reconnects to the load that starved it. So the silence
// counted against a link leaves out the time this process's loop was measured stalled since the link's last
// message: how late the wheel's timer fired, and how late a sweep resumed after yielding, beyond LAG_SLACK_MS. The
// stalls are kept per tick in a ring (STALL_RING ticks: 64 intervals), and summed only for a link that is about to
// be dropped, so a healthy loop pays nothing per link and its bound stays HEARTBEAT_MISSES x interval. Timers do
// not see every stall: under a backlog of inbound messages some reads complete seconds late while timers fire
// nearly on time, so a read this process sends itself every slot (server/_read_canary.ts) is measured too, and a
// read of it still in flight counts as a stall going on.
import { HEARTBEAT_MISSES } from "@sandd/protocol/constants";
import type { Connection } from "./_connection.ts";
import { LoopStall } from "./_loop_stall.ts";
import { ReadCanary } from "./_read_canary.ts";

/** Slots per interval: the check granularity is interval / SLOTS_PER_INTERVAL. */
const SLOTS_PER_INTERVAL = 4;
/** Deadlines are at most HEARTBEAT_MISSES intervals ahead; one more slot keeps the wheel from wrapping onto itself. */
const SLOTS = HEARTBEAT_MISSES * SLOTS_PER_INTERVAL + 1;
/** Links handled between looks at the clock. */
const CHECK_EVERY = 32;
/**
 * How long a tick handles links before yielding to the event loop, in ms: bounded by time, not by a count, so a
 * slow moment (a loaded machine, a send that takes long) cannot stretch a batch into a stall.
 */
const SLICE_MS = 4;
/** The read canary's period at most, in ms: its lag also gates new connections (server/_http_listener.ts). */
const CANARY_EVERY_MS = 100;
/** Ticks of stall history kept: 64 intervals (older stalls no longer extend a link's bound). */
const STALL_RING = 64 * SLOTS_PER_INTERVAL;

export interface HeartbeatOptions {
  intervalMs: number;
  /** Send a ping. */
  ping(conn: Connection): void;
  /** Drop a silent link: `silentMs` since its last message, `stalledMs` of which this loop was stalled. */
  drop(conn: Connection, silentMs: number, stalledMs: number): void;
}

export class Heartbeat {
  readonly #interval: number;
  readonly #slotMs: number;
  /** Silence after which a link is dropped, less one slot of rounding. */
  readonly #dropAfter: number;
  readonly #options: HeartbeatOptions;
  /** Records queued per slot: `#slots[s][0 .. #counts[s])`, possibly stale (their `tick` moved on). */
  readonly #slots: (Connection | undefined)[][] = Array.from({ length: SLOTS }, () => []);
  readonly #counts: number[] = new Array<number>(SLOTS).fill(0);
  readonly #origin = Date.now();
  /** The last tick handled; ticks are counted from the clock, so a late timer does not delay deadlines. */
  #tick = 0;
  #running: Promise<void> | null = null;
  #closed = false;
  readonly #timer: ReturnType<typeof setInterval>;
  #yieldTimer: ReturnType<typeof setTimeout> | undefined;
  #yielded: (() => void) | undefined;
  /** When the wheel's timer last fired (`Date.now()`): its lateness on the next fire is loop lag. */
  #lastFire = Date.now();
  /** Stall history (server/_loop_stall.ts), in ticks of the wheel. */
  readonly #stall: LoopStall;
  /** Measures how late this loop's reads complete (server/_read_canary.ts), once started. */
  #canary: ReadCanary | undefined;
  readonly #canaryStarted: Promise<void>;

  constructor(options: HeartbeatOptions) {
    this.#options = options;
    this.#interval = options.intervalMs;
    this.#slotMs = this.#interval / SLOTS_PER_INTERVAL;
    this.#dropAfter = HEARTBEAT_MISSES * this.#interval - this.#slotMs;
    this.#stall = new LoopStall({ tickMs: this.#slotMs, ticks: STALL_RING, origin: this.#origin });
    this.#canaryStarted = ReadCanary.start({
      stall: this.#stall,
      everyMs: Math.min(this.#slotMs, CANARY_EVERY_MS),
    }).then(
      async (canary) => {
        if (this.#closed) await canary?.close();
        else this.#canary = canary;
      },
    );
    this.#timer = setInterval(() => {
      const now = Date.now();
      this.#stall.late(this.#lastFire + this.#slotMs, now);
      this.#lastFire = now;
      if (this.#running) return;
      this.#running = this.#drain().finally(() => this.#running = null);
    }, this.#slotMs);
  }

  /** Total time this loop was measured stalled (timer lateness beyond `LAG_SLACK_MS`), in ms. */
  get stalledMs(): number {
    return this.#stall.totalMs;
  }

  /**
   * How long this loop was measured stalled since `since` (timers, reads: see the top of this file), in ms, for
   * other waits that must not blame a peer for this loop's lag (a daemon's hello).
   */
  stalledSince(since: number, now: number): number {
    return this.#stall.since(since, now) + (this.#canary?.ongoing(since, now) ?? 0);
  }

  /** This loop's read lag now (server/_read_canary.ts), in ms; 0 when it is not measured. */
  readLagMs(now: number): number {
    return this.#canary?.lagMs(now) ?? 0;
  }

  add(conn: Connection): void {
    this.#schedule(conn, Date.now() + this.#interval);
  }

  delete(conn: Connection): void {
    // Its slot entry goes stale and is skipped (and released) when that slot comes round.
    conn.beatTick = -1;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    clearTimeout(this.#yieldTimer);
    this.#yielded?.();
    await this.#running;
    await this.#canaryStarted;
    await this.#canary?.close();
    for (let s = 0; s < SLOTS; s++) {
      this.#slots[s] = [];
      this.#counts[s] = 0;
    }
  }

  #schedule(conn: Connection, at: number): void {
    // The first tick at or after `at`, but never the current one, nor further than the wheel reaches.
    const tick = Math.min(
      Math.max(Math.ceil((at - this.#origin) / this.#slotMs), this.#tick + 1),
      this.#tick + SLOTS - 1,
    );
    conn.beatTick = tick;
    const slot = tick % SLOTS;
    this.#slots[slot]![this.#counts[slot]!++] = conn;
  }

  async #drain(): Promise<void> {
    while (!this.#closed && this.#tick < Math.floor((Date.now() - this.#origin) / this.#slotMs)) {
      const tick = ++this.#tick;
      const slot = tick % SLOTS;
      // Nothing is queued into this slot while it is drained: schedules land on later ticks, at most SLOTS - 1
      // ahead, which is never this slot.
      const queued = this.#slots[slot]!;
      let n = 0;
      let sliceStart = performance.now();
      for (let i = 0; i < this.#counts[slot]!; i++) {
        if (this.#closed) return;
        const conn = queued[i]!;
        queued[i] = undefined;
        if (conn.beatTick !== tick) continue;
        conn.beatTick = -1;
        this.#check(conn);
        if (++n % CHECK_EVERY === 0 && performance.now() - sliceStart >= SLICE_MS) {
          await this.#yield();
          sliceStart = performance.now();
        }
      }
      this.#counts[slot] = 0;
    }
  }

  #yield(): Promise<void> {
    return new Promise((resolve) => {
      const since = Date.now();
      this.#yielded = resolve;
      this.#yieldTimer = setTimeout(() => {
        // A 0 ms timer that comes back late measures how long the loop's other work held it.
        this.#stall.late(since, Date.now());
        resolve();
      }, 0);
    });
  }

  #check(conn: Connection): void {
    if (conn.closed) return;
    const now = Date.now();
    const silent = now - conn.lastSeen;
    // The time this loop was stalled since the link's last message is not the link's silence (summed only here,
    // for a link that would be dropped otherwise).
    const stalled = silent >= this.#dropAfter ? this.stalledSince(conn.lastSeen, now) : 0;
    if (silent - stalled >= this.#dropAfter) {
      this.#options.drop(conn, silent, stalled);
      return;
    }
    if (
      now - conn.lastSent >= this.#interval ||
      (silent >= this.#interval && conn.pingedAt < conn.lastSeen)
    ) {
      this.#options.ping(conn);
      conn.pingedAt = now;
    }
    // Next look: when a ping is due (nothing sent for an interval; or nothing heard for one, unless pinged since),
    // or when the link would be dropped, whichever comes first.
    let next = conn.lastSent + this.#interval;
    if (conn.pingedAt < conn.lastSeen) next = Math.min(next, conn.lastSeen + this.#interval);
    next = Math.min(next, conn.lastSeen + stalled + this.#dropAfter);
    this.#schedule(conn, Math.max(next, now + 1));
  }
}
