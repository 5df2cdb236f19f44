// The socket of a relayed link: WebSocket-shaped (what `Connection` uses of one), publishing the link's messages to
// the node that holds the daemon (acks batched until the next macrotask: server/cluster/_relay_batch.ts). Flow
// control is end to end (daemon to this node), so nothing queues here.
import { type BatchPublish, RelayBatch } from "./_relay_batch.ts";

export class VirtualSocket {
  readonly #batch: RelayBatch;
  /** When the unanswered relay ping went out (`performance.now()`), or 0. */
  #pingAt = 0;
  #readyState: number = WebSocket.OPEN;
  readonly bufferedAmount = 0;
  binaryType: BinaryType = "arraybuffer";

  constructor(publish: BatchPublish) {
    // A frame's buffer belongs to its sender once sent (an upload may reuse or transfer it): acks only wait.
    this.#batch = new RelayBatch({ publish, holdBinary: false });
  }

  get readyState(): number {
    return this.#readyState;
  }

  /** The link's batch (its counters). */
  get batch(): RelayBatch {
    return this.#batch;
  }

  send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void {
    if (this.#readyState !== WebSocket.OPEN) return;
    if (typeof data === "string") this.#batch.send(data);
    else if (data instanceof Uint8Array) this.#batch.send(data);
    else if (ArrayBuffer.isView(data)) {
      this.#batch.send(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    } else if (data instanceof ArrayBuffer) this.#batch.send(new Uint8Array(data));
    else throw new TypeError("A relayed link sends strings and bytes only");
  }

  close(_code?: number, _reason?: string): void {
    this.#readyState = WebSocket.CLOSED;
    this.#batch.close();
  }

  /** A relay ping went out now (answered by the owner node itself: the daemon's link stays its own). */
  pinged(): void {
    this.#pingAt = performance.now();
  }

  /**
   * The owner answered the ping with its own link's round trip to the daemon (ms): the link's round trip as
   * `Connection` keeps it (`info.rttMs`, sizing stream windows), folded in as a pong does (first sample, then
   * 7/8 of the old plus 1/8). Returns the new value, or undefined with no ping out or a bad answer.
   */
  ponged(old: number | undefined, ownerRttMs: number): number | undefined {
    if (this.#pingAt === 0 || !Number.isFinite(ownerRttMs) || ownerRttMs < 0) return undefined;
    const sample = performance.now() - this.#pingAt + Math.min(ownerRttMs, 60_000);
    this.#pingAt = 0;
    return Math.round((old === undefined ? sample : (7 * old + sample) / 8) * 100) / 100;
  }

  /** As a WebSocket, for `Connection` (it uses `send`, `readyState`, `close` and `bufferedAmount`). */
  asWebSocket(): WebSocket {
    return this as unknown as WebSocket;
  }
}
