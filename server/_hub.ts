// The hub: where daemon links live. The handshake (hello, then welcome), the duplicate-id policy, heartbeats,
// and the dispatch of every message a daemon sends, replies included (parsed in one place, `#reply`).
import { getLogger } from "@logtape/logtape";
import {
  CLOSE_CODES,
  isDaemonId,
  MAX_ERROR_MESSAGE_LENGTH,
  MAX_HELLO_BYTES,
} from "@sandd/protocol/constants";
import { type DataFrame, decodeDataFrame, FRAME_HEADER_BYTES } from "@sandd/protocol/frame";
import { ProtocolError } from "@sandd/protocol/errors";
import {
  type ControllerMessage,
  type DaemonMessage,
  type HelloMessage,
  type Operation,
  parseDaemonMessage,
  type ResponseMessage,
} from "@sandd/protocol/messages";
import { parseResponseData } from "@sandd/protocol/replies";
import { VERSION } from "@sandd/protocol/version";
import { type Connection, type DaemonInfo, SLOT_RID_SPAN, SLOT_SID_SPAN } from "./_connection.ts";
import {
  bindsDaemonId,
  type ConnectionGuards,
  GuardedConnection,
  messageBytes,
} from "./_security.ts";
import { Heartbeat } from "./_heartbeat.ts";
import { LAG_SLACK_MS } from "./_loop_stall.ts";
import { AcceptedSocket } from "./_accepted_socket.ts";
import type { Auditor } from "./_audited.ts";
import type { MetricsState } from "./_metrics_state.ts";
import type { ProcessRegistry } from "./_registry.ts";
import type { Identity } from "./auth.ts";
import { dispatchFsEvent } from "./files.ts";

const log = getLogger(["sandd", "server"]);

/** Requests that handles send on their own (not through a `Server` method) and that are audited here. */
const AUDITED_HERE: ReadonlySet<Operation> = new Set(["signal", "detach"]);

export interface HubOptions {
  heartbeatMs: number;
  handshakeTimeoutMs: number;
  requestTimeoutMs: number;
  maxMessageBytes: number;
  maxBufferedBytes: number;
  auditor: Auditor;
  registry: ProcessRegistry;
  metrics: MetricsState;
  onConnect(info: DaemonInfo): void;
  onDisconnect(info: DaemonInfo): void;
  /** Cluster mode (server/cluster/): routes other nodes' traffic and reaches daemons held elsewhere. */
  relay?: HubRelay;
}

/** What the hub asks of the cluster (server/cluster/cluster.ts) when the server is a cluster node. */
export interface HubRelay {
  /** This node's slot: ids in another slot belong to another node's traffic. */
  readonly slot: number;
  /** A daemon held here connected (registered cluster-wide) or dropped. */
  connected(conn: Connection): void;
  disconnected(conn: Connection): void;
  /** A message from a local daemon about another slot's request or stream: sent to that node. */
  toFront(conn: Connection, slot: number, data: string | Uint8Array): void;
  /** A local daemon reported an exit: also told to the nodes that follow its processes. */
  exit(conn: Connection, text: string): void;
  /** The link to a daemon held by another node (made on first use), or null. */
  remote(id: string): Connection | null;
}

/** The answer to a daemon's ping (one shared object). */
const PONG: ControllerMessage = Object.freeze({ t: "pong" });

/** A socket's error handler: its close event follows, which is handled. */
function ignore(): void {}

/** The cluster slot of a stream id (0 outside a cluster). */
function sidSlot(sid: number): number {
  return Math.floor(sid / SLOT_SID_SPAN);
}

export class Hub {
  readonly connections: Map<string, Connection> = new Map();
  readonly #options: HubOptions;
  readonly #pendingSockets: Set<WebSocket> = new Set();
  /** Every accepted socket until its close event (so `close()` can wait for all of them), with its state. */
  readonly #openSockets: Map<WebSocket, AcceptedSocket> = new Map();
  /** Made by `close()`: settles when the last accepted socket has closed (no promise per socket meanwhile). */
  #allClosed: PromiseWithResolvers<void> | undefined;
  /** The guards of links held here and of relayed links: one object each for all links, not closures per link. */
  readonly #guards: ConnectionGuards;
  readonly #virtualGuards: ConnectionGuards;
  readonly #heartbeat: Heartbeat;
  #closing = false;

