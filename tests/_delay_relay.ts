// A user-space stand-in for a long link: a TCP relay that delivers every chunk `oneWayMs` after it arrived, in
// order, in both directions. It buffers without limit, so the endpoints' TCP windows are not what limits a stream
// through it: what does is the application's own flow control (SandD's credit window, SSH's channel window), each
// waiting a full round trip for its acknowledgements, as over a real long-RTT path with large socket buffers.
// (`tc netem` would be the real thing; this kernel has no netem qdisc: "Specified qdisc kind is unknown".)

/** A delaying relay on 127.0.0.1 in front of `targetPort`. */
export class DelayRelay implements AsyncDisposable {
  readonly #listener: Deno.TcpListener;
  readonly #conns = new Set<Deno.TcpConn>();
  readonly #oneWayMs: number;
  readonly #target: number;
  readonly #accepting: Promise<void>;
  /** Pending delays, so closing ends them rather than leaving timers behind. */
  readonly #sleeps = new Map<ReturnType<typeof setTimeout>, () => void>();
  readonly #pipes = new Set<Promise<void>>();
  #closed = false;

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#sleeps.delete(timer);
        resolve();
      }, ms);
      this.#sleeps.set(timer, resolve);
    });
  }

  constructor(targetPort: number, rttMs: number) {
    this.#target = targetPort;
    this.#oneWayMs = rttMs / 2;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#accepting = this.#accept();
  }

  /** The relay's port. */
  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  async #accept(): Promise<void> {
    try {
      for await (const a of this.#listener) {
        a.setNoDelay(true);
        let b: Deno.TcpConn;
        try {
          b = await Deno.connect({ hostname: "127.0.0.1", port: this.#target });
        } catch {
          a.close();
          continue;
        }
        b.setNoDelay(true);
        this.#conns.add(a);
        this.#conns.add(b);
        this.#pipe(a, b);
        this.#pipe(b, a);
      }
    } catch {
      // closed
    }
  }

  #pipe(from: Deno.TcpConn, to: Deno.TcpConn): void {
    const queue: { due: number; bytes: Uint8Array | null }[] = [];
    const waker: { wake: (() => void) | null } = { wake: null };
    const reader = (async () => {
      try {
        while (true) {
          const buffer = new Uint8Array(256 * 1024);
          const n = await from.read(buffer);
          queue.push({
            due: performance.now() + this.#oneWayMs,
            bytes: n === null ? null : buffer.subarray(0, n),
          });
          waker.wake?.();
          if (n === null) return;
        }
      } catch {
        queue.push({ due: performance.now() + this.#oneWayMs, bytes: null });
        waker.wake?.();
      }
    })();
    const pipe = (async () => {
      try {
        while (true) {
          if (queue.length === 0) await new Promise<void>((r) => waker.wake = r);
          waker.wake = null;
          const next = queue.shift()!;
          const wait = next.due - performance.now();
          if (wait > 0) await this.#sleep(wait);
          if (this.#closed) break;
          if (next.bytes === null) {
            await to.closeWrite().catch(() => {});
            break;
          }
          for (let at = 0; at < next.bytes.length;) at += await to.write(next.bytes.subarray(at));
        }
      } catch {
        // the other side went away
      }
      await reader;
      for (const c of [from, to]) {
        if (this.#conns.delete(c)) {
          try {
            c.close();
          } catch { /* closed */ }
        }
      }
    })();
    this.#pipes.add(pipe);
    pipe.finally(() => this.#pipes.delete(pipe));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#closed = true;
    for (const [timer, resolve] of this.#sleeps) {
      clearTimeout(timer);
      resolve();
    }
    this.#sleeps.clear();
    this.#listener.close();
    await this.#accepting;
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    this.#conns.clear();
    await Promise.all(this.#pipes);
  }
}
