// Attacks on the daemon's process accounting (issue 10, item 15): a command that leaves a background job behind
// (`sleep 61 &`) must still count toward --max-processes, be killed at its timeout and when the daemon stops.
// Every child runs in its own process group, so "the command" means its whole group.
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { PolicyError, ProcessExitedError, Server } from "../mod.ts";
import { alive, eventually, startWorker, TestDaemon } from "./_daemon.ts";
import { countMembers, groupAlive, signalGroup } from "../daemon/_process_group.ts";
import { holdPosixChildRuntime, spawnPosixChild } from "../daemon/_posix_child.ts";

/** Live (not zombie) processes whose process group is `pgid`, from /proc. */
function groupMembers(pgid: number): number[] {
  const members: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      // After "(comm)": state ppid pgrp session ...
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (fields[0] !== "Z" && fields[0] !== "X" && Number(fields[2]) === pgid) {
        members.push(Number(entry.name));
      }
    } catch {
      // gone while we looked
    }
  }
  return members;
}

/** Kill whatever the test left behind (only matters when the daemon under test is broken). */
function killGroups(pgids: number[]): void {
  for (const pgid of pgids) {
    for (const pid of groupMembers(pgid)) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
  }
}

/** Read `stream` until `pattern` matches what was read; returns the match. */
async function readUntil(
  stream: ReadableStream<Uint8Array>,
  pattern: RegExp,
): Promise<RegExpMatchArray> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let text = "";
  try {
    for (;;) {
      const match = text.match(pattern);
      if (match) return match;
      const { value, done } = await reader.read();
      if (done) throw new Error(`Output ended before ${pattern}; got ${JSON.stringify(text)}`);
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    reader.releaseLock();
  }
}

/** Kill the given pids (only matters when the daemon under test is broken). */
function killPids(pids: number[]): void {
  for (const pid of pids) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
}

/** A background job that keeps the group alive but not the pipes, and the shell's pid (= the group id). */
const LINGER = "sleep 61 >/dev/null 2>&1 & echo $$";

Deno.test({
  name: "a command whose background job outlives it still counts toward --max-processes",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const max = 3;
    const groups: number[] = [];
    try {
      await using worker = await startWorker("procgroup-cap", ["--max-processes", String(max)]);
      const { server } = worker;
      let refused = 0;
      for (let i = 0; i < max + 5; i++) {
        try {
          const result = await server.exec(worker.daemon.id, LINGER);
          assertEquals(result.exitCode, 0);
          groups.push(Number(result.stdout.trim()));
        } catch (error) {
          assert(error instanceof PolicyError, `expected a PolicyError, got ${error}`);
          assertEquals(error.rule, "maxProcesses");
          refused++;
        }
      }
      assertEquals(groups.length, max, "only --max-processes lingering groups may start");
      assertEquals(refused, 5);
      for (const pgid of groups) assert(groupMembers(pgid).length > 0, `group ${pgid} lingers`);
      // processes() shows each as exited, with its lingering members counted.
      const listed = await server.processes(worker.daemon.id);
      assertEquals(listed.length, max);
      for (const p of listed) {
        assertEquals(p.state, "exited");
        assertEquals(p.lingering, 1);
      }
      // Once a group ends, its slot is free again.
      for (const pid of groupMembers(groups[0]!)) Deno.kill(pid, "SIGKILL");
      await eventually(() => groupMembers(groups[0]!).length === 0, 5_000, "the group to end");
      const again = await server.exec(worker.daemon.id, ["true"]);
      assertEquals(again.exitCode, 0);
    } finally {
      killGroups(groups);
    }
  },
});

