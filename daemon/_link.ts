// The daemon's view of one WebSocket connection to the controller, and the routing of stream ids on it.
import type { DaemonMessage } from "@sandd/protocol/messages";
import { protocolRevision } from "@sandd/protocol/version";
import { WebSocketClient } from "./_websocket_client.ts";

/** Receives what the controller sends on one stream id. */
export interface StreamRoute {
  onData?(offset: number, payload: Uint8Array): void;
  onAck?(offset: number): void;
  onEof?(offset: number, sha256: string | undefined): void;
  onReset?(reason: string): void;
  /** The link closed; the route is gone. */
  onClose?(): void;
}

export class Link {
  readonly #socket: WebSocketClient;
  readonly routes: Map<number, StreamRoute> = new Map();
  readonly #closeListeners: Set<() => void> = new Set();
  #closed = false;
  #revision = -1;

  constructor(socket: WebSocketClient) {
    this.#socket = socket;
  }

  /**
   * The revision of protocol 1 the controller selected on the upgrade (0: plain `sandd.v1`): which optional
   * additions this link may carry (revision 1: `eofs` on `exit`).
   */
  get revision(): number {
    if (this.#revision < 0) this.#revision = Math.max(0, protocolRevision(this.#socket.protocol));
    return this.#revision;
  }

  get open(): boolean {
    return !this.#closed && this.#socket.readyState === WebSocketClient.OPEN;
  }

  /** Bytes queued in the socket and not yet sent. */
  get bufferedAmount(): number {
    return this.#socket.bufferedAmount;
  }

  send(message: DaemonMessage): void {
    if (this.open) this.#socket.send(JSON.stringify(message));
  }

  sendBinary(frame: Uint8Array<ArrayBuffer>): void {
    if (this.open) this.#socket.send(frame);
  }

  /** Bind `sid` to `route`, replacing any earlier binding. */
  bind(sid: number, route: StreamRoute): void {
    this.routes.set(sid, route);
  }

  unbind(sid: number, route?: StreamRoute): void {
    if (!route || this.routes.get(sid) === route) this.routes.delete(sid);
  }

  /**
   * Call `listener` once when the link closes (at once if it has), whatever its routes: for owners of resources
   * that must not outlive the link even when another stream took over their stream ids. Returns the unsubscriber.
   */
  onClosed(listener: () => void): () => void {
    if (this.#closed) {
      listener();
      return () => {};
    }
    this.#closeListeners.add(listener);
    return () => this.#closeListeners.delete(listener);
  }

  /** Mark closed and tell every route, then every close listener. */
  closed(): void {
    if (this.#closed) return;
    this.#closed = true;
    const routes = [...this.routes.values()];
    this.routes.clear();
    for (const route of routes) route.onClose?.();
    const listeners = [...this.#closeListeners];
    this.#closeListeners.clear();
    for (const listener of listeners) listener();
  }

  close(code: number, reason: string): void {
    try {
      this.#socket.close(code, reason);
    } catch {
      // already closing
    }
    this.closed();
  }
}
