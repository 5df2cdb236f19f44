/**
 * The streaming pieces of `w.fs`: a writable that completes only once its bytes are in place on the worker (over
 * an upload, or over a small argv command's stdin for appends and exclusive creates), the {@linkcode WorkerFile}
 * that `open`/`create` return, and the {@linkcode WorkerFsWatcher} of `watchFs`.
 *
 * @module
 */

import type { Controller, FileSystemHandle } from "./controller.ts";
import type { FsEvent } from "./files.ts";
import { denoFileError, fileErrorOf } from "./_worker_errors.ts";

/** @internal What the fs pieces need from their worker. */
export interface FsHost {
  readonly controller: Controller;
  readonly daemonId: string;
  /** Resolves when the daemon's shell is POSIX. */
  checkPosix(): Promise<void>;
}

/**
 * A writable over a writer, whose `close()` resolves only once `done()` does (the bytes are in place), and whose
 * writes report the operation's own failure (mapped) instead of a broken pipe.
 */
function completingWritable(
  inner: WritableStream<Uint8Array>,
  done: () => Promise<void>,
  failure: () => Promise<unknown>,
): WritableStream<Uint8Array> {
  const writer = inner.getWriter();
  const fail = async (error: unknown): Promise<never> => {
    throw (await failure()) ?? error;
  };
  // The operation failing first (a refused upload, a shell that could not open the file) must not leave writes
  // waiting for a reader that is gone: error the pipe so they fail (with the operation's error, through `fail`).
  done().catch((error) => writer.abort(error).catch(() => {}));
  return new WritableStream<Uint8Array>({
    write: (chunk) => writer.write(chunk).catch(fail),
    close: async () => {
      await writer.close().catch(fail);
      await done();
    },
    abort: async (reason) => {
      await writer.abort(reason).catch(() => {});
      await done().catch(() => {});
    },
  });
}

