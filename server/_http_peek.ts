// A look at the first bytes an accepted TCP connection has received, without consuming them (`recv` with
// `MSG_PEEK` through FFI), so the listener can choose the HTTP engine for the connection from its first request
// head and still hand the connection over untouched. Only where FFI is permitted and the C library is known
// (Linux, macOS); elsewhere `openPeeker` gives undefined and every connection takes the one engine it took before.

/** What a peek found. */
export type PeekResult =
  /** A complete first request head that is not a protocol upgrade. */
  | "plain"
  /** An upgrade request, a head larger than the peek buffer, the peer's end, or an error. */
  | "other"
  /** Not a complete head yet. */
  | "wait";

/** The peek buffer: larger first heads go to the engine that takes everything. */
const PEEK_BYTES = 8 * 1024;
const MSG_PEEK = 0x2;
const CR = 13;
const LF = 10;
const SP = 32;
const latin1 = new TextDecoder("latin1");

/** Peeks at connections' first bytes, and can cut a connection off; close it with the listener. */
export interface Peeker {
  /** Classify the connection's first request head from the bytes it has received so far. */
  peek(conn: Deno.Conn): PeekResult;
  /**
   * The socket's identity (both its addresses, as the kernel gives them), to take while its descriptor is known to
   * be the connection's own (before an engine takes it); undefined when it cannot be read.
   */
  identify(conn: Deno.Conn): Uint8Array | undefined;
  /**
   * Shut the socket down both ways (`shutdown(2)`: the engine serving it then reads its end and lets it go), if its
   * descriptor still is the socket `identity` was taken from; a descriptor closed since, or reused by another
   * socket or file, is left alone. Returns whether it did.
   */
  cut(conn: Deno.Conn, identity: Uint8Array): boolean;
  /** Unload the C library. */
  close(): void;
}

const SYMBOLS = {
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
} as const;

/** Room for a `sockaddr_storage`. */
const ADDRESS_BYTES = 128;
const SHUT_RDWR = 2;

/**
 * A peeker, or undefined where it cannot work (no FFI permission, another OS, no descriptor on the connection
 * object). Never throws.
 */
export function openPeeker(): Peeker | undefined {
  const os = Deno.build.os;
  if (os !== "linux" && os !== "darwin") return undefined;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return undefined;
    const library = Deno.dlopen(os === "linux" ? "libc.so.6" : "libSystem.B.dylib", SYMBOLS);
    // MSG_DONTWAIT: never block the thread when nothing has arrived yet.
    const flags = MSG_PEEK | (os === "linux" ? 0x40 : 0x80);
    const buffer = new Uint8Array(PEEK_BYTES);
    let fdSymbol: symbol | undefined;
    const descriptor = (conn: Deno.Conn): number | undefined => {
      fdSymbol ??= Object.getOwnPropertySymbols(conn).find((s) =>
        s.description === "Deno.internal.fd"
      );
      const fd = fdSymbol === undefined
        ? undefined
        : (conn as unknown as Record<symbol, unknown>)[fdSymbol];
      return typeof fd === "number" ? fd : undefined;
    };
    const address = new Uint8Array(ADDRESS_BYTES);
    const length = new Uint32Array(1);
    /** Both addresses of the socket behind `fd`, or undefined (not a socket, not connected, closed). */
    const addresses = (fd: number): Uint8Array | undefined => {
      const out: number[] = [];
      for (const get of [library.symbols.getpeername, library.symbols.getsockname]) {
        length[0] = ADDRESS_BYTES;
        if (get(fd, address, length) !== 0 || length[0]! > ADDRESS_BYTES) return undefined;
        out.push(length[0]!, ...address.subarray(0, length[0]));
      }
      return new Uint8Array(out);
    };
    return {
      identify(conn: Deno.Conn): Uint8Array | undefined {
        const fd = descriptor(conn);
        return fd === undefined ? undefined : addresses(fd);
      },
      cut(conn: Deno.Conn, identity: Uint8Array): boolean {
        const fd = descriptor(conn);
        if (fd === undefined) return false;
        const now = addresses(fd);
        if (now === undefined || now.length !== identity.length) return false;
        for (let i = 0; i < now.length; i++) if (now[i] !== identity[i]) return false;
        return library.symbols.shutdown(fd, SHUT_RDWR) === 0;
      },
      peek(conn: Deno.Conn): PeekResult {
        const fd = descriptor(conn);
        if (fd === undefined) return "other";
        const n = Number(library.symbols.recv(fd, buffer, BigInt(PEEK_BYTES), flags));
        // -1: nothing yet (EAGAIN) or an error, which the engine will meet too; keep waiting until the deadline.
        if (n < 0) return "wait";
        if (n === 0 || !startsLikeRequest(buffer, n)) return "other";
        const end = headEnd(buffer, n);
        if (end < 0) return n === PEEK_BYTES ? "other" : "wait";
        return isUpgrade(latin1.decode(buffer.subarray(0, end))) ? "other" : "plain";
      },
      close() {
        library.close();
      },
    };
  } catch {
    return undefined;
  }
}

/** Whether the first `n` bytes could begin a request line (`METHOD SP`); anything else is not ours to judge. */
function startsLikeRequest(bytes: Uint8Array, n: number): boolean {
  for (let i = 0; i < n && i < 20; i++) {
    const c = bytes[i]!;
    if (c === SP) return i > 0;
    if (c < 65 || c > 90) return false;
  }
  return n < 20;
}

/** Where the blank line ending a head starts in the first `n` bytes (CRLF CRLF, or bare LF LF), or -1. */
function headEnd(bytes: Uint8Array, n: number): number {
  for (let i = bytes.indexOf(LF); i >= 0 && i + 1 < n; i = bytes.indexOf(LF, i + 1)) {
    if (bytes[i + 1] === LF) return i;
    if (bytes[i + 1] === CR && i + 2 < n && bytes[i + 2] === LF) return i;
  }
  return -1;
}

/** Whether a request head asks for a protocol upgrade (an `Upgrade` header, any case, or an HTTP/2 preface). */
function isUpgrade(head: string): boolean {
  return /\r\nupgrade[ \t]*:/i.test(head) || head.startsWith("PRI * HTTP/2");
}
