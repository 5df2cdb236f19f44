// SandD's HTTP/1.1 engine, part 1: a request head, parsed strictly. Anything RFC 9112 does not allow, and anything
// two parsers could read two ways (the ways requests are smuggled past a proxy), is refused with a status and a
// message naming what was wrong; the connection is closed after such an answer.

/** Largest request head accepted (request line and headers); larger: 431. */
export const MAX_HEAD_BYTES = 64 * 1024;
/** Most header lines accepted; more: 431. */
export const MAX_HEADERS = 100;

/** A request head that cannot be served: answered with `status` (400 or 431) and the connection closed. */
export class HeadError extends Error {
  /** The answer's status (400 or 431). */
  readonly status: number;

  constructor(status: number, message: string) {
    super(message);
    this.name = "HeadError";
    this.status = status;
  }
}

/** What the engine needs of a request head. */
export interface RequestHead {
  method: string;
  /** The request target as sent (origin-form `/p?q`, absolute-form `http://h/p`, or `*`). */
  target: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor: 0 | 1;
  /** Header names (lower case) and values, alternating, in the order sent. */
  headers: string[];
  /** The `Host` header, or null. */
  host: string | null;
  /** Body length from `Content-Length`; -1 with none. */
  contentLength: number;
  /** `Transfer-Encoding: chunked`. */
  chunked: boolean;
  /** Whether the connection may carry another request after this one (before the handler has its say). */
  keepAlive: boolean;
  /** `Connection: upgrade` with an `Upgrade` header. */
  upgrade: boolean;
  /** `Expect: 100-continue`. */
  expectContinue: boolean;
}

const CR = 13;
const LF = 10;

/**
 * Where the head in `bytes[from, to)` ends: the index just past its blank line, or -1 when it has not all arrived.
 * Throws {@linkcode HeadError} 400 for a line feed without its carriage return or a carriage return without its
 * line feed (a head is never read two ways). The caller skips empty lines before a request line.
 */
export function headEnd(bytes: Uint8Array, from: number, to: number): number {
  for (let i = from; i < to; i++) {
    const b = bytes[i];
    if (b === CR) {
      if (i + 1 < to && bytes[i + 1] !== LF) {
        throw new HeadError(400, "Bare CR in the request head");
      }
      continue;
    }
    if (b !== LF) continue;
    if (i === from || bytes[i - 1] !== CR) throw new HeadError(400, "Line ends with LF without CR");
    // A blank line: CR LF right after the previous line's LF.
    if (i - 2 >= from && bytes[i - 2] === LF) return i + 1;
  }
  return -1;
}

