// What the controller may do with a received data frame's buffer: the inbound process streams and downloads both
// hand a message's payload on without copying when the payload is all of its buffer, and free that buffer once
// read, so the next message reuses its memory instead of touching fresh pages until a late garbage collection.
import { FRAME_HEADER_BYTES } from "@sandd/protocol/frame";

/** Whether `payload` is all of its buffer after a data frame's header (a WebSocket message of its own). */
export function ownsBuffer(payload: Uint8Array): boolean {
  return payload.byteOffset <= FRAME_HEADER_BYTES &&
    payload.byteOffset + payload.byteLength === payload.buffer.byteLength;
}

/** Free a message buffer nothing holds any more, by detaching it (best effort). */
export function release(chunk: Uint8Array): void {
  try {
    (chunk.buffer as ArrayBuffer).transfer(0);
  } catch {
    // not detachable (or detached already): the garbage collector frees it
  }
}
