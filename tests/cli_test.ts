// The `sandd` program as users run it: subcommand dispatch, help, usage errors and their documented exit codes,
// `sandd serve` (listening, /health, draining on SIGTERM and SIGINT with exit 0), client tokens, an unreachable
// controller and the config file's profiles. Everything runs as child processes.
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { sandd, startFleet, startServe, waitForWorker } from "./_cli.ts";
import { TestDaemon } from "./_daemon.ts";
import { EXIT } from "../daemon/commands/exit_codes.ts";
import { resolveConnection } from "../daemon/commands/config.ts";
import { USAGE } from "../daemon/cli.ts";

/** A loopback port nothing listens on (bound, then closed). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("cli: help for sandd, every command and the topics; the worker's own --help is unchanged", async () => {
  const main = await sandd(["help"]);
  assertEquals(main.code, 0, main.stderr);
  for (
    const name of [
      "daemon",
      "serve",
      "daemons",
      "exec",
      "shell",
      "ps",
      "logs",
      "kill",
      "attach",
      "cp",
      "ls",
      "stat",
      "rm",
      "mkdir",
      "mv",
      "broadcast",
      "forward",
    ]
  ) {
    assertStringIncludes(main.stdout, `  ${name} `);
  }
  const results = await Promise.all([
    sandd(["exec", "--help"]),
    sandd(["help", "cp"]),
    sandd(["serve", "-h"]),
    sandd(["help", "exit-codes"]),
    sandd(["help", "config"]),
    sandd(["--help"]),
    sandd(["help", "daemon"]),
  ]);
  for (const r of results) assertEquals(r.code, 0, r.stderr);
  const [exec, cp, serve, codes, config, bare, daemon] = results;
  assertStringIncludes(exec!.stdout, "Usage: sandd exec WORKER");
  assertStringIncludes(cp!.stdout, "Usage: sandd cp");
  assertStringIncludes(serve!.stdout, "--client-token-file");
  assertStringIncludes(codes!.stdout, "65   unknown worker");
  assertStringIncludes(config!.stdout, "config.json");
  assertEquals(bare!.stdout.trim(), USAGE);
  assertEquals(daemon!.stdout.trim(), USAGE);
});

Deno.test("cli: bad input fails with exit 64 and one 'sandd:' line naming the problem", async () => {
  const cases: [string[], string][] = [
    [["bogus"], "Unknown command 'bogus'"],
    [["exec"], "Missing WORKER"],
    [["exec", "w"], "Missing CMD"],
    [["exec", "w", "--bogus", "--", "true"], "--bogus"],
    [["exec", "w", "--timeout", "soon", "--", "true"], "--timeout must be a number of seconds"],
    [["exec", "w", "--env", "NOEQUALS", "--", "true"], "--env must be KEY=VALUE, got 'NOEQUALS'"],
    [["cp", "a", "b"], "One side must be WORKER:PATH"],
    [["cp", "w1:/a", "w2:/b"], "between two workers"],
    [["cp", "only-one"], "Expected SRC and DST"],
    [["ls", "w:"], "Bad WORKER:PATH 'w:': the path is empty"],
    [["ls", "/tmp/local"], "expected WORKER:PATH"],
    [["ls", "bad id!:/tmp"], "bad worker id"],
    [["kill", "w", "p1", "-s", "SIGBOGUS"], "Unknown signal 'SIGBOGUS'"],
    [["logs", "w"], "Missing PROC"],
    [["daemons", "--label", "novalue"], "--label must be KEY=VALUE"],
    [["daemons", "--url", "ftp://x"], "Bad controller URL 'ftp://x'"],
    [["serve", "--port", "99999"], "--port must be an integer from 0 to 65535"],
    [["serve", "--cert", "/x"], "--cert and --key go together"],
    [["serve", "--backlog", "lots"], "--backlog must be an integer from 0 to 65535, got 'lots'"],
    [["serve", "--backlog", "70000"], "--backlog must be an integer from 0 to 65535"],
    [["help", "nothing"], "Unknown help topic 'nothing'"],
  ];
  const results = await Promise.all(cases.map(([args]) => sandd(args)));
  cases.forEach(([args, needle], i) => {
    const r = results[i]!;
    assertEquals(r.code, EXIT.USAGE, `${args.join(" ")}: ${r.stderr}`);
    assert(r.stderr.startsWith("sandd: "), `${args.join(" ")}: ${r.stderr}`);
    assertStringIncludes(r.stderr, needle, args.join(" "));
    assertEquals(r.stdout, "", args.join(" "));
  });
});

Deno.test("cli: an unreachable controller is exit 69 naming the URL", async () => {
  const url = `http://127.0.0.1:${closedPort()}`;
  const [byFlag, byEnv] = await Promise.all([
    sandd(["daemons", "--url", url]),
    sandd(["exec", "w", "--", "true"], { env: { SANDD_URL: url } }),
  ]);
  for (const r of [byFlag, byEnv]) {
    assertEquals(r.code, EXIT.UNAVAILABLE, r.stderr);
    assertStringIncludes(r.stderr, `sandd: Cannot reach the controller at ${url}`);
  }
});

Deno.test("cli: profiles from the config file, and bad config is exit 78", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sandd-cli-config-" });
  try {
    const config = `${dir}/config.json`;
    await Deno.writeTextFile(`${dir}/lab.token`, "lab-token-0123456789\n");
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        default: "lab",
        profiles: {
          lab: { url: "http://10.1.1.1:8765", tokenFile: `${dir}/lab.token` },
          prod: { url: "https://ctl.example:9000/", token: "prod-token-0123456789" },
        },
      }),
    );
    const env = { SANDD_CONFIG: config };
    assertEquals(resolveConnection({}, env), {
      url: "http://10.1.1.1:8765",
      token: "lab-token-0123456789",
      caCerts: [],
    });
    assertEquals(resolveConnection({ profile: "prod" }, env), {
      url: "https://ctl.example:9000",
      token: "prod-token-0123456789",
      caCerts: [],
      profile: "prod",
    });
    // The environment beats the default profile, flags beat everything.
    assertEquals(
      resolveConnection({}, { ...env, SANDD_URL: "http://env:1", SANDD_API_TOKEN: "t" }).url,
      "http://env:1",
    );
    assertEquals(
      resolveConnection({ url: "http://flag:2", profile: "prod" }, env).url,
      "http://flag:2",
    );
    assertEquals(resolveConnection({}, { XDG_CONFIG_HOME: dir }).url, "http://127.0.0.1:8765");

    const unknown = await sandd(["daemons", "--profile", "nope"], { env });
    assertEquals(unknown.code, EXIT.CONFIG, unknown.stderr);
    assertStringIncludes(unknown.stderr, "Unknown profile 'nope'");
    await Deno.writeTextFile(`${dir}/bad.json`, "{ not json");
    const bad = await sandd(["daemons"], { env: { SANDD_CONFIG: `${dir}/bad.json` } });
    assertEquals(bad.code, EXIT.CONFIG, bad.stderr);
    assertStringIncludes(bad.stderr, "is not JSON");
    const noFile = await sandd(["daemons", "--token-file", `${dir}/missing.token`]);
    assertEquals(noFile.code, EXIT.CONFIG, noFile.stderr);
    assertStringIncludes(noFile.stderr, "missing.token");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: sandd serve prints its URL, serves /health and /stats, and drains on SIGTERM and SIGINT with exit 0", async () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    const serve = await startServe();
    assert(/^http:\/\/127\.0\.0\.1:\d+$/.test(serve.url), serve.url);
    const health = await fetch(`${serve.url}/health`);
    assertEquals((await health.json()).status, "ok");
    const daemon = new TestDaemon({ id: `drain-${signal}`, url: serve.wsUrl });
    try {
      await waitForWorker(serve.url, `drain-${signal}`);
      const listed = await sandd(["daemons", "--json", "--url", serve.url]);
      assertEquals(listed.code, 0, listed.stderr);
      assertEquals(JSON.parse(listed.stdout).daemons[0].id, `drain-${signal}`);
      const stats = await (await fetch(`${serve.url}/stats`)).json();
      assertEquals(stats.daemons, 1);
      const { code, stderr } = await serve.stop(signal);
      assertEquals(code, 0, stderr);
      assertStringIncludes(stderr, `${signal}: closing`);
    } finally {
      await daemon.stop();
      await serve.stop();
    }
  }
});

Deno.test("cli: client tokens: none or a wrong one is exit 77, a read-only one cannot exec (77), a good one works", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sandd-cli-tokens-" });
  try {
    const admin = "admin-token-0123456789abcdef";
    const reader = "reader-token-0123456789abcdef";
    await Deno.writeTextFile(`${dir}/clients`, `# clients\n${admin}\n${reader} read\n`);
    await Deno.writeTextFile(`${dir}/admin.token`, `${admin}\n`);
    await using fleet = await startFleet(
      [{ id: "tok-w" }],
      ["--client-token-file", `${dir}/clients`],
      admin,
    );
    const url = fleet.serve.url;
    const [none, wrong, good, fromFile, readOnlyList, readOnlyExec] = await Promise.all([
      sandd(["daemons", "--url", url]),
      sandd(["daemons", "--url", url, "--token", "wrong-token-0123456789abcdef"]),
      sandd(["daemons", "--url", url], { env: { SANDD_API_TOKEN: admin } }),
      sandd(["exec", "tok-w", "--url", url, "--token-file", `${dir}/admin.token`, "--", "true"]),
      sandd(["daemons", "--json", "--url", url], { env: { SANDD_API_TOKEN: reader } }),
      sandd(["exec", "tok-w", "--url", url, "--", "true"], { env: { SANDD_API_TOKEN: reader } }),
    ]);
    assertEquals(none.code, EXIT.NO_PERMISSION, none.stderr);
    assertEquals(wrong.code, EXIT.NO_PERMISSION, wrong.stderr);
    assertEquals(good.code, 0, good.stderr);
    assertStringIncludes(good.stdout, "tok-w");
    assertEquals(fromFile.code, 0, fromFile.stderr);
    assertEquals(readOnlyList.code, 0, readOnlyList.stderr);
    assertEquals(readOnlyExec.code, EXIT.NO_PERMISSION, readOnlyExec.stderr);
    // A daemon's credential file format is not the client file's: a malformed client token file is exit 78.
    await Deno.writeTextFile(`${dir}/bad`, "short\n");
    const bad = await sandd(["serve", "--port", "0", "--client-token-file", `${dir}/bad`]);
    assertEquals(bad.code, EXIT.CONFIG, bad.stderr);
    assertStringIncludes(bad.stderr, "Line 1");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The accept queue (`ss`'s Send-Q of a listening socket) of the TCP listener on `port`, or null without `ss`. */
