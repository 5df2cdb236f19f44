// Copyright 2026 the SandD authors. MIT license.
// Linux and macOS pseudo-terminals over the system C library through Deno FFI.
// No native code of our own: libc.so.6 (glibc) or libSystem.B.dylib only.

import type { PtyExit } from "./pty.ts";

/** What the public `Pty` class needs from a platform backend. */
export interface PtyBackend {
  readonly pid: number;
  readonly exited: Promise<PtyExit>;
  read(): Promise<Uint8Array | null>;
  write(data: Uint8Array): Promise<void>;
  resize(cols: number, rows: number): void;
  kill(signal: Deno.Signal): void;
  close(): Promise<void>;
}

/** Validated spawn request handed to a backend by `Pty.spawn`. */
export interface BackendSpawnOptions {
  command: string;
  args: string[];
  cols: number;
  rows: number;
  env: Record<string, string>;
  cwd: string;
}

const IS_DARWIN = Deno.build.os === "darwin";
/** Apple arm64 passes variadic arguments on the stack, never in registers. */
const VARIADIC_ON_STACK = IS_DARWIN && Deno.build.arch === "aarch64";

/** Platform constants: glibc on Linux (x86_64 and aarch64 agree), XNU on macOS. */
const K = IS_DARWIN
  ? {
    O_RDWR: 0x2,
    O_NOCTTY: 0x20000,
    O_NONBLOCK: 0x4,
    O_CLOEXEC: 0x1000000,
    TIOCSWINSZ: 0x80087467n,
    FIOCLEX: 0x20006601n,
    POSIX_SPAWN_SETSIGDEF: 0x04,
    POSIX_SPAWN_SETSIGMASK: 0x08,
    POSIX_SPAWN_SETSID: 0x400,
    POSIX_SPAWN_CLOEXEC_DEFAULT: 0x4000,
    EAGAIN: 35,
  }
  : {
    O_RDWR: 0x2,
    O_NOCTTY: 0x100,
    O_NONBLOCK: 0x800,
    O_CLOEXEC: 0x80000,
    TIOCSWINSZ: 0x5414n,
    FIOCLEX: 0x5451n,
    POSIX_SPAWN_SETSIGDEF: 0x04,
    POSIX_SPAWN_SETSIGMASK: 0x08,
    POSIX_SPAWN_SETSID: 0x80,
    POSIX_SPAWN_CLOEXEC_DEFAULT: 0,
    EAGAIN: 11,
  };

const EINTR = 4;
const EIO = 5;
const POLLIN = 0x1;
const POLLOUT = 0x4;
const POLLNVAL = 0x20;
const READ_CHUNK = 64 * 1024;
/** glibc's posix_spawnattr_t is 336 bytes and its file actions 80; macOS uses one pointer. */
const OPAQUE_SIZE = 1024;
/** glibc's sigset_t is 128 bytes; macOS uses 4. */
const SIGSET_SIZE = 256;
/** How long `close()` waits after SIGHUP before it sends SIGKILL to the group. */
const KILL_GRACE_MS = 2000;
/** TIOCSCTTY on macOS: _IO('t', 97). Used by the perl helper, see README. */
const DARWIN_TIOCSCTTY = 0x20007461;

