// File transfer benchmark: 1 GiB upload and download through a real daemon over loopback, with the peak RSS of
// the controller and the daemon, against `cp` of the same file (the disk's own limit) and `scp` over loopback
// (when OpenSSH's sshd is installed). Medians of several runs and ratios from the same run.
//
//   deno run -A tests/bench_files.ts [--size-mib 1024] [--runs 3]
import { parseArgs } from "node:util";
import { Server } from "../mod.ts";
import { TestDaemon } from "./_daemon.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { "size-mib": { type: "string" }, runs: { type: "string" } },
});
const SIZE_MIB = Number(values["size-mib"] ?? 1024);
const RUNS = Number(values.runs ?? 3);
const SIZE = SIZE_MIB * 1024 * 1024;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function status(pid: number | "self", field: "VmHWM" | "VmRSS"): number {
  const text = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
  return match ? Number(match[1]) * 1024 : NaN;
}

/** Reset the peak-RSS counter (Linux: writing 5 to clear_refs); returns the RSS at that moment. */
function resetPeak(pid: number | "self"): number {
  Deno.writeTextFileSync(`/proc/${pid}/clear_refs`, "5");
  return status(pid, "VmRSS");
}

async function run(cmd: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

async function time(fn: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await fn();
  return (performance.now() - started) / 1000;
}

const mib = (seconds: number) => SIZE_MIB / seconds;
const fmt = (n: number) => n.toFixed(0).padStart(6);

// --- sshd on loopback, if available ---
async function startSshd(
  dir: string,
): Promise<{ port: number; key: string; stop: () => Promise<void> } | null> {
  const sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"].find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  });
  if (!sshd) return null;
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", `${dir}/host_key`]);
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", `${dir}/client_key`]);
  await Deno.copyFile(`${dir}/client_key.pub`, `${dir}/authorized_keys`);
  await Deno.mkdir("/run/sshd", { recursive: true });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await Deno.writeTextFile(
    `${dir}/sshd_config`,
    [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${dir}/host_key`,
      `AuthorizedKeysFile ${dir}/authorized_keys`,
      "PermitRootLogin prohibit-password",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      "StrictModes no",
      `PidFile ${dir}/sshd.pid`,
      "Subsystem sftp internal-sftp",
      "",
    ].join("\n"),
  );
  const child = new Deno.Command(sshd, {
    args: ["-D", "-e", "-f", `${dir}/sshd_config`],
    stdout: "null",
    stderr: "null",
  }).spawn();
  // sshd has no readiness signal: retry a connection, bounded.
  for (let i = 0; i < 100; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return {
        port,
        key: `${dir}/client_key`,
        stop: async () => {
          child.kill("SIGTERM");
          await child.status;
        },
      };
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  child.kill("SIGKILL");
  await child.status;
  return null;
}

const work = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "sandd-bench-" });
const source = `${work}/source.bin`;
{
  // Random content (a 64 MiB random block repeated: nothing on the path compresses).
  const block = new Uint8Array(Math.min(SIZE, 64 * 1024 * 1024));
  for (let at = 0; at < block.length; at += 65536) {
    crypto.getRandomValues(block.subarray(at, at + 65536));
  }
  using file = await Deno.open(source, { write: true, create: true, truncate: true });
  for (let written = 0; written < SIZE; written += block.length) {
    const piece = block.subarray(0, Math.min(block.length, SIZE - written));
    for (let at = 0; at < piece.length;) at += await file.write(piece.subarray(at));
  }
}

const server = await Server.listen({ port: 0 });
const daemon = new TestDaemon({ id: "bench", url: server.url });
await server.waitForDaemon("bench", { timeout: 30_000 });
const ssh = await startSshd(work);
if (!ssh) console.log("scp: skipped (no sshd; apt-get install -y openssh-server)");
const scpArgs = ssh
  ? [
    "-q",
    "-P",
    String(ssh.port),
    "-i",
    ssh.key,
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "BatchMode=yes",
  ]
  : [];

const results: Record<string, number[]> = {};
/** Largest growth of the peak RSS over the RSS at the start of a transfer, per side and direction. */
const peaks = { controllerUp: 0, daemonUp: 0, controllerDown: 0, daemonDown: 0 };
let at = { controller: 0, daemon: 0 };
const reset = () => at = { controller: resetPeak("self"), daemon: resetPeak(daemon.pid) };
const base = { controller: status("self", "VmRSS"), daemon: status(daemon.pid, "VmRSS") };
const add = (name: string, seconds: number) => (results[name] ??= []).push(mib(seconds));

try {
  for (let i = 0; i < RUNS; i++) {
    await Deno.remove(`${work}/cp.bin`).catch(() => {});
    add("cp", await time(() => run("cp", [source, `${work}/cp.bin`])));
    await Deno.remove(`${work}/cp.bin`).catch(() => {});
    add(
      "cp + fsync",
      await time(() => run("sh", ["-c", `cp "$0" "$1" && sync "$1"`, source, `${work}/cp.bin`])),
    );

    reset();
    add(
      "sandd upload",
      await time(async () => {
        const file = await Deno.open(source, { read: true });
        await server.upload("bench", `${work}/up.bin`, file.readable);
      }),
    );
    peaks.controllerUp = Math.max(peaks.controllerUp, status("self", "VmHWM") - at.controller);
    peaks.daemonUp = Math.max(peaks.daemonUp, status(daemon.pid, "VmHWM") - at.daemon);

    reset();
    add(
      "sandd download",
      await time(async () => {
        const file = await Deno.open(`${work}/down.bin`, {
          write: true,
          create: true,
          truncate: true,
        });
        await (await server.downloadStream("bench", source)).pipeTo(file.writable);
      }),
    );
    peaks.controllerDown = Math.max(peaks.controllerDown, status("self", "VmHWM") - at.controller);
    peaks.daemonDown = Math.max(peaks.daemonDown, status(daemon.pid, "VmHWM") - at.daemon);

    if (ssh) {
      add(
        "scp upload",
        await time(() => run("scp", [...scpArgs, source, `root@127.0.0.1:${work}/scp-up.bin`])),
      );
      add(
        "scp download",
        await time(() =>
          run("scp", [...scpArgs, `root@127.0.0.1:${source}`, `${work}/scp-down.bin`])
        ),
      );
    }
  }
  for (const name of ["up.bin", "down.bin"]) {
    if ((await Deno.stat(`${work}/${name}`)).size !== SIZE) {
      throw new Error(`${name} has the wrong size`);
    }
  }

  console.log(
    `\n${SIZE_MIB} MiB, ${RUNS} runs, medians (MiB/s); loopback, ${navigator.hardwareConcurrency} cores\n`,
  );
  for (const [name, xs] of Object.entries(results)) {
    console.log(
      `${name.padEnd(16)} ${fmt(median(xs))} MiB/s   runs: ${
        xs.map((x) => x.toFixed(0)).join(", ")
      }`,
    );
  }
  const m = (name: string) => median(results[name] ?? [NaN]);
  console.log("");
  console.log(`upload   / cp + fsync: ${(m("sandd upload") / m("cp + fsync")).toFixed(2)}x`);
  console.log(`download / cp        : ${(m("sandd download") / m("cp")).toFixed(2)}x`);
  if (ssh) {
    console.log(`upload   / scp       : ${(m("sandd upload") / m("scp upload")).toFixed(2)}x`);
    console.log(`download / scp       : ${(m("sandd download") / m("scp download")).toFixed(2)}x`);
  }
  const mb = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MiB`;
  console.log("");
  console.log(`RSS before: controller ${mb(base.controller)}, daemon ${mb(base.daemon)}`);
  console.log(
    `peak RSS growth during upload:   controller +${mb(peaks.controllerUp)}, daemon +${
      mb(peaks.daemonUp)
    }`,
  );
  console.log(
    `peak RSS growth during download: controller +${mb(peaks.controllerDown)}, daemon +${
      mb(peaks.daemonDown)
    }`,
  );
} finally {
  await ssh?.stop();
  await daemon.stop();
  await server.close();
  await Deno.remove(work, { recursive: true });
}
