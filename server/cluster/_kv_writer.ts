// Registry writes as plain JetStream publishes, answered on one subscription of this node. `KV.update`/`create`/
// `delete` of `@nats-io/kv` each make a request of the NATS client: a timer, a promise, and on every answer an
// `Error` ("cancelled") built and thrown away when the request is tidied up. In a failover a surviving node makes
// one write per daemon that comes over (15,000 in a few seconds), and that bookkeeping was 6-8 % of its CPU in the
// profile. Here a write is one publish with a reply subject under this node's inbox; answers are matched by the
// subject's last token, and one interval timer (running only while writes wait) fails the writes that got no answer.
//
// What JetStream answers a publish with: `{"stream":…,"seq":N}` (the entry's new revision), or `{"error":
// {"code":…,"err_code":…,"description":…}}` (a compare-and-set that lost: "wrong last sequence"); an empty message
// with a status header when no stream takes the subject (JetStream away: 503).

import {
  createInbox,
  headers,
  type NatsConnection,
  type Subscription,
} from "@nats-io/transport-node";

/** How often waiting writes are checked for their deadline. */
const SWEEP_MS = 250;

/** A registry write JetStream refused or did not answer. */
export class KvWriteError extends Error {
  /** JetStream's error code (`err_code`), or 503 (no stream), 408 (no answer in time), 0 (closed). */
  readonly code: number;

  constructor(message: string, code: number) {
    super(message);
    this.name = "KvWriteError";
    this.code = code;
  }
}

interface Waiting {
  resolve(revision: number): void;
  reject(error: Error): void;
  deadline: number;
}

const empty = new Uint8Array(0);
const decoder = new TextDecoder();

/** Compare-and-set writes to one key-value bucket (see the file's header). */
export class KvWriter {
  readonly #nc: NatsConnection;
  /** `$KV.<bucket>.`: a key's subject is this and the key. */
  readonly #subject: string;
  /** This writer's reply subjects are `<inbox>.<n>`. */
  readonly #inbox: string;
  readonly #sub: Subscription;
  readonly #timeoutMs: number;
  readonly #waiting: Map<number, Waiting> = new Map();
  #next = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  constructor(nc: NatsConnection, bucket: string, timeoutMs = 5_000) {
    this.#nc = nc;
    this.#subject = `$KV.${bucket}.`;
    this.#inbox = createInbox();
    this.#timeoutMs = timeoutMs;
    this.#sub = nc.subscribe(`${this.#inbox}.*`, {
      callback: (error, msg) => {
        if (error) {
          this.#failAll(`the reply subscription failed: ${error.message}`);
          return;
        }
        const n = Number(msg.subject.slice(this.#inbox.length + 1));
        const waiting = this.#waiting.get(n);
        if (!waiting) return; // timed out already
        this.#waiting.delete(n);
        this.#answer(waiting, msg.data, msg.headers?.code ?? 0, msg.headers?.description ?? "");
      },
    });
    // The connection closed, or the server ended the subscription (a permission violation): what waits fails now,
    // not at its deadline, and what comes after fails at once (`#publish`).
    void this.#sub.closed.then((error) => {
      this.#failAll(
        error instanceof Error
          ? `the reply subscription ended: ${error.message}`
          : "the NATS connection closed",
      );
    });
  }

  /** Writes waiting for their answer. */
  get waiting(): number {
    return this.#waiting.size;
  }

  /**
   * Put `value` under `key` only if the key's last revision is `previous` (0: the key never held anything), and
   * resolve with the new revision.
   *
   * @throws {KvWriteError} When the revision differs (someone wrote in between), or JetStream is away or silent.
   */
  put(key: string, value: Uint8Array, previous: number): Promise<number> {
    const h = headers();
    h.set("Nats-Expected-Last-Subject-Sequence", String(previous));
    return this.#publish(key, value, h);
  }

  /**
   * Delete `key` (a delete marker, as `KV.delete` leaves) only if its last revision is `previous`.
   *
   * @throws {KvWriteError} As {@linkcode KvWriter.put}.
   */
  async delete(key: string, previous: number): Promise<void> {
    const h = headers();
    h.set("KV-Operation", "DEL");
    h.set("Nats-Expected-Last-Subject-Sequence", String(previous));
    await this.#publish(key, empty, h);
  }

  #publish(key: string, value: Uint8Array, h: ReturnType<typeof headers>): Promise<number> {
    if (this.#closed) return Promise.reject(new KvWriteError("The registry writer is closed", 0));
    if (this.#sub.isClosed()) {
      return Promise.reject(
        new KvWriteError("The registry writer's reply subscription has ended (NATS closed)", 0),
      );
    }
    const n = this.#next++;
    const { promise, resolve, reject } = Promise.withResolvers<number>();
    this.#waiting.set(n, { resolve, reject, deadline: Date.now() + this.#timeoutMs });
    try {
      this.#nc.publish(this.#subject + key, value, { reply: `${this.#inbox}.${n}`, headers: h });
    } catch (error) {
      this.#waiting.delete(n);
      return Promise.reject(error);
    }
    this.#timer ??= setInterval(() => this.#sweep(), SWEEP_MS);
    return promise;
  }

  #answer(waiting: Waiting, data: Uint8Array, status: number, description: string): void {
    if (data.length === 0) {
      waiting.reject(
        new KvWriteError(
          `JetStream did not take the write (${status} ${description})`,
          status || 503,
        ),
      );
      return;
    }
    let ack: { seq?: unknown; error?: { err_code?: unknown; description?: unknown } };
    try {
      ack = JSON.parse(decoder.decode(data));
    } catch {
      waiting.reject(new KvWriteError("JetStream answered a write with something not JSON", 500));
      return;
    }
    if (ack.error) {
      waiting.reject(
        new KvWriteError(
          String(ack.error.description ?? "JetStream refused the write"),
          typeof ack.error.err_code === "number" ? ack.error.err_code : 500,
        ),
      );
    } else if (typeof ack.seq === "number") waiting.resolve(ack.seq);
    else waiting.reject(new KvWriteError("JetStream answered a write without its sequence", 500));
  }

  /** Fail the writes past their deadline; stop the timer once none waits. */
  #sweep(): void {
    const now = Date.now();
    for (const [n, waiting] of this.#waiting) {
      if (waiting.deadline > now) continue;
      this.#waiting.delete(n);
      waiting.reject(
        new KvWriteError(`No answer to a registry write within ${this.#timeoutMs} ms`, 408),
      );
    }
    if (this.#waiting.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  /** Fail every waiting write with `why`. */
  #failAll(why: string): void {
    if (this.#waiting.size === 0) return;
    const error = new KvWriteError(`Registry write failed: ${why}`, 0);
    for (const waiting of this.#waiting.values()) waiting.reject(error);
    this.#waiting.clear();
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Fail every waiting write and stop listening. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
    for (const waiting of this.#waiting.values()) {
      waiting.reject(new KvWriteError("The registry writer is closed", 0));
    }
    this.#waiting.clear();
    try {
      this.#sub.unsubscribe();
    } catch {
      // the connection is closed already
    }
  }
}
