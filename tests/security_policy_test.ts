// Attacks on the daemon's policy (issue 10, items 4, 5, 8, 10, 13, and the single file root), each performed
// against a real daemon run with the hardened settings the docs recommend: --root, --run-as nobody (when the
// tests run as root), an allow list and --no-shell.
import { assert, assertEquals, assertLess, assertRejects } from "./_assert.ts";
import { PolicyError, Server } from "../mod.ts";
import { runDaemonCli, TestDaemon } from "./_daemon.ts";
import { parseDaemonArgs } from "../daemon/cli.ts";

const TOKEN = "policy-test-token-0123456789";
const RUN_AS = Deno.uid() === 0 ? ["--run-as", "nobody"] : [];

interface Hardened extends AsyncDisposable {
  server: Server;
  daemon: TestDaemon;
  root: string;
}

/** A controller and a daemon with --root, --run-as nobody, --no-shell and the given allow list. */
async function hardened(id: string, allow: string[], extra: string[] = []): Promise<Hardened> {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "sandd-policy-" }));
  await Deno.chmod(root, 0o755);
  const server = await Server.listen({ port: 0, token: TOKEN });
  const daemon = new TestDaemon({
    id,
    url: server.url,
    env: { SANDD_TOKEN: TOKEN, PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
    args: [
      "--root",
      root,
      ...RUN_AS,
      "--no-shell",
      ...allow.flatMap((pattern) => ["--allow", pattern]),
      ...extra,
    ],
  });
  try {
    await server.waitForDaemon(id, { timeout: 20_000 });
  } catch (error) {
    await daemon.stop("SIGKILL");
    await server.close();
    throw error;
  }
  return {
    server,
    daemon,
    root,
    async [Symbol.asyncDispose]() {
      // SIGKILL: a daemon frozen by an attack cannot run its SIGTERM handler.
      await daemon.stop("SIGKILL");
      await server.close();
      await Deno.remove(root, { recursive: true });
    },
  };
}

Deno.test("attack 4: loader, shell start-up and tool-hook variables cannot ride along an allowed program", async () => {
  await using w = await hardened("env-attack", ["/usr/bin/ls", "/usr/bin/env", "/usr/bin/git"]);
  await w.server.upload("env-attack", "evil.so", new TextEncoder().encode("not really"), {
    mode: 0o755,
  });
  const attacks: Record<string, string>[] = [
    { LD_PRELOAD: `${w.root}/evil.so` },
    { LD_LIBRARY_PATH: w.root },
    { LD_AUDIT: `${w.root}/evil.so` },
    { BASH_ENV: `${w.root}/payload.sh` },
    { ENV: `${w.root}/payload.sh` },
    { PATH: `${w.root}:/usr/bin` },
    { GIT_SSH_COMMAND: "id >&2" },
    { GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: "core.pager", GIT_CONFIG_VALUE_0: "id" },
    { "BASH_FUNC_ls%%": "() { id; }" },
    { PROMPT_COMMAND: "id" },
    { PYTHONSTARTUP: `${w.root}/x.py` },
    { PERL5OPT: "-Mevil" },
    { NODE_OPTIONS: "--require /tmp/x.js" },
    { ld_preload: "/lib/x.so" },
  ];
  for (const env of attacks) {
    const name = Object.keys(env)[0]!;
    const error = await assertRejects(
      () => w.server.exec("env-attack", ["/usr/bin/ls", w.root], { env }),
      PolicyError,
    );
    assertEquals(error.rule, "env");
    assert(error.message.includes(name), error.message);
  }
  // A pty session takes the same env option.
  await assertRejects(
    () => w.server.shell("env-attack", { command: ["/usr/bin/ls"], env: { LD_PRELOAD: "/x.so" } }),
    PolicyError,
  );
  // Harmless variables still pass.
  const ok = await w.server.exec("env-attack", ["/usr/bin/env"], {
    env: { LANG: "C.UTF-8", MY_SETTING: "1" },
  });
  assert(ok.stdout.includes("MY_SETTING=1\n"), ok.stdout);
});

