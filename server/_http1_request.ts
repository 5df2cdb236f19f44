// SandD's HTTP/1.1 engine, part 3: the request a handler gets. Not a `Request` (building one costs about 80 µs on a
// cold path, more than the rest of an API call's HTTP work): an object with the members SandD's handlers use
// (`HttpRequest`), whose headers, body stream and signal are made only when asked for. `toRequest` makes a real
// `Request` for code that needs one; `upgradeWebSocket` upgrades either kind.
import { HeadError, type RequestHead } from "./_http1_head.ts";
import type { Wire } from "./_http1_wire.ts";

/** The members of `Request` SandD's HTTP handlers use; a `Request` is one. */
export type HttpRequest = Pick<
  Request,
  | "url"
  | "method"
  | "headers"
  | "body"
  | "bodyUsed"
  | "signal"
  | "arrayBuffer"
  | "bytes"
  | "json"
  | "text"
>;

/** Largest chunk-size line or trailer section of a chunked body. */
const MAX_CHUNK_LINE = 4 * 1024;
const MAX_TRAILERS = 16 * 1024;
/** Largest piece of body handed over at once. */
const BODY_PIECE = 256 * 1024;

const CONTINUE = new TextEncoder().encode("HTTP/1.1 100 Continue\r\n\r\n");
/** The request headers a WebSocket upgrade is decided by. */
const HANDSHAKE_HEADERS = [
  "upgrade",
  "connection",
  "sec-websocket-key",
  "sec-websocket-version",
  "sec-websocket-protocol",
  "sec-websocket-extensions",
] as const;
const decoder = new TextDecoder();

/** What a request tells its connection. */
export interface BodyEvents {
  /** The whole body has been read (the connection may watch for the peer leaving). */
  bodyDone(): void;
  /** The body was malformed: the connection cannot carry another request. */
  bodyBroken(): void;
}

/** Reads one request's body off the wire: `Content-Length` bytes, or chunks. */
class BodyReader {
  readonly #wire: Wire;
  readonly #events: BodyEvents;
  #remaining: number;
  readonly #chunked: boolean;
  /** Chunked: bytes left in the current chunk; -1 before its size line. */
  #chunkLeft = -1;
  #continue: boolean;
  done = false;

  constructor(wire: Wire, head: RequestHead, events: BodyEvents) {
    this.#wire = wire;
    this.#events = events;
    this.#chunked = head.chunked;
    this.#remaining = head.chunked ? 0 : Math.max(0, head.contentLength);
    this.#continue = head.expectContinue;
    if (!head.chunked && this.#remaining === 0) this.done = true;
  }

  /**
   * The next piece, or null at the end; into `into` when given (a view of it). Throws on a malformed or cut body.
   */
  async next(into?: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer> | null> {
    if (this.done) return null;
    if (this.#continue) {
      this.#continue = false;
      // The client waits for this before it sends a large body (curl waits a second otherwise).
      await this.#wire.write(CONTINUE);
    }
    try {
      const piece = this.#chunked ? await this.#nextChunk(into) : await this.#nextBytes(into);
      if (piece === null) this.#finish();
      return piece;
    } catch (error) {
      this.done = true;
      this.#events.bodyBroken();
      throw error;
    }
  }

  #finish(): void {
    this.done = true;
    this.#events.bodyDone();
  }

  async #nextBytes(into?: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer> | null> {
    if (this.#remaining === 0) return null;
    const piece = await this.#wire.take(Math.min(this.#remaining, BODY_PIECE), into);
    if (piece === null) {
      throw new Deno.errors.UnexpectedEof(
        `The client closed the connection with ${this.#remaining} byte(s) of the body unsent`,
      );
    }
    this.#remaining -= piece.length;
    if (this.#remaining === 0) this.#finish();
    return piece;
  }

  async #nextChunk(into?: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer> | null> {
    while (true) {
      if (this.#chunkLeft > 0) {
        const piece = await this.#wire.take(Math.min(this.#chunkLeft, BODY_PIECE), into);
        if (piece === null) {
          throw new Deno.errors.UnexpectedEof("The client closed the connection mid-chunk");
        }
        this.#chunkLeft -= piece.length;
        if (this.#chunkLeft === 0) {
          await this.#crlf();
          this.#chunkLeft = -1;
        }
        return piece;
      }
      const line = await this.#line(MAX_CHUNK_LINE, "chunk-size line");
      const match = /^([0-9A-Fa-f]{1,13})[ \t]*(;[\x21-\x7e \t]*)?$/.exec(line);
      if (!match) {
        throw new HeadError(400, `Invalid chunk-size line ${JSON.stringify(line.slice(0, 80))}`);
      }
      const size = parseInt(match[1]!, 16);
      if (size === 0) {
        await this.#trailers();
        return null;
      }
      this.#chunkLeft = size;
    }
  }

  /** One line (without its CR LF) from the buffer, reading as needed. */
  async #line(max: number, what: string): Promise<string> {
    const wire = this.#wire;
    while (true) {
      const buffer = wire.buffer;
      for (let i = wire.start; i + 1 < wire.end; i++) {
        if (buffer[i] === 13 && buffer[i + 1] === 10) {
          const line = decoder.decode(buffer.subarray(wire.start, i));
          wire.start = i + 2;
          return line;
        }
        if (buffer[i] === 10 || (buffer[i] === 13 && buffer[i + 1] !== 10)) {
          throw new HeadError(400, `Bad line ending in a ${what}`);
        }
      }
      if (wire.end - wire.start > max) throw new HeadError(400, `A ${what} is over ${max} bytes`);
      if (!await wire.fill(max + 2)) {
        throw new Deno.errors.UnexpectedEof(`The client closed the connection in a ${what}`);
      }
    }
  }

