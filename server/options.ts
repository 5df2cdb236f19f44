/**
 * Options and results of the controller API ({@linkcode Server}'s methods).
 *
 * @module
 */

import type { AuditLog, AuditSink } from "./audit.ts";
import type { Identity, JwtOptions } from "./auth.ts";
import type { MetricsOptions } from "./metrics.ts";
import type { Gap, StreamOffsets } from "./process.ts";
import type { RateLimit } from "./rate_limiter.ts";
import type { ControlOptions } from "./control/options.ts";
import type { ConsoleOptions } from "./console/console.ts";
import type { ClusterOptions } from "./cluster/options.ts";

/** Options of {@linkcode Server.listen}. */
export interface ServerOptions {
  /** Interface to bind. @default "127.0.0.1" */
  hostname?: string;
  /** Port; 0 picks a free one (read it from `server.port`). @default 8765 */
  port?: number;
  /** Path of the WebSocket endpoint. @default "/ws" */
  path?: string;
  /**
   * Serve Prometheus metrics at `GET /metrics`: `true` or options (a bearer token, daemon label keys to count
   * by). A scrape needs `metrics.token` or a control API client token with the `read` scope when either is
   * configured; with neither it is open like `/health`, only allowed on a loopback address.
   * @default undefined (not served)
   */
  metrics?: boolean | MetricsOptions;
  /**
   * Heartbeat interval: a link quiet for an interval is pinged (a busy one is not), and a daemon silent for three
   * intervals is dropped, within three intervals of its last message. @default 5_000
   */
  heartbeatMs?: number;
  /** A connection must say hello within this long. @default 10_000 */
  handshakeTimeoutMs?: number;
  /**
   * How long a command, process, terminal or transfer waits for its daemon to come back after the link drops
   * (a daemon retries at least every 2 s for 5 minutes after losing a link, so an outage shorter than this
   * costs no handle). @default 30_000
   */
  reconnectGraceMs?: number;
  /**
   * Deadline of every request to a daemon: a request it does not answer in time (or, for an upload, one where
   * it makes no progress for this long while the controller waits on it) fails with `RequestTimeoutError`.
   * @default 60_000
   */
  requestTimeoutMs?: number;
  /**
   * Flow-control window of a process's output stream, in bytes: the least it gets. On a link whose measured round
   * trip needs more to reach full speed (window / RTT caps a stream), the window grows up to `maxStreamWindow`
   * (the daemon caps it further at its retention, 4 MiB by default). @default 1 MiB
   */
  streamWindow?: number;
  /**
   * The largest window a long round trip may size a stream's window to. What one slow consumer can make the
   * controller buffer for its stream is bounded by twice this. @default 16 MiB
   */
  maxStreamWindow?: number;
  /** Stops the server when aborted. */
  signal?: AbortSignal;
  /**
   * Shared bearer token: daemons must send `Authorization: Bearer <token>` on the upgrade (compared in constant
   * time). Its identity is `"token"` and is not bound to a daemon id. @default undefined (no token accepted)
   */
  token?: string;
  /**
   * Accept JWT bearer credentials (EdDSA or ES256, checking `exp`, and `aud`/`iss` when given). The token's
   * `sub` must equal the daemon id the daemon says hello with, else the link is closed with code 4001.
   * @default undefined
   */
  jwt?: JwtOptions;
  /**
   * Custom authentication of the upgrade request: return an identity to accept it, `null` to refuse (401). The
   * identity's `subject` must equal the daemon id, else the link is closed with code 4001. @default undefined
   */
  authenticate?: (request: Request) => Identity | null | Promise<Identity | null>;
  /** PEM certificate chain; with `key`, the server speaks TLS and `url` is `wss://`. @default undefined */
  cert?: string;
  /** PEM private key of `cert`. @default undefined */
  key?: string;
  /**
   * Where the audit trail goes: sinks (owned and closed by the server) or an `AuditLog` (flushed, not closed).
   * @default undefined (no audit trail)
   */
  audit?: AuditSink | AuditSink[] | AuditLog;
  /** Token-bucket limits on `exec` and `spawn`, per daemon id and across all daemons. @default undefined */
  rateLimit?: ServerRateLimit;
  /**
   * Failed authentications allowed per remote address (a burst, then `rate` per second); beyond it the
   * address's failures get 429 until the bucket refills. Credentials are checked first, so a valid credential is
   * never refused because of someone else's failures from the same address (a shared proxy). `null` turns it off.
   * @default { rate: 1, burst: 20 }
   */
  authFailureLimit?: RateLimit | null;
  /** Largest message a daemon may send, in bytes; a bigger one closes its link with code 1009. @default 8 MiB */
  maxMessageBytes?: number;
  /**
   * Most bytes queued for sending to one daemon; a daemon that reads slower than this drops its link (code
   * 1008) instead of growing the controller's memory. @default 64 MiB
   */
  maxBufferedBytes?: number;
  /**
   * Most connections open at once that are still HTTP (a daemon's WebSocket stops counting once upgraded). At the
   * cap, the oldest connection still waiting for its request head makes room once it has waited 1 s (new ones wait
   * in the kernel's backlog until then), or the new one is closed when every connection is busy. @default 1_024
   */
  maxConnections?: number;
  /**
   * A connection must finish its request head (and TLS handshake) within this long of being accepted or of its
   * previous response, else it is closed. @default 10_000
   */
  headerTimeoutMs?: number;
  /**
   * What serves HTTP on plain (not TLS) connections: `"sandd"`, SandD's own strict HTTP/1.1 engine (lighter per
   * request: the control API's answers and request bodies skip Deno's `Request`/`Response` plumbing), or
   * `"deno"`, Deno's per-connection server. TLS connections are always served by Deno's server (HTTP/2 included).
   * @default "sandd"
   */
  httpEngine?: "sandd" | "deno";
  /**
   * Serve the HTTP control API under `/api/v1` (`true`: with defaults). Clients authenticate with their own
   * tokens (`control.tokens`), never with the daemons' credentials; without client tokens the API is open, which
   * is only allowed on a loopback `hostname` unless `control.insecure` is set. @default undefined (no API)
   */
  control?: true | ControlOptions;
  /**
   * Serve the web console under `/console` (`true`: with defaults): the fleet, processes, terminals in the
   * browser, replays. Needs `control`; signs in with its client tokens (open when it has none, loopback only).
   * @default undefined (no console)
   */
  console?: boolean | ConsoleOptions;
  /**
   * Join a cluster of controller nodes over NATS (JetStream on): every node sees and reaches the daemons of all
   * (see server/CLUSTER.md). @default undefined (a standalone controller)
   */
  cluster?: ClusterOptions;
}

