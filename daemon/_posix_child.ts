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
import {
  acquireLibc,
  cancel,
  errno,
  type Libc,
  releaseLibc,
  setFlag,
  waitReadable,
  waitWritable,
} from "./_fd_poller.ts";

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

/** Platform constants: glibc on Linux (x86_64 and aarch64 agree), XNU on macOS. */
const K = IS_DARWIN
  ? {
    O_NONBLOCK: 0x4,
    O_CLOEXEC: 0x1000000,
    F_DUPFD_CLOEXEC: 67,
    POSIX_SPAWN_SETSID: 0x400,
    EAGAIN: 35,
  }
  : {
    O_NONBLOCK: 0x800,
    O_CLOEXEC: 0x80000,
    F_DUPFD_CLOEXEC: 1030,
    POSIX_SPAWN_SETSID: 0x80,
    EAGAIN: 11,
  };
const POSIX_SPAWN_SETPGROUP = 0x02;
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
const O_RDONLY = 0;
const F_SETFD = 2;
const F_SETFL = 4;
const FD_CLOEXEC = 1;
const X_OK = 1;
const F_OK = 0;
const WNOHANG = 1;
const ENOENT = 2;
const EINTR = 4;
const ENOEXEC = 8;
const ECHILD = 10;
const EACCES = 13;
const ENOTDIR = 20;
const EPIPE = 32;
const SYS_PIDFD_OPEN = 434n;
/** Largest single read from a child's pipe. */
const READ_CHUNK = 64 * 1024;
const READ_CHUNK_BIG = BigInt(READ_CHUNK);
/** A read that fills this much (a whole default pipe) marks a bulk stream, whose pipe then grows (Linux). */
const PIPE_DEFAULT = 64 * 1024;
/** Linux `F_SETPIPE_SZ`, and the size a bulk stream's pipe grows to (the unprivileged maximum by default). */
const F_SETPIPE_SZ = 1031;
const PIPE_BULK = 1024 * 1024;
/** glibc's posix_spawnattr_t is 336 bytes and its file actions 80; macOS uses one pointer each. */
const OPAQUE_SIZE = 512;
/** glibc's sigset_t is 128 bytes; macOS uses 4. */
const SIGSET_SIZE = 256;
const DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin";
/** Reported when the exit status cannot be learned (another waiter reaped the child). */
const LOST_STATUS: ExitStatus = { exitCode: 255, signal: null };

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  7: "E2BIG",
  8: "ENOEXEC",
  9: "EBADF",
  10: "ECHILD",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  26: "ETXTBSY",
  32: "EPIPE",
  [K.EAGAIN]: "EAGAIN",
};

const SIGNAL_NAMES: Record<number, Deno.Signal> = IS_DARWIN
  ? {
    1: "SIGHUP",
    2: "SIGINT",
    3: "SIGQUIT",
    4: "SIGILL",
    5: "SIGTRAP",
    6: "SIGABRT",
    7: "SIGEMT",
    8: "SIGFPE",
    9: "SIGKILL",
    10: "SIGBUS",
    11: "SIGSEGV",
    12: "SIGSYS",
    13: "SIGPIPE",
    14: "SIGALRM",
    15: "SIGTERM",
    16: "SIGURG",
    17: "SIGSTOP",
    18: "SIGTSTP",
    19: "SIGCONT",
    20: "SIGCHLD",
    21: "SIGTTIN",
    22: "SIGTTOU",
    23: "SIGIO",
    24: "SIGXCPU",
    25: "SIGXFSZ",
    26: "SIGVTALRM",
    27: "SIGPROF",
    28: "SIGWINCH",
    29: "SIGINFO",
    30: "SIGUSR1",
    31: "SIGUSR2",
  }
  : {
    1: "SIGHUP",
    2: "SIGINT",
    3: "SIGQUIT",
    4: "SIGILL",
    5: "SIGTRAP",
    6: "SIGABRT",
    7: "SIGBUS",
    8: "SIGFPE",
    9: "SIGKILL",
    10: "SIGUSR1",
    11: "SIGSEGV",
    12: "SIGUSR2",
    13: "SIGPIPE",
    14: "SIGALRM",
    15: "SIGTERM",
    16: "SIGSTKFLT",
    17: "SIGCHLD",
    18: "SIGCONT",
    19: "SIGSTOP",
    20: "SIGTSTP",
    21: "SIGTTIN",
    22: "SIGTTOU",
    23: "SIGURG",
    24: "SIGXCPU",
    25: "SIGXFSZ",
    26: "SIGVTALRM",
    27: "SIGPROF",
    28: "SIGWINCH",
    29: "SIGIO",
    30: "SIGPWR",
    31: "SIGSYS",
  };

