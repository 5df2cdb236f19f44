// The wire, validated end to end (issue 9): every reply is checked against its operation's schema before it
// settles its call, and a malformed message about something the controller waits on (a process, a stream, a
// request) fails that thing with a clear error instead of being dropped and leaving it pending. A hostile fake
// daemon speaks the raw protocol to a real Server.
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { ProtocolError, Server } from "../mod.ts";
import { encodeDataFrame } from "../protocol/frame.ts";
import { parseDaemonMessage } from "../protocol/messages.ts";
import { Pty } from "../daemon/pty/pty.ts";
import { FS_UNSUPPORTED } from "../daemon/ffi/fs.ts";
import { LIBC_SYMBOLS } from "../daemon/ffi/libc.ts";
import { TestDaemon } from "./_daemon.ts";
import { rawDaemonSocket, within } from "./_raw_daemon.ts";

const TOKEN = "wire-security-token-0123456789abcdef";

interface Request {
  rid: number;
  op: string;
  args: Record<string, unknown>;
}

/** A daemon speaking the raw protocol: hello, pong, and whatever the test answers to each request. */
class HostileDaemon implements AsyncDisposable {
  readonly socket: WebSocket;
  readonly closed: Promise<void>;
  /** Protocol errors the controller sent back. */
  readonly errors: string[] = [];
  /** Stream resets the controller sent. */
  readonly resets: number[] = [];
  #waiters: { ready: () => boolean; resolve: () => void }[] = [];

  constructor(url: string, id: string, onRequest: (request: Request, fake: HostileDaemon) => void) {
    const closed = Promise.withResolvers<void>();
    this.closed = closed.promise;
    this.socket = rawDaemonSocket(url, id, TOKEN, (message) => {
      if (message.t === "error") this.errors.push(message.message);
      if (message.t === "reset") this.resets.push(message.sid);
      if (message.t === "req") onRequest(message, this);
      this.#waiters = this.#waiters.filter((w) => !(w.ready() && (w.resolve(), true)));
    });
    this.socket.onerror = () => {};
    this.socket.onclose = () => closed.resolve();
  }

  /** Resolves once `ready()` holds, checked after each message from the controller. */
  until(ready: () => boolean): Promise<void> {
    if (ready()) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#waiters.push({ ready, resolve });
    return promise;
  }

  send(message: unknown): void {
    this.socket.send(JSON.stringify(message));
  }

  reply(request: Request, data: unknown): void {
    this.send({ t: "res", rid: request.rid, ok: true, data });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.socket.close();
    await this.closed;
  }
}

Deno.test("a reply with fields of the wrong type fails its call with a ProtocolError naming the field", async () => {
  await using server = await Server.listen({ port: 0, token: TOKEN });
  await using _fake = new HostileDaemon(server.url, "liar", (request, fake) => {
    switch (request.op) {
      case "spawn":
        return fake.reply(request, { proc: 42, pid: "1234" });
      case "processes":
        return fake.reply(request, { processes: [{ id: "p-1", pid: -5 }] });
      case "stat":
        return fake.reply(request, {
          type: "file",
          size: "huge",
          mode: 0o644,
          mtime: null,
          uid: 0,
          gid: 0,
        });
      case "list":
        return fake.reply(request, { entries: [{ path: "a", type: "file", size: 1, mode: 1e9 }] });
    }
  });
  await server.waitForDaemon("liar");
  const spawn = await within(
    assertRejects(() => server.spawn("liar", "true"), ProtocolError),
    5_000,
    "spawn()",
  );
  assert(spawn.message.includes("'spawn'") && spawn.message.includes("data.proc"), spawn.message);
  const processes = await within(
    assertRejects(() => server.processes("liar"), ProtocolError),
    5_000,
    "processes()",
  );
  assert(processes.message.includes("data.processes[0]"), processes.message);
  const stat = await within(
    assertRejects(() => server.fs("liar").stat("/x"), ProtocolError),
    5_000,
    "stat()",
  );
  assert(stat.message.includes("data.size"), stat.message);
  const list = await within(
    assertRejects(() => server.fs("liar").list("/x"), ProtocolError),
    5_000,
    "list()",
  );
  assert(list.message.includes("data.entries[0]"), list.message);
  assertEquals(server.stats().inFlight, 0);
  // The link stays up: a bad reply fails its call, not the daemon.
  assertEquals(server.daemonCount, 1);
});

/** A fake that accepts every spawn as process `p-<n>` and remembers the stream ids it was given. */
function spawner(spawned: Request[]) {
  return (request: Request, fake: HostileDaemon) => {
    if (request.op !== "spawn") return;
    spawned.push(request);
    fake.reply(request, { proc: `p-${spawned.length}`, pid: 1000 + spawned.length });
  };
}

