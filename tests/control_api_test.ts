// The HTTP control API end to end: a real controller with the API on, a real daemon, `fetch`.
import { createHash } from "node:crypto";
import {
  assert,
  assertEquals,
  assertGreater,
  assertMatch,
  assertStrictEquals,
  assertStringIncludes,
} from "./_assert.ts";
import { alive, eventually, TestDaemon } from "./_daemon.ts";
import { call, codeOf, nextEvent, startApiWorker } from "./_control.ts";
import { type AuditRecord, type DaemonEvent, Server } from "../mod.ts";
import { LinkProxy } from "./_proxy.ts";

function hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

Deno.test("control API: daemons are listed, filtered, fetched and waited for", async () => {
  await using w = await startApiWorker("api-d1", {}, ["--label", "role=web"]);
  const all = await call(`${w.base}/daemons`);
  assertStrictEquals(all.status, 200);
  const list = (all.body as { daemons: { id: string; connectedAt: string; labels: object }[] })
    .daemons;
  assertEquals(list.map((d) => d.id), ["api-d1"]);
  assertMatch(list[0]!.connectedAt, /^\d{4}-\d\d-\d\dT/);
  assertEquals(list[0]!.labels, { role: "web" });
  const web = await call(`${w.base}/daemons?label=role=web&platform=${Deno.build.os}`);
  assertStrictEquals((web.body as { daemons: unknown[] }).daemons.length, 1);
  const db = await call(`${w.base}/daemons?label=role=db`);
  assertStrictEquals((db.body as { daemons: unknown[] }).daemons.length, 0);
  const one = await call(`${w.base}/daemons/api-d1`);
  assertStrictEquals((one.body as { id: string }).id, "api-d1");
  const missing = await call(`${w.base}/daemons/nope`);
  assertStrictEquals(missing.status, 404);
  assertStrictEquals(codeOf(missing), "DAEMON_NOT_FOUND");
  const waited = await call(`${w.base}/daemons/api-d1/wait?timeout=1000`);
  assertStrictEquals(waited.status, 200);
  const late = await call(`${w.base}/daemons/never/wait?timeout=50`);
  assertStrictEquals(late.status, 504);
  assertStrictEquals(codeOf(late), "TIMEOUT");
});

Deno.test("control API: exec returns output, exit code, stdin, base64 and timeouts", async () => {
  await using w = await startApiWorker("api-exec");
  const url = `${w.base}/daemons/api-exec/exec`;
  const r = await call(url, {
    method: "POST",
    json: { command: "echo out; echo err >&2; exit 3" },
  });
  assertStrictEquals(r.status, 200);
  const result = r.body as Record<string, unknown>;
  assertStrictEquals(result.stdout, "out\n");
  assertStrictEquals(result.stderr, "err\n");
  assertStrictEquals(result.exitCode, 3);
  assertStrictEquals(result.signal, null);
  assertEquals(result.truncated, { stdout: false, stderr: false });
  assert(typeof result.durationMs === "number");
  const withStdin = await call(url, {
    method: "POST",
    json: { command: ["wc", "-c"], stdin: "abcd" },
  });
  assertStrictEquals((withStdin.body as { stdout: string }).stdout.trim(), "4");
  const binary = new Uint8Array([0, 255, 1, 254, 10]);
  const b64 = await call(url, {
    method: "POST",
    json: { command: "cat", stdinBase64: btoa(String.fromCharCode(...binary)), encoding: "base64" },
  });
  const body = b64.body as { stdout: string; encoding: string };
  assertStrictEquals(body.encoding, "base64");
  assertEquals(Uint8Array.from(atob(body.stdout), (c) => c.charCodeAt(0)), binary);
  const missing = await call(url, { method: "POST", json: { command: ["no-such-program-xyz"] } });
  assertStrictEquals((missing.body as { exitCode: number }).exitCode, 127);
  const env = await call(url, {
    method: "POST",
    json: { command: "echo $FOO; pwd", env: { FOO: "bar" }, cwd: "/tmp" },
  });
  assertStrictEquals((env.body as { stdout: string }).stdout, "bar\n/tmp\n");
  const capped = await call(url, {
    method: "POST",
    json: { command: "printf 0123456789", maxOutputBytes: 4 },
  });
  assertEquals((capped.body as { stdout: string; truncated: unknown }).stdout, "0123");
  const slow = await call(url, {
    method: "POST",
    json: { command: "echo started; sleep 30", timeout: 300 },
  });
  assertStrictEquals(slow.status, 504);
  assertStrictEquals(codeOf(slow), "COMMAND_TIMEOUT");
  assertStrictEquals((slow.body as { partial: { stdout: string } }).partial.stdout, "started\n");
});

