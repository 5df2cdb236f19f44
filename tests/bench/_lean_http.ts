// A lean HTTP/1.1 keep-alive client over one TCP connection: one request at a time, a `content-length` answer
// read whole. It stands for the clients most API users run (curl, Python's http.client), whose per-request cost
// is far below Deno's fetch, so the bench can tell the API's own overhead from its client's.
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One keep-alive connection to `127.0.0.1:port`. */
export class LeanHttpClient {
  readonly #conn: Deno.TcpConn;
  readonly #buffer = new Uint8Array(256 * 1024);

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  static async connect(port: number): Promise<LeanHttpClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    return new LeanHttpClient(conn);
  }

  /** Send one request; resolves with the answer's body once all of it has arrived (2xx only). */
  async request(method: string, path: string, body?: string): Promise<string> {
    const head = `${method} ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\n` +
      (body === undefined
        ? "\r\n"
        : `content-type: application/json\r\ncontent-length: ${
          encoder.encode(body).length
        }\r\n\r\n`);
    await this.#write(encoder.encode(head + (body ?? "")));
    let text = "";
    while (true) {
      const n = await this.#conn.read(this.#buffer);
      if (n === null) throw new Error(`Connection closed before the answer to ${method} ${path}`);
      text += decoder.decode(this.#buffer.subarray(0, n));
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) continue;
      const status = Number(text.slice(9, 12));
      const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end + 2));
      if (!length) throw new Error(`Answer to ${method} ${path} has no content-length`);
      if (text.length < end + 4 + Number(length[1])) continue;
      const answer = text.slice(end + 4, end + 4 + Number(length[1]));
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
