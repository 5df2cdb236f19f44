import { assert, assertEquals, assertRejects, assertThrows } from "../tests/_assert.ts";
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
  assert(text.endsWith("\n"), "every line is terminated");
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
      assertEquals((await readLines(path)).length, 504);
    }
    assertEquals(errors, []);
    const lines = await readLines(path);
    assertEquals(lines.length, 504);
    assertEquals(lines[0]!.action, "connect");
    assertEquals(lines[1]!.command, ["sh", "-c", 'echo "quoted"\nnewline ✓']);
    assertEquals(lines[1]!.durationMs, 12.5);
    assertEquals(lines[2]!.error, "disk full");
    assertEquals(lines[2]!.ok, false);
    assertEquals(lines[3]!.exitCode, null);
    assertEquals(lines[3]!.time, "2020-01-01T00:00:00.000Z");
    for (let i = 0; i < 500; i++) assertEquals(lines[4 + i]!.path, `/f/${i}`);
    for (const line of lines) {
      assert(!Number.isNaN(Date.parse(line.time)), line.time);
      assertEquals(Object.keys(line)[0], "time");
    }
    assertEquals((await Deno.stat(path)).mode! & 0o777, 0o600);
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
    await assertRejects(
      async () => await sink({ time: "t", daemon: "d", action: "x", ok: true }),
      Error,
      /closed/,
    );
    const lines = (await Deno.readTextFile(path)).trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(lines.map((l) => l.action ?? "earlier"), ["earlier", "connect", "disconnect"]);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("fileAuditSink validates eagerly", () => {
  assertThrows(() => fileAuditSink(""), TypeError);
  assertThrows(() => fileAuditSink("/tmp/x.jsonl", { mode: -1 }), RangeError);
  assertThrows(() => fileAuditSink("/nonexistent-dir-sandd/audit.jsonl"), Deno.errors.NotFound);
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
    assertEquals(lines.length, 800);
    for (let task = 0; task < 8; task++) {
      const mine = lines.filter((l) => l.daemon === `d${task}`);
      assertEquals(
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
  assertEquals(received, ["a", "b", "c"], "synchronous sinks run during write");
  await log.flush();
  assertEquals(
    slowReceived,
    ["a", "b", "c"],
    "an async sink gets records one at a time, in order",
  );
  assertEquals(errors.length, 6);
  assertEquals(
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
  assertEquals((errors.at(-1)![0] as Error).message, "Audit log is closed");
  assertEquals(received, ["a", "b", "c"]);
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
  assertEquals(record.command, ["rm", "-rf", "/tmp/x"]);
  assert(Object.isFrozen(record));
  assert(Date.parse(record.time) >= before - 1 && Date.parse(record.time) <= Date.now());
  await log.close();
});

Deno.test("AuditLog validates its arguments", async () => {
  assertThrows(() => new AuditLog("x" as unknown as AuditSink[]), TypeError);
  assertThrows(() => new AuditLog([1 as unknown as AuditSink]), Error, /index 0/);
  await using log = new AuditLog([]);
  assertThrows(() => log.write({ daemon: "d", action: "", ok: true }), TypeError);
  assertThrows(
    () => log.write({ daemon: "d", action: "exec", ok: "yes" as unknown as boolean }),
    TypeError,
  );
  assertThrows(
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
  assertEquals((errors[0] as Error).message, "close failed");
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
    assertEquals(logged.length, 4);
    const [ok, failed] = logged.filter((r) => r.category.join(".") === "sandd.audit");
    assertEquals(ok!.level, "info");
    assertEquals(ok!.properties.identity, "bob");
    assertEquals(ok!.properties.command, ["id"]);
    assertEquals(typeof ok!.properties.time, "string");
    assertEquals(ok!.message.join(""), "exec on w1");
    assertEquals(failed!.level, "warning");
    assertEquals(failed!.properties.error, "EACCES");
    assertEquals(failed!.message.join(""), "download on w1 failed: EACCES");
    assertEquals(logged.filter((r) => r.category.join(".") === "custom").length, 2);
  } finally {
    await reset();
  }
  assertThrows(() => logtapeAuditSink([]), TypeError);
  assertThrows(() => logtapeAuditSink([""]), TypeError);
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
    assertEquals(failed.length, 2);
    assertEquals(failed.map((f) => f.split(":")[1]), ["exec", "spawn"]);
  },
});
