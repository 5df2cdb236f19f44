// A NATS transport on Deno's own TCP (`Deno.connect`, `Deno.startTls`) for the `@nats-io` client, in place of the
// `node:net` socket of `@nats-io/transport-node`: the relay moves every relayed byte through NATS twice (owner and
// reading node), and the `node:net` layer's per-write callbacks and stream buffering cost CPU on both. Reads go
// straight into the client's parser (one copy out of a reused buffer); writes queued while one is under way go out
// as one.
//
// The client's contract (`Transport` of `@nats-io/nats-core`): `connect` dials, reads the server's INFO (kept: the
// parser gets it first), upgrades to TLS when the server requires or offers it, and resolves; the async iterator
// yields what arrives until the socket ends; `closed()` resolves (with the error, if any) when the socket ends or
// `close`/`disconnect` ends it, which is what makes the client reconnect; `discard` drops a transport the client
// replaced, without telling it. TLS client certificates are not possible on an upgraded Deno connection: a
// cluster with `tls.certFile` uses `@nats-io/transport-node` (cluster.ts).

import {
  checkOptions,
  type ConnectionOptions,
  type Deferred,
  deferred,
  errors,
  extractProtocolMessage,
  INFO,
  type NatsConnection,
  NatsConnectionImpl,
  type Server,
  type ServerInfo,
  setTransportFactory,
  type Transport,
} from "@nats-io/transport-node";

/** Bytes of the reused read buffer. */
const READ_BYTES = 256 * 1024;

