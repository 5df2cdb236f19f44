// One connected daemon as the controller sees it: request/response correlation and stream routing.
import { encodeDataFrame } from "../protocol/frame.ts";
import type { ControllerMessage, Operation, RequestArgs, WireError } from "../protocol/messages.ts";
import { DaemonDisconnectedError, remoteError } from "./errors.ts";

/** Receives what a daemon sends on one stream id. */
export interface InboundRoute {
  onData?(offset: number, payload: Uint8Array): void;
  onAck?(offset: number): void;
  onEof?(offset: number, sha256: string | undefined): void;
  onGap?(from: number, to: number): void;
  onReset?(reason: string): void;
  /** The connection closed. */
  onClose?(): void;
}

/** What a daemon reported about itself at connect. */
export interface DaemonInfo {
  /** Daemon id. */
  id: string;
  /** Labels. */
  labels: Record<string, string>;
  /** Host name. */
  hostname: string;
  /** Operating system (`linux`, `darwin`, `windows`). */
  platform: string;
  /** CPU architecture. */
  arch: string;
  /** Daemon version. */
  version: string;
  /** Daemon process id. */
  pid: number;
  /** When this connection was accepted. */
  connectedAt: Date;
  /** Remote address. */
  remoteAddress: string;
  /** The authenticated identity's subject. */
  identity: string;
}

interface Pending {
  resolve: (data: Record<string, unknown>) => void;
  reject: (error: Error) => void;
}

export class Connection {
  readonly info: DaemonInfo;
  readonly socket: WebSocket;
  readonly routes: Map<number, InboundRoute> = new Map();
  lastSeen: number = Date.now();
  #rid = 0;
  #sid = 0;
  readonly #pending: Map<number, Pending> = new Map();
  #closed = false;

  readonly instance: string;

  constructor(socket: WebSocket, info: DaemonInfo, instance: string) {
    this.socket = socket;
    this.info = info;
    this.instance = instance;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  send(message: ControllerMessage): void {
    if (this.#closed || this.socket.readyState !== WebSocket.OPEN) return;
    this.socket.send(JSON.stringify(message));
  }

  sendData(sid: number, offset: number, payload: Uint8Array): void {
    if (this.#closed || this.socket.readyState !== WebSocket.OPEN) return;
    this.socket.send(encodeDataFrame(sid, offset, payload));
  }

  /** A fresh stream id on this connection. */
  nextSid(): number {
    this.#sid = this.#sid >= 0xffff_fff0 ? 1 : this.#sid + 1;
    return this.#sid;
  }

  request<Op extends Operation>(op: Op, args: RequestArgs<Op>): Promise<Record<string, unknown>> {
    if (this.#closed) return Promise.reject(new DaemonDisconnectedError(this.info.id));
    const rid = ++this.#rid;
    return new Promise((resolve, reject) => {
      this.#pending.set(rid, { resolve, reject });
      this.send({ t: "req", rid, op, args } as ControllerMessage);
    });
  }

  response(
    rid: number,
    ok: boolean,
    data: Record<string, unknown> | undefined,
    error: WireError | undefined,
  ): boolean {
    const pending = this.#pending.get(rid);
    if (!pending) return false;
    this.#pending.delete(rid);
    if (ok) pending.resolve(data ?? {});
    else pending.reject(remoteError(this.info.id, error!));
    return true;
  }

  /** Mark closed: fail pending requests, tell every route. */
  closedNow(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const pending of this.#pending.values()) {
      pending.reject(new DaemonDisconnectedError(this.info.id));
    }
    this.#pending.clear();
    const routes = [...this.routes.values()];
    this.routes.clear();
    for (const route of routes) route.onClose?.();
  }

  close(code: number, reason: string): void {
    try {
      this.socket.close(code, reason);
    } catch {
      // closing already
    }
    this.closedNow();
  }
}