/** A Host header: a name or IPv4 address, or a bracketed IPv6 address, and an optional port (RFC 9110 §7.2). */
const HOST = /^(?:[A-Za-z0-9._~!$&'()*+,;=%-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * Whether `host` is a valid Host header value (name or address, optional port): one with `/`, `?`, `#`, `@` or
 * spaces would change the path a handler sees in `request.url` (`scheme://` + Host + target).
 *
 * @example
 * ```ts
 * import { validHost } from "./_http1_head.ts";
 * console.assert(validHost("127.0.0.1:8765") && validHost("[::1]:80"));
 * console.assert(!validHost("127.0.0.1/api/v1/daemons#"));
 * ```
 */
export function validHost(host: string): boolean {
  return HOST.test(host);
}

/** tchar of RFC 9110 §5.6.2, by byte. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") {
  TCHAR[c.charCodeAt(0)] = 1;
}

function latin1(bytes: Uint8Array, from: number, to: number): string {
  let out = "";
  for (let at = from; at < to; at += 8192) {
    out += String.fromCharCode.apply(
      null,
      bytes.subarray(at, Math.min(to, at + 8192)) as unknown as number[],
    );
  }
  return out;
}

function shown(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}...` : text);
}

/** Whether a comma-separated header value lists `token` (case-insensitive). */
function lists(value: string, token: string): boolean {
  for (const part of value.split(",")) if (part.trim().toLowerCase() === token) return true;
  return false;
}

/**
 * Parse the head in `bytes[from, to)` (as found by {@linkcode headEnd}, blank line included).
 *
 * @example
 * ```ts
 * import { parseHead } from "./_http1_head.ts";
 * const bytes = new TextEncoder().encode("GET /a?b HTTP/1.1\r\nHost: h\r\n\r\n");
 * const head = parseHead(bytes, 0, bytes.length);
 * console.assert(head.method === "GET" && head.target === "/a?b" && head.host === "h");
 * ```
 */
export function parseHead(bytes: Uint8Array, from: number, to: number): RequestHead {
  // Request line: method SP target SP version CRLF, single spaces.
  let i = from;
  while (i < to && TCHAR[bytes[i]!] === 1) i++;
  if (i === from || bytes[i] !== 32) {
    throw new HeadError(
      400,
      `Invalid method in request line ${shown(latin1(bytes, from, lineEnd(bytes, from, to)))}`,
    );
  }
  const method = latin1(bytes, from, i);
  const targetAt = ++i;
  while (i < to && bytes[i]! > 32 && bytes[i]! < 127) i++;
  if (i === targetAt || bytes[i] !== 32) {
    throw new HeadError(
      400,
      `Invalid request target in ${shown(latin1(bytes, from, lineEnd(bytes, from, to)))}`,
    );
  }
  const target = latin1(bytes, targetAt, i);
  const versionAt = ++i;
  const lineAt = lineEnd(bytes, versionAt, to);
  const version = latin1(bytes, versionAt, lineAt);
  let minor: 0 | 1;
  if (version === "HTTP/1.1") minor = 1;
  else if (version === "HTTP/1.0") minor = 0;
  else {
    throw new HeadError(
      400,
      `HTTP version ${shown(version)} is not supported (HTTP/1.1 and HTTP/1.0 are)`,
    );
  }
  if (target[0] !== "/") {
    const absolute = target.startsWith("http://") || target.startsWith("https://");
    if (!absolute && !(target === "*" && method === "OPTIONS")) {
      throw new HeadError(
        400,
        `Request target must start with '/' or be absolute, got ${shown(target)}`,
      );
    }
  }

  const headers: string[] = [];
  let host: string | null = null;
  let contentLength = -1;
  let transferEncoding: string | null = null;
  let connection = "";
  let upgradeHeader = false;
  let expectContinue = false;
  let at = lineAt + 2;
  const end = to - 2; // the blank line's CR
  while (at < end) {
    const stop = lineEnd(bytes, at, to);
    if (headers.length >= 2 * MAX_HEADERS) {
      throw new HeadError(431, `More than ${MAX_HEADERS} header lines`);
    }
    const first = bytes[at]!;
    if (first === 32 || first === 9) {
      throw new HeadError(400, "Folded header line (obs-fold) is not accepted");
    }
    let colon = at;
    while (colon < stop && TCHAR[bytes[colon]!] === 1) colon++;
    if (colon === at || bytes[colon] !== 58) {
      throw new HeadError(400, `Invalid header line ${shown(latin1(bytes, at, stop))}`);
    }
    let v = colon + 1;
    while (v < stop && (bytes[v] === 32 || bytes[v] === 9)) v++;
    let w = stop;
    while (w > v && (bytes[w - 1] === 32 || bytes[w - 1] === 9)) w--;
    for (let k = v; k < w; k++) {
      const b = bytes[k]!;
      if ((b < 32 && b !== 9) || b === 127) {
        throw new HeadError(
          400,
          `Control character in the value of header ${shown(latin1(bytes, at, colon))}`,
        );
      }
    }
    const name = latin1(bytes, at, colon).toLowerCase();
    const value = latin1(bytes, v, w);
    headers.push(name, value);
    switch (name) {
      case "host":
        if (host !== null) throw new HeadError(400, "More than one Host header");
        host = value;
        break;
      case "content-length": {
        // Repeats are accepted only as the same number (RFC 9110 §8.6), e.g. "5, 5"; anything else is ambiguous.
        for (const part of value.split(",")) {
          const digits = part.trim();
          if (!/^\d{1,15}$/.test(digits)) {
            throw new HeadError(400, `Invalid Content-Length ${shown(value)}`);
          }
          const n = Number(digits);
          if (contentLength !== -1 && contentLength !== n) {
            throw new HeadError(
              400,
              `Conflicting Content-Length values (${contentLength} and ${n})`,
            );
          }
          contentLength = n;
        }
        break;
      }
      case "transfer-encoding":
        transferEncoding = transferEncoding === null ? value : `${transferEncoding}, ${value}`;
        break;
      case "connection":
        connection = connection === "" ? value : `${connection}, ${value}`;
        break;
      case "upgrade":
        upgradeHeader = true;
        break;
      case "expect":
        if (value.toLowerCase() === "100-continue") expectContinue = true;
        break;
    }
    at = stop + 2;
  }
  let chunked = false;
  if (transferEncoding !== null) {
    if (minor === 0) {
      throw new HeadError(400, "Transfer-Encoding is not allowed in an HTTP/1.0 request");
    }
    if (contentLength !== -1) {
      throw new HeadError(
        400,
        "A request must not carry both Content-Length and Transfer-Encoding",
      );
    }
    if (transferEncoding.trim().toLowerCase() !== "chunked") {
      throw new HeadError(
        400,
        `Transfer-Encoding ${shown(transferEncoding)} is not supported (only "chunked", once)`,
      );
    }
    chunked = true;
  }
  if (host === null && minor === 1) {
    throw new HeadError(400, "An HTTP/1.1 request needs a Host header");
  }
  if (host !== null && !HOST.test(host)) {
    throw new HeadError(400, `Invalid Host header ${shown(host)}`);
  }
  const close = connection !== "" && lists(connection, "close");
  const keepAlive = minor === 1 ? !close : connection !== "" && lists(connection, "keep-alive");
  const upgrade = upgradeHeader && connection !== "" && lists(connection, "upgrade");
  return {
    method,
    target,
    minor,
    headers,
    host,
    contentLength,
    chunked,
    keepAlive,
    upgrade,
    expectContinue,
  };
}

/** Index of the CR that ends the line starting at `from` (the head is known to end with CR LF CR LF). */
function lineEnd(bytes: Uint8Array, from: number, to: number): number {
  let i = from;
  while (i < to && bytes[i] !== CR) i++;
  return i;
}
