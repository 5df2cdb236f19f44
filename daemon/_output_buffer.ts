// A bounded window of a stream's most recent bytes, addressed by absolute byte offset. Chunks are kept as they were
// read (no copy); the oldest are dropped once more than `capacity` bytes are held, and a dropped chunk's buffer goes
// back to the chunk pool (the buffer owns its chunks: `read` views must not outlive the caller's turn).
import { releaseChunk } from "./_chunk_pool.ts";

const EMPTY = new Uint8Array(0);

export class OutputBuffer {
  readonly capacity: number;
  #chunks: Uint8Array[] = [];
  #starts: number[] = [];
  #head = 0; // index of the first live chunk
  #start = 0; // offset of the first retained byte
  #end = 0; // offset after the last byte

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  /** Offset of the oldest byte still held. */
  get start(): number {
    return this.#start;
  }

  /** Total bytes ever appended (the offset after the newest byte). */
  get end(): number {
    return this.#end;
  }

  /**
   * Add a chunk. Bytes from `keepFrom` on are never dropped, even when that holds more than `capacity` for a while
   * (a read may bring a chunk larger than the room left; unacknowledged bytes must survive it).
   */
  append(chunk: Uint8Array, keepFrom: number = Infinity): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#starts.push(this.#end);
    this.#end += chunk.length;
    this.#trim(keepFrom);
  }

  #trim(keepFrom: number): void {
    const floor = Math.min(this.#end - this.capacity, keepFrom);
    while (this.#head < this.#chunks.length) {
      const chunk = this.#chunks[this.#head]!;
      const chunkStart = this.#starts[this.#head]!;
      const chunkEnd = chunkStart + chunk.length;
      if (chunkEnd <= floor) {
        this.#chunks[this.#head] = EMPTY;
        this.#head++;
        releaseChunk(chunk);
        continue;
      }
      if (chunkStart < floor) {
        this.#chunks[this.#head] = chunk.subarray(floor - chunkStart);
        this.#starts[this.#head] = floor;
      }
      break;
    }
    this.#start = Math.max(this.#start, floor, 0);
    if (this.#head > 1024 && this.#head * 2 > this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#starts = this.#starts.slice(this.#head);
      this.#head = 0;
    }
  }

  /**
   * Bytes from `from` (clamped to the window) up to `maxBytes`, as views into the held chunks: copy them before
   * the next `append` (a dropped chunk's memory is reused).
   * Returns an empty list when nothing is available at `from`.
   */
  read(from: number, maxBytes: number): Uint8Array[] {
    const parts: Uint8Array[] = [];
    if (from < this.#start) from = this.#start;
    if (from >= this.#end) return parts;
    // Binary search for the chunk holding `from`.
    let lo = this.#head;
    let hi = this.#chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.#starts[mid]! <= from) lo = mid;
      else hi = mid - 1;
    }
    let remaining = maxBytes;
    for (let i = lo; i < this.#chunks.length && remaining > 0; i++) {
      const chunk = this.#chunks[i]!;
      const skip = i === lo ? from - this.#starts[i]! : 0;
      const part = chunk.subarray(skip, skip + remaining);
      parts.push(part);
      remaining -= part.length;
    }
    return parts;
  }
}
