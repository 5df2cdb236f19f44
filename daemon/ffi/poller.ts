// Copyright 2026 the SandD authors. MIT license.
/**
 * The daemon's one file-descriptor readiness poller: pipes of children, pseudo-terminal masters and the pidfds
 * of children (see `child_exit.ts`) all wait here, on one worker thread at most.
 *
 * The poller runs libc `poll(fds, n, -1)` through an FFI symbol declared `nonblocking: true`, so the wait happens on
 * a worker thread and the event loop never blocks. Only descriptors somebody is currently waiting on are polled:
 * that is the backpressure (nobody reads, so nothing polls, so nothing is read, so the child blocks in `write`).
 * An eventfd (Linux) or a pipe (macOS) wakes the pending `poll` when the set changes.
 *
 * While no descriptor is registered the poll loop is stopped and libc released, so Deno's test sanitizers see no
 * pending op.
 *
 * A child's exit wakes the worker thread (its pipes hang up, its pidfd becomes readable), which then has to wake
 * the event loop: two thread wake-ups in a row. A `SIGCHLD` listener that swept the descriptors on the event loop
 * was tried and removed: Deno delivers a signal to its listeners through a dedicated signal thread (the handler
 * writes to a socket, that thread reads it and wakes the event loop; seen with strace), so it is the same two
 * wake-ups, plus a sweep per signal, and it measured 0.25-0.35 ms slower per exec on a quiet machine.
 *
 * @module
 */

import { acquireLibc, errno, type Libc, releaseLibc, setFlag } from "./libc.ts";
import { EVENTFD, OS, POLL } from "./constants.ts";

const { POLLIN, POLLOUT, POLLERR, POLLHUP, POLLNVAL } = POLL;
const { EFD_NONBLOCK, EFD_CLOEXEC } = EVENTFD;
const { O_CLOEXEC, O_NONBLOCK } = OS.open;
const { F_SETFD, F_SETFL, FD_CLOEXEC } = OS.fcntl;
const READABLE = POLLIN | POLLERR | POLLHUP | POLLNVAL;
const WRITABLE = POLLOUT | POLLERR | POLLHUP | POLLNVAL;
/** Give up after this many `poll` failures in a row (each one is retried: EINTR is expected). */
const MAX_POLL_FAILURES = 100;
/** Microtask turns to wait after waking waiters, before polling again. */
const SETTLE_TICKS = 8;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

interface Waiter {
  resolve: () => void;
  reject: (error: Error) => void;
}

interface Entry {
  readers: Waiter[];
  writers: Waiter[];
}

/** fd → its waiters. Only these fds are polled. */
const entries = new Map<number, Entry>();
/** Whether the loop runs (libc acquired, wake fd open). */
let running = false;
/** fd → events of the `poll` call in flight, or null between calls. */
let inFlight: Map<number, number> | null = null;
/** Resolvers for `cancel` calls that wait until the poll in flight has returned. */
let afterPoll: (() => void)[] = [];
let woken = false;
let wakeRead = -1;
let wakeWrite = -1;
let libc: Libc | null = null;
const wakeValue = new Uint8Array(new BigUint64Array([1n]).buffer);
const drainBuffer = new Uint8Array(new ArrayBuffer(64));

function eventsOf(entry: Entry): number {
  return (entry.readers.length > 0 ? POLLIN : 0) | (entry.writers.length > 0 ? POLLOUT : 0);
}

function checkFd(fd: number): void {
  if (!Number.isInteger(fd) || fd < 0) {
    throw new RangeError(`File descriptor must be a non-negative integer: received ${fd}`);
  }
}

function wait(fd: number, writable: boolean): Promise<void> {
  checkFd(fd);
  return new Promise<void>((resolve, reject) => {
    let entry = entries.get(fd);
    if (entry === undefined) {
      entry = { readers: [], writers: [] };
      entries.set(fd, entry);
    }
    (writable ? entry.writers : entry.readers).push({ resolve, reject });
    if (!running) start();
    else if (inFlight !== null && inFlight.get(fd) !== eventsOf(entry)) wake();
  });
}

/**
 * Resolve once `fd` is readable (or at end of file, hang-up, error or an invalid fd). One-shot: wait again
 * after the next read would block.
 *
 * @example Wait for a pipe's read end
 * ```ts ignore
 * await waitReadable(fd);
 * ```
 *
 * @param fd A file descriptor (set it O_NONBLOCK to read it after the wait).
 * @returns A promise that resolves when `fd` is ready, or when {@linkcode cancel} is called for it.
 */
