import { assertEquals, assertThrows } from "../tests/_assert.ts";
import {
  allocateDataFrame,
  decodeDataFrame,
  encodeDataFrame,
  FRAME_HEADER_BYTES,
  writeDataFrameHeader,
} from "./frame.ts";
import { ProtocolError } from "./errors.ts";

Deno.test("data frames round trip ids, large offsets and payloads", () => {
  for (const [sid, offset] of [[1, 0], [0xffff_ffff, 2 ** 53 - 1], [42, 2 ** 32 + 7]] as const) {
    const payload = crypto.getRandomValues(new Uint8Array(1000));
    const frame = decodeDataFrame(encodeDataFrame(sid, offset, payload));
    assertEquals(frame.sid, sid);
    assertEquals(frame.offset, offset);
    assertEquals([...frame.payload], [...payload]);
  }
  assertEquals(decodeDataFrame(encodeDataFrame(3, 9, new Uint8Array(0))).payload.length, 0);
});

Deno.test("bad binary frames are refused with ProtocolError", () => {
  assertThrows(
    () => decodeDataFrame(new Uint8Array(FRAME_HEADER_BYTES - 1)),
    ProtocolError,
    "shorter",
  );
  const wrongKind = encodeDataFrame(1, 0, new Uint8Array(1));
  wrongKind[0] = 7;
  assertThrows(() => decodeDataFrame(wrongKind), ProtocolError, "kind 7");
  const hugeOffset = encodeDataFrame(1, 0, new Uint8Array(1));
  hugeOffset[5] = 0xff;
  assertThrows(() => decodeDataFrame(hugeOffset), ProtocolError, "offset");
});

Deno.test("writeDataFrameHeader writes the same header as encodeDataFrame, in place", () => {
  for (const [sid, offset] of [[0, 0], [0xffff_ffff, 2 ** 53 - 1], [7, 2 ** 32 + 1]] as const) {
    const payload = new Uint8Array([1, 2, 3]);
    const frame = new Uint8Array(FRAME_HEADER_BYTES + 3);
    frame.set(payload, FRAME_HEADER_BYTES);
    assertEquals(writeDataFrameHeader(frame, sid, offset), frame);
    assertEquals([...frame], [...encodeDataFrame(sid, offset, payload)]);
  }
  // A view at an offset inside a larger buffer writes only its own bytes.
  const big = new Uint8Array(40).fill(0xee);
  const view = big.subarray(10, 10 + FRAME_HEADER_BYTES + 1);
  writeDataFrameHeader(view, 3, 5);
  assertEquals(big[9], 0xee);
  assertEquals(decodeDataFrame(view).offset, 5);
  // encodeDataFrame frames an allocated payload in place.
  const piece = allocateDataFrame(2);
  piece.set([4, 5]);
  assertEquals(encodeDataFrame(1, 2, piece).buffer, piece.buffer);
});

Deno.test("writeDataFrameHeader refuses bad ids, offsets and short frames", () => {
  const frame = new Uint8Array(FRAME_HEADER_BYTES);
  assertThrows(() => writeDataFrameHeader(new Uint8Array(3), 1, 0), RangeError, "room");
  assertThrows(() => writeDataFrameHeader(frame, -1, 0), RangeError, "-1");
  assertThrows(() => writeDataFrameHeader(frame, 2 ** 32, 0), RangeError, "4294967296");
  assertThrows(() => writeDataFrameHeader(frame, 1, 2 ** 53), RangeError, "2^53");
  assertThrows(() => writeDataFrameHeader(frame, 1, 0.5), RangeError, "0.5");
});