Deno.test("attack 4: --env-allow limits the env option to the names it lists", async () => {
  await using w = await hardened("env-allow", ["/usr/bin/env"], [
    "--env-allow",
    "LANG",
    "--env-allow",
    "APP_*",
  ]);
  const ok = await w.server.exec("env-allow", ["/usr/bin/env"], {
    env: { LANG: "C", APP_MODE: "x" },
  });
  assert(ok.stdout.includes("APP_MODE=x\n"), ok.stdout);
  const error = await assertRejects(
    () => w.server.exec("env-allow", ["/usr/bin/env"], { env: { OTHER: "1" } }),
    PolicyError,
  );
  assertEquals(error.rule, "env");
  assert(error.message.includes("OTHER"), error.message);
});

Deno.test("attack 5: an allow glob does not match a path that climbs out with .., and * stops at /", async () => {
  await using w = await hardened("traverse", ["/usr/bin/*"]);
  await w.server.upload(
    "traverse",
    "payload.sh",
    new TextEncoder().encode("#!/bin/sh\necho pwned\n"),
    {
      mode: 0o755,
    },
  );
  const attacks = [
    `/usr/bin/../..${w.root}/payload.sh`,
    `/usr/bin/./../..${w.root}/payload.sh`,
    `/usr/bin//../..${w.root}/payload.sh`,
  ];
  for (const program of attacks) {
    const error = await assertRejects(() => w.server.exec("traverse", [program]), PolicyError);
    assertEquals(error.rule, "allow", program);
  }
  // A relative path resolves against the cwd before matching.
  const relative = await assertRejects(
    () =>
      w.server.exec("traverse", ["../../usr/bin/../..".concat(w.root, "/payload.sh")], {
        cwd: "/usr/bin",
      }),
    PolicyError,
  );
  assertEquals(relative.rule, "allow");
  // What the glob means still runs.
  assertEquals((await w.server.exec("traverse", ["/usr/bin/ls", w.root])).stdout, "payload.sh\n");
  assertEquals((await w.server.exec("traverse", ["/usr/bin/./ls", w.root])).stdout, "payload.sh\n");
});

Deno.test("attack 8: --no-shell refuses every shell program, by path, via env and on a pty", async () => {
  await using w = await hardened("noshell", ["*"]);
  const attacks: string[][] = [
    ["sh"],
    ["bash", "-s"],
    ["/bin/dash"],
    ["/usr/bin/bash", "--norc"],
    ["env", "-S", "sh -c id"],
    ["env", "--split-string=sh -c id"],
    ["/usr/bin/env", "bash"],
    ["env", "X=1", "sh"],
    ["nice", "sh"],
    ["timeout", "5", "dash"],
    ["busybox", "sh"],
    ["zsh"],
    ["fish"],
  ];
  for (const command of attacks) {
    const error = await assertRejects(
      () => w.server.exec("noshell", command, { stdin: "id\n" }),
      PolicyError,
    );
    assertEquals(error.rule, "noShell", JSON.stringify(command));
  }
  const pty = await assertRejects(
    () => w.server.shell("noshell", { command: ["bash"] }),
    PolicyError,
  );
  assertEquals(pty.rule, "noShell");
  // Plain programs still run, also with "sh" as an argument of a program that is no wrapper.
  assertEquals((await w.server.exec("noshell", ["echo", "sh"])).stdout, "sh\n");
});

Deno.test("attack 10: a deny pattern and a 240 KB argv are checked in bounded time", async () => {
  await using server = await Server.listen({ port: 0 });
  await using daemon = new TestDaemon({
    id: "glob",
    url: server.url,
    args: ["--deny", "*a*a*a*b", "--deny", "x *a*a*b*", "--deny", "* *a*a*a*c"],
  });
  try {
    await server.waitForDaemon("glob");
    const big = "a".repeat(120_000);
    const words = Array.from({ length: 24_000 }, () => "aaaaaaaaa");
    const started = performance.now();
    // Each either runs or is refused; neither may take long.
    const results = await Promise.allSettled([
      server.exec("glob", ["echo", big, big]),
      server.exec("glob", ["env", ...words], { timeout: 20_000 }),
      server.exec("glob", "echo " + words.join(" ")),
    ]);
    const elapsed = performance.now() - started;
    assertLess(elapsed, 8_000, `checking took ${elapsed} ms`);
    for (const result of results) {
      if (result.status === "rejected") {
        assert(result.reason instanceof PolicyError, String(result.reason));
      }
    }
    assertEquals((await server.exec("glob", ["echo", "still", "here"])).stdout, "still here\n");
  } finally {
    await daemon.stop("SIGKILL");
  }
});

