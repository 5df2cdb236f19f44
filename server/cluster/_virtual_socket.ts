// The socket of a relayed link: WebSocket-shaped (what `Connection` uses of one), publishing every message to the
// node that holds the daemon. Flow control is end to end (daemon to this node), so nothing queues here.

/** Sends one message (text or a binary frame) to the owner node. */
export type Publish = (data: string | Uint8Array) => void;

export class VirtualSocket {
  readonly #publish: Publish;
  #readyState: number = WebSocket.OPEN;
  readonly bufferedAmount = 0;
  binaryType: BinaryType = "arraybuffer";

  constructor(publish: Publish) {
    this.#publish = publish;
  }

  get readyState(): number {
    return this.#readyState;
  }

  send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void {
    if (this.#readyState !== WebSocket.OPEN) return;
    if (typeof data === "string") this.#publish(data);
    else if (data instanceof Uint8Array) this.#publish(data);
    else if (ArrayBuffer.isView(data)) {
      this.#publish(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    } else if (data instanceof ArrayBuffer) this.#publish(new Uint8Array(data));
    else throw new TypeError("A relayed link sends strings and bytes only");
  }

  close(_code?: number, _reason?: string): void {
    this.#readyState = WebSocket.CLOSED;
  }

  /** As a WebSocket, for `Connection` (it uses `send`, `readyState`, `close` and `bufferedAmount`). */
  asWebSocket(): WebSocket {
    return this as unknown as WebSocket;
  }
}
