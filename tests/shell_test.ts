// Interactive terminals end to end: a real controller, the real daemon as a child process, real programs on a
// real pseudo-terminal (bash, stty, sleep, cat, vi). Output is awaited by markers with deadlines, never by sleeps.
import xterm from "@xterm/headless";
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { RemoteShell, Server, UnknownProcessError } from "../mod.ts";
import { alive, eventually, startWorker, TestDaemon } from "./_daemon.ts";
import { LinkProxy } from "./_proxy.ts";
import { loginShellArgv } from "../daemon/_pty_child.ts";

const DEADLINE_MS = 15_000;

/** Reads a shell's output in the background; `until` waits for a pattern after the last match. */
class Screen {
  bytes: Uint8Array[] = [];
  text = "";
  #mark = 0;
  #decoder = new TextDecoder();
  #waiters = new Set<() => void>();
  readonly done: Promise<void>;
  ended = false;

  constructor(output: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      try {
        for await (const chunk of output) {
          this.bytes.push(chunk);
          this.text += this.#decoder.decode(chunk, { stream: true });
          for (const wake of this.#waiters) wake();
        }
      } catch {
        // the handle failed (detached, server closed): stop reading
      }
      this.ended = true;
      for (const wake of this.#waiters) wake();
    })();
  }