/**
 * Rate limits of {@linkcode ServerOptions.rateLimit}.
 *
 * @example Five commands a second per daemon, 200 overall
 * ```ts
 * import type { ServerRateLimit } from "./options.ts";
 * const limits: ServerRateLimit = { perDaemon: { rate: 5, burst: 10 }, global: { rate: 200, burst: 400 } };
 * console.assert(limits.perDaemon?.burst === 10);
 * ```
 */
export interface ServerRateLimit {
  /** Commands (exec + spawn) per second and burst for each daemon. @default undefined (unlimited) */
  perDaemon?: RateLimit;
  /** Commands per second and burst across all daemons. @default undefined (unlimited) */
  global?: RateLimit;
}

/** Options of {@linkcode Server.exec}. */
export interface ExecOptions {
  /** Kill the process group after this many milliseconds and reject with `CommandTimeoutError`. */
  timeout?: number;
  /** Environment variables added to the daemon's. */
  env?: Record<string, string>;
  /** Working directory on the worker. */
  cwd?: string;
  /** Bytes (or UTF-8 text) for standard input, then EOF. Without it stdin is empty. */
  stdin?: Uint8Array | string;
  /** Aborting kills the process group and rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Output kept per stream; beyond it output is dropped and `truncated` set. @default 16 MiB */
  maxOutputBytes?: number;
}

/** Options of {@linkcode Server.broadcast}: those of `exec`, plus how many run at once. */
export interface BroadcastOptions extends ExecOptions {
  /**
   * Commands in flight at once: the rest wait their turn, so a broadcast to a whole fleet neither stalls the
   * controller nor holds every stream at once. @default 256
   */
  concurrency?: number;
  /** Called with each daemon's result (or error) as it arrives. */
  onResult?: (id: string, result: ExecResult | Error) => void;
}

/** The result of {@linkcode Server.exec}. A non-zero exit is a result, not an error. */
export interface ExecResult {
  /** Standard output decoded as UTF-8 (invalid bytes become U+FFFD). */
  stdout: string;
  /** Standard error decoded as UTF-8. */
  stderr: string;
  /** Standard output, byte-exact. */
  stdoutBytes: Uint8Array;
  /** Standard error, byte-exact. */
  stderrBytes: Uint8Array;
  /** Exit code; 127 for a missing program; 128 + n when signal n ended it. */
  exitCode: number;
  /** The signal that ended it, if any. */
  signal: Deno.Signal | null;
  /** Wall time from request to result, in milliseconds. */
  durationMs: number;
  /** Whether output beyond `maxOutputBytes` was dropped. */
  truncated: { stdout: boolean; stderr: boolean };
}

/** Options of {@linkcode Server.spawn}. */
export interface SpawnOptions {
  /** Environment variables added to the daemon's. */
  env?: Record<string, string>;
  /** Working directory. */
  cwd?: string;
  /** Kill the process group after this many milliseconds (`status.timedOut` is then true). */
  timeout?: number;
  /** Open stdin. @default true */
  stdin?: boolean;
  /** Output bytes the daemon retains per stream for resume. @default the daemon's (4 MiB) */
  retainBytes?: number;
  /** Called when bytes were lost because the daemon's retention overflowed while the link was down. */
  onGap?: (gap: Gap) => void;
}

/** Options of {@linkcode Server.attach}. */
export interface AttachOptions {
  /**
   * Byte offset to replay from: a number for both streams, `{ stdout, stderr }` for each on its own (a stream left
   * out starts at its oldest retained byte), `null` for the oldest retained byte. @default null
   */
  from?: number | null | StreamOffsets;
  /** Take over stdin. @default true */
  stdin?: boolean;
  /** Called when bytes before the retained window were asked for. */
  onGap?: (gap: Gap) => void;
}

/** Which daemons an operation addresses. */
export interface DaemonFilter {
  /** Every label must match. */
  labels?: Record<string, string>;
  /** Only these platforms. */
  platform?: string;
}

/** Options of {@linkcode Server.waitForDaemon}. */
export interface WaitOptions {
  /** Give up after this many milliseconds. @default 30_000 */
  timeout?: number;
  /** Give up when aborted. */
  signal?: AbortSignal;
}

/** Statistics served at `GET /stats`. */
export interface ServerStats {
  /** Connected daemons. */
  daemons: number;
  /** Connected daemons by platform. */
  byPlatform: Record<string, number>;
  /** Milliseconds since listen. */
  uptimeMs: number;
  /** Commands and processes the controller is following. */
  inFlight: number;
  /** Controller version. */
  version: string;
}
