// Copyright 2026 the SandD authors. MIT license.
/**
 * C strings and string arrays for FFI calls, in memory outside the V8 heap (so a pointer taken from it stays
 * valid while the buffer is referenced).
 *
 * @module
 */

const encoder = new TextEncoder();

/** `size` zeroed bytes off the V8 heap. */
export function offHeap(size: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new ArrayBuffer(size));
}

/** `text` as UTF-8 with a terminating NUL. */
export function cString(text: string): Uint8Array<ArrayBuffer> {
  const out = offHeap(text.length * 3 + 1);
  const { written } = encoder.encodeInto(text, out);
  return out.subarray(0, written + 1);
}

/**
 * NULL-terminated `char *[]` arrays, one per list, whose strings live in one shared buffer: keep `strings`
 * referenced for as long as the arrays are used.
 */
export function cStringArrays(
  lists: string[][],
): { arrays: BigUint64Array<ArrayBuffer>[]; strings: Uint8Array<ArrayBuffer> } {
  let size = 0;
  for (const list of lists) for (const text of list) size += text.length * 3 + 1;
  const strings = offHeap(size);
  const base = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(strings)));
  let at = 0;
  const arrays = lists.map((list) => {
    const array = new BigUint64Array(new ArrayBuffer((list.length + 1) * 8));
    for (let i = 0; i < list.length; i++) {
      array[i] = base + BigInt(at);
      at += encoder.encodeInto(list[i]!, strings.subarray(at)).written + 1;
    }
    return array;
  });
  return { arrays, strings };
}