  constructor(options: HubOptions) {
    this.#options = options;
    this.#guards = this.#guardsFor(options.maxBufferedBytes);
    this.#virtualGuards = this.#guardsFor(Number.MAX_SAFE_INTEGER);
    this.#heartbeat = new Heartbeat({
      intervalMs: options.heartbeatMs,
      ping: (conn) => {
        options.metrics.heartbeatPings++;
        conn.ping();
      },
      drop: (conn, ms, stalledMs) => {
        options.metrics.heartbeatTimeouts++;
        log.warn(
          "Daemon {id} silent for {ms} ms ({stalledMs} ms of them this controller's own loop stalled); dropping it",
          { id: conn.info.id, ms, stalledMs: Math.round(stalledMs) },
        );
        conn.close(CLOSE_CODES.TIMEOUT, "heartbeat timeout");
        this.#disconnected(conn);
      },
    });
  }

  get closing(): boolean {
    return this.#closing;
  }

  /** The live connection to a daemon (held here, or through the node that holds it in a cluster), or null. */
  connection(id: string): Connection | null {
    return this.connections.get(id) ?? this.#options.relay?.remote(id) ?? null;
  }

  /** The link to a daemon held by this node only (never a relayed one), or null. */
  local(id: string): Connection | null {
    return this.connections.get(id) ?? null;
  }

  /**
   * A link to a daemon held by another cluster node: no handshake or heartbeat here (the owner does both), its
   * messages arrive through {@linkcode Hub.deliver}. Its processes resume on it as on a reconnect.
   */
  attachVirtual(
    socket: WebSocket,
    info: DaemonInfo,
    instance: string,
    slot: number,
    keep: (conn: Connection) => void,
  ): Connection {
    const conn = this.#guarded(socket, info, instance, Number.MAX_SAFE_INTEGER);
    conn.metrics = this.#options.metrics;
    conn.slot = slot;
    // Kept by the cluster before processes re-attach (they look the link up again).
    keep(conn);
    this.#options.registry.connected(conn);
    return conn;
  }

  /** A relayed link ended (its owner dropped the daemon, died, or NATS went away): its handles wait for the next. */
  detachVirtual(conn: Connection): void {
    if (conn.closed) return;
    conn.closedNow();
    this.#options.registry.disconnected(conn.info.id, this.#closing);
  }

  /** A message of a relayed link, dispatched as one from a daemon's socket. */
  deliver(conn: Connection, data: string | Uint8Array): void {
    if (conn.closed) return;
    conn.lastSeen = Date.now();
    if (typeof data === "string") this.#onText(conn, data);
    else this.#onBinary(conn, data);
  }

  /** How long this loop was measured stalled since `since` (server/_heartbeat.ts), in ms. */
  stalledSince(since: number, now: number): number {
    return this.#heartbeat.stalledSince(since, now);
  }

  /** This loop's read lag now (server/_heartbeat.ts), in ms. */
  readLagMs(now: number): number {
    return this.#heartbeat.readLagMs(now);
  }

  /** Take an upgraded socket: it must say hello within the handshake timeout. */
  accept(socket: WebSocket, remoteAddress: string, identity: Identity): void {
    socket.binaryType = "arraybuffer";
    const accepted = new AcceptedSocket(socket, remoteAddress, identity);
    this.#pendingSockets.add(socket);
    this.#openSockets.set(socket, accepted);
    // Lag-aware, as the heartbeat: the time this loop was stalled since the upgrade (its timers late, its reads
    // late: a hello can wait unread behind a backlog) is not the daemon's delay. The timer's own lateness is
    // such a stall too (it may fire before the heartbeat has seen the stall that delayed it).
    const acceptedAt = Date.now();
    const timeoutMs = this.#options.handshakeTimeoutMs;
    const arm = (waitMs: number) => {
      const due = Date.now() + waitMs;
      accepted.handshake = setTimeout(() => {
        const now = Date.now();
        const stalled = Math.max(
          this.#heartbeat.stalledSince(acceptedAt, now),
          now - due - LAG_SLACK_MS,
        );
        const waited = now - acceptedAt - Math.max(0, stalled);
        if (waited < timeoutMs) {
          arm(timeoutMs - waited);
          return;
        }
        // Late: a hello that came while this loop was held is read in the next turn; look once more then.
        if (now - due > LAG_SLACK_MS) {
          arm(0);
          return;
        }
        log.warn("No hello from {remote} within the handshake timeout", { remote: remoteAddress });
        socket.close(CLOSE_CODES.TIMEOUT, "handshake timeout");
      }, waitMs);
    };
    arm(timeoutMs);
    socket.onmessage = this.#onSocketMessage;
    socket.onclose = this.#onSocketClose;
    socket.onerror = ignore;
  }

  /** Every accepted socket's message handler (one function for all: the state is found by the event's target). */
  readonly #onSocketMessage = (event: MessageEvent): void => {
    const accepted = this.#openSockets.get(event.target as WebSocket);
    if (!accepted || accepted.refused) return;
    const { socket, conn } = accepted;
    const limit = conn ? this.#options.maxMessageBytes : MAX_HELLO_BYTES;
    const size = messageBytes(event.data, limit);
    if (size > limit) {
      log.warn("A {size}-byte message from {who} exceeds {limit} bytes; closing its link", {
        size,
        who: conn?.info.id ?? accepted.remoteAddress,
        limit,
      });
      accepted.refused = true;
      clearTimeout(accepted.handshake);
      accepted.handshake = undefined;
      socket.close(CLOSE_CODES.MESSAGE_TOO_BIG, "message too big");
      if (conn) this.#disconnected(conn);
      return;
    }
    if (conn) {
      conn.lastSeen = Date.now();
      if (typeof event.data === "string") this.#onText(conn, event.data);
      else this.#onBinary(conn, new Uint8Array(event.data as ArrayBuffer));
      return;
    }
    clearTimeout(accepted.handshake);
    accepted.handshake = undefined;
    accepted.conn = this.#handshake(socket, event.data, accepted.remoteAddress, accepted.identity);
    if (!accepted.conn) accepted.refused = true;
  };

  /** Every accepted socket's close handler. */
  readonly #onSocketClose = (event: CloseEvent): void => {
    const socket = event.target as WebSocket;
    const accepted = this.#openSockets.get(socket);
    if (!accepted) return;
    clearTimeout(accepted.handshake);
    this.#pendingSockets.delete(socket);
    this.#openSockets.delete(socket);
    if (this.#openSockets.size === 0) this.#allClosed?.resolve();
    if (accepted.conn) this.#disconnected(accepted.conn);
  };

  /** The first message: a valid hello from a daemon its credential may speak for. */
  #handshake(
    socket: WebSocket,
    data: unknown,
    remoteAddress: string,
    identity: Identity,
  ): Connection | null {
    let hello: DaemonMessage;
    try {
      if (typeof data !== "string") throw new ProtocolError("Expected a hello text frame first");
      hello = parseDaemonMessage(data);
      if (hello.t !== "hello") throw new ProtocolError(`Expected hello first, got '${hello.t}'`);
      if (!isDaemonId(hello.id)) throw new ProtocolError(`Invalid daemon id '${hello.id}'`);
    } catch (error) {
      socket.close(CLOSE_CODES.HANDSHAKE_REFUSED, (error as Error).message.slice(0, 120));
      return null;
    }
    this.#pendingSockets.delete(socket);
    if (bindsDaemonId(identity) && identity.subject !== hello.id) {
      // A per-daemon credential speaks for one daemon id only.
      log.warn("Refused daemon id {id} from {remote}: its credential is for {subject}", {
        id: hello.id,
        remote: remoteAddress,
        subject: identity.subject,
      });
      socket.close(CLOSE_CODES.IDENTITY_MISMATCH, "credential does not match the daemon id");
      return null;
    }
    return this.#register(socket, hello, remoteAddress, identity.subject);
  }

  #register(
    socket: WebSocket,
    hello: HelloMessage,
    remoteAddress: string,
    identity: string,
  ): Connection | null {
    const info: DaemonInfo = {
      id: hello.id,
      labels: hello.labels,
      hostname: hello.hostname,
      platform: hello.platform,
      arch: hello.arch,
      version: hello.version,
      pid: hello.pid,
      connectedAt: new Date(),
      remoteAddress,
      identity,
    };
    const previous = this.connections.get(info.id);
    if (previous) {
      // Policy: the same daemon process (same instance) with the same authenticated identity reconnecting
      // replaces its older connection, which may be half-open; anything else claiming a connected id is refused.
      if (previous.instance !== hello.instance || previous.info.identity !== identity) {
        log.warn("Refused a second daemon claiming id {id} from {remote}", {
          id: info.id,
          remote: remoteAddress,
        });
        socket.close(CLOSE_CODES.ID_IN_USE, `Daemon id '${info.id}' is already connected`);
        return null;
      }
      log.info("Daemon {id} reconnected; replacing its older connection", { id: info.id });
      previous.close(CLOSE_CODES.REPLACED, "replaced by a newer connection of the same daemon");
      this.#disconnected(previous);
    }
    const conn = this.#guarded(socket, info, hello.instance, this.#options.maxBufferedBytes);
    const auditor = this.#options.auditor;
    conn.metrics = this.#options.metrics;
    conn.slot = this.#options.relay?.slot ?? 0;
    this.connections.set(info.id, conn);
    this.#options.metrics.connected(conn);
    conn.send({ t: "welcome", version: VERSION, heartbeatMs: this.#options.heartbeatMs });
    // One ping at once: its round trip sizes the windows of the link's first streams.
    conn.ping();
    this.#heartbeat.add(conn);
    log.info("Daemon {id} connected from {remote}", { id: info.id, remote: remoteAddress });
    auditor.write({ daemon: info.id, identity, action: "connect", ok: true });
    // The cluster first: a relayed link to this daemon through another node ends before processes re-attach here.
    this.#options.relay?.connected(conn);
    this.#options.registry.connected(conn);
    this.#options.onConnect({ ...info });
    return conn;
  }

  #guarded(
    socket: WebSocket,
    info: DaemonInfo,
    instance: string,
    maxBufferedBytes: number,
  ): Connection {
    const guards = maxBufferedBytes === this.#options.maxBufferedBytes
      ? this.#guards
      : maxBufferedBytes === Number.MAX_SAFE_INTEGER
      ? this.#virtualGuards
      : this.#guardsFor(maxBufferedBytes);
    return new GuardedConnection(socket, info, instance, this.#options.requestTimeoutMs, guards);
  }

  #guardsFor(maxBufferedBytes: number): ConnectionGuards {
    const auditor = this.#options.auditor;
    return {
      maxBufferedBytes,
      onOverflow: (guarded, buffered) => {
        log.warn("Daemon {id} is not reading: {buffered} bytes queued; dropping its link", {
          id: guarded.info.id,
          buffered,
        });
        guarded.close(CLOSE_CODES.POLICY_VIOLATION, "send buffer overflow");
        this.#disconnected(guarded);
      },
      onRequest: (guarded, op, args, result) => {
        if (!AUDITED_HERE.has(op)) return;
        auditor.run(op, guarded.info.id, {
          process: String(args.proc),
          ...(op === "signal" ? { command: String(args.signal) } : {}),
        }, () => result).catch(() => {});
      },
    };
  }

  /** Drop a daemon held here (the cluster refuses a duplicate id, or another node took the daemon over). */
  drop(conn: Connection, code: number, reason: string): void {
    conn.close(code, reason);
    this.#disconnected(conn);
  }

  #disconnected(conn: Connection): void {
    if (conn.closed && this.connections.get(conn.info.id) !== conn) return;
    conn.closedNow();
    this.#heartbeat.delete(conn);
    if (this.connections.get(conn.info.id) !== conn) return;
    this.connections.delete(conn.info.id);
    this.#options.metrics.disconnected(conn);
    log.info("Daemon {id} disconnected", { id: conn.info.id });
    this.#options.auditor.write({
      daemon: conn.info.id,
      identity: conn.info.identity,
      action: "disconnect",
      durationMs: Date.now() - conn.info.connectedAt.getTime(),
      ok: true,
    });
    this.#options.registry.disconnected(conn.info.id, this.#closing);
    this.#options.relay?.disconnected(conn);
    this.#options.onDisconnect({ ...conn.info });
  }

  #onText(conn: Connection, text: string): void {
    // A heartbeat's answer as every daemon spells it, taken without a parse (19,000 idle links send one each per
    // interval). Anything else, a differently spelled pong included, is parsed and validated below.
    if (text === '{"t":"pong"}') {
      conn.pong();
      return;
    }
    if (text === '{"t":"ping"}') {
      conn.send(PONG);
      return;
    }
    let message: DaemonMessage;
    try {
      message = parseDaemonMessage(text);
    } catch (error) {
      this.#refused(conn, error as Error);
      return;
    }
    const relay = this.#options.relay;
    if (relay && this.connections.get(conn.info.id) === conn) {
      // Another node's request or stream: its answer goes there, untouched.
      const slot = message.t === "res"
        ? Math.floor(message.rid / SLOT_RID_SPAN)
        : message.t === "fsevent"
        ? sidSlot(message.wid)
        : "sid" in message
        ? sidSlot(message.sid)
        : relay.slot;
      if (slot !== relay.slot) {
        relay.toFront(conn, slot, text);
        return;
      }
      if (message.t === "exit") relay.exit(conn, text);
    }
    switch (message.t) {
      case "ping":
        conn.send(PONG);
        return;
      case "pong":
        conn.pong();
        return;
      case "res":
        this.#reply(conn, message);
        return;
      case "ack":
        conn.acked(message.sid, message.offset);
        conn.route(message.sid)?.onAck?.(message.offset);
        return;
      case "eof":
        conn.route(message.sid)?.onEof?.(message.offset, message.sha256);
        return;
      case "gap":
        conn.route(message.sid)?.onGap?.(message.from, message.to);
        return;
      case "reset":
        conn.route(message.sid)?.onReset?.(message.reason);
        return;
      case "exit":
        // Revision 1: the ends of the process's streams ride on its exit; each is an eof arriving just before it.
        if (message.eofs) {
          for (const { sid, offset } of message.eofs) {
            conn.route(sid)?.onEof?.(offset, undefined);
          }
        }
        this.#options.registry.exited(conn.info.id, message.proc, {
          exitCode: message.exitCode,
          signal: message.signal,
          timedOut: message.timedOut,
          ...(message.truncated ? { truncated: message.truncated } : {}),
        });
        return;
      case "fsevent":
        dispatchFsEvent(conn, message);
        return;
      case "error":
        log.warn("Daemon {id} reported: {code} {message}", {
          id: conn.info.id,
          code: message.code,
          message: message.message,
        });
        return;
      case "hello":
        conn.send({ t: "error", code: "PROTOCOL", message: "hello after the handshake" });
        return;
    }
  }

  /**
   * Settle the request a reply answers. Its data is validated for the request's operation here, the one place
   * replies are read; a reply that does not fit fails that request with a `ProtocolError` naming the field.
   */
  #reply(conn: Connection, message: ResponseMessage): void {
    const op = conn.pendingOp(message.rid);
    if (op === undefined) {
      conn.send({ t: "error", code: "PROTOCOL", message: `No pending request ${message.rid}` });
      return;
    }
    if (!message.ok) {
      conn.refused(message.rid, message.error);
      return;
    }
    let data: unknown;
    try {
      data = parseResponseData(op, message.data);
    } catch (error) {
      this.#refused(
        conn,
        new ProtocolError((error as Error).message, { about: { t: "res", rid: message.rid } }),
      );
      return;
    }
    conn.resolved(message.rid, data);
  }

  /**
   * A message that failed validation. It is logged and answered with an `error`; when it named something the
   * controller waits on (`error.about`: a pending request's `rid`, an open stream's `sid` or watch's `wid`, a
   * followed process's `proc`), that call fails with the reason instead of waiting for something that will not
   * come. A message naming nothing is only logged and answered.
   */
  #refused(conn: Connection, error: Error): void {
    log.warn("Refused a message from {id}: {message}", {
      id: conn.info.id,
      message: error.message,
    });
    conn.send({
      t: "error",
      code: "PROTOCOL",
      message: error.message.slice(0, MAX_ERROR_MESSAGE_LENGTH),
    });
    const about = error instanceof ProtocolError ? error.about : undefined;
    if (!about) return;
    const what = `a message${about.t ? ` (${about.t})` : ""}`;
    if (about.rid !== undefined && about.t === "res") {
      const op = conn.pendingOp(about.rid);
      if (op !== undefined) {
        conn.fail(
          about.rid,
          new ProtocolError(
            `Daemon '${conn.info.id}' answered the '${op}' request with a reply the controller cannot accept: ${error.message}`,
            { cause: error, about },
          ),
        );
      }
    }
    const sid = about.sid ?? about.wid;
    if (sid !== undefined) {
      const route = conn.route(sid);
      if (route) {
        const failure = new ProtocolError(
          `Daemon '${conn.info.id}' sent ${what} about stream ${sid} that the controller cannot accept: ${error.message}`,
          { cause: error, about },
        );
        // Tell the daemon the stream is over, then fail it here (its route unbinds itself).
        conn.send({ t: "reset", sid, reason: failure.message.slice(0, 200) });
        if (route.onError) route.onError(failure);
        else route.onReset?.(failure.message);
      }
    }
    if (about.proc !== undefined) {
      this.#options.registry.failed(
        conn.info.id,
        about.proc,
        new ProtocolError(
          `Daemon '${conn.info.id}' sent ${what} about process '${about.proc}' that the controller cannot accept: ${error.message}`,
          { cause: error, about },
        ),
      );
    }
  }

  #onBinary(conn: Connection, bytes: Uint8Array): void {
    const relay = this.#options.relay;
    if (
      relay && bytes.length >= FRAME_HEADER_BYTES && this.connections.get(conn.info.id) === conn
    ) {
      const slot = sidSlot(new DataView(bytes.buffer, bytes.byteOffset).getUint32(1));
      if (slot !== relay.slot) {
        relay.toFront(conn, slot, bytes);
        return;
      }
    }
    let frame: DataFrame;
    try {
      frame = decodeDataFrame(bytes);
    } catch (error) {
      // A header long enough to name its stream fails that stream; a shorter one names nothing.
      const named = bytes.length >= FRAME_HEADER_BYTES;
      const sid = named ? new DataView(bytes.buffer, bytes.byteOffset).getUint32(1) : 0;
      this.#refused(
        conn,
        new ProtocolError((error as Error).message, named ? { about: { t: "data", sid } } : {}),
      );
      return;
    }
    const route = conn.route(frame.sid);
    if (!route?.onData) {
      conn.send({ t: "reset", sid: frame.sid, reason: `No open stream ${frame.sid}` });
      return;
    }
    route.onData(frame.offset, frame.payload);
  }

  /** Close every link (processes on the workers keep running) and wait, bounded, for their close handshakes. */
  async close(): Promise<void> {
    this.#closing = true;
    await this.#heartbeat.close();
    for (const socket of this.#pendingSockets) {
      socket.close(CLOSE_CODES.GOING_AWAY, "server closing");
    }
    for (const conn of [...this.connections.values()]) {
      conn.close(CLOSE_CODES.GOING_AWAY, "server closing");
      this.#disconnected(conn);
    }
    this.#options.registry.failAll();
    let timer: ReturnType<typeof setTimeout> | undefined;
    this.#allClosed = Promise.withResolvers<void>();
    if (this.#openSockets.size === 0) this.#allClosed.resolve();
    await Promise.race([
      this.#allClosed.promise,
      new Promise((resolve) => timer = setTimeout(resolve, 2_000)),
    ]);
    clearTimeout(timer);
  }
}
