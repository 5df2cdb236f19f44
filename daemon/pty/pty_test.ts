// Copyright 2026 the SandD authors. MIT license.
import {
  assert,
  assertEquals,
  assertMatch,
  assertNotMatch,
  assertRejects,
  assertStrictEquals,
  assertThrows,
} from "../../tests/_assert.ts";
import { Pty, PtyError } from "./pty.ts";

const IS_WINDOWS = Deno.build.os === "windows";
const IS_LINUX = Deno.build.os === "linux";
const decoder = new TextDecoder();

/** A small, predictable environment for shells under test. */
const SHELL_ENV: Record<string, string> = {
  PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
  HOME: Deno.env.get("HOME") ?? "/tmp",
  TERM: "dumb",
  PS1: "$ ",
  LC_ALL: "C",
};

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/** Awaits `promise`, failing the test if it takes longer than `ms`. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Collects output until `done(bytes)` says so, within an overall deadline. */
async function readUntil(
  pty: Pty,
  done: (bytes: Uint8Array, text: string) => boolean,
  what: string,
  ms = 10_000,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  return await within(
    ms,
    what,
    (async () => {
      for (;;) {
        const chunk = await pty.read();
        if (chunk === null) {
          const all = concat(chunks);
          throw new Error(`Output ended before ${what}: ${JSON.stringify(decoder.decode(all))}`);
        }
        chunks.push(chunk);
        const all = concat(chunks);
        if (done(all, decoder.decode(all))) return all;
      }
    })(),
  );
}

function readText(pty: Pty, marker: string | RegExp, ms = 10_000): Promise<string> {
  const matches = (text: string) =>
    typeof marker === "string" ? text.includes(marker) : marker.test(text);
  return readUntil(pty, (_, text) => matches(text), `output matching ${marker}`, ms)
    .then((bytes) => decoder.decode(bytes));
}

/** Reads until the end of output. */
async function readAll(pty: Pty, ms = 10_000): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  await within(
    ms,
    "end of output",
    (async () => {
      for (let chunk = await pty.read(); chunk !== null; chunk = await pty.read()) {
        chunks.push(chunk);
      }
    })(),
  );
  return concat(chunks);
}

