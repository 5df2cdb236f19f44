// The operator commands against a real `sandd serve` and real daemons, all child processes: daemons, exec (exit
// codes, live output, stdin with EOF, timeout, --json), cp of files and directories both ways compared byte for
// byte, ls/stat/mkdir/mv/rm, ps/logs/kill/attach of a process left running, broadcast, and unknown workers,
// processes and files with their documented exit codes.
import { assert, assertEquals, assertStringIncludes } from "./_assert.ts";
import { type Fleet, SANDD, sandd, startFleet } from "./_cli.ts";
import { DAEMON_PERMISSION_FLAGS } from "../daemon/permissions.ts";
import { EXIT } from "../daemon/commands/exit_codes.ts";

async function withFleet(fn: (fleet: Fleet) => Promise<void>): Promise<void> {
  await using fleet = await startFleet([
    { id: "cli-a", args: ["--label", "role=web", "--env-set", "FAIL=0"] },
    { id: "cli-b", args: ["--label", "role=db", "--env-set", "FAIL=5"] },
  ]);
  await fn(fleet);
}

function randomBytes(n: number): Uint8Array {
  const bytes = new Uint8Array(n);
  for (let at = 0; at < n; at += 65536) crypto.getRandomValues(bytes.subarray(at, at + 65536));
  return bytes;
}

async function sameTree(a: string, b: string): Promise<void> {
  const list = async (root: string) => {
    const out: string[] = [];
    const walk = async (dir: string, rel: string) => {
      for await (const entry of Deno.readDir(dir)) {
        const path = rel ? `${rel}/${entry.name}` : entry.name;
        out.push(`${path}${entry.isDirectory ? "/" : ""}`);
        if (entry.isDirectory) await walk(`${dir}/${entry.name}`, path);
      }
    };
    await walk(root, "");
    return out.sort();
  };
  const left = await list(a);
  assertEquals(left, await list(b));
  for (const path of left.filter((p) => !p.endsWith("/"))) {
    assertEquals(await Deno.readFile(`${a}/${path}`), await Deno.readFile(`${b}/${path}`), path);
  }
}

