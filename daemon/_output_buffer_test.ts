import { assertEquals } from "../tests/_assert.ts";
import { OutputBuffer } from "./_output_buffer.ts";

function concat(parts: Uint8Array[]): number[] {
  return parts.flatMap((p) => [...p]);
}

Deno.test("the output buffer keeps the newest bytes by absolute offset", () => {
  const buffer = new OutputBuffer(10);
  for (let i = 0; i < 25; i++) buffer.append(new Uint8Array([i]));
  assertEquals(buffer.start, 15);
  assertEquals(buffer.end, 25);
  assertEquals(concat(buffer.read(0, 100)), [15, 16, 17, 18, 19, 20, 21, 22, 23, 24]);
  assertEquals(concat(buffer.read(20, 3)), [20, 21, 22]);
  assertEquals(buffer.read(25, 10), []);
});

Deno.test("chunks larger than the window are trimmed and many small chunks stay searchable", () => {
  const buffer = new OutputBuffer(4);
  buffer.append(new Uint8Array([1, 2, 3, 4, 5, 6]));
  assertEquals(buffer.start, 2);
  assertEquals(concat(buffer.read(0, 10)), [3, 4, 5, 6]);
  const many = new OutputBuffer(5000);
  for (let i = 0; i < 20_000; i++) many.append(new Uint8Array([i & 0xff]));
  assertEquals(concat(many.read(19_998, 10)), [19_998 & 0xff, 19_999 & 0xff]);
  assertEquals(many.start, 15_000);
});

Deno.test("bytes not yet acknowledged survive a chunk larger than the room left", () => {
  const buffer = new OutputBuffer(8);
  buffer.append(new Uint8Array([1, 2, 3, 4, 5, 6]), 0);
  buffer.append(new Uint8Array([7, 8, 9, 10, 11, 12]), 2); // an attachment has acknowledged up to offset 2
  assertEquals(buffer.start, 2);
  assertEquals(concat(buffer.read(2, 100)), [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  buffer.append(new Uint8Array([13]));
  assertEquals(buffer.start, 5);
});
