// Copyright 2026 the SandD authors. MIT license.
import {
  assert,
  assertEquals,
  assertGreater,
  assertLess,
  assertRejects,
} from "../tests/_assert.ts";
import { createHash } from "node:crypto";
import { pollerActive } from "./ffi/poller.ts";
import { holdPosixChildRuntime, posixChildSupported, spawnPosixChild } from "./_posix_child.ts";
import type { ChildHandle } from "./process_table.ts";

const ignore = !posixChildSupported || Deno.build.os !== "linux";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function concat(parts: Uint8Array[]): Uint8Array {
  let size = 0;
  for (const part of parts) size += part.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

async function readAll(read: () => Promise<Uint8Array | null>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (let chunk = await read(); chunk !== null; chunk = await read()) parts.push(chunk);
  return concat(parts);
}

/** Run to completion: stdout, stderr (as text) and the status. */
async function finish(child: ChildHandle) {
  const [stdout, stderr, status] = await Promise.all([
    readAll(child.outputs[0]!),
    readAll(child.outputs[1]!),
    child.status,
  ]);
  await child.dispose?.();
  return { stdout: decoder.decode(stdout), stderr: decoder.decode(stderr), status };
}

function run(argv: string[], options: { env?: Record<string, string>; cwd?: string } = {}) {
  return finish(spawnPosixChild({ argv, stdin: false, ...options }));
}

/** `[state, ppid, pgid, sid]` of a process from /proc, or null when it is gone. */
function procStat(pid: number): [string, number, number, number] | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return null;
  }
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return [fields[0]!, Number(fields[1]), Number(fields[2]), Number(fields[3])];
}

function allPids(): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (/^\d+$/.test(entry.name)) pids.push(Number(entry.name));
  }
  return pids;
}

function zombieChildren(): number[] {
  return allPids().filter((pid) => {
    const stat = procStat(pid);
    return stat !== null && stat[0] === "Z" && stat[1] === Deno.pid;
  });
}

/** Live (non-zombie) members of process group `pgid`. */
function groupMembers(pgid: number): number[] {
  return allPids().filter((pid) => {
    const stat = procStat(pid);
    return stat !== null && stat[2] === pgid && stat[0] !== "Z" && stat[0] !== "X";
  });
}

function openFdCount(): number {
  return [...Deno.readDirSync("/proc/self/fd")].length;
}

