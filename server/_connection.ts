// One connected daemon as the controller sees it: request/response correlation with a deadline on every request,
// and stream routing.
import { encodeDataFrame } from "@sandd/protocol/frame";
import type {
  ControllerMessage,
  Operation,
  RequestArgs,
  WireError,
} from "@sandd/protocol/messages";
import type { ResponseData } from "@sandd/protocol/replies";
import { DaemonDisconnectedError, remoteError, RequestTimeoutError } from "./errors.ts";
import {
  type MetricsState,
  OUTCOME_DISCONNECTED,
  OUTCOME_ERROR,
  OUTCOME_INVALID,
  OUTCOME_OK,
  OUTCOME_TIMEOUT,
  UNCOUNTED,
} from "./_metrics_state.ts";

/** Receives what a daemon sends on one stream id. */
export interface InboundRoute {
  onData?(offset: number, payload: Uint8Array): void;
  onAck?(offset: number): void;
  onEof?(offset: number, sha256: string | undefined): void;
  onGap?(from: number, to: number): void;
  onReset?(reason: string): void;
  /** The daemon sent a message about this stream that the controller cannot accept (else `onReset` is told). */
  onError?(error: Error): void;
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
  /**
   * Round-trip time of the link in milliseconds (smoothed, from the controller's pings), once measured. Streams
   * size their flow-control window from it so a long link is not capped at window / RTT.
   */
  rttMs?: number;
}

/** Flow state of a request whose stream the controller sends on (an upload): its deadline runs only while waiting. */
interface SendingStream {
  /** End offset of the bytes sent. */
  sent: number;
  /** Offset the daemon has acknowledged. */
  acked: number;
  /** Whether the end of the stream was sent (the reply is due then). */
  ended: boolean;
  /** When the controller last started waiting on the daemon or the daemon last made progress. */
  progressAt: number;
}

interface Pending {
  op: Operation;
  /** Settles with the reply's data, validated for `op` (see `Hub`). */
  resolve: (data: unknown) => void;
  reject: (error: Error) => void;
  /** An upload's own deadline timer; other requests share the connection's (`deadline`). */
  timer: ReturnType<typeof setTimeout> | undefined;
  /** `performance.now()` by which the reply is due (0 for an upload, whose deadline is `timer`'s). */
  deadline: number;
  sending: { sid: number; state: SendingStream } | undefined;
  /** `performance.now()` at send (for the latency metric). */
  startedAt: number;
}

/** Stream ids per cluster slot: a slot's ids are `slot * SLOT_SID_SPAN + 1` up to the next slot's. */
export const SLOT_SID_SPAN = 0x100_0000;
/** Request ids per cluster slot. */
export const SLOT_RID_SPAN = 0x1_0000_0000;

/** The heartbeat's ping. */
const PING: ControllerMessage = Object.freeze({ t: "ping" });
/** Its text, sent as is (19,000 idle links get one each per interval: no JSON.stringify for those). */
const PING_TEXT = '{"t":"ping"}';

