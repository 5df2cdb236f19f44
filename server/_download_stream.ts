// A download's receiving end, controller side: the shared CreditReceiver (window, acks, SHA-256), re-requested
// from the first byte not received after a dropped link (by its transfer key, within the reconnect grace), offered
// as a byte stream whose BYOB readers get the bytes copied into their own buffers and whose message buffers are
// freed as soon as nobody can read them. The public entry points are in files.ts.
import type { RequestArgs } from "@sandd/protocol/messages";
import type { DownloadReply } from "@sandd/protocol/replies";
import type { Connection, InboundRoute } from "./_connection.ts";
import { DaemonDisconnectedError, FileError, remoteError, RequestTimeoutError } from "./errors.ts";
import type { DownloadOptions, FileHost, TransferProgress } from "./files.ts";
import { Wakeup } from "./_stream_link.ts";
import { KIND_FILE } from "./_metrics_state.ts";
import { CreditError, CreditReceiver } from "@sandd/protocol/stream";
import { MAX_FRAME_PAYLOAD_BYTES } from "@sandd/protocol/constants";
import { ownsBuffer, release } from "./_message_buffers.ts";
import {
  FILE_WINDOW,
  MAX_TIMER_MS,
  nextConnection,
  resumable,
  transferKey,
} from "./_transfer_streams.ts";

/** Size of the chunks a default reader gets: a frame's payload (what the daemon sends at most). */
const FRAME_PAYLOAD = MAX_FRAME_PAYLOAD_BYTES;

/** The request of a download, as first sent (a resume sends it again with `resume`, a new `sid` and `from`). */
type DownloadRequest = Omit<RequestArgs<"download">, "sid" | "window" | "resume">;

/**
 * Receives a download: credit returned as the consumer reads (the shared {@linkcode CreditReceiver}: data beyond the
 * window, holes and gaps are refused), SHA-256 checked at the end, at most `maxBytes` taken. When the link drops,
 * it waits (the host's reconnect grace) for the daemon to come back and resumes the download by its transfer key
 * from the first byte it has not received.
 */
class DownloadReceiver {
  readonly readable: ReadableStream<Uint8Array>;
  readonly #host: FileHost;
  readonly #daemonId: string;
  readonly #request: DownloadRequest;
  #conn: Connection;
  #sid: number;
  readonly #path: string;
  #route: InboundRoute | null = null;
  readonly #credit: CreditReceiver;
  readonly #from: number;
  readonly #maxBytes: number;
  readonly #stop = new AbortController();
  #ended = false;
  #error: Error | null = null;
  #reconnecting = false;
  /** Whether the daemon answered the request (or a resume of it). */
  #opened = false;
  readonly #info = Promise.withResolvers<DownloadReply>();
  readonly #wakeup: Wakeup = new Wakeup();
  total: number | undefined = undefined;
  onProgress: ((p: TransferProgress) => void) | undefined;
  /** Whether chunks are handed off (see `openDownload`): their memory is freed once the next one is asked for. */
  readonly #handOff: boolean;
  /** The chunk handed off last, freed at the next pull (or the end). */
  #handed: Uint8Array | null = null;
  /** The rest of a chunk a BYOB reader's buffer had no room for. */
  #partial: Uint8Array | null = null;