Deno.test("attack 13: no SANDD_* variable reaches a child; --token warns", async () => {
  await using w = await hardened("creds", ["/usr/bin/env"]);
  for (const options of [{}, { env: { MINE: "1" } }]) {
    const env = (await w.server.exec("creds", ["/usr/bin/env"], options)).stdout;
    assert(!env.includes("SANDD_"), env);
    assert(!env.includes(TOKEN), env);
  }
  // --token puts the secret in /proc/PID/cmdline: the daemon says so at start.
  const flagged = await runDaemonCli([
    "--server-url",
    "ws://127.0.0.1:1/ws",
    "--token",
    TOKEN,
    "--version",
  ]);
  assertEquals(flagged.code, 0);
  assert(
    /--token/.test(flagged.stderr) && /token-file|SANDD_TOKEN/.test(flagged.stderr),
    flagged.stderr,
  );
  assert(!flagged.stderr.includes(TOKEN), flagged.stderr);
});

Deno.test("one root: --root replaces the policy file's root instead of stacking on it", async () => {
  const a = await Deno.realPath(await Deno.makeTempDir({ prefix: "sandd-root-a-" }));
  const b = await Deno.realPath(await Deno.makeTempDir({ prefix: "sandd-root-b-" }));
  const file = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(file, JSON.stringify({ root: b }));
  await using server = await Server.listen({ port: 0 });
  const daemon = new TestDaemon({
    id: "oneroot",
    url: server.url,
    args: ["--policy", file, "--root", a],
  });
  try {
    await server.waitForDaemon("oneroot");
    await server.upload("oneroot", "x.txt", new TextEncoder().encode("in a"));
    assertEquals(await Deno.readTextFile(`${a}/x.txt`), "in a");
    await server.upload("oneroot", `${a}/y.txt`, new TextEncoder().encode("abs"));
    assertEquals(await Deno.readTextFile(`${a}/y.txt`), "abs");
    await assertRejects(() => server.upload("oneroot", `${b}/z.txt`, new Uint8Array(1)));
  } finally {
    await daemon.stop();
    await Deno.remove(a, { recursive: true });
    await Deno.remove(b, { recursive: true });
    await Deno.remove(file);
  }
  // The policy file's root alone confines too.
  const c = await Deno.realPath(await Deno.makeTempDir({ prefix: "sandd-root-c-" }));
  const file2 = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(file2, JSON.stringify({ root: c }));
  const only = new TestDaemon({ id: "fileroot", url: server.url, args: ["--policy", file2] });
  try {
    await server.waitForDaemon("fileroot");
    await server.upload("fileroot", "w.txt", new TextEncoder().encode("in c"));
    assertEquals(await Deno.readTextFile(`${c}/w.txt`), "in c");
    await assertRejects(() => server.download("fileroot", "/etc/hostname"));
  } finally {
    await only.stop();
    await Deno.remove(c, { recursive: true });
    await Deno.remove(file2);
  }
});

Deno.test("cli: --root is the policy's root, --env-allow fills envAllow, --token adds a warning", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir());
  try {
    const config = parseDaemonArgs(
      ["--server-url", "ws://h/ws", "--root", dir, "--env-allow", "LANG", "--env-allow", "APP_*"],
      {},
    );
    assertEquals(config.policy.root, dir);
    assertEquals(config.policy.envAllow, ["LANG", "APP_*"]);
    assertEquals(config.warnings, []);
    const flagged = parseDaemonArgs(["--server-url", "ws://h/ws", "--token", TOKEN], {});
    assertEquals(flagged.warnings.length, 1);
    assert(!flagged.warnings[0]!.includes(TOKEN), flagged.warnings[0]);
    assertEquals(
      parseDaemonArgs(["--server-url", "ws://h/ws"], { SANDD_TOKEN: TOKEN }).warnings,
      [],
    );
  } finally {
    await Deno.remove(dir);
  }
});
