// SandD's HTTP/1.1 engine, part 4: writing a `Response`. A body that is all there at once (a JSON answer, an error)
// goes out with its head in one write and a Content-Length; a stream goes out as it comes (chunked, or raw up to
// its declared Content-Length), each piece written before the next is pulled, so a client that does not read
// holds the producer back.
import type { Wire } from "./_http1_wire.ts";

const encoder = new TextEncoder();
/** Largest first piece of a body without a declared length that is checked for being the whole body. */
const SMALL_BODY = 64 * 1024;

const REASONS: Record<number, string> = {
  100: "Continue",
  101: "Switching Protocols",
  200: "OK",
  201: "Created",
  202: "Accepted",
  204: "No Content",
  206: "Partial Content",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  410: "Gone",
  411: "Length Required",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  422: "Unprocessable Content",
  426: "Upgrade Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/** What {@linkcode fixedAnswer} recorded of an answer: written without reading the `Response` back. */
interface Fixed {
  status: number;
  /** Header lines (`name: value\r\n`), the engine's own excepted. */
  lines: string;
  body: string;
}

const fixed = new WeakMap<Response, Fixed>();

/**
 * A `Response` with a text body, whose status, headers and body SandD's engine writes as given, without reading
 * them back out of the `Response` (its headers list, its body stream: about as much work again as the rest of a
 * small API answer). Deno's server reads the `Response` as usual. The answer must not be changed afterwards.
 *
 * @example
 * ```ts
 * import { fixedAnswer } from "./_http1_answer.ts";
 * const response = fixedAnswer('{"ok":true}', 200, { "content-type": "application/json" });
 * console.assert(response.status === 200);
 * ```
 */
export function fixedAnswer(
  body: string,
  status: number,
  headers: Record<string, string>,
): Response {
  const response = new Response(body, { status, headers });
  let lines = "";
  for (const name in headers) lines += `${name.toLowerCase()}: ${headers[name]}\r\n`;
  fixed.set(response, { status, lines, body });
  return response;
}

/** Headers the engine writes itself. */
const OWN = new Set(["connection", "keep-alive", "transfer-encoding", "content-length", "date"]);

let dateText = "";
let dateSecond = -1;

/** The `Date` header's value, made once a second. */
function httpDate(): string {
  const second = Math.floor(Date.now() / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(second * 1000).toUTCString();
  }
  return dateText;
}

/** How to answer one request. */
export interface AnswerContext {
  wire: Wire;
  /** The request was HEAD: no body. */
  head: boolean;
  /** 0 for an HTTP/1.0 client. */
  minor: 0 | 1;
  /** Whether the connection stays open after this answer (before the answer has its say). */
  keepAlive: boolean;
  /**
   * Called with a streamed body's reader while it streams (null when over), so the connection can cancel it when
   * the client leaves.
   */
  streaming(reader: ReadableStreamDefaultReader<Uint8Array> | null): void;
}

function headText(
  status: number,
  headers: Headers,
  length: number,
  chunked: boolean,
  keepAlive: boolean,
  minor: 0 | 1,
): string {
  let text = `HTTP/1.1 ${status} ${REASONS[status] ?? "Unknown"}\r\ndate: ${httpDate()}\r\n`;
  for (const [name, value] of headers) {
    if (!OWN.has(name)) text += `${name}: ${value}\r\n`;
  }
  if (length >= 0) text += `content-length: ${length}\r\n`;
  if (chunked) text += "transfer-encoding: chunked\r\n";
  if (!keepAlive) text += "connection: close\r\n";
  else if (minor === 0) text += "connection: keep-alive\r\n";
  return text + "\r\n";
}

async function writeFixed(answer: Fixed, ctx: AnswerContext): Promise<boolean> {
  const status = answer.status;
  const noBody = ctx.head || status === 204 || status === 304;
  const body = encoder.encode(answer.body);
  let text = `HTTP/1.1 ${status} ${
    REASONS[status] ?? "Unknown"
  }\r\ndate: ${httpDate()}\r\n${answer.lines}`;
  if (status !== 204 && status !== 304) text += `content-length: ${body.length}\r\n`;
  if (!ctx.keepAlive) text += "connection: close\r\n";
  else if (ctx.minor === 0) text += "connection: keep-alive\r\n";
  text += "\r\n";
  const ok = await ctx.wire.write(
    noBody ? encoder.encode(text) : concat(encoder.encode(text), body),
  );
  return ok && ctx.keepAlive;
}

/** Resolves true when `promise` has settled within a few microtask turns (a body already all there). */
async function settlesAtOnce(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(() => settled = true, () => settled = true);
  for (let i = 0; i < 4 && !settled; i++) await undefined;
  return settled;
}

/** The length of a body that is all there at once (then consumed), or -1 (then cancelled). */
async function staticLength(body: ReadableStream<Uint8Array>): Promise<number> {
  const reader = body.getReader();
  try {
    let length = 0;
    for (let i = 0; i < 2; i++) {
      const read = reader.read();
      if (!await settlesAtOnce(read)) return -1;
      const result = await read;
      if (result.done) return length;
      length += result.value.length;
    }
    return -1;
  } finally {
    await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

function concat(head: Uint8Array, body: Uint8Array | null): Uint8Array {
  if (body === null || body.length === 0) return head;
  const out = new Uint8Array(head.length + body.length);
  out.set(head);
  out.set(body, head.length);
  return out;
}

/**
 * Write `response`; resolves whether the connection can carry another request (false: close it).
 */
export async function writeAnswer(response: Response, ctx: AnswerContext): Promise<boolean> {
  const answer = fixed.get(response);
  if (answer !== undefined && !response.bodyUsed) return await writeFixed(answer, ctx);
  const status = response.status;
  const headers = response.headers;
  const noBody = ctx.head || status === 204 || status === 304 || status < 200;
  const declaredText = headers.get("content-length");
  let declared = -1;
  if (declaredText !== null && /^\d{1,15}$/.test(declaredText)) declared = Number(declaredText);
  const keepAlive = ctx.keepAlive && headers.get("connection")?.toLowerCase() !== "close";
  const body = response.body;
  if (ctx.head && body !== null && declared < 0) {
    // HEAD: the length the GET would have, when its body is all there at once.
    declared = await staticLength(body);
  }
  if (body === null || noBody) {
    if (body !== null && !body.locked) await body.cancel().catch(() => {});
    const length = status === 204 || status === 304 || status < 200
      ? -1
      : declared >= 0
      ? declared
      : ctx.head
      ? -1
      : 0;
    const ok = await ctx.wire.write(
      encoder.encode(headText(status, headers, length, false, keepAlive, ctx.minor)),
    );
    return ok && keepAlive;
  }
  const reader = body.getReader();
  try {
    const firstRead = reader.read();
    // A live stream with nothing yet (process output, events), or a body of declared length (a download): the head
    // goes out now, the body as it comes.
    if (declared >= 0 || !await settlesAtOnce(firstRead)) {
      return await streamBody(ctx, reader, status, headers, declared, keepAlive, [], firstRead);
    }
    const first = await firstRead;
    if (first.done) {
      const ok = await ctx.wire.write(
        encoder.encode(headText(status, headers, 0, false, keepAlive, ctx.minor)),
      );
      return ok && keepAlive;
    }
    // Is that all of it? Asked only with the first piece copied (and only for a small one: a large one is simply
    // streamed): a producer may reuse or detach a piece's memory once the next one is read.
    if (first.value.length > SMALL_BODY) {
      return await streamBody(
        ctx,
        reader,
        status,
        headers,
        declared,
        keepAlive,
        [first.value],
        null,
      );
    }
    const firstPiece = first.value.slice();
    const second = reader.read();
    if (!await settlesAtOnce(second)) {
      return await streamBody(ctx, reader, status, headers, -1, keepAlive, [firstPiece], second);
    }
    const next = await second;
    if (!next.done) {
      // The second piece is written before the next read; the first was copied.
      return await streamBody(
        ctx,
        reader,
        status,
        headers,
        -1,
        keepAlive,
        [firstPiece, next.value],
        null,
      );
    }
    // All of it at once: one write, with its length.
    const head = headText(status, headers, firstPiece.length, false, keepAlive, ctx.minor);
    return await ctx.wire.write(concat(encoder.encode(head), firstPiece)) && keepAlive;
  } catch {
    await reader.cancel().catch(() => {});
    return false;
  } finally {
    ctx.streaming(null);
  }
}

async function streamBody(
  ctx: AnswerContext,
  reader: ReadableStreamDefaultReader<Uint8Array>,
  status: number,
  headers: Headers,
  declared: number,
  keepAlive: boolean,
  pending: Uint8Array[],
  next: Promise<ReadableStreamReadResult<Uint8Array>> | null,
): Promise<boolean> {
  // An HTTP/1.0 client has no chunks: its body ends with the connection.
  const chunked = declared < 0 && ctx.minor === 1;
  if (declared < 0 && !chunked) keepAlive = false;
  const wire = ctx.wire;
  // A live stream is cancelled when the client leaves (an answer all there at once is just written).
  ctx.streaming(reader);
  let sent = 0;
  const send = async (piece: Uint8Array, head?: Uint8Array): Promise<boolean> => {
    if (declared >= 0 && sent + piece.length > declared) {
      throw new RangeError(`The body is longer than its Content-Length ${declared}`);
    }
    sent += piece.length;
    if (!chunked) return await wire.write(head ? concat(head, piece) : piece);
    const size = encoder.encode(`${piece.length.toString(16)}\r\n`);
    const framed = new Uint8Array((head?.length ?? 0) + size.length + piece.length + 2);
    let at = 0;
    if (head) {
      framed.set(head);
      at = head.length;
    }
    framed.set(size, at);
    framed.set(piece, at + size.length);
    framed[framed.length - 2] = 13;
    framed[framed.length - 1] = 10;
    return await wire.write(framed);
  };
  let head: Uint8Array | undefined = encoder.encode(
    headText(status, headers, declared, chunked, keepAlive, ctx.minor),
  );
  for (const piece of pending) {
    if (piece.length === 0) continue;
    if (!await send(piece, head)) throw new Deno.errors.BrokenPipe("The client left");
    head = undefined;
  }
  if (head && !await wire.write(head)) throw new Deno.errors.BrokenPipe("The client left");
  while (true) {
    const result = await (next ?? reader.read());
    next = null;
    if (result.done) break;
    if (result.value.length === 0) continue;
    if (!await send(result.value)) throw new Deno.errors.BrokenPipe("The client left");
  }
  if (chunked && !await wire.write(encoder.encode("0\r\n\r\n"))) return false;
  // A body shorter than it said: the client must not take it as complete, so the connection ends.
  if (declared >= 0 && sent !== declared) return false;
  return keepAlive;
}