  constructor(
    host: FileHost,
    conn: Connection,
    request: DownloadRequest,
    maxBytes: number,
    handOff = false,
  ) {
    this.#handOff = handOff;
    this.#host = host;
    this.#daemonId = conn.info.id;
    this.#request = request;
    this.#conn = conn;
    this.#path = request.path;
    this.#from = request.from ?? 0;
    this.#maxBytes = maxBytes;
    this.#credit = new CreditReceiver({
      window: FILE_WINDOW,
      from: this.#from,
      ackEvery: FILE_WINDOW / 8,
      gaps: false,
      sha256: true,
      ackWhenCaughtUp: false,
      name: `download of '${request.path}'`,
    });
    this.#sid = this.#bind(conn);
    this.#info.promise.catch(() => {});
    const cancel = () => {
      if (!this.#ended && !this.#error) {
        this.#conn.send({ t: "reset", sid: this.#sid, reason: "consumer cancelled" });
      }
      this.#error ??= new Error("cancelled");
      this.#stop.abort();
      this.#release();
      this.#partial = null;
      this.#credit.clear();
      this.#unbind();
      this.#wakeup.wake(); // a pull waiting for bytes ends (and its stall timer with it)
    };
    // A byte stream: a BYOB reader gets the bytes copied into its own buffer and each message buffer is freed at
    // once (memory stays at the window whatever the size). A default reader gets them copied into a buffer the
    // stream allocates (one frame's size) and the message is freed too: the garbage collector then sees the
    // consumer's chunks as its own allocations and collects them at its usual threshold, where it let the
    // runtime's message buffers pile up to twice that (measured: 110-160 MiB of ArrayBuffers during a 1 GiB
    // download, 65 MiB with the copy). Handed-off chunks (an HTTP body) are the message buffers themselves, freed
    // once the response took them.
    this.readable = handOff
      ? new ReadableStream<Uint8Array>({
        pull: (controller) => this.#pull(controller),
        cancel,
      }, { highWaterMark: 0 })
      : new ReadableStream({
        type: "bytes",
        autoAllocateChunkSize: FRAME_PAYLOAD,
        pull: (controller) => this.#pull(controller),
        cancel,
      });
  }

  /**
   * Send the request. Resolves with the daemon's reply: to the request, or, when the link dropped before it came,
   * to the request made again on the daemon's next link.
   */
  open(): Promise<DownloadReply> {
    this.#conn.request("download", { ...this.#request, sid: this.#sid, window: FILE_WINDOW }).then(
      (reply) => this.#open(reply),
      (error) => {
        // A dropped link is the resume's to handle (it fails the download when it cannot).
        if (error instanceof DaemonDisconnectedError && this.#resumable) return;
        this.fail(error);
      },
    );
    return this.#info.promise;
  }

  #open(reply: DownloadReply): void {
    this.#opened = true;
    this.#info.resolve(reply);
  }

  get #resumable(): boolean {
    return this.#request.transfer !== undefined && (this.#host.reconnectGraceMs ?? 0) > 0 &&
      this.#host.events !== undefined;
  }

  /** Route a fresh stream id on `conn` here. */
  #bind(conn: Connection): number {
    this.#unbind();
    const sid = conn.nextSid();
    const route: InboundRoute = {
      onData: (offset, payload) => this.#onData(offset, payload),
      onEof: (offset, sha256) => this.#onEof(offset, sha256),
      onGap: (from, to) => this.#refuse(() => this.#credit.gap(from, to)),
      onReset: (reason) => {
        this.#unbind(); // the daemon ended it: nothing to reset
        this.fail(resetError(this.#daemonId, this.#path, reason));
      },
      onClose: () => {
        if (this.#route !== route) return;
        this.#route = null;
        this.#linkLost(conn);
      },
    };
    this.#conn = conn;
    this.#sid = sid;
    this.#route = route;
    conn.routes.set(sid, route);
    return sid;
  }

  #unbind(): void {
    if (this.#route && this.#conn.routes.get(this.#sid) === this.#route) {
      this.#conn.routes.delete(this.#sid);
    }
    this.#route = null;
  }

  /** The link dropped mid-download: resume on the daemon's next link, or fail. */
  #linkLost(old: Connection): void {
    if (this.#error || this.#ended || this.#reconnecting) return;
    const grace = this.#host.reconnectGraceMs ?? 0;
    if (!this.#resumable) {
      this.fail(new DaemonDisconnectedError(this.#daemonId));
      return;
    }
    this.#reconnecting = true;
    this.#resume(old, Date.now() + grace).finally(() => this.#reconnecting = false);
  }

  async #resume(old: Connection, deadline: number): Promise<void> {
    // The server marks itself closing right after it closes the links (this runs from inside that).
    await Promise.resolve();
    while (!this.#error && !this.#ended) {
      if (this.#host.closing?.()) {
        this.fail(new DaemonDisconnectedError(this.#daemonId, "Server closed"));
        return;
      }
      const conn = await nextConnection(
        this.#host,
        this.#daemonId,
        old,
        deadline - Date.now(),
        this.#stop.signal,
      );
      if (this.#error || this.#ended) return;
      if (!conn) {
        this.fail(new DaemonDisconnectedError(this.#daemonId));
        return;
      }
      const sid = this.#bind(conn);
      const from = this.#credit.rebind(FILE_WINDOW);
      try {
        let reply: DownloadReply;
        try {
          reply = await conn.request("download", {
            ...this.#request,
            sid,
            window: FILE_WINDOW,
            from,
            resume: true,
          });
        } catch (error) {
          if ((error as { code?: string }).code !== "ESTALE" || this.#opened) throw error;
          // The first request was lost with the link (no reply, so no byte either): open it again.
          reply = await conn.request("download", { ...this.#request, sid, window: FILE_WINDOW });
        }
        this.#open(reply);
        return;
      } catch (error) {
        if (error instanceof DaemonDisconnectedError) {
          old = conn; // dropped again: wait for the next link within the same grace
          continue;
        }
        const cause = error as Error & { code?: string };
        this.fail(
          new FileError(this.#daemonId, {
            code: "EIO",
            message: `Download of '${this.#path}' could not resume after the link dropped: ${
              cause.code ? `${cause.code}: ` : ""
            }${cause.message}`,
            path: this.#path,
          }, { cause }),
        );
        return;
      }
    }
  }

  /** Apply one credit rule; a breach resets the stream and fails the download. */
  #refuse(step: () => unknown): boolean {
    try {
      step();
      return true;
    } catch (error) {
      if (!(error instanceof CreditError)) throw error;
      this.fail(error, error.message.slice(0, 200));
      return false;
    }
  }

  #onData(offset: number, payload: Uint8Array): void {
    this.#conn.metrics.bytesReceived[KIND_FILE]! += payload.length;
    if (this.#error || this.#ended) return;
    // This byte stream transfers the buffers it hands out, and detaches them once read: a payload that shares its
    // buffer with other messages (a relayed frame: one NATS read holds several) gets a buffer of its own first.
    if (!ownsBuffer(payload)) payload = payload.slice();
    if (!this.#refuse(() => this.#credit.data(offset, payload))) return;
    if (this.#credit.received - this.#from > this.#maxBytes) {
      this.fail(this.#tooLarge(), "download larger than maxBytes");
      return;
    }
    this.#wakeup.wake();
  }

  #tooLarge(): FileError {
    return new FileError(this.#daemonId, {
      code: "EFBIG",
      message: `Download of '${this.#path}' exceeds maxBytes (${this.#maxBytes} bytes)`,
      path: this.#path,
    });
  }

  #onEof(offset: number, sha256: string | undefined): void {
    if (this.#error || this.#ended) return;
    // The daemon holds a resumable download until it knows the end arrived.
    if (this.#request.transfer !== undefined) {
      this.#conn.send({ t: "ack", sid: this.#sid, offset });
    }
    try {
      this.#credit.eof(offset, sha256);
    } catch (error) {
      this.fail(
        new FileError(this.#daemonId, {
          code: "EINTEGRITY",
          message: (error as Error).message,
          path: this.#path,
        }),
      );
      return;
    }
    this.#ended = true;
    this.#unbind();
    this.#wakeup.wake();
  }

  /** Give up: fail the stream and, while the link is there, tell the daemon to stop (`reason`). */
  fail(error: Error, reason = "download failed on the controller"): void {
    if (this.#error || this.#ended) return;
    this.#error = error;
    this.#info.reject(error);
    this.#stop.abort();
    this.#credit.clear();
    this.#partial = null;
    if (this.#route) this.#conn.send({ t: "reset", sid: this.#sid, reason });
    this.#unbind();
    this.#wakeup.wake();
  }

  /**
   * Free the memory of the chunk handed off last. Its consumer asked for the next one, so it has passed this one on
   * (an HTTP response hands its chunks to the runtime, which holds its own reference until they are written): the
   * buffer, the WebSocket message it arrived in, is detached, which frees it now rather than at some later garbage
   * collection. At 400 MiB/s those collections come late enough for the controller's RSS to grow by ~80 MiB.
   */
  #release(): void {
    const chunk = this.#handed;
    if (!chunk) return;
    this.#handed = null;
    release(chunk);
  }

  async #pull(
    controller: ReadableStreamDefaultController<Uint8Array> | ReadableByteStreamController,
  ): Promise<void> {
    this.#release();
    const request = "byobRequest" in controller ? controller.byobRequest : null;
    while (true) {
      if (this.#error) {
        controller.error(this.#error);
        return;
      }
      const chunk = this.#partial ?? this.#credit.take();
      this.#partial = null;
      if (chunk) {
        if (request) {
          // Copied into the reader's buffer: the message buffer is free now (or once its rest is read).
          const view = request.view as Uint8Array;
          const n = Math.min(view.byteLength, chunk.length);
          view.set(chunk.subarray(0, n));
          if (n < chunk.length) this.#partial = chunk.subarray(n);
          else release(chunk);
          request.respond(n);
        } else {
          if (this.#handOff) this.#handed = chunk;
          controller.enqueue(chunk);
        }
        const ack = this.#ended ? null : this.#credit.ackDue();
        if (ack !== null) this.#conn.send({ t: "ack", sid: this.#sid, offset: ack });
        const bytes = this.#credit.consumed - (this.#partial?.length ?? 0);
        this.onProgress?.({ bytes, total: this.total });
        return;
      }
      if (this.#ended) {
        controller.close();
        request?.respond(0);
        return;
      }
      const timer = this.#armStall();
      try {
        await this.#wakeup.wait();
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /**
   * The consumer waits for bytes (everything received is read, so the daemon has credit): fail the download when
   * none come within the connection's request deadline. A slow consumer is never timed out (this runs only while
   * it waits), nor a download waiting for the daemon to come back (the reconnect grace bounds that).
   */
  #armStall(): ReturnType<typeof setTimeout> | undefined {
    const ms = this.#conn.requestTimeoutMs;
    if (!(ms > 0 && ms <= MAX_TIMER_MS)) return undefined;
    return setTimeout(() => {
      if (this.#error || this.#ended) return;
      if (this.#reconnecting || !this.#route) {
        this.#wakeup.wake(); // wait again on the new link
        return;
      }
      const cause = new RequestTimeoutError(this.#daemonId, "download", ms);
      this.fail(
        new FileError(this.#daemonId, {
          code: "ETIMEDOUT",
          message:
            `Download of '${this.#path}' stalled: daemon '${this.#daemonId}' sent no data for ${ms} ms`,
          path: this.#path,
        }, { cause }),
        `ETIMEDOUT: no data for ${ms} ms`,
      );
    }, ms);
  }
}

function resetError(daemonId: string, path: string, reason: string): Error {
  const match = /^([A-Z][A-Z0-9_]{1,63}): (.*)$/s.exec(reason);
  if (match) return remoteError(daemonId, { code: match[1]!, message: match[2]!, path });
  return new FileError(daemonId, {
    code: "EIO",
    message: `Download of '${path}' reset by the daemon: ${reason}`,
    path,
  });
}

/**
 * Open a download (of a file, or of a directory as a tar archive) and resolve once the daemon has answered.
 *
 * With `handOff`, the consumer must be done with a chunk when it asks for the next one (an HTTP response body
 * is: the runtime takes its own reference to each chunk before it reads again): the chunk's buffer is then
 * detached, so its memory is freed at once instead of at a garbage collection.
 */
export async function openDownload(
  host: FileHost,
  conn: Connection,
  path: string,
  options: DownloadOptions,
  archive: boolean,
  handOff = false,
): Promise<{ readable: ReadableStream<Uint8Array>; info: DownloadReply }> {
  const from = options.from ?? 0;
  const maxBytes = options.maxBytes ?? Infinity;
  const request: DownloadRequest = {
    path,
    ...(from > 0 ? { from } : {}),
    ...(archive ? { archive: "tar" as const } : {}),
    // Only a host that can wait for the daemon to come back asks it to hold the download.
    ...(resumable(host) ? { transfer: transferKey() } : {}),
  };
  const receiver = new DownloadReceiver(host, conn, request, maxBytes, handOff);
  let info: DownloadReply;
  try {
    info = await receiver.open();
  } catch (error) {
    receiver.fail(error as Error);
    await receiver.readable.cancel().catch(() => {});
    throw error;
  }
  receiver.total = info.size ?? undefined;
  if (!archive && receiver.total !== undefined && receiver.total - from > maxBytes) {
    await receiver.readable.cancel().catch(() => {});
    throw new FileError(conn.info.id, {
      code: "EFBIG",
      message: `Download of '${path}' is ${
        receiver.total - from
      } bytes, more than maxBytes (${maxBytes} bytes)`,
      path,
    });
  }
  receiver.onProgress = options.onProgress;
  const signal = options.signal;
  if (signal) {
    const onAbort = () => receiver.fail(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  }
  return { readable: receiver.readable, info };
}
