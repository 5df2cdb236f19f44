// Workspace snapshots: snapshot and restore of a tree of many files through a daemon, against `tar` of the same
// tree in the same run (create an archive and flush it; extract it), and a second snapshot after one file
// changed (only its blob is new) against a full `tar` again. Size: BENCH_SNAPSHOT_FILES files (default 10,000;
// --quick 500) holding BENCH_SNAPSHOT_MIB MiB in all (default 1024; --quick 16), 100 files per directory.
import type { BenchContext, Section } from "./_context.ts";
import { withDaemon } from "./_daemon.ts";
import { runQuietly } from "./_sshd.ts";
import type { Figure, SectionResult } from "./_stats.ts";

async function seconds(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return (performance.now() - started) / 1000;
}

/** `files` files of about `bytes / files` bytes each, every one distinct (an index header on random bytes). */
async function makeTree(dir: string, files: number, bytes: number): Promise<void> {
  const block = new Uint8Array(64 * 1024 * 1024);
  for (let at = 0; at < block.length; at += 65536) {
    crypto.getRandomValues(block.subarray(at, at + 65536));
  }
  const each = Math.max(16, Math.floor(bytes / files));
  const encoder = new TextEncoder();
  for (let i = 0; i < files; i++) {
    const sub = `${dir}/d${Math.floor(i / 100)}`;
    if (i % 100 === 0) await Deno.mkdir(sub, { recursive: true });
    const start = (i * 7919 * 4096) % (block.length - each);
    const body = block.slice(start, start + each);
    body.set(encoder.encode(`file ${i}\n`));
    await Deno.writeFile(`${sub}/f${i}.bin`, body);
  }
}

async function run({ checkout, quick, log }: BenchContext): Promise<SectionResult> {
  const files = Number(Deno.env.get("BENCH_SNAPSHOT_FILES") ?? (quick ? 500 : 10_000));
  const mib = Number(Deno.env.get("BENCH_SNAPSHOT_MIB") ?? (quick ? 16 : 1024));
  const work = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "sandd-bench-snap-" });
  try {
    const tree = `${work}/tree`;
    log(`snapshots: writing ${files} files, ${mib} MiB`);
    await makeTree(tree, files, mib * 1024 * 1024);
    const args = ["--state-dir", `${work}/state`];
    return await withDaemon(checkout, "bench-snapshots", async (server) => {
      const snaps = (server as unknown as {
        snapshots(id: string): {
          create(dir: string): Promise<{ id: string; newBytes: number; totalSize: number }>;
          restore(id: string, dest: string): Promise<unknown>;
        };
      }).snapshots("bench-snapshots");
      log("snapshots: tar -c");
      const tarCreate = await seconds(() =>
        runQuietly("sh", ["-c", 'tar -cf "$1" -C "$0" . && sync "$1"', tree, `${work}/tree.tar`])
      );
      log("snapshots: snapshot");
      let first = { id: "", newBytes: 0, totalSize: 0 };
      const create = await seconds(async () => first = await snaps.create(tree));
      log("snapshots: tar -x");
      await Deno.mkdir(`${work}/untar`);
      const tarExtract = await seconds(() =>
        runQuietly("tar", ["-xf", `${work}/tree.tar`, "-C", `${work}/untar`])
      );
      log("snapshots: restore");
      const restore = await seconds(() => snaps.restore(first.id, `${work}/restored`));
      await Deno.writeTextFile(`${tree}/d0/f0.bin`, "changed\n");
      log("snapshots: second snapshot, one file changed");
      let second = { id: "", newBytes: 0, totalSize: 0 };
      const again = await seconds(async () => second = await snaps.create(tree));
      log("snapshots: tar -c again");
      const tarAgain = await seconds(() =>
        runQuietly("sh", ["-c", 'tar -cf "$1" -C "$0" . && sync "$1"', tree, `${work}/tree2.tar`])
      );
      const check = await new Deno.Command("diff", {
        args: ["-rq", `${work}/untar`, `${work}/restored`],
        stdout: "null",
        stderr: "null",
      }).output();
      if (!check.success) throw new Error("The restored tree differs from the extracted tar");
      const size = `${files} files, ${mib} MiB`;
      const rate = (
        id: string,
        label: string,
        s: number,
        base: number,
        baseLabel: string,
        goal: string,
      ): Figure => ({
        id,
        label: `${label} (${size})`,
        unit: "MiB/s",
        value: mib / s,
        baseline: mib / base,
        baselineLabel: baseLabel,
        comparison: "ratio",
        better: "higher",
        goal,
      });
      return {
        figures: [
          rate("snapshots.create", "snapshot", create, tarCreate, "tar -c + sync", "≥ 0.5×"),
          rate("snapshots.restore", "restore (verified)", restore, tarExtract, "tar -x", "≥ 0.5×"),
          rate(
            "snapshots.second",
            "second snapshot, one file changed",
            again,
            tarAgain,
            "tar -c + sync",
            "≥ 1×",
          ),
          {
            id: "snapshots.second_stored",
            label: `store growth of the second snapshot (${size})`,
            unit: "MiB",
            value: second.newBytes / (1024 * 1024),
            baseline: first.newBytes / (1024 * 1024),
            baselineLabel: "first snapshot's",
            comparison: "ratio",
            better: "lower",
            goal: "≈ one file",
          },
        ],
        skipped: [],
      };
    }, { args });
  } finally {
    await new Deno.Command("chmod", { args: ["-R", "u+w", work] }).output();
    await Deno.remove(work, { recursive: true });
  }
}

/** Workspace snapshots. */
export const snapshots: Section = {
  name: "snapshots",
  about:
    "snapshot/restore of 10,000 files (1 GiB) against tar in the same run; a second snapshot after one change",
  run,
};