Deno.test({
  name: "a command's timeout kills its whole process group, even after the command itself exited",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const groups: number[] = [];
    try {
      await using worker = await startWorker("procgroup-timeout");
      const { server } = worker;
      // The shell exits at once; its background job does not hold the pipes.
      const quick = await server.exec(worker.daemon.id, LINGER, { timeout: 1_000 });
      const pgid = Number(quick.stdout.trim());
      groups.push(pgid);
      assert(groupMembers(pgid).length > 0, "the background job runs after the command exited");
      await eventually(() => groupMembers(pgid).length === 0, 5_000, `group ${pgid} to be killed`);

      // The background job holds the command's stdout: the timeout must end it, and with it the output.
      const started = performance.now();
      const held = await server.exec(worker.daemon.id, "sleep 61 & echo $$", { timeout: 1_000 });
      const heldGroup = Number(held.stdout.trim());
      groups.push(heldGroup);
      assert(performance.now() - started < 4_000, "the timeout ended the held output");
      assertEquals(groupMembers(heldGroup), []);
    } finally {
      killGroups(groups);
    }
  },
});

Deno.test({
  name:
    "a terminal's timeout kills the session's jobs that ignore the hang-up, after the shell exited",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const groups: number[] = [];
    try {
      await using worker = await startWorker("procgroup-pty");
      await using sh = await worker.server.shell(worker.daemon.id, {
        // Ignored before the fork, so the job ignores SIGHUP from its first instruction on.
        command: "trap '' HUP; sleep 61 >/dev/null 2>&1 & echo started",
        timeout: 1_500,
      });
      groups.push(sh.pid);
      await sh.exited;
      assert(groupMembers(sh.pid).length > 0, "the job outlives the shell (it ignores SIGHUP)");
      const listed = await worker.server.processes(worker.daemon.id);
      assertEquals(listed.find((p) => p.pid === sh.pid)?.lingering, 1);
      await eventually(
        () => groupMembers(sh.pid).length === 0,
        6_000,
        "the session's job to be killed",
      );
    } finally {
      killGroups(groups);
    }
  },
});

Deno.test({
  name: "SIGTERM to the daemon kills the process groups its commands left behind",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const groups: number[] = [];
    const server = await Server.listen({ port: 0 });
    try {
      const daemon = new TestDaemon({ id: "procgroup-stop", url: server.url });
      try {
        await server.waitForDaemon(daemon.id, { timeout: 20_000 });
        for (let i = 0; i < 3; i++) {
          const result = await server.exec(daemon.id, LINGER);
          groups.push(Number(result.stdout.trim()));
        }
        // A command that is still running when the daemon stops, with a job of its own.
        const running = await server.spawn(
          daemon.id,
          "sleep 61 >/dev/null 2>&1 & echo $$; exec sleep 62",
        );
        const reader = running.stdout.getReader();
        const { value } = await reader.read();
        groups.push(Number(new TextDecoder().decode(value).trim()));
        reader.releaseLock();
        for (const pgid of groups) assert(groupMembers(pgid).length > 0, `group ${pgid} runs`);
      } finally {
        const { code } = await daemon.stop("SIGTERM");
        assertEquals(code, 0);
      }
      for (const pgid of groups) {
        assertEquals(groupMembers(pgid), [], `no member of group ${pgid} outlives the daemon`);
      }
    } finally {
      killGroups(groups);
      await server.close();
    }
  },
});

Deno.test({
  name: "the refusal at the cap says that exited commands' background jobs hold the slots",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const groups: number[] = [];
    try {
      await using worker = await startWorker("procgroup-probe", ["--max-processes", "2"]);
      const { server } = worker;
      for (let i = 0; i < 2; i++) {
        groups.push(Number((await server.exec(worker.daemon.id, LINGER)).stdout.trim()));
      }
      await assertRejects(() => server.exec(worker.daemon.id, ["true"]), PolicyError, "lingering");
    } finally {
      killGroups(groups);
    }
  },
});

