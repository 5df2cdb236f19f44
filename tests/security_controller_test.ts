// Controller-side security (issue 10): credentials checked before the failure limit (a bad-token flood from the
// shared proxy address never locks out a valid daemon), a deadline on every request a hostile or broken daemon
// does not answer (or answers with a reply the controller cannot accept), and an audit record for every request
// the controller sends, refused and failed ones included.
import { assert, assertEquals, assertLess, assertRejects } from "./_assert.ts";
import {
  type AuditRecord,
  DaemonNotFoundError,
  fileAuditSink,
  FileError,
  PolicyError,
  ProtocolError,
  RequestTimeoutError,
  Server,
} from "../mod.ts";
import { TestDaemon } from "./_daemon.ts";
import { rawDaemonSocket, within } from "./_raw_daemon.ts";

const TOKEN = "controller-security-token-0123456789";

/** A daemon that speaks the raw protocol: says hello, then lets the test decide what (not) to answer. */
class FakeDaemon implements AsyncDisposable {
  readonly socket: WebSocket;
  readonly closed: Promise<void>;
  readonly requests: Record<string, unknown>[] = [];

  constructor(url: string, id: string, onRequest: (message: Record<string, unknown>) => void) {
    const closed = Promise.withResolvers<void>();
    this.closed = closed.promise;
    this.socket = rawDaemonSocket(url, id, TOKEN, (message) => {
      if (message.t === "req") {
        this.requests.push(message);
        onRequest(message);
      }
    });
    this.socket.onerror = () => {};
    this.socket.onclose = () => closed.resolve();
  }

  reply(message: Record<string, unknown>): void {
    this.socket.send(JSON.stringify(message));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.socket.close();
    await this.closed;
  }
}

// --- 11: a bad-token flood must never get a valid credential refused ---