/** Waits (bounded) until a process that is not our child has died; fails the test otherwise. */
async function waitGone(pid: number, ms = 5_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!processGone(pid)) {
    if (performance.now() > deadline) throw new Error(`Process ${pid} still runs after ${ms} ms`);
    // Not our child, so there is no exit event to await: poll /proc.
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function processGone(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // A zombie left to a non-reaping init is dead too.
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

Deno.test({
  name: "Pty gives the program a terminal device",
  ignore: IS_WINDOWS,
  async fn() {
    await using pty = Pty.spawn({ command: "tty" });
    const output = decoder.decode(await readAll(pty));
    assertMatch(output, /^\/dev\/(pts\/\d+|ttys\d+)\r\n$/);
    assertEquals(await pty.exited, { exitCode: 0, signal: null });
  },
});

Deno.test({
  name: "Pty sets the requested size before the program starts",
  ignore: IS_WINDOWS,
  async fn() {
    await using pty = Pty.spawn({ command: "stty", args: ["size"], cols: 123, rows: 45 });
    assertEquals(decoder.decode(await readAll(pty)), "45 123\r\n");
  },
});

Deno.test({
  name: "Pty defaults to 80x24",
  ignore: IS_WINDOWS,
  async fn() {
    await using pty = Pty.spawn({ command: "stty", args: ["size"] });
    assertEquals(decoder.decode(await readAll(pty)), "24 80\r\n");
  },
});

Deno.test({
  name: "Pty.resize() reaches a running program as SIGWINCH with the new size",
  ignore: IS_WINDOWS,
  async fn() {
    await using pty = Pty.spawn({
      command: "sh",
      args: ["-c", 'trap "stty size" WINCH; echo READY; while :; do sleep 0.05; done'],
      cols: 80,
      rows: 24,
      env: SHELL_ENV,
    });
    await readText(pty, "READY");
    pty.resize(132, 50);
    await readText(pty, "50 132");
    pty.resize(40, 10);
    await readText(pty, "10 40");
  },
});

Deno.test({
  name: "Pty runs an interactive bash with job control",
  ignore: IS_WINDOWS,
  async fn() {
    await using pty = Pty.spawn({
      command: "bash",
      args: ["--norc", "--noprofile", "-i"],
      env: SHELL_ENV,
    });
    const banner = await readText(pty, "$ ");
    assertNotMatch(banner, /no job control/);
    assertNotMatch(banner, /cannot set terminal process group/);
    await pty.write("sleep 100 & echo BG=$!\r");
    const started = await readText(pty, /BG=(\d+)/);
    const background = Number(/BG=(\d+)/.exec(started)?.[1]);
    await pty.write("jobs\r");
    await readText(pty, /\[1\]\+\s+Running\s+sleep 100 &/);
    await pty.close();
    // bash passes the hangup on to its jobs: nothing is left behind.
    await waitGone(background);
  },
});

Deno.test({
  name: "Pty.close() also ends background jobs that ignore SIGHUP",
  ignore: !IS_LINUX,
  async fn() {
    const pty = Pty.spawn({
      command: "bash",
      args: ["--norc", "--noprofile", "-i"],
      env: SHELL_ENV,
    });
    await readText(pty, "$ ");
    await pty.write(`sh -c 'trap "" HUP; echo IGN""ORING; exec sleep 100' & echo BG=$!\r`);
    // The job may print before the shell echoes its pid, into the same read: wait for both in one.
    const seen = decoder.decode(
      await readUntil(
        pty,
        (_, text) => /BG=\d+\r\n/.test(text) && text.includes("IGNORING"),
        "the job's pid and its IGNORING",
      ),
    );
    const background = Number(/BG=(\d+)/.exec(seen)?.[1]);
    await within(8_000, "close()", pty.close());
    await waitGone(background, 1_000);
  },
});

Deno.test({
  name: 'Pty turns a written "\\x03" into SIGINT for the foreground job',
  ignore: IS_WINDOWS,
  async fn() {
    await using pty = Pty.spawn({
      command: "bash",
      args: ["--norc", "--noprofile", "-i"],
      env: SHELL_ENV,
    });
    await readText(pty, "$ ");
    // The quotes split the marker so the echoed command line does not match it.
    await pty.write("sh -c 'echo STAR''TED; exec sleep 100'\r");
    await readText(pty, "STARTED");
    const start = performance.now();
    await pty.write("\x03");
    await pty.write("echo rc=$?\r");
    await readText(pty, "rc=130", 5_000);
    assert(performance.now() - start < 5_000);
  },
});

Deno.test({
  name: "Pty reports the exit code",
  ignore: IS_WINDOWS,
  async fn() {
    await using pty = Pty.spawn({ command: "sh", args: ["-c", "exit 7"] });
    assertEquals((await readAll(pty)).length, 0);
    assertEquals(await pty.exited, { exitCode: 7, signal: null });
  },
});

Deno.test({
  name: "Pty.kill() signals the process group and exited reports the signal",
  ignore: IS_WINDOWS,
  async fn() {
    await using pty = Pty.spawn({ command: "sleep", args: ["100"] });
    pty.kill("SIGTERM");
    assertEquals(await pty.exited, { exitCode: 143, signal: "SIGTERM" });
    assertEquals(await readAll(pty).then((b) => b.length), 0);
    pty.kill(); // after the reap: nothing to signal, no error

    await using hup = Pty.spawn({ command: "sleep", args: ["100"] });
    hup.kill();
    assertEquals(await hup.exited, { exitCode: 129, signal: "SIGHUP" });
  },
});

Deno.test({
  name: "Pty.kill() reaches every process of the group",
  ignore: IS_WINDOWS,
  async fn() {
    await using pty = Pty.spawn({
      command: "sh",
      args: ["-c", "sleep 100 & echo CHILD=$!; wait"],
      env: SHELL_ENV,
    });
    const child = Number(/CHILD=(\d+)/.exec(await readText(pty, /CHILD=\d+\r\n/))?.[1]);
    pty.kill("SIGKILL");
    assertEquals((await pty.exited).signal, "SIGKILL");
    await waitGone(child);
  },
});

Deno.test({
  name: "Pty passes every byte value out unchanged",
  ignore: IS_WINDOWS,
  async fn() {
    const data = new Uint8Array(256 * 1024 + 17);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 8)) & 0xff;
    const utf8 = new TextEncoder().encode("héllo wörld ✓ 🎉 日本語\n");
    const expected = concat([data, utf8]);
    const file = await Deno.makeTempFile();
    try {
      await Deno.writeFile(file, expected);
      await using pty = Pty.spawn({
        command: "sh",
        args: ["-c", 'stty raw -echo && cat "$0"', file],
        env: SHELL_ENV,
      });
      const output = await readAll(pty);
      assertStrictEquals(output.length, expected.length);
      assertEquals(output, expected);
    } finally {
      await Deno.remove(file);
    }
  },
});

