// Copyright 2026 the SandD authors. MIT license.
import { assert, assertEquals } from "../../tests/_assert.ts";
import { acquireLibc, errno, type Libc, releaseLibc, setFlag } from "./libc.ts";
import { OS } from "./constants.ts";
import { cancel, pollerActive, waitReadable, waitWritable } from "./poller.ts";
import { watchExit } from "./child_exit.ts";
import { posixSpawn } from "./_posix_spawn.ts";

const ignore = Deno.build.os !== "linux" && Deno.build.os !== "darwin";

/** A non-blocking pipe `[read, write]`, closed by the returned disposer. */
function pipe(libc: Libc): { read: number; write: number } & Disposable {
  const pair = new Int32Array(2);
  assertEquals(libc.pipe(pair), 0);
  const [read, write] = [pair[0]!, pair[1]!];
  for (const fd of [read, write]) setFlag(libc, fd, OS.fcntl.F_SETFL, OS.open.O_NONBLOCK);
  return {
    read,
    write,
    [Symbol.dispose]() {
      libc.close(read);
      libc.close(write);
    },
  };
}

/** Run `fn` with libc held. */
async function withLibc(fn: (libc: Libc) => Promise<void>): Promise<void> {
  const libc = acquireLibc();
  try {
    await fn(libc);
  } finally {
    releaseLibc();
  }
}

/** Whether `promise` is still pending after the event loop has turned a few times. */
async function pending(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(() => settled = true, () => settled = true);
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 0));
  return !settled;
}

Deno.test({
  name: "poller: waitReadable() resolves when a pipe gets data, and the loop stops when idle",
  ignore,
  fn: () =>
    withLibc(async (libc) => {
      using p = pipe(libc);
      const ready = waitReadable(p.read);
      assert(pollerActive());
      assert(await pending(ready), "nothing written yet");
      libc.write(p.write, new Uint8Array([1]), 1n);
      await ready;
      const buffer = new Uint8Array(8);
      assertEquals(Number(libc.read(p.read, buffer, 8n)), 1);
      // The loop winds down once nothing waits.
      while (pollerActive()) await new Promise((resolve) => setTimeout(resolve, 1));
    }),
});

Deno.test({
  name: "poller: waitWritable() waits while a pipe is full and resolves once it drains",
  ignore,
  fn: () =>
    withLibc(async (libc) => {
      using p = pipe(libc);
      await waitWritable(p.write); // an empty pipe is writable at once
      const block = new Uint8Array(65536);
      while (Number(libc.write(p.write, block, 65536n)) > 0) {
        // fill
      }
      assertEquals(errno(), OS.errno.EAGAIN);
      const writable = waitWritable(p.write);
      assert(await pending(writable), "the pipe is full");
      while (Number(libc.read(p.read, block, 65536n)) > 0) {
        // drain
      }
      await writable;
    }),
});

Deno.test({
  name: "poller: cancel() releases pending waiters so the fd can be closed",
  ignore,
  fn: () =>
    withLibc(async (libc) => {
      using p = pipe(libc);
      const first = waitReadable(p.read);
      const second = waitReadable(p.read);
      assert(await pending(first));
      await cancel(p.read);
      await Promise.all([first, second]);
      await cancel(p.read); // idempotent
    }),
});

Deno.test({
  name: "poller: 64 pipes wait together and each wakes only for its own data",
  ignore,
  fn: () =>
    withLibc(async (libc) => {
      const pipes = Array.from({ length: 64 }, () => pipe(libc));
      try {
        const woken = new Set<number>();
        const waits = pipes.map((p, i) => waitReadable(p.read).then(() => woken.add(i)));
        for (const i of [5, 17, 63]) libc.write(pipes[i]!.write, new Uint8Array([i]), 1n);
        await Promise.all([5, 17, 63].map((i) => waits[i]));
        assertEquals([...woken].sort((a, b) => a - b), [5, 17, 63]);
        await Promise.all(pipes.map((p) => cancel(p.read)));
        await Promise.all(waits);
      } finally {
        for (const p of pipes) p[Symbol.dispose]();
      }
    }),
});

Deno.test({
  name: "poller: waitReadable() rejects a negative fd with RangeError",
  fn() {
    let thrown: unknown;
    try {
      void waitReadable(-1);
    } catch (error) {
      thrown = error;
    }
    assert(thrown instanceof RangeError);
  },
});

/** Start `sh -c script` in its own group with stdio on /dev/null. */
function spawnShell(libc: Libc, script: string): number {
  const spawned = posixSpawn(libc, {
    path: "/bin/sh",
    argv: ["sh", "-c", script],
    env: { PATH: "/usr/bin:/bin" },
    cwd: undefined,
    stdio: [0, 1, 2].map((fd) => ({ fd, open: "/dev/null", flags: OS.open.O_RDWR })),
    session: false,
  });
  assert("pid" in spawned, JSON.stringify(spawned));
  return spawned.pid;
}

Deno.test({
  name: "watchExit() reports an exit code and a signal, and reaps the child",
  ignore,
  fn: () =>
    withLibc(async (libc) => {
      const lost = { exitCode: 255, signal: null };
      assertEquals(await watchExit(spawnShell(libc, "exit 3"), lost), {
        exitCode: 3,
        signal: null,
      });
      const sleeper = spawnShell(libc, "exec sleep 100");
      const exit = watchExit(sleeper, lost);
      assert(await pending(exit), "sleep runs");
      Deno.kill(sleeper, "SIGTERM");
      assertEquals(await exit, { exitCode: 143, signal: "SIGTERM" });
      // Reaped: no such child any more.
      assertEquals(libc.waitpid_now(sleeper, new Uint8Array(4), 1), -1);
      assertEquals(errno(), OS.errno.ECHILD);
    }),
});

Deno.test({
  name: "watchExit() of 30 children waiting at once holds no thread per child (Linux pidfds)",
  ignore: Deno.build.os !== "linux",
  fn: () =>
    withLibc(async (libc) => {
      const threads = () => [...Deno.readDirSync("/proc/self/task")].length;
      const before = threads();
      const pids = Array.from({ length: 30 }, () => spawnShell(libc, "exec sleep 100"));
      const exits = pids.map((pid) => watchExit(pid, { exitCode: 255, signal: null }));
      assert(await pending(Promise.race(exits)));
      // A thread per pending waitpid would show here: one poll thread at most.
      const during = threads();
      assert(during - before <= 2, `threads ${before} -> ${during}`);
      for (const pid of pids) Deno.kill(pid, "SIGKILL");
      for (const exit of await Promise.all(exits)) assertEquals(exit.signal, "SIGKILL");
    }),
});
