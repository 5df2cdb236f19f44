import { assert, assertEquals } from "../tests/_assert.ts";
import { keepChunk, releaseChunk, takeChunk } from "./_chunk_pool.ts";
import { OutputBuffer } from "./_output_buffer.ts";

const SIZE = 4096;

Deno.test("a released chunk's buffer is handed out again, once", () => {
  const first = takeChunk(SIZE);
  releaseChunk(first.subarray(0, 10));
  releaseChunk(first); // a second release is ignored
  const again = takeChunk(SIZE);
  assert(again.buffer === first.buffer, "the released buffer is reused");
  assert(takeChunk(SIZE).buffer !== first.buffer, "it is handed out only once");
  releaseChunk(new Uint8Array(SIZE)); // not from the pool: ignored
  assert(takeChunk(SIZE).buffer !== first.buffer);
});

Deno.test("keepChunk keeps a full buffer and copies a small read out", () => {
  const full = takeChunk(SIZE);
  const kept = keepChunk(full, SIZE / 2);
  assert(kept.buffer === full.buffer && kept.length === SIZE / 2);
  const small = takeChunk(SIZE);
  small.set([7, 8, 9]);
  const copy = keepChunk(small, 3);
  assert(copy.buffer !== small.buffer);
  assertEquals([...copy], [7, 8, 9]);
  assert(takeChunk(SIZE).buffer === small.buffer, "the small read's buffer went back at once");
});

Deno.test("keepChunk copies a mid-sized read into a pooled buffer of its power of two", () => {
  const big = takeChunk(256 * 1024);
  big.fill(5, 0, 40_000);
  const kept = keepChunk(big, 40_000);
  assertEquals(kept.length, 40_000);
  assertEquals(kept.buffer.byteLength, 64 * 1024);
  assert(kept.every((byte) => byte === 5));
  assert(takeChunk(256 * 1024).buffer === big.buffer, "the big buffer went back at once");
  releaseChunk(kept);
  assert(takeChunk(64 * 1024).buffer === kept.buffer, "the copy's buffer is a pooled one");
});

Deno.test("the output buffer gives dropped chunks back, and only dropped ones", () => {
  const buffer = new OutputBuffer(2 * SIZE);
  const chunks = [0, 1, 2].map((i) => {
    const chunk = takeChunk(SIZE);
    chunk.fill(i);
    buffer.append(chunk);
    return chunk;
  });
  // The first chunk left the window: its buffer is free again; the two held ones are not.
  const next = takeChunk(SIZE);
  assert(next.buffer === chunks[0]!.buffer);
  assert(takeChunk(SIZE).buffer !== chunks[1]!.buffer);
  assertEquals(buffer.read(SIZE, 1)[0]![0], 1);
  assertEquals(buffer.read(2 * SIZE, 1)[0]![0], 2);
  // Bytes a reader still needs are kept past the capacity, and their buffer with them.
  const held = new OutputBuffer(SIZE);
  const a = takeChunk(SIZE);
  a.fill(5);
  held.append(a);
  held.append(takeChunk(SIZE).fill(6), 0);
  assertEquals(held.read(0, 1)[0]![0], 5);
  assert(takeChunk(SIZE).buffer !== a.buffer);
});