Deno.test("control API: broadcast runs on every matching daemon", async () => {
  await using w = await startApiWorker("api-b1", {}, ["--label", "tier=a"]);
  await using _other = new TestDaemon({
    id: "api-b2",
    url: w.server.url,
    args: ["--label", "tier=b"],
  });
  await w.server.waitForDaemon("api-b2", { timeout: 20_000 });
  const all = await call(`${w.base}/broadcast`, { method: "POST", json: { command: "echo hi" } });
  const results = (all.body as { results: Record<string, { stdout: string }> }).results;
  assertEquals(Object.keys(results).sort(), ["api-b1", "api-b2"]);
  assertStrictEquals(results["api-b2"]!.stdout, "hi\n");
  const some = await call(`${w.base}/broadcast`, {
    method: "POST",
    json: { command: "true", labels: { tier: "b" } },
  });
  assertEquals(Object.keys((some.body as { results: object }).results), ["api-b2"]);
});

Deno.test("control API: a spawned process is listed, fed stdin in parts, signalled and waited for", async () => {
  await using w = await startApiWorker("api-proc");
  const base = `${w.base}/daemons/api-proc/processes`;
  const spawned = await call(base, { method: "POST", json: { command: ["cat"], stdin: true } });
  assertStrictEquals(spawned.status, 201);
  const { id, pid } = spawned.body as { id: string; pid: number };
  assert(pid > 0);
  const listed = await call(base);
  const procs = (listed.body as { processes: { id: string; state: string; startedAt: string }[] })
    .processes;
  const mine = procs.find((p) => p.id === id)!;
  assertStrictEquals(mine.state, "running");
  assertMatch(mine.startedAt, /T/);
  const got = await call(`${base}/${id}`);
  assertStrictEquals((got.body as { pid: number }).pid, pid);
  const part1 = await call(`${base}/${id}/stdin?eof=false`, { method: "POST", body: "hello " });
  assertEquals(part1.body, { bytes: 6 });
  const part2 = await call(`${base}/${id}/stdin`, { method: "POST", body: "world\n" });
  assertEquals(part2.body, { bytes: 6 });
  const closed = await call(`${base}/${id}/stdin`, { method: "POST", body: "more" });
  assertStrictEquals(closed.status, 409);
  // `cat` exits at its stdin's end: once the controller has seen the exit, that is the answer (both are true; which
  // one depends on whether the exit arrived before this request, a race CI lost once).
  assert(
    ["STDIN_CLOSED", "PROCESS_EXITED"].includes(codeOf(closed) ?? ""),
    `409 with STDIN_CLOSED or PROCESS_EXITED, got ${codeOf(closed)}`,
  );
  const status = await call(`${base}/${id}/status?wait=true`);
  assertEquals(status.body, { state: "exited", exitCode: 0, signal: null, timedOut: false });
  const output = await call(`${base}/${id}/output`);
  assertStrictEquals(output.text, "hello world\n");
  assertStrictEquals(output.headers.get("sandd-offset"), "0");

  const sleeper = await call(base, { method: "POST", json: { command: "sleep 60" } });
  const sid = (sleeper.body as { id: string }).id;
  const running = await call(`${base}/${sid}/status`);
  assertStrictEquals((running.body as { state: string }).state, "running");
  const signalled = await call(`${base}/${sid}/signal`, {
    method: "POST",
    json: { signal: "SIGTERM" },
  });
  assertStrictEquals(signalled.status, 204);
  const ended = await call(`${base}/${sid}/status?wait=true`);
  assertStrictEquals((ended.body as { signal: string }).signal, "SIGTERM");
  const unknown = await call(`${base}/p-nope-1/status`);
  assertStrictEquals(unknown.status, 404);
  assertStrictEquals(codeOf(unknown), "UNKNOWN_PROCESS");
});

