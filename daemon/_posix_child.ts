// Copyright 2026 the SandD authors. MIT license.
/**
 * Pipe-based children started with libc `posix_spawn` over Deno FFI: each in its own process group
 * (`POSIX_SPAWN_SETPGROUP`, or its own session with `newSession`), signal mask and dispositions reset, fds
 * above 2 closed, stdio on non-blocking pipes read through the shared {@linkcode waitReadable} poller, exit
 * observed through a Linux pidfd.
 *
 * Why a process group and not a session by default: with the scheduler's autogroups (enabled on most Linux
 * desktops and on these machines) every new session is a new scheduling group, and on a loaded machine a
 * `setsid` child of `sh -c true` measured 2-4 ms slower than the same child in the daemon's session.
 *
 * Why not `Deno.Command`: with `detached: true` it forks (7-15 ms in a large daemon) instead of using
 * `posix_spawn` (a vfork-style clone, independent of the daemon's size).
 *
 * @module
 */

import type { ChildHandle, ExitStatus } from "./process_table.ts";
import { acquireLibc, errno, errnoError, type Libc, releaseLibc, setFlag } from "./ffi/libc.ts";
import { cancel, pollWatches, waitReadable, waitWritable } from "./ffi/poller.ts";
import { OS, signalNumber } from "./ffi/constants.ts";
import { watchExit } from "./ffi/child_exit.ts";
import { failedChild, findProgram, spawnFailure } from "./ffi/spawn.ts";
import { posixSpawn } from "./ffi/_posix_spawn.ts";
import { keepChunk, releaseChunk, takeChunk } from "./_chunk_pool.ts";

const IS_DARWIN = Deno.build.os === "darwin";
const IS_LINUX = Deno.build.os === "linux";

/**
 * Whether {@linkcode spawnPosixChild} works on this platform (Linux with glibc, macOS). Elsewhere use
 * `Deno.Command`.
 *
 * @example Choose a spawner
 * ```ts
 * import { posixChildSupported } from "./_posix_child.ts";
 *
 * console.log(posixChildSupported ? "posix_spawn" : "Deno.Command");
 * ```
 */
export const posixChildSupported: boolean = IS_LINUX || IS_DARWIN;

const { O_RDONLY, O_NONBLOCK, O_CLOEXEC } = OS.open;
const { F_SETFD, F_SETFL, FD_CLOEXEC, F_DUPFD_CLOEXEC, F_SETPIPE_SZ } = OS.fcntl;
const { EAGAIN, EINTR, EPIPE } = OS.errno;
/**
 * Largest single read from a child's pipe. A wakeup reads on while there is data and credit (the next read follows
 * at once), so this bounds a syscall, not a wakeup; reads go into reused buffers (`_chunk_pool.ts`, which copies a
 * read under half a buffer into a buffer of its size). A bulk stream's grown pipe (1 MiB) holds more than one read:
 * 256 KiB reads make 256 KiB frames, a quarter of the messages (and per-message work on both sides) of 64 KiB ones.
 */
const READ_CHUNK = 256 * 1024;
const READ_CHUNK_BIG = BigInt(READ_CHUNK);
/** A read that fills this much (a whole default pipe) marks a bulk stream, whose pipe then grows (Linux). */
const PIPE_DEFAULT = 64 * 1024;
/** The size a bulk stream's pipe grows to (the unprivileged maximum by default). */
const PIPE_BULK = 1024 * 1024;
/** Reported when the exit status cannot be learned (another waiter reaped the child). */
const LOST_STATUS: ExitStatus = { exitCode: 255, signal: null };

/** Options for {@linkcode spawnPosixChild}. */
export interface PosixChildOptions {
  /** Program and arguments; a program without `/` is searched in the child's `PATH`. */
  argv: string[];
  /**
   * The child's complete environment.
   *
   * @default {Deno.env.toObject()}
   */
  env?: Record<string, string>;
  /**
   * The child's working directory.
   *
   * @default {Deno.cwd()}
   */
  cwd?: string;
  /** Whether stdin is a pipe (`write`/`closeInput`); otherwise it is `/dev/null`. */
  stdin: boolean;
  /**
   * Start the child in a new session (`setsid`) rather than only a new process group: it then has no
   * controlling terminal even when the daemon has one. Either way `kill` reaches the whole group.
   *
   * @default {false}
   */
  newSession?: boolean;
}

/** What stays loaded while children run (or while a hold is kept). */
interface Runtime {
  libc: Libc;
  users: number;
}

let runtime: Runtime | null = null;

function acquireRuntime(): Runtime {
  runtime ??= { libc: acquireLibc(), users: 0 };
  runtime.users++;
  return runtime;
}

