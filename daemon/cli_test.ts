// Unit tests of the daemon's command-line parser (daemon/cli.ts): every flag, the environment fallbacks, the
// refusal of every bad value with a UsageError that names the flag and the value, --help and --version, and the
// entry point's exit codes. tests/security_policy_test.ts covers the --root/--env-allow policy fields and the
// --token warning; they are not repeated here.
import {
  assert,
  assertEquals,
  assertStrictEquals,
  assertStringIncludes,
  assertThrows,
} from "../tests/_assert.ts";
import { VERSION } from "@sandd/protocol/version";
import { parseDaemonArgs, USAGE, UsageError } from "./cli.ts";

const URL_ARGS = ["--server-url", "ws://127.0.0.1:8765/ws"];

/** A temporary directory for files the parser reads, removed on dispose. */
async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.realPath(await Deno.makeTempDir({ prefix: "sandd-cli-" }));
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }),
  };
}

Deno.test("cli: defaults with only a server URL", () => {
  const config = parseDaemonArgs(URL_ARGS, {});
  assertEquals(config, {
    help: false,
    version: false,
    serverUrl: "ws://127.0.0.1:8765/ws",
    serverUrls: ["ws://127.0.0.1:8765/ws"],
    id: Deno.hostname(),
    labels: {},
    caCerts: [],
    proxy: null,
    proxies: [null],
    retainBytes: 4 * 1024 * 1024,
    detachedHoldMs: 300_000,
    orphanTimeoutMs: 3_600_000,
    exitRetentionMs: 600_000,
    killGraceMs: 5_000,
    reconnectInitialMs: 1_000,
    reconnectMaxMs: 30_000,
    stateDir: "/var/lib/sandd",
    logLevel: "info",
    logFormat: "text",
    warnings: [],
    policy: {},
  });
  assertStrictEquals(config.token, undefined);
  assertStrictEquals(config.root, undefined);
  assertStrictEquals(config.policyFile, undefined);
});

Deno.test("cli: environment variables fill in for missing flags, and flags win over them", () => {
  const env = {
    SANDD_SERVER_URL: "wss://controller.example:443/ws",
    SANDD_DAEMON_ID: "from-env",
    SANDD_TOKEN: "env-token",
  };
  const fromEnv = parseDaemonArgs([], env);
  assertStrictEquals(fromEnv.serverUrl, "wss://controller.example:443/ws");
  assertStrictEquals(fromEnv.id, "from-env");
  assertStrictEquals(fromEnv.token, "env-token");
  assertEquals(fromEnv.warnings, []);

  const fromFlags = parseDaemonArgs(
    [...URL_ARGS, "--daemon-id", "from-flag", "--token", "flag-token"],
    env,
  );
  assertStrictEquals(fromFlags.serverUrl, "ws://127.0.0.1:8765/ws");
  assertStrictEquals(fromFlags.id, "from-flag");
  assertStrictEquals(fromFlags.token, "flag-token");
  assertStrictEquals(fromFlags.warnings.length, 1);
  assertStringIncludes(fromFlags.warnings[0]!, "--token-file");

  // An empty SANDD_TOKEN is no token.
  assertStrictEquals(parseDaemonArgs(URL_ARGS, { SANDD_TOKEN: "" }).token, undefined);
});

