// The Prometheus text exposition format (version 0.0.4) of a MetricsState: built on scrape only, from the
// aggregates the state keeps, so its cost does not grow with the number of connected daemons.
import { VERSION } from "@sandd/protocol/version";
import {
  ENDPOINTS,
  type Histogram,
  type MetricsState,
  OUTCOMES,
  STREAM_KINDS,
} from "./_metrics_state.ts";

/** The content type of the text format. */
export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** A label value with `\`, `"` and newlines escaped. */
function escape(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}

function labels(pairs: [string, string][]): string {
  if (pairs.length === 0) return "";
  return `{${pairs.map(([k, v]) => `${k}="${escape(v)}"`).join(",")}}`;
}

/** Number formatting of the text format. */
function num(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}

class Writer {
  text = "";

  family(name: string, type: "counter" | "gauge" | "histogram", help: string): void {
    this.text += `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`;
  }

  sample(name: string, pairs: [string, string][], value: number): void {
    this.text += `${name}${labels(pairs)} ${num(value)}\n`;
  }

  histogram(name: string, pairs: [string, string][], h: Histogram): void {
    let cumulative = 0;
    for (let i = 0; i < h.bounds.length; i++) {
      cumulative += h.counts[i]!;
      this.sample(`${name}_bucket`, [...pairs, ["le", num(h.bounds[i]!)]], cumulative);
    }
    this.sample(`${name}_bucket`, [...pairs, ["le", "+Inf"]], h.count);
    this.sample(`${name}_sum`, pairs, h.sum);
    this.sample(`${name}_count`, pairs, h.count);
  }
}

/** What the state cannot know by itself. */
export interface RenderExtras {
  /** Commands and processes the controller is following (as `/stats` `inFlight`). */
  followed: number;
}