Deno.test("a malformed exit for a live process fails that process instead of leaving its status pending", async () => {
  await using server = await Server.listen({ port: 0, token: TOKEN });
  const spawned: Request[] = [];
  await using fake = new HostileDaemon(server.url, "bad-exit", spawner(spawned));
  await server.waitForDaemon("bad-exit");
  const process = await server.spawn("bad-exit", "sleep 100");
  assertEquals(process.id, "p-1");
  // A signalled exit with a null code: the old controller dropped it and `status` never settled.
  fake.send({ t: "exit", proc: "p-1", exitCode: null, signal: "SIGKILL", timedOut: false });
  const error = await within(assertRejects(() => process.status, ProtocolError), 5_000, "status");
  assert(error.message.includes("p-1") && error.message.includes("exitCode"), error.message);
  await within(assertRejects(() => new Response(process.stdout).arrayBuffer()), 5_000, "stdout");
  // The daemon was told why.
  await within(fake.until(() => fake.errors.some((m) => m.includes("exitCode"))), 5_000, "error");
  // An exit code out of range (the reference daemon once sent -1) is refused the same way.
  const other = await server.spawn("bad-exit", "true");
  fake.send({ t: "exit", proc: other.id, exitCode: -1, signal: null, timedOut: false });
  await within(assertRejects(() => other.status, ProtocolError, "exitCode"), 5_000, "status");
  assertEquals(server.daemonCount, 1);
});

Deno.test("a malformed eof, gap or data frame for an open stream fails that stream, not silently", async () => {
  await using server = await Server.listen({ port: 0, token: TOKEN });
  const spawned: Request[] = [];
  await using fake = new HostileDaemon(server.url, "bad-stream", spawner(spawned));
  await server.waitForDaemon("bad-stream");

  const streamOf = async (send: (sid: number) => void) => {
    const process = await server.spawn("bad-stream", "cat", { stdin: false });
    const sid = spawned.at(-1)!.args.stdout as number;
    const body = new Response(process.stdout).arrayBuffer();
    send(sid);
    const error = await within(assertRejects(() => body, ProtocolError), 5_000, "stdout");
    await within(fake.until(() => fake.resets.includes(sid)), 5_000, `reset of stream ${sid}`);
    return error;
  };
  // An eof with a negative offset.
  const eof = await streamOf((sid) => fake.send({ t: "eof", sid, offset: -1 }));
  assert(eof.message.includes("offset"), eof.message);
  // An empty gap.
  const gap = await streamOf((sid) => fake.send({ t: "gap", sid, from: 10, to: 10 }));
  assert(gap.message.includes("'to'"), gap.message);
  // A binary frame of an unknown kind whose header names the stream.
  const data = await streamOf((sid) => {
    const frame = encodeDataFrame(sid, 0, new Uint8Array([1, 2, 3]));
    frame[0] = 9;
    fake.socket.send(frame);
  });
  assert(data.message.includes("unknown kind 9"), data.message);
  assertEquals(server.daemonCount, 1);
});

Deno.test("a malformed message that names nothing is answered with an error and the link stays up", async () => {
  await using server = await Server.listen({ port: 0, token: TOKEN });
  await using fake = new HostileDaemon(server.url, "noise", (request, fake) => {
    if (request.op === "processes") fake.reply(request, { processes: [] });
  });
  await server.waitForDaemon("noise");
  fake.send({ t: "eof", offset: 5 });
  fake.socket.send(new Uint8Array([1, 2, 3]));
  fake.send({ t: "bogus" });
  // Each answered with an error, and the link still works.
  await within(fake.until(() => fake.errors.length === 3), 5_000, "three errors");
  assert(fake.errors[2]!.includes("bogus"), fake.errors.join("; "));
  assertEquals(await server.processes("noise"), []);
  assertEquals(server.daemonCount, 1);
});

Deno.test({
  name: "a terminal whose exit status was lost reports 255, an exit the protocol accepts",
  ignore: Deno.build.os === "windows",
  async fn() {
    // Somebody else reaps the child first (a blocking waitpid of our own, which the kernel serves before the
    // daemon's pidfd watcher wakes up): the pty reports its "lost" status. It used to be -1, which the
    // controller refuses, so the process's status never settled.
    const libc = Deno.dlopen(Deno.build.os === "darwin" ? "libSystem.B.dylib" : "libc.so.6", {
      waitpid: { parameters: ["i32", "buffer", "i32"], result: "i32", nonblocking: true },
    });
    try {
      let lost: { exitCode: number; signal: string | null } | undefined;
      for (let attempt = 0; attempt < 5 && !lost; attempt++) {
        await using pty = Pty.spawn({ command: "sleep", args: ["30"] });
        const reaped = libc.symbols.waitpid(pty.pid, new Uint8Array(4), 0);
        Deno.kill(pty.pid, "SIGKILL");
        const exit = await pty.exited;
        if (await reaped === pty.pid) lost = exit;
        else assertEquals(exit, { exitCode: 137, signal: "SIGKILL" });
      }
      assert(lost, "the watcher reaped the child first in every attempt");
      assertEquals(lost, { exitCode: 255, signal: null });
      const message = { t: "exit", proc: "p-1", ...lost, timedOut: false };
      assertEquals(parseDaemonMessage(JSON.stringify(message)) as unknown, message);
    } finally {
      libc.close();
    }
  },
});