  /** Wait until `pattern` matches the output after the previous match; fails after the deadline. */
  async until(pattern: RegExp, deadlineMs = DEADLINE_MS): Promise<RegExpExecArray> {
    const started = Date.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let wake = () => {};
    const timeout = new Promise<void>((resolve) => timer = setTimeout(resolve, deadlineMs));
    try {
      while (true) {
        const rest = this.text.slice(this.#mark);
        const match = pattern.exec(rest);
        if (match) {
          this.#mark += match.index + match[0].length;
          return match;
        }
        if (this.ended || Date.now() - started >= deadlineMs) {
          throw new Error(
            `Output did not match ${pattern} within ${deadlineMs} ms${
              this.ended ? " (output ended)" : ""
            }; output after the last match: ${JSON.stringify(rest.slice(-2000))}`,
          );
        }
        const woken = new Promise<void>((resolve) => wake = resolve);
        this.#waiters.add(wake);
        await Promise.race([woken, timeout]);
        this.#waiters.delete(wake);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  concat(): Uint8Array {
    const out = new Uint8Array(this.bytes.reduce((n, b) => n + b.length, 0));
    let at = 0;
    for (const b of this.bytes) {
      out.set(b, at);
      at += b.length;
    }
    return out;
  }
}

/** Bash with no rc files and a fixed prompt, so screens are predictable. */
const BASH = ["bash", "--noprofile", "--norc", "-i"];
const BASH_ENV = { PS1: "$ ", HISTFILE: "/dev/null" };

Deno.test("the default login shell runs on a pts of the requested size", async () => {
  await using t = await startWorker("w1");
  await using sh = await t.server.shell("w1", { cols: 120, rows: 40 });
  assert(sh.id.length > 0 && sh.pid > 0);
  const screen = new Screen(sh.output);
  await sh.write("tty; stty size; shopt -q login_shell && echo LOGIN; echo E$((1+1))X\r");
  await screen.until(/E2X/);
  assert(/\/dev\/pts\/\d+\r\n/.test(screen.text), screen.text);
  assert(screen.text.includes("\r\n40 120\r\n"), screen.text);
  assert(screen.text.includes("\r\nLOGIN\r\n"), screen.text);
  const list = await t.server.processes("w1");
  assertEquals(list.find((p) => p.id === sh.id)?.pty, true);
  await sh.write("exit\r");
  assertEquals((await sh.exited).exitCode, 0);
  await screen.done;
});

Deno.test("resize reaches the program and is seen by stty size", async () => {
  await using t = await startWorker("w1");
  await using sh = await t.server.shell("w1", { command: BASH, env: BASH_ENV });
  const screen = new Screen(sh.output);
  await sh.write("stty size; echo A$((1+1))B\r");
  await screen.until(/24 80\r\n.*A2B/s);
  // A trap proves the program got SIGWINCH, not only that the size changed.
  await sh.write("trap 'echo WINCH-$(stty size)' WINCH; echo C$((1+1))D\r");
  await screen.until(/C2D/);
  await sh.resize(160, 50);
  await screen.until(/WINCH-50 160/);
  await sh.write("stty size; echo F$((1+1))G\r");
  await screen.until(/50 160\r\n.*F2G/s);
  await assertRejects(() => sh.resize(0, 10), RangeError, "cols");
  await assertRejects(() => sh.resize(80, 65536), RangeError, "rows");
  await assertRejects(() => sh.resize(80.5, 24), RangeError, "80.5");
  await sh.write("exit 0\r");
  await sh.exited;
  await screen.done;
});

Deno.test("bad sizes and commands are refused before anything is sent", async () => {
  await using t = await startWorker("w1");
  await assertRejects(() => t.server.shell("w1", { cols: 0 }), RangeError, "cols");
  await assertRejects(() => t.server.shell("w1", { rows: 70_000 }), RangeError, "70000");
  await assertRejects(() => t.server.shell("w1", { cols: 1.5 }), RangeError, "1.5");
  await assertRejects(() => t.server.shell("w1", { command: [] }), TypeError);
  await assertRejects(() => t.server.shell("w1", { scrollback: -1 }), RangeError);
  await assertRejects(() => t.server.attachShell("w1", ""), TypeError);
  await assertRejects(() => t.server.attachShell("w1", "p-nope-1"), UnknownProcessError);
  assertEquals((await t.server.processes("w1")).length, 0);
});

Deno.test("bash has job control: no warning, background jobs listed", async () => {
  await using t = await startWorker("w1");
  await using sh = await t.server.shell("w1", { command: BASH, env: BASH_ENV });
  const screen = new Screen(sh.output);
  await sh.write("sleep 100 &\r");
  await screen.until(/\[1\] \d+/);
  await sh.write("jobs; echo J$((1+1))K\r");
  await screen.until(/\[1\]\+\s+Running\s+sleep 100 &\r\n.*J2K/s);
  assert(!screen.text.includes("no job control"), screen.text);
  await sh.write("kill %1; wait; exit 0\r");
  assertEquals((await sh.exited).exitCode, 0);
  await screen.done;
});

Deno.test("Ctrl-C interrupts a foreground sleep", async () => {
  await using t = await startWorker("w1");
  await using sh = await t.server.shell("w1", { command: BASH, env: BASH_ENV });
  const screen = new Screen(sh.output);
  await sh.write("echo S$((1+1))T; sleep 4242\r");
  await screen.until(/S2T/);
  // The sleep is in the foreground once it exists; wait for it (no event for that), then press Ctrl-C.
  await eventually(() => pgrep("sleep 4242").length > 0, 5_000, "sleep 4242 to start");
  const started = performance.now();
  await sh.write("\x03");
  await sh.write("echo rc=$((100+30))-$?\r");
  await screen.until(/rc=130-130/);
  assert(performance.now() - started < 5_000);
  assertEquals(pgrep("sleep 4242"), []);
  await sh.write("exit 7\r");
  assertEquals(await sh.exited, { exitCode: 7, signal: null, timedOut: false });
  await screen.done;
});

Deno.test("multi-byte UTF-8 and every byte value pass unchanged both ways", async () => {
  await using t = await startWorker("w1");
  await using sh = await t.server.shell("w1", {
    command: ["sh", "-c", "stty raw -echo && printf 'READY\\377\\376\\200' && exec cat"],
  });
  const screen = new Screen(sh.output);
  await screen.until(/READY/);
  const all = new Uint8Array(256 * 64).map((_, i) => i % 256);
  const utf8 = new TextEncoder().encode("héllo ✓ 日本語 🎉\n");
  const sent = new Uint8Array([...all, ...utf8]);
  const already = screen.concat().length;
  await sh.write(sent);
  await eventually(() => screen.concat().length >= already + sent.length, DEADLINE_MS, "the echo");
  const got = screen.concat();
  assertEquals([...got.subarray(5, 8)], [0o377, 0o376, 0o200]);
  assertEquals(got.subarray(already), sent);
  await sh.close();
  await screen.done;
});

Deno.test("a full-screen program (vi) draws its screen and quits", async (t) => {
  if (!which("vi")) {
    console.log("skipped: no vi on this machine (apt-get install -y vim-tiny)");
    return;
  }
  await using c = await startWorker("w1");
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/notes.txt`;
    await Deno.writeTextFile(file, "first line\nsecond line\n");
    const cols = 60;
    const rows = 15;
    await using sh = await c.server.shell("w1", {
      command: ["vi", "-u", "NONE", "-N", file],
      cols,
      rows,
      env: { TERM: "xterm-256color" },
    });
    const term = new xterm.Terminal({ cols, rows, allowProposedApi: true });
    // Answer the terminal's queries (cursor position, device attributes) as a real terminal would.
    term.onData((data) => sh.write(data).catch(() => {}));
    const screenLines = () => {
      const lines: string[] = [];
      for (let i = 0; i < term.rows; i++) {
        lines.push((term.buffer.active.getLine(i)?.translateToString(true) ?? "").trimEnd());
      }
      return lines;
    };
    let written = Promise.resolve();
    let wake = () => {};
    const pump = (async () => {
      for await (const chunk of sh.output) {
        written = written.then(() => new Promise<void>((resolve) => term.write(chunk, resolve)));
        await written;
        wake();
      }
    })();
    const screenShows = async (check: (lines: string[]) => boolean, what: string) => {
      const deadline = Date.now() + DEADLINE_MS;
      while (!check(screenLines())) {
        if (Date.now() > deadline) {
          throw new Error(`Screen never showed ${what}:\n${screenLines().join("\n")}`);
        }
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          new Promise<void>((resolve) => wake = resolve),
          new Promise<void>((resolve) => timer = setTimeout(resolve, 200)),
        ]);
        clearTimeout(timer);
      }
    };
    await t.step("draws the file and the empty-line markers", async () => {
      await screenShows(
        (l) =>
          l[0] === "first line" && l[1] === "second line" && l[2] === "~" && l[rows - 2] === "~",
        "the file",
      );
      assert(screenLines()[rows - 1]!.includes("notes.txt"), screenLines().join("\n"));
      assertEquals(term.buffer.active.type, "alternate");
    });
    await t.step("edits, redraws after a resize, and quits", async () => {
      await sh.write("ggOzero line\x1b");
      await screenShows((l) => l[0] === "zero line" && l[1] === "first line", "the edit");
      term.resize(40, 10);
      await sh.resize(40, 10);
      await screenShows(
        (l) => l.length === 10 && l[0] === "zero line" && l.slice(3, 9).every((x) => x === "~"),
        "the redraw at 40x10",
      );
      await sh.write(":wq\r");
      assertEquals((await sh.exited).exitCode, 0);
      await pump;
      assertEquals(await Deno.readTextFile(file), "zero line\nfirst line\nsecond line\n");
      assertEquals(term.buffer.active.type, "normal");
    });
    term.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("exit codes and signals are real; a missing program is 127", async () => {
  await using t = await startWorker("w1");
  const seven = await t.server.shell("w1", { command: "exit 7" });
  const sevenScreen = new Screen(seven.output);
  assertEquals(await seven.exited, { exitCode: 7, signal: null, timedOut: false });
  await sevenScreen.done;
  const missing = await t.server.shell("w1", { command: ["no-such-program-xyz"] });
  const missingScreen = new Screen(missing.output);
  assertEquals((await missing.exited).exitCode, 127);
  await missingScreen.done;
  assert(missingScreen.text.includes("no-such-program-xyz: command not found"), missingScreen.text);
  // close() hangs the terminal up: the shell ends with SIGHUP even though it is waiting on a foreground job.
  const sh = await t.server.shell("w1", { command: BASH, env: BASH_ENV });
  const screen = new Screen(sh.output);
  await sh.write("echo Z$((1+1))Z; sleep 4243\r");
  await screen.until(/Z2Z/);
  await eventually(() => pgrep("sleep 4243").length > 0, 5_000, "sleep 4243 to start");
  const status = await sh.close();
  assertEquals(status.signal, "SIGHUP");
  await screen.done;
  await eventually(
    () => pgrep("sleep 4243").length === 0,
    5_000,
    "the sleep to die with the session",
  );
});

Deno.test("several sessions per daemon; close of one leaves the other", async () => {
  await using t = await startWorker("w1");
  const a = await t.server.shell("w1", { command: BASH, env: BASH_ENV });
  const b = await t.server.shell("w1", { command: BASH, env: BASH_ENV });
  assert(a.id !== b.id);
  const sa = new Screen(a.output);
  const sb = new Screen(b.output);
  await a.write("echo a-$((1+1))\r");
  await b.write("echo b-$((2+1))\r");
  await sa.until(/a-2/);
  await sb.until(/b-3/);
  assert(!sa.text.includes("b-3") && !sb.text.includes("a-2"));
  await a.close();
  await b.write("echo still-$((3+1))\r");
  await sb.until(/still-4/);
  await b.close();
  await Promise.all([sa.done, sb.done]);
});

Deno.test("a link cut keeps the session; a new Server re-attaches and replays the scrollback", async () => {
  const server1 = await Server.listen({ port: 0 });
  const port = server1.port;
  await using proxy = new LinkProxy(port);
  await using _daemon = new TestDaemon({ id: "w1", url: proxy.url() });
  await server1.waitForDaemon("w1", { timeout: 20_000 });
  const sh = await server1.shell("w1", { command: BASH, env: BASH_ENV });
  const screen = new Screen(sh.output);
  await sh.write("echo one-$((1+1)); echo $$\r");
  const [, shellPid] = (await screen.until(/one-2\r\n(\d+)\r\n/))!;
  await proxy.cut();
  // The same handle resumes once the daemon has dialled back in: nothing lost, nothing doubled.
  await sh.write("echo two-$((2+1))\r");
  await screen.until(/two-3/);
  assertEquals(screen.text.match(/one-2\r\n/g)?.length, 1);
  assert(alive(Number(shellPid)));
  const id = sh.id;
  const live = screen.text;
  await server1.close();
  await screen.done;
  await sh.exited.catch(() => {});
  await using server2 = await Server.listen({ port });
  await server2.waitForDaemon("w1", { timeout: 20_000 });
  const again = await server2.attachShell("w1", id);
  assert(again instanceof RemoteShell);
  assertEquals(again.id, id);
  const replay = new Screen(again.output);
  await replay.until(/two-3/);
  // The replay starts at the first byte the shell wrote (the scrollback has not overflowed).
  assert(live.startsWith(replay.text.slice(0, 40)), JSON.stringify(replay.text.slice(0, 80)));
  await again.write("echo three-$((3+1))\r");
  await replay.until(/three-4/);
  await again.write("exit 5\r");
  assertEquals((await again.exited).exitCode, 5);
  await replay.done;
  assertEquals(again.gaps, []);
});

Deno.test("a detached session keeps running; attach replays a bounded scrollback with a gap", async () => {
  await using t = await startWorker("w1");
  const sh = await t.server.shell("w1", { command: BASH, env: BASH_ENV, scrollback: 64 * 1024 });
  const screen = new Screen(sh.output);
  await sh.write("echo r-$((1+1))\r");
  await screen.until(/r-2/);
  await sh.detach();
  await screen.done;
  // While nobody is attached the daemon keeps reading; the oldest output is dropped.
  const again = await t.server.attachShell("w1", sh.id);
  const flag = await Deno.makeTempFile();
  await Deno.remove(flag);
  await again.write(
    `head -c 300000 /dev/zero | tr '\\0' x; echo; echo done-$((4+1)); touch ${flag}\r`,
  );
  await again.detach();
  // No event tells the test that a detached shell finished; the file it creates does.
  await eventually(() => exists(flag), DEADLINE_MS, "the detached shell to finish its output");
  await Deno.remove(flag);
  const third = await t.server.attachShell("w1", sh.id, { from: 0 });
  const gaps: number[] = [];
  const tail = new Screen(third.output);
  await third.write("echo tail-$((5+1))\r");
  await tail.until(/done-5.*tail-6/s);
  assertEquals(third.gaps.length, 1);
  gaps.push(third.gaps[0]!.from, third.gaps[0]!.to);
  assertEquals(gaps[0], 0);
  assert(gaps[1]! > 200_000, `gap ${gaps}`);
  assert(tail.text.length <= 70 * 1024, `replayed ${tail.text.length} bytes`);
  await third.close();
  await tail.done;
});

Deno.test("the login shell is $SHELL, else bash, else sh; the request's env can choose it", async () => {
  const bash = loginShellArgv({ SHELL: "/no/such/shell", PATH: "/usr/bin:/bin" });
  assert(/\/bash$/.test(bash[0]!) && bash[1] === "-l", String(bash));
  const empty = await Deno.makeTempDir();
  try {
    assertEquals(loginShellArgv({ PATH: empty }), ["/bin/sh", "-l"]);
  } finally {
    await Deno.remove(empty);
  }
  await using t = await startWorker("w1");
  await using sh = await t.server.shell("w1", { env: { SHELL: "/bin/sh", ENV: "/dev/null" } });
  const screen = new Screen(sh.output);
  await sh.write("ps -o args= -p $$; echo Q$((1+1))Q\r");
  await screen.until(/\/bin\/sh -l\r\n.*Q2Q/s);
  await sh.write("exit 4\r");
  assertEquals((await sh.exited).exitCode, 4);
  await screen.done;
});

function pgrep(pattern: string): string[] {
  const out = new Deno.Command("pgrep", { args: ["-x", "-f", pattern], stdout: "piped" })
    .outputSync();
  return new TextDecoder().decode(out.stdout).split("\n").filter(Boolean);
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function which(program: string): boolean {
  return new Deno.Command("sh", { args: ["-c", `command -v ${program}`], stdout: "null" })
    .outputSync()
    .success;
}
