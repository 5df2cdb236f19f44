// Controller-side security plumbing: option validation, message size checks, and a connection that watches its
// own send buffer and reports the requests it makes (for the audit trail).
import type { Operation, RequestArgs } from "../protocol/messages.ts";
import { Connection, type DaemonInfo } from "./_connection.ts";
import type { Identity } from "./auth.ts";

/** Largest first (hello) message a pending connection may send, in bytes. */
export const MAX_HELLO_BYTES = 64 * 1024;

/**
 * Size of a WebSocket message in bytes, or a lower bound of it above `limit` (so a huge text frame is not
 * encoded just to learn it is too big).
 */
export function messageBytes(data: unknown, limit: number): number {
  if (typeof data === "string") {
    // UTF-16 length <= UTF-8 length <= 3 * UTF-16 length.
    if (data.length > limit || data.length * 3 <= limit) return data.length;
    return new TextEncoder().encode(data).byteLength;
  }
  if (data instanceof ArrayBuffer) return data.byteLength;
  if (ArrayBuffer.isView(data)) return data.byteLength;
  if (data instanceof Blob) return data.size;
  return 0;
}

/** Whether an identity must equal the daemon id it claims (per-daemon credentials). */
export function bindsDaemonId(identity: Identity): boolean {
  return identity.method === "jwt" || identity.method === "custom";
}

/** Hooks a {@linkcode GuardedConnection} calls. */
export interface ConnectionGuards {
  /** Bytes queued for sending above which the daemon is dropped. */
  maxBufferedBytes: number;
  /** The send buffer grew past the limit (called once, from a microtask). */
  onOverflow(conn: GuardedConnection, buffered: number): void;
  /** A request was sent; `result` settles with its response. */
  onRequest?(
    conn: GuardedConnection,
    op: Operation,
    args: Record<string, unknown>,
    result: Promise<Record<string, unknown>>,
  ): void;
}

/** A connection that drops a daemon whose send buffer grows without bound, and reports its requests. */
export class GuardedConnection extends Connection {
  readonly #guards: ConnectionGuards;
  #overflowing = false;

  constructor(socket: WebSocket, info: DaemonInfo, instance: string, guards: ConnectionGuards) {
    super(socket, info, instance);
    this.#guards = guards;
  }

  override send(message: Parameters<Connection["send"]>[0]): void {
    super.send(message);
    this.#check();
  }

  override sendData(sid: number, offset: number, payload: Uint8Array): void {
    super.sendData(sid, offset, payload);
    this.#check();
  }

  override request<Op extends Operation>(
    op: Op,
    args: RequestArgs<Op>,
  ): Promise<Record<string, unknown>> {
    const result = super.request(op, args);
    if (this.#guards.onRequest) {
      try {
        this.#guards.onRequest(this, op, args as unknown as Record<string, unknown>, result);
      } catch {
        // an audit hook must never break a request
      }
    }
    return result;
  }

  #check(): void {
    if (this.#overflowing || this.closed) return;
    const buffered = this.socket.bufferedAmount;
    if (buffered <= this.#guards.maxBufferedBytes) return;
    this.#overflowing = true;
    queueMicrotask(() => this.#guards.onOverflow(this, buffered));
  }
}