const SIGNAL_NUMBERS: Map<string, number> = new Map(
  Object.entries(SIGNAL_NAMES).map(([number, name]) => [name, Number(number)]),
);
if (IS_LINUX) {
  SIGNAL_NUMBERS.set("SIGPOLL", 29);
  SIGNAL_NUMBERS.set("SIGUNUSED", 31);
}

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
  /** Spawn attributes for a new process group. */
  groupAttr: Uint8Array<ArrayBuffer>;
  /** Spawn attributes for a new session. */
  sessionAttr: Uint8Array<ArrayBuffer>;
  readBuffer: Uint8Array<ArrayBuffer>;
  users: number;
}

let runtime: Runtime | null = null;

function offHeap(size: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new ArrayBuffer(size));
}

function spawnAttributes(libc: Libc, flag: number): Uint8Array<ArrayBuffer> {
  const attr = offHeap(OPAQUE_SIZE);
  const mask = offHeap(SIGSET_SIZE);
  const defaults = offHeap(SIGSET_SIZE);
  check(libc.posix_spawnattr_init(attr), "posix_spawnattr_init");
  libc.sigemptyset(mask);
  libc.sigfillset(defaults);
  // The process group id stays 0 after init: the child's own pid.
  check(
    libc.posix_spawnattr_setflags(attr, flag | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF),
    "posix_spawnattr_setflags",
  );
  check(libc.posix_spawnattr_setsigmask(attr, mask), "posix_spawnattr_setsigmask");
  check(libc.posix_spawnattr_setsigdefault(attr, defaults), "posix_spawnattr_setsigdefault");
  return attr;
}

function acquireRuntime(): Runtime {
  if (runtime === null) {
    const libc = acquireLibc();
    try {
      // The spawn attributes never change: new group or session, empty signal mask, every signal to its
      // default (Deno's runtime ignores SIGPIPE, and ignored dispositions survive exec).
      const groupAttr = spawnAttributes(libc, POSIX_SPAWN_SETPGROUP);
      const sessionAttr = spawnAttributes(libc, K.POSIX_SPAWN_SETSID);
      runtime = { libc, groupAttr, sessionAttr, readBuffer: offHeap(READ_CHUNK), users: 0 };
    } catch (error) {
      releaseLibc();
      throw error;
    }
  }
  runtime.users++;
  return runtime;
}

function releaseRuntime(): void {
  if (runtime === null) return;
  runtime.users--;
  if (runtime.users <= 0) {
    runtime.libc.posix_spawnattr_destroy(runtime.groupAttr);
    runtime.libc.posix_spawnattr_destroy(runtime.sessionAttr);
    runtime = null;
    releaseLibc();
  }
}

/**
 * Keep libc and the spawn attributes loaded until the returned handle is disposed. Without a hold they are
 * loaded with the first child and unloaded with the last one (clean for test sanitizers), and loading costs
 * about 3 ms, which back-to-back spawns would pay each time. A daemon holds this for its whole life.
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

/** An Error with the errno name as `code`, like Node's system errors. */
function sysError(what: string, code: number): Error {
  const name = ERRNO_NAMES[code] ?? `E${code}`;
  return Object.assign(new Error(`${what} failed: ${name} (${errnoMessage(code)})`), {
    code: name,
  });
}

/** posix_spawn* functions return the error number instead of setting errno. */
function check(result: number, what: string): void {
  if (result !== 0) throw sysError(what, result);
}

const encoder = new TextEncoder();

