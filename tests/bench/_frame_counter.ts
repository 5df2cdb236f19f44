// A TCP relay between a daemon and its controller that counts the WebSocket messages going each way, by kind (a
// text message's `t`, `data` for a binary frame): the benches' messages-per-operation counters. With `plainV1` it
// strips the protocol revisions from the daemon's offer, so the controller selects `sandd.v1` as an older
// controller would: the same-run baseline of what a revision saves.

/** Options of {@linkcode FrameCounter.start}. */
export interface FrameCounterOptions {
  /** Make the link plain `sandd.v1` (offer only it to the controller). @default false */
  plainV1?: boolean;
}

/** Messages counted in one direction, by kind. */
export type Counts = Map<string, number>;

const HEAD_END = new Uint8Array([13, 10, 13, 10]);

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Parses the frames of one direction as they pass and counts the complete messages. */
class FrameParser {
  #pending: Uint8Array = new Uint8Array(0);
  readonly #counts: Counts;
  readonly #decoder = new TextDecoder();

  constructor(counts: Counts) {
    this.#counts = counts;
  }

  push(bytes: Uint8Array): void {
    let buffer = this.#pending.length ? concat(this.#pending, bytes) : bytes;
    while (buffer.length >= 2) {
      const b1 = buffer[1]!;
      let length = b1 & 0x7f;
      let header = 2;
      if (length === 126) {
        if (buffer.length < 4) break;
        length = (buffer[2]! << 8) | buffer[3]!;
        header = 4;
      } else if (length === 127) {
        if (buffer.length < 10) break;
        const view = new DataView(buffer.buffer, buffer.byteOffset + 2, 8);
        length = view.getUint32(0) * 2 ** 32 + view.getUint32(4);
        header = 10;
      }
      const masked = (b1 & 0x80) !== 0;
      const start = header + (masked ? 4 : 0);
      if (buffer.length < start + length) break;
      const opcode = buffer[0]! & 0x0f;
      if (opcode === 2) this.#count("data");
      else if (opcode === 1) {
        const payload = buffer.slice(start, start + length);
        if (masked) {
          const mask = buffer.subarray(header, header + 4);
          for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
        }
        const text = this.#decoder.decode(payload);
        this.#count(/"t":"(\w+)"/.exec(text)?.[1] ?? "text");
      }
      buffer = buffer.subarray(start + length);
    }
    this.#pending = buffer.slice();
  }

  #count(kind: string): void {
    this.#counts.set(kind, (this.#counts.get(kind) ?? 0) + 1);
  }
}

/** The relay: the daemon dials {@linkcode FrameCounter.url}; each connection is relayed to the controller. */
export class FrameCounter implements AsyncDisposable {
  /** Daemon → controller messages. */
  readonly up: Counts = new Map();
  /** Controller → daemon messages. */
  readonly down: Counts = new Map();
  readonly #listener: Deno.TcpListener;
  readonly #target: URL;
  readonly #plainV1: boolean;
  readonly #conns = new Set<Deno.Conn>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #accepting: Promise<void>;

  private constructor(target: URL, options: FrameCounterOptions) {
    this.#target = target;
    this.#plainV1 = options.plainV1 ?? false;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#accepting = this.#accept();
  }

  /** Relay to the controller at `serverUrl` (its `ws://` daemon URL). */
  static start(serverUrl: string, options: FrameCounterOptions = {}): FrameCounter {
    return new FrameCounter(new URL(serverUrl), options);
  }

  /** The URL a daemon dials instead of the controller's. */
  get url(): string {
    const url = new URL(this.#target);
    url.port = String(this.#listener.addr.port);
    return url.href;
  }

  /** Messages of `kind` (or of every kind) in `direction` since the last reset. */
  count(direction: "up" | "down", kind?: string): number {
    const counts = direction === "up" ? this.up : this.down;
    if (kind !== undefined) return counts.get(kind) ?? 0;
    let total = 0;
    for (const n of counts.values()) total += n;
    return total;
  }

  /** Start counting afresh. */
  reset(): void {
    this.up.clear();
    this.down.clear();
  }

  async #accept(): Promise<void> {
    for await (const daemonSide of this.#listener) {
      let controllerSide: Deno.TcpConn;
      try {
        controllerSide = await Deno.connect({
          hostname: this.#target.hostname,
          port: Number(this.#target.port),
        });
      } catch {
        daemonSide.close();
        continue;
      }
      daemonSide.setNoDelay(true);
      controllerSide.setNoDelay(true);
      this.#conns.add(daemonSide).add(controllerSide);
      this.#track(this.#pipe(daemonSide, controllerSide, this.up, this.#plainV1));
      this.#track(this.#pipe(controllerSide, daemonSide, this.down, false));
    }
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  async #pipe(from: Deno.Conn, to: Deno.Conn, counts: Counts, rewrite: boolean): Promise<void> {
    const parser = new FrameParser(counts);
    const buffer = new Uint8Array(256 * 1024);
    let head: Uint8Array | null = new Uint8Array(0);
    try {
      while (true) {
        const n = await from.read(buffer);
        if (n === null) break;
        let bytes: Uint8Array = buffer.subarray(0, n);
        if (head !== null) {
          // The HTTP head of the upgrade (or of its answer) passes whole, rewritten if asked.
          head = concat(head, bytes);
          const end = indexOf(head, HEAD_END);
          if (end < 0) continue;
          let text = new TextDecoder().decode(head.subarray(0, end + 4));
          if (rewrite) {
            text = text.replace(/^(sec-websocket-protocol:).*$/im, "$1 sandd.v1");
          }
          await writeAll(to, new TextEncoder().encode(text));
          bytes = head.subarray(end + 4);
          head = null;
        }
        parser.push(bytes);
        await writeAll(to, bytes);
      }
    } catch {
      // a side closed
    } finally {
      for (const conn of [from, to]) {
        if (this.#conns.delete(conn)) {
          try {
            conn.close();
          } catch {
            // closed already
          }
        }
      }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    await this.#accepting.catch(() => {});
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
    this.#conns.clear();
    await Promise.all(this.#tasks);
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}