/** Render every metric. */
export function renderMetrics(state: MetricsState, extras: RenderExtras): string {
  const w = new Writer();
  w.family("sandd_build_info", "gauge", "Controller version (always 1).");
  w.sample("sandd_build_info", [["version", VERSION]], 1);

  w.family("sandd_daemons", "gauge", "Daemons connected now, by platform.");
  for (const [platform, n] of state.daemonsByPlatform) {
    w.sample("sandd_daemons", [["platform", platform]], n);
  }
  if (state.labelKeys.length > 0) {
    w.family(
      "sandd_daemons_by_label",
      "gauge",
      "Daemons connected now, by the value of each label key the operator listed.",
    );
    for (const [key, values] of state.daemonsByLabel) {
      for (const [value, n] of values) {
        w.sample("sandd_daemons_by_label", [["label", key], ["value", value]], n);
      }
    }
  }
  w.family("sandd_daemon_connects_total", "counter", "Daemon links registered.");
  w.sample("sandd_daemon_connects_total", [], state.connects);
  w.family("sandd_daemon_disconnects_total", "counter", "Daemon links gone.");
  w.sample("sandd_daemon_disconnects_total", [], state.disconnects);
  w.family(
    "sandd_daemon_reconnects_total",
    "counter",
    "Daemon links registered by a daemon instance that was connected before.",
  );
  w.sample("sandd_daemon_reconnects_total", [], state.reconnects);

  w.family(
    "sandd_requests_total",
    "counter",
    "Requests the controller sent to daemons, by operation and outcome.",
  );
  for (const [op, stats] of Object.entries(state.operations)) {
    for (let i = 0; i < OUTCOMES.length; i++) {
      const n = stats.outcomes[i]!;
      if (n > 0 || i === 0) {
        w.sample("sandd_requests_total", [["op", op], ["outcome", OUTCOMES[i]!]], n);
      }
    }
  }
  w.family("sandd_requests_in_flight", "gauge", "Requests sent to daemons and not answered yet.");
  w.sample("sandd_requests_in_flight", [], state.requestsInFlight);
  w.family(
    "sandd_request_duration_seconds",
    "histogram",
    "Round trip of requests to daemons (send to answer), by operation.",
  );
  for (const [op, stats] of Object.entries(state.operations)) {
    if (stats.latency.count > 0) {
      w.histogram("sandd_request_duration_seconds", [["op", op]], stats.latency);
    }
  }
  w.family(
    "sandd_exec_duration_seconds",
    "histogram",
    "Whole exec round trips that returned a result (request to exit status, output collected).",
  );
  w.histogram("sandd_exec_duration_seconds", [], state.execLatency);

  w.family("sandd_processes_started_total", "counter", "Processes and shells started.");
  w.family(
    "sandd_processes_running",
    "gauge",
    "Processes and shells started through this controller that have not exited (nor been given up on).",
  );
  for (const [i, kind] of ["process", "shell"].entries()) {
    w.sample("sandd_processes_started_total", [["kind", kind]], state.processesStarted[i]!);
  }
  for (const [i, kind] of ["process", "shell"].entries()) {
    w.sample("sandd_processes_running", [["kind", kind]], state.processesRunning[i]!);
  }
  w.family("sandd_processes_followed", "gauge", "Process handles the controller follows now.");
  w.sample("sandd_processes_followed", [], extras.followed);

  w.family(
    "sandd_stream_bytes_total",
    "counter",
    "Stream payload bytes, by direction (received from or sent to daemons) and kind.",
  );
  for (let i = 0; i < STREAM_KINDS.length; i++) {
    const kind = STREAM_KINDS[i]!;
    if (kind !== "stdin") {
      w.sample(
        "sandd_stream_bytes_total",
        [["direction", "received"], ["kind", kind]],
        state.bytesReceived[i]!,
      );
    }
    if (kind !== "process_output") {
      w.sample(
        "sandd_stream_bytes_total",
        [["direction", "sent"], ["kind", kind]],
        state.bytesSent[i]!,
      );
    }
  }
  w.family(
    "sandd_stream_gaps_total",
    "counter",
    "Gaps in output streams: ranges the daemon no longer retained when they were asked for.",
  );
  w.sample("sandd_stream_gaps_total", [], state.streamGaps);
  w.family("sandd_stream_gap_bytes_total", "counter", "Bytes lost in stream gaps.");
  w.sample("sandd_stream_gap_bytes_total", [], state.streamGapBytes);
  w.family(
    "sandd_stream_credit_stalls_total",
    "counter",
    "Times a stream to a daemon waited for flow-control credit, by kind.",
  );
  for (let i = 0; i < STREAM_KINDS.length; i++) {
    if (STREAM_KINDS[i] === "process_output") continue;
    w.sample(
      "sandd_stream_credit_stalls_total",
      [["kind", STREAM_KINDS[i]!]],
      state.creditStalls[i]!,
    );
  }

  w.family("sandd_auth_failures_total", "counter", "Refused credentials, by endpoint.");
  for (let i = 0; i < ENDPOINTS.length; i++) {
    w.sample("sandd_auth_failures_total", [["endpoint", ENDPOINTS[i]!]], state.authFailures[i]!);
  }
  w.family(
    "sandd_rate_limited_total",
    "counter",
    "Refusals by a rate limit: exec/spawn (limit=commands), repeated failed authentications (limit=auth_failures).",
  );
  w.sample("sandd_rate_limited_total", [["limit", "commands"]], state.commandsRateLimited);
  w.sample("sandd_rate_limited_total", [["limit", "auth_failures"]], state.authRateLimited);
  w.family("sandd_policy_refusals_total", "counter", "Requests daemons refused by their policy.");
  w.sample("sandd_policy_refusals_total", [], state.policyRefusals);
  w.family("sandd_heartbeat_pings_total", "counter", "Heartbeat pings sent to quiet daemons.");
  w.sample("sandd_heartbeat_pings_total", [], state.heartbeatPings);
  w.family(
    "sandd_heartbeat_timeouts_total",
    "counter",
    "Daemon links dropped because the daemon missed its heartbeats.",
  );
  w.sample("sandd_heartbeat_timeouts_total", [], state.heartbeatTimeouts);

  w.family(
    "sandd_event_loop_lag_seconds",
    "histogram",
    "Lateness of a timer sampled every 500 ms: how long the event loop was blocked.",
  );
  w.histogram("sandd_event_loop_lag_seconds", [], state.eventLoopLag);
  const memory = Deno.memoryUsage();
  w.family(
    "sandd_process_resident_memory_bytes",
    "gauge",
    "Resident set size of the controller process.",
  );
  w.sample("sandd_process_resident_memory_bytes", [], memory.rss);
  w.family("sandd_process_heap_used_bytes", "gauge", "JavaScript heap in use.");
  w.sample("sandd_process_heap_used_bytes", [], memory.heapUsed);
  w.family(
    "sandd_start_time_seconds",
    "gauge",
    "When the controller started, in seconds since the epoch.",
  );
  w.sample("sandd_start_time_seconds", [], state.startedAt / 1000);
  return w.text;
}
