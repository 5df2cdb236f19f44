// The streams of file transfers, controller side: an upload's sender (the shared OutboundStream, resent from
// what the daemon has after a dropped link), keyed by a transfer key so that a daemon coming back within the
// reconnect grace takes it up again, and what downloads share with it (window, transfer keys, waiting for the
// daemon's next link). A download's receiver is in `_download_stream.ts`; the public entry points in files.ts.
import { createHash } from "node:crypto";
import type { RequestArgs } from "@sandd/protocol/messages";
import type { UploadReply } from "@sandd/protocol/replies";
import type { Connection } from "./_connection.ts";
import { DaemonDisconnectedError, FileError } from "./errors.ts";
import type { DaemonEvent } from "./events.ts";
import type { FileHost, TransferProgress } from "./files.ts";
import { OutboundStream } from "./_outbound_stream.ts";
import { KIND_FILE } from "./_metrics_state.ts";
import { SHA256_HEX } from "./_file_checks.ts";

/** Flow-control window of a file transfer, in bytes. */
export const FILE_WINDOW = 8 * 1024 * 1024;
/** Longest delay a timer takes (a longer stall deadline is no deadline). */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** Small stream chunks are gathered up to this size before they are sent. */
export const COALESCE = 256 * 1024;

/** Whether the host can wait for a daemon to come back (then transfers carry a key to resume by). */
export function resumable(host: FileHost): boolean {
  return host.events !== undefined && (host.reconnectGraceMs ?? 0) > 0;
}

/**
 * The reply of an upload: from its request, or, when the link drops, from a resume on the daemon's next link
 * (within the reconnect grace): the daemon acknowledges at once what it has received, and the stream resends from
 * there.
 */
async function uploadReply(
  host: FileHost,
  first: { conn: Connection; sid: number },
  args: Omit<RequestArgs<"upload">, "sid" | "window">,
  out: OutboundStream,
  current: { conn: Connection; sid: number },
  stop: AbortSignal,
): Promise<UploadReply> {
  let request = first.conn.request("upload", { ...args, sid: first.sid, window: FILE_WINDOW });
  while (true) {
    try {
      return await request;
    } catch (error) {
      if (!(error instanceof DaemonDisconnectedError) || args.transfer === undefined) throw error;
      await Promise.resolve(); // the server marks itself closing right after it closes the links
      if (stop.aborted || host.closing?.()) throw error;
      const conn = await nextConnection(
        host,
        current.conn.info.id,
        current.conn,
        host.reconnectGraceMs ?? 0,
        stop,
      );
      if (!conn) throw error;
      const sid = conn.nextSid();
      current.conn = conn;
      current.sid = sid;
      conn.routes.set(sid, {
        onAck: (offset) => out.bind(conn, sid, offset),
        onReset: (reason) => out.fail(new Error(`Upload reset by the daemon: ${reason}`)),
      });
      request = conn.request("upload", { ...args, sid, window: FILE_WINDOW, resume: true }).catch(
        (cause: Error & { code?: string }) => {
          if (cause.code !== "ESTALE") throw cause;
          conn.routes.delete(sid);
          if (out.acked === 0) {
            // The daemon never took the upload up (the request was lost with the link, or it restarted) and
            // every byte is still here: start it again from the beginning.
            const fresh = conn.nextSid();
            current.sid = fresh;
            const reply = conn.request("upload", { ...args, sid: fresh, window: FILE_WINDOW });
            out.bind(conn, fresh, 0);
            return reply;
          }
          // The daemon no longer holds the upload (it restarted, or the wait ran out): say so.
          throw new FileError(conn.info.id, {
            code: "EIO",
            message:
              `Upload of '${args.path}' could not resume after the link dropped: ESTALE: ${cause.message}`,
            path: args.path,
          }, { cause });
        },
      );
    }
  }
}