Deno.test("a bad-token flood from the daemons' shared address never refuses a valid credential", async () => {
  // A slow refill: once the failure budget is spent, the old order (limit first) refused everyone for minutes.
  await using server = await Server.listen({
    port: 0,
    token: TOKEN,
    authFailureLimit: { rate: 0.01, burst: 5 },
  });
  const statuses: number[] = [];
  for (let i = 0; i < 20; i++) {
    const response = await fetch(`http://127.0.0.1:${server.port}/stats`, {
      headers: { authorization: "Bearer wrong-token-from-the-attacker" },
    });
    await response.body?.cancel();
    statuses.push(response.status);
  }
  // Failures are still limited...
  assertEquals(statuses.slice(0, 5), Array(5).fill(401));
  assert(statuses.slice(5).every((s) => s === 429), statuses.join(","));
  // ...but a valid credential from the same address goes through at once,
  const stats = await fetch(`http://127.0.0.1:${server.port}/stats`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  assertEquals(stats.status, 200);
  await stats.body?.cancel();
  // and so does a real daemon behind the same address.
  await using _daemon = new TestDaemon({
    id: "behind-proxy",
    url: server.url,
    args: ["--token", TOKEN],
  });
  await server.waitForDaemon("behind-proxy", { timeout: 10_000 });
  assertEquals((await server.exec("behind-proxy", "echo in")).stdout, "in\n");
});

// --- 14: every request has a deadline; an unacceptable reply fails its call ---

Deno.test("a request the daemon never answers fails with RequestTimeoutError", async () => {
  await using server = await Server.listen({ port: 0, token: TOKEN, requestTimeoutMs: 300 });
  await using _fake = new FakeDaemon(server.url, "mute", () => {});
  await server.waitForDaemon("mute");
  const started = performance.now();
  const error = await within(
    assertRejects(() => server.processes("mute"), RequestTimeoutError, "processes"),
    5_000,
    "processes()",
  );
  assertEquals(error.code, "REQUEST_TIMEOUT");
  assertLess(performance.now() - started, 3_000);
  await within(
    assertRejects(() => server.fs("mute").stat("/etc"), RequestTimeoutError, "stat"),
    5_000,
    "stat()",
  );
  await within(
    assertRejects(() => server.spawn("mute", "true"), RequestTimeoutError, "spawn"),
    5_000,
    "spawn()",
  );
  // The link itself stays up: the daemon answers pings, only its requests were dropped.
  assertEquals(server.daemonCount, 1);
});

Deno.test("an upload the daemon never acknowledges fails instead of hanging", async () => {
  await using server = await Server.listen({ port: 0, token: TOKEN, requestTimeoutMs: 300 });
  await using _fake = new FakeDaemon(server.url, "sink", () => {});
  await server.waitForDaemon("sink");
  const bytes = new Uint8Array(32 * 1024 * 1024); // more than the 8 MiB transfer window
  const error = await within(
    assertRejects(() => server.upload("sink", "/tmp/x", bytes), RequestTimeoutError),
    10_000,
    "upload()",
  );
  assert(error.message.includes("upload"), error.message);
});

Deno.test("a reply the controller cannot accept (an error message over the limit) fails its call", async () => {
  await using server = await Server.listen({ port: 0, token: TOKEN });
  let fake: FakeDaemon | undefined = undefined;
  fake = new FakeDaemon(server.url, "verbose", (request) => {
    if (request.op === "processes") {
      fake!.reply({ t: "res", rid: request.rid, ok: true, data: "not an object" });
      return;
    }
    const path = "/very/long/" + "x".repeat(9_000);
    fake!.reply({
      t: "res",
      rid: request.rid,
      ok: false,
      error: { code: "ENOENT", message: `No such file: ${path}`, path },
    });
  });
  await using _fake = fake;
  await server.waitForDaemon("verbose");
  const error = await within(
    assertRejects(() => server.fs("verbose").stat("/x"), ProtocolError),
    5_000,
    "stat()",
  );
  assert(error.message.includes("stat"), error.message);
  // A reply whose data is not an object: the call fails, nothing stays pending.
  await within(
    assertRejects(() => server.processes("verbose"), ProtocolError),
    5_000,
    "processes()",
  );
  assertEquals(server.stats().inFlight, 0);
});

// --- 12: every request the controller sends is audited, refused and failed ones too ---

Deno.test("every controller request is audited: exec, spawn, attach, processes, shell, transfers, fs ops, refusals", async () => {
  const path = await Deno.makeTempFile({ suffix: ".jsonl" });
  const work = await Deno.makeTempDir({ prefix: "sandd-audit-" });
  try {
    {
      await using server = await Server.listen({
        port: 0,
        token: TOKEN,
        audit: fileAuditSink(path),
      });
      await using _daemon = new TestDaemon({
        id: "all",
        url: server.url,
        args: ["--token", TOKEN, "--deny", "rm"],
      });
      await server.waitForDaemon("all");
      await server.exec("all", "true");
      await assertRejects(() => server.exec("all", "rm -rf /nope"), PolicyError);
      await assertRejects(() => server.exec("nobody", "true"), DaemonNotFoundError);
      const p = await server.spawn("all", ["sleep", "30"], { stdin: false });
      const again = await server.attach("all", p.id, { stdin: false });
      await server.processes("all");
      await p.kill("SIGKILL");
      await p.status;
      await again.status.catch(() => {});
      await using sh = await server.shell("all", { command: ["sh"] });
      await sh.resize(100, 30);
      await sh.close();
      await server.upload("all", `${work}/f.txt`, new TextEncoder().encode("hello"));
      await server.download("all", `${work}/f.txt`);
      await assertRejects(() => server.download("all", `${work}/missing`), FileError);
      await (await server.downloadStream("all", `${work}/f.txt`)).cancel();
      await Deno.mkdir(`${work}/local`);
      await Deno.writeTextFile(`${work}/local/a`, "a");
      await server.uploadDir("all", `${work}/local`, `${work}/remote`);
      await server.downloadDir("all", `${work}/remote`, `${work}/back`);
      const fs = server.fs("all");
      await fs.mkdir(`${work}/d`);
      await fs.stat(`${work}/d`);
      await fs.list(work);
      await fs.move(`${work}/d`, `${work}/e`);
      await fs.remove(`${work}/e`);
      const abort = new AbortController();
      const watching = (async () => {
        for await (const _ of fs.watch(work, { signal: abort.signal })) break;
      })();
      // The daemon answers in order: once this stat is answered, the watch is in place.
      await fs.stat(work);
      await Deno.writeTextFile(`${work}/poke`, "x");
      await watching;
      abort.abort();
    }
    const records = (await Deno.readTextFile(path)).trim().split("\n").map((line) =>
      JSON.parse(line) as AuditRecord
    );
    const actions = new Set(records.map((r) => r.action));
    for (
      const action of [
        "connect",
        "exec",
        "spawn",
        "attach",
        "processes",
        "signal",
        "exit",
        "shell",
        "resize",
        "upload",
        "download",
        "uploadDir",
        "downloadDir",
        "fs.mkdir",
        "fs.stat",
        "fs.list",
        "fs.move",
        "fs.remove",
        "fs.watch",
        "disconnect",
      ]
    ) {
      assert(actions.has(action), `no '${action}' record in ${[...actions].join(", ")}`);
    }
    for (const record of records) {
      assert(record.daemon === "all" || record.daemon === "nobody", JSON.stringify(record));
      assert(!Number.isNaN(Date.parse(record.time)));
      if (record.daemon === "all" && record.action !== "connect") {
        assertEquals(record.identity, "token");
      }
    }
    const execs = records.filter((r) => r.action === "exec");
    assertEquals(execs.map((r) => r.ok), [true, false, false]);
    assert(execs[1]!.error?.includes("rm"), execs[1]!.error);
    assertEquals(execs[2]!.daemon, "nobody");
    const uploads = records.filter((r) => r.action === "upload");
    assertEquals(uploads.length, 1);
    assertEquals(uploads[0]!.path, `${work}/f.txt`);
    assertEquals(uploads[0]!.bytes, 5);
    const downloads = records.filter((r) => r.action === "download");
    assertEquals(downloads.map((r) => r.ok), [true, false, true]);
    assertEquals(downloads[0]!.bytes, 5);
    assertEquals(downloads[1]!.error?.includes("missing"), true);
    const move = records.find((r) => r.action === "fs.move")!;
    assertEquals(move.path, `${work}/d`);
  } finally {
    await Deno.remove(path);
    await Deno.remove(work, { recursive: true });
  }
});

// --- Public API: tar failures of directory transfers are FileErrors ---

Deno.test("a tar failure of uploadDir surfaces as a FileError with the tar code", async () => {
  const work = await Deno.makeTempDir({ prefix: "sandd-tar-" });
  try {
    await using server = await Server.listen({ port: 0, token: TOKEN });
    await using _daemon = new TestDaemon({ id: "tar", url: server.url, args: ["--token", TOKEN] });
    await server.waitForDaemon("tar");
    await Deno.mkdir(`${work}/loop/inner`, { recursive: true });
    await Deno.symlink(`${work}/loop`, `${work}/loop/inner/back`);
    const error = await assertRejects(
      () => server.uploadDir("tar", `${work}/loop`, `${work}/out`, { followSymlinks: true }),
      FileError,
    );
    assertEquals(error.code, "TAR_PACK");
    assertEquals(error.daemonId, "tar");
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

// --- typed events: no cast needed ---

Deno.test("connect and disconnect listeners get a DaemonEvent without a cast", async () => {
  await using server = await Server.listen({ port: 0, token: TOKEN });
  const seen: string[] = [];
  const listener = (event: { daemon: { id: string } }) => seen.push(event.daemon.id);
  server.addEventListener("connect", (event) => seen.push(`+${event.daemon.id}`));
  server.addEventListener("disconnect", listener);
  const gone = new Promise<void>((resolve) =>
    server.addEventListener("disconnect", () => resolve(), { once: true })
  );
  {
    await using _fake = new FakeDaemon(server.url, "typed", () => {});
    await server.waitForDaemon("typed");
  }
  await gone;
  server.removeEventListener("disconnect", listener);
  assertEquals(seen, ["+typed", "typed"]);
});

Deno.test("the daemon keeps an error naming a huge path within the protocol's limits", async () => {
  await using server = await Server.listen({ port: 0, token: TOKEN });
  await using _daemon = new TestDaemon({ id: "long", url: server.url, args: ["--token", TOKEN] });
  await server.waitForDaemon("long");
  const path = "/" + "a".repeat(8_190); // the longest path the protocol carries
  const error = await within(
    assertRejects(() => server.fs("long").stat(path), FileError),
    10_000,
    "stat()",
  );
  assertEquals(error.code, "ENAMETOOLONG");
  assert(error.message.length <= 8192, `${error.message.length} characters`);
});