Deno.test("cli: several controllers: --server-url repeated, or a comma-separated SANDD_SERVER_URL", () => {
  const a = "ws://127.0.0.1:8765/ws";
  const b = "wss://controller-b.example:443/ws";
  const flags = parseDaemonArgs(["--server-url", a, "--server-url", b], {});
  assertEquals(flags.serverUrls, [a, b]);
  assertStrictEquals(flags.serverUrl, a);
  assertEquals(flags.proxies, [null, null]);
  // The environment's list (spaces and empty entries ignored); flags replace it whole.
  const env = { SANDD_SERVER_URL: ` ${b} ,${a},` };
  assertEquals(parseDaemonArgs([], env).serverUrls, [b, a]);
  assertEquals(parseDaemonArgs(["--server-url", a], env).serverUrls, [a]);
  // Each URL gets its own proxy: the environment's proxy never applies to a loopback controller, nor to a host
  // NO_PROXY lists.
  const proxied = parseDaemonArgs(
    ["--server-url", a, "--server-url", b, "--server-url", "wss://c.internal/ws"],
    {
      HTTPS_PROXY: "http://proxy.corp:3128",
      HTTP_PROXY: "http://proxy.corp:3128",
      NO_PROXY: ".internal",
    },
  );
  assertEquals(proxied.proxies.map((p) => p?.href ?? null), [
    null,
    "http://proxy.corp:3128/",
    null,
  ]);
  assertStrictEquals(proxied.proxy, null);
  // --proxy applies to every one of them.
  const explicit = parseDaemonArgs([
    "--server-url",
    a,
    "--server-url",
    b,
    "--proxy",
    "socks5h://s:1080",
  ], {});
  assertEquals(explicit.proxies.map((p) => p?.href), ["socks5h://s:1080", "socks5h://s:1080"]);
  // A bad one among good ones is named, from a flag or the environment.
  for (
    const [args, environment, bad] of [
      [["--server-url", a, "--server-url", "http://b/ws"], {}, "http://b/ws"],
      [["--server-url", "tcp://x", "--server-url", a], {}, "tcp://x"],
      [["--server-url", a, "--server-url", "ws://[bad/ws"], {}, "ws://[bad/ws"],
      [[], { SANDD_SERVER_URL: `${a},https://c/ws` }, "https://c/ws"],
    ] as [string[], Record<string, string>, string][]
  ) {
    const error = assertThrows(
      () => parseDaemonArgs(args, environment),
      UsageError,
      "--server-url",
    );
    assertStringIncludes(error.message, `'${bad}'`);
  }
  // A list of nothing but commas is no URL at all.
  assertThrows(
    () => parseDaemonArgs([], { SANDD_SERVER_URL: " , ," }),
    UsageError,
    "SANDD_SERVER_URL",
  );
  assertStringIncludes(USAGE, "round robin");
});

Deno.test("cli: connection, process, reconnect and logging flags", () => {
  const config = parseDaemonArgs(
    [
      "--server-url=wss://[::1]:9443/ws?x=1",
      "--daemon-id",
      "worker-1.a_b:c@d",
      "--label",
      "role=gpu",
      "--label",
      "zone=eu=west",
      "--label",
      "empty=",
      "--retain-bytes",
      "65536",
      "--orphan-timeout",
      "0",
      "--exit-retention",
      "1.5",
      "--kill-grace",
      "0.25",
      "--reconnect-initial",
      "0.01",
      "--reconnect-max",
      "120",
      "--log-level",
      "debug",
      "--log-format",
      "json",
    ],
    {},
  );
  assertStrictEquals(config.serverUrl, "wss://[::1]:9443/ws?x=1");
  assertStrictEquals(config.id, "worker-1.a_b:c@d");
  assertEquals(config.labels, { role: "gpu", zone: "eu=west", empty: "" });
  assertStrictEquals(config.retainBytes, 65536);
  assertStrictEquals(config.orphanTimeoutMs, 0);
  assertStrictEquals(config.exitRetentionMs, 1500);
  assertStrictEquals(config.killGraceMs, 250);
  assertStrictEquals(config.reconnectInitialMs, 10);
  assertStrictEquals(config.reconnectMaxMs, 120_000);
  assertStrictEquals(config.logLevel, "debug");
  assertStrictEquals(config.logFormat, "json");
  for (const level of ["info", "warning", "error"] as const) {
    assertStrictEquals(parseDaemonArgs([...URL_ARGS, "--log-level", level], {}).logLevel, level);
  }
  assertStrictEquals(parseDaemonArgs([...URL_ARGS, "--log-format", "text"], {}).logFormat, "text");
  // A repeated single-value flag keeps the last value.
  assertStrictEquals(
    parseDaemonArgs([...URL_ARGS, "--daemon-id", "a", "--daemon-id", "b"], {}).id,
    "b",
  );
});