/** Default deadline of a request, in milliseconds. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;

export class Connection {
  readonly info: DaemonInfo;
  readonly socket: WebSocket;
  /** Made on first use: an idle link (most of a large fleet) carries no stream and holds no map. */
  #routes: Map<number, InboundRoute> | undefined;
  /** When the last message arrived from the daemon (`Date.now()`). */
  lastSeen: number = Date.now();
  /** When the controller last sent the daemon anything (`Date.now()`). */
  lastSent: number = Date.now();
  /** When the unanswered ping went out (`performance.now()`), or 0. */
  #pingSentAt = 0;
  /**
   * The heartbeat's (server/_heartbeat.ts) place for this link on its wheel: the tick it is queued for, or -1 when
   * queued nowhere. Kept here, not in a record per link in a map (19,000 links: ~70 bytes each less).
   */
  beatTick = -1;
  /** When the heartbeat last pinged this link (`Date.now()`), or 0 (a ping answers for `lastSent`, not silence). */
  pingedAt = 0;
  readonly instance: string;
  /**
   * The cluster slot this controller node allocates request and stream ids in (1-255), or 0 outside a cluster.
   * With a slot, stream ids are `slot * 2^24 + counter` and request ids `slot * 2^32 + counter`, so the traffic of
   * several nodes shares one daemon link without collisions and the owner routes answers by the slot in the id.
   * 0 keeps the plain counters.
   */
  slot = 0;
  /** Where this link's requests and streams are counted (the server's metrics once registered). */
  metrics: MetricsState = UNCOUNTED;
  readonly #requestTimeoutMs: number;
  #rid = 0;
  #sid = 0;
  /** Pending requests by id; made on first use, dropped again when the last settles. */
  #pending: Map<number, Pending> | undefined;
  /** Pending uploads by the stream id they send on; made on first use, dropped again when the last settles. */
  #sending: Map<number, SendingStream> | undefined;
  #closed = false;
  /** The deadline timer shared by the pending requests (uploads aside), armed while any is pending. */
  #deadlineTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    socket: WebSocket,
    info: DaemonInfo,
    instance: string,
    requestTimeoutMs: number = DEFAULT_REQUEST_TIMEOUT_MS,
  ) {
    this.socket = socket;
    this.info = info;
    this.instance = instance;
    this.#requestTimeoutMs = requestTimeoutMs;
  }

  /** The routes of the streams bound on this link, by stream id. */
  get routes(): Map<number, InboundRoute> {
    return this.#routes ??= new Map();
  }

  /** The route bound to stream `sid`, if any (a lookup that makes no map on an idle link). */
  route(sid: number): InboundRoute | undefined {
    return this.#routes?.get(sid);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Send a ping and time its pong (the round trip sizes stream windows). */
  ping(): void {
    this.#pingSentAt = performance.now();
    // One shared message object (the heartbeat's most frequent message allocates nothing of its own).
    this.send(PING);
  }

  /** A pong arrived: fold the round trip into `info.rttMs` (the first sample, then 7/8 of the old plus 1/8). */
  pong(): void {
    if (this.#pingSentAt === 0) return;
    const sample = performance.now() - this.#pingSentAt;
    this.#pingSentAt = 0;
    const old = this.info.rttMs;
    this.info.rttMs = Math.round((old === undefined ? sample : (7 * old + sample) / 8) * 100) / 100;
  }

  /** The deadline of a request's answer (and of a file stream's next bytes), in milliseconds. */
  get requestTimeoutMs(): number {
    return this.#requestTimeoutMs;
  }

  get inFlight(): number {
    return this.#pending?.size ?? 0;
  }

  send(message: ControllerMessage): void {
    if (this.#closed || this.socket.readyState !== WebSocket.OPEN) return;
    this.socket.send(message === PING ? PING_TEXT : JSON.stringify(message));
    this.lastSent = Date.now();
    if (message.t === "eof" && this.#sending !== undefined) {
      const state = this.#sending.get(message.sid);
      if (state && !state.ended) {
        state.ended = true;
        state.progressAt = this.lastSent;
      }
    }
  }

  sendData(sid: number, offset: number, payload: Uint8Array): void {
    if (this.#closed || this.socket.readyState !== WebSocket.OPEN) return;
    this.socket.send(encodeDataFrame(sid, offset, payload));
    this.lastSent = Date.now();
    if (this.#sending !== undefined) {
      const state = this.#sending.get(sid);
      if (state) {
        // Starting to wait on the daemon's credit: its deadline runs from now.
        if (state.sent <= state.acked) state.progressAt = this.lastSent;
        state.sent = Math.max(state.sent, offset + payload.length);
      }
    }
  }

  /** The daemon acknowledged `offset` on stream `sid` (progress for a pending upload's deadline). */
  acked(sid: number, offset: number): void {
    const state = this.#sending?.get(sid);
    if (!state) return;
    state.acked = Math.max(state.acked, offset);
    state.progressAt = Date.now();
  }

  /** A fresh stream id on this connection. */
  nextSid(): number {
    if (this.slot === 0) {
      this.#sid = this.#sid >= 0xffff_fff0 ? 1 : this.#sid + 1;
      return this.#sid;
    }
    // In the slot's range: wrap the counter and skip ids still bound.
    for (;;) {
      this.#sid = this.#sid >= 0xff_ffff ? 1 : this.#sid + 1;
      const sid = this.slot * SLOT_SID_SPAN + this.#sid;
      if (!this.#routes?.has(sid)) return sid;
    }
  }

  #nextRid(): number {
    if (this.slot === 0) return ++this.#rid;
    for (;;) {
      this.#rid = this.#rid >= 0xffff_ffff ? 1 : this.#rid + 1;
      const rid = this.slot * SLOT_RID_SPAN + this.#rid;
      if (!this.#pending?.has(rid)) return rid;
    }
  }

  /**
   * Send a request; the promise settles with the daemon's reply, or fails with `RequestTimeoutError` when none
   * comes within the deadline (for an upload: while the controller waits on the daemon and it makes no progress),
   * or with `DaemonDisconnectedError` when the link closes first. The hub validates the reply's data for `op`
   * (`parseResponseData`) before settling, so it arrives typed; a reply that does not fit fails with a
   * `ProtocolError` naming the field.
   */
  request<Op extends Operation>(op: Op, args: RequestArgs<Op>): Promise<ResponseData<Op>> {
    if (this.#closed) return Promise.reject(new DaemonDisconnectedError(this.info.id));
    const rid = this.#nextRid();
    return new Promise<ResponseData<Op>>((resolve, reject) => {
      // Requests that carry a controller stream (an upload, a snapshot blob or import): their deadline runs only
      // while the controller waits on the daemon.
      const sid = op === "upload" || op === "snapshotBlobPut" || op === "snapshotImport"
        ? (args as RequestArgs<"upload">).sid
        : undefined;
      const pending: Pending = {
        op,
        resolve: resolve as (data: unknown) => void,
        reject,
        timer: undefined,
        deadline: 0,
        sending: undefined,
        startedAt: performance.now(),
      };
      if (sid !== undefined) {
        const state = { sent: 0, acked: 0, ended: false, progressAt: Date.now() };
        pending.sending = { sid, state };
        (this.#sending ??= new Map()).set(sid, state);
        pending.timer = setTimeout(() => this.#expire(rid), this.#requestTimeoutMs);
      } else {
        // One timer per connection, not one per request: armed for the oldest pending request's deadline (every
        // request gets the same timeout, so the map's insertion order is deadline order).
        pending.deadline = pending.startedAt + this.#requestTimeoutMs;
        this.#deadlineTimer ??= setTimeout(() => this.#sweep(), this.#requestTimeoutMs);
      }
      (this.#pending ??= new Map()).set(rid, pending);
      this.metrics.requestSent();
      this.send({ t: "req", rid, op, args } as ControllerMessage);
    });
  }

  #expire(rid: number): void {
    const pending = this.#pending?.get(rid);
    if (!pending) return;
    const state = pending.sending?.state;
    if (state) {
      const now = Date.now();
      const waiting = state.ended || state.sent > state.acked;
      // Not waiting on the daemon (the caller's source is slow), or it made progress: check again later.
      if (!waiting || now - state.progressAt < this.#requestTimeoutMs) {
        const left = waiting
          ? state.progressAt + this.#requestTimeoutMs - now
          : this.#requestTimeoutMs;
        pending.timer = setTimeout(() => this.#expire(rid), Math.max(1, left));
        return;
      }
    }
    this.#take(rid, OUTCOME_TIMEOUT)?.reject(
      new RequestTimeoutError(this.info.id, pending.op, this.#requestTimeoutMs),
    );
  }

  /** The shared deadline timer fired: fail every request past its deadline, then wait for the next one's. */
  #sweep(): void {
    this.#deadlineTimer = undefined;
    const all = this.#pending;
    if (!all) return;
    const now = performance.now();
    const expired: number[] = [];
    let next = 0;
    for (const [rid, pending] of all) {
      if (pending.deadline === 0) continue;
      if (pending.deadline > now) {
        next = pending.deadline;
        break;
      }
      expired.push(rid);
    }
    for (const rid of expired) {
      const pending = this.#take(rid, OUTCOME_TIMEOUT);
      pending?.reject(new RequestTimeoutError(this.info.id, pending.op, this.#requestTimeoutMs));
    }
    if (next > 0 && !this.#closed) {
      this.#deadlineTimer ??= setTimeout(() => this.#sweep(), Math.max(1, Math.ceil(next - now)));
    }
  }

  #take(rid: number, outcome: number): Pending | undefined {
    const all = this.#pending;
    const pending = all?.get(rid);
    if (!pending) return undefined;
    all!.delete(rid);
    // An idle link holds no maps (a large fleet is mostly idle links). Its deadline timer is not cleared here: it
    // lapses at the latest `requestTimeoutMs` after the link's last request (its sweep then finds nothing), and a
    // request made meanwhile reuses it (it is due no later than that request's deadline, and the sweep re-arms for
    // whatever is still pending). Clearing and re-arming it for every request cost a setTimeout/clearTimeout pair
    // per exec, ~7.6 µs each here (Deno's timers are Node's Timeout objects over a native timer), which a
    // broadcast to a fleet pays once per daemon.
    if (all!.size === 0) this.#pending = undefined;
    this.metrics.requestSettled(pending.op, outcome, pending.startedAt);
    clearTimeout(pending.timer);
    if (pending.sending && this.#sending) {
      this.#sending.delete(pending.sending.sid);
      if (this.#sending.size === 0) this.#sending = undefined;
    }
    return pending;
  }

  /** The operation of pending request `rid`, if it is pending. */
  pendingOp(rid: number): Operation | undefined {
    return this.#pending?.get(rid)?.op;
  }

  /**
   * Settle request `rid` with the daemon's successful reply, already validated for its operation. Returns false
   * when no such request is pending.
   */
  resolved(rid: number, data: unknown): boolean {
    const pending = this.#take(rid, OUTCOME_OK);
    if (!pending) return false;
    pending.resolve(data);
    return true;
  }

  /** Fail request `rid` with the daemon's error reply. Returns false when no such request is pending. */
  refused(rid: number, error: WireError): boolean {
    if (error.code === "POLICY" && this.#pending?.has(rid)) this.metrics.policyRefusals++;
    return this.#failWith(rid, remoteError(this.info.id, error), OUTCOME_ERROR);
  }

  /** Fail request `rid` (a reply the controller cannot accept). Returns false when no such request is pending. */
  fail(rid: number, error: Error): boolean {
    return this.#failWith(rid, error, OUTCOME_INVALID);
  }

  #failWith(rid: number, error: Error, outcome: number): boolean {
    const pending = this.#take(rid, outcome);
    if (!pending) return false;
    pending.reject(error);
    return true;
  }

  /** Mark closed: fail pending requests, tell every route. */
  closedNow(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const rid of [...(this.#pending?.keys() ?? [])]) {
      this.#take(rid, OUTCOME_DISCONNECTED)?.reject(new DaemonDisconnectedError(this.info.id));
    }
    clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = undefined;
    const routes = this.#routes;
    if (!routes) return;
    const bound = [...routes.values()];
    routes.clear();
    for (const route of bound) route.onClose?.();
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
