// Hostile and malformed input to the control API: bad JSON, unknown fields, wrong types, oversized bodies,
// traversal attempts in path parameters, bad query parameters, and an event subscriber that never reads.
import {
  assert,
  assertEquals,
  assertLess,
  assertStrictEquals,
  assertStringIncludes,
} from "./_assert.ts";
import { call, codeOf, startApiWorker } from "./_control.ts";

function message(answer: { body: unknown }): string {
  return (answer.body as { message?: string })?.message ?? "";
}

Deno.test("control bad input: malformed JSON, unknown fields and wrong types are 400 naming the field", async () => {
  await using w = await startApiWorker("bad-json");
  const exec = `${w.base}/daemons/bad-json/exec`;
  const cases: [BodyInit, string][] = [
    ["{bad", "not valid JSON"],
    ["", "not valid JSON"],
    ["[1,2]", "must be a JSON object"],
    ["null", "must be a JSON object"],
    [JSON.stringify({ command: "true", comand: "x" }), "unknown field 'comand'"],
    [JSON.stringify({}), "'command' is required"],
    [JSON.stringify({ command: 5 }), "'command'"],
    [JSON.stringify({ command: [] }), "'command'"],
    [JSON.stringify({ command: ["", "x"] }), "'command[0]'"],
    [JSON.stringify({ command: "true", timeout: "10" }), "'timeout' must be an integer"],
    [JSON.stringify({ command: "true", timeout: 0 }), "'timeout' must be from 1"],
    [JSON.stringify({ command: "true", timeout: 1.5 }), "'timeout' must be an integer"],
    [JSON.stringify({ command: "true", env: { A: 1 } }), "'env.A' must be a string"],
    [JSON.stringify({ command: "true", env: ["A=1"] }), "'env' must be an object"],
    [JSON.stringify({ command: "true", cwd: "" }), "'cwd' must not be empty"],
    [JSON.stringify({ command: "true", encoding: "hex" }), "'encoding' must be one of"],
    [JSON.stringify({ command: "true", stdin: "a", stdinBase64: "YQ==" }), "exclusive"],
    [JSON.stringify({ command: "true", stdinBase64: "!!" }), "'stdinBase64' must be base64"],
    [JSON.stringify({ command: "true", maxOutputBytes: -1 }), "'maxOutputBytes'"],
    [new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), "not valid JSON"],
  ];
  for (const [body, expected] of cases) {
    const r = await call(exec, { method: "POST", body });
    assertStrictEquals(r.status, 400, `${String(body)} -> ${r.text}`);
    assertStrictEquals(codeOf(r), "BAD_REQUEST");
    assertStringIncludes(message(r), expected);
  }
  const procs = `${w.base}/daemons/bad-json/processes`;
  const signal = await call(`${procs}/p-x-1/signal`, {
    method: "POST",
    json: { signal: "SIGSEGV" },
  });
  assertStrictEquals(signal.status, 400);
  assertStringIncludes(message(signal), "'signal' must be one of");
  const spawn = await call(procs, { method: "POST", json: { command: "true", stdin: "yes" } });
  assertStringIncludes(message(spawn), "'stdin' must be a boolean");
  const mkdir = await call(`${w.base}/daemons/bad-json/fs/mkdir`, {
    method: "POST",
    json: { path: "/tmp/x", mode: 0o10000 },
  });
  assertStringIncludes(message(mkdir), "'mode'");
  const move = await call(`${w.base}/daemons/bad-json/fs/move`, {
    method: "POST",
    json: { from: "/a" },
  });
  assertStringIncludes(message(move), "'to' is required");
});

Deno.test("control bad input: oversized JSON bodies are 413 TOO_LARGE, declared or streamed", async () => {
  await using w = await startApiWorker("bad-big", { control: { maxJsonBytes: 64 * 1024 } });
  const exec = `${w.base}/daemons/bad-big/exec`;
  const big = JSON.stringify({ command: "true", stdin: "x".repeat(200 * 1024) });
  const declared = await call(exec, { method: "POST", body: big });
  assertStrictEquals(declared.status, 413);
  assertStrictEquals(codeOf(declared), "TOO_LARGE");
  // No Content-Length: a stream that never ends is cut at the limit.
  let sent = 0;
  const endless = new ReadableStream<Uint8Array>({
    pull(controller) {
      sent += 16 * 1024;
      controller.enqueue(new Uint8Array(16 * 1024).fill(0x20));
    },
  });
  // The server answers 413 and stops reading; the client then fails to send the rest (or reads the 413).
  const streamed = await call(exec, { method: "POST", body: endless }).catch((error) => error);
  if (!(streamed instanceof Error)) assertStrictEquals(streamed.status, 413);
  assertLess(sent, 16 * 1024 * 1024);
  // Under the limit it works.
  const ok = await call(exec, {
    method: "POST",
    json: { command: "wc -c", stdin: "x".repeat(1000) },
  });
  assertStrictEquals((ok.body as { stdout: string }).stdout.trim(), "1000");
});

