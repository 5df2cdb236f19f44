/**
 * Binary data frames: the bulk layer of the protocol. Every process output chunk, stdin chunk, PTY chunk and file
 * chunk travels as one binary WebSocket message laid out as:
 *
 * | bytes | field     | meaning                                                   |
 * |-------|-----------|-----------------------------------------------------------|
 * | 0     | kind      | {@linkcode FRAME_DATA} (1); other values are reserved     |
 * | 1-4   | stream id | unsigned 32-bit big-endian, chosen by the controller      |
 * | 5-12  | offset    | unsigned 64-bit big-endian byte offset of the first byte  |
 * | 13-   | payload   | the bytes                                                 |
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";

/** The frame kind of a data frame. */
export const FRAME_DATA = 1;

/** Length of the binary frame header in bytes. */
export const FRAME_HEADER_BYTES = 13;

/** Largest offset a frame may carry (offsets stay exact JavaScript numbers). */
export const MAX_OFFSET: number = Number.MAX_SAFE_INTEGER;

/** Largest stream id. */
export const MAX_STREAM_ID = 0xffff_ffff;

/** A decoded data frame. */
export interface DataFrame {
  /** The stream the bytes belong to. */
  sid: number;
  /** Byte offset of the first payload byte within the stream. */
  offset: number;
  /** The bytes (a view into the frame, not a copy). */
  payload: Uint8Array;
}

/** Payload buffers made by {@linkcode allocateDataFrame}, whose header room in front is theirs to fill. */
const prepared = new WeakSet<ArrayBuffer>();

/**
 * A payload buffer with room for the data frame header in front of it. Fill it and pass it (whole, not a view of
 * part of it) to {@linkcode encodeDataFrame}: the header is then written in place, and the payload is not copied.
 * The payload bytes are never modified, so the buffer may be kept (e.g. for a resend).
 *
 * @example Encode without a copy
 * ```ts
 * import { allocateDataFrame, decodeDataFrame, encodeDataFrame } from "./frame.ts";
 * const payload = allocateDataFrame(3);
 * payload.set([1, 2, 3]);
 * const frame = encodeDataFrame(7, 0, payload);
 * console.assert(frame.buffer === payload.buffer && decodeDataFrame(frame).payload[2] === 3);
 * ```
 *
 * @param length Payload length in bytes.
 * @returns The payload view (zero-filled).
 */
export function allocateDataFrame(length: number): Uint8Array<ArrayBuffer> {
  const buffer = new ArrayBuffer(FRAME_HEADER_BYTES + length);
  prepared.add(buffer);
  return new Uint8Array(buffer, FRAME_HEADER_BYTES, length);
}

/**
 * Encode a data frame. A payload made by {@linkcode allocateDataFrame} is framed in place (no copy).
 *
 * @example Round trip a frame
 * ```ts
 * import { decodeDataFrame, encodeDataFrame } from "./frame.ts";
 * const frame = encodeDataFrame(7, 1024, new Uint8Array([1, 2, 3]));
 * const { sid, offset, payload } = decodeDataFrame(frame);
 * console.assert(sid === 7 && offset === 1024 && payload.length === 3);
 * ```
 *
 * @param sid Stream id.
 * @param offset Offset of the first payload byte.
 * @param payload The bytes.
 * @returns The frame bytes.
 */
export function encodeDataFrame(
  sid: number,
  offset: number,
  payload: Uint8Array,
): Uint8Array<ArrayBuffer> {
  const inPlace = payload.byteOffset === FRAME_HEADER_BYTES &&
    payload.byteOffset + payload.byteLength === payload.buffer.byteLength &&
    prepared.has(payload.buffer as ArrayBuffer);
  const frame = inPlace
    ? new Uint8Array(payload.buffer as ArrayBuffer)
    : new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  writeDataFrameHeader(frame, sid, offset);
  if (!inPlace) frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

/**
 * Write the data frame header into the first {@linkcode FRAME_HEADER_BYTES} bytes of `frame`, whose payload the
 * caller has placed (or will place) after it. The one place the header layout is written: use it when the frame
 * buffer comes from elsewhere (e.g. a socket's own message buffer), {@linkcode encodeDataFrame} otherwise.
 *
 * @example Fill a frame in place
 * ```ts
 * import { decodeDataFrame, FRAME_HEADER_BYTES, writeDataFrameHeader } from "./frame.ts";
 * const frame = new Uint8Array(FRAME_HEADER_BYTES + 2);
 * frame.set([9, 9], FRAME_HEADER_BYTES);
 * writeDataFrameHeader(frame, 5, 2 ** 40);
 * console.assert(decodeDataFrame(frame).offset === 2 ** 40);
 * ```
 *
 * @param frame The whole frame: header room followed by the payload.
 * @param sid Stream id (unsigned 32-bit).
 * @param offset Offset of the first payload byte (0 to {@linkcode MAX_OFFSET}).
 * @returns `frame`, for chaining.
 * @throws {RangeError} When `frame` has no room for the header, or `sid` or `offset` is out of range.
 */
export function writeDataFrameHeader<T extends Uint8Array>(
  frame: T,
  sid: number,
  offset: number,
): T {
  if (frame.length < FRAME_HEADER_BYTES) {
    throw new RangeError(
      `Frame of ${frame.length} bytes has no room for the ${FRAME_HEADER_BYTES}-byte header`,
    );
  }
  if (!Number.isInteger(sid) || sid < 0 || sid > MAX_STREAM_ID) {
    throw new RangeError(`Stream id must be an unsigned 32-bit integer, got ${sid}`);
  }
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new RangeError(`Frame offset must be an integer from 0 to 2^53 - 1, got ${offset}`);
  }
  const view = new DataView(frame.buffer, frame.byteOffset, FRAME_HEADER_BYTES);
  view.setUint8(0, FRAME_DATA);
  view.setUint32(1, sid);
  view.setUint32(5, Math.floor(offset / 0x1_0000_0000));
  view.setUint32(9, offset >>> 0);
  return frame;
}

/**
 * Decode and validate a data frame.
 *
 * @example Reject a short frame
 * ```ts
 * import { decodeDataFrame } from "./frame.ts";
 * import { ProtocolError } from "./errors.ts";
 * try {
 *   decodeDataFrame(new Uint8Array(3));
 * } catch (error) {
 *   console.assert(error instanceof ProtocolError);
 * }
 * ```
 *
 * @param frame The bytes of one binary WebSocket message.
 * @returns The decoded frame.
 * @throws {ProtocolError} When the frame is too short, of an unknown kind, or its offset is out of range.
 */
export function decodeDataFrame(frame: Uint8Array): DataFrame {
  if (frame.length < FRAME_HEADER_BYTES) {
    throw new ProtocolError(
      `Binary frame is ${frame.length} bytes, shorter than the ${FRAME_HEADER_BYTES}-byte header`,
    );
  }
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const kind = view.getUint8(0);
  if (kind !== FRAME_DATA) throw new ProtocolError(`Binary frame has unknown kind ${kind}`);
  const high = view.getUint32(5);
  if (high > 0x1f_ffff) throw new ProtocolError("Binary frame offset exceeds 2^53 - 1");
  return {
    sid: view.getUint32(1),
    offset: high * 0x1_0000_0000 + view.getUint32(9),
    payload: frame.subarray(FRAME_HEADER_BYTES),
  };
}