Deno.test("control API: output streams live, resumes by offset after the client goes away, and the process runs on", async () => {
  await using w = await startApiWorker("api-out");
  const base = `${w.base}/daemons/api-out/processes`;
  // Lines on demand: each stdin line is echoed, so the test controls when output exists.
  const spawned = await call(base, {
    method: "POST",
    json: { command: 'while read l; do echo "got $l"; done; echo bye >&2', stdin: true },
  });
  const { id, pid } = spawned.body as { id: string; pid: number };
  const response = await fetch(`${base}/${id}/output?from=0`);
  assertStrictEquals(response.headers.get("sandd-offset"), "0");
  const reader = response.body!.getReader();
  await call(`${base}/${id}/stdin?eof=false`, { method: "POST", body: "a\n" });
  const first = await reader.read();
  assertStrictEquals(new TextDecoder().decode(first.value), "got a\n");
  // The client goes away mid-stream.
  await reader.cancel();
  await call(`${base}/${id}/stdin?eof=false`, { method: "POST", body: "b\n" });
  assert(alive(pid), "the process keeps running after the client left");
  // Resume from the byte after what was received; the rest is there.
  await call(`${base}/${id}/stdin`, { method: "POST", body: "c\n" });
  const rest = await call(`${base}/${id}/output?from=6`);
  assertStrictEquals(rest.headers.get("sandd-offset"), "6");
  assertStrictEquals(rest.text, "got b\ngot c\n");
  const stderr = await call(`${base}/${id}/output?stream=stderr`);
  assertStrictEquals(stderr.text, "bye\n");
  const partial = await call(`${base}/${id}/output?from=4&follow=false`);
  assertStrictEquals(partial.text, "a\ngot b\ngot c\n");
  const beyond = await call(`${base}/${id}/output?from=999`);
  assertStrictEquals(beyond.status, 400);
  assertStrictEquals(codeOf(beyond), "BAD_OFFSET");
});

Deno.test("control API: output is held for its first reader, then runs free with gaps reported in Sandd-Offset", async () => {
  await using w = await startApiWorker("api-gap");
  const base = `${w.base}/daemons/api-gap/processes`;
  // 200 KiB of output with 64 KiB retained, once stdin says go.
  const spawned = await call(base, {
    method: "POST",
    json: {
      command:
        "head -c 30000 /dev/zero | tr '\\0' a; read go; head -c 204800 /dev/zero | tr '\\0' x",
      stdin: true,
      retainBytes: 65536,
    },
  });
  const { id } = spawned.body as { id: string };
  // Held for the first reader: the first bytes are there from 0. Without follow, the server ends the response
  // (and lets go of the stream) once the output idles, so the release is ordered before the stdin below. On a
  // busy machine the output may idle before all 30000 bytes are written: read again until they are there.
  let first = "";
  while (first.length < 30000) {
    const answer = await call(`${base}/${id}/output?from=0&follow=false`);
    assertStrictEquals(answer.headers.get("sandd-offset"), "0");
    first = answer.text;
  }
  assertStrictEquals(first, "a".repeat(30000));
  // Read once, the stream runs free: nobody reads now, and the oldest output is dropped.
  await call(`${base}/${id}/stdin`, { method: "POST", body: "go\n" });
  await call(`${base}/${id}/status?wait=true`);
  const out = await call(`${base}/${id}/output?from=0`);
  const offset = Number(out.headers.get("sandd-offset"));
  assertGreater(offset, 30000);
  assertStrictEquals(offset + out.text.length, 30000 + 204800);
});

