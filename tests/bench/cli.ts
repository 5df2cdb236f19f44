// The `sandd` program as an operator runs it, against a `sandd serve` child process and one real daemon:
// - `sandd exec w -- true`, the whole process (Deno start-up, connecting, the exec, the exit) against `ssh` to
//   localhost through an established ControlMaster (the ssh figure users compare with), medians;
// - `sandd cp` of a random file (BENCH_FILE_MIB, default 1 GiB) up and down against `scp` of the same file, with how
//   far the controller's (the `sandd serve` process's) peak RSS grows during each direction.
// The ssh/scp baselines are skipped with the reason when sshd is unavailable (see _sshd.ts).
//
// Where a `sandd cp` download's time goes (perf record -g with --perf-basic-prof on each process, 512 MiB, Deno
// 2.9.6, a machine at load 10-25, so as shares): `sandd serve` is the busy process, and about half of its CPU is
// Deno's WebSocket receive (op_ws_next_event: memmove of each message into a fresh buffer, plus the page faults
// and page clearing of that fresh memory), about a tenth the SHA-256 check, about a tenth writing the HTTP answer
// (the kernel's copy included); its own JavaScript is a few per cent. Larger daemon frames make the receive
// dearer (1 MiB frames: twice the controller's CPU of 256 KiB ones; 64 KiB: the same as 256 KiB). In the daemon,
// SHA-256 is about a quarter, the page-cache read a seventh, zero-filling fresh socket buffers (pool misses) 7 %.
// The CLI waits mostly; it now reads the next piece while it writes the last one.
import type { BenchContext, Section } from "./_context.ts";
import { BenchDaemon } from "./_daemon.ts";
import { runQuietly, sshdMissing, startSshd } from "./_sshd.ts";
import {
  type Figure,
  median,
  peakOf,
  resetPeak,
  type SectionResult,
  type Skipped,
  toMiB,
} from "./_stats.ts";

const WORKER = "bench-cli";