const SYMBOLS = {
  posix_openpt: { parameters: ["i32"], result: "i32" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  grantpt: { parameters: ["i32"], result: "i32" },
  unlockpt: { parameters: ["i32"], result: "i32" },
  ptsname: { parameters: ["i32"], result: "pointer" },
  ptsname_r: { parameters: ["i32", "buffer", "usize"], result: "i32", optional: true },
  // ioctl is variadic: these declare the three call shapes we use.
  ioctl_ptr: { name: "ioctl", parameters: ["i32", "u64", "buffer"], result: "i32" },
  ioctl_ptr_stack: {
    name: "ioctl",
    parameters: ["i32", "u64", "i64", "i64", "i64", "i64", "i64", "i64", "buffer"],
    result: "i32",
  },
  ioctl_noarg: { name: "ioctl", parameters: ["i32", "u64"], result: "i32" },
  pipe: { parameters: ["buffer"], result: "i32" },
  pipe2: { parameters: ["buffer", "i32"], result: "i32", optional: true },
  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  waitpid: { parameters: ["i32", "buffer", "i32"], result: "i32", nonblocking: true },
  waitpid_now: { name: "waitpid", parameters: ["i32", "buffer", "i32"], result: "i32" },
  sigemptyset: { parameters: ["buffer"], result: "i32" },
  sigfillset: { parameters: ["buffer"], result: "i32" },
  posix_spawnattr_init: { parameters: ["buffer"], result: "i32" },
  posix_spawnattr_destroy: { parameters: ["buffer"], result: "i32" },
  posix_spawnattr_setflags: { parameters: ["buffer", "i16"], result: "i32" },
  posix_spawnattr_setsigmask: { parameters: ["buffer", "buffer"], result: "i32" },
  posix_spawnattr_setsigdefault: { parameters: ["buffer", "buffer"], result: "i32" },
  posix_spawn_file_actions_init: { parameters: ["buffer"], result: "i32" },
  posix_spawn_file_actions_destroy: { parameters: ["buffer"], result: "i32" },
  posix_spawn_file_actions_addopen: {
    parameters: ["buffer", "i32", "buffer", "i32", "u32"],
    result: "i32",
  },
  posix_spawn_file_actions_adddup2: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  posix_spawn_file_actions_addchdir_np: {
    parameters: ["buffer", "buffer"],
    result: "i32",
    optional: true,
  },
  posix_spawn_file_actions_addclosefrom_np: {
    parameters: ["buffer", "i32"],
    result: "i32",
    optional: true,
  },
  posix_spawn: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  __errno_location: { parameters: [], result: "pointer", optional: true },
  __error: { parameters: [], result: "pointer", optional: true },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/**
 * One library handle per process, shared by every live pty and closed when the last one closes
 * (so a test that closes its ptys leaves no open library behind).
 */
let shared: { lib: Deno.DynamicLibrary<typeof SYMBOLS>; refs: number } | null = null;

function acquireLibc(): Libc {
  if (shared === null) {
    const path = IS_DARWIN ? "/usr/lib/libSystem.B.dylib" : "libc.so.6";
    shared = { lib: Deno.dlopen(path, SYMBOLS), refs: 0 };
  }
  shared.refs++;
  return shared.lib.symbols;
}

function releaseLibc(): void {
  if (shared === null) return;
  shared.refs--;
  if (shared.refs === 0) {
    shared.lib.close();
    shared = null;
  }
}

const ERRNO_NAMES: Record<number, string> = IS_DARWIN
  ? {
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
    35: "EAGAIN",
    62: "ELOOP",
    63: "ENAMETOOLONG",
  }
  : {
    1: "EPERM",
    2: "ENOENT",
    3: "ESRCH",
    4: "EINTR",
    5: "EIO",
    7: "E2BIG",
    8: "ENOEXEC",
    9: "EBADF",
    10: "ECHILD",
    11: "EAGAIN",
    12: "ENOMEM",
    13: "EACCES",
    14: "EFAULT",
    20: "ENOTDIR",
    21: "EISDIR",
    22: "EINVAL",
    23: "ENFILE",
    24: "EMFILE",
    26: "ETXTBSY",
    36: "ENAMETOOLONG",
    40: "ELOOP",
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

/** An error carrying an errno-style code; `Pty` turns it into a `PtyError`. */
function sysError(code: string, message: string, errno?: number): Error {
  return Object.assign(new Error(message), { code, errno });
}

function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `E${errno}`;
}

/** Memory outside the V8 heap, so a pointer taken from it stays valid. */
function offHeap(size: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new ArrayBuffer(size));
}

const encoder = new TextEncoder();

function cString(text: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(text);
  const out = offHeap(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** A NULL-terminated `char *[]`; `keep` holds the strings alive for the call. */
function cStringArray(list: string[], keep: Uint8Array[]): BigUint64Array<ArrayBuffer> {
  const array = new BigUint64Array(new ArrayBuffer((list.length + 1) * 8));
  list.forEach((text, i) => {
    const bytes = cString(text);
    keep.push(bytes);
    array[i] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)));
  });
  return array;
}

