import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import {
  AuditLog,
  type AuditRecord,
  type AuditSink,
  fileAuditSink,
  logtapeAuditSink,
} from "./audit.ts";

async function readLines(path: string): Promise<AuditRecord[]> {
  const text = await Deno.readTextFile(path);
  assert.ok(text.endsWith("\n"), "every line is terminated");
  return text.slice(0, -1).split("\n").map((line) => JSON.parse(line));
}

Deno.test("fileAuditSink writes one parseable JSON line per record, in order", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/audit.jsonl`;
    const errors: unknown[] = [];
    {
      await using log = new AuditLog([fileAuditSink(path)], { onError: (e) => errors.push(e) });
      log.write({ daemon: "w1", identity: "alice", action: "connect", ok: true });
      log.write({
        daemon: "w1",
        identity: "alice",
        action: "exec",
        command: ["sh", "-c", 'echo "quoted"\nnewline ✓'],
        exitCode: 0,
        durationMs: 12.5,
        ok: true,
      });
      log.write({
        daemon: "w1",
        action: "upload",
        path: "/tmp/x",
        bytes: 1024,
        ok: false,
        error: "disk full",
      });
      log.write({
        daemon: "w1",
        action: "signal",
        exitCode: null,
        ok: true,
        time: "2020-01-01T00:00:00.000Z",
      });
      for (let i = 0; i < 500; i++) {
        log.write({ daemon: "w2", action: "fs", path: `/f/${i}`, ok: true });
      }
      await log.flush();
      // Flushed: the lines are in the file before the log is closed.
      assert.equal((await readLines(path)).length, 504);
    }
    assert.deepEqual(errors, []);
    const lines = await readLines(path);
    assert.equal(lines.length, 504);
    assert.equal(lines[0]!.action, "connect");
    assert.deepEqual(lines[1]!.command, ["sh", "-c", 'echo "quoted"\nnewline ✓']);
    assert.equal(lines[1]!.durationMs, 12.5);
    assert.equal(lines[2]!.error, "disk full");
    assert.equal(lines[2]!.ok, false);
    assert.equal(lines[3]!.exitCode, null);
    assert.equal(lines[3]!.time, "2020-01-01T00:00:00.000Z");
    for (let i = 0; i < 500; i++) assert.equal(lines[4 + i]!.path, `/f/${i}`);
    for (const line of lines) {
      assert.ok(!Number.isNaN(Date.parse(line.time)), line.time);
      assert.equal(Object.keys(line)[0], "time");
    }
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fileAuditSink appends to an existing file and supports sync", async () => {
  const path = await Deno.makeTempFile({ suffix: ".jsonl" });
  try {
    await Deno.writeTextFile(path, '{"earlier":true}\n');
    const sink = fileAuditSink(path, { sync: true });
    await sink({ time: "t", daemon: "d", action: "connect", ok: true });
    await sink({ time: "t", daemon: "d", action: "disconnect", ok: true });
    await sink[Symbol.asyncDispose]();
    await sink[Symbol.asyncDispose](); // idempotent
    await assert.rejects(
      async () => await sink({ time: "t", daemon: "d", action: "x", ok: true }),
      /closed/,
    );
    const lines = (await Deno.readTextFile(path)).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => l.action ?? "earlier"), ["earlier", "connect", "disconnect"]);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("fileAuditSink validates eagerly", () => {
  assert.throws(() => fileAuditSink(""), TypeError);
  assert.throws(() => fileAuditSink("/tmp/x.jsonl", { mode: -1 }), RangeError);
  assert.throws(() => fileAuditSink("/nonexistent-dir-sandd/audit.jsonl"), Deno.errors.NotFound);
});

Deno.test("concurrent writers from several async tasks keep whole lines", async () => {
  const path = await Deno.makeTempFile();
  try {
    {
      await using log = new AuditLog([fileAuditSink(path)]);
      await Promise.all(
        Array.from({ length: 8 }, async (_, task) => {
          for (let i = 0; i < 100; i++) {
            log.write({
              daemon: `d${task}`,
              action: "exec",
              command: "x".repeat(i * 10),
              ok: true,
            });
            if (i % 10 === 0) await Promise.resolve();
          }
        }),
      );
    }
    const lines = await readLines(path);
    assert.equal(lines.length, 800);
    for (let task = 0; task < 8; task++) {
      const mine = lines.filter((l) => l.daemon === `d${task}`);
      assert.deepEqual(
        mine.map((l) => (l.command as string).length),
        Array.from({ length: 100 }, (_, i) => i * 10),
      );
    }
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("a failing sink never throws into the caller and others still get every record", async () => {
  const errors: [unknown, string][] = [];
  const received: string[] = [];
  const slowReceived: string[] = [];
  const throwing: AuditSink = () => {
    throw new Error("sync failure");
  };
  const rejecting: AuditSink = () => Promise.reject(new Error("async failure"));
  const good: AuditSink = (record) => {
    received.push(record.action);
  };
  // Resolves in reverse order of calls if not serialized.
  let delay = 5;
  const slow: AuditSink = async (record) => {
    const ms = delay--;
    for (let i = 0; i < ms; i++) await Promise.resolve();
    slowReceived.push(record.action);
  };
  const log = new AuditLog([throwing, rejecting, good, slow], {
    onError: (error, record) => {
      errors.push([error, record.action]);
      throw new Error("onError itself fails");
    },
  });
  for (const action of ["a", "b", "c"]) log.write({ daemon: "d", action, ok: true });
  assert.deepEqual(received, ["a", "b", "c"], "synchronous sinks run during write");
  await log.flush();
  assert.deepEqual(
    slowReceived,
    ["a", "b", "c"],
    "an async sink gets records one at a time, in order",
  );
  assert.equal(errors.length, 6);
  assert.deepEqual(
    errors.map(([e, action]) => `${(e as Error).message}:${action}`).sort(),
    [
      "async failure:a",
      "async failure:b",
      "async failure:c",
      "sync failure:a",
      "sync failure:b",
      "sync failure:c",
    ],
  );
  await log.close();
  log.write({ daemon: "d", action: "late", ok: true });
  assert.equal((errors.at(-1)![0] as Error).message, "Audit log is closed");
  assert.deepEqual(received, ["a", "b", "c"]);
});

Deno.test("records are frozen copies with a time", async () => {
  const seen: AuditRecord[] = [];
  const log = new AuditLog([(r) => {
    seen.push(r);
  }]);
  const command = ["rm", "-rf", "/tmp/x"];
  const before = Date.now();
  log.write({ daemon: "d", action: "exec", command, ok: true });
  command[2] = "/";
  const record = seen[0]!;
  assert.deepEqual(record.command, ["rm", "-rf", "/tmp/x"]);
  assert.ok(Object.isFrozen(record));
  assert.ok(Date.parse(record.time) >= before - 1 && Date.parse(record.time) <= Date.now());
  await log.close();
});

Deno.test("AuditLog validates its arguments", async () => {
  assert.throws(() => new AuditLog("x" as unknown as AuditSink[]), TypeError);
  assert.throws(() => new AuditLog([1 as unknown as AuditSink]), /index 0/);
  await using log = new AuditLog([]);
  assert.throws(() => log.write({ daemon: "d", action: "", ok: true }), TypeError);
  assert.throws(
    () => log.write({ daemon: "d", action: "exec", ok: "yes" as unknown as boolean }),
    TypeError,
  );
  assert.throws(
    () => log.write({ daemon: 1 as unknown as string, action: "exec", ok: true }),
    TypeError,
  );
});

Deno.test("disposing the log disposes its sinks and reports dispose errors", async () => {
  const errors: unknown[] = [];
  const broken = Object.assign((() => {}) as AuditSink, {
    [Symbol.asyncDispose]: () => Promise.reject(new Error("close failed")),
  });
  {
    await using _log = new AuditLog([broken], { onError: (e) => errors.push(e) });
  }
  assert.equal((errors[0] as Error).message, "close failed");
});

Deno.test("logtapeAuditSink logs every record with its fields as properties", async () => {
  const logged: LogRecord[] = [];
  await configure({
    sinks: { buffer: (record: LogRecord) => logged.push(record) },
    loggers: [
      { category: ["sandd", "audit"], sinks: ["buffer"], lowestLevel: "debug" },
      { category: ["custom"], sinks: ["buffer"], lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
    reset: true,
  });
  try {
    const log = new AuditLog([logtapeAuditSink(), logtapeAuditSink(["custom"])]);
    log.write({
      daemon: "w1",
      identity: "bob",
      action: "exec",
      command: ["id"],
      exitCode: 0,
      ok: true,
    });
    log.write({
      daemon: "w1",
      action: "download",
      path: "/etc/shadow",
      ok: false,
      error: "EACCES",
    });
    await log.close();
    assert.equal(logged.length, 4);
    const [ok, failed] = logged.filter((r) => r.category.join(".") === "sandd.audit");
    assert.equal(ok!.level, "info");
    assert.equal(ok!.properties.identity, "bob");
    assert.deepEqual(ok!.properties.command, ["id"]);
    assert.equal(typeof ok!.properties.time, "string");
    assert.equal(ok!.message.join(""), "exec on w1");
    assert.equal(failed!.level, "warning");
    assert.equal(failed!.properties.error, "EACCES");
    assert.equal(failed!.message.join(""), "download on w1 failed: EACCES");
    assert.equal(logged.filter((r) => r.category.join(".") === "custom").length, 2);
  } finally {
    await reset();
  }
  assert.throws(() => logtapeAuditSink([]), TypeError);
  assert.throws(() => logtapeAuditSink([""]), TypeError);
});

Deno.test({
  name: "a file sink that cannot write reports every record to onError",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const failed: string[] = [];
    {
      // Writing to /dev/full fails with ENOSPC.
      await using log = new AuditLog([fileAuditSink("/dev/full")], {
        onError: (error, record) => failed.push(`${(error as Error).name}:${record.action}`),
      });
      log.write({ daemon: "d", action: "exec", ok: true });
      log.write({ daemon: "d", action: "spawn", ok: true });
    }
    assert.equal(failed.length, 2);
    assert.deepEqual(failed.map((f) => f.split(":")[1]), ["exec", "spawn"]);
  },
});
