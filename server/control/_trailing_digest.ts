// An upload body that ends with its own SHA-256 (`Sandd-Sha256: trailing`): the client hashes as it sends and
// appends the 64 hex digits, so that the controller need not hash the bytes again; the daemon checks them against
// the digest before it puts the file in place. Here: a byte stream of the bytes before the digest (a BYOB reader's
// buffer is read into straight from the socket, as the body's own stream does), and the digest once it has ended.
import { badRequest } from "./_errors.ts";
import { SHA256_HEX } from "../_file_checks.ts";

/** Length of the digest at the end of the body: a SHA-256 in hex. */
export const DIGEST_LENGTH = 64;
/** A reader's buffer smaller than this is not read into (too little room beside the held-back digest). */
const MIN_VIEW = 2 * DIGEST_LENGTH;
/** Size of the pieces a default reader gets. */
const PIECE = 256 * 1024;

/** A body split into its bytes and the digest at its end. */
export interface TrailingDigest {
  /** The bytes before the digest. */
  data: ReadableStream<Uint8Array>;
  /**
   * The digest, once `data` has ended.
   *
   * @throws {HttpError} 400 when the body ended short of a digest or its last 64 bytes are not lowercase hex.
   */
  digest(): string;
}

/**
 * Split a body whose last 64 bytes are the SHA-256 (lowercase hex) of the bytes before them.
 *
 * @example
 * ```ts
 * import { trailingDigest } from "./_trailing_digest.ts";
 * const digest = "0".repeat(64);
 * const body = new Blob(["hello", digest]).stream();
 * const split = trailingDigest(body);
 * console.assert(await new Response(split.data).text() === "hello");
 * console.assert(split.digest() === digest);
 * ```
 */
export function trailingDigest(body: ReadableStream<Uint8Array> | null): TrailingDigest {
  const tail = new Uint8Array(DIGEST_LENGTH);
  let kept = 0;
  let ended = false;
  let byob: ReadableStreamBYOBReader | null = null;
  let plain: ReadableStreamDefaultReader<Uint8Array> | null = null;
  let rest: Uint8Array | null = null; // what a plain reader's chunk had beyond the room given
  let scratch: Uint8Array | null = null; // read into for a reader that brings no buffer (or too small a one)
  let locked = false;
  /**
   * Take the body at the first read, not before: a call that fails before it reads anything (an unknown
   * daemon) leaves the body to the HTTP engine, which drains it and keeps the connection.
   */
  const lock = () => {
    if (locked || !body) return;
    locked = true;
    try {
      byob = body.getReader({ mode: "byob" });
    } catch {
      plain = body.getReader();
    }
  };

  /**
   * Read into `into` from `at`: the region filled so far (the same memory: a BYOB read transfers the buffer and
   * gives it back), and whether the body has ended.
   */
  async function readInto(
    into: Uint8Array,
    at: number,
  ): Promise<{ region: Uint8Array; end: boolean }> {
    if (byob) {
      const offset = into.byteOffset; // read before the read detaches `into`
      const { done, value } = await byob.read(into.subarray(at));
      // At the end the buffer comes back in an empty view (none when the body was cancelled: nothing to keep).
      const buffer = value?.buffer ?? new ArrayBuffer(offset + at);
      return { region: new Uint8Array(buffer, offset, at + (value?.length ?? 0)), end: done };
    }
    let chunk = rest;
    rest = null;
    while (!chunk || chunk.length === 0) {
      const next = plain ? await plain.read() : { done: true as const };
      if (next.done) return { region: into.subarray(0, at), end: true };
      chunk = next.value;
    }
    const n = Math.min(chunk.length, into.length - at);
    into.set(chunk.subarray(0, n), at);
    if (n < chunk.length) rest = chunk.subarray(n);
    return { region: into.subarray(0, at + n), end: false };
  }

  /**
   * Fill `view` (the held-back tail first) until it holds more than the digest's length or the body ends: the
   * bytes that can go on, with the last 64 kept back. The view's memory is what is returned (a BYOB read
   * transfers its buffer).
   */
  async function fill(view: Uint8Array): Promise<Uint8Array> {
    const room = view.length; // `view` is detached by the first read
    view.set(tail.subarray(0, kept));
    let region = view.subarray(0, kept);
    while (region.length <= DIGEST_LENGTH) {
      const next = await readInto(
        new Uint8Array(region.buffer, region.byteOffset, room),
        region.length,
      );
      region = next.region;
      if (next.end) {
        ended = true;
        break;
      }
    }
    const keep = Math.min(DIGEST_LENGTH, region.length);
    tail.set(region.subarray(region.length - keep));
    kept = keep;
    return region.subarray(0, region.length - keep);
  }

  const data: ReadableStream<Uint8Array<ArrayBuffer>> = new ReadableStream({
    type: "bytes",
    async pull(controller: ReadableByteStreamController) {
      lock();
      const request = controller.byobRequest;
      const view = request?.view && request.view.byteLength >= MIN_VIEW
        ? new Uint8Array(request.view.buffer, request.view.byteOffset, request.view.byteLength)
        : null;
      if (ended) {
        controller.close();
        request?.respond(0);
        return;
      }
      const out = await fill(view ?? (scratch ??= new Uint8Array(PIECE)));
      if (out.length === 0) {
        controller.close();
        if (view) request!.respondWithNewView(new Uint8Array(out.buffer, out.byteOffset, 0));
        else {
          scratch = new Uint8Array(out.buffer, 0, PIECE);
          request?.respond(0);
        }
        return;
      }
      if (view) {
        request!.respondWithNewView(out);
      } else {
        // A piece of its own size: a shared buffer would be kept whole behind every short piece.
        scratch = new Uint8Array(out.buffer, 0, PIECE);
        controller.enqueue(out.slice());
      }
    },
    async cancel(reason: unknown) {
      lock();
      await (byob ?? plain)?.cancel(reason);
    },
  });

  return {
    data,
    digest(): string {
      if (!ended) {
        throw badRequest("The body's trailing SHA-256 was asked for before the body ended");
      }
      const text = kept === DIGEST_LENGTH ? new TextDecoder().decode(tail) : "";
      if (!SHA256_HEX.test(text)) {
        throw badRequest(
          kept < DIGEST_LENGTH
            ? `With 'Sandd-Sha256: trailing' the body must end with 64 hex digits of SHA-256; it had ${kept} bytes in all`
            : `With 'Sandd-Sha256: trailing' the body's last 64 bytes must be lowercase hex digits of SHA-256, got '${
              text.replace(/[^\x20-\x7e]/g, "?")
            }'`,
        );
      }
      return text;
    },
  };
}