function isExecutableFile(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && info.mode !== null && (info.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

function joinPath(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

/** Resolves `command` like execvp would, through the child's PATH, relative to its cwd. */
export function resolveCommand(
  command: string,
  env: Record<string, string>,
  cwd: string,
): string {
  if (command.includes("/")) {
    const path = command.startsWith("/") ? command : joinPath(cwd, command);
    if (isExecutableFile(path)) return path;
    const exists = (() => {
      try {
        Deno.statSync(path);
        return true;
      } catch {
        return false;
      }
    })();
    throw exists
      ? sysError("EACCES", `Program is not an executable file: "${command}"`)
      : sysError("ENOENT", `Program not found: "${command}"`);
  }
  const searchPath = env.PATH ?? "/usr/local/bin:/usr/bin:/bin";
  for (const entry of searchPath.split(":")) {
    const dir = entry === "" ? cwd : entry.startsWith("/") ? entry : joinPath(cwd, entry);
    const candidate = joinPath(dir, command);
    if (isExecutableFile(candidate)) return candidate;
  }
  throw sysError("ENOENT", `Program not found in PATH: "${command}"`);
}

function decodeStatus(status: number): PtyExit {
  const low = status & 0x7f;
  if (low === 0) return { exitCode: (status >> 8) & 0xff, signal: null };
  return { exitCode: 128 + low, signal: SIGNAL_NAMES[low] ?? null };
}

type PollOutcome = "ready" | "closing";

/** A pty master and the process group running on its slave side. */
export class UnixPty implements PtyBackend {
  readonly pid: number;
  readonly exited: Promise<PtyExit>;
  #libc: Libc;
  #master: number;
  #wakeRead: number;
  #wakeWrite: number;
  #readBuffer = offHeap(READ_CHUNK);
  #readPoll = offHeap(16);
  #writePoll = offHeap(16);
  #winsize = offHeap(8);
  #statusBuffer = offHeap(8);
  #reaped = false;
  #eof = false;
  #closing = false;
  #closed: Promise<void> | null = null;
  #reading: Promise<unknown> | null = null;
  #writeChain: Promise<unknown> = Promise.resolve();

  private constructor(libc: Libc, master: number, wake: [number, number], pid: number) {
    this.#libc = libc;
    this.#master = master;
    this.#wakeRead = wake[0];
    this.#wakeWrite = wake[1];
    this.pid = pid;
    this.exited = this.#wait();
  }

  /** Opens a pty, sizes it and starts `options.command` on its slave side. */
  static spawn(options: BackendSpawnOptions): UnixPty {
    const path = resolveCommand(options.command, options.env, options.cwd);
    try {
      if (!Deno.statSync(options.cwd).isDirectory) {
        throw sysError("ENOTDIR", `Working directory is not a directory: "${options.cwd}"`);
      }
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw sysError("ENOENT", `Working directory not found: "${options.cwd}"`);
      }
      throw error;
    }
    const libc = acquireLibc();
    const fds: number[] = [];
    try {
      const master = openMaster(libc);
      fds.push(master);
      check(libc, libc.grantpt(master), "grantpt");
      check(libc, libc.unlockpt(master), "unlockpt");
      const slave = slaveName(libc, master);
      setWinsize(libc, master, offHeap(8), options.cols, options.rows);
      const wake = openWakePipe(libc);
      fds.push(...wake);
      const pid = spawnOnSlave(libc, path, slave, options);
      return new UnixPty(libc, master, wake, pid);
    } catch (error) {
      for (const fd of fds) libc.close(fd);
      releaseLibc();
      throw error;
    }
  }

  async #wait(): Promise<PtyExit> {
    const status = new Int32Array(this.#statusBuffer.buffer);
    for (;;) {
      const result = await this.#libc.waitpid(this.pid, this.#statusBuffer, 0);
      if (result === this.pid) break;
      // errno of a nonblocking call lives on a worker thread: ask again synchronously.
      const now = this.#libc.waitpid_now(this.pid, this.#statusBuffer, 1 /* WNOHANG */);
      if (now === this.pid) break;
      if (now === -1 && errno(this.#libc) !== EINTR) {
        this.#reaped = true;
        return { exitCode: -1, signal: null };
      }
    }
    this.#reaped = true;
    return decodeStatus(status[0] ?? 0);
  }

  /** Waits until the master is ready for `events`, or until `close()` wakes it. */
  async #poll(fds: Uint8Array<ArrayBuffer>, events: number): Promise<PollOutcome> {
    const view = new DataView(fds.buffer);
    const little = true;
    for (;;) {
      if (this.#closing) return "closing";
      view.setInt32(0, this.#master, little);
      view.setInt16(4, events, little);
      view.setInt16(6, 0, little);
      view.setInt32(8, this.#wakeRead, little);
      view.setInt16(12, POLLIN, little);
      view.setInt16(14, 0, little);
      const ready = await this.#libc.poll(fds, 2n, -1);
      if (ready < 0) continue; // EINTR; anything else shows up in the next read or write.
      if (view.getInt16(14, little) !== 0 || this.#closing) return "closing";
      const revents = view.getInt16(6, little);
      if (revents & POLLNVAL) throw sysError("EBADF", "The pty master is no longer open");
      if (revents !== 0) return "ready";
    }
  }

  read(): Promise<Uint8Array | null> {
    if (this.#reading !== null) {
      return Promise.reject(
        sysError("EBUSY", "Only one read() may be in flight on a pty at a time"),
      );
    }
    const reading = this.#readLoop().finally(() => {
      this.#reading = null;
    });
    this.#reading = reading;
    return reading;
  }

  async #readLoop(): Promise<Uint8Array | null> {
    for (;;) {
      if (this.#eof || this.#closing) return null;
      const n = Number(this.#libc.read(this.#master, this.#readBuffer, BigInt(READ_CHUNK)));
      if (n > 0) {
        // The tty layer hands over about 4 KiB per read: take what else is already there (without waiting for
        // more) so a bulk writer costs one chunk per wakeup rather than one per 4 KiB.
        let filled = n;
        while (filled < READ_CHUNK) {
          const more = Number(
            this.#libc.read(
              this.#master,
              this.#readBuffer.subarray(filled),
              BigInt(READ_CHUNK - filled),
            ),
          );
          if (more <= 0) break; // EAGAIN, EIO or EOF: the next read() sees it again
          filled += more;
        }
        return this.#readBuffer.slice(0, filled);
      }
      if (n === 0) break;
      const code = errno(this.#libc);
      if (code === EINTR) continue;
      if (code === K.EAGAIN) {
        if (await this.#poll(this.#readPoll, POLLIN) === "closing") return null;
        continue;
      }
      // EIO: every slave descriptor is closed (the program and its children exited).
      if (code === EIO) break;
      throw sysError(errnoName(code), `Reading the pty failed: ${errnoName(code)}`, code);
    }
    this.#eof = true;
    return null;
  }

  write(data: Uint8Array): Promise<void> {
    if (this.#closing) {
      return Promise.reject(sysError("ECLOSED", "The pty is closed"));
    }
    // Copy now: the caller may reuse its buffer, and FFI needs memory off the V8 heap.
    const bytes = offHeap(data.byteLength);
    bytes.set(data);
    const result = this.#writeChain.then(() => this.#writeAll(bytes));
    this.#writeChain = result.catch(() => {});
    return result;
  }

  async #writeAll(bytes: Uint8Array<ArrayBuffer>): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      if (this.#closing) throw sysError("ECLOSED", "The pty was closed during a write");
      const rest = bytes.subarray(offset);
      const n = Number(this.#libc.write(this.#master, rest, BigInt(rest.length)));
      if (n > 0) {
        offset += n;
        continue;
      }
      const code = n === 0 ? K.EAGAIN : errno(this.#libc);
      if (code === EINTR) continue;
      if (code === K.EAGAIN) {
        if (await this.#poll(this.#writePoll, POLLOUT) === "closing") {
          throw sysError("ECLOSED", "The pty was closed during a write");
        }
        continue;
      }
      throw sysError(errnoName(code), `Writing to the pty failed: ${errnoName(code)}`, code);
    }
  }

  resize(cols: number, rows: number): void {
    if (this.#closing) throw sysError("ECLOSED", "The pty is closed");
    setWinsize(this.#libc, this.#master, this.#winsize, cols, rows);
  }

  kill(signal: Deno.Signal): void {
    // Once reaped, the pid (and so the group id) may belong to someone else.
    if (this.#reaped) return;
    try {
      Deno.kill(-this.pid, signal);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }

  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    // 1. Stop our own I/O: wake any poll parked on the master and let read()/write() finish.
    this.#closing = true;
    this.#libc.write(this.#wakeWrite, offHeap(1), 1n);
    await Promise.allSettled([this.#reading, this.#writeChain]);
    // 2. Hang up like a terminal whose line dropped: SIGHUP to the session (the program's group
    //    and its background jobs), then close the master, which makes the kernel hang up the
    //    slave. Closing matters: a shell can miss a bare SIGHUP that races with its select().
    const deadline = performance.now() + KILL_GRACE_MS;
    this.kill("SIGHUP");
    signalSession(this.pid, "SIGHUP");
    this.#libc.close(this.#master);
    // 3. Whatever still runs after the grace period is killed.
    if (!this.#reaped) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), KILL_GRACE_MS);
      });
      const outcome = await Promise.race([this.exited, late]);
      clearTimeout(timer);
      if (outcome === "late") this.kill("SIGKILL");
    }
    await this.exited;
    // Session members are not our children, so there is no exit event to await: poll briefly.
    while (sessionMembers(this.pid).length > 0 && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    signalSession(this.pid, "SIGKILL");
    this.#libc.close(this.#wakeRead);
    this.#libc.close(this.#wakeWrite);
    releaseLibc();
  }
}

/**
 * Live processes of session `sid` (Linux only, from /proc; empty elsewhere or without read
 * permission). A session id stays reserved while any member lives, so it cannot be reused.
 */
function sessionMembers(sid: number): number[] {
  if (Deno.build.os !== "linux") return [];
  const members: number[] = [];
  try {
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      try {
        const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
        // After "(comm)": state ppid pgrp session ...
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        if (fields[0] !== "Z" && Number(fields[3]) === sid) members.push(Number(entry.name));
      } catch {
        // The process went away while we looked.
      }
    }
  } catch {
    return [];
  }
  return members;
}

function signalSession(sid: number, signal: Deno.Signal): void {
  for (const pid of sessionMembers(sid)) {
    for (const sig of signal === "SIGHUP" ? ["SIGHUP", "SIGCONT"] as const : [signal]) {
      try {
        Deno.kill(pid, sig);
      } catch {
        // Already gone.
      }
    }
  }
}

function errno(libc: Libc): number {
  const where = libc.__errno_location?.() ?? libc.__error?.() ?? null;
  if (where === null) return 0;
  return new Deno.UnsafePointerView(where).getInt32();
}

function check(libc: Libc, result: number, what: string): void {
  if (result === -1) {
    const code = errno(libc);
    throw sysError(errnoName(code), `${what} failed: ${errnoName(code)}`, code);
  }
}

function openMaster(libc: Libc): number {
  const flags = K.O_RDWR | K.O_NOCTTY | K.O_CLOEXEC | K.O_NONBLOCK;
  // macOS's posix_openpt accepts only O_RDWR | O_NOCTTY; it is open("/dev/ptmx") underneath.
  const fd = IS_DARWIN ? libc.open(cString("/dev/ptmx"), flags) : libc.posix_openpt(flags);
  check(libc, fd, "posix_openpt");
  return fd;
}

function slaveName(libc: Libc, master: number): string {
  if (libc.ptsname_r !== null && !IS_DARWIN) {
    const buffer = offHeap(256);
    const rc = libc.ptsname_r(master, buffer, 256n);
    if (rc !== 0) throw sysError(errnoName(rc), `ptsname_r failed: ${errnoName(rc)}`, rc);
    return new TextDecoder().decode(buffer.subarray(0, buffer.indexOf(0)));
  }
  const name = libc.ptsname(master);
  if (name === null) {
    const code = errno(libc);
    throw sysError(errnoName(code), `ptsname failed: ${errnoName(code)}`, code);
  }
  return new Deno.UnsafePointerView(name).getCString();
}

function setWinsize(
  libc: Libc,
  master: number,
  winsize: Uint8Array<ArrayBuffer>,
  cols: number,
  rows: number,
): void {
  const view = new DataView(winsize.buffer);
  view.setUint16(0, rows, true);
  view.setUint16(2, cols, true);
  view.setUint16(4, 0, true);
  view.setUint16(6, 0, true);
  const rc = VARIADIC_ON_STACK
    ? libc.ioctl_ptr_stack(master, K.TIOCSWINSZ, 0n, 0n, 0n, 0n, 0n, 0n, winsize)
    : libc.ioctl_ptr(master, K.TIOCSWINSZ, winsize);
  check(libc, rc, "ioctl(TIOCSWINSZ)");
}

/** A self-pipe that `close()` writes to, so parked polls return. */
function openWakePipe(libc: Libc): [number, number] {
  const fds = new Int32Array(new ArrayBuffer(8));
  const bytes = new Uint8Array(fds.buffer);
  if (libc.pipe2 !== null) {
    check(libc, libc.pipe2(bytes, K.O_CLOEXEC), "pipe2");
  } else {
    check(libc, libc.pipe(bytes), "pipe");
    for (const fd of fds) libc.ioctl_noarg(fd, K.FIOCLEX);
  }
  return [fds[0] ?? -1, fds[1] ?? -1];
}

function spawnOnSlave(
  libc: Libc,
  path: string,
  slave: string,
  options: BackendSpawnOptions,
): number {
  const attr = offHeap(OPAQUE_SIZE);
  const actions = offHeap(OPAQUE_SIZE);
  const emptySet = offHeap(SIGSET_SIZE);
  const fullSet = offHeap(SIGSET_SIZE);
  const keep: Uint8Array[] = [];
  let argv = [path, ...options.args];
  let program = path;
  // XNU applies file actions before POSIX_SPAWN_SETSID, so opening the slave does not make it
  // the controlling terminal. A tiny perl step (shipped with macOS) claims it with TIOCSCTTY
  // and then execs the program in the same process.
  if (IS_DARWIN && isExecutableFile("/usr/bin/perl")) {
    program = "/usr/bin/perl";
    argv = [
      "perl",
      "-e",
      `ioctl(STDIN, ${DARWIN_TIOCSCTTY}, 0); exec { $ARGV[0] } @ARGV or exit 127;`,
      path,
      ...options.args,
    ];
  }
  const envp = Object.entries(options.env).map(([key, value]) => `${key}=${value}`);
  check0(libc.posix_spawnattr_init(attr), "posix_spawnattr_init");
  check0(libc.posix_spawn_file_actions_init(actions), "posix_spawn_file_actions_init");
  try {
    libc.sigemptyset(emptySet);
    libc.sigfillset(fullSet);
    const flags = K.POSIX_SPAWN_SETSID | K.POSIX_SPAWN_SETSIGMASK | K.POSIX_SPAWN_SETSIGDEF |
      K.POSIX_SPAWN_CLOEXEC_DEFAULT;
    check0(libc.posix_spawnattr_setflags(attr, flags), "posix_spawnattr_setflags");
    check0(libc.posix_spawnattr_setsigmask(attr, emptySet), "posix_spawnattr_setsigmask");
    check0(libc.posix_spawnattr_setsigdefault(attr, fullSet), "posix_spawnattr_setsigdefault");
    // No O_NOCTTY: after setsid, Linux makes this open the controlling terminal.
    check0(
      libc.posix_spawn_file_actions_addopen(actions, 0, cString(slave), K.O_RDWR, 0),
      "posix_spawn_file_actions_addopen",
    );
    check0(libc.posix_spawn_file_actions_adddup2(actions, 0, 1), "adddup2");
    check0(libc.posix_spawn_file_actions_adddup2(actions, 0, 2), "adddup2");
    if (libc.posix_spawn_file_actions_addclosefrom_np !== null) {
      check0(libc.posix_spawn_file_actions_addclosefrom_np(actions, 3), "addclosefrom_np");
    }
    if (libc.posix_spawn_file_actions_addchdir_np === null) {
      throw sysError("ENOSYS", "This C library lacks posix_spawn_file_actions_addchdir_np");
    }
    const cwd = cString(options.cwd);
    check0(libc.posix_spawn_file_actions_addchdir_np(actions, cwd), "addchdir_np");
    const pid = new Int32Array(new ArrayBuffer(4));
    const rc = libc.posix_spawn(
      new Uint8Array(pid.buffer),
      cString(program),
      actions,
      attr,
      new Uint8Array(cStringArray(argv, keep).buffer),
      new Uint8Array(cStringArray(envp, keep).buffer),
    );
    if (rc !== 0) {
      throw sysError(
        errnoName(rc),
        `Could not start "${options.command}": ${errnoName(rc)}`,
        rc,
      );
    }
    return pid[0] ?? -1;
  } finally {
    libc.posix_spawn_file_actions_destroy(actions);
    libc.posix_spawnattr_destroy(attr);
  }
}

/** posix_spawn* functions return the error number itself. */
function check0(rc: number, what: string): void {
  if (rc !== 0) throw sysError(errnoName(rc), `${what} failed: ${errnoName(rc)}`, rc);
}
