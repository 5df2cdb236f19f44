// A NATS transport on Deno's own TCP (`Deno.connect`, `Deno.startTls`) for the `@nats-io` client, in place of the
// `node:net` socket of `@nats-io/transport-node`: the relay moves every relayed byte through NATS twice (owner and
// reading node), and the `node:net` layer's per-write callbacks and stream buffering cost CPU on both. The client's
// parser gets whole messages (server/cluster/_nats_framing.ts: a large one is read into its own buffer and not
// copied); writes queued while one is under way go out as one.
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
import { onlyMessagesUnder, protocolCut } from "./_nats_framing.ts";

/**
 * Bytes of the read buffer: room for a whole relayed data frame's message (256 KiB of output, its 13-byte frame
 * header and the NATS message head), so that the buffer of one is not re-allocated and copied half way (with 256
 * KiB, 395 of 400 messages of a relayed stream were).
 */
const READ_BYTES = 320 * 1024;
/**
 * Frames at least this large that own their whole buffer are detached once written (the client packs every
 * publish into a fresh buffer and keeps no reference to what it hands over): the memory is freed now, and the next
 * message's fresh buffer reuses it, rather than touching new pages (a page fault each here) until a late garbage
 * collection. The client's small constant commands (PING, PONG) are never detached.
 */
const RELEASE_BYTES = 64 * 1024;
/** Complete messages of at least this many bytes are handed over in the read buffer itself (not copied). */
const HANDOFF_BYTES = 32 * 1024;
/** Largest message read into a buffer of its own size (larger ones reach the parser in parts). */
const MAX_ASSEMBLE_BYTES = 64 * 1024 * 1024;
/** Read buffers kept for reuse (see `recycle` of {@linkcode DenoNatsTransport}). */
const SPARE_BUFFERS = 2;

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

/** Free a written frame's memory now if it is large and owns its whole buffer (see `RELEASE_BYTES`). */
function release(frame: Uint8Array): void {
  const buffer = frame.buffer;
  if (
    frame.byteLength < RELEASE_BYTES || frame.byteOffset !== 0 ||
    frame.byteLength !== buffer.byteLength || !(buffer instanceof ArrayBuffer)
  ) return;
  try {
    buffer.transfer(0);
  } catch {
    // not detachable: the garbage collector frees it
  }
}

/** A NATS client transport over `Deno.Conn` (see the file's header). */
export class DenoNatsTransport implements Transport {
  /**
   * Subject prefix of the messages whose subscriber copies what it keeps before its callback returns (the relay's
   * `<prefix>.back.`): a read holding only such messages goes back into use once the parser has handled it, instead
   * of a fresh buffer per large message (the reading node's largest cost per relayed byte: fresh pages).
   */
  readonly #recycle: Uint8Array | null;
  /** Read buffers free for reuse, and the read buffer behind each chunk handed over for reuse. */
  readonly #spare: Uint8Array<ArrayBuffer>[] = [];
  readonly #reusable: WeakMap<Uint8Array, Uint8Array<ArrayBuffer>> = new WeakMap();
  readonly lang = "nats.js";
  readonly version = "sandd-deno-1";
  closeError?: Error;
  #conn: Deno.Conn | null = null;
  #encrypted = false;
  #connected = false;
  #done = false;
  /** The buffer of the reads before the INFO line. */
  readonly #buffer = new Uint8Array(4096);
  /** What arrived and the iterator has not yielded yet. */
  #yields: Uint8Array[] = [];
  #signal: Deferred<void> = deferred<void>();
  readonly #closed: Deferred<void | Error> = deferred<void | Error>();
  /** Frames waiting for the write under way. */
  #queue: Uint8Array[] = [];
  #writing: Promise<void> | null = null;

  constructor(recycle?: string) {
    this.#recycle = recycle ? new TextEncoder().encode(recycle) : null;
  }

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

  /**
   * Read until the socket ends, handing the parser whole protocol messages (server/cluster/_nats_framing.ts): a
   * large message is read into one buffer of its size and handed over as it is; small ones are copied out of the
   * buffer, which is then reused.
   */
  async #readLoop(): Promise<void> {
    let error: Error | undefined;
    let buf = new Uint8Array(READ_BYTES);
    let filled = 0;
    /** Make `buf` hold `size` bytes, keeping what it holds. */
    const grow = (size: number) => {
      const next = new Uint8Array(size);
      next.set(buf.subarray(0, filled));
      buf = next;
    };
    try {
      for (;;) {
        const conn = this.#conn;
        if (!conn || this.#done) return;
        const n = await conn.read(filled === 0 ? buf : buf.subarray(filled));
        if (n === null) break;
        filled += n;
        const cut = protocolCut(buf, filled);
        const want = cut.want <= MAX_ASSEMBLE_BYTES ? cut.want : 0;
        if (cut.end >= HANDOFF_BYTES) {
          const handed = buf.subarray(0, cut.end);
          if (this.#recycle && onlyMessagesUnder(buf, cut.end, this.#recycle)) {
            this.#reusable.set(handed, buf);
          }
          this.#yields.push(handed);
          const size = Math.max(READ_BYTES, want);
          const at = this.#spare.findIndex((b) => b.length >= size);
          const next = at >= 0 ? this.#spare.splice(at, 1)[0]! : new Uint8Array(size);
          next.set(buf.subarray(cut.end, filled));
          buf = next;
          filled -= cut.end;
        } else if (cut.end > 0) {
          this.#yields.push(buf.slice(0, cut.end));
          buf.copyWithin(0, cut.end, filled);
          filled -= cut.end;
          if (want > buf.length) grow(want);
        } else if (want > buf.length) {
          grow(want);
          continue;
        } else if (filled === buf.length) {
          // A line longer than the buffer, or a message over MAX_ASSEMBLE_BYTES: the parser takes it in parts.
          this.#yields.push(buf);
          buf = new Uint8Array(READ_BYTES);
          filled = 0;
        } else continue;
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
      for (const chunk of yields) {
        yield chunk;
        // The parser has handled it (and the subscriber's callbacks have returned): its buffer may be read into.
        const buffer = this.#reusable.get(chunk);
        if (buffer && this.#spare.length < SPARE_BUFFERS) this.#spare.push(buffer);
      }
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
      const frames = this.#queue;
      const data = concat(frames);
      this.#queue = [];
      try {
        let at = 0;
        while (at < data.length) at += await conn.write(at === 0 ? data : data.subarray(at));
      } catch {
        // A write error ends the socket: its read fails and the client reconnects.
        this.#queue = [];
        return;
      }
      release(data);
      if (frames.length > 1) { for (const frame of frames) release(frame); }
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
export function connectDeno(
  options: ConnectionOptions,
  recycle?: string,
): Promise<NatsConnection> {
  setTransportFactory({ factory: () => new DenoNatsTransport(recycle) });
  return NatsConnectionImpl.connect(options);
}
