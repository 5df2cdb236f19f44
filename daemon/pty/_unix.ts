// Copyright 2026 the SandD authors. MIT license.
/**
 * Linux and macOS pseudo-terminals over the system C library (the daemon's one binding, `../ffi/libc.ts`): no
 * native code of our own. Reads and writes wait on the shared poller and exits on a pidfd (`../ffi/child_exit.ts`),
 * so an idle terminal holds no thread of its own.
 *
 * @module
 */

import type { PtyExit } from "./pty.ts";
import {
  acquireLibc,
  check,
  errno,
  errnoError,
  ioctlPointer,
  type Libc,
  releaseLibc,
} from "../ffi/libc.ts";
import { errnoName, OS } from "../ffi/constants.ts";
import { cancel, waitReadable, waitWritable } from "../ffi/poller.ts";
import { watchExit } from "../ffi/child_exit.ts";
import { cwdProblem, findProgram } from "../ffi/spawn.ts";
import { posixSpawn } from "../ffi/_posix_spawn.ts";
import { cString, offHeap } from "../ffi/_c_memory.ts";
import { keepChunk, takeChunk } from "../_chunk_pool.ts";
import { sessionMembers, signalSession } from "./_session.ts";

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
const { O_RDWR, O_NOCTTY, O_NONBLOCK, O_CLOEXEC } = OS.open;
const { EAGAIN, EINTR, EIO } = OS.errno;
const READ_CHUNK = 64 * 1024;
/**
 * Most bytes one batch read on a worker thread takes (see `#startBatch`). Between two batches nobody reads the
 * master: the worker thread's result has to reach the event loop, which then starts the next batch (two thread
 * wake-ups, 0.1-0.2 ms on a quiet machine, several ms under load or while the event loop is busy framing and
 * sending), and with nobody reading, the kernel's 4 KiB line-discipline buffer stays full and the writer stalls.
 * 1 MiB batches pay that gap once per MiB rather than four times (the daemon frames a chunk in data frames of at
 * most 256 KiB whatever its size). A batch still ends at the first read that would block, so small output is
 * not held back.
 */
const BATCH = 1024 * 1024;
/** A first read at least this large means bulk output: read on in batches. Smaller ones (echo) stay inline. */
const BULK = 1024;
/** `setvbuf` mode for an unbuffered stream (glibc and macOS alike). */
const IONBF = 2;
/** How long `close()` waits after SIGHUP before it sends SIGKILL to the group. */
const KILL_GRACE_MS = 2000;
/**
 * Reported when the exit status cannot be learned (another waiter reaped the child): 255, as for pipes. It goes on
 * the wire as an `exit`, whose `exitCode` is 0-255 (128 + n for signal n), so it must be a valid one.
 */
const LOST_STATUS: PtyExit = { exitCode: 255, signal: null };

/** An error carrying an errno-style code; `Pty` turns it into a `PtyError`. */
function ptyError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/** The program to run, resolved under the PATH rule of `../ffi/spawn.ts`; throws ENOENT, EACCES or ENOTDIR. */
function resolve(options: BackendSpawnOptions): string {
  const found = findProgram(options.command, options.env.PATH, options.cwd);
  if (!("path" in found)) {
    const code = errnoName(found.errno);
    throw ptyError(
      code,
      code === "ENOENT"
        ? `Program not found: "${options.command}"`
        : `Program is not an executable file: "${options.command}"`,
    );
  }
  const cwdCode = cwdProblem(options.cwd);
  if (cwdCode !== 0) {
    throw ptyError(
      errnoName(cwdCode),
      `Working directory cannot be entered (${errnoName(cwdCode)}): "${options.cwd}"`,
    );
  }
  return found.path;
}

/** A pty master and the process group running on its slave side. */
export class UnixPty implements PtyBackend {
  readonly pid: number;
  readonly exited: Promise<PtyExit>;
  #libc: Libc;
  #master: number;
  #readBuffer = offHeap(READ_CHUNK);
  /** The stdio stream over the master for batch reads, made on the first bulk read. */
  #file: Deno.PointerValue = null;
  #noStdio = false;
  /** The buffer the batch in flight reads into (from the chunk pool). */
  #batchBuffer: Uint8Array<ArrayBuffer> | null = null;
  /** The batch read in flight on a worker thread: the bytes it put in `#batchBuffer`. */
  #batch: Promise<number | bigint> | null = null;
  #winsize = offHeap(8);
  #reaped = false;
  #eof = false;
  #closing = false;
  #closed: Promise<void> | null = null;
  #reading: Promise<unknown> | null = null;
  #writeChain: Promise<unknown> = Promise.resolve();

