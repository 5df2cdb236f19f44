// A TCP proxy between daemon and controller that can cut or stall links, for resume and liveness tests.

export class LinkProxy implements AsyncDisposable {
  readonly #listener: Deno.TcpListener;
  readonly #target: { hostname: string; port: number };
  readonly #pairs: Set<{ a: Deno.TcpConn; b: Deno.TcpConn; done: Promise<void> }> = new Set();
  #stalled = false;
  #refusing = false;
  #accepting: Promise<void>;
  #closed = false;
  /** Connections accepted so far. */
  accepted = 0;

  constructor(targetPort: number) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#target = { hostname: "127.0.0.1", port: targetPort };
    this.#accepting = this.#accept();
  }

  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  url(path = "/ws"): string {
    return `ws://127.0.0.1:${this.port}${path}`;
  }

  async #accept(): Promise<void> {
    for await (const a of this.#listener) {
      this.accepted++;
      if (this.#refusing) {
        a.close();
        continue;
      }
      let b: Deno.TcpConn;
      try {
        b = await Deno.connect(this.#target);
      } catch {
        a.close();
        continue;
      }
      const pair = { a, b, done: Promise.resolve() };
      pair.done = Promise.all([this.#pipe(a, b), this.#pipe(b, a)]).then(() => {
        this.#pairs.delete(pair);
      });
      this.#pairs.add(pair);
    }
  }

  async #pipe(from: Deno.TcpConn, to: Deno.TcpConn): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await from.read(buffer);
        if (n === null) break;
        if (this.#stalled) continue; // black hole: the link looks open but carries nothing
        let at = 0;
        while (at < n) at += await to.write(buffer.subarray(at, n));
      }
    } catch {
      // cut
    }
    for (const conn of [from, to]) {
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
  }

  /** Drop every live connection (both directions). */
  async cut(): Promise<void> {
    const pairs = [...this.#pairs];
    for (const { a, b } of pairs) {
      for (const conn of [a, b]) {
        try {
          conn.close();
        } catch {
          // closed already
        }
      }
    }
    await Promise.all(pairs.map((p) => p.done));
  }

  /** Close new connections at once (the controller looks down) until called with `false`. */
  refuse(on = true): void {
    this.#refusing = on;
  }

  /** Stop forwarding without closing: a half-open link. */
  stall(on = true): void {
    this.#stalled = on;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listener.close();
    await this.#accepting.catch(() => {});
    await this.cut();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