/** @internal A writable that uploads to `path` (atomic, verified): the file is replaced when it closes. */
export function uploadWritable(
  host: FsHost,
  path: string,
  options: { mode?: number; signal?: AbortSignal },
): WritableStream<Uint8Array> {
  const pipe = new TransformStream<Uint8Array, Uint8Array>();
  let error: unknown = null;
  const uploading = host.controller.upload(host.daemonId, path, pipe.readable, {
    ...(options.mode !== undefined ? { mode: options.mode } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  }).then(() => {}, (e) => {
    error = denoFileError(e, host.daemonId, path);
    throw error;
  });
  uploading.catch(() => {});
  return completingWritable(pipe.writable, () => uploading, async () => {
    await uploading.catch(() => {});
    return error;
  });
}

/** How a shell redirection failure reads, per OS code (dash, bash, busybox wording). */
const SHELL_FAILURES: [RegExp, string][] = [
  [/File exists|cannot overwrite existing file/i, "EEXIST"],
  [/Permission denied|Read-only file system|Operation not permitted/i, "EACCES"],
  [/Directory nonexistent|No such file or directory|nonexistent directory/i, "ENOENT"],
  [/Is a directory/i, "EISDIR"],
  [/Not a directory/i, "ENOTDIR"],
];

/** Exit code the append script uses for "the file does not exist" (`create: false`). */
const NOT_FOUND_EXIT = 44;

/**
 * @internal A writable over a small `sh -c` script run from an argv array on the worker (the path and mode are
 * positional parameters, never interpolated into the script): `append` writes with `>>` (O_APPEND: concurrent
 * appends do not overwrite each other), `createNew` with `set -C` and `>` (noclobber: O_EXCL). The result is not
 * atomic: a failure part-way leaves what was written.
 */
export async function shellWritable(
  host: FsHost,
  path: string,
  options: {
    append: boolean;
    create: boolean;
    createNew: boolean;
    mode?: number;
    signal?: AbortSignal;
  },
): Promise<WritableStream<Uint8Array>> {
  await host.checkPosix();
  const write = options.createNew
    ? `set -C; cat > "$1" || exit`
    : options.create
    ? `cat >> "$1" || exit`
    : `[ -e "$1" ] || [ -L "$1" ] || exit ${NOT_FOUND_EXIT}; cat >> "$1" || exit`;
  const script = `${write}; [ -z "$2" ] || chmod -- "$2" "$1"`;
  const mode = options.mode !== undefined ? options.mode.toString(8) : "";
  const handle = await host.controller.spawn(
    host.daemonId,
    ["sh", "-c", script, "sh", path, mode],
    { stdin: true },
  );
  handle.stdout.cancel().catch(() => {});
  const stderr = new Response(handle.stderr).text().catch(() => "");
  const onAbort = () => handle.kill("SIGKILL").catch(() => {});
  options.signal?.addEventListener("abort", onAbort, { once: true });
  let failure: unknown = null;
  const finished = (async () => {
    try {
      const status = await handle.status;
      if (status.exitCode === 0) return;
      if (options.signal?.aborted) throw options.signal.reason;
      const text = (await stderr).trim();
      if (status.exitCode === NOT_FOUND_EXIT && !options.create) {
        throw fileErrorOf("ENOENT", "No such file or directory", host.daemonId, path);
      }
      const code = SHELL_FAILURES.find(([pattern]) => pattern.test(text))?.[1] ?? "EIO";
      throw fileErrorOf(
        code,
        text || `Writing failed with exit code ${status.exitCode}`,
        host.daemonId,
        path,
      );
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
    }
  })();
  finished.catch((e) => failure = e);
  return completingWritable(handle.stdin, () => finished, async () => {
    await finished.catch(() => {});
    return failure;
  });
}

/**
 * @internal Write all of `data` to a writable and close it (abort it when the data stream fails).
 */
export async function writeAllTo(
  writable: WritableStream<Uint8Array>,
  data: Uint8Array | ReadableStream<Uint8Array>,
): Promise<void> {
  if (data instanceof ReadableStream) {
    await data.pipeTo(writable);
    return;
  }
  const writer = writable.getWriter();
  try {
    if (data.byteLength > 0) await writer.write(data);
    await writer.close();
  } catch (error) {
    await writer.abort(error).catch(() => {});
    throw error;
  } finally {
    writer.releaseLock();
  }
}

/**
 * A file on a worker opened for streaming by `w.fs.open()` or `w.fs.create()`: a `readable` (a download, verified
 * with SHA-256 at its end) or a `writable` (an upload: the file is replaced atomically when it closes; or an
 * append). There is no random access (`seek`, `read(buffer)`): stream the whole file.
 *
 * @example Stream a large file to the worker and back
 * ```ts ignore
 * await using out = await w.fs.create("/data/big.bin");
 * await (await Deno.open("big.bin")).readable.pipeTo(out.writable); // closing commits the file
 * await using input = await w.fs.open("/data/big.bin");
 * await input.readable.pipeTo((await Deno.create("copy.bin")).writable);
 * ```
 */
export class WorkerFile implements AsyncDisposable {
  /** The path on the worker. */
  readonly path: string;
  readonly #readable: ReadableStream<Uint8Array> | null;
  readonly #writable: WritableStream<Uint8Array> | null;

  /**
   * @internal Use `w.fs.open()` or `w.fs.create()`.
   *
   * @param path The path.
   * @param readable The download, when opened for reading.
   * @param writable The upload or append, when opened for writing.
   */
  constructor(
    path: string,
    readable: ReadableStream<Uint8Array> | null,
    writable: WritableStream<Uint8Array> | null,
  ) {
    this.path = path;
    this.#readable = readable;
    this.#writable = writable;
  }

  /**
   * The file's bytes.
   *
   * @throws {TypeError} When the file was not opened for reading.
   */
  get readable(): ReadableStream<Uint8Array> {
    if (!this.#readable) throw new TypeError(`'${this.path}' was not opened for reading`);
    return this.#readable;
  }

  /**
   * Where to write the file's bytes; closing it commits them (and rejects if they could not be written).
   *
   * @throws {TypeError} When the file was not opened for writing.
   */
  get writable(): WritableStream<Uint8Array> {
    if (!this.#writable) throw new TypeError(`'${this.path}' was not opened for writing`);
    return this.#writable;
  }

  /**
   * Close: an unread download is cancelled; an unlocked writable is closed (committing what was written).
   * A stream being piped is left to its pipe.
   */
  async close(): Promise<void> {
    if (this.#readable && !this.#readable.locked) await this.#readable.cancel().catch(() => {});
    if (this.#writable && !this.#writable.locked) {
      // A TypeError: it was closed or aborted already (by a pipe), which reported its own result.
      await this.#writable.close().catch((error) => {
        if (!(error instanceof TypeError)) throw error;
      });
    }
  }

  /** Same as {@linkcode WorkerFile.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

const DENO_KINDS = new Set(["any", "access", "create", "modify", "rename", "remove", "other"]);

/**
 * What `w.fs.watchFs()` returns: `Deno.FsWatcher`'s shape (an async iterable of `Deno.FsEvent`, `close()`,
 * disposal). Events the worker dropped because nobody read them arrive as one `{ kind: "other", paths: [],
 * flag: "rescan" }`.
 *
 * @example Watch a directory until something is created
 * ```ts ignore
 * await using watcher = w.fs.watchFs("/work/out");
 * for await (const event of watcher) if (event.kind === "create") break;
 * ```
 */
export class WorkerFsWatcher implements AsyncIterable<Deno.FsEvent>, AsyncDisposable {
  readonly #abort = new AbortController();
  readonly #queue: Deno.FsEvent[] = [];
  readonly #pumps: Promise<void>;
  #error: unknown = null;
  #running: number;
  #wake: (() => void) | null = null;

  /**
   * @internal Use `w.fs.watchFs()`.
   *
   * @param fs The controller's file system handle.
   * @param paths The paths.
   * @param recursive Watch subdirectories.
   */
  constructor(fs: FileSystemHandle, paths: string[], recursive: boolean) {
    this.#running = paths.length;
    this.#pumps = Promise.all(paths.map((path) => this.#pump(fs, path, recursive))).then(() => {});
  }

  async #pump(fs: FileSystemHandle, path: string, recursive: boolean): Promise<void> {
    try {
      for await (const event of fs.watch(path, { recursive, signal: this.#abort.signal })) {
        if (this.#abort.signal.aborted) break;
        this.#queue.push(toDenoEvent(event));
        this.#wakeUp();
      }
    } catch (error) {
      this.#error ??= denoFileError(error, fs.daemonId, path);
      this.#abort.abort();
    } finally {
      this.#running--;
      this.#wakeUp();
    }
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  /** Stop watching; the iteration ends (queued events are dropped). Resolves once every watch has ended. */
  close(): Promise<void> {
    this.#abort.abort();
    this.#queue.length = 0;
    this.#wakeUp();
    return this.#pumps;
  }

  /**
   * The events, as they happen. Throws when a watch failed (for example a missing path: `NotFound`). Leaving the
   * loop (`break`, an exception) closes the watcher, as with `Deno.watchFs`.
   */
  async *[Symbol.asyncIterator](): AsyncGenerator<Deno.FsEvent, void, undefined> {
    try {
      while (true) {
        const event = this.#queue.shift();
        if (event) {
          yield event;
          continue;
        }
        if (this.#error) throw this.#error;
        if (this.#abort.signal.aborted || this.#running === 0) return;
        await new Promise<void>((resolve) => this.#wake = resolve);
      }
    } finally {
      await this.close();
    }
  }

  /** Same as {@linkcode WorkerFsWatcher.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function toDenoEvent(event: FsEvent): Deno.FsEvent {
  if (event.kind === "overflow") return { kind: "other", paths: [], flag: "rescan" };
  const kind = (DENO_KINDS.has(event.kind) ? event.kind : "other") as Deno.FsEvent["kind"];
  return { kind, paths: [...event.paths] };
}
