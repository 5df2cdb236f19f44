/**
 * `sandd cp`: files and directories between this machine and a worker.
 *
 * @module
 */

import type { Controller, FileStat } from "@sandd/server";
import { basename, dirname, join } from "node:path";
import {
  COMMON_OPTIONS,
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  location,
  noMore,
  parse,
} from "./_args.ts";
import { withController } from "./_connect.ts";
import { json, out } from "./_format.ts";
import { progressBar } from "./_progress.ts";
import { CliError, EXIT, usageError } from "./exit_codes.ts";

/** Help of `sandd cp`. */
export const CP_USAGE = `Usage: sandd cp [options] SRC DST

Copy a file or a directory tree between this machine and a worker; one side is WORKER:PATH (like scp or
kubectl cp). A DST that is an existing directory receives SRC under its own name; otherwise DST is the new
name. Files are verified with SHA-256 and written atomically (never half-written); a directory is replaced
as a whole. '-' as SRC uploads the local stdin, as DST writes the file to the local stdout.

  sandd cp ./build worker-1:/srv/app        upload a directory
  sandd cp worker-1:/var/log/app.log .      download a file

Options:
  -q, --quiet         no progress bar (it is only drawn when stderr is a terminal anyway)
  --mkdirs            create DST's missing parent directories on the worker
  --json              print the result: { bytes, sha256 } for a file, { files, dirs, bytes } for a tree
  -h, --help          print this and exit

${CONNECTION_HELP}`;

async function remoteStat(
  controller: Controller,
  worker: string,
  path: string,
): Promise<FileStat | null> {
  try {
    return await controller.fs(worker).stat(path);
  } catch (error) {
    if ((error as { code?: string }).code === "ENOENT") return null;
    throw error;
  }
}