Deno.test("control API: files go up and down streamed, verified and atomic; fs operations work", async () => {
  await using w = await startApiWorker("api-files");
  const dir = await Deno.makeTempDir();
  try {
    const files = `${w.base}/daemons/api-files/files`;
    const data = new Uint8Array(300_000);
    for (let at = 0; at < data.length; at += 65536) {
      crypto.getRandomValues(data.subarray(at, at + 65536));
    }
    const target = `${dir}/sub/a.bin`;
    const up = await call(`${files}?path=${encodeURIComponent(target)}&mkdirs=true&mode=0600`, {
      method: "PUT",
      body: data,
      headers: { "sandd-sha256": hex(data) },
    });
    assertStrictEquals(up.status, 200);
    assertEquals(up.body, { bytes: data.length, sha256: hex(data) });
    assertStrictEquals((await Deno.stat(target)).mode! & 0o777, 0o600);
    // A wrong expected hash writes nothing: the old file stays.
    const bad = await call(`${files}?path=${encodeURIComponent(target)}`, {
      method: "PUT",
      body: new Uint8Array([1, 2, 3]),
      headers: { "sandd-sha256": "0".repeat(64) },
    });
    assertStrictEquals(bad.status, 422);
    assertStrictEquals(codeOf(bad), "EINTEGRITY");
    assertEquals(await Deno.readFile(target), data);
    // A digest after the body (`trailing`: its last 64 bytes), streamed: the bytes before it are stored.
    const withDigest = (body: Uint8Array, digest: string) =>
      new Blob([body as Uint8Array<ArrayBuffer>, digest]).stream();
    const next = data.map((b) => b ^ 0x5a);
    const other = `${dir}/other.bin`;
    const trailing = await call(`${files}?path=${encodeURIComponent(other)}`, {
      method: "PUT",
      body: withDigest(next, hex(next)),
      headers: { "sandd-sha256": "trailing" },
    });
    assertStrictEquals(trailing.status, 200);
    assertEquals(trailing.body, { bytes: next.length, sha256: hex(next) });
    assertEquals(await Deno.readFile(other), next);
    // A trailing digest that does not match, or is no digest at all, or a body too short to carry one: the file
    // is not replaced (the controller does not hash the bytes: the daemon checks them against the digest).
    const lies = await call(`${files}?path=${encodeURIComponent(target)}`, {
      method: "PUT",
      body: withDigest(data, hex(next)),
      headers: { "sandd-sha256": "trailing" },
    });
    assertStrictEquals(lies.status, 422);
    assertStrictEquals(codeOf(lies), "EINTEGRITY");
    const garbage = await call(`${files}?path=${encodeURIComponent(target)}`, {
      method: "PUT",
      body: withDigest(data, "Z".repeat(64)),
      headers: { "sandd-sha256": "trailing" },
    });
    assertStrictEquals(garbage.status, 400);
    assertMatch((garbage.body as { message: string }).message, /lowercase hex/);
    const short = await call(`${files}?path=${encodeURIComponent(target)}`, {
      method: "PUT",
      body: new Uint8Array(10),
      headers: { "sandd-sha256": "trailing" },
    });
    assertStrictEquals(short.status, 400);
    assertMatch((short.body as { message: string }).message, /Content-Length is 10/);
    const unknown = await call(`${files}?path=${encodeURIComponent(other)}`, {
      method: "PUT",
      body: data,
      headers: { "sandd-sha256": "after" },
    });
    assertStrictEquals(unknown.status, 400);
    assertMatch((unknown.body as { message: string }).message, /or 'trailing', got 'after'/);
    assertEquals(await Deno.readFile(other), next);
    await Deno.remove(other);
    const down = await fetch(`${files}?path=${encodeURIComponent(target)}`);
    assertStrictEquals(down.headers.get("content-length"), String(data.length));
    assertStrictEquals(down.headers.get("sandd-size"), String(data.length));
    assertEquals(new Uint8Array(await down.arrayBuffer()), data);
    const tail = await fetch(`${files}?path=${encodeURIComponent(target)}&from=299990`);
    assertEquals(new Uint8Array(await tail.arrayBuffer()), data.subarray(299990));
    const missing = await call(`${files}?path=${encodeURIComponent(`${dir}/nope`)}`);
    assertStrictEquals(missing.status, 404);
    assertStrictEquals(codeOf(missing), "ENOENT");

    const fs = `${w.base}/daemons/api-files/fs`;
    const stat = await call(`${fs}/stat?path=${encodeURIComponent(target)}`);
    assertStrictEquals((stat.body as { size: number }).size, data.length);
    assertMatch((stat.body as { mtime: string }).mtime, /T/);
    assertStrictEquals(
      (await call(`${fs}/mkdir`, { method: "POST", json: { path: `${dir}/x/y`, recursive: true } }))
        .status,
      204,
    );
    const exists = await call(`${fs}/mkdir`, { method: "POST", json: { path: `${dir}/x/y` } });
    assertStrictEquals(exists.status, 409);
    assertStrictEquals(codeOf(exists), "EEXIST");
    const moved = await call(`${fs}/move`, {
      method: "POST",
      json: { from: target, to: `${dir}/x/y/b.bin` },
    });
    assertStrictEquals(moved.status, 204);
    const list = await call(`${fs}/list?path=${encodeURIComponent(dir)}&recursive=true`);
    const paths = (list.body as { entries: { path: string }[] }).entries.map((e) => e.path).sort();
    assertEquals(paths, ["sub", "x", "x/y", "x/y/b.bin"]);
    const notEmpty = await call(`${fs}/remove`, { method: "POST", json: { path: `${dir}/x` } });
    assertStrictEquals(notEmpty.status, 409);
    const removed = await call(`${fs}/remove`, {
      method: "POST",
      json: { path: `${dir}/x`, recursive: true },
    });
    assertStrictEquals(removed.status, 204);
    assertStrictEquals(await Deno.stat(`${dir}/x`).catch(() => null), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("control API: directories travel as tar streams both ways", async () => {
  await using w = await startApiWorker("api-dirs");
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/src/deep`, { recursive: true });
    await Deno.writeTextFile(`${dir}/src/a.txt`, "alpha");
    await Deno.writeTextFile(`${dir}/src/deep/b.txt`, "beta");
    await Deno.symlink("a.txt", `${dir}/src/link`);
    const dirs = `${w.base}/daemons/api-dirs/dirs`;
    const tar = await fetch(`${dirs}?path=${encodeURIComponent(`${dir}/src`)}`);
    assertStrictEquals(tar.headers.get("content-type"), "application/x-tar");
    const archive = new Uint8Array(await tar.arrayBuffer());
    assertGreater(archive.length, 1024);
    const put = await call(`${dirs}?path=${encodeURIComponent(`${dir}/out/copy`)}&mkdirs=true`, {
      method: "PUT",
      body: archive,
    });
    assertStrictEquals(put.status, 200);
    const result = put.body as { files: number; dirs: number; symlinks: number };
    assertStrictEquals(result.files, 2);
    assertStrictEquals(result.symlinks, 1);
    assertStrictEquals(await Deno.readTextFile(`${dir}/out/copy/deep/b.txt`), "beta");
    assertStrictEquals(await Deno.readLink(`${dir}/out/copy/link`), "a.txt");
    const garbage = await call(`${dirs}?path=${encodeURIComponent(`${dir}/out/bad`)}`, {
      method: "PUT",
      body: new Uint8Array(1024).fill(7),
    });
    assertGreater(garbage.status, 399);
    assertStrictEquals(await Deno.stat(`${dir}/out/bad`).catch(() => null), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("control API: events announce connects, process exits and disconnects", async () => {
  await using w = await startApiWorker("api-ev1");
  const response = await fetch(`${w.base}/events`);
  assertStrictEquals(response.headers.get("content-type"), "text/event-stream");
  const reader = response.body!.getReader();
  const state = { buffer: "" };
  try {
    const other = new TestDaemon({ id: "api-ev2", url: w.server.url });
    const connected = await nextEvent(reader, "connect", (d) => d.id === "api-ev2", state);
    assertMatch(connected.connectedAt as string, /T/);
    const spawned = await call(`${w.base}/daemons/api-ev2/processes`, {
      method: "POST",
      json: { command: "exit 7" },
    });
    const proc = (spawned.body as { id: string }).id;
    const exit = await nextEvent(reader, "exit", (d) => d.process === proc, state);
    assertEquals({ daemon: exit.daemon, exitCode: exit.exitCode }, {
      daemon: "api-ev2",
      exitCode: 7,
    });
    await other.stop();
    await nextEvent(reader, "disconnect", (d) => d.id === "api-ev2", state);
  } finally {
    await reader.cancel();
  }
});

Deno.test("control API: closing the server ends event streams", async () => {
  await using w = await startApiWorker("api-close");
  const response = await fetch(`${w.base}/events`);
  const reader = response.body!.getReader();
  await reader.read(); // the opening comment
  const ended = (async () => {
    try {
      while (!(await reader.read()).done) { /* drain */ }
    } catch {
      // cut
    }
  })();
  await w.daemon.stop();
  await w.server.close();
  await ended;
});

Deno.test("control API: a daemon dropping during exec answers 503 DAEMON_DISCONNECTED after the grace", async () => {
  await using w = await startApiWorker("api-drop", { reconnectGraceMs: 200 });
  const pending = call(`${w.base}/daemons/api-drop/exec`, {
    method: "POST",
    json: { command: "echo ready; sleep 30" },
  });
  await eventually(() => w.server.stats().inFlight > 0, 10_000, "the exec to start");
  await w.daemon.stop("SIGKILL");
  const answer = await pending;
  assertStrictEquals(answer.status, 503);
  assertStrictEquals(codeOf(answer), "DAEMON_DISCONNECTED");
  assertStringIncludes((answer.body as { message: string }).message, "api-drop");
});

Deno.test("control API: every action is audited with the client's identity", async () => {
  const records: AuditRecord[] = [];
  await using w = await startApiWorker("api-audit", {
    audit: (r) => {
      records.push(r);
    },
    control: { tokens: [{ token: "ops-token-0123456789", name: "ops" }] },
  });
  const token = "ops-token-0123456789";
  await call(`${w.base}/daemons/api-audit/exec`, {
    method: "POST",
    json: { command: "true" },
    token,
  });
  const spawned = await call(`${w.base}/daemons/api-audit/processes`, {
    method: "POST",
    json: { command: "true" },
    token,
  });
  const proc = (spawned.body as { id: string }).id;
  await call(`${w.base}/daemons/api-audit/processes/${proc}/status?wait=true`, { token });
  await call(`${w.base}/daemons`, { token });
  await call(`${w.base}/daemons`, { token: "wrong-token-0123456789" });
  const exec = records.find((r) => r.action === "exec");
  assertStrictEquals(exec?.identity, "client:ops");
  assertStrictEquals(records.find((r) => r.action === "spawn")?.identity, "client:ops");
  const exit = records.find((r) => r.action === "exit");
  assertStrictEquals(exit?.identity, "client:ops");
  assertStrictEquals(records.find((r) => r.action === "api.daemons")?.identity, "client:ops");
  const refused = records.find((r) => r.action === "api.refused");
  assertStrictEquals(refused?.ok, false);
});

Deno.test("control API: a link that drops and comes back within the grace is invisible to API calls", async () => {
  await using server = await Server.listen({ port: 0, control: true, reconnectGraceMs: 20_000 });
  await using proxy = new LinkProxy(server.port);
  await using _daemon = new TestDaemon({ id: "api-resume", url: proxy.url() });
  await server.waitForDaemon("api-resume", { timeout: 20_000 });
  const base = `http://127.0.0.1:${server.port}/api/v1/daemons/api-resume`;
  const spawned = await call(`${base}/processes`, {
    method: "POST",
    json: { command: "i=0; while [ $i -lt 20 ]; do echo line$i; i=$((i+1)); sleep 0.05; done" },
  });
  const { id } = spawned.body as { id: string };
  const response = await fetch(`${base}/processes/${id}/output`);
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = decoder.decode((await reader.read()).value, { stream: true });
  const following = server.stats().inFlight;
  const exec = call(`${base}/exec`, { method: "POST", json: { command: "sleep 0.5; echo done" } });
  await eventually(() => server.stats().inFlight > following, 10_000, "the exec to start");
  const back = new Promise<void>((resolve) => {
    const onConnect = (event: DaemonEvent) => {
      if (event.daemon.id !== "api-resume") return;
      server.removeEventListener("connect", onConnect);
      resolve();
    };
    server.addEventListener("connect", onConnect);
  });
  await proxy.cut();
  await back;
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  assertEquals(text, Array.from({ length: 20 }, (_, i) => `line${i}\n`).join(""));
  const result = await exec;
  assertStrictEquals(result.status, 200);
  assertStrictEquals((result.body as { stdout: string }).stdout, "done\n");
});

Deno.test("control API: an upload refused before its body is read keeps the connection, whatever its digest mode", async () => {
  await using w = await startApiWorker("api-early");
  const port = Number(new URL(w.base).port);
  const body = new Uint8Array(1000).fill(7);
  const decoder = new TextDecoder();
  for (const mode of ["trailing", hex(body), null]) {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const sent = mode === "trailing"
      ? new Uint8Array([...body, ...new TextEncoder().encode(hex(body))])
      : body;
    const head = `PUT /api/v1/daemons/nobody/files?path=%2Ftmp%2Fx HTTP/1.1\r\nhost: x\r\n` +
      (mode === null ? "" : `sandd-sha256: ${mode}\r\n`) + `content-length: ${sent.length}\r\n\r\n`;
    await conn.write(new Uint8Array([...new TextEncoder().encode(head), ...sent]));
    // The 404, then the same connection answers the next request.
    let text = "";
    const buffer = new Uint8Array(65536);
    const readUntil = async (done: (t: string) => boolean) => {
      while (!done(text)) {
        const n = await conn.read(buffer);
        if (n === null) throw new Error(`closed after: ${text}`);
        text += decoder.decode(buffer.subarray(0, n));
      }
    };
    await readUntil((t) => /\r\n\r\n\{[^]*\}/.test(t));
    assertMatch(text, /^HTTP\/1\.1 404/);
    assertMatch(text, /DAEMON_NOT_FOUND/);
    text = "";
    await conn.write(
      new TextEncoder().encode(`GET /api/v1/daemons/api-early HTTP/1.1\r\nhost: x\r\n\r\n`),
    );
    await readUntil((t) => /\r\n\r\n\{[^]*\}/.test(t));
    assertMatch(text, /^HTTP\/1\.1 200/, `mode ${mode}`);
  }
});