  private constructor(libc: Libc, master: number, pid: number) {
    this.#libc = libc;
    this.#master = master;
    this.pid = pid;
    this.exited = watchExit(pid, LOST_STATUS).then((exit) => {
      this.#reaped = true;
      return exit;
    });
  }

  /** Opens a pty, sizes it and starts `options.command` on its slave side. */
  static spawn(options: BackendSpawnOptions): UnixPty {
    const libc = acquireLibc();
    let master = -1;
    try {
      const path = resolve(options);
      master = openMaster(libc);
      check(libc.grantpt(master), "grantpt");
      check(libc.unlockpt(master), "unlockpt");
      const slave = slaveName(libc, master);
      setWinsize(libc, master, offHeap(8), options.cols, options.rows);
      const pid = spawnOnSlave(libc, path, slave, options);
      return new UnixPty(libc, master, pid);
    } catch (error) {
      if (master >= 0) libc.close(master);
      releaseLibc();
      throw error;
    }
  }

  read(): Promise<Uint8Array | null> {
    if (this.#reading !== null) {
      return Promise.reject(
        ptyError("EBUSY", "Only one read() may be in flight on a pty at a time"),
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
      if (this.#batch !== null) {
        const got = Number(await this.#batch);
        this.#batch = null;
        if (this.#closing) return null;
        if (got > 0) {
          const chunk = this.#takeBatch(got);
          // Still busy: the next batch is read while this one is handed on.
          if (got >= BULK) this.#startBatch();
          return chunk;
        }
        // The batch stopped at once (its read would block, or the end, or an error; errno stayed on the worker
        // thread): the read below finds out which.
      }
      const n = Number(this.#libc.read(this.#master, this.#readBuffer, BigInt(READ_CHUNK)));
      if (n > 0) {
        // Bulk output: hand this on at once and read on in a batch on a worker thread.
        if (n >= BULK && this.#startBatch()) return this.#readBuffer.slice(0, n);
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
      const code = errno();
      if (code === EINTR) continue;
      if (code === EAGAIN) {
        // close() cancels the wait, then the loop sees #closing.
        await waitReadable(this.#master);
        continue;
      }
      // EIO: every slave descriptor is closed (the program and its children exited).
      if (code === EIO) break;
      throw errnoError("Reading the pty", code);
    }
    this.#eof = true;
    return null;
  }

  /**
   * Start reading the next batch on a worker thread: `fread` on an unbuffered stdio stream over the non-blocking
   * master loops `read` until `BATCH` bytes or until a read would block (or ends, or fails). The kernel hands a
   * master ~4 KiB per read, and when its buffer is empty a read first waits for the kernel worker that refills it;
   * on the worker thread those waits no longer stall the event loop, which meanwhile hands the last batch on.
   *
   * @returns False when this libc has no stdio to do it with (then the caller reads on the event loop).
   */
  #startBatch(): boolean {
    const libc = this.#libc;
    if (this.#closing || this.#noStdio || libc.fread_async === null || libc.clearerr === null) {
      return false;
    }
    if (this.#file === null) {
      const file = libc.fdopen?.(this.#master, cString("r")) ?? null;
      if (file === null) {
        this.#noStdio = true;
        return false;
      }
      // From here on the stream owns the master: close() closes it with fclose.
      this.#file = file;
      if (libc.setvbuf === null || libc.setvbuf(file, null, IONBF, 0n) !== 0) {
        this.#noStdio = true;
        return false;
      }
    }
    this.#batchBuffer ??= takeChunk(BATCH);
    // fread stops at the first failed read and remembers it: forget the last batch's EAGAIN.
    libc.clearerr(this.#file);
    this.#batch = libc.fread_async(this.#batchBuffer, 1n, BigInt(BATCH), this.#file);
    return true;
  }

  /**
   * The bytes of the batch just read. A batch at least half full is handed on as it is (the buffer becomes the
   * chunk, no copy; whoever keeps it gives it back to the chunk pool) and the next batch takes another buffer
   * from the pool; a smaller one is copied out (into a pooled buffer from 16 KiB on, `keepChunk`) and its buffer
   * goes back to the pool, for the next batch.
   */
  #takeBatch(got: number): Uint8Array {
    const buffer = this.#batchBuffer!;
    this.#batchBuffer = null;
    return keepChunk(buffer, got);
  }

  write(data: Uint8Array): Promise<void> {
    if (this.#closing) {
      return Promise.reject(ptyError("ECLOSED", "The pty is closed"));
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
      if (this.#closing) throw ptyError("ECLOSED", "The pty was closed during a write");
      const rest = bytes.subarray(offset);
      const n = Number(this.#libc.write(this.#master, rest, BigInt(rest.length)));
      if (n > 0) {
        offset += n;
        continue;
      }
      const code = n === 0 ? EAGAIN : errno();
      if (code === EINTR) continue;
      if (code === EAGAIN) {
        // close() cancels the wait, then the loop sees #closing.
        await waitWritable(this.#master);
        continue;
      }
      throw errnoError("Writing to the pty", code);
    }
  }

  resize(cols: number, rows: number): void {
    if (this.#closing) throw ptyError("ECLOSED", "The pty is closed");
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
    // 1. Stop our own I/O: release any wait on the master and let read()/write() finish (a batch read in flight
    //    ends by itself: the master is non-blocking, so it stops at the first read that would wait).
    this.#closing = true;
    await cancel(this.#master);
    await Promise.allSettled([this.#reading, this.#writeChain, this.#batch]);
    // 2. Hang up like a terminal whose line dropped: SIGHUP to the session (the program's group
    //    and its background jobs), then close the master, which makes the kernel hang up the
    //    slave. Closing matters: a shell can miss a bare SIGHUP that races with its select().
    const deadline = performance.now() + KILL_GRACE_MS;
    this.kill("SIGHUP");
    signalSession(this.pid, "SIGHUP");
    if (this.#file !== null) this.#libc.fclose?.(this.#file); // closes the master too
    else this.#libc.close(this.#master);
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
    releaseLibc();
  }
}

function openMaster(libc: Libc): number {
  const flags = O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK;
  // macOS's posix_openpt accepts only O_RDWR | O_NOCTTY; it is open("/dev/ptmx") underneath.
  const fd = IS_DARWIN ? libc.open_noperm(cString("/dev/ptmx"), flags) : libc.posix_openpt(flags);
  return check(fd, "posix_openpt");
}

function slaveName(libc: Libc, master: number): string {
  if (libc.ptsname_r !== null && !IS_DARWIN) {
    const buffer = offHeap(256);
    check(libc.ptsname_r(master, buffer, 256n), "ptsname_r", true);
    return new TextDecoder().decode(buffer.subarray(0, buffer.indexOf(0)));
  }
  const name = libc.ptsname(master);
  if (name === null) throw errnoError("ptsname", errno());
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
  check(ioctlPointer(libc, master, OS.ioctl.TIOCSWINSZ, winsize), "ioctl(TIOCSWINSZ)");
}

function spawnOnSlave(
  libc: Libc,
  path: string,
  slave: string,
  options: BackendSpawnOptions,
): number {
  let argv = [path, ...options.args];
  let program = path;
  // XNU applies file actions before POSIX_SPAWN_SETSID, so opening the slave does not make it
  // the controlling terminal. A tiny perl step (shipped with macOS) claims it with TIOCSCTTY
  // and then execs the program in the same process.
  if (IS_DARWIN && "path" in findProgram("/usr/bin/perl", undefined)) {
    program = "/usr/bin/perl";
    argv = [
      "perl",
      "-e",
      `ioctl(STDIN, ${OS.ioctl.TIOCSCTTY}, 0); exec { $ARGV[0] } @ARGV or exit 127;`,
      path,
      ...options.args,
    ];
  }
  const spawned = posixSpawn(libc, {
    path: program,
    argv,
    env: options.env,
    cwd: options.cwd,
    // No O_NOCTTY: after setsid, Linux makes this open the controlling terminal.
    stdio: [{ fd: 0, open: slave, flags: O_RDWR }, { fd: 1, dup: 0 }, { fd: 2, dup: 0 }],
    session: true,
  });
  if (!("pid" in spawned)) {
    const code = errnoName(spawned.errno);
    throw Object.assign(ptyError(code, `Could not start "${options.command}": ${code}`), {
      errno: spawned.errno,
    });
  }
  return spawned.pid;
}