async function localStat(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** Bytes read from a download at a time, into one of two reused buffers. */
const COPY_BUFFER = 4 * 1024 * 1024;

/**
 * Write a download's bytes with `write` (a file's or stdout's), read into two reused buffers where the stream
 * allows it (a BYOB reader: the Client's downloads do), else chunk by chunk: no garbage and few large writes,
 * where a `pipeTo` takes the runtime's small chunks one promise chain at a time. With an asynchronous `write`
 * (stdout's) the next piece is read while the last one is being written. A file is written synchronously (its
 * `writeSync`): a download into a file measured 321-363 MiB/s against 241-353 with `write`, whose every call
 * hands the bytes to a thread of the runtime's pool (1 GiB, four alternations, same run), and half the system
 * time; the socket fills its buffer meanwhile.
 */
async function drain(
  stream: ReadableStream<Uint8Array>,
  write: (bytes: Uint8Array) => Promise<number>,
): Promise<void> {
  const writeAll = async (bytes: Uint8Array) => {
    for (let at = 0; at < bytes.length;) at += await write(bytes.subarray(at));
  };
  let reader: ReadableStreamBYOBReader | null = null;
  try {
    reader = stream.getReader({ mode: "byob" });
  } catch {
    // not a byte stream
  }
  if (!reader) {
    const chunks = stream.getReader();
    try {
      while (true) {
        const { done, value } = await chunks.read();
        if (done) return;
        await writeAll(value);
      }
    } catch (error) {
      await chunks.cancel(error).catch(() => {});
      throw error;
    }
  }
  // One buffer is read into while the other one's bytes are written. Reads go on filling the buffer for as long as
  // the last write is under way (up to the buffer's size), so that each write is as large as the disk's pace
  // allows: a socket gives 64 KiB-1 MiB per read, and a write per read cost a thread hand-off each.
  let free = new ArrayBuffer(COPY_BUFFER);
  let spare = new ArrayBuffer(COPY_BUFFER);
  let filled = 0;
  let writing = null as Promise<void> | null;
  let written = true;
  const flush = async () => {
    await writing;
    writing = null;
    if (filled === 0) return;
    const bytes = new Uint8Array(free, 0, filled);
    free = spare;
    spare = bytes.buffer as ArrayBuffer;
    filled = 0;
    written = false;
    writing = writeAll(bytes).finally(() => written = true);
    // Awaited at the next flush; a failure meanwhile is not unhandled.
    writing.catch(() => {});
  };
  try {
    while (true) {
      const { done, value } = await reader.read(new Uint8Array(free, filled));
      // The buffer was transferred to the stream and back: keep using the one it came back in.
      if (value) free = value.buffer as ArrayBuffer;
      if (done) {
        await flush();
        await writing;
        return;
      }
      filled += value.length;
      if (written || filled === COPY_BUFFER) await flush();
    }
  } catch (error) {
    await writing?.catch(() => {});
    await reader.cancel(error).catch(() => {});
    throw error;
  }
}

/** The last component of a `/`-separated path, ignoring trailing slashes. */
function lastName(path: string): string {
  return basename(path.replace(/\/+$/, "")) || path;
}

/**
 * Run `sandd cp`.
 *
 * @param args The arguments after `cp`.
 * @returns The exit code.
 */
export async function cp(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    ...COMMON_OPTIONS,
    ...CONNECTION_OPTIONS,
    quiet: { type: "boolean", short: "q" },
    mkdirs: { type: "boolean" },
  });
  if (values.help) {
    await out(CP_USAGE);
    return EXIT.OK;
  }
  if (positionals.length < 2) throw usageError("Expected SRC and DST");
  noMore(positionals, 2);
  const src = location(positionals[0]!);
  const dst = location(positionals[1]!);
  if (src.worker !== null && dst.worker !== null) {
    throw usageError(
      `Copying between two workers is not supported ('${positionals[0]}' to '${
        positionals[1]
      }'): copy through this machine`,
    );
  }
  if (src.worker === null && dst.worker === null) {
    throw usageError(
      `One side must be WORKER:PATH, got '${positionals[0]}' and '${positionals[1]}'`,
    );
  }
  const showProgress = !values.quiet && Deno.stderr.isTerminal();
  return await withController(values, async (controller) => {
    if (dst.worker !== null) {
      // Upload.
      const worker = dst.worker;
      if (src.path === "-") {
        const bar = progressBar("stdin", showProgress);
        const result = await controller.upload(worker, dst.path, Deno.stdin.readable, {
          ...(values.mkdirs ? { mkdirs: true } : {}),
          onProgress: (p) => bar.update(p.bytes, p.total),
        }).finally(() => bar.done());
        if (values.json) await json(result);
        return EXIT.OK;
      }
      const info = await localStat(src.path);
      if (info === null) throw new CliError(EXIT.NOT_FOUND, `No such local file '${src.path}'`);
      const target = await remoteStat(controller, worker, dst.path);
      const remotePath = target?.type === "directory"
        ? `${dst.path.replace(/\/+$/, "")}/${lastName(src.path)}`
        : dst.path;
      const bar = progressBar(lastName(src.path), showProgress);
      try {
        if (info.isDirectory) {
          const result = await controller.uploadDir(worker, src.path, remotePath, {
            ...(values.mkdirs ? { mkdirs: true } : {}),
            onProgress: (p) => bar.update(p.bytes, p.total),
          });
          bar.done();
          if (values.json) await json(result);
        } else {
          const file = await Deno.open(src.path, { read: true });
          const result = await controller.upload(worker, remotePath, file.readable, {
            size: info.size,
            ...(info.mode !== null ? { mode: info.mode & 0o7777 } : {}),
            ...(values.mkdirs ? { mkdirs: true } : {}),
            onProgress: (p) => bar.update(p.bytes, p.total ?? info.size),
          });
          bar.done();
          if (values.json) await json(result);
        }
      } finally {
        bar.done();
      }
      return EXIT.OK;
    }
    // Download.
    const worker = src.worker!;
    const stat = await controller.fs(worker).stat(src.path);
    if (dst.path === "-") {
      if (stat.type === "directory") {
        throw usageError(`'${positionals[0]}' is a directory: it cannot go to stdout`);
      }
      const stream = await controller.downloadStream(worker, src.path);
      await drain(stream, (bytes) => Deno.stdout.write(bytes));
      return EXIT.OK;
    }
    const local = await localStat(dst.path);
    const localPath = local?.isDirectory ? join(dst.path, lastName(src.path)) : dst.path;
    const bar = progressBar(lastName(src.path), showProgress);
    try {
      if (stat.type === "directory") {
        let bytes = 0;
        await controller.downloadDir(worker, src.path, localPath, {
          onProgress: (p) => {
            bytes = p.bytes;
            bar.update(p.bytes, p.total);
          },
        });
        bar.done();
        if (values.json) await json({ path: localPath, bytes });
        return EXIT.OK;
      }
      // A file: into a temporary file beside the target, renamed into place once complete and verified.
      const temp = join(dirname(localPath), `.${basename(localPath)}.sandd-${crypto.randomUUID()}`);
      const stream = await controller.downloadStream(worker, src.path, {
        onProgress: (p) => bar.update(p.bytes, p.total ?? stat.size),
      });
      try {
        {
          using file = await Deno.open(temp, {
            write: true,
            createNew: true,
            mode: stat.mode & 0o777,
          });
          await drain(stream, (bytes) => Promise.resolve(file.writeSync(bytes)));
        }
        await Deno.rename(temp, localPath);
      } catch (error) {
        await stream.cancel().catch(() => {});
        await Deno.remove(temp).catch(() => {});
        throw error;
      }
      bar.done();
      if (values.json) await json({ path: localPath, bytes: (await Deno.stat(localPath)).size });
      return EXIT.OK;
    } finally {
      bar.done();
    }
  });
}