  async #crlf(): Promise<void> {
    const line = await this.#line(2, "chunk end");
    if (line !== "") throw new HeadError(400, "Chunk data longer than its size");
  }

  async #trailers(): Promise<void> {
    let total = 0;
    while (true) {
      const line = await this.#line(MAX_TRAILERS, "trailer section");
      if (line === "") return;
      total += line.length + 2;
      if (total > MAX_TRAILERS) {
        throw new HeadError(400, `Trailer section over ${MAX_TRAILERS} bytes`);
      }
    }
  }

  /** Skip the rest of the body when all of it is already buffered (a `Content-Length` body); false otherwise. */
  skipBuffered(): boolean {
    if (this.done) return true;
    if (this.#chunked) return false;
    const wire = this.#wire;
    if (wire.end - wire.start < this.#remaining) return false;
    wire.start += this.#remaining;
    this.#remaining = 0;
    this.#finish();
    return true;
  }

  /** Everything left, as one array; `tooLarge()` is thrown as soon as it is over `max` bytes. */
  async all(max: number, tooLarge: () => Error): Promise<Uint8Array<ArrayBuffer>> {
    const pieces: Uint8Array<ArrayBuffer>[] = [];
    let size = 0;
    for (let piece = await this.next(); piece !== null; piece = await this.next()) {
      size += piece.length;
      if (size > max) throw tooLarge();
      pieces.push(piece);
    }
    if (pieces.length === 1) return pieces[0]!;
    const out = new Uint8Array(size);
    let at = 0;
    for (const piece of pieces) {
      out.set(piece, at);
      at += piece.length;
    }
    return out;
  }
}

/** Requests made by {@linkcode toRequest}, to the engine's requests they came from. */
const origins = new WeakMap<Request, EngineRequest>();

/** What upgrading a request needs of its connection. */
export interface UpgradeHost {
  /** The wire, for the bytes already read past the head and the socket. */
  wire: Wire;
  /** The socket's resource id (Deno's internal one, found once per process). */
  rid: number;
  /** The connection is being upgraded: it leaves HTTP. */
  upgrading(): void;
}

/** The request handed to handlers by SandD's HTTP/1.1 engine. */
export class EngineRequest implements HttpRequest {
  readonly method: string;
  readonly url: string;
  readonly #head: RequestHead;
  readonly #reader: BodyReader | null;
  readonly #host: UpgradeHost;
  #headers: Headers | undefined;
  #body: ReadableStream<Uint8Array<ArrayBuffer>> | null | undefined;
  #used = false;
  #abort: AbortController | undefined;
  #aborted: unknown = undefined;

  constructor(head: RequestHead, url: string, wire: Wire, host: UpgradeHost, events: BodyEvents) {
    this.method = head.method;
    this.url = url;
    this.#head = head;
    this.#host = host;
    const hasBody = head.chunked || head.contentLength > 0 ||
      (head.method !== "GET" && head.method !== "HEAD");
    this.#reader = hasBody ? new BodyReader(wire, head, events) : null;
  }

  /** Whether the body has been read to its end (or there is none). */
  get bodyDone(): boolean {
    return this.#reader === null || this.#reader.done;
  }

  /** One header's value (names in lower case), without building `headers`. */
  header(name: string): string | null {
    const list = this.#head.headers;
    let found: string | null = null;
    for (let i = 0; i < list.length; i += 2) {
      if (list[i] === name) found = found === null ? list[i + 1]! : `${found}, ${list[i + 1]}`;
    }
    return found;
  }

  get headers(): Headers {
    if (this.#headers === undefined) {
      const headers = new Headers();
      const list = this.#head.headers;
      for (let i = 0; i < list.length; i += 2) headers.append(list[i]!, list[i + 1]!);
      this.#headers = headers;
    }
    return this.#headers;
  }

  get body(): ReadableStream<Uint8Array<ArrayBuffer>> | null {
    if (this.#body !== undefined) return this.#body;
    const reader = this.#reader;
    if (reader === null) return this.#body = null;
    // A byte stream: a BYOB reader's buffer is read into straight from the socket (an upload through the control
    // API then makes no garbage per read); a default reader gets each piece as an array of its own size (a buffer
    // allocated ahead for it would be kept whole behind every short piece: 64 KiB per byte of a body sent in
    // one-byte chunks).
    return this.#body = new ReadableStream({
      type: "bytes",
      pull: async (controller) => {
        this.#used = true;
        const request = controller.byobRequest;
        if (request === null) {
          const piece = await reader.next();
          if (piece === null) controller.close();
          else controller.enqueue(piece);
          return;
        }
        const view = request.view!;
        const piece = await reader.next(
          new Uint8Array(view.buffer as ArrayBuffer, view.byteOffset, view.byteLength),
        );
        if (piece === null) {
          controller.close();
          request.respond(0);
        } else {
          request.respond(piece.length);
        }
      },
      cancel: () => {
        this.#used = true;
      },
    }, { highWaterMark: 0 }) as ReadableStream<Uint8Array<ArrayBuffer>>;
  }

  get bodyUsed(): boolean {
    return this.#used;
  }

  get signal(): AbortSignal {
    this.#abort ??= new AbortController();
    if (this.#aborted !== undefined && !this.#abort.signal.aborted) {
      this.#abort.abort(this.#aborted);
    }
    return this.#abort.signal;
  }

  /** The client left, or the answer is over (as `Request.signal` on Deno's per-connection server). */
  abort(reason: unknown): void {
    if (this.#aborted !== undefined) return;
    this.#aborted = reason;
    this.#abort?.abort(reason);
  }

  async bytes(): Promise<Uint8Array<ArrayBuffer>> {
    if (this.#used) throw new TypeError("Body already consumed");
    this.#used = true;
    if (this.#reader === null) return new Uint8Array(0);
    if (this.#body !== undefined && this.#body !== null) {
      return new Uint8Array(await new Response(this.#body).arrayBuffer());
    }
    return await this.#reader.all(Infinity, () => new RangeError("Unreachable"));
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    const bytes = await this.bytes();
    return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
      ? bytes.buffer
      : bytes.slice().buffer;
  }

  async text(): Promise<string> {
    return decoder.decode(await this.bytes());
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }

  /**
   * Whether the connection can carry another request after this one: the body was read to its end, or what is left
   * of it is already buffered (then skipped). A body left unread beyond that ends the connection (as Deno's server
   * does), rather than reading megabytes nobody wants.
   */
  settleBody(): boolean {
    const reader = this.#reader;
    if (reader === null || reader.done) return true;
    if (this.#body !== undefined && this.#body !== null && this.#body.locked) return false;
    return reader.skipBuffered();
  }

  /**
   * The whole body, failing with `tooLarge()` as soon as it is over `max` bytes (before reading anything when its
   * declared length is), without making a body stream.
   */
  async bytesUpTo(max: number, tooLarge: () => Error): Promise<Uint8Array<ArrayBuffer>> {
    if (this.#used) throw new TypeError("Body already consumed");
    this.#used = true;
    const reader = this.#reader;
    if (reader === null) return new Uint8Array(0);
    if (this.#head.contentLength > max) throw tooLarge();
    return await reader.all(max, tooLarge);
  }

  /** A real `Request` with the same method, URL, headers and body (made once). */
  toRequest(): Request {
    const body = this.method === "GET" || this.method === "HEAD" ? null : this.body;
    const request = new Request(this.url, {
      method: this.method,
      headers: this.headers,
      ...(body !== null ? { body, duplex: "half" } as RequestInit : {}),
    });
    origins.set(request, this);
    return request;
  }

  /** Upgrade to a WebSocket on this request's connection (see {@linkcode upgradeWebSocket}). */
  upgrade(options: Deno.UpgradeWebSocketOptions): { socket: WebSocket; response: Response } {
    const host = this.#host;
    const wire = host.wire;
    if (wire.reading) {
      throw new TypeError("The connection is being read: it cannot be upgraded now");
    }
    // Deno's upgrade reads only the handshake's headers: a Request of those costs a fraction of one with all.
    const handshake: [string, string][] = [];
    for (const name of HANDSHAKE_HEADERS) {
      const value = this.header(name);
      if (value !== null) handshake.push([name, value]);
    }
    const request = new Request(this.url, { headers: handshake });
    const head = wire.buffer.slice(wire.start, wire.end);
    const encoder = new TextEncoder();
    const rid = host.rid;
    // Deno's upgrade for a socket it did not accept itself (what node:http's upgrade uses): it writes the 101
    // through `write`, then takes the socket's resource (`takeStream`) and speaks WebSocket on it, starting with the
    // bytes already read past the head.
    const socket = {
      destroyed: false,
      _handle: {
        readStop() {},
        takeStream: () => rid,
      },
      write(text: string, done: (error?: unknown) => void) {
        wire.write(encoder.encode(text)).then(
          (ok) =>
            ok ? done() : done(new Deno.errors.BrokenPipe("The client left before the upgrade")),
        );
      },
    };
    const upgrade = Deno.upgradeWebSocket as unknown as (
      request: Request,
      options: Omit<Deno.UpgradeWebSocketOptions, "socket"> & { socket: unknown; head: Uint8Array },
    ) => { socket: WebSocket; response: Response };
    const upgraded = upgrade(request, { ...options, socket, head });
    wire.start = wire.end;
    host.upgrading();
    return upgraded;
  }
}

/**
 * One header of any request (lower-case `name`): without building a `Headers` for one of SandD's engine.
 *
 * @example
 * ```ts ignore
 * const auth = headerOf(request, "authorization");
 * ```
 */
export function headerOf(request: HttpRequest, name: string): string | null {
  return request instanceof EngineRequest ? request.header(name) : request.headers.get(name);
}

/**
 * A `Request` for `request`: itself when it is one, else one made from the engine's request (once per call).
 *
 * @example
 * ```ts ignore
 * const real = toRequest(request); // for code that takes only a Request
 * ```
 */
export function toRequest(request: HttpRequest): Request {
  return request instanceof EngineRequest ? request.toRequest() : request as Request;
}

/**
 * `Deno.upgradeWebSocket` for any request: one from SandD's engine (or a `Request` made of one) upgrades on the
 * engine's connection; any other goes to Deno.
 *
 * @example
 * ```ts ignore
 * const { socket, response } = upgradeWebSocket(request, { idleTimeout: 0 });
 * ```
 */
export function upgradeWebSocket(
  request: HttpRequest,
  options: Deno.UpgradeWebSocketOptions = {},
): { socket: WebSocket; response: Response } {
  if (request instanceof EngineRequest) return request.upgrade(options);
  const origin = origins.get(request as Request);
  if (origin !== undefined) return origin.upgrade(options);
  return Deno.upgradeWebSocket(request as Request, options);
}
