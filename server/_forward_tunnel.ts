// One tunnelled TCP connection, controller side: a `connect` request and its two streams, built on the shared
// stream classes (InboundStream for what the worker's server sends on `sid`, acknowledged as the caller reads;
// OutboundStream for what the caller writes on `input`, sent as the daemon grants credit). Used by `forward`
// (a local TCP client per connection) and `exposeHttp` (an HTTP request or a WebSocket per connection).
import type { Connection } from "./_connection.ts";
import { DaemonDisconnectedError } from "./errors.ts";
import { InboundStream } from "./_inbound_stream.ts";
import { OutboundStream } from "./_outbound_stream.ts";

/** Receive window of a tunnel connection (what the worker may send ahead of the reader), in bytes. */
export const TUNNEL_WINDOW: number = 4 * 1024 * 1024;

/** Bytes queued on a daemon's link above which tunnel writers wait (well below the controller's drop limit). */
const LINK_BUFFER_LIMIT = 16 * 1024 * 1024;

/** Options of {@linkcode TunnelSocket.open}. */
export interface TunnelOpenOptions {
  /** Host on the worker. @default "127.0.0.1" (the daemon's default) */
  host?: string;
  /** Receive window. @default {TUNNEL_WINDOW} */
  window?: number;
}

/** The connection was reset by the daemon (or its link dropped) with this reason. */
export class TunnelResetError extends Error {
  /** Stable code taken from the reason (`ECONNRESET`, `EPIPE`, ...), or `ECONNRESET`. */
  readonly code: string;
  constructor(message: string, code = "ECONNRESET") {
    super(message);
    this.name = "TunnelResetError";
    this.code = code;
  }
}

/** Every open tunnel connection of a server, so a daemon that drops fails its connections at once. */
export class TunnelSet {
  readonly #open: Set<TunnelSocket> = new Set();

  add(tunnel: TunnelSocket): void {
    this.#open.add(tunnel);
  }

  delete(tunnel: TunnelSocket): void {
    this.#open.delete(tunnel);
  }

  get size(): number {
    return this.#open.size;
  }

  /** A daemon link closed: fail the connections it carried. */
  disconnected(): void {
    for (const tunnel of [...this.#open]) {
      if (tunnel.conn.closed) tunnel.disconnected();
    }
  }
}

/** A duplex byte connection to a port on the worker. */
export class TunnelSocket {
  readonly conn: Connection;
  readonly #set: TunnelSet;
  readonly #inbound: InboundStream;
  readonly #outbound: OutboundStream;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #input: number;
  #readEnded = false;
  #writeEnded = false;
  #disposed = false;
  /** Why the connection was aborted (reads and writes fail with it). */
  #error: Error | null = null;

  private constructor(
    conn: Connection,
    set: TunnelSet,
    inbound: InboundStream,
    outbound: OutboundStream,
    input: number,
  ) {
    this.conn = conn;
    this.#set = set;
    this.#inbound = inbound;
    this.#outbound = outbound;
    this.#input = input;
    this.#reader = inbound.readable.getReader();
    set.add(this);
  }

  /**
   * Open a connection to `port` on the daemon of `conn`. Rejects with the daemon's error (`ECONNREFUSED` naming
   * the port, `POLICY`, ...) or `DaemonDisconnectedError`.
   */
  static async open(
    conn: Connection,
    set: TunnelSet,
    port: number,
    options: TunnelOpenOptions = {},
  ): Promise<TunnelSocket> {
    const window = options.window ?? TUNNEL_WINDOW;
    const sid = conn.nextSid();
    const input = conn.nextSid();
    let failure: Error | null = null;
    const inbound = new InboundStream({
      name: `tunnel to port ${port}`,
      window,
      from: 0,
      // A tunnel has no gaps: a daemon that reports one broke the protocol.
      onGap: (gap) => {
        failure = new TunnelResetError(
          `The daemon reported lost bytes ${gap.from}-${gap.to} on a tunnel connection`,
          "PROTOCOL",
        );
        conn.send({ t: "reset", sid, reason: "PROTOCOL: gaps are not allowed on a tunnel" });
        conn.send({ t: "reset", sid: input, reason: "PROTOCOL: gaps are not allowed on a tunnel" });
        inbound.fail(failure);
      },
    });
    inbound.bind(conn, sid);
    let reply;
    try {
      reply = await conn.request("connect", {
        port,
        sid,
        input,
        window,
        ...(options.host !== undefined ? { host: options.host } : {}),
      });
    } catch (error) {
      inbound.fail(error as Error);
      throw error;
    }
    const outbound = new OutboundStream({ window: reply.window, daemonId: conn.info.id });
    outbound.bind(conn, input, 0);
    if (conn.closed) {
      inbound.fail(new DaemonDisconnectedError(conn.info.id));
      outbound.disconnected();
    }
    return new TunnelSocket(conn, set, inbound, outbound, input);
  }

