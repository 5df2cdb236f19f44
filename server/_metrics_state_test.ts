import { assertEquals } from "../tests/_assert.ts";
import { Histogram, MetricsState, OUTCOME_OK } from "./_metrics_state.ts";
import { renderMetrics } from "./_metrics_render.ts";

Deno.test("Histogram: a value equal to a bound falls in that bucket (le is inclusive); the rest in +Inf", () => {
  const h = new Histogram([0.1, 1]);
  for (const v of [0.05, 0.1, 0.5, 1, 2]) h.observe(v);
  assertEquals([...h.counts], [2, 2, 1]);
  assertEquals(h.count, 5);
  const state = new MetricsState();
  state.execLatency.observe(0.1);
  state.execLatency.observe(7);
  const text = renderMetrics(state, { followed: 0 });
  // Cumulative buckets, +Inf equal to the count.
  assertEquals(/sandd_exec_duration_seconds_bucket\{le="0.1"\} (\d+)/.exec(text)?.[1], "1");
  assertEquals(/sandd_exec_duration_seconds_bucket\{le="5"\} (\d+)/.exec(text)?.[1], "1");
  assertEquals(/sandd_exec_duration_seconds_bucket\{le="10"\} (\d+)/.exec(text)?.[1], "2");
  assertEquals(/sandd_exec_duration_seconds_bucket\{le="\+Inf"\} (\d+)/.exec(text)?.[1], "2");
  assertEquals(/sandd_exec_duration_seconds_count (\d+)/.exec(text)?.[1], "2");
});

Deno.test("MetricsState: settled requests are counted by operation and outcome; unknown operations are ignored", () => {
  const state = new MetricsState();
  state.requestSent();
  state.requestSent();
  state.requestSettled("stat", OUTCOME_OK, performance.now());
  state.requestSettled("no-such-op", OUTCOME_OK, performance.now());
  assertEquals(state.requestsInFlight, 0);
  assertEquals(state.operations["stat"]!.outcomes[OUTCOME_OK], 1);
  assertEquals(state.operations["stat"]!.latency.count, 1);
  const text = renderMetrics(state, { followed: 3 });
  assertEquals(/sandd_requests_total\{op="stat",outcome="ok"\} (\d+)/.exec(text)?.[1], "1");
  assertEquals(/sandd_processes_followed (\d+)/.exec(text)?.[1], "3");
});

Deno.test("MetricsState: a process's end is counted once however often it is reported", () => {
  const state = new MetricsState();
  const ended = state.processStarted(true);
  assertEquals([...state.processesRunning], [0, 1]);
  ended();
  ended();
  assertEquals([...state.processesRunning], [0, 0]);
  assertEquals([...state.processesStarted], [0, 1]);
});