Deno.test({
  name:
    "group probes: kill(-pgid, 0) and the /proc count see a background job after its leader is reaped",
  ignore: Deno.build.os !== "linux",
  async fn() {
    using _libc = holdPosixChildRuntime();
    const child = spawnPosixChild({ argv: ["/bin/sh", "-c", LINGER], stdin: false });
    const [stdout, stderr] = child.outputs;
    const text: string[] = [];
    for (let chunk = await stdout!(); chunk !== null; chunk = await stdout!()) {
      text.push(new TextDecoder().decode(chunk));
    }
    while ((await stderr!()) !== null) continue;
    assertEquals(await child.status, { exitCode: 0, signal: null });
    await child.dispose?.();
    const pgid = Number(text.join("").trim());
    assertEquals(pgid, child.pid, "the child leads its own group");
    try {
      // The leader is reaped; its job keeps the group (and its id) alive.
      assert(groupAlive(pgid));
      assertEquals(countMembers()?.groups.get(pgid), 1);
      signalGroup(pgid, "SIGKILL", false);
      // A killed member is a zombie until its new parent reaps it: the count skips it at once.
      await eventually(() => countMembers()?.groups.get(pgid) === undefined, 5_000, "the count");
      await eventually(() => !groupAlive(pgid), 10_000, "the group id to be free");
    } finally {
      killGroups([pgid]);
    }
  },
});

/** How long the daemon waits after hanging a terminal up before it kills what is left (daemon/pty/_unix.ts). */
const HANGUP_GRACE_MS = 2_000;

Deno.test({
  name:
    "closing a terminal kills the session's jobs that ignore the hang-up, in the daemon as shipped",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const jobs: number[] = [];
    try {
      // The daemon runs with its real permission flags (daemon/permissions.ts), under which Deno refuses /proc.
      await using worker = await startWorker("procgroup-close");
      // 1. A job in the shell's own group (no job control): the hang-up ends the shell, not the job.
      const sh = await worker.server.shell(worker.daemon.id, {
        command: "(trap '' HUP; exec sleep 300) >/dev/null 2>&1 & echo job=$!; exec cat",
      });
      const job = Number((await readUntil(sh.output, /job=(\d+)/))[1]);
      jobs.push(job);
      assert(alive(job), "the job runs");
      assertEquals((await sh.close()).signal, "SIGHUP");
      assert(alive(job), "the job outlived the hang-up");
      await eventually(() => !alive(job), HANGUP_GRACE_MS + 3_000, `job ${job} to be killed`);

      // 2. An interactive shell with job control: the job has a process group of its own in the session.
      const bash = await worker.server.shell(worker.daemon.id, {
        command: ["bash", "--norc", "--noprofile", "-i"],
      });
      await bash.write("(trap '' HUP; exec sleep 300) >/dev/null 2>&1 & echo job=$!\r");
      const own = Number((await readUntil(bash.output, /job=(\d+)/))[1]);
      jobs.push(own);
      assert(alive(own), "the job runs");
      await bash.close();
      await eventually(() => !alive(own), HANGUP_GRACE_MS + 3_000, `job ${own} to be killed`);
    } finally {
      killPids(jobs);
    }
  },
});

Deno.test({
  name: "kill() reaches the background job a command left behind after it exited",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const jobs: number[] = [];
    try {
      await using worker = await startWorker("procgroup-kill");
      const { server } = worker;
      const p = await server.spawn(worker.daemon.id, "sleep 300 >/dev/null 2>&1 & echo $!; exit 0");
      const job = Number((await readUntil(p.stdout, /(\d+)\n/))[1]);
      jobs.push(job);
      assertEquals((await p.status).exitCode, 0);
      assert(alive(job), "the job outlives the command");
      await p.kill("SIGKILL");
      await eventually(() => !alive(job), 5_000, `job ${job} to be killed`);
      // Once nothing lingers, kill() says the process has exited, as for any other exited process.
      const deadline = Date.now() + 10_000;
      while ((await server.processes(worker.daemon.id))[0]?.lingering !== undefined) {
        assert(Date.now() < deadline, "the daemon to see the group end");
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await assertRejects(() => p.kill("SIGKILL"), ProcessExitedError);
    } finally {
      killPids(jobs);
    }
  },
});