export function waitReadable(fd: number): Promise<void> {
  return wait(fd, false);
}

/**
 * Resolve once `fd` is writable (or hung up, in error or invalid). One-shot.
 *
 * @example Wait for a pipe's write end
 * ```ts ignore
 * await waitWritable(fd);
 * ```
 *
 * @param fd A file descriptor.
 * @returns A promise that resolves when `fd` is ready, or when {@linkcode cancel} is called for it.
 */
export function waitWritable(fd: number): Promise<void> {
  return wait(fd, true);
}

/**
 * Stop polling `fd`: its waiters resolve at once (as if ready; they must check their own state). The returned
 * promise resolves once no `poll` in flight watches `fd` any more, so closing `fd` afterwards is clean.
 *
 * @example Cancel before closing
 * ```ts ignore
 * await cancel(fd);
 * libc.close(fd);
 * ```
 *
 * @param fd The file descriptor.
 * @returns A promise that resolves when the poller has let go of `fd`.
 */
export function cancel(fd: number): Promise<void> {
  checkFd(fd);
  const entry = entries.get(fd);
  if (entry !== undefined) {
    entries.delete(fd);
    for (const waiter of entry.readers) waiter.resolve();
    for (const waiter of entry.writers) waiter.resolve();
  }
  if (inFlight !== null && inFlight.has(fd)) {
    wake();
    return new Promise<void>((resolve) => afterPoll.push(resolve));
  }
  return Promise.resolve();
}

/**
 * Whether the `poll` in flight on the worker thread watches `fd`: then close `fd` only after {@linkcode cancel}
 * has resolved (a number closed, and reused, under a `poll` could be missed or mistaken).
 *
 * @example Close at once or after the poll let go
 * ```ts ignore
 * if (pollWatches(fd)) cancel(fd).then(() => libc.close(fd));
 * else libc.close(fd);
 * ```
 *
 * @param fd A file descriptor.
 * @returns True while the worker thread's `poll` has it.
 */
export function pollWatches(fd: number): boolean {
  return inFlight !== null && inFlight.has(fd);
}

/**
 * Whether the poll loop is running (some fd is registered or the loop is winding down). For tests.
 *
 * @example Idle when nothing waits
 * ```ts
 * import { pollerActive } from "./poller.ts";
 *
 * console.log(pollerActive()); // false
 * ```
 *
 * @returns True while the loop runs.
 */
export function pollerActive(): boolean {
  return running;
}

/** Resolve the waiters of the descriptors in `view` (a `pollfd` array from `start`) that `poll` reported. */
function serve(view: DataView, start: number, end: number): void {
  for (let offset = start; offset < end; offset += 8) {
    const revents = view.getInt16(offset + 6, LITTLE_ENDIAN);
    if (revents === 0) continue;
    const fd = view.getInt32(offset, LITTLE_ENDIAN);
    const entry = entries.get(fd);
    if (entry === undefined) continue;
    if ((revents & READABLE) !== 0 && entry.readers.length > 0) {
      const waiters = entry.readers;
      entry.readers = [];
      for (const waiter of waiters) waiter.resolve();
    }
    if ((revents & WRITABLE) !== 0 && entry.writers.length > 0) {
      const waiters = entry.writers;
      entry.writers = [];
      for (const waiter of waiters) waiter.resolve();
    }
    if (entry.readers.length === 0 && entry.writers.length === 0) entries.delete(fd);
  }
}

function wake(): void {
  if (woken || libc === null) return;
  woken = true;
  libc.write(wakeWrite, wakeValue, 8n);
}

function openWake(symbols: Libc): void {
  if (symbols.eventfd !== null) {
    const fd = symbols.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd >= 0) {
      wakeRead = wakeWrite = fd;
      return;
    }
  }
  const pair = new Int32Array(2);
  const ok = symbols.pipe2 !== null
    ? symbols.pipe2(pair, O_CLOEXEC | O_NONBLOCK)
    : symbols.pipe(pair);
  if (ok !== 0) throw new Error(`Creating the poller's wake pipe failed: errno ${errno()}`);
  wakeRead = pair[0]!;
  wakeWrite = pair[1]!;
  if (symbols.pipe2 === null) {
    for (const fd of [wakeRead, wakeWrite]) {
      setFlag(symbols, fd, F_SETFD, FD_CLOEXEC);
      setFlag(symbols, fd, F_SETFL, O_NONBLOCK);
    }
  }
}

