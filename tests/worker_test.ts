// The worker handle's command(): the same shapes as a local Deno.Command run of the same program, with the real
// daemon.
import { assert, assertEquals, assertInstanceOf, assertRejects, assertThrows } from "./_assert.ts";
import { CommandTimeoutError, DaemonNotFoundError, RemoteWorker, Server } from "../mod.ts";
import { alive, eventually, startWorker } from "./_daemon.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** The Deno.CommandOutput fields, for comparing a remote output with a local one. */
function shape(o: Deno.CommandOutput | Deno.CommandStatus, piped = true) {
  const base = { success: o.success, code: o.code, signal: o.signal };
  if (!piped || !("stdout" in o)) return base;
  return { ...base, stdout: decoder.decode(o.stdout), stderr: decoder.decode(o.stderr) };
}

function message(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assertInstanceOf(error, TypeError);
    return error.message;
  }
  throw new Error("did not throw");
}

Deno.test("command().output() has Deno.Command's shape and values", async (t) => {
  await using h = await startWorker("wc1");
  const w = await h.server.worker("wc1").ready({ timeout: 10_000 });
  assertInstanceOf(w, RemoteWorker);

  await t.step("exit code, stdout and stderr as a local run", async () => {
    const args = ["-c", "printf 'out \\001\\377'; printf 'err' >&2; exit 3"];
    const remote = await w.command("sh", { args }).output();
    const local = await new Deno.Command("sh", { args }).output();
    assertEquals(shape(remote), shape(local));
    assertEquals(remote.stdout, local.stdout);
    assertEquals(remote.timedOut, false);
  });

  await t.step("a signal death as a local run", async () => {
    const args = ["-c", "kill -9 $$"];
    assertEquals(
      shape(await w.command("sh", { args }).output()),
      shape(await new Deno.Command("sh", { args }).output()),
    );
  });

  await t.step("args, cwd and env pass without a shell", async () => {
    const dir = await Deno.makeTempDir();
    try {
      const out = await w.command("sh", {
        args: ["-c", 'printf "%s|%s|%s" "$1" "$SANDD_X" "$(pwd)"', "sh", "a b; $(no) `x` 'q'"],
        cwd: dir,
        env: { SANDD_X: "y z" },
      }).output();
      assertEquals(
        decoder.decode(out.stdout),
        `a b; $(no) \`x\` 'q'|y z|${await Deno.realPath(dir)}`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  await t.step("not-piped streams throw the TypeError Deno throws", async () => {
    const opts = { args: ["-c", "echo hi"], stdout: "null" as const, stderr: "null" as const };
    const remote = await w.command("sh", opts).output();
    const local = await new Deno.Command("sh", opts).output();
    assertEquals(message(() => remote.stdout), message(() => local.stdout));
    assertEquals(message(() => remote.stderr), message(() => local.stderr));
    assertEquals(shape(remote, false), shape(local, false));
  });

  await t.step("piped stdin is refused by output(), as Deno does", async () => {
    const error = await assertRejects(
      () => w.command("cat", { stdin: "piped" }).output(),
      TypeError,
    );
    assert(error.message.includes("Piped stdin is not supported"), error.message);
  });

  await t.step("a missing program is exit 127", async () => {
    const out = await w.command("no-such-program-sandd-x").output();
    assertEquals(out.code, 127);
    assertEquals(out.success, false);
    assert(decoder.decode(out.stderr).includes("no-such-program-sandd-x"));
  });

  await t.step("timeout rejects with CommandTimeoutError", async () => {
    await assertRejects(
      () => w.command("sleep", { args: ["30"], timeout: 300 }).output(),
      CommandTimeoutError,
    );
  });

  await t.step("an abort signal kills and rejects with its reason", async () => {
    for (const when of ["during the spawn request", "while it runs"]) {
      const abort = new AbortController();
      const started = performance.now();
      const running = w.command("sleep", { args: ["30"], signal: abort.signal }).output();
      const reason = new Error(`stop it ${when}`);
      if (when === "while it runs") {
        // No event says the process started: look until the worker lists it.
        while ((await h.server.processes("wc1")).every((p) => p.state !== "running")) {
          await new Promise((r) => setTimeout(r, 10));
        }
      }
      abort.abort(reason);
      assertEquals(await running.then(() => null, (e) => e), reason, when);
      assert(performance.now() - started < 10_000, `${when}: the abort was not acted on`);
    }
  });

  await t.step("bad options are TypeErrors before anything runs", () => {
    assertThrows(() => w.command(""), TypeError);
    assertThrows(() => w.command("ls", { args: ["a\0b"] }), TypeError);
    const inherit = assertThrows(
      () => w.command("cat", { stdin: "inherit" as "null" }),
      TypeError,
    );
    assert(inherit.message.includes("cannot inherit"), inherit.message);
    assertThrows(
      () => w.command("ls", { clearEnv: true } as unknown as Record<string, never>),
      TypeError,
      "Unknown command option 'clearEnv'",
    );
  });
});

Deno.test("command().spawn() has Deno.ChildProcess's shape", async (t) => {
  await using h = await startWorker("wc2");
  const w = h.server.worker("wc2");

  await t.step("stdin piped through cat, then output() as a local child", async () => {
    const opts = { stdin: "piped", stdout: "piped", stderr: "piped" } as const;
    const remote = await w.command("cat", opts).spawn();
    const local = new Deno.Command("cat", opts).spawn();
    assert(remote.pid > 0 && typeof remote.id === "string");
    for (const child of [remote, local]) {
      const writer = child.stdin.getWriter();
      await writer.write(encoder.encode("line 1\n"));
      await writer.write(encoder.encode("line 2\n"));
      await writer.close();
    }
    const [r, l] = await Promise.all([remote.output(), local.output()]);
    assertEquals(shape(r), shape(l));
    assertEquals(decoder.decode(r.stdout), "line 1\nline 2\n");
    assertEquals(remote.offsets, { stdout: 14, stderr: 0 });
  });

  await t.step("kill() ends it with SIGTERM as a local child", async () => {
    const remote = await w.command("sleep", { args: ["30"] }).spawn();
    const local = new Deno.Command("sleep", { args: ["30"] }).spawn();
    await remote.kill();
    local.kill();
    const [r, l] = await Promise.all([remote.status, local.status]);
    assertEquals(shape(r), shape(l));
    assertEquals(r.timedOut, false);
    // Like Deno (which throws), signalling an exited child fails.
    await assertRejects(() => remote.kill("SIGKILL"));
  });

  await t.step("stream getters throw Deno's TypeErrors when not piped", async () => {
    const opts = { stdin: "null", stdout: "null", stderr: "null" } as const;
    await using remote = await w.command("true", opts).spawn();
    const local = new Deno.Command("true", opts).spawn();
    for (const name of ["stdin", "stdout", "stderr"] as const) {
      assertEquals(message(() => remote[name]), message(() => local[name]));
    }
    assertEquals(shape(await remote.status), shape(await local.status));
    remote.ref();
    remote.unref();
  });

  await t.step("stdout read by the caller, then output() refuses like Deno", async () => {
    const remote = await w.command("echo", { args: ["hi"] }).spawn();
    const local = new Deno.Command("echo", { args: ["hi"], stdout: "piped" }).spawn();
    const texts = await Promise.all([remote, local].map((c) => {
      const reader = c.stdout.getReader();
      return reader.read().then((first) => {
        reader.releaseLock();
        return first;
      });
    }));
    assertEquals(decoder.decode(texts[0]!.value), decoder.decode(texts[1]!.value));
    const lockedRemote = remote.stdout.getReader();
    const lockedLocal = local.stdout.getReader();
    const remoteError = await assertRejects(() => remote.output(), TypeError);
    const localError = await assertRejects(() => local.output(), TypeError);
    assertEquals(remoteError.message, localError.message);
    lockedRemote.releaseLock();
    lockedLocal.releaseLock();
    await Promise.all([remote.output(), local.output()]);
  });

  await t.step("an abort signal sends SIGTERM, as Deno does", async () => {
    const abort = new AbortController();
    const remote = await w.command("sleep", { args: ["30"], signal: abort.signal }).spawn();
    abort.abort();
    const status = await remote.status;
    assertEquals(status.signal, "SIGTERM");
    assertEquals(status.success, false);
  });

  await t.step("timeout kills and reports timedOut", async () => {
    const child = await w.command("sleep", { args: ["30"], timeout: 300 }).spawn();
    const status = await child.status;
    assertEquals(status.timedOut, true);
    assertEquals(status.success, false);
  });

  await t.step("disposal kills a running child and waits", async () => {
    let pid = 0;
    {
      await using child = await w.command("sleep", { args: ["30"] }).spawn();
      pid = child.pid;
      assert(alive(pid));
    }
    await eventually(() => !alive(pid), 5_000, "the disposed child to be gone");
  });

  await t.step("inherit copies to this process and is not readable here", async () => {
    await using child = await w.command("true", { stdout: "inherit" }).spawn();
    assertThrows(() => child.stdout, TypeError);
    assertEquals((await child.status).code, 0);
  });
});

Deno.test("detach() then attach() continues at the offsets, nothing lost or repeated", async () => {
  await using h = await startWorker("wc3");
  const w = h.server.worker("wc3");
  const child = await w.command("sh", {
    args: ["-c", "printf one; read line; printf 'two:%s' \"$line\""],
    stdin: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  let seen = "";
  while (seen.length < 3) seen += decoder.decode((await reader.read()).value);
  reader.releaseLock();
  assertEquals(seen, "one");
  assertEquals(child.offsets.stdout, 3);
  const { id, offsets } = child;
  await child.detach();
  await child.stdout.cancel().catch(() => {});
  await child.stderr.cancel().catch(() => {});
  {
    // A detached child is not killed by disposal.
    await using _gone = child;
  }
  const again = await w.attach(id, { from: offsets, stdin: "piped" });
  assertEquals(again.id, id);
  assertEquals(again.offsets, { stdout: 3, stderr: 0 });
  const writer = again.stdin.getWriter();
  await writer.write(encoder.encode("x\n"));
  await writer.close();
  const out = await again.output();
  assertEquals(decoder.decode(out.stdout), "two:x");
  assertEquals(out.code, 0);
  assertEquals(again.offsets, { stdout: 8, stderr: 0 });
});

Deno.test("server.worker(): ids checked, ready() waits and times out, info() describes", async () => {
  await using server = await Server.listen({ port: 0 });
  assertThrows(() => server.worker("bad id with spaces"), TypeError);
  const w = server.worker("not-here");
  assertEquals(await w.info(), undefined);
  await assertRejects(() => w.ready({ timeout: 100 }), DaemonNotFoundError);
  await assertRejects(() => w.command("true").output(), DaemonNotFoundError);
  await using h = await startWorker("wc4");
  const info = await h.server.worker("wc4").info();
  assertEquals(info?.platform, Deno.build.os);
});

Deno.test("waitForDaemon resolves to the worker handle, which also carries the daemon's description", async () => {
  await using h = await startWorker("wfd");
  const w = await h.server.waitForDaemon("wfd");
  assertInstanceOf(w, RemoteWorker);
  assertEquals([w.id, w.platform, w.pid], ["wfd", Deno.build.os, h.daemon.pid]);
  assertEquals(await w.sh`echo ${"ready; rm -rf /"}`.text(), "ready; rm -rf /");
  // Listing and JSON still see a plain description.
  assertEquals(JSON.parse(JSON.stringify(w)).hostname, h.server.daemon("wfd")!.hostname);
});