Deno.test("cli: policy flags fill the policy fields, --policy names the file without reading it", () => {
  const config = parseDaemonArgs(
    [
      ...URL_ARGS,
      "--policy",
      "/nonexistent/policy.json",
      "--allow",
      "ls",
      "--allow",
      "/usr/bin/**",
      "--deny",
      "rm",
      "--no-shell",
      "--no-pty",
      "--no-files",
      "--run-as",
      "nobody",
      "--env-strip",
      "AWS_*",
      "--env-strip",
      "*_TOKEN",
      "--env-set",
      "LANG=C.UTF-8",
      "--env-set",
      "OPTS=a=b",
      "--env-set",
      "EMPTY=",
      "--max-processes",
      "8",
      "--max-sessions",
      "2",
      "--default-timeout",
      "1.5",
      "--max-timeout",
      "0.001",
      "--cpu-seconds",
      "30",
      "--memory-bytes",
      "536870912",
      "--max-output-bytes",
      "1048576",
    ],
    {},
  );
  assertStrictEquals(config.policyFile, "/nonexistent/policy.json");
  assertEquals(config.policy, {
    allow: ["ls", "/usr/bin/**"],
    deny: ["rm"],
    noShell: true,
    noPty: true,
    noFiles: true,
    runAs: "nobody",
    envStrip: ["AWS_*", "*_TOKEN"],
    envSet: { LANG: "C.UTF-8", OPTS: "a=b", EMPTY: "" },
    maxProcesses: 8,
    maxSessions: 2,
    defaultTimeoutMs: 1500,
    maxTimeoutMs: 1,
    cpuSeconds: 30,
    memoryBytes: 536870912,
    maxOutputBytes: 1048576,
  });
});

Deno.test("cli: --token-file is read and trimmed and wins over --token and SANDD_TOKEN", async () => {
  await using dir = await tempDir();
  const file = `${dir.path}/token`;
  await Deno.writeTextFile(file, "  file-token\n");
  const config = parseDaemonArgs([...URL_ARGS, "--token-file", file], { SANDD_TOKEN: "env" });
  assertStrictEquals(config.token, "file-token");
  assertEquals(config.warnings, []);
  assertStrictEquals(
    parseDaemonArgs([...URL_ARGS, "--token", "flag", "--token-file", file], {}).token,
    "file-token",
  );
  // A token file holding only white space gives no token.
  await Deno.writeTextFile(file, " \n");
  assertStrictEquals(parseDaemonArgs([...URL_ARGS, "--token-file", file], {}).token, undefined);

  const missing = `${dir.path}/missing`;
  const error = assertThrows(
    () => parseDaemonArgs([...URL_ARGS, "--token-file", missing], {}),
    UsageError,
    "--token-file",
  );
  assertStringIncludes(error.message, missing);
});

Deno.test("cli: --ca-cert files are read in order, and a missing one is refused", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(`${dir.path}/a.pem`, "PEM A\n");
  await Deno.writeTextFile(`${dir.path}/b.pem`, "PEM B\n");
  const config = parseDaemonArgs(
    [...URL_ARGS, "--ca-cert", `${dir.path}/a.pem`, "--ca-cert", `${dir.path}/b.pem`],
    {},
  );
  assertEquals(config.caCerts, ["PEM A\n", "PEM B\n"]);
  const error = assertThrows(
    () => parseDaemonArgs([...URL_ARGS, "--ca-cert", `${dir.path}/c.pem`], {}),
    UsageError,
    "--ca-cert",
  );
  assertStringIncludes(error.message, `${dir.path}/c.pem`);
});

Deno.test("cli: --root is resolved to its real path and must be a directory", async () => {
  await using dir = await tempDir();
  await Deno.mkdir(`${dir.path}/real`);
  await Deno.symlink(`${dir.path}/real`, `${dir.path}/alias`);
  await Deno.writeTextFile(`${dir.path}/file`, "x");
  const config = parseDaemonArgs([...URL_ARGS, "--root", `${dir.path}/alias/.`], {});
  assertStrictEquals(config.root, `${dir.path}/real`);
  assertStrictEquals(config.policy.root, `${dir.path}/real`);
  for (const bad of [`${dir.path}/file`, `${dir.path}/missing`]) {
    const error = assertThrows(
      () => parseDaemonArgs([...URL_ARGS, "--root", bad], {}),
      UsageError,
      "--root must be a directory",
    );
    assertStringIncludes(error.message, bad);
  }
});

