// The worker handle's sh`` tag: interpolated values are quoted (shell injection attempts stay one argument) and the
// builder's methods, with the real daemon.
import { assert, assertEquals, assertInstanceOf, assertRejects, assertThrows } from "./_assert.ts";
import {
  CommandFailedError,
  CommandTimeoutError,
  Server,
  shQuote,
  ShUnsupportedPlatformError,
  SUBPROTOCOL,
} from "../mod.ts";
import { startWorker } from "./_daemon.ts";

const decoder = new TextDecoder();

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

Deno.test("sh: hostile interpolated values are one argument each, and nothing they name runs", async () => {
  await using h = await startWorker("ws1");
  const w = h.server.worker("ws1");
  const dir = await Deno.makeTempDir();
  try {
    const canary = `${dir}/canary`;
    const victim = `${dir}/victim`;
    await Deno.mkdir(victim);
    await Deno.writeTextFile(`${victim}/keep`, "keep");
    const hostile = [
      `; rm -rf ${victim}`,
      `&& rm -rf ${victim}`,
      `| touch ${canary}`,
      `$(touch ${canary})`,
      `\`touch ${canary}\``,
      `'; touch ${canary}; echo '`,
      `"; touch ${canary}; echo "`,
      `it's`,
      `''`,
      `'`,
      `\\'`,
      `a\ntouch ${canary}\nb`,
      `\r\n; touch ${canary}`,
      `$HOME`,
      `\${PATH}`,
      `*`,
      `~`,
      `-n`,
      `FOO=bar`,
      ` leading and trailing `,
      `\t`,
      `#not a comment`,
      `>${canary}`,
      `<${canary}`,
      `\\`,
      `!`,
      `{a,b}`,
      `é ∑ 🦕`,
      "",
    ];
    for (const value of hostile) {
      const out = await w.sh`printf '%s\n' ${value}`.text();
      assertEquals(out, value.replace(/(\r?\n)+$/, ""), `value ${JSON.stringify(value)}`);
      const bytes = await w.sh`printf '%s\n' ${value}`.bytes();
      assertEquals(decoder.decode(bytes), `${value}\n`, `value ${JSON.stringify(value)}`);
      // Inside a word too.
      const joined = await w.sh`printf '%s|' --opt=${value}`.bytes();
      assertEquals(decoder.decode(joined), `--opt=${value}|`);
    }
    // The whole list as an array: one argument per element.
    const all = await w.sh`printf '%s\\0' ${hostile}`.bytes();
    assertEquals(decoder.decode(all).split("\0").slice(0, -1), hostile);
    // Numbers and bigints are text.
    assertEquals(await w.sh`printf '%s,' ${1} ${-2.5} ${10n}`.text(), "1,-2.5,10,");
    assertEquals(await exists(canary), false, "the canary file must not be created");
    assertEquals(await Deno.readTextFile(`${victim}/keep`), "keep", "the victim must survive");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sh: values that are not text are refused before anything runs", async () => {
  await using h = await startWorker("ws2");
  const w = h.server.worker("ws2");
  const sh = w.sh as unknown as (s: TemplateStringsArray, ...v: unknown[]) => unknown;
  for (
    const bad of [undefined, null, {}, { toString: () => "x" }, true, () => 1, Symbol("s"), NaN]
  ) {
    const error = assertThrows(() => sh`echo ${bad}`, TypeError);
    assert(error.message.includes("Interpolated value 1"), error.message);
  }
  assertThrows(() => sh`echo ${["ok", undefined]}`, TypeError, "element 1");
  assertThrows(() => sh`echo ${"a\0b"}`, TypeError, "NUL");
  assertThrows(() => (w.sh as unknown as (s: string) => unknown)("echo hi"), TypeError);
});

Deno.test("sh: text, lines, json, bytes, noThrow, errors, cwd, env, stdin, timeout, spawn", async (t) => {
  await using h = await startWorker("ws3");
  const w = h.server.worker("ws3");

  await t.step("readers", async () => {
    assertEquals(await w.sh`printf 'a\nb\n\n'`.text(), "a\nb");
    assertEquals(await w.sh`printf 'a\nb\n'`.lines(), ["a", "b"]);
    assertEquals(await w.sh`true`.lines(), []);
    assertEquals(await w.sh`printf '{"n":[1,2]}'`.json(), { n: [1, 2] });
    assertEquals(await w.sh`printf '\\001\\377'`.bytes(), new Uint8Array([1, 255]));
  });

  await t.step("awaiting gives the result", async () => {
    const r = await w.sh`echo out; echo err >&2`;
    assertEquals({ code: r.code, success: r.success, signal: r.signal }, {
      code: 0,
      success: true,
      signal: null,
    });
    assertEquals(r.stdout, "out\n");
    assertEquals(r.stderr, "err\n");
  });

  await t.step("a non-zero exit throws CommandFailedError carrying the result", async () => {
    const error = await assertRejects(async () => {
      await w.sh`echo partial; echo boom >&2; exit 4`;
    }, CommandFailedError);
    assertEquals(error.code, "COMMAND_FAILED");
    assertEquals(error.exitCode, 4);
    assertEquals(error.result.stdout, "partial\n");
    assert(error.message.includes("boom"), error.message);
    await assertRejects(() => w.sh`exit 1`.text(), CommandFailedError);
  });

  await t.step("noThrow() resolves with the failure", async () => {
    const r = await w.sh`exit 3`.noThrow();
    assertEquals(r.code, 3);
    assertEquals(r.success, false);
    const killed = await w.sh`kill -9 $$`.noThrow();
    assertEquals(killed.signal, "SIGKILL");
  });

  await t.step("cwd, env (merged), stdin", async () => {
    const dir = await Deno.makeTempDir();
    try {
      const cmd = w.sh`printf '%s|%s|%s' "$(pwd)" "$A" "$B"`.cwd(dir).env({ A: "1" }).env({
        B: "x y",
      });
      assertEquals(await cmd.text(), `${await Deno.realPath(dir)}|1|x y`);
      assertEquals(await w.sh`sort`.stdin("b\na\n").text(), "a\nb");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  await t.step("the builder is immutable and runs once per object", async () => {
    const base = w.sh`echo $RANDOM$$`;
    const withEnv = base.env({ X: "1" });
    assert(base !== withEnv);
    const first = await base;
    const second = await base;
    assertEquals(first.stdout, second.stdout);
  });

  await t.step("timeout throws CommandTimeoutError even with noThrow()", async () => {
    await assertRejects(async () => {
      await w.sh`sleep 30`.timeout(300).noThrow();
    }, CommandTimeoutError);
    assertThrows(() => w.sh`true`.timeout(0), RangeError);
  });

  await t.step("spawn() streams", async () => {
    const child = await w.sh`read x; printf 'got:%s' "$x"`.spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("hello\n"));
    await writer.close();
    const out = await child.output();
    assertEquals(decoder.decode(out.stdout), "got:hello");
    const fed = await w.sh`cat`.stdin("fed").spawn();
    assertThrows(() => fed.stdin, TypeError);
    assertEquals(decoder.decode((await fed.output()).stdout), "fed");
  });
});

Deno.test("shQuote quotes for a POSIX shell", async () => {
  assertEquals(shQuote("plain-word_1.txt"), "plain-word_1.txt");
  assertEquals(shQuote("a b"), "'a b'");
  assertEquals(shQuote("it's"), `'it'\\''s'`);
  assertEquals(shQuote(""), "''");
  assertEquals(shQuote("A=b"), "'A=b'");
  assertEquals(shQuote(["x", "y z"]), "x 'y z'");
  // Round trip through a local sh.
  const value = `'"$(x)\`y\`\n;\\`;
  const out = await new Deno.Command("sh", { args: ["-c", `printf %s ${shQuote(value)}`] })
    .output();
  assertEquals(decoder.decode(out.stdout), value);
  assertInstanceOf(assertThrows(() => shQuote({} as string)), TypeError);
});

Deno.test("sh and the shell-based fs fallbacks refuse a Windows daemon before sending anything", async () => {
  await using server = await Server.listen({ port: 0, token: "worker-sh-test" });
  const requests: unknown[] = [];
  const socket = new WebSocket(server.url, {
    protocols: [SUBPROTOCOL],
    headers: { authorization: "Bearer worker-sh-test" },
  });
  const closed = new Promise((resolve) => socket.onclose = resolve);
  // A raw daemon that says it runs on Windows (its shell would be cmd, where POSIX quoting does not hold).
  socket.onopen = () =>
    socket.send(JSON.stringify({
      t: "hello",
      id: "win1",
      labels: {},
      hostname: "windows-box",
      platform: "windows",
      arch: "x86_64",
      version: "0",
      pid: 1,
      processes: 0,
      instance: crypto.randomUUID(),
    }));
  socket.onmessage = (event) => {
    const message = JSON.parse(String(event.data));
    if (message.t === "ping") socket.send('{"t":"pong"}');
    else if (message.t === "req") requests.push(message);
  };
  try {
    const w = await server.worker("win1").ready({ timeout: 10_000 });
    const error = await assertRejects(() => w.sh`echo ${"hi"}`.text(), ShUnsupportedPlatformError);
    assertEquals(error.code, "SH_UNSUPPORTED_PLATFORM");
    assertEquals(error.platform, "windows");
    await assertRejects(() => w.sh`echo hi`.spawn(), ShUnsupportedPlatformError);
    await assertRejects(
      () => w.fs.writeTextFile("C:\\x.txt", "x", { append: true }),
      ShUnsupportedPlatformError,
    );
    assertEquals(requests, []);
  } finally {
    socket.close();
    await closed;
  }
});