Deno.test({
  name: "Pty passes printf's octal bytes \\377\\376 unchanged",
  ignore: IS_WINDOWS,
  async fn() {
    await using pty = Pty.spawn({
      command: "sh",
      args: ["-c", "stty raw -echo && printf '\\377\\376\\200'"],
      env: SHELL_ENV,
    });
    assertEquals(await readAll(pty), new Uint8Array([0xff, 0xfe, 0x80]));
  },
});

Deno.test({
  name: "Pty passes every byte value in unchanged, with flow control both ways",
  ignore: IS_WINDOWS,
  async fn() {
    const input = new Uint8Array(1024 * 1024);
    for (let i = 0; i < input.length; i++) input[i] = (i * 31 + (i >> 10)) & 0xff;
    await using pty = Pty.spawn({
      command: "sh",
      args: ["-c", "stty raw -echo -iexten && echo READY && exec head -c 1048576"],
      env: SHELL_ENV,
    });
    await readText(pty, "READY\n");
    // Writes block (without blocking the event loop) until cat's output is read.
    const writing = pty.write(input);
    const output = await readAll(pty, 30_000);
    await writing;
    assertStrictEquals(output.length, input.length);
    assertEquals(output, input);
    assertEquals(await pty.exited, { exitCode: 0, signal: null });
  },
});

Deno.test({
  name: "Pty.write() sends text as UTF-8",
  ignore: IS_WINDOWS,
  async fn() {
    await using pty = Pty.spawn({
      command: "sh",
      args: ["-c", "stty raw -echo && echo READY && exec head -c 13"],
      env: SHELL_ENV,
    });
    await readText(pty, "READY\n");
    await pty.write("ü✓🎉x"); // 2 + 3 + 4 + 1 bytes
    await pty.write("abc");
    assertEquals(decoder.decode(await readAll(pty)), "ü✓🎉xabc");
  },
});

Deno.test({
  name: "Pty.spawn() throws PtyError ENOENT for a missing program",
  fn() {
    assertStrictEquals(
      assertThrows(() => Pty.spawn({ command: "sandd-no-such-program-xyz" }), PtyError).code,
      "ENOENT",
    );
    assertStrictEquals(
      assertThrows(() => Pty.spawn({ command: "/nonexistent/dir/program" }), PtyError).code,
      "ENOENT",
    );
    assertStrictEquals(
      assertThrows(() => Pty.spawn({ command: "sh", cwd: "/nonexistent/dir" }), PtyError).code,
      "ENOENT",
    );
  },
});

Deno.test({
  name: "Pty.spawn() and resize() reject bad sizes with RangeError",
  ignore: IS_WINDOWS,
  async fn() {
    for (const bad of [0, -1, 65536, 1.5, Number.NaN]) {
      assertThrows(() => Pty.spawn({ command: "true", cols: bad }), RangeError);
      assertThrows(() => Pty.spawn({ command: "true", rows: bad }), RangeError);
    }
    assertThrows(() => Pty.spawn({ command: "" }), TypeError);
    assertThrows(() => Pty.spawn({ command: "true", args: ["a\0b"] }), TypeError);
    await using pty = Pty.spawn({ command: "sleep", args: ["100"] });
    assertThrows(() => pty.resize(0, 10), RangeError);
    assertThrows(() => pty.resize(10, 70000), RangeError);
    pty.resize(65535, 65535);
  },
});

