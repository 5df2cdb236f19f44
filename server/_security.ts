// Controller-side security plumbing: option validation, message size checks, and a connection that watches its
// own send buffer and reports the requests it makes (for the audit trail).
import type { Operation, RequestArgs } from "@sandd/protocol/messages";
import type { ResponseData } from "@sandd/protocol/replies";
import { Connection, type DaemonInfo } from "./_connection.ts";
import { type Authenticator, createAuthenticator, type Identity } from "./auth.ts";
import { AuditLog } from "./audit.ts";
import { type RateLimit, RateLimiter, TokenBucket } from "./rate_limiter.ts";
import type { ServerOptions } from "./options.ts";

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
    result: Promise<unknown>,
  ): void;
}

/** A connection that drops a daemon whose send buffer grows without bound, and reports its requests. */
export class GuardedConnection extends Connection {
  readonly #guards: ConnectionGuards;
  #overflowing = false;

  constructor(
    socket: WebSocket,
    info: DaemonInfo,
    instance: string,
    requestTimeoutMs: number,
    guards: ConnectionGuards,
  ) {
    super(socket, info, instance, requestTimeoutMs);
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
  ): Promise<ResponseData<Op>> {
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

/** The security settings of one server, made from its options. */
export interface Security {
  authenticator: Authenticator;
  tls: boolean;
  audit: AuditLog | undefined;
  ownsAudit: boolean;
  limiter: RateLimiter | undefined;
  failures: AuthFailures;
}

/** Build the security settings; options were validated already. */
export function createSecurity(
  options: ServerOptions,
  log: {
    warn(message: string, props: Record<string, unknown>): void;
    error(message: string, props: Record<string, unknown>): void;
  },
): Security {
  const authenticator = createAuthenticator({
    ...(options.token !== undefined ? { token: options.token } : {}),
    ...(options.jwt !== undefined ? { jwt: options.jwt } : {}),
    ...(options.authenticate !== undefined ? { authenticate: options.authenticate } : {}),
    onFailure: (reason) => log.warn("Refused a daemon's credentials: {reason}", { reason }),
  });
  let limiter: RateLimiter | undefined;
  if (options.rateLimit !== undefined) {
    const { perDaemon, global } = options.rateLimit;
    limiter = new RateLimiter({
      ...(perDaemon !== undefined ? { perKey: perDaemon } : {}),
      ...(global !== undefined ? { global } : {}),
    });
  }
  let audit: AuditLog | undefined;
  let ownsAudit = false;
  if (options.audit instanceof AuditLog) {
    audit = options.audit;
  } else if (options.audit !== undefined) {
    audit = new AuditLog(Array.isArray(options.audit) ? options.audit : [options.audit], {
      onError: (error, record) =>
        log.error("Audit sink failed for {action} on {daemon}: {error}", {
          action: record.action,
          daemon: record.daemon,
          error: String(error),
        }),
    });
    ownsAudit = true;
  }
  const failures = new AuthFailures(
    options.authFailureLimit === undefined ? { rate: 1, burst: 20 } : options.authFailureLimit,
  );
  return { authenticator, tls: options.cert !== undefined, audit, ownsAudit, limiter, failures };
}

/**
 * Failed authentications per remote address. Only failures are counted and limited: a request with valid
 * credentials is accepted whatever its address's record, so a flood of bad tokens through a shared proxy address
 * cannot lock out the daemons behind it.
 */
export class AuthFailures {
  readonly #limit: RateLimit | null;
  readonly #buckets: Map<string, TokenBucket> = new Map();

  constructor(limit: RateLimit | null) {
    this.#limit = limit;
  }

  /**
   * Count a failure from `address`. Returns the milliseconds to ask the client to wait (answer 429) when the
   * address has used up its budget, else 0 (answer 401).
   */
  failed(address: string): number {
    if (!this.#limit) return 0;
    let bucket = this.#buckets.get(address);
    if (!bucket) {
      if (this.#buckets.size >= 10_000) {
        // Forget addresses that have recovered; if none has, the oldest.
        for (const [key, old] of this.#buckets) if (old.full) this.#buckets.delete(key);
        if (this.#buckets.size >= 10_000) this.#buckets.delete(this.#buckets.keys().next().value!);
      }
      bucket = new TokenBucket(this.#limit);
      this.#buckets.set(address, bucket);
    }
    return bucket.tryTake() ? 0 : Math.max(1, bucket.retryAfterMs());
  }
}
