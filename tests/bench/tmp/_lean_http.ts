// A lean HTTP/1.1 keep-alive client over one TCP connection: one request at a time, a `content-length` answer
// read whole. It stands for the clients most API users run (curl, Python's http.client), whose per-request cost
// is far below Deno's fetch, so the bench can tell the API's own overhead from its client's.
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const CRLFCRLF = [13, 10, 13, 10] as const;

/** One keep-alive connection to `127.0.0.1:port`. */
export class LeanHttpClient {
  readonly #conn: Deno.TcpConn;
  /** The answer being read (grown when one does not fit). */
  #buffer = new Uint8Array(64 * 1024);
  /** The request being sent (grown when one does not fit). */
  #out = new Uint8Array(4 * 1024);

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  static async connect(port: number): Promise<LeanHttpClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    return new LeanHttpClient(conn);
  }

  /**
   * Send one request; resolves with the answer's body once all of it has arrived (2xx only). As a C client
   * would: the request encoded once into one buffer and written with one call, the answer's head found and its
   * length read in the bytes, only the head and the body decoded.
   */
  async request(method: string, path: string, body?: string): Promise<string> {
    const payload = body === undefined ? undefined : encoder.encode(body);
    const head = `${method} ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\n` +
      (payload === undefined
        ? "\r\n"
        : `content-type: application/json\r\ncontent-length: ${payload.length}\r\n\r\n`);
    const size = head.length * 3 + (payload?.length ?? 0);
    if (this.#out.length < size) this.#out = new Uint8Array(size);
    let length = encoder.encodeInto(head, this.#out).written;
    if (payload !== undefined) {
      this.#out.set(payload, length);
      length += payload.length;
    }
    await this.#write(this.#out.subarray(0, length));
    let filled = 0;
    let bodyAt = -1;
    let total = -1;
    let status = 0;
    while (true) {
      if (filled === this.#buffer.length) {
        const grown = new Uint8Array(this.#buffer.length * 2);
        grown.set(this.#buffer);
        this.#buffer = grown;
      }
      const n = await this.#conn.read(this.#buffer.subarray(filled));
      if (n === null) throw new Error(`Connection closed before the answer to ${method} ${path}`);
      filled += n;
      if (bodyAt < 0) {
        const end = indexOfHeadEnd(this.#buffer, filled);
        if (end < 0) continue;
        bodyAt = end + 4;
        const headText = decoder.decode(this.#buffer.subarray(0, end + 2));
        status = Number(headText.slice(9, 12));
        const declared = /\r\ncontent-length: *(\d+)/i.exec(headText);
        if (!declared) throw new Error(`Answer to ${method} ${path} has no content-length`);
        total = bodyAt + Number(declared[1]);
      }
      if (filled < total) continue;
      const answer = decoder.decode(this.#buffer.subarray(bodyAt, total));
      if (status < 200 || status > 299) throw new Error(`${method} ${path}: ${status} ${answer}`);
      return answer;
    }
  }

  async #write(bytes: Uint8Array): Promise<void> {
    for (let at = 0; at < bytes.length;) at += await this.#conn.write(bytes.subarray(at));
  }

  close(): void {
    this.#conn.close();
  }
}

/** Where `\r\n\r\n` starts in the first `filled` bytes, or -1. */
function indexOfHeadEnd(bytes: Uint8Array, filled: number): number {
  for (let i = bytes.indexOf(13); i >= 0 && i + 3 < filled; i = bytes.indexOf(13, i + 1)) {
    if (
      bytes[i + 1] === CRLFCRLF[1] && bytes[i + 2] === CRLFCRLF[2] && bytes[i + 3] === CRLFCRLF[3]
    ) return i;
  }
  return -1;
}
