// SandD's HTTP/1.1 engine, part 5: serving one connection. Requests one at a time (pipelined ones wait in the
// buffer), each answered before the next head is parsed; a bad head gets its status and the connection closes; an
// upgraded connection leaves the engine. While a live answer streams, one read waits on the socket, so a client
// that leaves is seen at once (its request's signal aborts, the answer's stream is cancelled).
import { headEnd, HeadError, MAX_HEAD_BYTES, parseHead, type RequestHead } from "./_http1_head.ts";
import { type BodyEvents, EngineRequest, type UpgradeHost } from "./_http1_request.ts";
import { writeAnswer } from "./_http1_answer.ts";
import { Wire } from "./_http1_wire.ts";

/** What the engine needs from the listener around it. */
export interface EngineHooks {
  /** Waiting for the next request head starts (the listener's head deadline runs). */
  awaitHead(): void;
  /** A request head arrived. */
  headArrived(): void;
  /** The connection became a WebSocket: no longer HTTP (never closed by the engine). */
  upgraded(): void;
  /** Answer a request (never rejects: errors become answers). */
  respond(request: EngineRequest): Promise<Response>;
  /** The answer was written (undefined) or could not be (the error). */
  answered(error: Error | undefined): void;
}

const encoder = new TextEncoder();

// The reasons a request's signal aborts with once its answer is over or its connection was upgraded: made once,
// as a new error captures a stack trace (~10 µs each in a profile of a node taking 7,500 daemon connects in a
// failover, 2.8 % of its time); only a closed connection gets an error of its own.
const ANSWER_OVER = new DOMException("The answer is over", "AbortError");
const UPGRADED = new DOMException("The connection was upgraded", "AbortError");

/** The `Deno.internal.rid` property of a `Deno.Conn` (own, not registered with `Symbol.for`), found once. */
let ridSymbol: symbol | null | undefined;

/** The socket's resource id, or null when this Deno does not show it the way the engine needs. */
export function connRid(conn: Deno.Conn): number | null {
  if (ridSymbol === undefined) {
    ridSymbol = Object.getOwnPropertySymbols(conn).find((s) =>
      s.description === "Deno.internal.rid"
    ) ?? null;
  }
  if (ridSymbol === null) return null;
  const rid = (conn as unknown as Record<symbol, unknown>)[ridSymbol];
  return typeof rid === "number" ? rid : null;
}

function refusal(error: HeadError): Uint8Array {
  const body = JSON.stringify({ code: "BAD_REQUEST", message: error.message });
  const reason = error.status === 431 ? "Request Header Fields Too Large" : "Bad Request";
  return encoder.encode(
    `HTTP/1.1 ${error.status} ${reason}\r\ncontent-type: application/json\r\n` +
      `content-length: ${encoder.encode(body).length}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/**
 * Serve HTTP/1.1 on `conn` until it closes or is upgraded.
 *
 * @param conn An accepted TCP (or TLS, handshake done) connection.
 * @param rid Its resource id ({@linkcode connRid}).
 * @param scheme `http`, or `https` on TLS (the scheme of the requests' URLs).
 * @param hooks The listener's side.
 * @returns Whether the connection was upgraded (then the caller must not close it).
 */
export async function serveConnection(
  conn: Deno.Conn,
  rid: number,
  scheme: "http" | "https",
  hooks: EngineHooks,
): Promise<boolean> {
  const wire = new Wire(conn);
  let upgraded = false;
  let current: EngineRequest | null = null;
  let streaming: ReadableStreamDefaultReader<Uint8Array> | null = null;
  let broken = false;
  const left = (error: unknown) => {
    current?.abort(error);
    void streaming?.cancel(error).catch(() => {});
  };
  /** One read on the socket while the handler works: the client leaving is seen at once. */
  const watch = () => {
    if (wire.reading || wire.eof || upgraded) return;
    const request = current;
    void wire.fill(MAX_HEAD_BYTES + 4).then((more) => {
      if (!more && request === current) left(new Deno.errors.ConnectionReset("The client left"));
    });
  };
  const events: BodyEvents = {
    bodyDone: () => {},
    bodyBroken: () => broken = true,
  };
  const host: UpgradeHost = {
    wire,
    rid,
    upgrading: () => {
      upgraded = true;
      wire.detach();
      hooks.upgraded();
    },
  };
  try {
    while (true) {
      hooks.awaitHead();
      let end: number;
      try {
        end = -1;
        while (true) {
          // Empty lines before a request line are ignored (RFC 9112 §2.2).
          while (
            wire.end - wire.start >= 2 && wire.buffer[wire.start] === 13 &&
            wire.buffer[wire.start + 1] === 10
          ) {
            wire.start += 2;
          }
          end = headEnd(wire.buffer, wire.start, wire.end);
          if (end >= 0) break;
          if (wire.end - wire.start >= MAX_HEAD_BYTES) {
            throw new HeadError(431, `Request head over ${MAX_HEAD_BYTES} bytes`);
          }
          if (!await wire.fill(MAX_HEAD_BYTES + 4)) return false;
        }
      } catch (error) {
        if (!(error instanceof HeadError)) throw error;
        await wire.write(refusal(error));
        return false;
      }
      let head: RequestHead;
      let url: string;
      try {
        head = parseHead(wire.buffer, wire.start, end);
        url = requestUrl(head, scheme);
      } catch (error) {
        if (!(error instanceof HeadError)) throw error;
        await wire.write(refusal(error));
        return false;
      }
      wire.start = end;
      hooks.headArrived();
      const request: EngineRequest = new EngineRequest(head, url, wire, host, events);
      current = request;
      broken = false;
      const response = await hooks.respond(request);
      if (upgraded) {
        hooks.answered(undefined);
        request.abort(UPGRADED);
        current = null;
        return true;
      }
      const keepAlive = await writeAnswer(response, {
        wire,
        head: head.method === "HEAD",
        minor: head.minor,
        keepAlive: head.keepAlive && !broken && request.settleBody(),
        streaming: (reader) => {
          streaming = reader;
          if (reader === null) return;
          if (wire.eof) void reader.cancel().catch(() => {});
          // A live answer: one read waits on the socket, so a client that leaves cancels it at once.
          else if (request.bodyDone) watch();
        },
      });
      hooks.answered(wire.broken ? new Deno.errors.BrokenPipe("The client left") : undefined);
      request.abort(ANSWER_OVER);
      current = null;
      if (!keepAlive || broken || wire.broken || !request.bodyDone) return false;
      if (wire.eof && wire.buffered === 0) return false;
    }
  } finally {
    current?.abort(new Deno.errors.ConnectionReset("The connection closed"));
    if (!upgraded) wire.close();
  }
}

/** `scheme://host/target` as `Request.url` has it. */
function requestUrl(head: RequestHead, scheme: "http" | "https"): string {
  const target = head.target;
  if (target[0] === "/") return `${scheme}://${head.host || "localhost"}${target}`;
  if (target === "*") return `${scheme}://${head.host || "localhost"}/*`;
  try {
    return new URL(target).href;
  } catch {
    throw new HeadError(
      400,
      `Invalid absolute request target ${JSON.stringify(target.slice(0, 80))}`,
    );
  }
}
