// File transfers through a daemon over loopback: upload and download of a random file against `cp` (the disk's
// own pace) and `scp` over loopback (skipped with the reason when sshd/scp is unavailable), medians of several
// runs, with how far the controller's and the daemon's peak RSS grow during each direction. Downloads are read
// two ways: `pipeTo(file.writable)` (the chunks are the caller's, freed by the garbage collector when it gets to
// them) and a BYOB reader into one reused buffer (the controller frees each message as it copies it out).
import type { BenchContext, Section } from "./_context.ts";
import { withDaemon } from "./_daemon.ts";
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

async function seconds(fn: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await fn();
  return (performance.now() - started) / 1000;
}

async function writeRandomFile(path: string, size: number): Promise<void> {
  // A random block repeated (at most 64 MiB): nothing on the path compresses.
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

async function run({ checkout, quick, log }: BenchContext): Promise<SectionResult> {
  const sizeMiB = Number(Deno.env.get("BENCH_FILE_MIB") ?? (quick ? 8 : 1024));
  const runs = quick ? 1 : 3;
  const size = sizeMiB * 1024 * 1024;
  const work = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "sandd-bench-" });
  const skipped: Skipped[] = [];
  try {
    const source = `${work}/source.bin`;
    await writeRandomFile(source, size);
    const missing = sshdMissing();
    await using ssh = missing ? null : await startSshd(work);
    if (missing || !ssh) {
      skipped.push({ id: "files.scp", reason: missing ?? "sshd did not start on loopback" });
    }
    return await withDaemon(checkout, "bench-files", async (server, daemon) => {
      const rates: Record<string, number[]> = {};
      const add = (name: string, s: number) => (rates[name] ??= []).push(sizeMiB / s);
      const growth = {
        controllerUp: 0,
        daemonUp: 0,
        controllerDown: 0,
        daemonDown: 0,
        controllerByob: 0,
      };
      const start = { ...growth };
      for (let i = 0; i < runs; i++) {
        log(`files: run ${i + 1} of ${runs}`);
        await Deno.remove(`${work}/cp.bin`).catch(() => {});
        add("cp", await seconds(() => runQuietly("cp", [source, `${work}/cp.bin`])));
        await Deno.remove(`${work}/cp.bin`).catch(() => {});
        add(
          "cp + fsync",
          await seconds(() =>
            runQuietly("sh", ["-c", 'cp "$0" "$1" && sync "$1"', source, `${work}/cp.bin`])
          ),
        );

        let at = { controller: resetPeak("self"), daemon: resetPeak(daemon.pid) };
        add(
          "upload",
          await seconds(async () => {
            const file = await Deno.open(source, { read: true });
            await server.upload("bench-files", `${work}/up.bin`, file.readable);
          }),
        );
        if (peakOf("self") - at.controller >= growth.controllerUp) {
          growth.controllerUp = peakOf("self") - at.controller;
          start.controllerUp = at.controller;
        }
        if (peakOf(daemon.pid) - at.daemon >= growth.daemonUp) {
          growth.daemonUp = peakOf(daemon.pid) - at.daemon;
          start.daemonUp = at.daemon;
        }

        at = { controller: resetPeak("self"), daemon: resetPeak(daemon.pid) };
        add(
          "download",
          await seconds(async () => {
            const file = await Deno.open(`${work}/down.bin`, {
              write: true,
              create: true,
              truncate: true,
            });
            await (await server.downloadStream("bench-files", source)).pipeTo(file.writable);
          }),
        );
        if (peakOf("self") - at.controller >= growth.controllerDown) {
          growth.controllerDown = peakOf("self") - at.controller;
          start.controllerDown = at.controller;
        }
        if (peakOf(daemon.pid) - at.daemon >= growth.daemonDown) {
          growth.daemonDown = peakOf(daemon.pid) - at.daemon;
          start.daemonDown = at.daemon;
        }

        at = { controller: resetPeak("self"), daemon: resetPeak(daemon.pid) };
        add(
          "download (BYOB)",
          await seconds(async () => {
            using file = await Deno.open(`${work}/byob.bin`, {
              write: true,
              create: true,
              truncate: true,
            });
            const stream = await server.downloadStream("bench-files", source);
            const write = async (bytes: Uint8Array) => {
              for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
            };
            let reader: ReadableStreamBYOBReader;
            try {
              reader = stream.getReader({ mode: "byob" });
            } catch {
              // A checkout whose downloads are not byte streams: its chunks, one by one.
              for await (const chunk of stream) await write(chunk);
              return;
            }
            let buffer = new ArrayBuffer(4 * 1024 * 1024);
            while (true) {
              const { done, value } = await reader.read(new Uint8Array(buffer));
              if (done) break;
              await write(value);
              buffer = value.buffer as ArrayBuffer;
            }
          }),
        );
        if (peakOf("self") - at.controller >= growth.controllerByob) {
          growth.controllerByob = peakOf("self") - at.controller;
          start.controllerByob = at.controller;
        }

        if (ssh) {
          add(
            "scp upload",
            await seconds(() =>
              runQuietly("scp", [...ssh.scpArgs, source, `${ssh.remote}${work}/scp-up.bin`])
            ),
          );
          add(
            "scp download",
            await seconds(() =>
              runQuietly("scp", [...ssh.scpArgs, `${ssh.remote}${source}`, `${work}/scp-down.bin`])
            ),
          );
        }
      }
      for (const name of ["up.bin", "down.bin", "byob.bin"]) {
        const actual = (await Deno.stat(`${work}/${name}`)).size;
        if (actual !== size) throw new Error(`${name} has ${actual} bytes, expected ${size}`);
      }
      const m = (name: string) => median(rates[name]!);
      const label = `${sizeMiB} MiB, median of ${runs}`;
      const rate = (
        id: string,
        what: string,
        value: string,
        baseline: string,
        goal: string,
      ): Figure => ({
        id,
        label: `${what} (${label})`,
        unit: "MiB/s",
        value: m(value),
        baseline: m(baseline),
        baselineLabel: baseline,
        comparison: "ratio",
        better: "higher",
        goal,
      });
      const memory = (
        id: keyof typeof growth,
        side: "controller" | "daemon",
        direction: string,
      ): Figure => ({
        id: `files.${side}_rss_${direction.toLowerCase().replace(/\W+/g, "_")}`,
        label: `${side} peak RSS during the ${direction}s (${sizeMiB} MiB)`,
        unit: "MiB",
        value: toMiB(start[id] + growth[id]),
        baseline: toMiB(start[id]),
        baselineLabel: "at the start",
        comparison: "growth",
        better: "lower",
        goal: side === "controller" ? "growth ≤ 64 MiB" : "bounded",
      });
      const figures: Figure[] = [
        rate("files.upload_vs_cp", "upload, against the disk", "upload", "cp + fsync", "—"),
        rate("files.download_vs_cp", "download, against the disk", "download", "cp", "—"),
      ];
      if (ssh) {
        figures.push(
          rate("files.upload_vs_scp", "upload, against scp", "upload", "scp upload", "≥ 1.2×"),
          rate(
            "files.download_vs_scp",
            "download, against scp",
            "download",
            "scp download",
            "≥ 1.2×",
          ),
          rate(
            "files.download_byob_vs_scp",
            "download read by a BYOB reader, against scp",
            "download (BYOB)",
            "scp download",
            "≥ 1.2×",
          ),
        );
      }
      figures.push(
        memory("controllerUp", "controller", "upload"),
        memory("controllerDown", "controller", "download"),
        memory("controllerByob", "controller", "BYOB download"),
        memory("daemonUp", "daemon", "upload"),
        memory("daemonDown", "daemon", "download"),
      );
      return { figures, skipped };
    });
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}

/** File transfers. */
export const files: Section = {
  name: "files",
  about: "upload/download MiB/s against cp and scp (1 GiB, 3 runs); peak RSS growth of both sides",
  run,
};
