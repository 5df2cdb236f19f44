// HTTP/1.1 spoken over one tunnel connection: the request written as it streams in (chunked when its length is not
// known), the worker's response head parsed and its body streamed out as it is read (Content-Length, chunked, or
// up to the end of the connection). Connections are kept alive between requests only when the response was framed
// exactly (Content-Length or chunked, HTTP/1.1, no `Connection: close`) and the request body was sent whole, so no
// response can be attributed to the wrong request; a kept connection the server closed meanwhile is retried once
// on a fresh one for a request without a body.
import type { TunnelSocket } from "./_forward_tunnel.ts";

/** Largest response head accepted from the worker. */
const MAX_HEAD_BYTES = 64 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Headers that describe one hop, never forwarded (RFC 9110 section 7.6.1). */
const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/**
 * Request headers a client could use to pose as the proxy (its address, the public host, scheme and prefix): dropped
 * before the proxy adds its own, so the worker's server sees only the proxy's. `x-forwarded-for` is kept and
 * appended to, as proxies do (its last entry is the one the proxy saw).
 */
const PROXY_ASSERTED: readonly string[] = [
  "forwarded",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-forwarded-prefix",
  "x-forwarded-port",
  "x-forwarded-server",
  "x-forwarded-ssl",
  "x-real-ip",
];

/**
 * Response headers that act on the whole origin. Every exposed URL shares the controller's origin, so a worker's
 * server could otherwise register a service worker for `/` (intercepting every other exposed URL and the
 * controller's own paths in that browser) or wipe the origin's storage.
 */
const ORIGIN_WIDE: readonly string[] = ["service-worker-allowed", "clear-site-data"];

/**
 * Keep a cookie the worker sets within the exposure's prefix: `Path=/a` becomes `Path=<prefix>/a`, a `Domain`
 * (which would widen it to other hosts) is dropped. A cookie without a path already defaults to a path under
 * the prefix (the request's).
 */
export function scopeCookie(cookie: string, prefix: string): string {
  const [pair, ...attributes] = cookie.split(";");
  const kept: string[] = [pair!];
  for (const attribute of attributes) {
    const eq = attribute.indexOf("=");
    const name = (eq < 0 ? attribute : attribute.slice(0, eq)).trim().toLowerCase();
    if (name === "domain") continue;
    if (name === "path") {
      const value = eq < 0 ? "" : attribute.slice(eq + 1).trim();
      kept.push(` Path=${prefix}${value.startsWith("/") ? value : "/"}`);
      continue;
    }
    kept.push(attribute);
  }
  return kept.join(";");
}

/** The worker's answer was not HTTP the proxy can relay. */
export class BadGatewayError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BadGatewayError";
  }
}

/** Reads a tunnel connection with a buffer: heads, lines and body bytes. */
export class TunnelReader {
  readonly #tunnel: TunnelSocket;
  #buffer: Uint8Array = new Uint8Array(0);
  #ended = false;

  constructor(tunnel: TunnelSocket) {
    this.#tunnel = tunnel;
  }