/** Wait (bounded) for the daemon to exit on its own; returns its exit code and log. */
async function exitOf(daemon: TestDaemon, what: string): Promise<{ code: number; stderr: string }> {
  await within(daemon.child.status, 10_000, what);
  return await daemon.stop();
}

Deno.test("a daemon whose credential speaks for another id (close 4001) stops reconnecting and exits 3", async () => {
  let attempts = 0;
  await using server = await Server.listen({
    port: 0,
    // A per-daemon credential (custom method) that names another daemon: the hub closes with 4001.
    authenticate: () => {
      attempts++;
      return { subject: "someone-else", method: "custom" };
    },
  });
  await using daemon = new TestDaemon({ id: "impostor", url: server.url });
  const { code, stderr } = await exitOf(daemon, "the refused daemon's exit");
  assertEquals(code, 3, stderr);
  assert(stderr.includes("4001") && stderr.includes("not reconnecting"), stderr);
  assertEquals(attempts, 1);
  assertEquals(server.daemonCount, 0);
});

Deno.test("a daemon refused with HTTP 426 (another protocol version) stops reconnecting and exits 3", async () => {
  // A controller of another version: it answers every upgrade 426, the way Server does for a subprotocol it
  // does not speak.
  let attempts = 0;
  await using other = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, () => {
    attempts++;
    return Response.json({ error: "Unsupported protocol: this controller speaks sandd.v2" }, {
      status: 426,
    });
  });
  await using daemon = new TestDaemon({ id: "old", url: `ws://127.0.0.1:${other.addr.port}/ws` });
  const { code, stderr } = await exitOf(daemon, "the refused daemon's exit");
  assertEquals(code, 3, stderr);
  assert(stderr.includes("426") && stderr.includes("not reconnecting"), stderr);
  assertEquals(attempts, 1);
});

Deno.test("a daemon refused because its id is in use (4009) keeps retrying and gets in once the id is free", async () => {
  await using server = await Server.listen({ port: 0 });
  await using first = new TestDaemon({ id: "twin", url: server.url });
  await server.waitForDaemon("twin", { timeout: 10_000 });
  await using second = new TestDaemon({ id: "twin", url: server.url });
  await within(second.waitForLog("4009"), 10_000, "the second daemon's 4009");
  await first.stop();
  // The id is free again: the second daemon's retries get it in (it did not give up after 4009).
  await within(
    new Promise<void>((resolve) => {
      const check = () => {
        if (server.daemons().some((d) => d.pid === second.pid)) resolve();
        else server.addEventListener("connect", check, { once: true });
      };
      check();
    }),
    10_000,
    "the second daemon's connect",
  );
});

/** libc functions macOS's libSystem exports (POSIX), checked against its headers: a required symbol must be one. */
const LIBSYSTEM_FUNCTIONS = new Set([
  "poll",
  "pipe",
  "fcntl",
  "close",
  "read",
  "write",
  "access",
  "waitpid",
  "sigemptyset",
  "sigfillset",
  "posix_spawnattr_init",
  "posix_spawnattr_destroy",
  "posix_spawnattr_setflags",
  "posix_spawnattr_setsigmask",
  "posix_spawnattr_setsigdefault",
  "posix_spawn_file_actions_init",
  "posix_spawn_file_actions_destroy",
  "posix_spawn_file_actions_addopen",
  "posix_spawn_file_actions_adddup2",
  "posix_spawn",
  "posix_openpt",
  "open",
  "grantpt",
  "unlockpt",
  "ptsname",
  "ioctl",
  "getsockopt",
  "getsockname",
  "listen",
]); // deno-fmt-ignore

Deno.test("the libc binding loads on macOS: every symbol libSystem lacks is optional", () => {
  const required = Object.entries(LIBC_SYMBOLS as Record<string, { name?: string; optional?: boolean }>)
    .filter(([, symbol]) => !symbol.optional)
    .map(([key, symbol]) => symbol.name ?? key);
  const missing = required.filter((name) => !LIBSYSTEM_FUNCTIONS.has(name));
  assertEquals(missing, [], `required symbols macOS's libSystem does not export: ${missing.join(", ")}`);
  // The Linux-only ones in particular (a raw syscall number means another call elsewhere).
  for (const key of ["statx", "eventfd", "pipe2", "syscall3", "syscall_openat2", "syscall_getdents64", "pread"]) {
    assert((LIBC_SYMBOLS as Record<string, { optional?: boolean }>)[key]?.optional, `${key} must be optional`);
  }
  // File operations are Linux only, and say so elsewhere instead of calling Linux syscalls.
  if (Deno.build.os === "linux") assertEquals(FS_UNSUPPORTED, null);
  else assert(FS_UNSUPPORTED?.includes(Deno.build.os), String(FS_UNSUPPORTED));
});
