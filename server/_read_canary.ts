// A socket read this process sends itself, to measure how late its reads complete: the lag a liveness check must
// not blame on a peer, which timers alone do not see.
//
// Why: under a backlog of inbound messages (thousands of daemons failing over to one node), Deno completes some
// sockets' reads seconds late while its timers still fire nearly on time. Measured here (Deno 2.9.6, 4,000
// WebSockets each sending 10 messages a second to a loop that could handle about 6,000): timers at most 369 ms late,
// while a TCP read and a WebSocket message this process sent itself both waited 10.2-10.5 s, together. Links whose
// pongs waited that long were dropped as silent (server/CLUSTER.md, "Capacity"). So the controller keeps one
// loopback TCP pair, writes one byte on it every `everyMs` (when none is in flight), and records how late the read
// completes, beyond LAG_SLACK_MS, as a stall of this loop (server/_loop_stall.ts); a read still in flight counts as
// a stall going on.
import { LAG_SLACK_MS, type LoopStall } from "./_loop_stall.ts";
import { getLogger } from "@logtape/logtape";

const log = getLogger(["sandd", "server"]);

/** Options of {@linkcode ReadCanary.start}. */
export interface ReadCanaryOptions {
  /** Where the read lateness is recorded. */
  stall: LoopStall;
  /** How often a byte is sent (when none is in flight), in ms. */
  everyMs: number;
}

/** One loopback TCP pair whose reads measure this loop's read lag. */
export class ReadCanary {
  readonly #stall: LoopStall;
  readonly #writer: Deno.Conn;
  readonly #reader: Deno.Conn;
  readonly #timer: ReturnType<typeof setInterval>;
  readonly #byte = new Uint8Array([1]);
  /** When the byte in flight was sent (`Date.now()`), or 0. */
  #sentAt = 0;
  /** How late the last byte's read completed, in ms. */
  #lastLagMs = 0;
  #closed = false;
  readonly #done: Promise<void>;

  private constructor(options: ReadCanaryOptions, writer: Deno.Conn, reader: Deno.Conn) {
    this.#stall = options.stall;
    this.#writer = writer;
    this.#reader = reader;
    this.#done = this.#read();
    this.#timer = setInterval(() => this.#send(), options.everyMs);
  }

  /**
   * Opens the pair on 127.0.0.1; undefined (logged) when this process may not (no net permission for it): the
   * stall is then measured from timers alone.
   */
  static async start(options: ReadCanaryOptions): Promise<ReadCanary | undefined> {
    let listener: Deno.Listener | undefined;
    try {
      listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const { port } = listener.addr as Deno.NetAddr;
      const [writer, reader] = await Promise.all([
        Deno.connect({ hostname: "127.0.0.1", port }),
        listener.accept(),
      ]);
      writer.setNoDelay(true);
      writer.unref();
      reader.unref();
      return new ReadCanary(options, writer, reader);
    } catch (error) {
      log.warning(
        "Read lag is measured from timers alone: the loopback pair that measures it failed: {error}",
        { error: String(error) },
      );
      return undefined;
    } finally {
      listener?.close();
    }
  }

  /** The stall going on now: how long the byte in flight has waited beyond the slack, counted from `since`. */
  ongoing(since: number, now: number): number {
    if (this.#sentAt === 0) return 0;
    return Math.max(0, now - Math.max(this.#sentAt, since) - LAG_SLACK_MS);
  }

  /** The read lag now: how long the byte in flight has waited, or how long the last one took. */
  lagMs(now: number): number {
    return this.#sentAt === 0 ? this.#lastLagMs : Math.max(this.#lastLagMs, now - this.#sentAt);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    for (const conn of [this.#writer, this.#reader]) {
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
    await this.#done;
  }

  #send(): void {
    if (this.#sentAt !== 0 || this.#closed) return;
    this.#sentAt = Date.now();
    this.#writer.write(this.#byte).catch(() => {});
  }

  async #read(): Promise<void> {
    const buffer = new Uint8Array(64);
    try {
      while (!this.#closed) {
        if (await this.#reader.read(buffer) === null) return;
        if (this.#sentAt !== 0) {
          const now = Date.now();
          this.#stall.late(this.#sentAt, now);
          this.#lastLagMs = now - this.#sentAt;
        }
        this.#sentAt = 0;
      }
    } catch {
      // closed
    }
  }
}