  /** Read more into the buffer; false at the end of the connection. */
  async #fill(): Promise<boolean> {
    if (this.#ended) return false;
    const chunk = await this.#tunnel.read();
    if (chunk === null) {
      this.#ended = true;
      return false;
    }
    if (this.#buffer.length === 0) this.#buffer = chunk;
    else {
      const joined = new Uint8Array(this.#buffer.length + chunk.length);
      joined.set(this.#buffer);
      joined.set(chunk, this.#buffer.length);
      this.#buffer = joined;
    }
    return true;
  }

  /** Bytes up to and including the first `\r\n\r\n` (a head), or null at the end before any byte. */
  async head(): Promise<string | null> {
    let searched = 0;
    while (true) {
      const at = indexOf(this.#buffer, CRLFCRLF, Math.max(0, searched - 3));
      if (at >= 0) {
        const head = decoder.decode(this.#buffer.subarray(0, at));
        this.#buffer = this.#buffer.subarray(at + 4);
        return head;
      }
      searched = this.#buffer.length;
      if (searched > MAX_HEAD_BYTES) {
        throw new BadGatewayError(`The worker's response head exceeds ${MAX_HEAD_BYTES} bytes`);
      }
      if (!(await this.#fill())) {
        if (this.#buffer.length === 0) return null;
        throw new BadGatewayError(
          "The worker closed the connection in the middle of a response head",
        );
      }
    }
  }

  /** One line without its CRLF (chunked framing). */
  async line(): Promise<string> {
    while (true) {
      const at = indexOf(this.#buffer, CRLF, 0);
      if (at >= 0) {
        const line = decoder.decode(this.#buffer.subarray(0, at));
        this.#buffer = this.#buffer.subarray(at + 2);
        return line;
      }
      if (this.#buffer.length > 8192) throw new BadGatewayError("A chunk header line is too long");
      if (!(await this.#fill())) {
        throw new BadGatewayError(
          "The worker closed the connection in the middle of a chunked body",
        );
      }
    }
  }

  /** Up to `max` bytes, or null at the end of the connection. */
  async some(max: number): Promise<Uint8Array | null> {
    if (this.#buffer.length === 0 && !(await this.#fill())) return null;
    const out = this.#buffer.subarray(0, Math.min(max, this.#buffer.length));
    this.#buffer = this.#buffer.subarray(out.length);
    return out;
  }

  /** Bytes buffered and not yet read. */
  get buffered(): number {
    return this.#buffer.length;
  }

  /** What is buffered and not yet read (bytes after a 101 head). */
  rest(): Uint8Array {
    const out = this.#buffer;
    this.#buffer = new Uint8Array(0);
    return out;
  }
}

const CRLF = encoder.encode("\r\n");
const CRLFCRLF = encoder.encode("\r\n\r\n");

function indexOf(haystack: Uint8Array, needle: Uint8Array, from: number): number {
  outer: for (let i = from; i <= haystack.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

/** A parsed response head. */
export interface ResponseHead {
  /** `1.0` or `1.1`. */
  version: string;
  status: number;
  statusText: string;
  headers: Headers;
}

/** Parse a response head; throws BadGatewayError for anything but HTTP/1.x. */
export function parseResponseHead(text: string): ResponseHead {
  const lines = text.split("\r\n");
  const match = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(lines[0] ?? "");
  if (!match) {
    throw new BadGatewayError(
      `The worker did not answer with HTTP/1.x: ${JSON.stringify((lines[0] ?? "").slice(0, 80))}`,
    );
  }
  const headers = new Headers();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0) {
      throw new BadGatewayError(`Malformed response header ${JSON.stringify(line.slice(0, 80))}`);
    }
    try {
      headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    } catch {
      throw new BadGatewayError(`Malformed response header ${JSON.stringify(line.slice(0, 80))}`);
    }
  }
  return {
    version: `1.${match[1]}`,
    status: Number(match[2]),
    statusText: match[3] ?? "",
    headers,
  };
}

/** The end-to-end headers of `headers`: hop-by-hop ones and those the Connection header names removed. */
export function endToEnd(headers: Headers): Headers {
  const out = new Headers();
  const named = new Set(
    (headers.get("connection") ?? "").split(",").map((s) => s.trim().toLowerCase()).filter(Boolean),
  );
  for (const [name, value] of headers) {
    if (HOP_BY_HOP.has(name) || named.has(name)) continue;
    out.append(name, value);
  }
  return out;
}

/** Where a proxied request goes and how it is seen. */
export interface ProxyTarget {
  /** The worker's port (the Host header becomes `127.0.0.1:port`). */
  port: number;
  /** The public path prefix (`/x/<token>`), for `X-Forwarded-Prefix` and Location rewriting. */
  prefix: string;
  /** The path and query on the worker (`/a/b?c`). */
  path: string;
  /** Protocol of the public URL (`http` or `https`). */
  proto: string;
  /** Client address, for `X-Forwarded-For`. */
  client: string;
}

/** Write a request head (and return the request headers that were sent). */
export function requestHead(
  method: string,
  request: Request,
  target: ProxyTarget,
  extra: [string, string][],
): string {
  const headers = endToEnd(request.headers);
  const host = request.headers.get("host");
  headers.delete("host");
  headers.delete("content-length");
  for (const name of PROXY_ASSERTED) headers.delete(name);
  const lines = [`${method} ${target.path} HTTP/1.1`, `host: 127.0.0.1:${target.port}`];
  for (const [name, value] of headers) lines.push(`${name}: ${value}`);
  const forwardedFor = request.headers.get("x-forwarded-for");
  lines.push(`x-forwarded-for: ${forwardedFor ? `${forwardedFor}, ` : ""}${target.client}`);
  if (host) lines.push(`x-forwarded-host: ${host}`);
  lines.push(`x-forwarded-proto: ${target.proto}`, `x-forwarded-prefix: ${target.prefix}`);
  for (const [name, value] of extra) lines.push(`${name}: ${value}`);
  return lines.join("\r\n") + "\r\n\r\n";
}

/** Rewrite a redirect to the worker itself so it stays under the public prefix. */
function rewriteLocation(location: string, target: ProxyTarget): string {
  for (const origin of [`http://127.0.0.1:${target.port}`, `http://localhost:${target.port}`]) {
    if (location === origin || location.startsWith(origin + "/")) {
      return target.prefix + (location.slice(origin.length) || "/");
    }
  }
  if (location.startsWith("/") && !location.startsWith("//")) return target.prefix + location;
  return location;
}

/**
 * The headers of a worker's response as the client gets them: end-to-end only, a redirect to the worker kept under
 * the prefix, cookies scoped to the prefix, headers that act on the whole origin dropped.
 */
export function publicHeaders(response: Headers, target: ProxyTarget): Headers {
  const headers = endToEnd(response);
  const location = headers.get("location");
  if (location !== null) headers.set("location", rewriteLocation(location, target));
  for (const name of ORIGIN_WIDE) headers.delete(name);
  const cookies = headers.getSetCookie();
  if (cookies.length > 0) {
    headers.delete("set-cookie");
    for (const cookie of cookies) headers.append("set-cookie", scopeCookie(cookie, target.prefix));
  }
  return headers;
}

/** The worker closed a kept-alive connection before answering: the request may be sent again elsewhere. */
export class StaleConnectionError extends BadGatewayError {
  constructor() {
    super("The worker's server closed the connection without a response");
    this.name = "StaleConnectionError";
  }
}

/** How a proxied exchange ended: `reusable` when the connection may carry the next request. */
export type ExchangeDone = (error?: unknown, reusable?: boolean) => void;

/**
 * Send `request` over `tunnel` (read with `reader`) and answer with the worker's response, its body streamed.
 * `onDone` is called once the response body has been read, cancelled or failed, saying whether the connection may
 * be reused; `onSent` once the whole request (head and body) has been written.
 */
export async function proxyHttp(
  tunnel: TunnelSocket,
  reader: TunnelReader,
  request: Request,
  target: ProxyTarget,
  onDone: ExchangeDone,
  onSent?: () => void,
): Promise<Response> {
  const method = request.method;
  const length = request.headers.get("content-length");
  const hasBody = request.body !== null && method !== "GET" && method !== "HEAD";
  const framing: [string, string][] = [];
  if (hasBody) {
    framing.push(length !== null ? ["content-length", length] : ["transfer-encoding", "chunked"]);
  }
  await tunnel.write(encoder.encode(requestHead(method, request, target, framing)));
  let bodySent: Promise<boolean> = Promise.resolve(true);
  if (hasBody) {
    // The body streams while the response is read: a server may answer before it has read everything.
    bodySent = sendBody(tunnel, request.body!, length === null).then(() => true, (error) => {
      tunnel.abort(`the request body failed: ${(error as Error)?.message ?? error}`);
      return false;
    });
  }
  if (onSent) void bodySent.then((sent) => sent && onSent());
  let head: ResponseHead;
  let first = true;
  while (true) {
    const text = await reader.head();
    if (text === null) {
      if (first) throw new StaleConnectionError();
      throw new BadGatewayError("The worker's server closed the connection without a response");
    }
    first = false;
    head = parseResponseHead(text);
    if (head.status >= 200 || head.status === 101) break; // skip 100 Continue, 103 Early Hints
  }
  if (head.status === 101) {
    throw new BadGatewayError(
      "The worker switched protocols on a request that did not ask to upgrade",
    );
  }
  const headers = publicHeaders(head.headers, target);
  const keepAlive = head.version === "1.1" &&
    !(head.headers.get("connection") ?? "").toLowerCase().split(",").some((t) =>
      t.trim() === "close"
    );
  const noBody = method === "HEAD" || head.status === 204 || head.status === 304;
  const framed = noBody || head.headers.has("transfer-encoding") ||
    head.headers.has("content-length");
  const finish: ExchangeDone = (error, exact) => {
    if (error !== undefined) {
      onDone(error, false);
      return;
    }
    const reusable = keepAlive && framed && exact !== false && reader.buffered === 0;
    void bodySent.then((sent) => onDone(undefined, reusable && sent));
  };
  if (noBody) {
    finish();
    return new Response(null, { status: head.status, statusText: head.statusText, headers });
  }
  const body = responseBody(reader, head.headers, finish);
  if (head.headers.has("transfer-encoding")) headers.delete("content-length");
  return new Response(body, { status: head.status, statusText: head.statusText, headers });
}

async function sendBody(
  tunnel: TunnelSocket,
  body: ReadableStream<Uint8Array>,
  chunked: boolean,
): Promise<void> {
  for await (const chunk of body) {
    if (chunk.length === 0) continue;
    if (chunked) {
      await tunnel.write(encoder.encode(`${chunk.length.toString(16)}\r\n`));
      await tunnel.write(chunk);
      await tunnel.write(CRLF);
    } else await tunnel.write(chunk);
  }
  if (chunked) await tunnel.write(encoder.encode("0\r\n\r\n"));
}

/** The response body as a stream, framed by the response's headers. */
export function responseBody(
  reader: TunnelReader,
  headers: Headers,
  onDone: (error?: unknown) => void,
): ReadableStream<Uint8Array> {
  const encoding = headers.get("transfer-encoding")?.toLowerCase();
  const lengthHeader = headers.get("content-length");
  let remaining: number | null = null;
  if (encoding === undefined && lengthHeader !== null) {
    remaining = Number(lengthHeader);
    if (!Number.isSafeInteger(remaining) || remaining < 0) {
      throw new BadGatewayError(
        `Bad Content-Length ${JSON.stringify(lengthHeader)} from the worker`,
      );
    }
  }
  const chunked = encoding !== undefined && encoding.split(",").pop()!.trim() === "chunked";
  let chunkLeft = 0;
  let finished = false;
  const finish = (error?: unknown) => {
    if (finished) return;
    finished = true;
    onDone(error);
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        if (remaining !== null) {
          if (remaining === 0) {
            controller.close();
            finish();
            return;
          }
          const bytes = await reader.some(Math.min(remaining, 256 * 1024));
          if (bytes === null) throw new BadGatewayError("The worker's response body ended early");
          remaining -= bytes.length;
          controller.enqueue(bytes.slice());
          return;
        }
        if (chunked) {
          if (chunkLeft === 0) {
            const size = parseInt((await reader.line()).split(";")[0]!.trim(), 16);
            if (!Number.isSafeInteger(size) || size < 0) {
              throw new BadGatewayError("Bad chunk size in the worker's response");
            }
            if (size === 0) {
              while ((await reader.line()) !== "") {
                // trailers are dropped
              }
              controller.close();
              finish();
              return;
            }
            chunkLeft = size;
          }
          const bytes = await reader.some(chunkLeft);
          if (bytes === null) throw new BadGatewayError("The worker's chunked body ended early");
          chunkLeft -= bytes.length;
          if (chunkLeft === 0 && (await reader.line()) !== "") {
            throw new BadGatewayError("A chunk of the worker's response lacks its CRLF");
          }
          controller.enqueue(bytes.slice());
          return;
        }
        const bytes = await reader.some(256 * 1024);
        if (bytes === null) {
          controller.close();
          finish();
          return;
        }
        controller.enqueue(bytes.slice());
      } catch (error) {
        controller.error(error);
        finish(error);
      }
    },
    cancel(reason) {
      finish(reason ?? new Error("the client went away"));
    },
  }, { highWaterMark: 0 });
}
