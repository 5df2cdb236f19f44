// SandD's HTTP/1.1 engine, part 2: one connection's bytes. A read buffer that request heads and chunk-size lines are
// parsed in, reads for bodies straight into the chunks handed to the handler, and writes.

/** Size of a connection's first read buffer. */
const BUFFER_BYTES = 16 * 1024;
/** Largest read of body bytes into a new array (a reader that brings its own buffer sets its own size). */
const BODY_READ_BYTES = 64 * 1024;
/** Read buffers of ended connections kept for new ones (at most this many). */
const POOL_MAX = 256;
/**
 * Fresh memory is dear here: a new 16 KiB buffer cost 16-65 µs (page faults), a tenth of what the controller spends
 * on a daemon's whole connect, and every daemon connect is a new connection. A buffer goes back once its
 * connection ended with no read in flight: nothing else ever holds a view of it (bodies and the bytes past an
 * upgrade's head are copied out).
 */
const pool: Uint8Array<ArrayBuffer>[] = [];

/** A connection's read side and write side, as the engine uses them. */
export class Wire {
  readonly conn: Deno.Conn;
  /** Received bytes not consumed yet: `buffer[start, end)`. */
  buffer: Uint8Array<ArrayBuffer> = pool.pop() ?? new Uint8Array(BUFFER_BYTES);
  start = 0;
  end = 0;
  /** The peer ended its side (or the connection failed). */
  eof = false;
  /** The connection failed or was closed here. */
  broken = false;
  #reading: Promise<boolean> | null = null;
  #closed = false;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  /** Bytes received and not consumed. */
  get buffered(): number {
    return this.end - this.start;
  }

  /** Whether a read is on its way (nothing else may read until it lands). */
  get reading(): boolean {
    return this.#reading !== null;
  }

  /**
   * Read more into the buffer (keeping what is there, growing it up to `limit` bytes); false at the end of the
   * peer's data. Concurrent calls share one read.
   */
  fill(limit: number): Promise<boolean> {
    return this.#reading ??= this.#read(limit).finally(() => this.#reading = null);
  }

  async #read(limit: number): Promise<boolean> {
    if (this.eof) return false;
    if (this.end === this.buffer.length) {
      if (this.start > 0) {
        this.buffer.copyWithin(0, this.start, this.end);
        this.end -= this.start;
        this.start = 0;
      } else {
        if (this.buffer.length >= limit) throw new RangeError(`Over ${limit} bytes buffered`);
        const grown = new Uint8Array(Math.min(limit, this.buffer.length * 2));
        grown.set(this.buffer.subarray(0, this.end));
        this.buffer = grown;
      }
    } else if (this.start === this.end) {
      this.start = this.end = 0;
    }
    let n: number | null;
    try {
      n = await this.conn.read(this.buffer.subarray(this.end));
    } catch {
      this.broken = true;
      n = null;
    }
    if (n === null) {
      this.eof = true;
      return false;
    }
    this.end += n;
    return true;
  }

  /**
   * Up to `max` body bytes: the buffered ones first, else one read straight from the socket. Into `into` when given
   * (at most its length; the result is a view of it at its start), else into a new array. Null at the end of the
   * peer's data.
   */
  async take(max: number, into?: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer> | null> {
    if (into !== undefined) max = Math.min(max, into.length);
    // A read already on its way lands after the buffered bytes: those go first, without waiting for it.
    if (this.#reading && this.end === this.start) await this.#reading;
    const buffered = this.end - this.start;
    if (buffered > 0) {
      const n = Math.min(buffered, max);
      const source = this.buffer.subarray(this.start, this.start + n);
      this.start += n;
      if (into === undefined) return source.slice();
      into.set(source);
      return into.subarray(0, n);
    }
    if (this.eof) return null;
    const chunk = into ?? new Uint8Array(Math.min(max, BODY_READ_BYTES));
    let n: number | null;
    try {
      n = await this.conn.read(chunk.length > max ? chunk.subarray(0, max) : chunk);
    } catch {
      this.broken = true;
      n = null;
    }
    if (n === null) {
      this.eof = true;
      return null;
    }
    if (n === chunk.length) return chunk;
    // A short read into an array of ours is copied out at its size: a view would keep the whole array alive (a
    // client sending a byte per packet would make the handler hold 64 KiB per byte).
    return into === undefined && n < chunk.length ? chunk.slice(0, n) : chunk.subarray(0, n);
  }

  /** Write all of `bytes`; false when the connection failed. */
  async write(bytes: Uint8Array): Promise<boolean> {
    if (this.broken) return false;
    try {
      for (let at = 0; at < bytes.length;) at += await this.conn.write(bytes.subarray(at));
      return true;
    } catch {
      this.broken = true;
      return false;
    }
  }

  /** The socket now belongs to someone else (a WebSocket): this wire never touches it again. */
  detach(): void {
    this.#closed = true;
    this.broken = true;
    this.eof = true;
    this.#recycle();
  }

  /** Give the read buffer back (once ended, when no read can still land in it). */
  #recycle(): void {
    if (this.#reading !== null || this.buffer.length !== BUFFER_BYTES) return;
    if (pool.length < POOL_MAX) pool.push(this.buffer);
    this.buffer = EMPTY;
    this.start = this.end = 0;
  }

  /** Close the socket (once; never after {@linkcode Wire.detach}). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.broken = true;
    this.eof = true;
    try {
      this.conn.close();
    } catch {
      // Closed already.
    }
    this.#recycle();
  }
}

const EMPTY: Uint8Array<ArrayBuffer> = new Uint8Array(0);