  /** The next bytes from the worker's server, or null once it shut its write side. Throws on a reset. */
  async read(): Promise<Uint8Array | null> {
    try {
      const { value, done } = await this.#reader.read();
      if (this.#error) throw this.#error;
      if (done) {
        this.#readEnded = true;
        this.#settle();
        return null;
      }
      return value;
    } catch (error) {
      throw resetError(error);
    }
  }

  /** Send bytes (resolves once the daemon has credit for them; the bytes are copied). Throws on a reset. */
  async write(bytes: Uint8Array): Promise<void> {
    if (this.#error) throw this.#error;
    // Many connections each within their credit could still fill the link's send buffer past the limit at which
    // the controller drops a daemon: wait for it to drain first.
    while (
      this.conn.socket.bufferedAmount > LINK_BUFFER_LIMIT && !this.conn.closed && !this.#error
    ) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    try {
      await this.#outbound.write(bytes);
    } catch (error) {
      throw resetError(error);
    }
  }

  /** Half-close: the worker's server reads end-of-file after the bytes written. */
  closeWrite(): void {
    if (this.#writeEnded) return;
    this.#writeEnded = true;
    this.#outbound.end();
    this.#settle();
  }

  /** Whether the connection may carry another exchange: nothing ended, failed or closed. */
  get reusable(): boolean {
    return !this.#disposed && this.#error === null && !this.#inbound.ended && !this.#writeEnded &&
      !this.conn.closed;
  }

  /** Whether the worker's side has ended (end-of-file read). */
  get readEnded(): boolean {
    return this.#readEnded;
  }

  /** Abort the connection: the daemon closes its socket. */
  abort(reason = "the controller's client closed the connection"): void {
    if (this.#disposed) return;
    const text = `ECONNRESET: ${reason}`.slice(0, 1024);
    this.#error = new TunnelResetError(reason);
    this.conn.send({ t: "reset", sid: this.#input, reason: text });
    // Cancelling the reader resets `sid` and unbinds it.
    this.#reader.cancel(text).catch(() => {});
    this.#dispose(new TunnelResetError(reason));
  }

  /** The daemon's link closed. */
  disconnected(): void {
    if (this.#disposed) return;
    const error = this.#error = new DaemonDisconnectedError(this.conn.info.id);
    this.#inbound.fail(error);
    this.#dispose(error);
  }

  /** Both directions ended: release the routes. */
  #settle(): void {
    if (this.#readEnded && this.#writeEnded) {
      // Wait for the acknowledgement of the last bytes no longer: the daemon has them or resets.
      this.#dispose(new TunnelResetError("the tunnel connection is closed"));
    }
  }

  #dispose(error: Error): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#outbound.fail(error);
    this.#set.delete(this);
  }
}

/** The error a read or write failed with, as a tunnel error with a code where the reason has one. */
function resetError(error: unknown): Error {
  if (error instanceof DaemonDisconnectedError || error instanceof TunnelResetError) return error;
  const message = String((error as Error)?.message ?? error);
  const code = /reset by the daemon: (E[A-Z0-9_]+|PROTOCOL):/.exec(message)?.[1];
  return new TunnelResetError(message, code ?? "ECONNRESET");
}