function releaseRuntime(): void {
  if (runtime === null) return;
  runtime.users--;
  if (runtime.users <= 0) {
    runtime = null;
    releaseLibc();
  }
}

/**
 * Keep libc loaded until the returned handle is disposed. Without a hold it is loaded with the first child and
 * unloaded with the last one (clean for test sanitizers), and loading costs about 3 ms, which back-to-back
 * spawns would pay each time. A daemon holds this for its whole life.
 *
 * @example Hold for a daemon's lifetime
 * ```ts
 * import { holdPosixChildRuntime, posixChildSupported } from "./_posix_child.ts";
 *
 * if (posixChildSupported) {
 *   using _hold = holdPosixChildRuntime();
 *   // spawn children here
 * }
 * ```
 *
 * @returns A disposable that releases the hold (idempotent).
 */
export function holdPosixChildRuntime(): Disposable {
  if (!posixChildSupported) {
    throw new TypeError(`Posix children are not supported on ${Deno.build.os}`);
  }
  acquireRuntime();
  let held = true;
  return {
    [Symbol.dispose]() {
      if (!held) return;
      held = false;
      releaseRuntime();
    },
  };
}

function validate(options: PosixChildOptions): void {
  const { argv, env, cwd, stdin, newSession } = options;
  if (!Array.isArray(argv) || argv.length === 0) {
    throw new TypeError(
      `argv must be a non-empty array of strings: received ${JSON.stringify(argv)}`,
    );
  }
  for (const arg of argv) {
    if (typeof arg !== "string" || arg.includes("\0")) {
      throw new TypeError(
        `argv entries must be strings without NUL: received ${JSON.stringify(arg)}`,
      );
    }
  }
  if (argv[0] === "") throw new TypeError(`argv[0] must not be empty: received ""`);
  if (env !== undefined) {
    for (const [key, value] of Object.entries(env)) {
      if (key === "" || key.includes("=") || key.includes("\0")) {
        throw new TypeError(`Environment name is invalid: received ${JSON.stringify(key)}`);
      }
      if (typeof value !== "string" || value.includes("\0")) {
        throw new TypeError(
          `Environment value of ${key} must be a string without NUL: received ${
            JSON.stringify(value)
          }`,
        );
      }
    }
  }
  if (cwd !== undefined && (typeof cwd !== "string" || cwd === "" || cwd.includes("\0"))) {
    throw new TypeError(
      `cwd must be a non-empty string without NUL: received ${JSON.stringify(cwd)}`,
    );
  }
  if (newSession !== undefined && typeof newSession !== "boolean") {
    throw new TypeError(`newSession must be a boolean: received ${JSON.stringify(newSession)}`);
  }
  if (typeof stdin !== "boolean") {
    throw new TypeError(`stdin must be a boolean: received ${JSON.stringify(stdin)}`);
  }
}

/** Make `fd` at least 3, so dup2 onto 0-2 cannot clobber another child end. Closes the old fd if moved. */
function aboveStdio(libc: Libc, fd: number): number {
  if (fd > 2) return fd;
  const moved = setFlag(libc, fd, F_DUPFD_CLOEXEC, 3);
  if (moved < 0) throw errnoError("fcntl(F_DUPFD_CLOEXEC)", errno());
  libc.close(fd);
  return moved;
}

/** Where `pipe2` writes its two descriptors (read at once; `openPipe` is synchronous). */
const pipePair = new Int32Array(2);

/** A close-on-exec pipe; `[read, write]`. */
function openPipe(libc: Libc): [number, number] {
  const pair = pipePair;
  if (libc.pipe2 !== null) {
    if (libc.pipe2(pair, O_CLOEXEC) !== 0) throw errnoError("pipe2", errno());
  } else {
    if (libc.pipe(pair) !== 0) throw errnoError("pipe", errno());
    setFlag(libc, pair[0]!, F_SETFD, FD_CLOEXEC);
    setFlag(libc, pair[1]!, F_SETFD, FD_CLOEXEC);
  }
  return [aboveStdio(libc, pair[0]!), aboveStdio(libc, pair[1]!)];
}

/**
 * Start `argv` with its stdout and stderr on pipes (and stdin on a pipe or `/dev/null`), in a new process
 * group (and session, with `newSession`), so `kill` reaches its whole tree. A program that cannot be found is not an exception: the
 * handle reports exit 127 with `sandd: NAME: command not found` on stderr (126 and `Permission denied` when it
 * is not executable), as a shell would.
 *
 * @example Run a command and read its output
 * ```ts
 * import { spawnPosixChild } from "./_posix_child.ts";
 *
 * const child = spawnPosixChild({ argv: ["/bin/sh", "-c", "echo hi"], stdin: false });
 * const [stdout, stderr] = child.outputs;
 * const chunks: Uint8Array[] = [];
 * for (let chunk = await stdout!(); chunk !== null; chunk = await stdout!()) chunks.push(chunk);
 * while ((await stderr!()) !== null) continue; // drain
 * console.log(await child.status); // { exitCode: 0, signal: null }
 * await child.dispose?.();
 * ```
 *
 * @param options The program, environment, directory and whether stdin is a pipe.
 * @returns The child's handle for the process table.
 * @throws {TypeError} For invalid options or an unsupported platform.
 */