Deno.test({
  name: "Pty allows only one read() in flight",
  ignore: IS_WINDOWS,
  async fn() {
    await using pty = Pty.spawn({ command: "sh", args: ["-c", "read x"], env: SHELL_ENV });
    const first = pty.read();
    assertStrictEquals(
      (await assertRejects(() => pty.read(), PtyError)).code,
      "EBUSY",
    );
    await pty.close();
    assertEquals(await first, null);
  },
});

Deno.test({
  name: "Pty.close() ends a pending read even when another session holds the terminal",
  ignore: !IS_LINUX,
  async fn() {
    const pty = Pty.spawn({
      command: "sh",
      args: ["-c", "setsid sleep 60 & echo ORPHAN=$!; exec sleep 100"],
      env: SHELL_ENV,
    });
    const orphan = Number(/ORPHAN=(\d+)/.exec(await readText(pty, /ORPHAN=\d+\r\n/))?.[1]);
    try {
      const pending = pty.read();
      await within(5_000, "close()", pty.close());
      assertEquals(await pending, null);
      assertEquals((await pty.exited).signal, "SIGHUP");
    } finally {
      Deno.kill(orphan, "SIGKILL");
    }
  },
});

Deno.test({
  name: "Pty.close() uses SIGKILL when the program ignores SIGHUP",
  ignore: IS_WINDOWS,
  async fn() {
    const pty = Pty.spawn({
      command: "sh",
      args: ["-c", "trap '' HUP; echo READY; while :; do sleep 1; done"],
      env: SHELL_ENV,
    });
    await readText(pty, "READY");
    await within(8_000, "close()", pty.close());
    assertEquals((await pty.exited).signal, "SIGKILL");
    await pty.close(); // idempotent
    assertStrictEquals(
      (await assertRejects(() => pty.write("x"), PtyError)).code,
      "ECLOSED",
    );
  },
});

Deno.test({
  name: "Pty leaks no descriptor and no zombie over 50 spawns",
  ignore: !IS_LINUX,
  async fn() {
    const countFds = () => [...Deno.readDirSync("/proc/self/fd")].length;
    // Warm up once so lazily created runtime resources are not counted.
    await (async () => {
      await using pty = Pty.spawn({ command: "true" });
      await readAll(pty);
    })();
    const before = countFds();
    const pids: number[] = [];
    for (let i = 0; i < 50; i++) {
      await using pty = Pty.spawn({ command: "sh", args: ["-c", `echo run-${i}`] });
      pids.push(pty.pid);
      assertEquals(decoder.decode(await readAll(pty)), `run-${i}\r\n`);
      assertEquals(await pty.exited, { exitCode: 0, signal: null });
    }
    // Close some without reading or waiting, as a caller that gives up would.
    for (let i = 0; i < 10; i++) {
      const pty = Pty.spawn({ command: "sleep", args: ["100"] });
      pids.push(pty.pid);
      await pty.close();
    }
    assertStrictEquals(countFds(), before);
    for (const pid of pids) {
      assert(!Deno.statSync("/proc").isFile);
      let exists = true;
      try {
        Deno.statSync(`/proc/${pid}`);
      } catch {
        exists = false;
      }
      assertEquals(exists, false, `process ${pid} still exists (zombie?)`);
    }
  },
});

Deno.test({
  name: "Pty's child does not inherit the master or other descriptors",
  ignore: !IS_LINUX,
  async fn() {
    await using pty = Pty.spawn({ command: "ls", args: ["/proc/self/fd"], env: SHELL_ENV });
    // 0, 1, 2, and the directory ls itself opened.
    const fds = decoder.decode(await readAll(pty)).trim().split(/\s+/).map(Number).sort();
    assertEquals(fds, [0, 1, 2, 3]);
  },
});

