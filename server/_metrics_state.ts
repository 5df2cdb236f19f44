// The controller's metrics as plain numbers: what the hub, connections, streams and the launcher count as they
// work (a field increment each, no allocation, no strings), and the aggregates a scrape reads (daemons by platform
// and by the operator's label keys, kept up to date at connect and disconnect, so a scrape never walks the
// connections). `_metrics_render.ts` turns it into the Prometheus text format.
import { OPERATIONS } from "@sandd/protocol/messages";
import type { Connection } from "./_connection.ts";

/** Stream kinds (index into the byte and stall counters). */
export const KIND_PROCESS = 0;
/** Standard input of a process. */
export const KIND_STDIN = 1;
/** File and directory transfers. */
export const KIND_FILE = 2;
/** Terminal output and input. */
export const KIND_TERMINAL = 3;
/** The `kind` label of each stream kind, by index. */
export const STREAM_KINDS: readonly string[] = ["process_output", "stdin", "file", "terminal"];
/** A stream kind index. */
export type StreamKind = 0 | 1 | 2 | 3;

/** Request outcomes (index into a per-operation counter array). */
export const OUTCOME_OK = 0;
/** The daemon answered with an error. */
export const OUTCOME_ERROR = 1;
/** No answer within the request deadline. */
export const OUTCOME_TIMEOUT = 2;
/** The link closed first. */
export const OUTCOME_DISCONNECTED = 3;
/** The answer broke the protocol. */
export const OUTCOME_INVALID = 4;
/** The `outcome` label of each outcome, by index. */
export const OUTCOMES: readonly string[] = ["ok", "error", "timeout", "disconnected", "invalid"];

/** Endpoints whose authentication failures are counted (index into `authFailures`). */
export const ENDPOINT_DAEMON = 0;
/** The `/metrics` endpoint. */
export const ENDPOINT_METRICS = 1;
/** The control API (`/api/v1`, and the console's sign-in). */
export const ENDPOINT_API = 2;
/** The `endpoint` label of each endpoint, by index. */
export const ENDPOINTS: readonly string[] = ["daemon", "metrics", "api"];

/** Latency buckets of requests and execs, in seconds. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
];
/** Event-loop lag buckets, in seconds. */
export const LAG_BUCKETS: readonly number[] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

/** Distinct platforms counted before the rest go to `other` (a daemon names its own platform). */
const MAX_PLATFORMS = 16;
/** Distinct values per operator label key before the rest go to `other`. */
const MAX_LABEL_VALUES = 1_000;
/** Daemon instances remembered after their disconnect, to tell a reconnect from a first connect. */
const MAX_REMEMBERED = 100_000;
/** The bucket name of values past a cap. */
export const OTHER = "other";

/** A Prometheus histogram with fixed buckets; `counts` are per bucket (not cumulative), the last is `+Inf`. */
export class Histogram {
  readonly bounds: readonly number[];
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  /** Count one observation of `value` (seconds). */
  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

/** The counters of one request operation. */
export interface OperationStats {
  /** Requests settled, by outcome index. */
  readonly outcomes: Float64Array;
  /** Round trip of settled requests. */
  readonly latency: Histogram;
}

/** What a connection counted toward the daemon gauges at connect (taken off again at disconnect). */
interface Counted {
  platform: string;
  labels: readonly (readonly [key: string, value: string])[];
}

/** The labels counted when no label keys are configured: one shared empty list, not one per connection. */
const NO_LABELS: Counted["labels"] = Object.freeze([]);

/** Everything the controller counts. Fields are incremented in place by the code that does the work. */
export class MetricsState {
  /** Label keys of daemons the operator wants the daemon gauge broken down by. */
  readonly labelKeys: readonly string[];
  /** Connected daemons by platform (entries stay at 0 once seen). */
  readonly daemonsByPlatform: Map<string, number> = new Map();
  /** Connected daemons by label key, then value. */
  readonly daemonsByLabel: Map<string, Map<string, number>> = new Map();
  connects = 0;
  disconnects = 0;
  reconnects = 0;
  /** Per wire operation: outcomes and latency. */
  readonly operations: Readonly<Record<string, OperationStats>>;
  /** Requests sent and not settled yet. */
  requestsInFlight = 0;
  /** Whole `exec` round trips (spawn to exit, output collected). */
  readonly execLatency: Histogram = new Histogram(LATENCY_BUCKETS);
  /** Processes started, by 0 process / 1 shell. */
  readonly processesStarted: Float64Array = new Float64Array(2);
  /** Processes followed and not yet exited, by 0 process / 1 shell. */
  readonly processesRunning: Float64Array = new Float64Array(2);
  /** Bytes received from daemons, by stream kind. */
  readonly bytesReceived: Float64Array = new Float64Array(STREAM_KINDS.length);
  /** Bytes sent to daemons, by stream kind. */
  readonly bytesSent: Float64Array = new Float64Array(STREAM_KINDS.length);
  /** Times an outbound stream waited for the daemon's credit, by stream kind. */
  readonly creditStalls: Float64Array = new Float64Array(STREAM_KINDS.length);
  streamGaps = 0;
  streamGapBytes = 0;
  /** Failed authentications, by endpoint index. */
  readonly authFailures: Float64Array = new Float64Array(ENDPOINTS.length);
  /** Authentication failures answered 429 (the per-address failure limit). */
  authRateLimited = 0;
  /** exec/spawn refused by the command rate limits. */
  commandsRateLimited = 0;
  /** Requests a daemon refused with its policy (`POLICY`). */
  policyRefusals = 0;
  heartbeatPings = 0;
  /** Links dropped because the daemon missed its heartbeats. */
  heartbeatTimeouts = 0;
  /** Event-loop lag samples (only while a sampler runs). */
  readonly eventLoopLag: Histogram = new Histogram(LAG_BUCKETS);
  readonly startedAt: number = Date.now();
  readonly #counted: WeakMap<Connection, Counted> = new WeakMap();
  /** Instance of each daemon id that disconnected, to recognise it coming back. */
  readonly #gone: Map<string, string> = new Map();
  #sampler: ReturnType<typeof setInterval> | undefined;