export function spawnPosixChild(options: PosixChildOptions): ChildHandle {
  if (!posixChildSupported) {
    throw new TypeError(`Posix children are not supported on ${Deno.build.os}`);
  }
  validate(options);
  const { argv, cwd } = options;
  const program = argv[0]!;
  const rt = acquireRuntime();
  const { libc } = rt;
  const parentEnds: number[] = [];
  const childEnds: number[] = [];
  try {
    let path = program;
    if (!program.includes("/")) {
      const pathVariable = options.env ? options.env.PATH : Deno.env.get("PATH");
      const found = findProgram(program, pathVariable, cwd);
      if (!("path" in found)) return failedChild(spawnFailure(program, cwd, found.errno), false);
      path = found.path;
    }
    // stdin, stdout, stderr: [parent end, child end] (stdin is null for /dev/null).
    const stdinPipe = options.stdin ? openPipe(libc) : null;
    if (stdinPipe) {
      parentEnds.push(stdinPipe[1]);
      childEnds.push(stdinPipe[0]);
    }
    const stdoutPipe = openPipe(libc);
    parentEnds.push(stdoutPipe[0]);
    childEnds.push(stdoutPipe[1]);
    const stderrPipe = openPipe(libc);
    parentEnds.push(stderrPipe[0]);
    childEnds.push(stderrPipe[1]);
    for (const fd of parentEnds) {
      if (setFlag(libc, fd, F_SETFL, O_NONBLOCK) !== 0) throw errnoError("fcntl(F_SETFL)", errno());
    }
    const spawned = posixSpawn(libc, {
      path,
      argv,
      env: options.env,
      cwd,
      stdio: [
        stdinPipe ? { fd: 0, dup: stdinPipe[0] } : { fd: 0, open: "/dev/null", flags: O_RDONLY },
        { fd: 1, dup: stdoutPipe[1] },
        { fd: 2, dup: stderrPipe[1] },
      ],
      session: options.newSession === true,
    });
    if (!("pid" in spawned)) return failedChild(spawnFailure(program, cwd, spawned.errno), false);
    for (const fd of childEnds) libc.close(fd);
    childEnds.length = 0;
    const child = new PosixChild(
      rt,
      spawned.pid,
      stdinPipe ? stdinPipe[1] : -1,
      stdoutPipe[0],
      stderrPipe[0],
    );
    parentEnds.length = 0;
    return child.handle();
  } finally {
    for (const fd of childEnds) libc.close(fd);
    for (const fd of parentEnds) libc.close(fd);
    // The child (if any) holds its own reference.
    releaseRuntime();
  }
}

/** One running child: its fds, its exit watcher and its share of the runtime. */
class PosixChild {
  readonly #rt: Runtime;
  readonly #libc: Libc;
  readonly #pid: number;
  /** stdin (write end), stdout, stderr (read ends); -1 once closed. */
  readonly #fds: [number, number, number];
  #reaped = false;
  #released = false;
  /** Closes waiting for the poller to let go of their fds (see {@linkcode pollWatches}). */
  readonly #closing: Set<Promise<void>> = new Set();
  /** Whether the stdout and stderr pipes were grown already (or growing is not possible). */
  readonly #grown: [boolean, boolean, boolean] = [true, !IS_LINUX, !IS_LINUX];
  #writeChain: Promise<void> = Promise.resolve();
  readonly #status: Promise<ExitStatus>;

  constructor(rt: Runtime, pid: number, stdin: number, stdout: number, stderr: number) {
    rt.users++;
    this.#rt = rt;
    this.#libc = rt.libc;
    this.#pid = pid;
    this.#fds = [stdin, stdout, stderr];
    this.#status = this.#watchExit();
  }