export async function sendUpload(
  host: FileHost,
  conn: Connection,
  args: Omit<RequestArgs<"upload">, "sid" | "window">,
  source: AsyncIterable<Uint8Array>,
  total: number | undefined,
  options: {
    onProgress?: (p: TransferProgress) => void;
    signal?: AbortSignal;
    sha256?: string | (() => string);
  },
): Promise<UploadReply> {
  if (resumable(host)) args = { ...args, transfer: transferKey() };
  const first = { conn, sid: conn.nextSid() };
  const current = { ...first };
  const out = new OutboundStream({ window: FILE_WINDOW, daemonId: conn.info.id, kind: KIND_FILE });
  out.bind(conn, first.sid, 0);
  const stop = new AbortController();
  const response = uploadReply(host, first, args, out, current, stop.signal);
  // A refusal or a link that did not come back answers the request early: stop sending at once.
  let early: Error | null = null;
  response.catch((error: Error) => {
    early = error;
    out.fail(error);
  });
  const onAbort = () => out.fail(options.signal!.reason);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  // A digest the caller knows (ahead, or once its stream ends) goes to the daemon, which checks the bytes
  // against it: hashing them here as well would check nothing more.
  const known = options.sha256;
  const hash = known === undefined ? createHash("sha256") : null;
  let bytes = 0;
  try {
    options.signal?.throwIfAborted();
    // Small chunks (file streams yield 64 KiB) are gathered into full frames: per-frame costs dominate otherwise.
    const buffer = new Uint8Array(COALESCE);
    let filled = 0;
    const flush = async () => {
      const piece = buffer.subarray(0, filled);
      hash?.update(piece);
      await out.write(piece);
      bytes += filled;
      filled = 0; // `out.write` has copied the piece: the buffer is free again.
      options.onProgress?.({ bytes, total });
    };
    for await (const chunk of source) {
      if (!(chunk instanceof Uint8Array)) {
        throw new TypeError(`Upload stream chunks must be Uint8Array, got ${typeof chunk}`);
      }
      if (chunk.length >= COALESCE && filled === 0) {
        hash?.update(chunk);
        await out.write(chunk);
        bytes += chunk.length;
        options.onProgress?.({ bytes, total });
        continue;
      }
      for (let at = 0; at < chunk.length;) {
        const n = Math.min(COALESCE - filled, chunk.length - at);
        buffer.set(chunk.subarray(at, at + n), filled);
        filled += n;
        at += n;
        if (filled === COALESCE) await flush();
      }
    }
    if (filled > 0) await flush();
    const digest = hash ? hash.digest("hex") : typeof known === "function" ? known() : known!;
    if (typeof digest !== "string" || !SHA256_HEX.test(digest)) {
      throw new TypeError(
        `sha256 must give 64 lowercase hex digits, got ${
          typeof digest === "string" ? `'${digest.slice(0, 100)}'` : typeof digest
        }`,
      );
    }
    out.end(digest);
    return await response;
  } catch (error) {
    stop.abort();
    current.conn.send({ t: "reset", sid: current.sid, reason: "upload failed on the controller" });
    out.fail(error as Error);
    // Prefer the daemon's own account of what went wrong.
    throw early ?? error;
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    current.conn.routes.delete(current.sid);
  }
}

/**
 * Wait for a connection to `daemonId` other than `old`, at most `ms`. Resolves null on timeout or abort.
 */
export function nextConnection(
  host: FileHost,
  daemonId: string,
  old: Connection,
  ms: number,
  signal: AbortSignal,
): Promise<Connection | null> {
  const current = (): Connection | null => {
    try {
      const conn = host.connection(daemonId);
      return conn !== old && !conn.closed ? conn : null;
    } catch {
      return null;
    }
  };
  const now = current();
  if (now || !host.events || ms <= 0 || signal.aborted) return Promise.resolve(now);
  const events = host.events;
  return new Promise((resolve) => {
    const done = (conn: Connection | null) => {
      clearTimeout(timer);
      events.removeEventListener("connect", onConnect);
      signal.removeEventListener("abort", onAbort);
      resolve(conn);
    };
    const onConnect = (event: Event) => {
      if ((event as DaemonEvent).daemon?.id !== daemonId) return;
      const conn = current();
      if (conn) done(conn);
    };
    const onAbort = () => done(null);
    const timer = setTimeout(() => done(null), ms);
    events.addEventListener("connect", onConnect);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** A fresh transfer key: 128 random bits in hex. */
export function transferKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
