// Test helper: a raw HTTP/1.1 client over one TCP or TLS connection, for conformance and attack tests that must
// control every byte the server sees and check every byte it answers. Every read has a deadline (it then throws
// ReadTimeoutError and leaves the connection as it was, so nothing waits forever); responses are parsed strictly
// (status line, headers, body by Content-Length, chunked or until close) and kept raw, so a test can assert the
// exact bytes. Also: WebSocket frames by hand (masked client frames, server frames), chunked bodies, Latin-1 bytes.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** How long a read waits for the server by default. */
export const READ_DEADLINE_MS = 10_000;

/** One response as read off the wire. */
export interface RawResponse {
  /** `HTTP/1.1` (or whatever the server wrote). */
  version: string;
  status: number;
  reason: string;
  /** Header fields in order, names as written. */
  fields: [string, string][];
  /** Header fields by lower-case name (repeated fields joined with ", "). */
  headers: Headers;
  /** The head as written, up to and including the empty line. */
  head: string;
  /** The body, de-chunked. */
  body: Uint8Array;
  /** Sizes of the chunks as framed, when the body was chunked. */
  chunks: number[] | undefined;
  /** Trailer fields of a chunked body. */
  trailers: [string, string][];
  /** False when the connection ended before the body was complete (truncation). */
  complete: boolean;
}

/** A response's status line and fields, before its body. */
export type ResponseHead = Omit<RawResponse, "body" | "chunks" | "trailers" | "complete">;

/** Options of {@linkcode RawHttp.connect}. */
export interface RawHttpOptions {
  /** Speak TLS, trusting these CA certificates (PEM). @default undefined (plain TCP) */
  caCerts?: string[] | undefined;
  /** @default "127.0.0.1" */
  hostname?: string | undefined;
}

/** The server closed the connection (or reset it) before what was asked for arrived. */
export class PeerClosedError extends Error {
  override name = "PeerClosedError";
}

/** A read found nothing within its deadline. */
export class ReadTimeoutError extends Error {
  override name = "ReadTimeoutError";
}

/** A raw HTTP/1.1 client connection with a read buffer. */
export class RawHttp implements AsyncDisposable {
  readonly conn: Deno.Conn;
  #buffer = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;
  #eof = false;
  #closed = false;
  #scratch = new Uint8Array(64 * 1024);
  #pending:
    | Promise<{ n: number | null; scratch: Uint8Array; error: unknown }>
    | undefined;
  /** Bytes read off the socket so far. */
  received = 0;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  /** Connect to `port` on loopback (TLS when `caCerts` is given). */
  static async connect(port: number, options: RawHttpOptions = {}): Promise<RawHttp> {
    const hostname = options.hostname ?? "127.0.0.1";
    const conn = options.caCerts
      ? await Deno.connectTls({ hostname, port, caCerts: options.caCerts })
      : await Deno.connect({ hostname, port });
    if (options.caCerts) await (conn as Deno.TlsConn).handshake();
    return new RawHttp(conn);
  }

  /** Whether the server has ended the connection (EOF or reset seen). */
  get eof(): boolean {
    return this.#eof;
  }

  /** Bytes received and not consumed yet. */
  get buffered(): Uint8Array {
    return this.#buffer.subarray(this.#start, this.#end);
  }

  /** Write all of `data`; a string goes as UTF-8 (pass {@linkcode latin1}'s bytes for raw control bytes). */
  async write(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    for (let at = 0; at < bytes.length;) at += await this.conn.write(bytes.subarray(at));
  }

