// The Client's file downloads without `fetch`: one HTTP/1.1 GET on a connection of its own (TCP, or TLS with the
// client's trusted certificates), whose answer's body is read straight from the socket into the reader's buffer.
//
// Through `fetch`, each byte of a `sandd cp` download was copied out of the runtime's HTTP client into its body
// stream, then into the Client's scratch buffer (a BYOB read transfers the buffer it is given, so the outer
// stream's own view cannot be lent to it), then into the reader's buffer: curl fetching the same file from the
// same `sandd serve` wrote it 1.3-1.45x faster than `sandd cp` did. Here the only copy is the kernel's.
//
// Used only where nothing is lost by not using `fetch`: http and https URLs, no proxy variables in the
// environment (fetch honours them), and a 2xx answer whose body has a `Content-Length`. Any other answer is read
// whole (bounded) for the API's JSON error; a 2xx answer framed otherwise makes the caller ask again with `fetch`.

/** Largest answer head read. */
const MAX_HEAD_BYTES = 64 * 1024;
/** Largest error body read. */
const MAX_ERROR_BYTES = 1024 * 1024;
/** Proxy variables `fetch` honours: with any of them set, downloads stay on `fetch`. */
const PROXY_VARIABLES = [
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "ALL_PROXY",
  "http_proxy",
  "https_proxy",
  "all_proxy",
];

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Whether a GET of `url` can be made here rather than with `fetch`. */
export function socketGetUsable(url: URL): boolean {
  if (url.protocol !== "http:" && url.protocol !== "https:") return false;
  try {
    return PROXY_VARIABLES.every((name) => !Deno.env.get(name));
  } catch {
    // No permission to read the environment: fetch knows what to do.
    return false;
  }
}

/** An answer's body on its socket: `Content-Length` bytes, read straight into the caller's buffers. */
export class SocketBody {
  readonly #conn: Deno.Conn;
  /** Body bytes that came with the head. */
  #early: Uint8Array;
  #remaining: number;
  #closed = false;
  readonly #signal: AbortSignal;
  readonly #onAbort = () => this.#close();