  constructor(labelKeys: readonly string[] = []) {
    this.labelKeys = labelKeys;
    const operations: Record<string, OperationStats> = Object.create(null);
    for (const op of OPERATIONS) {
      operations[op] = {
        outcomes: new Float64Array(OUTCOMES.length),
        latency: new Histogram(LATENCY_BUCKETS),
      };
    }
    this.operations = operations;
    for (const key of labelKeys) this.daemonsByLabel.set(key, new Map());
  }

  /** A request left (call at send). */
  requestSent(): void {
    this.requestsInFlight++;
  }

  /** A request settled `startedAt` (`performance.now()` at send) with outcome `outcome`. */
  requestSettled(op: string, outcome: number, startedAt: number): void {
    this.requestsInFlight--;
    const stats = this.operations[op];
    if (!stats) return;
    stats.outcomes[outcome]!++;
    stats.latency.observe((performance.now() - startedAt) / 1000);
  }

  /** A daemon link was registered. */
  connected(conn: Connection): void {
    this.connects++;
    const { id, platform, labels } = conn.info;
    if (this.#gone.get(id) === conn.instance) this.reconnects++;
    this.#gone.delete(id);
    const counted: Counted = { platform: this.#platform(platform), labels: NO_LABELS };
    this.daemonsByPlatform.set(
      counted.platform,
      (this.daemonsByPlatform.get(counted.platform) ?? 0) + 1,
    );
    if (this.labelKeys.length > 0) {
      const seen: [key: string, value: string][] = [];
      for (const key of this.labelKeys) {
        const value = labels[key];
        if (value === undefined) continue;
        const values = this.daemonsByLabel.get(key)!;
        const bucket = values.has(value) || values.size < MAX_LABEL_VALUES ? value : OTHER;
        values.set(bucket, (values.get(bucket) ?? 0) + 1);
        seen.push([key, bucket]);
      }
      if (seen.length > 0) counted.labels = seen;
    }
    this.#counted.set(conn, counted);
  }

  /** A registered daemon link is gone. */
  disconnected(conn: Connection): void {
    const counted = this.#counted.get(conn);
    if (!counted) return;
    this.#counted.delete(conn);
    this.disconnects++;
    this.daemonsByPlatform.set(
      counted.platform,
      (this.daemonsByPlatform.get(counted.platform) ?? 1) - 1,
    );
    for (const [key, bucket] of counted.labels) {
      const values = this.daemonsByLabel.get(key)!;
      const n = (values.get(bucket) ?? 1) - 1;
      if (n > 0) values.set(bucket, n);
      else values.delete(bucket);
    }
    if (this.#gone.size >= MAX_REMEMBERED) this.#gone.delete(this.#gone.keys().next().value!);
    this.#gone.set(conn.info.id, conn.instance);
  }

  #platform(platform: string): string {
    return this.daemonsByPlatform.has(platform) || this.daemonsByPlatform.size < MAX_PLATFORMS
      ? platform
      : OTHER;
  }

  /** A process (`shell` false) or terminal session (`shell` true) started; returns what to call once it ended. */
  processStarted(shell: boolean): () => void {
    const kind = shell ? 1 : 0;
    this.processesStarted[kind]!++;
    this.processesRunning[kind]!++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.processesRunning[kind]!--;
    };
  }

  /**
   * Sample event-loop lag every `intervalMs` (the timer's lateness) until {@linkcode MetricsState.close}. The
   * timer does not keep the process alive.
   */
  sampleEventLoop(intervalMs: number = 500): void {
    if (this.#sampler !== undefined) return;
    let expected = performance.now() + intervalMs;
    this.#sampler = setInterval(() => {
      const now = performance.now();
      this.eventLoopLag.observe(Math.max(0, now - expected) / 1000);
      expected = now + intervalMs;
    }, intervalMs);
    Deno.unrefTimer(this.#sampler);
  }

  /** Stop the sampler. */
  close(): void {
    clearInterval(this.#sampler);
    this.#sampler = undefined;
  }
}

/** Counts of connections made outside a server (never rendered). */
export const UNCOUNTED: MetricsState = new MetricsState();
