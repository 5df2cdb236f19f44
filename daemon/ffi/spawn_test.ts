// Copyright 2026 the SandD authors. MIT license.
import { assert, assertEquals } from "../../tests/_assert.ts";
import {
  commandArgv,
  cwdProblem,
  failedChild,
  findProgram,
  loginShellArgv,
  programCandidates,
  spawnFailure,
} from "./spawn.ts";
import {
  decodeWaitStatus,
  errnoMessage,
  errnoName,
  OS,
  signalName,
  signalNumber,
} from "./constants.ts";
import { spawnPosixChild } from "../_posix_child.ts";
import { Pty, PtyError } from "../pty/pty.ts";

const ignore = Deno.build.os !== "linux" && Deno.build.os !== "darwin";
const decoder = new TextDecoder();

/** A temp dir with an executable `hello-sandd`, a non-executable `plain`, and a directory `adir`. */
async function fixture(): Promise<{ dir: string } & AsyncDisposable> {
  const dir = await Deno.realPath(await Deno.makeTempDir());
  await Deno.writeTextFile(`${dir}/hello-sandd`, "#!/bin/sh\necho hello\n", { mode: 0o755 });
  await Deno.writeTextFile(`${dir}/plain`, "echo no\n", { mode: 0o644 });
  await Deno.mkdir(`${dir}/adir`);
  return { dir, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

async function readAll(read: () => Promise<Uint8Array | null>): Promise<string> {
  let text = "";
  for (let chunk = await read(); chunk !== null; chunk = await read()) {
    text += decoder.decode(chunk);
  }
  return text;
}

Deno.test("commandArgv() runs a string through the shell and an array directly", () => {
  const shell = Deno.build.os === "windows" ? ["cmd.exe", "/C"] : ["/bin/sh", "-c"];
  assertEquals(commandArgv("echo hi"), [...shell, "echo hi"]);
  assertEquals(commandArgv(["ls", "-l"]), ["ls", "-l"]);
});

Deno.test("programCandidates(): empty PATH entries are skipped, relative ones follow the cwd", () => {
  assertEquals(programCandidates("ls", "/usr/bin::bin:", "/home/u"), [
    "/usr/bin/ls",
    "/home/u/bin/ls",
  ]);
  assertEquals(programCandidates("ls", ":", "/home/u"), []);
  assertEquals(programCandidates("ls", "", "/home/u"), []);
  assertEquals(programCandidates("ls", undefined), [
    "/usr/local/bin/ls",
    "/usr/bin/ls",
    "/bin/ls",
  ]);
  assertEquals(programCandidates("./x", "/usr/bin", "/w"), ["/w/./x"]);
  assertEquals(programCandidates("/bin/x", "/usr/bin", "/w"), ["/bin/x"]);
  assertEquals(programCandidates("a/x", "/usr/bin"), ["a/x"]);
});

Deno.test({
  name: "findProgram(): first executable regular file wins; ENOENT or EACCES otherwise",
  ignore,
  async fn() {
    await using f = await fixture();
    const { dir } = f;
    assertEquals(findProgram("hello-sandd", `/nonexistent:${dir}`), {
      path: `${dir}/hello-sandd`,
    });
    assertEquals(findProgram("hello-sandd", `.`, dir), { path: `${dir}/./hello-sandd` });
    assertEquals(findProgram("missing-sandd", dir), { errno: OS.errno.ENOENT });
    assertEquals(findProgram("plain", dir), { errno: OS.errno.EACCES });
    assertEquals(findProgram("adir", dir), { errno: OS.errno.EACCES });
    assertEquals(findProgram(`${dir}/plain`, undefined), { errno: OS.errno.EACCES });
    assertEquals(findProgram("./hello-sandd", undefined, dir), { path: `${dir}/./hello-sandd` });
    // The rule: an empty entry is not the working directory.
    assertEquals(findProgram("hello-sandd", "/nonexistent::", dir), { errno: OS.errno.ENOENT });
  },
});

Deno.test({
  name: "the PATH rule holds for pipe children and terminals alike (empty entry is not the cwd)",
  ignore,
  async fn() {
    await using f = await fixture();
    const env = { PATH: ":/usr/bin:/bin" };
    const child = spawnPosixChild({ argv: ["hello-sandd"], env, cwd: f.dir, stdin: false });
    const [stdout, stderr] = await Promise.all([
      readAll(child.outputs[0]!),
      readAll(child.outputs[1]!),
    ]);
    assertEquals([stdout, stderr], ["", "sandd: hello-sandd: command not found\n"]);
    assertEquals(await child.status, { exitCode: 127, signal: null });
    let thrown: unknown;
    try {
      Pty.spawn({ command: "hello-sandd", env, cwd: f.dir });
    } catch (error) {
      thrown = error;
    }
    assert(thrown instanceof PtyError && thrown.code === "ENOENT", String(thrown));
    // "." on purpose finds it.
    const dot = spawnPosixChild({
      argv: ["hello-sandd"],
      env: { PATH: ".:/usr/bin:/bin" },
      cwd: f.dir,
      stdin: false,
    });
    assertEquals(await readAll(dot.outputs[0]!), "hello\n");
    await readAll(dot.outputs[1]!);
    assertEquals((await dot.status).exitCode, 0);
    await dot.dispose?.();
    await child.dispose?.();
  },
});

Deno.test({
  name: "cwdProblem() and spawnFailure() report as a shell would",
  ignore,
  async fn() {
    await using f = await fixture();
    assertEquals(cwdProblem(f.dir), 0);
    assertEquals(cwdProblem(`${f.dir}/missing`), OS.errno.ENOENT);
    assertEquals(cwdProblem(`${f.dir}/plain`), OS.errno.ENOTDIR);
    assertEquals(spawnFailure("nope", undefined, OS.errno.ENOENT), {
      exitCode: 127,
      message: "sandd: nope: command not found",
    });
    assertEquals(spawnFailure("./plain", f.dir, OS.errno.EACCES), {
      exitCode: 126,
      message: "sandd: ./plain: Permission denied",
    });
    assertEquals(spawnFailure("x", `${f.dir}/missing`, OS.errno.ENOENT), {
      exitCode: 127,
      message: `sandd: cd: ${f.dir}/missing: No such file or directory`,
    });
    assertEquals(spawnFailure("x", `${f.dir}/plain`, OS.errno.ENOTDIR), {
      exitCode: 126,
      message: `sandd: cd: ${f.dir}/plain: Not a directory`,
    });
  },
});

Deno.test("failedChild(): a pipe child has stderr only, a terminal child one output with CRLF", async () => {
  const failure = { exitCode: 127 as const, message: "sandd: x: command not found" };
  const pipe = failedChild(failure, false);
  assertEquals(pipe.outputs.length, 2);
  assertEquals(await readAll(pipe.outputs[0]!), "");
  assertEquals(await readAll(pipe.outputs[1]!), "sandd: x: command not found\n");
  assertEquals(await pipe.status, { exitCode: 127, signal: null });
  const terminal = failedChild(failure, true);
  assertEquals(terminal.outputs.length, 1);
  assertEquals(await readAll(terminal.outputs[0]!), "sandd: x: command not found\r\n");
});

Deno.test({
  name: "loginShellArgv(): $SHELL, else bash, else sh, else /bin/sh",
  ignore,
  async fn() {
    await using f = await fixture();
    assertEquals(loginShellArgv({ SHELL: `${f.dir}/hello-sandd` }), [`${f.dir}/hello-sandd`, "-l"]);
    // A SHELL that is relative, missing or not executable is ignored.
    for (const shell of ["hello-sandd", `${f.dir}/missing`, `${f.dir}/plain`]) {
      assertEquals(loginShellArgv({ SHELL: shell, PATH: f.dir }), ["/bin/sh", "-l"]);
    }
    await Deno.copyFile(`${f.dir}/hello-sandd`, `${f.dir}/sh`);
    await Deno.chmod(`${f.dir}/sh`, 0o755);
    assertEquals(loginShellArgv({ PATH: f.dir }), [`${f.dir}/sh`, "-l"]);
    await Deno.copyFile(`${f.dir}/sh`, `${f.dir}/bash`);
    await Deno.chmod(`${f.dir}/bash`, 0o755);
    assertEquals(loginShellArgv({ PATH: f.dir }), [`${f.dir}/bash`, "-l"]);
  },
});

Deno.test("constants: errno names (ELOOP, ENAMETOOLONG), messages, signals and wait statuses", () => {
  assertEquals(errnoName(OS.errno.ELOOP), "ELOOP");
  assertEquals(errnoName(OS.errno.ENAMETOOLONG), "ENAMETOOLONG");
  assertEquals(errnoName(OS.errno.EAGAIN), "EAGAIN");
  assertEquals(errnoName(9999), "E9999");
  assertEquals(errnoMessage(OS.errno.ENOENT), "No such file or directory");
  assertEquals(errnoMessage(OS.errno.ELOOP), "Too many levels of symbolic links");
  for (const [number, name] of Object.entries(OS.signals)) {
    assertEquals(signalNumber(name), Number(number));
    assertEquals(signalName(Number(number)), name);
  }
  assertEquals(signalNumber("SIGNOPE"), undefined);
  assertEquals(decodeWaitStatus(3 << 8), { exitCode: 3, signal: null });
  assertEquals(decodeWaitStatus(9), { exitCode: 137, signal: "SIGKILL" });
  // Every errno number is distinct on each platform.
  assertEquals(new Set(Object.values(OS.errno)).size, Object.keys(OS.errno).length);
});