async function milliseconds(fn: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

/** Run a command to completion, quietly; throws with its stderr when it fails. */
async function run(cmd: string, args: string[], env?: Record<string, string>): Promise<void> {
  const out = await new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    ...(env ? { env } : {}),
  }).output();
  if (!out.success) {
    throw new Error(
      `${cmd} ${args.join(" ")} exited ${out.code}: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
}

async function writeRandomFile(path: string, size: number): Promise<void> {
  const block = new Uint8Array(Math.min(size, 64 * 1024 * 1024));
  for (let at = 0; at < block.length; at += 65536) {
    crypto.getRandomValues(block.subarray(at, at + 65536));
  }
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  for (let written = 0; written < size; written += block.length) {
    const piece = block.subarray(0, Math.min(block.length, size - written));
    for (let at = 0; at < piece.length;) at += await file.write(piece.subarray(at));
  }
}

/** `sandd serve` of the checkout on a free port (with `extra` flags); its base URL, daemon URL and process. */
export async function startServe(
  main: string,
  flags: readonly string[],
  extra: readonly string[] = [],
): Promise<{ child: Deno.ChildProcess; url: string; wsUrl: string; stop(): Promise<void> }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, main, "serve", "--port", "0", "--log-level", "error", ...extra],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`sandd serve exited before listening: ${text}`);
    text += value;
  }
  const rest = (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  const match = text.match(/listening on (\S+) \(daemons: (\S+),/);
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // exited already
    }
    await child.status;
    await rest;
  };
  if (!match) {
    await stop();
    throw new Error(`Unexpected first line of sandd serve: ${text}`);
  }
  return { child, url: match[1]!, wsUrl: match[2]!, stop };
}

async function bench({ checkout, quick, log }: BenchContext): Promise<SectionResult> {
  const skipped: Skipped[] = [];
  const figures: Figure[] = [];
  const main = checkout.daemonMain;
  const flags = checkout.daemonFlags;
  const help = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, main, "help"],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  if (!new TextDecoder().decode(help.stdout).includes("serve")) {
    return { figures, skipped: [{ id: "cli", reason: `${checkout.root} has no sandd serve` }] };
  }
  const sizeMiB = Number(Deno.env.get("BENCH_FILE_MIB") ?? (quick ? 8 : 1024));
  const size = sizeMiB * 1024 * 1024;
  const execRuns = quick ? 3 : 20;
  const copyRuns = quick ? 1 : 3;
  const work = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "sandd-bench-cli-" });
  const serve = await startServe(main, flags);
  const daemon = new BenchDaemon(checkout, { id: WORKER, url: serve.wsUrl });
  const missing = sshdMissing();
  const ssh = missing ? null : await startSshd(work);
  if (missing || !ssh) skipped.push({ id: "cli.ssh", reason: missing ?? "sshd did not start" });
  const sandd = (args: string[]) =>
    run(Deno.execPath(), ["run", ...flags, main, ...args], { SANDD_URL: serve.url });
  // ssh through one master connection, opened once in the background (-M -N -f) and closed with -O exit.
  const sshOptions = ssh
    ? [...ssh.scpArgs.map((a) => (a === "-P" ? "-p" : a)), "-o", `ControlPath=${work}/cm-%p`]
    : [];
  const host = ssh ? ssh.remote.replace(/:$/, "") : "";
  let master = false;
  try {
    const waited = await fetch(`${serve.url}/api/v1/daemons/${WORKER}/wait?timeout=60000`);
    if (!waited.ok) throw new Error(`Daemon did not connect: ${await waited.text()}`);

    // 1. sandd exec w -- true, whole process, against ssh with a control master.
    log(`cli: exec, ${execRuns} runs`);
    await sandd(["exec", WORKER, "--", "true"]); // module cache warm
    const execTimes: number[] = [];
    for (let i = 0; i < execRuns; i++) {
      execTimes.push(await milliseconds(() => sandd(["exec", WORKER, "--", "true"])));
    }
    // The CLI's own start-up (Deno, the module graph, the commands' code), nothing sent: where exec's time goes.
    const startTimes: number[] = [];
    for (let i = 0; i < execRuns; i++) {
      startTimes.push(await milliseconds(() => sandd(["help"])));
    }
    figures.push({
      id: "cli.exec_true_vs_startup",
      label: `sandd exec w -- true against sandd help, whole processes (median of ${execRuns})`,
      unit: "ms",
      value: median(execTimes),
      baseline: median(startTimes),
      baselineLabel: "sandd help (start-up alone)",
      comparison: "overhead",
      better: "lower",
      goal: "—",
    });
    const sshTimes: number[] = [];
    if (ssh) {
      await new Deno.Command("ssh", {
        args: [...sshOptions, "-M", "-N", "-f", host],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).output();
      master = true;
      const viaMaster = [...sshOptions, "-o", "ControlMaster=no", host, "true"];
      await run("ssh", viaMaster);
      for (let i = 0; i < execRuns; i++) {
        sshTimes.push(await milliseconds(() => run("ssh", viaMaster)));
      }
      figures.push({
        id: "cli.exec_true",
        label: `sandd exec w -- true, whole process (median of ${execRuns})`,
        unit: "ms",
        value: median(execTimes),
        baseline: median(sshTimes),
        // sshd runs the command through root's login shell, whose rc files (here ~/.bashrc) are part of it.
        baselineLabel: "ssh localhost true, ControlMaster (remote login shell start-up included)",
        comparison: "overhead",
        better: "lower",
        goal: "—",
      });
    } else {
      skipped.push({ id: "cli.exec_true", reason: "no ssh baseline" });
    }

    // 2. sandd cp up and down against scp, with the controller's peak RSS growth.
    const source = `${work}/source.bin`;
    await writeRandomFile(source, size);
    const rates: Record<string, number[]> = {};
    const add = (name: string, ms: number) => (rates[name] ??= []).push(sizeMiB / (ms / 1000));
    // The largest growth of each direction. The first copy always counts: a small copy that grows nothing can
    // read a peak a little under the RSS read before it (a quick run reported "0.0 MiB at the start" for
    // downloads when only growths of 0 or more were kept).
    const growth = {
      up: { start: 0, grew: -Infinity },
      down: { start: 0, grew: -Infinity },
    };
    // The RSS growth counts the warm-up round too: the controller's first transfer is where it grows most.
    const measure = async (direction: "up" | "down", counted: boolean, fn: () => Promise<void>) => {
      const start = resetPeak(serve.child.pid);
      const ms = await milliseconds(fn);
      if (counted) add(`sandd ${direction}`, ms);
      const grew = peakOf(serve.child.pid) - start;
      if (grew > growth[direction].grew) growth[direction] = { start, grew };
    };
    // A warm-up round first, not counted (in a full run): the first copies of a run write into memory the VM
    // has not used lately, which costs the first of them, whichever program it is, milliseconds per MiB more
    // (first sandd cp download of a 1 GiB run: 247-266 MiB/s, the next ones 366-412, in one probe). Every
    // destination is removed before it is written, for both programs alike.
    const warmUp = quick ? 0 : 1;
    for (let i = -warmUp; i < copyRuns; i++) {
      log(`cli: cp ${sizeMiB} MiB, ${i < 0 ? "warm-up round" : `run ${i + 1} of ${copyRuns}`}`);
      const counted = i >= 0;
      const timed = async (name: string, fn: () => Promise<void>) => {
        const ms = await milliseconds(fn);
        if (counted) add(name, ms);
      };
      await Deno.remove(`${work}/up.bin`).catch(() => {});
      await measure("up", counted, () => sandd(["cp", "-q", source, `${WORKER}:${work}/up.bin`]));
      await Deno.remove(`${work}/down.bin`).catch(() => {});
      await measure(
        "down",
        counted,
        () => sandd(["cp", "-q", `${WORKER}:${source}`, `${work}/down.bin`]),
      );
      if (ssh) {
        await Deno.remove(`${work}/scp-up.bin`).catch(() => {});
        await timed(
          "scp up",
          () => runQuietly("scp", [...ssh.scpArgs, source, `${ssh.remote}${work}/scp-up.bin`]),
        );
        await Deno.remove(`${work}/scp-down.bin`).catch(() => {});
        await timed(
          "scp down",
          () =>
            runQuietly("scp", [...ssh.scpArgs, `${ssh.remote}${source}`, `${work}/scp-down.bin`]),
        );
      }
    }
    for (const name of ["up.bin", "down.bin"]) {
      const actual = (await Deno.stat(`${work}/${name}`)).size;
      if (actual !== size) throw new Error(`${name} has ${actual} bytes, expected ${size}`);
    }
    const label = `${sizeMiB} MiB, median of ${copyRuns}`;
    if (ssh) {
      for (const direction of ["up", "down"] as const) {
        figures.push({
          id: `cli.cp_${direction}_vs_scp`,
          label: `sandd cp ${direction === "up" ? "upload" : "download"}, whole process (${label})`,
          unit: "MiB/s",
          value: median(rates[`sandd ${direction}`]!),
          baseline: median(rates[`scp ${direction}`]!),
          baselineLabel: `scp ${direction === "up" ? "upload" : "download"}`,
          comparison: "ratio",
          better: "higher",
          goal: "≥ 1.0×",
        });
      }
    } else {
      skipped.push({ id: "cli.cp_vs_scp", reason: "no scp baseline" });
    }
    for (const direction of ["up", "down"] as const) {
      figures.push({
        id: `cli.controller_rss_cp_${direction}`,
        label: `sandd serve peak RSS during sandd cp ${
          direction === "up" ? "uploads" : "downloads"
        } (${sizeMiB} MiB)`,
        unit: "MiB",
        value: toMiB(growth[direction].start + Math.max(0, growth[direction].grew)),
        baseline: toMiB(growth[direction].start),
        baselineLabel: "at the start",
        comparison: "growth",
        better: "lower",
        goal: "growth ≤ 64 MiB",
      });
    }
    return { figures, skipped };
  } finally {
    if (master) {
      await new Deno.Command("ssh", {
        args: [...sshOptions, "-O", "exit", host],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).output().catch(() => {});
    }
    await ssh?.[Symbol.asyncDispose]();
    await daemon.stop();
    await serve.stop();
    await Deno.remove(work, { recursive: true });
  }
}

/** The sandd program: exec start-to-exit against ssh, cp against scp. */
export const cli: Section = {
  name: "cli",
  about:
    "sandd exec w -- true vs ssh (ControlMaster); sandd cp 1 GiB up/down vs scp; serve RSS growth",
  run: bench,
};
