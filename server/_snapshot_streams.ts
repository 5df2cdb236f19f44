// The streams of snapshot transfers, controller side, on the shared stream layer: a stream the daemon sends (a
// blob, a manifest, a tar export) is received with the shared CreditReceiver (credit returned as the consumer
// reads, SHA-256 checked at the end); a stream the controller sends (a blob, an import) goes out through the
// shared OutboundStream with its SHA-256 in the `eof`. Unlike file transfers they do not resume after a dropped
// link: a cut transfer fails, and the caller starts it again (blobs are content-addressed, so nothing is lost).
import { createHash } from "node:crypto";
import type { RequestArgs } from "@sandd/protocol/messages";
import type { ResponseData } from "@sandd/protocol/replies";
import { CreditReceiver } from "@sandd/protocol/stream";
import type { Connection } from "./_connection.ts";
import { DaemonDisconnectedError, FileError, remoteError, RequestTimeoutError } from "./errors.ts";
import { OutboundStream } from "./_outbound_stream.ts";
import { Wakeup } from "./_stream_link.ts";

/** Flow-control window of a snapshot stream, in bytes. */
export const SNAPSHOT_WINDOW = 8 * 1024 * 1024;
/** Longest delay a timer takes. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Operations whose reply announces a stream the daemon sends. */
type ReceivingOp = "snapshotBlobGet" | "snapshotExport";
/** Operations the controller sends a stream for. */
type SendingOp = "snapshotBlobPut" | "snapshotImport";

function resetError(daemonId: string, what: string, reason: string): Error {
  const match = /^([A-Z][A-Z0-9_]{1,63}): (.*)$/s.exec(reason);
  if (match) return remoteError(daemonId, { code: match[1]!, message: match[2]! });
  return new FileError(daemonId, {
    code: "EIO",
    message: `${what} reset by the daemon: ${reason}`,
  });
}

/**
 * Ask for a stream the daemon sends (`op`'s `sid` and `window` are filled in). Resolves with the reply once the
 * daemon accepted, and the bytes; the stream errors with `EINTEGRITY` when the digest differs, and with a
 * `FileError` `ETIMEDOUT` when the daemon sends nothing for the connection's request deadline while the consumer
 * waits.
 */
export async function receiveStream<Op extends ReceivingOp>(
  conn: Connection,
  op: Op,
  args: Omit<RequestArgs<Op>, "sid" | "window">,
  what: string,
): Promise<{ reply: ResponseData<Op>; readable: ReadableStream<Uint8Array> }> {
  const daemonId = conn.info.id;
  const sid = conn.nextSid();
  const credit = new CreditReceiver({
    window: SNAPSHOT_WINDOW,
    ackEvery: SNAPSHOT_WINDOW / 8,
    gaps: false,
    sha256: true,
    ackWhenCaughtUp: false,
    name: what,
  });
  const wakeup = new Wakeup();
  let ended = false;
  let error: Error | null = null;
  const fail = (e: Error, reason?: string) => {
    if (error || ended) return;
    error = e;
    credit.clear();
    if (reason !== undefined && conn.routes.has(sid)) conn.send({ t: "reset", sid, reason });
    conn.routes.delete(sid);
    wakeup.wake();
  };
  conn.routes.set(sid, {
    onData: (offset, payload) => {
      if (error || ended) return;
      try {
        credit.data(offset, payload);
      } catch (e) {
        fail(e as Error, (e as Error).message.slice(0, 200));
        return;
      }
      wakeup.wake();
    },
    onEof: (offset, sha256) => {
      if (error || ended) return;
      try {
        credit.eof(offset, sha256);
      } catch (e) {
        fail(new FileError(daemonId, { code: "EINTEGRITY", message: (e as Error).message }));
        return;
      }
      ended = true;
      conn.routes.delete(sid);
      wakeup.wake();
    },
    onReset: (reason) => {
      conn.routes.delete(sid);
      fail(resetError(daemonId, what, reason));
    },
    onClose: () => fail(new DaemonDisconnectedError(daemonId)),
  });
  let reply: ResponseData<Op>;
  try {
    reply = await conn.request(op, { ...args, sid, window: SNAPSHOT_WINDOW } as RequestArgs<Op>);
  } catch (e) {
    conn.routes.delete(sid);
    throw e;
  }
  const readable = new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      while (true) {
        if (error) {
          controller.error(error);
          return;
        }
        const chunk = credit.take();
        if (chunk) {
          controller.enqueue(chunk);
          const ack = ended ? null : credit.ackDue();
          if (ack !== null) conn.send({ t: "ack", sid, offset: ack });
          return;
        }
        if (ended) {
          controller.close();
          return;
        }
        const ms = conn.requestTimeoutMs;
        const timer = ms > 0 && ms <= MAX_TIMER_MS
          ? setTimeout(() => {
            fail(
              new FileError(daemonId, {
                code: "ETIMEDOUT",
                message: `${what} stalled: daemon '${daemonId}' sent no data for ${ms} ms`,
              }, { cause: new RequestTimeoutError(daemonId, op, ms) }),
              `ETIMEDOUT: no data for ${ms} ms`,
            );
          }, ms)
          : undefined;
        try {
          await wakeup.wait();
        } finally {
          clearTimeout(timer);
        }
      }
    },
    cancel: () => fail(new Error("cancelled"), "consumer cancelled"),
  }, { highWaterMark: 0 });
  return { reply, readable };
}

/**
 * Send `source` as the stream of `op` (`sid` and `window` filled in), then the `eof` with its SHA-256; resolves
 * with the daemon's reply. A refusal stops the sending at once; a failure of the source resets the stream.
 */
export async function sendStream<Op extends SendingOp>(
  conn: Connection,
  op: Op,
  args: Omit<RequestArgs<Op>, "sid" | "window">,
  source: AsyncIterable<Uint8Array>,
): Promise<ResponseData<Op>> {
  const sid = conn.nextSid();
  const out = new OutboundStream({ window: SNAPSHOT_WINDOW, daemonId: conn.info.id });
  out.bind(conn, sid, 0);
  const response = conn.request(op, { ...args, sid, window: SNAPSHOT_WINDOW } as RequestArgs<Op>);
  let early: Error | null = null;
  response.catch((error: Error) => {
    early = error;
    out.fail(error);
  });
  const hash = createHash("sha256");
  try {
    for await (const chunk of source) {
      if (!(chunk instanceof Uint8Array)) {
        throw new TypeError(`Stream chunks must be Uint8Array, got ${typeof chunk}`);
      }
      hash.update(chunk);
      await out.write(chunk);
    }
    out.end(hash.digest("hex"));
    return await response;
  } catch (error) {
    conn.send({ t: "reset", sid, reason: "stream failed on the controller" });
    out.fail(error as Error);
    throw early ?? error;
  } finally {
    conn.routes.delete(sid);
  }
}
