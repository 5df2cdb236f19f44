// Copyright 2026 the SandD authors. MIT license.
/**
 * Reusable buffers for output chunks. A child's pipe or terminal is read straight into one of them, the chunk is
 * kept in an {@linkcode OutputBuffer} until every reader has it, and the buffer comes back here when the buffer
 * drops it. Allocating a fresh ArrayBuffer per read costs far more than the bytes it holds on this kind of
 * machine (zero-filling, page faults, late collection: 1-2 ms per MiB against 0.1 ms for a copy into memory in
 * use), so a bulk stream reuses the same few buffers.
 *
 * A buffer handed out by {@linkcode takeChunk} belongs to the caller; {@linkcode releaseChunk} gives it back, at
 * most once (a second release, or one of a buffer not from here, does nothing). A buffer never released is simply
 * collected.
 *
 * @module
 */

/** Buffers out of the pool, by the size class they were taken from. */
const taken = new WeakMap<ArrayBuffer, number>();
/** Free buffers by size. */
const free = new Map<number, ArrayBuffer[]>();
/** Most free buffers kept per size. */
const FREE_PER_SIZE = 16;

/**
 * A buffer of `size` bytes, reused when one is free. Its contents are unspecified.
 *
 * @example Take and give back
 * ```ts
 * import { releaseChunk, takeChunk } from "./_chunk_pool.ts";
 * const chunk = takeChunk(65536);
 * releaseChunk(chunk.subarray(0, 10));
 * console.assert(takeChunk(65536).buffer === chunk.buffer);
 * ```
 *
 * @param size Bytes.
 * @returns The whole buffer as a view.
 */
export function takeChunk(size: number): Uint8Array<ArrayBuffer> {
  const buffer = free.get(size)?.pop() ?? new ArrayBuffer(size);
  taken.set(buffer, size);
  return new Uint8Array(buffer);
}

/**
 * Give back the buffer under `chunk` (any view of it) once nothing reads it any more.
 *
 * @param chunk A view of a buffer from {@linkcode takeChunk}; others are ignored.
 */
export function releaseChunk(chunk: Uint8Array): void {
  const buffer = chunk.buffer as ArrayBuffer;
  const size = taken.get(buffer);
  if (size === undefined) return;
  taken.delete(buffer);
  let list = free.get(size);
  if (list === undefined) free.set(size, list = []);
  if (list.length < FREE_PER_SIZE) list.push(buffer);
}

/** Reads at least this large that are copied out go into a pooled buffer (a power of two) rather than a fresh one. */
const POOLED_COPY_MIN = 16 * 1024;

/**
 * The bytes `chunk[0, n)` of a buffer from {@linkcode takeChunk}, as the chunk to keep: the buffer itself when at
 * least half full (it is then the caller's until released), a copy otherwise (and the buffer goes back at once),
 * so that small reads do not each hold a whole buffer. A copy of at least 16 KiB goes into a pooled buffer of the
 * next power of two (at most twice its bytes), so that a stream of mid-sized reads does not allocate per read
 * either; a smaller copy is exactly its size (many tiny reads must not each hold a page).
 *
 * @param chunk The whole buffer, as {@linkcode takeChunk} returned it.
 * @param n Bytes filled.
 * @returns The kept bytes.
 */
export function keepChunk(chunk: Uint8Array<ArrayBuffer>, n: number): Uint8Array<ArrayBuffer> {
  if (n * 2 >= chunk.length) return chunk.subarray(0, n);
  let copy: Uint8Array<ArrayBuffer>;
  if (n >= POOLED_COPY_MIN) {
    let size = POOLED_COPY_MIN;
    while (size < n) size *= 2;
    copy = takeChunk(size).subarray(0, n);
    copy.set(chunk.subarray(0, n));
  } else {
    copy = chunk.slice(0, n);
  }
  releaseChunk(chunk);
  return copy;
}
