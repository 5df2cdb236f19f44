// Server-Sent Events of the control API: `connect`, `disconnect` and `exit`, fanned out to every subscriber.
// Each subscriber has a bounded queue: one that does not read (its socket is full) is dropped when its queue is
// full, instead of growing the controller's memory.
import { getLogger } from "@logtape/logtape";

const log = getLogger(["sandd", "control"]);
const encoder = new TextEncoder();
const KEEP_ALIVE = encoder.encode(": keep-alive\n\n");

class Subscriber {
  readonly queue: Uint8Array[] = [];
  wake: (() => void) | null = null;
  done = false;
  controller: ReadableStreamDefaultController<Uint8Array> | null = null;

  push(bytes: Uint8Array): void {
    this.queue.push(bytes);
    this.wake?.();
  }
}

export class EventHub {
  readonly #clients: Set<Subscriber> = new Set();
  readonly #maxQueue: number;
  readonly #keepAliveMs: number;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(maxQueue: number, keepAliveMs = 15_000) {
    this.#maxQueue = maxQueue;
    this.#keepAliveMs = keepAliveMs;
  }

  /** Subscribers now. */
  get size(): number {
    return this.#clients.size;
  }

  /** Send an event to every subscriber. */
  publish(type: string, data: unknown): void {
    if (this.#clients.size === 0) return;
    this.#send(encoder.encode(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`));
  }

  #send(bytes: Uint8Array): void {
    for (const client of this.#clients) {
      if (client.queue.length >= this.#maxQueue) {
        log.warn("Dropped an event subscriber that stopped reading ({queued} events queued)", {
          queued: client.queue.length,
        });
        this.#drop(client, new Error("Event subscriber too slow: queue full"));
        continue;
      }
      client.push(bytes);
    }
  }

  #drop(client: Subscriber, error?: Error): void {
    if (client.done) return;
    client.done = true;
    client.queue.length = 0;
    this.#clients.delete(client);
    try {
      if (error) client.controller?.error(error);
      else client.controller?.close();
    } catch {
      // already closed
    }
    client.wake?.();
    if (this.#clients.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  /** A new subscriber's `text/event-stream` answer. */
  subscribe(): Response {
    const client = new Subscriber();
    this.#clients.add(client);
    this.#timer ??= setInterval(() => this.#send(KEEP_ALIVE), this.#keepAliveMs);
    // A first comment, so the client sees the stream open before any event.
    client.push(encoder.encode(": connected\n\n"));
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        client.controller = controller;
      },
      pull: async (controller) => {
        while (!client.done) {
          const next = client.queue.shift();
          if (next) {
            controller.enqueue(next);
            return;
          }
          await new Promise<void>((resolve) => client.wake = resolve);
          client.wake = null;
        }
      },
      cancel: () => this.#drop(client),
    }, { highWaterMark: 0 });
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      },
    });
  }

  /** End every subscription (the server closes). */
  close(): void {
    for (const client of [...this.#clients]) this.#drop(client);
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