Deno.test("cli: every bad value is a UsageError naming the flag and the value", () => {
  const cases: [args: string[], flag: string, value: string][] = [
    [["--server-url", "http://h/ws"], "--server-url", "http://h/ws"],
    [["--server-url", "ws://"], "--server-url", "ws://"],
    [[...URL_ARGS, "--label", "novalue"], "--label", "novalue"],
    [[...URL_ARGS, "--label", "=v"], "--label", "=v"],
    [[...URL_ARGS, "--daemon-id", "has space"], "--daemon-id", "has space"],
    [[...URL_ARGS, "--daemon-id", "x".repeat(129)], "--daemon-id", "x".repeat(129)],
    [[...URL_ARGS, "--daemon-id", ""], "--daemon-id", "''"],
    [[...URL_ARGS, "--retain-bytes", "65535"], "--retain-bytes", "65535"],
    [[...URL_ARGS, "--retain-bytes", "lots"], "--retain-bytes", "lots"],
    [[...URL_ARGS, "--retain-bytes", "Infinity"], "--retain-bytes", "Infinity"],
    [[...URL_ARGS, "--retain-bytes", " "], "--retain-bytes", "' '"],
    [[...URL_ARGS, "--orphan-timeout=-1"], "--orphan-timeout", "-1"],
    [[...URL_ARGS, "--exit-retention", "soon"], "--exit-retention", "soon"],
    [[...URL_ARGS, "--kill-grace=-0.5"], "--kill-grace", "-0.5"],
    [[...URL_ARGS, "--kill-grace", ""], "--kill-grace", "''"],
    [[...URL_ARGS, "--reconnect-initial", "0"], "--reconnect-initial", "0"],
    [[...URL_ARGS, "--reconnect-max", "0.001"], "--reconnect-max", "0.001"],
    [[...URL_ARGS, "--env-set", "NOEQUALS"], "--env-set", "NOEQUALS"],
    [[...URL_ARGS, "--env-set", "=x"], "--env-set", "=x"],
    [[...URL_ARGS, "--max-processes", "0"], "--max-processes", "0"],
    [[...URL_ARGS, "--max-processes", "1.5"], "--max-processes", "1.5"],
    [[...URL_ARGS, "--max-sessions=-1"], "--max-sessions", "-1"],
    [[...URL_ARGS, "--max-sessions", ""], "--max-sessions", "''"],
    [[...URL_ARGS, "--cpu-seconds", "ten"], "--cpu-seconds", "ten"],
    [[...URL_ARGS, "--memory-bytes", "9007199254740992"], "--memory-bytes", "9007199254740992"],
    [[...URL_ARGS, "--max-output-bytes", "0"], "--max-output-bytes", "0"],
    [[...URL_ARGS, "--default-timeout", "0"], "--default-timeout", "0"],
    [[...URL_ARGS, "--max-timeout=-1"], "--max-timeout", "-1"],
    [[...URL_ARGS, "--log-level", "verbose"], "--log-level", "verbose"],
    [[...URL_ARGS, "--log-format", "xml"], "--log-format", "xml"],
  ];
  for (const [args, flag, value] of cases) {
    const error = assertThrows(() => parseDaemonArgs(args, {}), UsageError, flag, args.join(" "));
    assertStringIncludes(error.message, value, args.join(" "));
    assertStrictEquals(error.code, "USAGE");
    assertStrictEquals(error.name, "UsageError");
  }
});

Deno.test("cli: unknown flags, stray arguments and missing values are UsageErrors naming them", () => {
  const cases: [args: string[], named: string][] = [
    [[...URL_ARGS, "--bogus"], "--bogus"],
    [[...URL_ARGS, "--bogus=1"], "--bogus"],
    [[...URL_ARGS, "stray"], "stray"],
    [[...URL_ARGS, "--daemon-id"], "--daemon-id"],
    [[...URL_ARGS, "--no-shell=yes"], "--no-shell"],
    [[...URL_ARGS, "-x"], "-x"],
    // A value that starts with a dash needs the --flag=value form; the short form is refused, naming the flag.
    [[...URL_ARGS, "--kill-grace", "-1"], "--kill-grace"],
  ];
  for (const [args, named] of cases) {
    assertThrows(() => parseDaemonArgs(args, {}), UsageError, named, args.join(" "));
  }
  // No URL at all: the message says how to give one.
  const missing = assertThrows(() => parseDaemonArgs([], {}), UsageError, "--server-url");
  assertStringIncludes(missing.message, "SANDD_SERVER_URL");
  assertThrows(() => parseDaemonArgs([], { SANDD_SERVER_URL: "" }), UsageError, "--server-url");
  assertThrows(
    () => parseDaemonArgs([], { SANDD_SERVER_URL: "tcp://h" }),
    UsageError,
    "tcp://h",
  );
});

