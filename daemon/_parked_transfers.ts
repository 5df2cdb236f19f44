// Transfers held by their transfer key, so that a dropped link does not end them: downloads cut mid-stream,
// uploads waiting for the rest of their bytes, and uploads that finished while the link was down (their reply is
// handed to the resume). Bounded in time (PARK_MS after the link dropped) and in number (MAX_PARKED waiting).
import { CreditError } from "@sandd/protocol/stream";
import type { Link } from "./_link.ts";
import { DownloadSender, type UploadReceiver } from "./_file_streams.ts";
import { DaemonRequestError } from "./process_table.ts";

/** How long a transfer cut by a dropped link waits for the controller to resume it. */
export const PARK_MS = 60_000;

/** Most transfers waiting for a resume at once (each holds a descriptor); the oldest is dropped beyond. */
export const MAX_PARKED = 256;

/** One transfer the table holds. */
interface Held {
  kind: "download" | "upload";
  path: string;
  /** Continue on `link`/`sid`; returns the reply. */
  resume(link: Link, sid: number, from: number, window: number): unknown;
  /** Give up (time ran out, or too many wait). */
  stop(): void;
  timer?: ReturnType<typeof setTimeout>;
}

/**
 * Transfers with a key, so that a dropped link does not end them: downloads cut mid-stream, uploads waiting for
 * the rest of their bytes, and uploads finished while the link was down (their reply to hand to the resume).
 * Each waits at most {@linkcode PARK_MS} after its link dropped; at most {@linkcode MAX_PARKED} wait at once.
 */
export class ParkedTransfers {
  readonly #live = new Map<string, Held>();
  readonly #parkMs: number;

  /** @param parkMs How long a cut transfer waits. */
  constructor(parkMs: number = PARK_MS) {
    this.#parkMs = parkMs;
  }

  /** Transfers held now (attached or waiting). */
  get size(): number {
    return this.#live.size;
  }

  /** Whether `key` names a transfer held now. */
  has(key: string): boolean {
    return this.#live.has(key);
  }

  /** Hold a download under `key` until it is done; `reply` answers a resume (as it answered the request). */
  add(key: string, path: string, sender: DownloadSender, reply: Record<string, unknown>): void {
    this.#live.set(key, {
      kind: "download",
      path,
      resume: (link, sid, from) => {
        if (sender.done) throw this.#stale(key, path);
        try {
          sender.resume(link, sid, from);
        } catch (error) {
          if (!(error instanceof CreditError)) throw error;
          throw new DaemonRequestError("EINVAL", `Cannot resume '${path}': ${error.message}`, {
            path,
          });
        }
        return reply;
      },
      stop: () => sender.stop(),
    });
  }

  /** Hold an upload under `key`; `result` settles with its reply. */
  addUpload(
    key: string,
    path: string,
    receiver: UploadReceiver,
    result: Promise<Record<string, unknown>>,
  ): void {
    const held: Held = {
      kind: "upload",
      path,
      resume: (link, sid, _from, window) => {
        receiver.rebind(link, sid, window);
        return result;
      },
      stop: () => receiver.expire(),
    };
    this.#live.set(key, held);
    // Done: a controller whose link dropped before the reply came may still ask for it, for a while.
    const settled = (outcome: () => Record<string, unknown>) => {
      if (this.#live.get(key) !== held) return;
      const done: Held = {
        kind: "upload",
        path,
        resume: () => {
          this.remove(key, done);
          return outcome();
        },
        stop: () => this.remove(key, done),
      };
      clearTimeout(held.timer);
      this.#live.set(key, done);
      this.park(key);
    };
    result.then((reply) => settled(() => reply), (error) =>
      settled(() => {
        throw error;
      }));
  }

  /** The link of `key` dropped: wait for a resume, for a while. */
  park(key: string): void {
    const entry = this.#live.get(key);
    if (!entry) return;
    clearTimeout(entry.timer);
    const timer = setTimeout(() => {
      entry.stop();
      this.remove(key, entry);
    }, this.#parkMs);
    Deno.unrefTimer(timer);
    entry.timer = timer;
    let waiting = 0;
    for (const other of this.#live.values()) if (other.timer !== undefined) waiting++;
    for (const [otherKey, other] of this.#live) {
      if (waiting <= MAX_PARKED) break;
      if (other.timer === undefined || other === entry) continue;
      other.stop();
      this.remove(otherKey, other);
      waiting--;
    }
  }

  /** `key` is done: forget it (when `owner` still holds it: a download's sender, or an entry). */
  remove(key: string, owner: DownloadSender | Held): void {
    const entry = this.#live.get(key);
    if (!entry) return;
    if (owner instanceof DownloadSender ? entry.kind !== "download" : entry !== owner) return;
    if (owner instanceof DownloadSender && !owner.done) return;
    clearTimeout(entry.timer);
    this.#live.delete(key);
  }

  #stale(key: string, path: string): DaemonRequestError {
    return new DaemonRequestError(
      "ESTALE",
      `No transfer of '${path}' is held under key '${key}' (unknown, or expired)`,
      { path },
    );
  }

  #take(key: string, kind: Held["kind"], path: string): Held {
    const entry = this.#live.get(key);
    if (!entry || entry.kind !== kind || entry.path !== path) throw this.#stale(key, path);
    clearTimeout(entry.timer);
    delete entry.timer;
    return entry;
  }

  /**
   * Take up the download `key` on `link`/`sid` from `from`.
   *
   * @throws {DaemonRequestError} `ESTALE` when no such transfer is held (unknown, expired, or for another path);
   * `EINVAL` when `from` is not an offset the transfer can continue from.
   * @returns The reply the first request got.
   */
  resume(
    key: string,
    path: string,
    link: Link,
    sid: number,
    from: number,
  ): Record<string, unknown> {
    return this.#take(key, "download", path).resume(link, sid, from, 0) as Record<
      string,
      unknown
    >;
  }

  /**
   * Take up the upload `key` on `link`/`sid`; the controller resends from the offset acknowledged at once.
   *
   * @throws {DaemonRequestError} `ESTALE` when no such upload is held.
   * @returns The upload's reply, once it is done.
   */
  resumeUpload(
    key: string,
    path: string,
    link: Link,
    sid: number,
    window: number,
  ): Promise<Record<string, unknown>> {
    const entry = this.#take(key, "upload", path);
    try {
      return Promise.resolve(entry.resume(link, sid, 0, window) as Record<string, unknown>);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Stop every transfer (the daemon stops). */
  clear(): void {
    for (const [key, entry] of [...this.#live]) {
      entry.stop();
      this.remove(key, entry);
    }
  }
}