async function listenBacklog(port: number): Promise<number | null> {
  let output;
  try {
    output = await new Deno.Command("ss", { args: ["-Hltn", `sport = :${port}`], stderr: "null" })
      .output();
  } catch {
    return null;
  }
  const fields = new TextDecoder().decode(output.stdout).trim().split(/\s+/);
  return fields[0] === "LISTEN" ? Number(fields[2]) : NaN;
}

Deno.test({
  name:
    "cli: sandd serve raises its listener's accept queue (--backlog; default: the system's maximum)",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const somaxconn = Number(await Deno.readTextFile("/proc/sys/net/core/somaxconn"));
    const cases: [string[], number][] = [
      [[], Math.min(65535, somaxconn)],
      [["--backlog", "100"], 100],
      // 0 keeps what Deno listens with
      [["--backlog", "0"], Math.min(511, somaxconn)],
    ];
    for (const [args, expected] of cases) {
      const serve = await startServe(args);
      try {
        const backlog = await listenBacklog(Number(new URL(serve.url).port));
        if (backlog === null) {
          console.log("skipped: no ss (iproute2) to read the accept queue with");
          return;
        }
        assertEquals(backlog, expected, args.join(" ") || "(default)");
      } finally {
        const { code, stderr } = await serve.stop();
        assertEquals(code, 0, stderr);
        assert(!stderr.includes("warning: --backlog"), stderr);
      }
    }
  },
});