/** Join byte arrays into one. */
function concat(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  let total = 0;
  for (const part of parts) total += part.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** A NATS client transport over `Deno.Conn` (see the file's header). */
export class DenoNatsTransport implements Transport {
  readonly lang = "nats.js";
  readonly version = "sandd-deno-1";
  closeError?: Error;
  #conn: Deno.Conn | null = null;
  #encrypted = false;
  #connected = false;
  #done = false;
  readonly #buffer = new Uint8Array(READ_BYTES);
  /** What arrived and the iterator has not yielded yet. */
  #yields: Uint8Array[] = [];
  #signal: Deferred<void> = deferred<void>();
  readonly #closed: Deferred<void | Error> = deferred<void | Error>();
  /** Frames waiting for the write under way. */
  #queue: Uint8Array[] = [];
  #writing: Promise<void> | null = null;

  get isClosed(): boolean {
    return this.#done;
  }

  async connect(server: Server, options: ConnectionOptions): Promise<void> {
    try {
      const tcp = await Deno.connect({ hostname: server.hostname, port: server.port });
      this.#conn = tcp;
      tcp.setNoDelay(true);
      if (this.#done) throw new errors.ConnectionError("the transport was closed while dialing");
      const info = await this.#peekInfo();
      checkOptions(info, options);
      const tlsRequired = info.tls_required === true;
      if (tlsRequired || (info.tls_available === true && options.tls !== null)) {
        const tls = typeof options.tls === "object" && options.tls !== null ? options.tls : {};
        if (tls.certFile || tls.cert || tls.keyFile || tls.key) {
          throw new errors.ConnectionError(
            "TLS client certificates need the node transport (cluster.tls.certFile)",
          );
        }
        const caCerts = tls.caFile
          ? [await Deno.readTextFile(tls.caFile)]
          : Array.isArray(tls.ca)
          ? tls.ca.map(String)
          : typeof tls.ca === "string"
          ? [tls.ca]
          : undefined;
        this.#conn = await Deno.startTls(tcp, {
          hostname: server.tlsName || server.hostname,
          ...(caCerts ? { caCerts } : {}),
        });
        await (this.#conn as Deno.TlsConn).handshake();
        this.#encrypted = true;
      }
      if (this.#done) throw new errors.ConnectionError("the transport was closed while connecting");
      this.#connected = true;
      void this.#readLoop();
    } catch (error) {
      this.#dropConn();
      if (error instanceof Deno.errors.ConnectionRefused) {
        throw new errors.ConnectionError("connection refused", { cause: error });
      }
      throw error instanceof Error
        ? error
        : new errors.ConnectionError(`error connecting: ${String(error)}`);
    }
  }

  /** Read until the server's INFO line, keeping what was read for the parser. */
  async #peekInfo(): Promise<ServerInfo> {
    for (;;) {
      const n = await this.#conn!.read(this.#buffer);
      if (n === null) throw new errors.ConnectionError("the NATS server closed before its INFO");
      this.#yields.push(this.#buffer.slice(0, n));
      const line = extractProtocolMessage(concat(this.#yields));
      if (line === "") continue;
      const m = INFO.exec(line);
      if (!m) {
        throw new errors.ConnectionError(
          `Unexpected first line from the NATS server: ${JSON.stringify(line.slice(0, 80))}`,
        );
      }
      return JSON.parse(m[1]!) as ServerInfo;
    }
  }

  async #readLoop(): Promise<void> {
    let error: Error | undefined;
    try {
      for (;;) {
        const conn = this.#conn;
        if (!conn || this.#done) return;
        const n = await conn.read(this.#buffer);
        if (n === null) break;
        this.#yields.push(this.#buffer.slice(0, n));
        this.#signal.resolve();
      }
    } catch (e) {
      if (this.#done) return;
      error = e instanceof Error ? e : new Error(String(e));
    }
    await this.#end(error, false);
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Uint8Array> {
    return this.#iterate();
  }

  async *#iterate(): AsyncIterableIterator<Uint8Array> {
    for (;;) {
      if (this.#yields.length === 0) {
        if (this.#done) return;
        await this.#signal;
      }
      const yields = this.#yields;
      this.#yields = [];
      for (const chunk of yields) yield chunk;
      if (this.#done && this.#yields.length === 0) return;
      if (this.#yields.length === 0) this.#signal = deferred<void>();
    }
  }

  isEncrypted(): boolean {
    return this.#encrypted;
  }

  send(frame: Uint8Array): void {
    if (this.#done || !this.#conn) return;
    this.#queue.push(frame);
    if (this.#writing === null) {
      this.#writing = this.#writeLoop().finally(() => this.#writing = null);
    }
  }

  /** Write what is queued, all of it in one write when several frames wait. */
  async #writeLoop(): Promise<void> {
    while (this.#queue.length > 0) {
      const conn = this.#conn;
      if (!conn || this.#done) {
        this.#queue = [];
        return;
      }
      const data = concat(this.#queue);
      this.#queue = [];
      try {
        let at = 0;
        while (at < data.length) at += await conn.write(at === 0 ? data : data.subarray(at));
      } catch {
        // A write error ends the socket: its read fails and the client reconnects.
        this.#queue = [];
        return;
      }
    }
  }

  close(err?: Error): Promise<void> {
    return this.#end(err, false);
  }

  disconnect(): void {
    void this.#end(undefined, true);
  }

  closed(): Promise<void | Error> {
    return this.#closed;
  }

  /** Drop the socket without telling the client (it replaced this transport). */
  discard(): void {
    this.#done = true;
    this.#queue = [];
    this.#dropConn();
    this.#signal.resolve();
  }

  #dropConn(): void {
    const conn = this.#conn;
    this.#conn = null;
    try {
      conn?.close();
    } catch {
      // already closed
    }
  }

  /** End the socket (`flush`: after what is queued) and tell the client. */
  async #end(err: Error | undefined, flush: boolean): Promise<void> {
    if (!this.#connected) {
      // Closed while dialing (the client gave up on it): a dial still under way stops, nobody is told.
      this.#done = true;
      this.#dropConn();
      return;
    }
    if (this.#done) {
      this.#dropConn();
      return;
    }
    if (err) this.closeError = err;
    if (flush && !err && this.#writing) await this.#writing.catch(() => {});
    this.#done = true;
    this.#dropConn();
    this.#signal.resolve();
    this.#closed.resolve(err);
  }
}

/**
 * Connect to NATS with {@linkcode DenoNatsTransport} (as `connect` of `@nats-io/transport-node` does with its own).
 *
 * The client keeps one transport factory per process: the last `connect` of either kind chooses what every
 * connection dials with from then on (both work alike).
 */
export function connectDeno(options: ConnectionOptions): Promise<NatsConnection> {
  setTransportFactory({ factory: () => new DenoNatsTransport() });
  return NatsConnectionImpl.connect(options);
}