  /** The body on `conn`: `early` bytes of it came with the head; `signal` aborting closes the connection. */
  constructor(conn: Deno.Conn, early: Uint8Array, length: number, signal: AbortSignal) {
    this.#conn = conn;
    this.#early = early.subarray(0, Math.min(early.length, length));
    this.#remaining = length;
    this.#signal = signal;
    signal.addEventListener("abort", this.#onAbort, { once: true });
    if (length === 0 || signal.aborted) this.#close();
  }

  /**
   * Read into `target`: the count, or null at the end of the body. A connection that ends before the body does
   * rejects with a `TypeError`, as a cut `fetch` body does (a resumable download then asks again from its offset).
   */
  async read(target: Uint8Array): Promise<number | null> {
    if (this.#remaining === 0) return null;
    if (this.#early.length > 0) {
      const n = Math.min(this.#early.length, target.length);
      target.set(this.#early.subarray(0, n));
      this.#early = this.#early.subarray(n);
      return this.#took(n);
    }
    if (this.#closed) throw new TypeError("The download's connection was closed");
    const want = Math.min(target.length, this.#remaining);
    let n: number | null;
    try {
      n = await this.#conn.read(want === target.length ? target : target.subarray(0, want));
    } catch (error) {
      this.#close();
      throw new TypeError(`The download's connection failed: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (n === null) {
      this.#close();
      throw new TypeError(
        `The controller closed the connection with ${this.#remaining} byte(s) of the body unsent`,
      );
    }
    return this.#took(n);
  }

  #took(n: number): number {
    this.#remaining -= n;
    if (this.#remaining === 0) this.#close();
    return n;
  }

  /** Stop reading: the connection is closed (never rejects). */
  cancel(): Promise<void> {
    this.#close();
    return Promise.resolve();
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#signal.removeEventListener("abort", this.#onAbort);
    try {
      this.#conn.close();
    } catch {
      // closed already
    }
  }
}

/** An answer to {@linkcode socketGet}. */
export interface SocketAnswer {
  status: number;
  headers: Headers;
  /** A 2xx answer's body, on its socket. */
  body: SocketBody | null;
  /** A non-2xx answer's whole body (its JSON error, usually). */
  text: string;
  /** A 2xx answer without a `Content-Length` (not what the API sends): ask again with `fetch`. */
  unframed: boolean;
}

/** What {@linkcode socketGet} needs. */
export interface SocketGetOptions {
  /** Request headers (the `Authorization`, for one). */
  headers: Record<string, string>;
  /** PEM certificates to trust for https. */
  caCerts: string[] | undefined;
  /** Aborting closes the connection (before the head is in: the call rejects with what the abort caused). */
  signal: AbortSignal;
  /** Aborting closes the connection once the body is being read (the head's deadline is not in it). */
  bodySignal: AbortSignal;
}

/**
 * `GET url` on a connection of its own. Resolves once the answer's head is in; rejects with the network error
 * (a `TypeError` for a connection that ended early, the runtime's error for one refused) or, when `signal`
 * aborts, with whatever the closed socket made the pending read throw (the caller names the abort).
 */
export async function socketGet(url: URL, options: SocketGetOptions): Promise<SocketAnswer> {
  options.signal.throwIfAborted();
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const tls = url.protocol === "https:";
  const port = url.port ? Number(url.port) : tls ? 443 : 80;
  const conn = await abortable(
    tls
      ? Deno.connectTls({
        hostname,
        port,
        ...(options.caCerts ? { caCerts: options.caCerts } : {}),
      })
      : Deno.connect({ hostname, port }),
    options.signal,
  );
  const onAbort = () => {
    try {
      conn.close();
    } catch {
      // closed already
    }
  };
  options.signal.addEventListener("abort", onAbort, { once: true });
  let handedOver = false;
  try {
    if (!tls) (conn as Deno.TcpConn).setNoDelay(true);
    let head = `GET ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n`;
    for (const [name, value] of Object.entries(options.headers)) {
      if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) {
        throw new TypeError(`Header ${JSON.stringify(name)} holds a line break`);
      }
      head += `${name}: ${value}\r\n`;
    }
    head += "connection: close\r\n\r\n";
    const request = encoder.encode(head);
    for (let at = 0; at < request.length;) at += await conn.write(request.subarray(at));
    // The head, and whatever of the body came with it.
    let buffer = new Uint8Array(16 * 1024);
    let end = 0;
    let headEnd = -1;
    while (headEnd < 0) {
      if (end === buffer.length) {
        if (buffer.length >= MAX_HEAD_BYTES) {
          throw new TypeError(`The controller's answer head is over ${MAX_HEAD_BYTES} bytes`);
        }
        const grown = new Uint8Array(buffer.length * 2);
        grown.set(buffer);
        buffer = grown;
      }
      const n = await conn.read(buffer.subarray(end));
      if (n === null) throw new TypeError("The controller closed the connection before answering");
      const from = Math.max(0, end - 3);
      end += n;
      for (let i = from; i + 3 < end; i++) {
        if (
          buffer[i] === 13 && buffer[i + 1] === 10 && buffer[i + 2] === 13 && buffer[i + 3] === 10
        ) {
          headEnd = i;
          break;
        }
      }
    }
    const lines = decoder.decode(buffer.subarray(0, headEnd)).split("\r\n");
    const status = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0]!);
    if (!status) {
      throw new TypeError(
        `The controller answered with a bad status line ${JSON.stringify(lines[0]!.slice(0, 80))}`,
      );
    }
    const headers = new Headers();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon <= 0) throw new TypeError(`The controller answered with a bad header line`);
      headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    }
    const code = Number(status[1]);
    const early = buffer.subarray(headEnd + 4, end);
    const lengthText = headers.get("content-length");
    const length = lengthText !== null && /^\d{1,15}$/.test(lengthText) ? Number(lengthText) : -1;
    const chunked = headers.get("transfer-encoding") !== null;
    if (code >= 200 && code < 300) {
      if (length < 0 || chunked) {
        return { status: code, headers, body: null, text: "", unframed: true };
      }
      handedOver = true;
      options.signal.removeEventListener("abort", onAbort);
      return {
        status: code,
        headers,
        body: new SocketBody(conn, early, length, options.bodySignal),
        text: "",
        unframed: false,
      };
    }
    // An error: its body, whole (to the connection's end when unframed; chunks are joined, unparsed here: the
    // API's errors have a length).
    const want = length >= 0 ? Math.min(length, MAX_ERROR_BYTES) : MAX_ERROR_BYTES;
    const body = new Uint8Array(want);
    let got = Math.min(early.length, want);
    body.set(early.subarray(0, got));
    while (got < want) {
      const n = await conn.read(body.subarray(got));
      if (n === null) break;
      got += n;
    }
    return {
      status: code,
      headers,
      body: null,
      text: decoder.decode(body.subarray(0, got)),
      unframed: false,
    };
  } finally {
    if (!handedOver) {
      options.signal.removeEventListener("abort", onAbort);
      onAbort();
    }
  }
}

/**
 * A connect that `signal` can abort: it rejects with the signal's reason at once, and the connection, should it
 * still come, is closed.
 */
function abortable(connecting: Promise<Deno.Conn>, signal: AbortSignal): Promise<Deno.Conn> {
  return new Promise((resolve, reject) => {
    // A connection that comes after the abort is closed below.
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    connecting.then(
      (conn) => {
        signal.removeEventListener("abort", onAbort);
        if (!signal.aborted) return resolve(conn);
        try {
          conn.close();
        } catch {
          // closed already
        }
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