Deno.test("cli: daemons, exec exit codes, live output, stdin with EOF, --timeout, --json, unknown worker", async () => {
  await withFleet(async ({ env }) => {
    const [table, asJson, byLabel] = await Promise.all([
      sandd(["daemons"], { env }),
      sandd(["daemons", "--json"], { env }),
      sandd(["daemons", "--label", "role=db", "--json"], { env }),
    ]);
    assertEquals(table.code, 0, table.stderr);
    assertStringIncludes(table.stdout, "ID");
    assertStringIncludes(table.stdout, "role=web");
    const listed = JSON.parse(asJson.stdout).daemons;
    assertEquals(listed.map((d: { id: string }) => d.id), ["cli-a", "cli-b"]);
    assertEquals(listed[0].labels, { role: "web" });
    assertEquals(listed[0].processes, 0);
    assertEquals(JSON.parse(byLabel.stdout).daemons.map((d: { id: string }) => d.id), ["cli-b"]);

    const [seven, cat, split, shellString, json, timeout, unknown, missing] = await Promise.all([
      sandd(["exec", "cli-a", "--", "sh", "-c", "exit 7"], { env }),
      sandd(["exec", "cli-a", "--", "cat"], { env, stdin: "hi\n" }),
      sandd(["exec", "cli-a", "--", "sh", "-c", "echo out; echo err >&2; exit 3"], { env }),
      sandd(["exec", "cli-a", "--env", "X=42", "--cwd", "/tmp", "--", "echo $X $(pwd)"], { env }),
      sandd(["exec", "cli-b", "--json", "--", "sh", "-c", "printf x; exit 2"], { env }),
      sandd(["exec", "cli-a", "--timeout", "0.5", "--", "sleep", "30"], { env }),
      sandd(["exec", "nobody-here", "--", "true"], { env }),
      sandd(["exec", "cli-a", "--", "no-such-program-sandd"], { env }),
    ]);
    assertEquals(seven.code, 7, seven.stderr);
    assertEquals(cat.code, 0, cat.stderr);
    assertEquals(cat.stdout, "hi\n");
    assertEquals(split.code, 3);
    assertEquals(split.stdout, "out\n");
    assertEquals(split.stderr, "err\n");
    assertEquals(shellString.stdout, "42 /tmp\n", shellString.stderr);
    assertEquals(json.code, 2, json.stderr);
    const result = JSON.parse(json.stdout);
    assertEquals([result.exitCode, result.stdout, result.stderr], [2, "x", ""]);
    assertEquals(timeout.code, EXIT.TIMEOUT, timeout.stderr);
    assertStringIncludes(timeout.stderr, "timed out");
    assertEquals(unknown.code, EXIT.UNKNOWN_WORKER, unknown.stderr);
    assertStringIncludes(unknown.stderr, "nobody-here");
    assertEquals(missing.code, 127, missing.stderr);

    // A local reader that goes away stops the remote command; sandd exits as SIGPIPE would (141).
    const piped = await new Deno.Command("bash", {
      args: [
        "-c",
        `"$0" run ${
          DAEMON_PERMISSION_FLAGS.join(" ")
        } "$1" exec cli-a -- yes | head -1; echo "rc=\${PIPESTATUS[0]}"`,
        Deno.execPath(),
        SANDD,
      ],
      env,
      stdin: "null",
    }).output();
    assertEquals(new TextDecoder().decode(piped.stdout), "y\nrc=141\n");

    // Large binary stdin goes through whole and in order, EOF included.
    const big = randomBytes(3 * 1024 * 1024 + 17);
    const echoed = await sandd(["exec", "cli-b", "--", "cat"], { env, stdin: big });
    assertEquals(echoed.code, 0, echoed.stderr);
    assertEquals(echoed.stdoutBytes.length, big.length);
    assertEquals(echoed.stdoutBytes, big);
  });
});