function cString(text: string): Uint8Array<ArrayBuffer> {
  const out = offHeap(text.length * 3 + 1);
  const { written } = encoder.encodeInto(text, out);
  return out.subarray(0, written + 1);
}

/** NULL-terminated `char *[]` arrays for argv and envp, backed by one string buffer. */
function cStringArrays(
  lists: string[][],
): { arrays: BigUint64Array<ArrayBuffer>[]; strings: Uint8Array<ArrayBuffer> } {
  let size = 0;
  for (const list of lists) for (const text of list) size += text.length * 3 + 1;
  const strings = offHeap(size);
  const base = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(strings)));
  let at = 0;
  const arrays = lists.map((list) => {
    const array = new BigUint64Array(new ArrayBuffer((list.length + 1) * 8));
    for (let i = 0; i < list.length; i++) {
      array[i] = base + BigInt(at);
      at += encoder.encodeInto(list[i]!, strings.subarray(at)).written + 1;
    }
    return array;
  });
  return { arrays, strings };
}

function decodeStatus(status: number): ExitStatus {
  const low = status & 0x7f;
  if (low === 0) return { exitCode: (status >> 8) & 0xff, signal: null };
  return { exitCode: 128 + low, signal: SIGNAL_NAMES[low] ?? null };
}

/** A child that never ran: exits with `code` and `message` on stderr, as a shell would. */
function failedChild(code: number, message: string): ChildHandle {
  let stderrDone = false;
  return {
    pid: 0,
    outputs: [
      () => Promise.resolve(null),
      () => Promise.resolve(stderrDone ? null : (stderrDone = true, encoder.encode(message))),
    ],
    kill: () => {},
    status: Promise.resolve({ exitCode: code, signal: null }),
    dispose: () => Promise.resolve(),
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

/** Candidate paths for the program, like `execvp`: as given with a slash, else each PATH entry. */
function candidates(program: string, pathVariable: string | undefined): string[] {
  if (program.includes("/")) return [program];
  const path = pathVariable ?? DEFAULT_PATH;
  return path.split(":").map((dir) => {
    if (dir === "") return program;
    return dir.endsWith("/") ? dir + program : `${dir}/${program}`;
  });
}

/** The path `access()` must check for a candidate, which the child resolves after its chdir. */
function hostPath(candidate: string, cwd: string | undefined): string {
  if (cwd === undefined || candidate.startsWith("/")) return candidate;
  return cwd.endsWith("/") ? cwd + candidate : `${cwd}/${candidate}`;
}

function errnoMessage(code: number): string {
  switch (code) {
    case ENOENT:
      return "No such file or directory";
    case EACCES:
      return "Permission denied";
    case ENOEXEC:
      return "Exec format error";
    case ENOTDIR:
      return "Not a directory";
    case EPIPE:
      return "Broken pipe";
    default:
      return ERRNO_NAMES[code] ?? `error ${code}`;
  }
}

/** Make `fd` at least 3, so dup2 onto 0-2 cannot clobber another child end. Closes the old fd if moved. */
function aboveStdio(libc: Libc, fd: number): number {
  if (fd > 2) return fd;
  const moved = setFlag(libc, fd, K.F_DUPFD_CLOEXEC, 3);
  if (moved < 0) throw sysError("fcntl(F_DUPFD_CLOEXEC)", errno());
  libc.close(fd);
  return moved;
}

/** A close-on-exec pipe; `[read, write]`. */
function openPipe(libc: Libc): [number, number] {
  const pair = new Int32Array(2);
  if (libc.pipe2 !== null) {
    if (libc.pipe2(pair, K.O_CLOEXEC) !== 0) throw sysError("pipe2", errno());
  } else {
    if (libc.pipe(pair) !== 0) throw sysError("pipe", errno());
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
 * while ((await stderr!()) !== null) { /* drain *\/ }
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
  // Without an explicit environment the child gets the daemon's own: glibc's `environ` as it is, which saves
  // copying and encoding it on every spawn (`Deno.env.set` updates it, so it is never stale).
  const environ = options.env === undefined && IS_LINUX && libc.environ !== null
    ? new Deno.UnsafePointerView(libc.environ).getPointer(0)
    : null;
  const env = environ === null ? options.env ?? Deno.env.toObject() : null;
  const parentEnds: number[] = [];
  const childEnds: number[] = [];
  let fileActions: Uint8Array<ArrayBuffer> | null = null;
  try {
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
      if (setFlag(libc, fd, F_SETFL, K.O_NONBLOCK) !== 0) {
        throw sysError("fcntl(F_SETFL)", errno());
      }
    }

    fileActions = offHeap(OPAQUE_SIZE);
    check(libc.posix_spawn_file_actions_init(fileActions), "posix_spawn_file_actions_init");
    const actions = fileActions;
    if (stdinPipe) {
      check(libc.posix_spawn_file_actions_adddup2(actions, stdinPipe[0], 0), "adddup2");
    } else {
      check(
        libc.posix_spawn_file_actions_addopen(actions, 0, cString("/dev/null"), O_RDONLY, 0),
        "addopen",
      );
    }
    check(libc.posix_spawn_file_actions_adddup2(actions, stdoutPipe[1], 1), "adddup2");
    check(libc.posix_spawn_file_actions_adddup2(actions, stderrPipe[1], 2), "adddup2");
    // Fds the daemon inherited without close-on-exec must not reach the child either (glibc >= 2.34).
    if (libc.posix_spawn_file_actions_addclosefrom_np !== null) {
      check(libc.posix_spawn_file_actions_addclosefrom_np(actions, 3), "addclosefrom_np");
    }
    const cwdBytes = cwd !== undefined ? cString(cwd) : null;
    if (cwdBytes !== null) {
      if (libc.posix_spawn_file_actions_addchdir_np === null) {
        throw new Error("posix_spawn_file_actions_addchdir_np is missing (glibc < 2.29)");
      }
      check(libc.posix_spawn_file_actions_addchdir_np(actions, cwdBytes), "addchdir_np");
    }

    const envList = env === null
      ? []
      : Object.entries(env).map(([key, value]) => `${key}=${value}`);
    const { arrays, strings } = cStringArrays([argv, envList]);
    const pidBuffer = new Int32Array(1);
    const attr = options.newSession ? rt.sessionAttr : rt.groupAttr;
    let lastError = ENOENT;
    let pid = 0;
    const pathVariable = env === null ? Deno.env.get("PATH") : env.PATH;
    for (const candidate of candidates(program, pathVariable)) {
      const path = cString(candidate);
      if (!program.includes("/")) {
        const checkPath = candidate === hostPath(candidate, cwd)
          ? path
          : cString(hostPath(candidate, cwd));
        if (libc.access(checkPath, X_OK) !== 0) {
          const code = errno();
          if (code === EACCES) lastError = EACCES;
          continue;
        }
      }
      const result = environ === null
        ? libc.posix_spawn(pidBuffer, path, actions, attr, arrays[0]!, arrays[1]!)
        : libc.posix_spawn_environ(pidBuffer, path, actions, attr, arrays[0]!, environ);
      if (result === 0) {
        pid = pidBuffer[0]!;
        break;
      }
      if (cwdBytes !== null && (result === ENOENT || result === ENOTDIR || result === EACCES)) {
        // Was it the chdir that failed?
        if (libc.access(cwdBytes, F_OK) !== 0) {
          return failedChild(127, `sandd: cd: ${cwd}: ${errnoMessage(errno())}\n`);
        }
        if (libc.access(cString(`${cwd}/.`), X_OK) !== 0) {
          return failedChild(126, `sandd: cd: ${cwd}: ${errnoMessage(errno())}\n`);
        }
      }
      if (result !== ENOENT) lastError = result;
      // execvp goes on after ENOENT and EACCES (a directory, a noexec mount); other errors are final.
      if (result !== ENOENT && result !== EACCES) break;
    }
    void strings;
    if (pid === 0) {
      if (lastError === ENOENT) return failedChild(127, `sandd: ${program}: command not found\n`);
      return failedChild(126, `sandd: ${program}: ${errnoMessage(lastError)}\n`);
    }
    for (const fd of childEnds) libc.close(fd);
    childEnds.length = 0;
    const child = new PosixChild(
      rt,
      pid,
      stdinPipe ? stdinPipe[1] : -1,
      stdoutPipe[0],
      stderrPipe[0],
    );
    parentEnds.length = 0;
    return child.handle();
  } finally {
    if (fileActions !== null) libc.posix_spawn_file_actions_destroy(fileActions);
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

  /** Reap the child: a pidfd polled by the shared poller, else a worker thread blocked in waitpid. Never rejects. */
  async #watchExit(): Promise<ExitStatus> {
    const libc = this.#libc;
    const pid = this.#pid;
    const status = new Int32Array(new ArrayBuffer(4));
    let result: ExitStatus | null = null;
    try {
      const pidfd = IS_LINUX ? Number(libc.syscall3(SYS_PIDFD_OPEN, BigInt(pid), 0n)) : -1;
      if (pidfd >= 0) {
        try {
          for (;;) {
            await waitReadable(pidfd);
            const got = libc.waitpid_now(pid, status, WNOHANG);
            if (got === pid) {
              result = decodeStatus(status[0]!);
              break;
            }
            if (got < 0 && errno() !== EINTR) {
              result = LOST_STATUS; // ECHILD: somebody else reaped it
              break;
            }
          }
        } catch {
          // the poller failed: fall through to a blocking wait
        } finally {
          libc.close(pidfd);
        }
      }
      const buffer = new Uint8Array(status.buffer);
      while (result === null) {
        const got = await libc.waitpid(pid, buffer, 0);
        if (got === pid) {
          result = decodeStatus(status[0]!);
          break;
        }
        // errno is on the worker thread: ask again without blocking to learn whether it is gone.
        const again = libc.waitpid_now(pid, buffer, WNOHANG);
        if (again === pid) result = decodeStatus(status[0]!);
        else if (again < 0 && errno() === ECHILD) result = LOST_STATUS;
      }
    } catch {
      result ??= LOST_STATUS;
    } finally {
      this.#reaped = true;
      this.#maybeRelease();
    }
    return result;
  }

  async #read(index: 1 | 2): Promise<Uint8Array | null> {
    const libc = this.#libc;
    const buffer = this.#rt.readBuffer;
    for (;;) {
      const fd = this.#fds[index];
      if (fd < 0) return null;
      const n = Number(libc.read(fd, buffer, READ_CHUNK_BIG));
      if (n > 0) {
        if (n >= PIPE_DEFAULT && !this.#grown[index]) {
          // The child fills its pipe faster than we drain it: a bigger pipe means fewer poll round trips. Only
          // bulk streams grow, so many quiet children do not use up the user's pipe allowance. Best effort.
          this.#grown[index] = true;
          setFlag(libc, fd, F_SETPIPE_SZ, PIPE_BULK);
        }
        return buffer.slice(0, n);
      }
      if (n === 0) {
        this.#closeFd(index);
        return null;
      }
      const code = errno();
      if (code === K.EAGAIN) await waitReadable(fd);
      else if (code !== EINTR) {
        this.#closeFd(index);
        throw sysError(`Reading the child's ${index === 1 ? "stdout" : "stderr"}`, code);
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
      if (code === K.EAGAIN) await waitWritable(fd);
      else if (code === EPIPE) {
        throw new Deno.errors.BrokenPipe("The child closed its stdin (EPIPE)");
      } else if (code !== EINTR) {
        throw sysError("Writing to the child's stdin", code);
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
    const number = SIGNAL_NUMBERS.get(signal);
    if (number === undefined) throw new TypeError(`Unknown signal: received ${signal}`);
    try {
      Deno.kill(-this.#pid, signal);
    } catch {
      // the group is gone already
    }
  }

  #closeFd(index: 0 | 1 | 2): void {
    const fd = this.#fds[index];
    if (fd < 0) return;
    this.#fds[index] = -1;
    this.#libc.close(fd);
    this.#maybeRelease();
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
    this.#maybeRelease();
  }

  #maybeRelease(): void {
    if (this.#released || !this.#reaped) return;
    if (this.#fds[0] >= 0 || this.#fds[1] >= 0 || this.#fds[2] >= 0) return;
    this.#released = true;
    releaseRuntime();
  }
}
