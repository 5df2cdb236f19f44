import { assertEquals, assertThrows } from "../../tests/_assert.ts";
import { HttpError } from "./_errors.ts";
import { concat } from "../../tests/_http1.ts";
import { trailingDigest } from "./_trailing_digest.ts";

const DIGEST = "0123456789abcdef".repeat(4);
const encoder = new TextEncoder();

function bytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

/** A byte stream (as the HTTP engine's body is) giving `pieces` one per pull, into a BYOB reader's view when asked. */
function byteSource(pieces: Uint8Array[]): ReadableStream<Uint8Array<ArrayBuffer>> {
  const queue = pieces.map((p) => p.slice());
  return new ReadableStream({
    type: "bytes",
    pull(controller: ReadableByteStreamController) {
      const request = controller.byobRequest;
      const piece = queue.shift();
      if (!piece) {
        controller.close();
        request?.respond(0);
        return;
      }
      if (!request) return controller.enqueue(piece);
      const view = request.view as Uint8Array;
      const n = Math.min(view.length, piece.length);
      view.set(piece.subarray(0, n));
      if (n < piece.length) queue.unshift(piece.subarray(n));
      request.respond(n);
    },
  });
}

/** Split `all` into pieces of the given sizes, in turn (the rest in the last size). */
function split(all: Uint8Array, sizes: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0, i = 0; at < all.length; i++) {
    const n = sizes[Math.min(i, sizes.length - 1)]!;
    out.push(all.subarray(at, at + n));
    at += n;
  }
  return out;
}

/** Read as `server.upload` does: BYOB into one buffer, filled from where the last read ended. */
async function readByob(
  stream: ReadableStream<Uint8Array>,
  size = 256 * 1024,
): Promise<Uint8Array> {
  const reader = stream.getReader({ mode: "byob" });
  const parts: Uint8Array[] = [];
  let buffer = new ArrayBuffer(size);
  let filled = 0;
  while (true) {
    const { done, value } = await reader.read(new Uint8Array(buffer, filled));
    if (value) buffer = value.buffer as ArrayBuffer;
    if (done) break;
    parts.push(value.slice());
    filled += value.length;
    if (filled === buffer.byteLength) filled = 0;
  }
  return new Uint8Array(await new Blob(parts as Uint8Array<ArrayBuffer>[]).arrayBuffer());
}

Deno.test("trailing digest: the bytes before the last 64 pass, the digest after, whatever the piece sizes", async () => {
  const cuts: number[][] = [[1], [63], [64], [65], [100, 1], [65_536], [299_999, 65_536], [
    300_064,
  ]];
  for (const sizes of cuts) {
    const data = bytes(Math.min(...sizes) <= 100 ? 5_000 : 300_000);
    const body = concat([data, encoder.encode(DIGEST)]);
    for (const reader of ["byob", "small byob", "default"] as const) {
      const split_ = trailingDigest(byteSource(split(body, sizes)));
      const got = reader === "default"
        ? new Uint8Array(await new Response(split_.data).arrayBuffer())
        : await readByob(split_.data, reader === "byob" ? 256 * 1024 : 100);
      assertEquals(got.length, data.length, `${reader} ${sizes}`);
      assertEquals(got, data, `${reader} ${sizes}`);
      assertEquals(split_.digest(), DIGEST);
    }
  }
});

Deno.test("trailing digest: a body of the digest alone is empty; a plain (not byte) stream works too", async () => {
  const alone = trailingDigest(byteSource([encoder.encode(DIGEST)]));
  assertEquals((await readByob(alone.data)).length, 0);
  assertEquals(alone.digest(), DIGEST);
  const plain = trailingDigest(new Blob(["hello", DIGEST.slice(0, 10), DIGEST.slice(10)]).stream());
  assertEquals(await new Response(plain.data).text(), "hello");
  assertEquals(plain.digest(), DIGEST);
});

Deno.test("trailing digest: a short body, a digest that is not lowercase hex, or no body is a 400 naming it", async () => {
  const cases: [string, ReadableStream<Uint8Array> | null, RegExp][] = [
    ["short", byteSource([encoder.encode("abc")]), /it had 3 bytes in all/],
    ["empty", byteSource([]), /it had 0 bytes in all/],
    ["none", null, /it had 0 bytes in all/],
    ["upper", byteSource([encoder.encode("x" + DIGEST.toUpperCase())]), /lowercase hex/],
    ["binary", byteSource([bytes(200)]), /lowercase hex/],
  ];
  for (const [name, body, message] of cases) {
    const split_ = trailingDigest(body);
    await readByob(split_.data);
    const error = assertThrows(() => split_.digest(), HttpError, undefined, name);
    assertEquals(error.status, 400, name);
    assertEquals(message.test(error.message), true, `${name}: ${error.message}`);
  }
  // Asked for before the end: refused, not a wrong answer.
  const early = trailingDigest(byteSource([encoder.encode(DIGEST)]));
  assertThrows(() => early.digest(), HttpError);
  await readByob(early.data);
});

Deno.test("trailing digest: cancelling the bytes cancels the body", async () => {
  let cancelled: unknown = null;
  const body: ReadableStream<Uint8Array<ArrayBuffer>> = new ReadableStream({
    type: "bytes",
    pull(controller: ReadableByteStreamController) {
      controller.enqueue(bytes(1000));
    },
    cancel(reason: unknown) {
      cancelled = reason;
    },
  });
  const split_ = trailingDigest(body);
  const reader = split_.data.getReader();
  await reader.read();
  await reader.cancel("gone");
  assertEquals(cancelled, "gone");
  assertThrows(() => split_.digest(), HttpError);
});
