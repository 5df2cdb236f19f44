// Where the complete NATS protocol messages in a read end (server/cluster/_nats_transport.ts): so the transport hands
// the client's parser whole messages, and reads a large message straight into one buffer of its size. The client's
// parser copies a message split across reads into a buffer it grows by doubling (two to three copies of every
// relayed byte); cut at message ends, no byte is copied there.
//
// Any cut is correct (the parser is a stream parser): this only chooses good ones, and a line it does not know is
// taken as a whole message.

const LF = 10;
const SPACE = 32;

/** Where the complete messages end in `buf[0, length)`, and what the message after them needs. */
export interface ProtocolCut {
  /** Bytes of the complete messages from the start (0: none is complete). */
  end: number;
  /** Bytes the incomplete message at `end` has in all (its line, payload and CRLF), or 0 while its line is not. */
  want: number;
}

/** The size at the end of a `MSG`/`HMSG` line (`buf[start, lineEnd)`, no CRLF): its last number, or -1. */
function lastNumber(buf: Uint8Array, start: number, lineEnd: number): number {
  let at = lineEnd;
  while (at > start && buf[at - 1] === SPACE) at--;
  let value = 0;
  let digits = 0;
  let scale = 1;
  while (at > start) {
    const c = buf[at - 1]!;
    if (c < 48 || c > 57) break;
    value += (c - 48) * scale;
    scale *= 10;
    digits++;
    at--;
  }
  return digits === 0 || digits > 15 ? -1 : value;
}

/**
 * Find where the complete protocol messages in `buf[0, length)` end.
 *
 * @example
 * ```ts
 * import { protocolCut } from "./_nats_framing.ts";
 * const bytes = new TextEncoder().encode("PING\r\nMSG a 1 5\r\nhel");
 * const cut = protocolCut(bytes, bytes.length);
 * console.assert(cut.end === 6 && cut.want === 11 + 5 + 2); // its line, payload and CRLF
 * ```
 */
export function protocolCut(buf: Uint8Array, length: number): ProtocolCut {
  // Search the filled part only: the rest of a large read buffer (up to a whole message's size) holds no line,
  // and scanning it on every read that ends inside a line cost more than the read itself.
  const filled = length < buf.length ? buf.subarray(0, length) : buf;
  let at = 0;
  while (at < length) {
    const lf = filled.indexOf(LF, at);
    if (lf < 0) return { end: at, want: 0 };
    const op = buf[at]! | 0x20; // lower case
    let next = lf + 1;
    if (op === 0x6d /* m: MSG */ || op === 0x68 /* h: HMSG */) {
      const lineEnd = lf > at && buf[lf - 1] === 13 ? lf - 1 : lf;
      const size = lastNumber(buf, at, lineEnd);
      if (size >= 0) next = lf + 1 + size + 2;
    }
    if (next > length) return { end: at, want: next - at };
    at = next;
  }
  return { end: at, want: 0 };
}

/**
 * Whether every protocol message in `buf[0, end)` (whole messages, as {@linkcode protocolCut} found them) is a
 * `MSG`/`HMSG` whose subject starts with `prefix`: a read holding only such messages may be read over again once
 * the client's parser has handled it, when their subscriber keeps no view of their bytes.
 *
 * @example
 * ```ts
 * import { onlyMessagesUnder } from "./_nats_framing.ts";
 * const bytes = new TextEncoder().encode("MSG sandd.back.1 3 2\r\nhi\r\n");
 * console.assert(onlyMessagesUnder(bytes, bytes.length, new TextEncoder().encode("sandd.back.")));
 * ```
 */
export function onlyMessagesUnder(buf: Uint8Array, end: number, prefix: Uint8Array): boolean {
  const filled = end < buf.length ? buf.subarray(0, end) : buf;
  let at = 0;
  while (at < end) {
    const lf = filled.indexOf(LF, at);
    if (lf < 0) return false;
    const op = buf[at]! | 0x20;
    const subject = op === 0x6d ? at + 4 : op === 0x68 ? at + 5 : -1; // "MSG " or "HMSG "
    if (subject < 0 || subject + prefix.length > lf) return false;
    for (let i = 0; i < prefix.length; i++) if (buf[subject + i] !== prefix[i]) return false;
    const lineEnd = lf > at && buf[lf - 1] === 13 ? lf - 1 : lf;
    const size = lastNumber(buf, at, lineEnd);
    if (size < 0) return false;
    at = lf + 1 + size + 2;
  }
  return end > 0 && at === end;
}