Deno.test("control bad input: path parameters cannot traverse or smuggle", async () => {
  await using w = await startApiWorker("bad-path");
  const bad: [string, string][] = [
    ["/daemons/..%2F..%2Fetc%2Fpasswd", "'id'"],
    ["/daemons/bad-path%2Fexec", "'id'"],
    ["/daemons/a%00b", "'id'"],
    ["/daemons/%E0%A4%A", "URL encoding"],
    [`/daemons/${"a".repeat(200)}`, "'id'"],
    ["/daemons/%20", "'id'"],
    ["/daemons/bad-path/processes/..%2F..%2Fx/status", "'proc'"],
    ["/daemons/bad-path/processes/a%2Fb", "'proc'"],
    ["/daemons/bad-path/processes/%0A/output", "'proc'"],
  ];
  for (const [path, expected] of bad) {
    const r = await call(`${w.base}${path}`);
    assertStrictEquals(r.status, 400, path);
    assertStringIncludes(message(r), expected, path);
  }
  // Dot-dot segments (also encoded) are normalized by URL parsing before routing: no route is escaped.
  const dots = await call(`${w.base}/daemons/%2E%2E`);
  assertStrictEquals(dots.status, 404);
  const route = await call(`${w.base}/daemons/bad-path/nothing`);
  assertStrictEquals(route.status, 404);
  assertStrictEquals(codeOf(route), "NOT_FOUND");
  const method = await call(`${w.base}/daemons/bad-path/exec`, { method: "DELETE" });
  assertStrictEquals(method.status, 405);
  assertStrictEquals(method.headers.get("allow"), "POST");
  const outside = await call(`${w.base}x/daemons`);
  assertStrictEquals(outside.status, 404);
});

Deno.test("control bad input: query parameters are checked", async () => {
  await using w = await startApiWorker("bad-query");
  const d = `${w.base}/daemons/bad-query`;
  const spawned = await call(`${d}/processes`, { method: "POST", json: { command: "true" } });
  const proc = (spawned.body as { id: string }).id;
  const cases: [string, string][] = [
    [`${d}/processes/${proc}/output?from=-1`, "'from'"],
    [`${d}/processes/${proc}/output?from=1e3`, "'from'"],
    [`${d}/processes/${proc}/output?stream=both`, "'stream'"],
    [`${d}/processes/${proc}/output?follow=maybe`, "'follow'"],
    [`${d}/processes/${proc}/output?from=1&from=2`, "more than once"],
    [`${d}/processes/${proc}/status?wiat=true`, "Unknown query parameter 'wiat'"],
    [`${d}/files`, "'path' is required"],
    [`${d}/files?path=`, "'path' is required"],
    [`${d}/files?path=%00`, "NUL"],
    [`${d}/wait?timeout=soon`, "'timeout'"],
    [`${w.base}/daemons?label=novalue`, "KEY=VALUE"],
  ];
  for (const [url, expected] of cases) {
    const r = await call(url);
    assertStrictEquals(r.status, 400, url);
    assertStringIncludes(message(r), expected, url);
  }
  const mode = await call(`${d}/files?path=/tmp/x&mode=999`, { method: "PUT", body: "x" });
  assertStringIncludes(message(mode), "'mode'");
  const sha = await call(`${d}/files?path=/tmp/x`, {
    method: "PUT",
    body: "x",
    headers: { "sandd-sha256": "xyz" },
  });
  assertStringIncludes(message(sha), "Sandd-Sha256");
});

Deno.test("control bad input: an event subscriber that never reads is dropped, not buffered without bound", async () => {
  await using w = await startApiWorker("bad-sse", { control: { maxEventQueue: 4 } });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: w.server.port });
  try {
    await conn.write(
      new TextEncoder().encode(
        `GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`,
      ),
    );
    // Events of ~120 KB each (the exit event carries the command), far more than the socket buffers hold.
    const filler = "x".repeat(120_000);
    let produced = 0;
    for (let i = 0; i < 100; i++) {
      const r = await call(`${w.base}/daemons/bad-sse/processes`, {
        method: "POST",
        json: { command: `: ${filler}` },
      });
      await call(
        `${w.base}/daemons/bad-sse/processes/${(r.body as { id: string }).id}/status?wait=true`,
      );
      produced += filler.length;
    }
    // The subscriber was dropped: its stream ends, with much less than was produced.
    let received = 0;
    const buffer = new Uint8Array(256 * 1024);
    while (true) {
      let n: number | null;
      try {
        n = await conn.read(buffer);
      } catch {
        break; // reset
      }
      if (n === null) break;
      received += n;
    }
    assertLess(received, produced / 2);
    assert(received > 0);
  } finally {
    conn.close();
  }
  // The server still serves events to a reader that reads.
  const fresh = await fetch(`${w.base}/events`);
  const reader = fresh.body!.getReader();
  assertEquals(new TextDecoder().decode((await reader.read()).value), ": connected\n\n");
  await reader.cancel();
});
