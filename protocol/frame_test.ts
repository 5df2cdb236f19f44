import { assertEquals, assertThrows } from "../tests/_assert.ts";
import { decodeDataFrame, encodeDataFrame, FRAME_HEADER_BYTES } from "./frame.ts";
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
