// Which cluster slot the ids of a relayed controller message belong to: a node may only send requests and
// stream messages in its own slot's range, so it cannot answer, ack, reset or feed another node's streams.
import { FRAME_HEADER_BYTES } from "@sandd/protocol/frame";
import { parseControllerMessage } from "@sandd/protocol/messages";
import { SLOT_RID_SPAN, SLOT_SID_SPAN } from "../_connection.ts";

/** The stream ids a request's arguments bind (`sid`, `wid`, `stdout`, `stderr`, `stdin`, `input`). */
export function requestSids(args: unknown): number[] {
  const out: number[] = [];
  if (typeof args !== "object" || args === null) return out;
  for (const key of ["sid", "wid", "stdout", "stderr", "stdin", "input"]) {
    const value = (args as Record<string, unknown>)[key];
    if (typeof value === "number") out.push(value);
    else if (typeof value === "object" && value !== null) {
      const sid = (value as Record<string, unknown>).sid;
      if (typeof sid === "number") out.push(sid);
    }
  }
  return out;
}

/** What a relayed controller message is, once checked. */
export interface CheckedMessage {
  /** Stream ids it names. */
  sids: number[];
  /** The request's operation and arguments, for a request. */
  op?: string;
  args?: Record<string, unknown>;
  /** A `reset` or `eof` ends the stream (`sids[0]`). */
  ends?: boolean;
}

/**
 * Validate a controller message a node relays to a daemon held here and check that every id in it is in the
 * sender's slot. Throws an `Error` naming the message and the id otherwise.
 */
export function checkRelayed(data: string | Uint8Array, slot: number): CheckedMessage {
  const inSlot = (id: number, span: number, what: string) => {
    if (Math.floor(id / span) !== slot) {
      throw new Error(`A relayed ${what} ${id} is outside the sender's slot ${slot}`);
    }
  };
  if (typeof data !== "string") {
    if (data.length < FRAME_HEADER_BYTES || data[0] !== 1) {
      throw new Error(`A relayed binary message of ${data.length} bytes is not a data frame`);
    }
    const sid = new DataView(data.buffer, data.byteOffset).getUint32(1);
    inSlot(sid, SLOT_SID_SPAN, "data frame's stream");
    return { sids: [sid] };
  }
  const message = parseControllerMessage(data);
  switch (message.t) {
    case "req": {
      inSlot(message.rid, SLOT_RID_SPAN, "request id");
      const sids = requestSids(message.args);
      for (const sid of sids) inSlot(sid, SLOT_SID_SPAN, `'${message.op}' stream`);
      return { sids, op: message.op, args: message.args as Record<string, unknown> };
    }
    case "ack":
    case "eof":
    case "reset":
      inSlot(message.sid, SLOT_SID_SPAN, `'${message.t}' stream`);
      return { sids: [message.sid], ends: message.t !== "ack" };
    default:
      throw new Error(
        `A relayed '${message.t}' message is not allowed (only req, ack, eof, reset)`,
      );
  }
}
