// The bodies of the Client's file transfers, shaped for throughput: few large chunks rather than the runtime's
// 64 KiB ones (per-chunk promise and stream costs dominated a 1 GiB `sandd cp`), no buffer kept alive after the
// runtime has taken it, and a download that a BYOB reader can read into one reused buffer (no garbage at all).
//
// - `downloadBody`: a byte stream over the HTTP answer that re-opens it from the first byte not received when the
//   connection drops (the `Resumer` of `_client_resume.ts`, which `resumable` uses for process output too),
//   reading the body in up-to-1 MiB pieces.
// - `requestBody`: an upload's request body from a stream or chunks, counted and hashed on the way, read from a
//   byte stream (a file) in 1 MiB pieces whose buffers are freed once the runtime has taken them.
import { type ResumableInit, Resumer } from "./_client_resume.ts";
import { SocketBody } from "./_client_socket_get.ts";

/** Most bytes one read of a download's HTTP body takes (what has arrived, up to this). */
const READ_BYTES = 1024 * 1024;
/** Size of the pieces a default reader of a download gets. */
const DEFAULT_READER_CHUNK = 256 * 1024;
/** Size of the pieces an upload reads from a byte stream. */
const UPLOAD_PIECE = 1024 * 1024;

/** What a download body is made with: the same as `resumable`. */
export type DownloadBodyInit = ResumableInit;

/**
 * Reads an HTTP body into a caller's view: from its socket straight into the view, BYOB into a reused scratch
 * buffer, or chunk by chunk.
 */
class BodyReader {
  readonly #socket: SocketBody | null = null;
  readonly #byob: ReadableStreamBYOBReader | null = null;
  readonly #default: ReadableStreamDefaultReader<Uint8Array> | null = null;
  #scratch: ArrayBuffer | null = null;
  /** The rest of a default reader's chunk that did not fit. */
  #rest: Uint8Array | null = null;

  constructor(body: ReadableStream<Uint8Array> | SocketBody) {
    if (body instanceof SocketBody) {
      this.#socket = body;
      return;
    }
    let byob: ReadableStreamBYOBReader | null = null;
    try {
      byob = body.getReader({ mode: "byob" });
    } catch {
      // not a byte stream
    }
    this.#byob = byob;
    this.#default = byob ? null : body.getReader();
  }

  /** Read into `target`; resolves with the count, or null at the end of the body. */
  async read(target: Uint8Array): Promise<number | null> {
    if (this.#socket) return await this.#socket.read(target);
    if (this.#byob) {
      const want = Math.min(target.length, READ_BYTES);
      const scratch = this.#scratch ?? new ArrayBuffer(READ_BYTES);
      this.#scratch = null;
      const { done, value } = await this.#byob.read(new Uint8Array(scratch, 0, want));
      if (value) this.#scratch = value.buffer as ArrayBuffer;
      if (done) return null;
      target.set(value);
      return value.length;
    }
    let chunk = this.#rest;
    this.#rest = null;
    if (!chunk) {
      const { done, value } = await this.#default!.read();
      if (done) return null;
      chunk = value;
    }
    const n = Math.min(chunk.length, target.length);
    target.set(chunk.subarray(0, n));
    if (n < chunk.length) this.#rest = chunk.subarray(n);
    return n;
  }

  async cancel(): Promise<void> {
    await (this.#socket ?? this.#byob ?? this.#default)!.cancel().catch(() => {});
  }
}

/**
 * A download's bytes as a byte stream that re-opens the HTTP answer from the first byte not received after a
 * dropped connection, for at most the client's `reconnectTimeoutMs` of failures in a row; errors from the API
 * (404, 503...) end it. A BYOB reader gets the bytes straight into its buffer; a default reader gets pieces of up
 * to 256 KiB.
 */
export function downloadBody(init: DownloadBodyInit): ReadableStream<Uint8Array> {
  const resumer = new Resumer(init, (body) => new BodyReader(body));
  return new ReadableStream({
    type: "bytes",
    autoAllocateChunkSize: DEFAULT_READER_CHUNK,
    start: (controller) => resumer.start(controller),
    pull: async (controller) => {
      // With `autoAllocateChunkSize` there always is a request: the reader's own view, or an allocated one.
      const request = controller.byobRequest!;
      const view = request.view as Uint8Array;
      const chunk = await resumer.next(async (reader) => {
        const n = await reader.read(view);
        return n === null ? null : view.subarray(0, n);
      });
      if (chunk === null) {
        controller.close();
        request.respond(0);
      } else if (chunk) {
        request.respond(chunk.length);
      }
    },
    cancel: () => resumer.cancel(),
  });
}

/** Free a buffer nothing holds any more (the runtime took its own reference), by detaching it. */
function release(chunk: Uint8Array): void {
  try {
    (chunk.buffer as ArrayBuffer).transfer(0);
  } catch {
    // not detachable: the garbage collector frees it
  }
}

/** The chunks of a source: a byte stream in fresh 1 MiB pieces (`owned`: ours to free), else as they come. */
async function* pieces(
  source: AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>,
): AsyncGenerator<{ chunk: Uint8Array; owned: boolean }> {
  let reader: ReadableStreamBYOBReader | null = null;
  if (source instanceof ReadableStream) {
    try {
      reader = source.getReader({ mode: "byob" });
    } catch {
      // not a byte stream
    }
  }
  if (!reader) {
    for await (const chunk of source) yield { chunk, owned: false };
    return;
  }
  let done = false;
  try {
    while (true) {
      const result = await reader.read(new Uint8Array(UPLOAD_PIECE));
      if (result.done) {
        done = true;
        return;
      }
      if (result.value.length > 0) yield { chunk: result.value, owned: true };
    }
  } finally {
    if (!done) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/**
 * A request body from a stream or chunks, each chunk passed to `onChunk` (count, hash, progress; throw to fail)
 * and `onEnd` at the end (what it returns is sent last). An error of the source or of the checks is kept in `failure`, so that the call can throw
 * it instead of the fetch's generic one. Pieces read here from a byte stream are freed once the runtime has
 * taken them (it holds its own reference until they are sent).
 */
export function requestBody(
  source: AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>,
  onChunk: (chunk: Uint8Array) => void,
  onEnd: () => Uint8Array | void = () => {},
): { body: ReadableStream<Uint8Array>; failure: () => unknown } {
  let failure: unknown = undefined;
  const iterator = pieces(source);
  let handed: Uint8Array | null = null;
  const body = new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      // The runtime asks for the next chunk once it has taken the last one.
      if (handed) release(handed);
      handed = null;
      try {
        const next = await iterator.next();
        if (next.done) {
          const last = onEnd();
          if (last && last.length > 0) controller.enqueue(last);
          controller.close();
          return;
        }
        const { chunk, owned } = next.value;
        if (!(chunk instanceof Uint8Array)) {
          throw new TypeError(`Upload streams must carry Uint8Array chunks, got ${typeof chunk}`);
        }
        onChunk(chunk);
        if (owned) handed = chunk;
        controller.enqueue(chunk);
      } catch (error) {
        failure = error;
        controller.error(error);
      }
    },
    cancel: async (reason) => {
      await iterator.return(reason);
    },
  }, { highWaterMark: 0 });
  return { body, failure: () => failure };
}