  /**
   * Read more bytes into the buffer; false at EOF. A reset counts as EOF. A read that outlives its deadline stays
   * pending (into its own scratch buffer) and is picked up by the next call, so a deadline never loses bytes and
   * never closes the connection.
   */
  async #fill(deadlineMs: number): Promise<boolean> {
    if (this.#eof) return false;
    if (this.#pending === undefined) {
      const scratch = this.#scratch;
      this.#pending = this.conn.read(scratch).then(
        (n) => ({ n, scratch, error: undefined }),
        (error: unknown) => ({ n: null, scratch, error }),
      );
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const result = await Promise.race([
      this.#pending,
      new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), deadlineMs)),
    ]);
    clearTimeout(timer);
    if (result === "timeout") {
      throw new ReadTimeoutError(`Nothing received within ${deadlineMs} ms`);
    }
    this.#pending = undefined;
    if (result.error !== undefined && this.#closed) throw result.error;
    if (result.n === null) {
      // EOF, or ECONNRESET and the like: the server ended the connection.
      this.#eof = true;
      return false;
    }
    this.#append(result.scratch.subarray(0, result.n));
    this.received += result.n;
    return true;
  }

  #append(bytes: Uint8Array): void {
    if (this.#start > 0 && this.#start === this.#end) this.#start = this.#end = 0;
    if (this.#end + bytes.length > this.#buffer.length) {
      const live = this.#end - this.#start;
      const size = Math.max(this.#buffer.length, (live + bytes.length) * 2);
      const next = size > this.#buffer.length ? new Uint8Array(size) : this.#buffer;
      next.set(this.#buffer.subarray(this.#start, this.#end));
      this.#buffer = next;
      this.#start = 0;
      this.#end = live;
    }
    this.#buffer.set(bytes, this.#end);
    this.#end += bytes.length;
  }

  /** Wait until at least `n` bytes are buffered; false when the connection ended first. */
  async #want(n: number, deadlineMs: number): Promise<boolean> {
    while (this.#end - this.#start < n) {
      if (!(await this.#fill(deadlineMs))) return false;
    }
    return true;
  }

  /** Take `n` buffered bytes (a copy). */
  #take(n: number): Uint8Array {
    const out = this.#buffer.slice(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  /** Read one CRLF-terminated line (without the CRLF); null at EOF before a full line. */
  async readLine(deadlineMs = READ_DEADLINE_MS): Promise<string | null> {
    let scanned = 0; // relative to #start: a fill may move the buffered bytes
    while (true) {
      for (let i = this.#start + scanned; i + 1 < this.#end; i++) {
        if (this.#buffer[i] === 13 && this.#buffer[i + 1] === 10) {
          const line = latin1Decode(this.#buffer.subarray(this.#start, i));
          this.#start = i + 2;
          return line;
        }
      }
      scanned = Math.max(0, this.#end - this.#start - 1);
      if (!(await this.#fill(deadlineMs))) return null;
    }
  }

  /** Read exactly `n` bytes; what arrived when the connection ended first, with `complete` false. */
  async readBytes(
    n: number,
    deadlineMs = READ_DEADLINE_MS,
  ): Promise<{ bytes: Uint8Array; complete: boolean }> {
    const complete = await this.#want(n, deadlineMs);
    return { bytes: this.#take(Math.min(n, this.#end - this.#start)), complete };
  }

  /**
   * Read one response head (status line and fields); throws {@linkcode PeerClosedError} when the connection
   * ended before a full head.
   */
  async readHead(
    deadlineMs = READ_DEADLINE_MS,
  ): Promise<ResponseHead> {
    const statusLine = await this.readLine(deadlineMs);
    if (statusLine === null) {
      throw new PeerClosedError(
        `The connection ended before a status line (had ${
          JSON.stringify(latin1Decode(this.buffered))
        })`,
      );
    }
    const match = /^(HTTP\/\d\.\d) (\d{3}) ?(.*)$/.exec(statusLine);
    if (!match) throw new Error(`Bad status line ${JSON.stringify(statusLine)}`);
    let head = `${statusLine}\r\n`;
    const fields: [string, string][] = [];
    const headers = new Headers();
    while (true) {
      const line = await this.readLine(deadlineMs);
      if (line === null) throw new PeerClosedError(`The connection ended inside a head: ${head}`);
      head += `${line}\r\n`;
      if (line === "") break;
      const colon = line.indexOf(":");
      if (colon <= 0) throw new Error(`Bad header line ${JSON.stringify(line)}`);
      const name = line.slice(0, colon);
      const value = line.slice(colon + 1).trim();
      fields.push([name, value]);
      headers.append(name, value);
    }
    return {
      version: match[1]!,
      status: Number(match[2]),
      reason: match[3]!,
      fields,
      headers,
      head,
    };
  }

  /**
   * Read one response: interim (1xx) answers are returned as they come (call again for the final one). The body
   * is read by Content-Length, chunked framing, or until the connection closes; none for `HEAD`, 1xx, 204, 304.
   */
  async readResponse(
    options: { method?: string; deadlineMs?: number } = {},
  ): Promise<RawResponse> {
    const head = await this.readHead(options.deadlineMs);
    return await this.readBody(head, options);
  }

  /** Read the body that `head` (from {@linkcode readHead}) announces, as {@linkcode readResponse} does. */
  async readBody(
    head: ResponseHead,
    options: { method?: string; deadlineMs?: number } = {},
  ): Promise<RawResponse> {
    const deadlineMs = options.deadlineMs ?? READ_DEADLINE_MS;
    const base = { ...head, chunks: undefined, trailers: [] as [string, string][] };
    if (
      options.method === "HEAD" || (head.status >= 100 && head.status < 200) ||
      head.status === 204 || head.status === 304
    ) {
      return { ...base, body: new Uint8Array(0), complete: true };
    }
    const te = head.headers.get("transfer-encoding");
    if (te !== null) {
      if (te.toLowerCase() !== "chunked") throw new Error(`Unexpected transfer-encoding ${te}`);
      return await this.#readChunked(head, deadlineMs);
    }
    const length = head.headers.get("content-length");
    if (length !== null) {
      if (!/^\d+$/.test(length)) throw new Error(`Bad content-length in the answer: ${length}`);
      const { bytes, complete } = await this.readBytes(Number(length), deadlineMs);
      return { ...base, body: bytes, complete };
    }
    const rest = await this.readToEnd(deadlineMs);
    return { ...base, body: rest, complete: true };
  }

  async #readChunked(
    head: ResponseHead,
    deadlineMs: number,
  ): Promise<RawResponse> {
    const parts: Uint8Array[] = [];
    const chunks: number[] = [];
    const trailers: [string, string][] = [];
    const done = (complete: boolean): RawResponse => ({
      ...head,
      body: concat(parts),
      chunks,
      trailers,
      complete,
    });
    while (true) {
      const line = await this.readLine(deadlineMs);
      if (line === null) return done(false);
      const size = /^([0-9a-fA-F]+)(;.*)?$/.exec(line);
      if (!size) throw new Error(`Bad chunk size line ${JSON.stringify(line)}`);
      const n = parseInt(size[1]!, 16);
      chunks.push(n);
      if (n === 0) break;
      const { bytes, complete } = await this.readBytes(n, deadlineMs);
      parts.push(bytes);
      if (!complete) return done(false);
      const crlf = await this.readLine(deadlineMs);
      if (crlf === null) return done(false);
      if (crlf !== "") throw new Error(`Chunk not followed by CRLF: ${JSON.stringify(crlf)}`);
    }
    while (true) {
      const line = await this.readLine(deadlineMs);
      if (line === null) return done(false);
      if (line === "") return done(true);
      const colon = line.indexOf(":");
      trailers.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
    }
  }

  /** Everything until the server ends the connection. */
  async readToEnd(deadlineMs = READ_DEADLINE_MS): Promise<Uint8Array> {
    while (await this.#fill(deadlineMs));
    return this.#take(this.#end - this.#start);
  }

  /**
   * Wait for the server to end the connection, and return what it sent before (should be nothing). Throws
   * {@linkcode ReadTimeoutError} when it stays open past the deadline.
   */
  async expectClosed(deadlineMs = READ_DEADLINE_MS): Promise<string> {
    return latin1Decode(await this.readToEnd(deadlineMs));
  }

  /** Whether anything (or EOF) arrives within `ms`: false when the connection stayed quiet and open. */
  async somethingWithin(ms: number): Promise<boolean> {
    if (this.#end > this.#start || this.#eof) return true;
    try {
      await this.#fill(ms);
      return true;
    } catch (error) {
      if (error instanceof ReadTimeoutError) return false;
      throw error;
    }
  }

  /** Close the connection (again is fine). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // Closed already.
    }
  }

  /** Half-close: no more bytes from us (TCP only). */
  async closeWrite(): Promise<void> {
    await this.conn.closeWrite();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

/** Bytes of a string where each char is one byte (Latin-1), for heads with raw control bytes. */
export function latin1(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff;
  return out;
}

/** A Latin-1 view of bytes (every byte one char). */
export function latin1Decode(bytes: Uint8Array): string {
  let text = "";
  for (let at = 0; at < bytes.length; at += 8192) {
    text += String.fromCharCode(...bytes.subarray(at, at + 8192));
  }
  return text;
}

/** UTF-8 text of a body. */
export function text(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/** Concatenate byte arrays. */
export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** A masked client WebSocket frame (FIN set) with `opcode` (1 text, 2 binary, 8 close). */
export function clientFrame(opcode: number, payload: string | Uint8Array): Uint8Array {
  const data = typeof payload === "string" ? encoder.encode(payload) : payload;
  const mask = crypto.getRandomValues(new Uint8Array(4));
  const lengthBytes = data.length < 126 ? 0 : data.length < 65536 ? 2 : 8;
  const frame = new Uint8Array(2 + lengthBytes + 4 + data.length);
  frame[0] = 0x80 | opcode;
  if (lengthBytes === 0) frame[1] = 0x80 | data.length;
  else if (lengthBytes === 2) {
    frame[1] = 0x80 | 126;
    new DataView(frame.buffer).setUint16(2, data.length);
  } else {
    frame[1] = 0x80 | 127;
    new DataView(frame.buffer).setBigUint64(2, BigInt(data.length));
  }
  frame.set(mask, 2 + lengthBytes);
  const at = 2 + lengthBytes + 4;
  for (let i = 0; i < data.length; i++) frame[at + i] = data[i]! ^ mask[i & 3]!;
  return frame;
}

/** Read one server WebSocket frame (unmasked, as a server must send). */
export async function readServerFrame(
  http: RawHttp,
  deadlineMs = READ_DEADLINE_MS,
): Promise<{ fin: boolean; opcode: number; masked: boolean; payload: Uint8Array }> {
  const first = await http.readBytes(2, deadlineMs);
  if (!first.complete) throw new PeerClosedError("The connection ended before a WebSocket frame");
  const [b0, b1] = first.bytes as unknown as [number, number];
  let length = b1 & 0x7f;
  if (length === 126) {
    const ext = await http.readBytes(2, deadlineMs);
    length = new DataView(ext.bytes.buffer).getUint16(0);
  } else if (length === 127) {
    const ext = await http.readBytes(8, deadlineMs);
    length = Number(new DataView(ext.bytes.buffer).getBigUint64(0));
  }
  const masked = (b1 & 0x80) !== 0;
  if (masked) await http.readBytes(4, deadlineMs);
  const body = await http.readBytes(length, deadlineMs);
  if (!body.complete) throw new PeerClosedError("The connection ended inside a WebSocket frame");
  return { fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, masked, payload: body.bytes };
}

/** The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`. */
export async function websocketAccept(key: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-1",
    encoder.encode(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`),
  );
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

/** Poll `probe` every `everyMs` until it returns the same value `stableFor` times in a row; returns that value. */
export async function settled<T>(
  probe: () => T,
  options: { everyMs?: number; stableFor?: number; deadlineMs?: number } = {},
): Promise<T> {
  const everyMs = options.everyMs ?? 100;
  const stableFor = options.stableFor ?? 5;
  const deadline = performance.now() + (options.deadlineMs ?? 30_000);
  let last = probe();
  let same = 0;
  while (same < stableFor) {
    if (performance.now() > deadline) throw new Error(`Still changing after the deadline: ${last}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
    const now = probe();
    same = Object.is(now, last) ? same + 1 : 0;
    last = now;
  }
  return last;
}
