// What every controller-side stream shares about its place on a daemon link: the connection and stream id it is
// routed under (forgotten when the connection closes), and one pending wait for the next event.
import type { Connection, InboundRoute } from "./_connection.ts";

/** A stream's binding to a daemon link: the route of `sid` on `conn`, while the link lasts. */
export class StreamLink {
  #conn: Connection | null = null;
  #sid = 0;
  #route: InboundRoute | null = null;

  /** The connection the stream is routed on, or `null` between links. */
  get conn(): Connection | null {
    return this.#conn;
  }

  /** The stream id of the latest binding (kept after the link is gone, for messages about the stream). */
  get sid(): number {
    return this.#sid;
  }

  /** Whether the stream is routed on a live connection. */
  get bound(): boolean {
    return this.#route !== null;
  }

  /** Route `sid` on `conn` to `handlers`, replacing an earlier binding; a closing connection unbinds it. */
  bind(conn: Connection, sid: number, handlers: InboundRoute): void {
    this.unbind();
    this.#conn = conn;
    this.#sid = sid;
    const route: InboundRoute = {
      ...handlers,
      onClose: () => {
        if (this.#route === route) {
          this.#route = null;
          this.#conn = null;
        }
        handlers.onClose?.();
      },
    };
    this.#route = route;
    conn.routes.set(sid, route);
  }

  /** Take the route off its connection (if it is still this stream's). */
  unbind(): void {
    if (this.#conn && this.#route && this.#conn.routes.get(this.#sid) === this.#route) {
      this.#conn.routes.delete(this.#sid);
    }
    this.#conn = null;
    this.#route = null;
  }
}

/** One pending wait: `wait()` resolves at the next `wake()` (a wake with nobody waiting is dropped). */
export class Wakeup {
  #wake: (() => void) | null = null;

  /** Resolves at the next {@linkcode Wakeup.wake}. */
  wait(): Promise<void> {
    return new Promise<void>((resolve) => this.#wake = resolve);
  }

  /** Resolve the pending wait, if any. */
  wake(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}