  handle(): ChildHandle {
    const hasStdin = this.#fds[0] >= 0;
    return {
      pid: this.#pid,
      outputs: [() => this.#read(1), () => this.#read(2)],
      ...(hasStdin
        ? {
          write: (bytes: Uint8Array) => this.#write(bytes),
          closeInput: () => this.#closeInput(),
        }
        : {}),
      kill: (signal: Deno.Signal) => this.#kill(signal),
      status: this.#status,
      dispose: () => this.#dispose(),
    };
  }

  /** Reap the child (a pidfd on the shared poller on Linux). Never rejects. */
  async #watchExit(): Promise<ExitStatus> {
    try {
      return await watchExit(this.#pid, LOST_STATUS, (closing) => this.#track(closing));
    } catch {
      return LOST_STATUS;
    } finally {
      this.#reaped = true;
      this.#maybeRelease();
    }
  }

  async #read(index: 1 | 2): Promise<Uint8Array | null> {
    const libc = this.#libc;
    for (;;) {
      const fd = this.#fds[index];
      if (fd < 0) return null;
      // Read straight into a reused buffer (see _chunk_pool.ts): it becomes the chunk, no copy or allocation.
      const buffer = takeChunk(READ_CHUNK);
      const n = Number(libc.read(fd, buffer, READ_CHUNK_BIG));
      if (n <= 0) releaseChunk(buffer);
      if (n > 0) {
        if (n >= PIPE_DEFAULT && !this.#grown[index]) {
          // The child fills its pipe faster than we drain it: a bigger pipe means fewer poll round trips. Only
          // bulk streams grow, so many quiet children do not use up the user's pipe allowance. Best effort.
          this.#grown[index] = true;
          if (F_SETPIPE_SZ >= 0) setFlag(libc, fd, F_SETPIPE_SZ, PIPE_BULK);
        }
        return keepChunk(buffer, n);
      }
      if (n === 0) {
        this.#closeFd(index);
        return null;
      }
      const code = errno();
      if (code === EAGAIN) await waitReadable(fd);
      else if (code !== EINTR) {
        this.#closeFd(index);
        throw errnoError(`Reading the child's ${index === 1 ? "stdout" : "stderr"}`, code);
      }
    }
  }

  #write(bytes: Uint8Array): Promise<void> {
    const next = this.#writeChain.then(() => this.#writeAll(bytes));
    this.#writeChain = next.catch(() => {});
    return next;
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    const libc = this.#libc;
    let offset = 0;
    while (offset < bytes.length) {
      const fd = this.#fds[0];
      if (fd < 0) throw new Deno.errors.BadResource("The child's stdin is closed");
      const n = Number(libc.write(fd, bytes.subarray(offset), BigInt(bytes.length - offset)));
      if (n >= 0) {
        offset += n;
        continue;
      }
      const code = errno();
      if (code === EAGAIN) await waitWritable(fd);
      else if (code === EPIPE) {
        throw new Deno.errors.BrokenPipe("The child closed its stdin (EPIPE)");
      } else if (code !== EINTR) {
        throw errnoError("Writing to the child's stdin", code);
      }
    }
  }

  async #closeInput(): Promise<void> {
    await this.#writeChain;
    const fd = this.#fds[0];
    if (fd < 0) return;
    this.#fds[0] = -1;
    await cancel(fd);
    this.#libc.close(fd);
    this.#maybeRelease();
  }

  #kill(signal: Deno.Signal): void {
    const number = signalNumber(signal);
    if (number === undefined) throw new TypeError(`Unknown signal: received ${signal}`);
    try {
      Deno.kill(-this.#pid, signal);
    } catch {
      // the group is gone already
    }
  }

  /**
   * Close one of the child's fds once the poller has let go of it: a number closed (and reused) under the worker
   * thread's `poll` could be missed (defensive: a read ends only after its wait was served, when no poll has it).
   */
  #closeFd(index: 0 | 1 | 2): void {
    const fd = this.#fds[index];
    if (fd < 0) return;
    this.#fds[index] = -1;
    if (!pollWatches(fd)) {
      this.#libc.close(fd);
      this.#maybeRelease();
      return;
    }
    this.#track(
      cancel(fd).then(() => {
        this.#libc.close(fd);
      }),
    );
  }

  /** Keep the runtime (and {@linkcode #dispose}) until a deferred close is done. */
  #track(closing: Promise<void>): void {
    this.#closing.add(closing);
    closing.then(() => {
      this.#closing.delete(closing);
      this.#maybeRelease();
    });
  }

  async #dispose(): Promise<void> {
    const open: number[] = [];
    for (const index of [0, 1, 2] as const) {
      const fd = this.#fds[index];
      if (fd >= 0) {
        this.#fds[index] = -1;
        open.push(fd);
      }
    }
    await Promise.all(open.map((fd) => cancel(fd)));
    for (const fd of open) this.#libc.close(fd);
    await Promise.all(this.#closing);
    this.#maybeRelease();
  }

  #maybeRelease(): void {
    if (this.#released || !this.#reaped || this.#closing.size > 0) return;
    if (this.#fds[0] >= 0 || this.#fds[1] >= 0 || this.#fds[2] >= 0) return;
    this.#released = true;
    releaseRuntime();
  }
}