Deno.test("cli: cp of a file and a directory both ways, byte for byte; ls, stat, mkdir, mv, rm; bad paths", async () => {
  await withFleet(async ({ env }) => {
    const work = await Deno.realPath(await Deno.makeTempDir({ prefix: "sandd-cli-cp-" }));
    try {
      const file = randomBytes(5 * 1024 * 1024 + 3);
      await Deno.writeFile(`${work}/file.bin`, file);
      await Deno.mkdir(`${work}/tree/sub/deeper`, { recursive: true });
      await Deno.writeFile(`${work}/tree/a.bin`, randomBytes(70_000));
      await Deno.writeTextFile(`${work}/tree/sub/b.txt`, "bee\n");
      await Deno.writeFile(`${work}/tree/sub/deeper/empty`, new Uint8Array());
      await Deno.mkdir(`${work}/remote`);
      await Deno.mkdir(`${work}/back`);

      // Up: a file to a new name, a directory into an existing directory (under its own name).
      const upFile = await sandd([
        "cp",
        "--json",
        `${work}/file.bin`,
        `cli-a:${work}/remote/up.bin`,
      ], {
        env,
      });
      assertEquals(upFile.code, 0, upFile.stderr);
      assertEquals(JSON.parse(upFile.stdout).bytes, file.length);
      assertEquals(await Deno.readFile(`${work}/remote/up.bin`), file);
      const upDir = await sandd(["cp", `${work}/tree`, `cli-a:${work}/remote`], { env });
      assertEquals(upDir.code, 0, upDir.stderr);
      assertEquals(upDir.stdout, "");
      assertEquals(upDir.stderr, "", "no progress bar when stderr is not a terminal");
      await sameTree(`${work}/tree`, `${work}/remote/tree`);

      // Down: the file into a directory, the tree to a new name.
      const downFile = await sandd(["cp", `cli-a:${work}/remote/up.bin`, `${work}/back`], { env });
      assertEquals(downFile.code, 0, downFile.stderr);
      assertEquals(await Deno.readFile(`${work}/back/up.bin`), file);
      const downDir = await sandd(["cp", `cli-a:${work}/remote/tree`, `${work}/back/tree2`], {
        env,
      });
      assertEquals(downDir.code, 0, downDir.stderr);
      await sameTree(`${work}/tree`, `${work}/back/tree2`);
      // stdin up, stdout down.
      const viaStdin = await sandd(["cp", "-", `cli-a:${work}/remote/stdin.txt`], {
        env,
        stdin: "from stdin\n",
      });
      assertEquals(viaStdin.code, 0, viaStdin.stderr);
      const viaStdout = await sandd(["cp", `cli-a:${work}/remote/stdin.txt`, "-"], { env });
      assertEquals(viaStdout.stdout, "from stdin\n");

      // The file-system commands.
      assertEquals((await sandd(["mkdir", "-p", `cli-a:${work}/remote/x/y`], { env })).code, 0);
      const mv = await sandd(["mv", `cli-a:${work}/remote/x`, `${work}/remote/z`], { env });
      assertEquals(mv.code, 0, mv.stderr);
      const ls = await sandd(["ls", `cli-a:${work}/remote`], { env });
      assertEquals(ls.stdout.split("\n").filter((l) => l), ["stdin.txt", "tree/", "up.bin", "z/"]);
      const lsJson = JSON.parse(
        (await sandd(["ls", "--json", `cli-a:${work}/remote`], { env })).stdout,
      );
      assertEquals(
        lsJson.entries.find((e: { path: string }) => e.path === "up.bin").size,
        file.length,
      );
      const stat = await sandd(["stat", "--json", `cli-a:${work}/remote/up.bin`], { env });
      assertEquals(JSON.parse(stat.stdout).type, "file");
      const rmDir = await sandd(["rm", `cli-a:${work}/remote/z`], { env });
      assert(rmDir.code !== 0, "rm of a directory needs -r");
      assertEquals((await sandd(["rm", "-r", `cli-a:${work}/remote/z`], { env })).code, 0);
      await Deno.stat(`${work}/remote/z`).then(
        () => assert(false, "z still exists"),
        (error) => assert(error instanceof Deno.errors.NotFound),
      );

      // Missing things: remote, local, and an unknown worker.
      const [noRemote, noLocal, noWorker, statMissing] = await Promise.all([
        sandd(["cp", `cli-a:${work}/nothing`, `${work}/back/`], { env }),
        sandd(["cp", `${work}/nothing`, `cli-a:${work}/remote/`], { env }),
        sandd(["cp", `${work}/file.bin`, `ghost:${work}/x`], { env }),
        sandd(["stat", `cli-a:${work}/nothing`], { env }),
      ]);
      assertEquals(noRemote.code, EXIT.NOT_FOUND, noRemote.stderr);
      assertEquals(noLocal.code, EXIT.NOT_FOUND, noLocal.stderr);
      assertStringIncludes(noLocal.stderr, `${work}/nothing`);
      assertEquals(noWorker.code, EXIT.UNKNOWN_WORKER, noWorker.stderr);
      assertEquals(statMissing.code, EXIT.NOT_FOUND, statMissing.stderr);
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  });
});

Deno.test("cli: ps, logs (whole, --from, -f), kill and attach of a process left running; broadcast", async () => {
  await withFleet(async ({ env, serve }) => {
    // A process left running, started through the control API; its first line is awaited.
    const spawned = await fetch(`${serve.url}/api/v1/daemons/cli-a/processes`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        command: ["sh", "-c", 'echo first; echo oops >&2; read line; echo "got $line"; sleep 60'],
        stdin: true,
      }),
    });
    assertEquals(spawned.status, 201);
    const proc = await spawned.json() as { id: string };
    const output = await fetch(
      `${serve.url}/api/v1/daemons/cli-a/processes/${encodeURIComponent(proc.id)}/output`,
    );
    const reader = output.body!.pipeThrough(new TextDecoderStream()).getReader();
    for (let seen = ""; !seen.includes("first\n");) seen += (await reader.read()).value ?? "";
    await reader.cancel();

    const ps = await sandd(["ps", "cli-a", "--json"], { env });
    assertEquals(ps.code, 0, ps.stderr);
    const listed = JSON.parse(ps.stdout).processes.find((p: { id: string }) => p.id === proc.id);
    assertEquals(listed.state, "running");
    const table = await sandd(["ps", "cli-a"], { env });
    assertStringIncludes(table.stdout, proc.id);

    const logs = await sandd(["logs", "cli-a", proc.id], { env });
    assertEquals(logs.code, 0, logs.stderr);
    assertEquals(logs.stdout, "first\n");
    assertStringIncludes(logs.stderr, "oops");
    const from = await sandd(["logs", "cli-a", proc.id, "--from", "2", "--stdout"], { env });
    assertEquals(from.stdout, "rst\n");
    const asJson = JSON.parse((await sandd(["logs", "--json", "cli-a", proc.id], { env })).stdout);
    assertEquals(asJson.stdout, { offset: 0, bytes: 6, text: "first\n" });
    assertEquals(asJson.stderr.text, "oops\n");

    // attach: our stdin reaches it; then kill it and follow its logs to the end.
    const follow = sandd(["logs", "-f", "cli-a", proc.id, "--stdout"], { env });
    const attached = sandd(["attach", "cli-a", proc.id], { env, stdin: "hello\n" });
    const killed = await sandd(["kill", "cli-a", proc.id, "-s", "KILL"], { env });
    assertEquals(killed.code, 0, killed.stderr);
    const [followed, attachedResult] = await Promise.all([follow, attached]);
    assertEquals(followed.code, 0, followed.stderr);
    assertStringIncludes(followed.stdout, "first\n");
    assertEquals(attachedResult.code, 137, attachedResult.stderr);
    const after = JSON.parse((await sandd(["ps", "cli-a", "--json"], { env })).stdout);
    assertEquals(
      after.processes.find((p: { id: string }) => p.id === proc.id).state,
      "exited",
    );

    const [unknownProc, killExited] = await Promise.all([
      sandd(["logs", "cli-a", "no-such-proc"], { env }),
      sandd(["kill", "cli-a", proc.id], { env }),
    ]);
    assertEquals(unknownProc.code, EXIT.NOT_FOUND, unknownProc.stderr);
    assertEquals(killExited.code, EXIT.NOT_FOUND, killExited.stderr);

    // broadcast: one line per worker, non-zero when any failed.
    const ok = await sandd(["broadcast", "--", "echo", "hello"], { env });
    assertEquals(ok.code, 0, ok.stderr);
    const lines = ok.stdout.trim().split("\n");
    assertEquals(lines.length, 3);
    assert(/^cli-a\s+0\s+hello$/.test(lines[1]!), lines[1]);
    assert(/^cli-b\s+0\s+hello$/.test(lines[2]!), lines[2]);
    const someFail = await sandd(
      ["broadcast", "--json", "--", "sh", "-c", "exit $FAIL"],
      { env },
    );
    assertEquals(someFail.code, EXIT.FAILED, someFail.stderr);
    const results = JSON.parse(someFail.stdout).results;
    assertEquals([results["cli-a"].exitCode, results["cli-b"].exitCode], [0, 5]);
    const byLabel = await sandd(
      ["broadcast", "--label", "role=db", "--", "sh", "-c", "exit $((FAIL - 1))"],
      { env },
    );
    assertEquals(byLabel.code, EXIT.FAILED);
    assert(/^cli-b\s+4/m.test(byLabel.stdout), byLabel.stdout);
    assert(!byLabel.stdout.includes("cli-a"), byLabel.stdout);
    const none = await sandd(["broadcast", "--label", "role=none", "--", "true"], { env });
    assertEquals(none.code, EXIT.UNKNOWN_WORKER, none.stderr);
  });
});