function start(): void {
  libc = acquireLibc();
  try {
    openWake(libc);
  } catch (error) {
    libc = null;
    releaseLibc();
    failAll(error as Error);
    return;
  }
  running = true;
  woken = false;
  loop().catch((error: Error) => failAll(error));
}

function failAll(error: Error): void {
  const all = [...entries.values()];
  entries.clear();
  for (const entry of all) {
    for (const waiter of entry.readers) waiter.reject(error);
    for (const waiter of entry.writers) waiter.reject(error);
  }
}

async function loop(): Promise<void> {
  const symbols = libc!;
  let failures = 0;
  // Whether the next round goes straight to the worker thread: after a round answered without it (so a stream
  // that is always ready still lets the event loop turn between rounds), and in the first round, whose
  // descriptors were registered just now, after a read that would block (or a pidfd of a child just started):
  // asking again microseconds later is a wasted call on every command's start.
  let answeredNow = true;
  try {
    // Let registrations made in the same tick join the first poll.
    await Promise.resolve();
    while (entries.size > 0) {
      const count = entries.size + 1;
      const fds = new ArrayBuffer(count * 8);
      const view = new DataView(fds);
      view.setInt32(0, wakeRead, LITTLE_ENDIAN);
      view.setInt16(4, POLLIN, LITTLE_ENDIAN);
      const watching = new Map<number, number>();
      let at = 8;
      for (const [fd, entry] of entries) {
        const events = eventsOf(entry);
        view.setInt32(at, fd, LITTLE_ENDIAN);
        view.setInt16(at + 4, events, LITTLE_ENDIAN);
        watching.set(fd, events);
        at += 8;
      }
      const pollFds = new Uint8Array(fds);
      // First ask without blocking: a child's pipes and pidfd become ready within microseconds of each other,
      // and one that was not ready when the last poll returned usually is by now. That saves a thread hand-off
      // (about 0.1-0.3 ms) per round.
      let ready: number = answeredNow ? 0 : symbols.poll_now(pollFds, BigInt(count), 0);
      answeredNow = ready > 0;
      if (!answeredNow) {
        inFlight = watching;
        ready = await symbols.poll(pollFds, BigInt(count), -1);
        inFlight = null;
        // The hand-off back took a while: take a fresh snapshot, so descriptors that became ready meanwhile (the
        // other pipe and the pidfd of an exiting child) are served in this round and their messages leave in
        // one write. Level-triggered, so nothing reported ready above is lost.
        // (Not needed when every descriptor was reported ready already, as for most commands' exits.)
        const woke = view.getInt16(6, LITTLE_ENDIAN) !== 0 ? 1 : 0;
        if (ready > 0 && ready - woke < count - 1) {
          const again = symbols.poll_now(pollFds, BigInt(count), 0);
          if (again > 0) ready = again;
        }
      }
      const released = afterPoll;
      afterPoll = [];
      if (ready < 0) {
        // errno lives on the worker thread; EINTR (a signal landed there) is the expected cause.
        if (++failures >= MAX_POLL_FAILURES) {
          throw new Error(`poll() failed ${failures} times in a row`);
        }
      } else {
        failures = 0;
        if (view.getInt16(6, LITTLE_ENDIAN) !== 0) {
          while (Number(symbols.read(wakeRead, drainBuffer, 64n)) > 0) {
            // drain
          }
          woken = false;
        }
        serve(view, 8, count * 8);
      }
      for (const resolve of released) resolve();
      // Let the woken waiters run (read, hand the chunk on, read again until EAGAIN) so that their next
      // waits join the next poll instead of waking it right after it starts: one thread round trip, not two.
      if (ready > 0 && entries.size > 0) {
        for (let i = 0; i < SETTLE_TICKS; i++) await null;
      }
    }
  } finally {
    inFlight = null;
    for (const resolve of afterPoll) resolve();
    afterPoll = [];
    symbols.close(wakeRead);
    if (wakeWrite !== wakeRead) symbols.close(wakeWrite);
    wakeRead = wakeWrite = -1;
    running = false;
    libc = null;
    releaseLibc();
  }
}