/** Poll a condition that has no event to await (process states in /proc), with a deadline. */
async function eventually(what: string, condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

Deno.test({
  name: "spawnPosixChild() echoes to stdout and stderr and exits 0",
  ignore,
  async fn() {
    const result = await run(["/bin/sh", "-c", "echo out; echo err >&2"]);
    assertEquals(result, {
      stdout: "out\n",
      stderr: "err\n",
      status: { exitCode: 0, signal: null },
    });
    assertEquals(pollerActive(), false);
  },
});

Deno.test({
  name: "spawnPosixChild() without env passes the daemon's current environment, as it changes",
  ignore,
  async fn() {
    const name = "SANDD_INHERIT_CHECK";
    const echo = ["/bin/sh", "-c", `printf '%s|%s' "\${${name}-unset}" "$(command -v sh)"`];
    try {
      Deno.env.set(name, "first");
      assertEquals((await run(echo)).stdout.split("|")[0], "first");
      Deno.env.set(name, "second value");
      assertEquals((await run(echo)).stdout.split("|")[0], "second value");
      Deno.env.delete(name);
      const last = await run(echo);
      assertEquals(last.stdout.split("|")[0], "unset");
      assert(last.stdout.split("|")[1]!.endsWith("/sh"), "PATH lookups still work");
    } finally {
      Deno.env.delete(name);
    }
  },
});

Deno.test({
  name: "spawnPosixChild() reports exit codes and signals",
  ignore,
  async fn() {
    assertEquals((await run(["sh", "-c", "exit 3"])).status, { exitCode: 3, signal: null });
    assertEquals((await run(["false"])).status, { exitCode: 1, signal: null });
    assertEquals((await run(["sh", "-c", "kill -TERM $$"])).status, {
      exitCode: 143,
      signal: "SIGTERM",
    });
  },
});

Deno.test({
  name: "spawnPosixChild() passes the environment, the working directory and argv verbatim",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const env = { PATH: "/usr/bin:/bin", GREETING: "hé llo=x" };
      const result = await run(
        [
          "sh",
          "-c",
          'printf "%s|%s|%s|%s" "$GREETING" "$(pwd)" "$1" "$(env | wc -l)"',
          "sh",
          "a b",
        ],
        { env, cwd: dir },
      );
      assertEquals(result.stderr, "");
      const [greeting, cwd, arg, count] = result.stdout.split("|");
      assertEquals(greeting, "hé llo=x");
      assertEquals(cwd, await Deno.realPath(dir));
      assertEquals(arg, "a b");
      // PATH, GREETING, and PWD which sh adds.
      assertLess(Number(count), 5);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "spawnPosixChild() round-trips stdin through cat and sort, closeInput() is EOF",
  ignore,
  async fn() {
    const cat = spawnPosixChild({ argv: ["cat"], stdin: true });
    const catOut = readAll(cat.outputs[0]!);
    const payload = new Uint8Array(300_000).map((_, i) => (i * 7) & 0xff);
    await cat.write!(payload);
    await cat.write!(encoder.encode("end"));
    await cat.closeInput!();
    assertEquals(await catOut, concat([payload, encoder.encode("end")]));
    assertEquals((await finish(cat)).status.exitCode, 0);

    const sort = spawnPosixChild({ argv: ["sort"], stdin: true });
    const sorted = readAll(sort.outputs[0]!);
    await sort.write!(encoder.encode("pear\napple\nfig\n"));
    await sort.closeInput!();
    assertEquals(decoder.decode(await sorted), "apple\nfig\npear\n");
    assertEquals((await finish(sort)).status, { exitCode: 0, signal: null });
  },
});

Deno.test({
  name: "spawnPosixChild() write() after the child is gone throws BrokenPipe",
  ignore,
  async fn() {
    const child = spawnPosixChild({ argv: ["true"], stdin: true });
    await child.status;
    await assertRejects(() => child.write!(encoder.encode("x")), Deno.errors.BrokenPipe);
    await child.closeInput!();
    await finish(child);
  },
});

Deno.test({
  name: "spawnPosixChild() reads 10 MB of output byte-exact",
  ignore,
  async fn() {
    const file = await Deno.makeTempFile();
    try {
      const size = 10 * 1024 * 1024 + 12345;
      const data = new Uint8Array(size);
      for (let at = 0; at < size; at += 65536) {
        crypto.getRandomValues(data.subarray(at, at + 65536));
      }
      await Deno.writeFile(file, data);
      const child = spawnPosixChild({ argv: ["head", "-c", String(size), file], stdin: false });
      const hash = createHash("sha256");
      let total = 0;
      const read = child.outputs[0]!;
      for (let chunk = await read(); chunk !== null; chunk = await read()) {
        hash.update(chunk);
        total += chunk.length;
      }
      assertEquals(total, size);
      assertEquals(hash.digest("hex"), createHash("sha256").update(data).digest("hex"));
      const result = await finish(child);
      assertEquals(result.status.exitCode, 0);
    } finally {
      await Deno.remove(file);
    }
  },
});

Deno.test({
  name: "spawnPosixChild() applies backpressure: an unread child blocks after about a pipe buffer",
  ignore,
  async fn() {
    const size = 50 * 1024 * 1024;
    const child = spawnPosixChild({
      argv: ["head", "-c", String(size), "/dev/zero"],
      stdin: false,
    });
    // Nobody reads: head must fill the pipe and sleep in write().
    await eventually("head to block", () => {
      const stat = procStat(child.pid);
      return stat !== null && stat[0] === "S" &&
        /wchar:\s+[1-9]/.test(Deno.readTextFileSync(`/proc/${child.pid}/io`));
    });
    const written = Number(
      /wchar:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${child.pid}/io`))![1],
    );
    assertLess(written, 2 * 1024 * 1024, `head wrote ${written} bytes with nobody reading`);
    let total = 0;
    const read = child.outputs[0]!;
    for (let chunk = await read(); chunk !== null; chunk = await read()) total += chunk.length;
    assertEquals(total, size);
    assertEquals((await finish(child)).status.exitCode, 0);
  },
});

Deno.test({
  name: "spawnPosixChild() kill() reaches the whole process group",
  ignore,
  async fn() {
    const child = spawnPosixChild({ argv: ["sh", "-c", "sleep 100 & sleep 100"], stdin: false });
    await eventually("both sleeps", () => {
      const members = groupMembers(child.pid);
      return members.filter((pid) => {
        try {
          return Deno.readTextFileSync(`/proc/${pid}/comm`).trim() === "sleep";
        } catch {
          return false;
        }
      }).length >= 2;
    });
    // Its own process group, in our session (newSession is off).
    assertEquals(procStat(child.pid)![2], child.pid);
    assertEquals(procStat(child.pid)![3], procStat(Deno.pid)![3]);
    child.kill("SIGKILL");
    const result = await finish(child);
    assertEquals(result.status, { exitCode: 137, signal: "SIGKILL" });
    await eventually("no survivor in the group", () => groupMembers(child.pid).length === 0);
  },
});

Deno.test({
  name: "spawnPosixChild() newSession puts the child in its own session, and kill() reaches it",
  ignore,
  async fn() {
    const child = spawnPosixChild({ argv: ["sleep", "100"], stdin: false, newSession: true });
    const stat = procStat(child.pid)!;
    assertEquals([stat[2], stat[3]], [child.pid, child.pid]);
    child.kill("SIGTERM");
    assertEquals((await finish(child)).status, { exitCode: 143, signal: "SIGTERM" });
  },
});

Deno.test({
  name: "spawnPosixChild() reports 127 for a missing program and 126 for a non-executable one",
  ignore,
  async fn() {
    const missing = await run(["no-such-program-sandd"]);
    assertEquals(missing, {
      stdout: "",
      stderr: "sandd: no-such-program-sandd: command not found\n",
      status: { exitCode: 127, signal: null },
    });
    assertEquals((await run(["/no/such/program"])).status.exitCode, 127);
    const file = await Deno.makeTempFile();
    try {
      await Deno.chmod(file, 0o644);
      const denied = await run([file]);
      assertEquals(denied.status.exitCode, 126);
      assertEquals(denied.stderr, `sandd: ${file}: Permission denied\n`);
    } finally {
      await Deno.remove(file);
    }
    const noCwd = await run(["true"], { cwd: "/no/such/dir" });
    assertEquals(noCwd.status.exitCode, 127);
    assertEquals(noCwd.stderr, "sandd: cd: /no/such/dir: No such file or directory\n");
  },
});

Deno.test({
  name: "spawnPosixChild() resolves the program through the child's PATH",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(`${dir}/hello-sandd`, "#!/bin/sh\necho from path\n", {
        mode: 0o755,
      });
      const env = { PATH: `/nonexistent:${dir}:/usr/bin:/bin` };
      assertEquals((await run(["hello-sandd"], { env })).stdout, "from path\n");
      assertEquals(
        (await run(["hello-sandd"], { env: { PATH: "/usr/bin" } })).status.exitCode,
        127,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "spawnPosixChild() children see only fds 0-2 and default signal dispositions",
  ignore,
  async fn() {
    // ls opens one fd of its own (3) to list the directory.
    assertEquals((await run(["ls", "/proc/self/fd"])).stdout, "0\n1\n2\n3\n");
    // Nothing blocked, no standard signal ignored: Deno ignores SIGPIPE, the child must not inherit that.
    // (glibc's posix_spawn leaves its internal real-time signals 32 and 33 ignored, by design.)
    const status = (await run(["cat", "/proc/self/status"])).stdout;
    const mask = (name: string) =>
      BigInt(`0x${new RegExp(`${name}:\\s+([0-9a-f]+)`).exec(status)![1]}`);
    assertEquals(mask("SigBlk"), 0n, status);
    assertEquals(mask("SigIgn") & 0x7fffffffn, 0n, status);
    // So `yes | head` ends by SIGPIPE, quietly.
    const piped = await run(["sh", "-c", "yes | head -c 3"]);
    assertEquals(piped, { stdout: "y\ny", stderr: "", status: { exitCode: 0, signal: null } });
  },
});

Deno.test({
  name: "spawnPosixChild() 200 spawns leave no fd and no zombie behind",
  ignore,
  async fn() {
    using _hold = holdPosixChildRuntime();
    await run(["true"]);
    const before = openFdCount();
    for (let i = 0; i < 200; i++) {
      const child = spawnPosixChild({ argv: ["sh", "-c", "echo $0"], stdin: i % 2 === 0 });
      if (i % 2 === 0) await child.closeInput!();
      const result = await finish(child);
      assertEquals(result.stdout, "sh\n");
    }
    assertEquals(openFdCount(), before);
    assertEquals(zombieChildren(), []);
  },
});

Deno.test({
  name: "spawnPosixChild() dispose() ends pending reads and a killed child is still reaped",
  ignore,
  async fn() {
    const child = spawnPosixChild({ argv: ["sleep", "100"], stdin: true });
    const pending = child.outputs[0]!();
    await child.dispose!();
    assertEquals(await pending, null);
    assertEquals(await child.outputs[1]!(), null);
    child.kill("SIGKILL");
    assertEquals(await child.status, { exitCode: 137, signal: "SIGKILL" });
    assertEquals(zombieChildren(), []);
  },
});

Deno.test({
  name: "spawnPosixChild() runs 100 concurrent children in parallel",
  ignore,
  async fn() {
    // Run one after another, 100 sleeps of 0.5 s would take 50 s; in parallel about 0.5 s. The bound sits at a
    // fifth of the serial time, so a loaded 2-core machine passes and a serialised spawn path fails.
    const start = performance.now();
    const results = await Promise.all(
      Array.from({ length: 100 }, () => run(["sleep", "0.5"])),
    );
    const elapsed = performance.now() - start;
    for (const result of results) assertEquals(result.status.exitCode, 0);
    assertLess(elapsed, 10_000, `took ${elapsed.toFixed(0)} ms`);
    assertGreater(elapsed, 450);
    assertEquals(zombieChildren(), []);
  },
});

Deno.test({
  name: "spawnPosixChild() rejects invalid options with TypeError",
  ignore,
  fn() {
    for (
      const options of [
        { argv: [], stdin: false },
        { argv: [""], stdin: false },
        { argv: ["a\0b"], stdin: false },
        { argv: ["true"], env: { "A=B": "x" }, stdin: false },
        { argv: ["true"], cwd: "", stdin: false },
      ]
    ) {
      let thrown: unknown;
      try {
        spawnPosixChild(options);
      } catch (error) {
        thrown = error;
      }
      assert(thrown instanceof TypeError, JSON.stringify(options));
    }
  },
});