Deno.test("cli: --help and --version need no server URL", () => {
  const help = parseDaemonArgs(["--help"], {});
  assertStrictEquals(help.help, true);
  assertStrictEquals(help.version, false);
  const version = parseDaemonArgs(["--version"], {});
  assertStrictEquals(version.version, true);
  assertStrictEquals(version.help, false);
  // Still, a malformed value next to them is refused.
  assertThrows(() => parseDaemonArgs(["--help", "--log-level", "loud"], {}), UsageError, "loud");
});

Deno.test("cli: the usage text documents exactly the flags the parser accepts", () => {
  const documented = new Set(USAGE.match(/^ {2}--[a-z-]+/gm)!.map((flag) => flag.trim()));
  const booleans = new Set(["--no-shell", "--no-pty", "--no-files", "--help", "--version"]);
  const sample: Record<string, string> = {
    "--server-url": "ws://h/ws",
    "--daemon-id": "d",
    "--label": "k=v",
    "--token": "t",
    "--token-file": "/dev/null",
    "--ca-cert": "/dev/null",
    "--proxy": "http://p:1",
    "--retain-bytes": "65536",
    "--detached-hold": "1",
    "--orphan-timeout": "1",
    "--exit-retention": "1",
    "--kill-grace": "1",
    "--root": "/",
    "--state-dir": "/tmp/sandd-state",
    "--policy": "/nonexistent.json",
    "--allow": "ls",
    "--deny": "rm",
    "--env-allow": "LANG",
    "--run-as": "nobody",
    "--env-strip": "X",
    "--env-set": "K=V",
    "--max-processes": "1",
    "--max-sessions": "1",
    "--default-timeout": "1",
    "--max-timeout": "1",
    "--cpu-seconds": "1",
    "--memory-bytes": "1",
    "--max-output-bytes": "1",
    "--reconnect-initial": "1",
    "--reconnect-max": "1",
    "--log-level": "info",
    "--log-format": "text",
    // port forwarding
    "--forward": "3000,8000-8999",
    "--forward-host": "::1",
    "--max-tunnels": "4",
  };
  assertEquals(
    [...documented].sort(),
    [...Object.keys(sample), ...booleans].sort(),
    "the flags in USAGE",
  );
  for (const flag of documented) {
    const args = booleans.has(flag) ? [flag] : [flag, sample[flag]!];
    parseDaemonArgs(flag === "--server-url" ? args : [...URL_ARGS, ...args], {});
  }
  assertStringIncludes(USAGE, `sandd ${VERSION}`);
});

Deno.test("cli: the entry point prints usage and version with exit 0, and exits 2 on a bad flag", async () => {
  const main = new URL("./main.ts", import.meta.url).pathname;
  const run = async (...args: string[]) => {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", main, ...args],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decoder = new TextDecoder();
    return {
      code: output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  };
  const [help, version, bad] = await Promise.all([
    run("--help"),
    run("--version"),
    run("--server-url", "ws://127.0.0.1:1/ws", "--retain-bytes", "12"),
  ]);
  assertStrictEquals(help.code, 0, help.stderr);
  assertStrictEquals(help.stdout.trim(), USAGE);
  assertStrictEquals(version.code, 0, version.stderr);
  assertStrictEquals(version.stdout, `sandd ${VERSION}\n`);
  assertStrictEquals(bad.code, 2, bad.stderr);
  assertStrictEquals(bad.stdout, "");
  assert(
    bad.stderr.startsWith("sandd: --retain-bytes must be a number >= 65536, got '12'"),
    bad.stderr,
  );
  assertStringIncludes(bad.stderr, "sandd --help");
});

// --- port forwarding flags ---
Deno.test("cli: --forward takes none, all or ports and ranges; --max-tunnels a positive integer", () => {
  const parsed = parseDaemonArgs(
    [...URL_ARGS, "--forward", "3000,8000-8999", "--max-tunnels", "8"],
    {},
  );
  assertEquals(parsed.policy.forward, "3000,8000-8999");
  assertEquals(parsed.policy.maxTunnels, 8);
  assertEquals(parseDaemonArgs([...URL_ARGS, "--forward", "none"], {}).policy.forward, "none");
  for (const bad of ["", "some", "0", "70000", "9-8", "80,,81"]) {
    assertThrows(
      () => parseDaemonArgs([...URL_ARGS, "--forward", bad], {}),
      UsageError,
      "--forward",
    );
  }
  assertThrows(() => parseDaemonArgs([...URL_ARGS, "--max-tunnels", "0"], {}), UsageError);
});