Deno.test({
  name: "Pty runs in the given cwd with exactly the given env",
  ignore: IS_WINDOWS,
  async fn() {
    const dir = await Deno.realPath(await Deno.makeTempDir());
    try {
      await using pty = Pty.spawn({
        command: "sh",
        args: ["-c", 'pwd; echo "$ONLY_VAR"; env | wc -l'],
        cwd: dir,
        env: { ONLY_VAR: "yes", PATH: SHELL_ENV.PATH ?? "/usr/bin:/bin" },
      });
      const lines = decoder.decode(await readAll(pty)).split("\r\n");
      assertStrictEquals(lines[0], dir);
      assertEquals(lines[1], "yes");
      // ONLY_VAR, PATH, and PWD (+ SHLVL, _) that sh adds itself.
      assert(Number(lines[2]) <= 5, `env has ${lines[2]} entries`);
    } finally {
      await Deno.remove(dir);
    }
  },
});

Deno.test({
  name: "Pty resolves relative program paths against cwd",
  ignore: IS_WINDOWS,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(`${dir}/hello.sh`, "#!/bin/sh\necho hi-from-script\n", {
        mode: 0o755,
      });
      await using pty = Pty.spawn({ command: "./hello.sh", cwd: dir });
      assertEquals(decoder.decode(await readAll(pty)), "hi-from-script\r\n");
      await Deno.writeTextFile(`${dir}/noexec.sh`, "echo no\n", { mode: 0o644 });
      assertStrictEquals(
        assertThrows(() => Pty.spawn({ command: "./noexec.sh", cwd: dir }), PtyError).code,
        "EACCES",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "Idle ptys with a pending read hold no thread each (shared poller and pidfds)",
  ignore: !IS_LINUX,
  async fn() {
    const threads = () => [...Deno.readDirSync("/proc/self/task")].length;
    const before = threads();
    const ptys = Array.from({ length: 20 }, () => Pty.spawn({ command: "sleep", args: ["100"] }));
    try {
      const reads = ptys.map((pty) => pty.read());
      // Let every read reach EAGAIN and park on the poller.
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      const during = threads();
      // Before: a pending waitpid and a poll per pty, 40 threads for 20 ptys.
      assert(during - before <= 3, `threads ${before} -> ${during}`);
      await Promise.all(ptys.map((pty) => pty.close()));
      for (const read of reads) assertEquals(await read, null);
    } finally {
      await Promise.all(ptys.map((pty) => pty.close()));
    }
  },
});

Deno.test({
  name: "Pty passes bulk output complete and in order, in chunks of at most 1 MiB",
  ignore: IS_WINDOWS,
  async fn() {
    // About 2.7 MB: after the first 4 KiB the rest comes in batch reads on a worker thread.
    await using pty = Pty.spawn({
      command: "sh",
      args: ["-c", "stty raw -echo && exec seq 1 400000"],
      env: SHELL_ENV,
    });
    const chunks: Uint8Array[] = [];
    await within(
      30_000,
      "end of output",
      (async () => {
        for (let chunk = await pty.read(); chunk !== null; chunk = await pty.read()) {
          chunks.push(chunk);
        }
      })(),
    );
    const expected = Array.from({ length: 400000 }, (_, i) => `${i + 1}\n`).join("");
    const text = decoder.decode(concat(chunks));
    assertEquals(text.length, expected.length);
    assert(text === expected, "the output differs from seq's");
    assert(chunks.every((chunk) => chunk.length <= 1024 * 1024));
    assertEquals(await pty.exited, { exitCode: 0, signal: null });
  },
});

Deno.test({
  name: "Pty.close() during bulk output ends the batch read and the program",
  ignore: IS_WINDOWS,
  async fn() {
    const pty = Pty.spawn({
      command: "sh",
      args: ["-c", "stty raw -echo && exec yes abcdefghijklmnop"],
      env: SHELL_ENV,
    });
    // Read enough that batch reads are under way, then stop reading (one may still be in flight) and close.
    await readUntil(pty, (bytes) => bytes.length >= 1024 * 1024, "1 MiB of output", 30_000);
    await within(10_000, "close()", pty.close());
    assertEquals((await pty.exited).signal, "SIGHUP");
    assertEquals(await pty.read(), null);
  },
});
