/**
 * The daemon's table of processes: spawning, output retention with byte offsets, per-stream credit, attachment
 * from any number of controller connections, signals, timeouts, orphan and exit-status retention.
 *
 * A process's life does not depend on any link: output is read into a bounded {@linkcode OutputBuffer}; while at
 * least one controller is attached, reading stops when the slowest attachment has not acknowledged `retainBytes`
 * (backpressure reaches the child). When a link drops, that backpressure is held for `detachedHoldMs` (the
 * outage policy): the child blocks on a full pipe, as it would behind a stalled ssh connection, and a controller
 * that comes back within the hold resumes with nothing lost. While nobody is attached (after the hold, or after an
 * explicit detach), reading goes on and the oldest bytes are dropped, which a later attach learns as an explicit
 * gap.
 *
 * Over 600 lines on purpose for now: the output state, the process and the table share one lifecycle (exit,
 * dispose, retention, process-group lingering) and were edited in parallel by several changes; `OutputState` is
 * the part to move to its own private file once those have landed.
 *
 * A process is its whole process group (a terminal's: its session), not only the child the daemon started: a
 * background job (`sleep 61 &`) that outlives its command keeps the process counted in {@linkcode
 * ProcessTable.running} (so `--max-processes` holds), is killed at the command's timeout, by a `signal` request,
 * when the exit status's retention ends and when the daemon shuts down. Without a timeout it may linger (and is
 * reported as `lingering` by `processes`) until one of those. See `_process_group.ts` for how groups are probed.
 *
 * @module
 */

import type { ProcessInfo } from "@sandd/protocol/replies";
import { FRAME_HEADER_BYTES, writeDataFrameHeader } from "@sandd/protocol/frame";
import { CreditSender } from "@sandd/protocol/stream";
import type { AttachArgs, SpawnArgs, StreamResume } from "@sandd/protocol/messages";
import { MAX_EXIT_EOFS, MAX_FRAME_PAYLOAD_BYTES } from "@sandd/protocol/constants";
import type { Link, StreamRoute } from "./_link.ts";
import { OutputBuffer } from "./_output_buffer.ts";
import { StdinStream } from "./stream/_stdin_stream.ts";
import { allocateBinaryMessage } from "./_websocket_client.ts";
import {
  countMembers,
  groupAlive,
  type MemberCounts,
  processGroupsSupported,
  signalGroup,
} from "./_process_group.ts";

/**
 * Largest payload of one data frame: the protocol's largest (256 KiB). Bulk output then costs a quarter of the
 * WebSocket messages, acks and per-frame work on both sides that 64 KiB frames did.
 */
const MAX_FRAME_PAYLOAD = MAX_FRAME_PAYLOAD_BYTES;
const IS_LINUX = Deno.build.os === "linux";
/** How often lingering process groups are counted again (one /proc scan on Linux) while any linger. */
const LINGER_SWEEP_MS = 1_000;
/** Beyond this many lingering groups, `running` probes them at most every {@linkcode LINGER_PROBE_MIN_MS}. */
const LINGER_PROBE_ALWAYS = 256;
const LINGER_PROBE_MIN_MS = 100;
/**
 * How long the first of a process's ends (an output's end, or its exit) waits for the others, so that they leave
 * together: on a revision-1 link as one `exit` carrying the `eof`s. A command's pipes and its exit become ready
 * within microseconds of each other; this bound only delays a process that closes its output and runs on, or one
 * that leaves a job holding its pipes.
 */
const ENDS_COALESCE_MS = 5;

/** An error answered to the controller with a stable code. */
export class DaemonRequestError extends Error {
  /** Stable code sent on the wire. */
  readonly code: string;
  /** Extra wire fields. */
  readonly extra: { path?: string; rule?: string };
  /**
   * @param code Stable code.
   * @param message Message.
   * @param extra Path or rule.
   */
  constructor(code: string, message: string, extra: { path?: string; rule?: string } = {}) {
    super(message);
    this.name = "DaemonRequestError";
    this.code = code;
    this.extra = extra;
  }
}

/** How a process ended. */
export interface ExitStatus {
  /** Exit code; 128 + signal number when a signal ended it. */
  exitCode: number;
  /** The signal, if one ended it. */
  signal: Deno.Signal | null;
}

/** The I/O of a running child, whatever started it (a pipe-based command or a PTY). */
export interface ChildHandle {
  readonly pid: number;
  /** One reader per output stream: stdout and stderr, or the single PTY stream. `null` at end. */
  readonly outputs: (() => Promise<Uint8Array | null>)[];
  /** Write to stdin; undefined when stdin is not open. */
  readonly write?: (bytes: Uint8Array) => Promise<void>;
  /** Close stdin (EOF for the child). */
  readonly closeInput?: () => Promise<void>;
  readonly kill: (signal: Deno.Signal) => void;
  readonly status: Promise<ExitStatus>;
  readonly resize?: (cols: number, rows: number) => void;
  /** Release everything once the child has exited and outputs ended. */
  readonly dispose?: () => Promise<void>;
}

/** Starts a child; the table calls it for `spawn` requests. */
export type ChildFactory = (args: SpawnArgs) => ChildHandle;

/** One controller stream reading one output. */
interface Attachment {
  link: Link;
  sid: number;
  /** Credit of this reader (the bytes themselves stay in the shared buffer). */
  credit: CreditSender;
  eofSent: boolean;
  route: StreamRoute;
}

/** A stream end carried by an `exit` (protocol revision 1). */
interface CarriedEof {
  sid: number;
  offset: number;
}

class OutputState {
  readonly buffer: OutputBuffer;
  readonly attachments: Set<Attachment> = new Set();
  readonly #read: () => Promise<Uint8Array | null>;
  readonly #onEnd: (output: OutputState) => void;
  readonly #cap: number;
  readonly #holdMs: number;
  /** While a lost link's backpressure is held: the offset its reader had acknowledged; else null. */
  #heldAcked: number | null = null;
  #holdTimer: ReturnType<typeof setTimeout> | undefined;
  #reading = false;
  ended = false;
  /** Bytes the child wrote past the cap (read and dropped, so the child never blocks on them). */
  dropped = 0;
  /** While true, `eof`s are held back (the process's exit may carry them). */
  holdEof = false;

  constructor(
    read: () => Promise<Uint8Array | null>,
    retain: number,
    onEnd: (output: OutputState) => void,
    cap = Infinity,
    holdMs = 0,
  ) {
    this.#read = read;
    this.buffer = new OutputBuffer(retain);
    this.#onEnd = onEnd;
    this.#cap = cap;
    this.#holdMs = holdMs;
  }

  /** The lowest offset a reader (attached, or lost and held) still needs; Infinity when none. */
  #minAcked(): number {
    let minAcked = this.#heldAcked ?? Infinity;
    for (const a of this.attachments) minAcked = Math.min(minAcked, a.credit.acked);
    return minAcked;
  }

  /** Keep a lost reader's backpressure for the hold, then let reading go on. */
  #hold(acked: number): void {
    if (this.#holdMs <= 0 || this.ended) return;
    this.#heldAcked = Math.min(this.#heldAcked ?? Infinity, acked);
    if (this.#holdTimer !== undefined) return;
    this.#holdTimer = setTimeout(() => {
      this.#holdTimer = undefined;
      this.#heldAcked = null;
      this.pull();
    }, this.#holdMs);
    // A held stream must not keep a daemon that is shutting down alive.
    Deno.unrefTimer(this.#holdTimer);
  }

  /** End the hold (a reader is back, the output ended, or the process is forgotten). */
  release(): void {
    clearTimeout(this.#holdTimer);
    this.#holdTimer = undefined;
    this.#heldAcked = null;
  }

  /** Read more from the child when the slowest attachment leaves room in the window. */
  pull(): void {
    if (this.#reading || this.ended) return;
    const minAcked = this.#minAcked();
    if (minAcked !== Infinity && this.buffer.end - minAcked >= this.buffer.capacity) return;
    this.#reading = true;
    this.#read().then(
      (chunk) => this.#onChunk(chunk),
      () => this.#onChunk(null),
    );
  }

  #onChunk(chunk: Uint8Array | null): void {
    this.#reading = false;
    if (chunk === null) {
      this.ended = true;
      this.release();
      this.#onEnd(this);
    } else {
      const room = this.#cap - this.buffer.end;
      if (chunk.length > room) {
        this.dropped += chunk.length - Math.max(0, room);
        chunk = chunk.subarray(0, Math.max(0, room));
      }
      this.buffer.append(chunk, this.#minAcked());
    }
    this.pump();
    this.pull();
  }

  /** Send what each attachment has credit for. */
  pump(): void {
    for (const a of this.attachments) {
      if (!a.link.open) continue;
      const credit = a.credit;
      while (credit.offset < this.buffer.end && credit.room > 0) {
        if (credit.offset < this.buffer.start) {
          // Lost before this reader got them: say so, and count them as acknowledged.
          a.link.send({ t: "gap", sid: a.sid, from: credit.offset, to: this.buffer.start });
          credit.skip(this.buffer.start);
          continue;
        }
        const parts = this.buffer.read(credit.offset, Math.min(MAX_FRAME_PAYLOAD, credit.room));
        let length = 0;
        for (const part of parts) length += part.length;
        if (length === 0) break;
        // One allocation per frame: the socket frames and masks it in place.
        const frame = allocateBinaryMessage(FRAME_HEADER_BYTES + length);
        let at = FRAME_HEADER_BYTES;
        for (const part of parts) {
          frame.set(part, at);
          at += part.length;
        }
        a.link.sendBinary(writeDataFrameHeader(frame, a.sid, credit.sent(length)));
      }
      if (this.ended && !a.eofSent && !this.holdEof && credit.offset >= this.buffer.end) {
        a.eofSent = true;
        a.link.send({ t: "eof", sid: a.sid, offset: this.buffer.end });
      }
    }
  }

  /**
   * The ends of `link`'s attachments that are due now (the output ended and every byte was sent), marked as sent:
   * for an `exit` to carry. At most `max - into.length` are added to `into`.
   */
  takeEofs(link: Link, into: CarriedEof[], max: number): void {
    if (!this.ended || !link.open) return;
    for (const a of this.attachments) {
      if (into.length >= max) return;
      if (a.link !== link || a.eofSent || a.credit.offset < this.buffer.end) continue;
      a.eofSent = true;
      into.push({ sid: a.sid, offset: this.buffer.end });
    }
  }

  attach(link: Link, resume: StreamResume, window: number): void {
    const from = resume.from === null ? this.buffer.start : resume.from;
    if (from > this.buffer.end) {
      throw new DaemonRequestError(
        "BAD_OFFSET",
        `Cannot resume from offset ${from}: only ${this.buffer.end} bytes were produced`,
      );
    }
    const attachment: Attachment = {
      link,
      sid: resume.sid,
      credit: new CreditSender({ window: Math.min(window, this.buffer.capacity), from }),
      eofSent: false,
      route: {
        onAck: (offset) => {
          attachment.credit.ack(offset);
          this.pump();
          this.pull();
        },
        onReset: () => this.detach(attachment),
        onClose: () => this.detach(attachment, true),
      },
    };
    link.bind(resume.sid, attachment.route);
    this.attachments.add(attachment);
    // A reader is back: its own credit holds the child from now on.
    this.release();
  }

  /**
   * Drop an attachment. `lost`: its link dropped (rather than the controller detaching), so its backpressure is
   * held for the outage policy's hold.
   */
  detach(attachment: Attachment, lost = false): void {
    if (!this.attachments.delete(attachment)) return;
    attachment.link.unbind(attachment.sid, attachment.route);
    if (lost) this.#hold(attachment.credit.acked);
    this.pull();
  }

  detachLink(link: Link, lost = false): void {
    for (const a of [...this.attachments]) if (a.link === link) this.detach(a, lost);
  }
}

/** What `processes` reports for one process: the wire's description (one definition, `protocol/replies.ts`). */
export type { ProcessInfo };

/** Options of {@linkcode ProcessTable}. */
export interface ProcessTableOptions {
  /** Bytes of output kept per stream for resume; also the most a spawn request may ask for. @default 4 MiB */
  retainBytes?: number;
  /** Kill a process nobody is attached to after this long; 0 disables. @default 3_600_000 */
  orphanTimeoutMs?: number;
  /** Keep the exit status of an ended process this long. @default 600_000 */
  exitRetentionMs?: number;
  /** Grace before SIGTERM escalates to SIGKILL. @default 5_000 */
  killGraceMs?: number;
  /** Output bytes a process may produce per stream; the rest is read and dropped. @default unlimited */
  maxOutputBytes?: number;
  /**
   * The outage policy: when a link drops, keep its readers' backpressure on the child this long (the child
   * blocks once `retainBytes` are unread, as behind a stalled ssh connection), so a controller that is back
   * within it resumes with nothing lost; after it, output goes on being read and the oldest bytes are dropped
   * (an explicit gap). 0 drops at once. @default 300_000 (5 minutes)
   */
  detachedHoldMs?: number;
}

/** One process held by the daemon. */
export class ManagedProcess {
  readonly id: string;
  readonly command: string | string[];
  readonly startedAt: Date = new Date();
  readonly pty: boolean;
  readonly child: ChildHandle;
  readonly outputs: OutputState[];
  exit: ExitStatus | null = null;
  timedOut = false;
  /** Members of its group (or session) alive after the exit, as last counted; 0 when none (or not exited). */
  lingering = 0;
  /** Its process group id (the child's pid), or 0 when there is none (no OS process, or Windows). */
  readonly group: number;
  readonly #table: ProcessTable;
  readonly #exitLinks: Set<Link> = new Set();
  readonly #stdin: StdinStream;
  /** The timeout and SIGTERM grace timers: they also reach a group that lingers after the exit. */
  #timers: ReturnType<typeof setTimeout>[] = [];
  #forgetTimer: ReturnType<typeof setTimeout> | undefined;
  #orphanTimer: ReturnType<typeof setTimeout> | undefined;
  #endedOutputs = 0;
  #disposed = false;
  /** The exit is known but not sent yet: it waits (briefly) for the outputs to end, to carry their `eof`s. */
  #exitHeld = false;
  /** Bounds how long the first end waits for the others (see {@linkcode ENDS_COALESCE_MS}). */
  #endsTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    table: ProcessTable,
    id: string,
    args: SpawnArgs,
    child: ChildHandle,
    retain: number,
  ) {
    this.#table = table;
    this.id = id;
    this.command = args.command;
    this.pty = args.pty !== undefined;
    this.child = child;
    this.group = processGroupsSupported && child.pid > 1 ? child.pid : 0;
    this.outputs = child.outputs.map((read) =>
      new OutputState(
        read,
        retain,
        (output) => this.#outputEnded(output),
        table.maxOutputBytes,
        table.detachedHoldMs,
      )
    );
    const write = child.write;
    this.#stdin = new StdinStream(
      write ? { write, close: () => child.closeInput?.() ?? Promise.resolve() } : null,
    );
    if (args.timeoutMs !== undefined) {
      this.#timers.push(setTimeout(() => {
        if (this.exit) {
          // The command ended in time, but a job it left behind did not: it shares the command's deadline.
          this.#killLingering("SIGKILL");
          return;
        }
        this.timedOut = true;
        this.child.kill("SIGKILL");
      }, args.timeoutMs));
    }
    child.status.then((status) => this.#exited(status));
  }

  get pid(): number {
    return this.child.pid;
  }

  /** Stdin bytes received so far (written or queued for writing): where a resumed writer continues. */
  get stdinReceived(): number {
    return this.#stdin.received;
  }

  info(): ProcessInfo {
    return {
      id: this.id,
      pid: this.pid,
      command: this.command,
      startedAt: this.startedAt.toISOString(),
      state: this.exit ? "exited" : "running",
      exitCode: this.exit?.exitCode ?? null,
      signal: this.exit?.signal ?? null,
      pty: this.pty,
      attached: this.#exitLinks.size,
      ...(this.lingering > 0 ? { lingering: this.lingering } : {}),
    };
  }

  /** Attach `link` to the outputs and optionally stdin. */
  attach(
    link: Link,
    resumes: (StreamResume | undefined)[],
    window: number,
    stdinSid: number | undefined,
  ): number {
    if (resumes.length > this.outputs.length && resumes[this.outputs.length] !== undefined) {
      throw new DaemonRequestError(
        "BAD_REQUEST",
        `Process ${this.id} has ${this.outputs.length} output stream(s), ${resumes.length} requested`,
      );
    }
    for (const resume of resumes) {
      if (
        resume && resume.from !== null &&
        resume.from > this.outputs[resumes.indexOf(resume)]!.buffer.end
      ) {
        throw new DaemonRequestError(
          "BAD_OFFSET",
          `Cannot resume from offset ${resume.from}: not produced yet`,
        );
      }
    }
    resumes.forEach((resume, i) => {
      if (resume) this.outputs[i]!.attach(link, resume, window);
    });
    if (stdinSid !== undefined) this.#stdin.bind(link, stdinSid, window);
    this.#exitLinks.add(link);
    clearTimeout(this.#orphanTimer);
    this.#orphanTimer = undefined;
    for (const output of this.outputs) output.pump();
    // A held exit goes to every attached link, this one included, once it is released.
    if (this.exit && !this.#exitHeld) this.#sendExit(link);
    return this.#stdin.written;
  }

  /** Drop `link`'s attachments; `lost` when the link dropped (the outage hold applies). */
  detach(link: Link, lost = false): void {
    for (const output of this.outputs) output.detachLink(link, lost);
    this.#stdin.unbind(link);
    this.#exitLinks.delete(link);
    this.#maybeOrphaned();
  }

  /**
   * Send a signal to the process group (also once the command exited, while its group lingers); SIGTERM
   * escalates to SIGKILL after the grace.
   */
  signal(signal: Deno.Signal, graceMs: number): void {
    if (this.exit) {
      if (this.lingering === 0) {
        throw new DaemonRequestError("PROCESS_EXITED", `Process ${this.id} has already exited`);
      }
      this.#killLingering(signal);
    } else {
      this.child.kill(signal);
    }
    if (signal === "SIGTERM" && graceMs > 0) {
      this.#timers.push(setTimeout(() => {
        if (!this.exit) this.child.kill("SIGKILL");
        else this.#killLingering("SIGKILL");
      }, graceMs));
    }
  }

  /**
   * Probe whether the group still lingers after the exit, and forget it once it is empty. With `counts` (one
   * /proc scan), count its live members (a terminal's: its session's). Without (`undefined`), only
   * `kill(-pgid, 0)` for a pipe group: a terminal's session is left to the next count, since its jobs can have
   * groups of their own. `null` means no count can be had (no /proc): `kill(-pgid, 0)` for either kind.
   */
  probe(counts?: MemberCounts | null): void {
    if (this.lingering === 0) return;
    if (counts) {
      const members = (this.pty ? counts.sessions : counts.groups).get(this.group) ?? 0;
      if (members > 0) this.lingering = members;
      else this.groupEnded();
    } else if ((counts === null || !this.pty || !IS_LINUX) && !groupAlive(this.group)) {
      this.groupEnded();
    }
  }

  /** No member of the group is left (or its id was reused): stop counting and never signal it again. */
  groupEnded(): void {
    if (this.lingering === 0) return;
    this.lingering = 0;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers = [];
    this.#table.lingerEnded(this);
  }

  /** Signal what lingers of the group (and a terminal's session) after the exit. */
  #killLingering(signal: Deno.Signal): void {
    if (this.lingering > 0) signalGroup(this.group, signal, this.pty);
  }

  resize(cols: number, rows: number): void {
    if (!this.child.resize) {
      throw new DaemonRequestError(
        "NOT_A_TERMINAL",
        `Process ${this.id} has no terminal to resize`,
      );
    }
    if (this.exit) {
      throw new DaemonRequestError("PROCESS_EXITED", `Process ${this.id} has already exited`);
    }
    this.child.resize(cols, rows);
  }

  #exited(status: ExitStatus): void {
    this.exit = status;
    clearTimeout(this.#orphanTimer);
    const members = this.#membersAtExit();
    if (members > 0) {
      this.lingering = members;
      this.#table.lingerStarted(this);
      // A command killed for its timeout takes what it left behind with it.
      if (this.timedOut) this.#killLingering("SIGKILL");
    } else {
      for (const timer of this.#timers) clearTimeout(timer);
      this.#timers = [];
    }
    this.#stdin.closed();
    if (this.#endedOutputs >= this.outputs.length) {
      this.#sendExits();
    } else {
      // The outputs usually end within microseconds: wait for them briefly, so the exit carries their eofs.
      this.#exitHeld = true;
      this.#holdEnds();
    }
    this.#maybeDispose();
  }

  /** Start the short wait of the first end for the others (once). */
  #holdEnds(): void {
    if (this.#endsTimer !== undefined) return;
    this.#endsTimer = setTimeout(() => this.#releaseEnds(), ENDS_COALESCE_MS);
  }

  /** The wait ran out: what has ended goes out as it is (eofs on their own; the exit, if known). */
  #releaseEnds(): void {
    this.#endsTimer = undefined;
    if (this.#exitHeld) {
      this.#sendExits();
      return;
    }
    for (const output of this.outputs) {
      output.holdEof = false;
      output.pump();
    }
  }

  /**
   * Send the exit to every attached link, a revision-1 link's carrying the eofs that are due on it; the other
   * links get theirs as `eof` messages first.
   */
  #sendExits(): void {
    clearTimeout(this.#endsTimer);
    this.#endsTimer = undefined;
    this.#exitHeld = false;
    const carried = new Map<Link, CarriedEof[]>();
    for (const link of this.#exitLinks) {
      if (link.revision < 1) continue;
      const eofs: CarriedEof[] = [];
      for (const output of this.outputs) output.takeEofs(link, eofs, MAX_EXIT_EOFS);
      if (eofs.length > 0) carried.set(link, eofs);
    }
    for (const output of this.outputs) {
      output.holdEof = false;
      output.pump();
    }
    for (const link of this.#exitLinks) this.#sendExit(link, carried.get(link));
  }

  /**
   * What is left of the group as the child is reaped. One kill(-pgid, 0): most commands leave nothing behind,
   * and then this is all an exit costs. A terminal's session is counted in /proc (its jobs can have groups of
   * their own; terminals end far less often than commands).
   */
  #membersAtExit(): number {
    if (this.group === 0) return 0;
    const counts = this.pty && IS_LINUX ? countMembers() : undefined;
    if (counts) return counts.sessions.get(this.group) ?? 0;
    return groupAlive(this.group) ? 1 : 0;
  }

  #sendExit(link: Link, eofs?: CarriedEof[]): void {
    const exit = this.exit!;
    link.send({
      t: "exit",
      proc: this.id,
      exitCode: exit.exitCode,
      signal: exit.signal,
      timedOut: this.timedOut,
      ...(this.outputs.some((o) => o.dropped > 0)
        ? { truncated: this.outputs.map((o) => o.dropped > 0) }
        : {}),
      ...(eofs ? { eofs } : {}),
    });
  }

  /** Called by an output as it ends, before it sends its eofs. */
  #outputEnded(output: OutputState): void {
    this.#endedOutputs++;
    if (!this.exit) {
      // Running still: hold this output's eofs briefly, the exit may come to carry them.
      output.holdEof = true;
      this.#holdEnds();
    }
    if (this.#exitHeld && this.#endedOutputs >= this.outputs.length) this.#sendExits();
    this.#maybeDispose();
  }

  #maybeDispose(): void {
    if (!this.exit || this.#endedOutputs < this.outputs.length || this.#disposed) return;
    this.#disposed = true;
    this.child.dispose?.().catch(() => {});
    this.#forgetTimer = setTimeout(() => this.#table.forget(this), this.#table.exitRetentionMs);
  }

  #maybeOrphaned(): void {
    if (this.exit || this.#exitLinks.size > 0 || this.#table.orphanTimeoutMs <= 0) return;
    clearTimeout(this.#orphanTimer);
    this.#orphanTimer = setTimeout(() => {
      if (!this.exit && this.#exitLinks.size === 0) this.child.kill("SIGKILL");
    }, this.#table.orphanTimeoutMs);
  }

  /**
   * Kill for shutdown (SIGTERM, SIGKILL after the grace); resolves once the child is reaped and no member of its
   * group (or a terminal's session) is left, or the grace ran out and they were sent SIGKILL.
   */
  async terminate(graceMs: number): Promise<void> {
    const deadline = performance.now() + graceMs;
    if (!this.exit) {
      this.child.kill("SIGTERM");
      const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
      await this.child.status;
      clearTimeout(timer);
    }
    if (this.lingering > 0) {
      this.#killLingering("SIGTERM");
      // Members are not our children: there is no exit event to await, so poll until the grace runs out.
      while (this.lingering > 0 && performance.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        // kill(-pgid, 0) first; the scan (which does not count zombies) only while that says it lives.
        this.probe();
        if (this.lingering > 0 && IS_LINUX) this.probe(countMembers() ?? null);
      }
      this.#killLingering("SIGKILL");
      this.groupEnded();
    }
    this.clearTimers();
  }

  clearTimers(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    clearTimeout(this.#orphanTimer);
    clearTimeout(this.#forgetTimer);
    this.#timers = [];
  }
}

/** All processes of one daemon. */
export class ProcessTable {
  readonly retainBytes: number;
  readonly orphanTimeoutMs: number;
  readonly exitRetentionMs: number;
  readonly killGraceMs: number;
  readonly maxOutputBytes: number;
  readonly detachedHoldMs: number;
  readonly #processes: Map<string, ManagedProcess> = new Map();
  /** The processes not exited yet (kept so {@linkcode running} need not walk the exit-retained ones). */
  readonly #live: Set<ManagedProcess> = new Set();
  /** Exited processes whose group still has members, by group id. */
  readonly #lingering: Map<number, ManagedProcess> = new Map();
  #sweepTimer: ReturnType<typeof setInterval> | undefined;
  #lastProbe = 0;
  readonly #factory: ChildFactory;
  #counter = 0;
  readonly #prefix: string = crypto.randomUUID().slice(0, 8);

  constructor(factory: ChildFactory, options: ProcessTableOptions = {}) {
    this.#factory = factory;
    this.retainBytes = options.retainBytes ?? 4 * 1024 * 1024;
    this.maxOutputBytes = options.maxOutputBytes ?? Infinity;
    this.detachedHoldMs = options.detachedHoldMs ?? 300_000;
    this.orphanTimeoutMs = options.orphanTimeoutMs ?? 3_600_000;
    this.exitRetentionMs = options.exitRetentionMs ?? 600_000;
    this.killGraceMs = options.killGraceMs ?? 5_000;
  }

  get size(): number {
    return this.#processes.size;
  }

  /**
   * Processes still running: those whose child runs, plus those whose child exited while members of its group
   * (or a terminal's session) still run. What `--max-processes` caps. Probes the lingering groups first (one
   * `kill(-pgid, 0)` each, nothing when none lingers).
   */
  get running(): number {
    if (this.#lingering.size > 0) this.#probeLingering();
    return this.#live.size + this.#lingering.size;
  }

  /**
   * {@linkcode running}, counted precisely (one /proc scan, zombies not counted) when the cheap probe says the
   * count reached `limit`: a job that just died is a zombie until its new parent reaps it (on some systems
   * seconds later), and a spawn must not be refused for it. The scan runs only when a refusal is at stake.
   *
   * @param limit The cap the count is compared with, if any.
   * @returns Processes running now.
   */
  countRunning(limit?: number): number {
    const running = this.running;
    if (limit === undefined || running < limit || this.#lingering.size === 0) return running;
    this.#sweep();
    return this.#live.size + this.#lingering.size;
  }

  /** Exited processes whose group (or session) still has live members, as of the last probe. */
  get lingering(): number {
    return this.#lingering.size;
  }

  #probeLingering(): void {
    const now = performance.now();
    if (this.#lingering.size > LINGER_PROBE_ALWAYS && now - this.#lastProbe < LINGER_PROBE_MIN_MS) {
      return;
    }
    this.#lastProbe = now;
    for (const process of [...this.#lingering.values()]) process.probe();
  }

  /** Count every lingering group precisely (one /proc scan on Linux; a probe each elsewhere). */
  #sweep(): void {
    const counts = countMembers() ?? null;
    for (const process of [...this.#lingering.values()]) process.probe(counts);
  }

  /** Called by a process whose group outlived its child. */
  lingerStarted(process: ManagedProcess): void {
    this.#lingering.set(process.group, process);
    this.#sweepTimer ??= setInterval(() => this.#sweep(), LINGER_SWEEP_MS);
  }

  /** Called by a process whose lingering group ended. */
  lingerEnded(process: ManagedProcess): void {
    if (this.#lingering.get(process.group) === process) this.#lingering.delete(process.group);
    if (this.#lingering.size === 0 && this.#sweepTimer !== undefined) {
      clearInterval(this.#sweepTimer);
      this.#sweepTimer = undefined;
    }
  }

  spawn(link: Link, args: SpawnArgs): ManagedProcess {
    const child = this.#factory(args);
    // A new child with the id of a group we think lingers proves that group ended (ids are not reused while
    // a member lives); never signal it again.
    if (this.#lingering.size > 0) this.#lingering.get(child.pid)?.groupEnded();
    const id = `p-${this.#prefix}-${++this.#counter}`;
    // The daemon's setting is a cap: a request may ask for less retention, never more.
    const retain = Math.max(
      64 * 1024,
      Math.min(args.retainBytes ?? this.retainBytes, this.retainBytes),
    );
    const process = new ManagedProcess(this, id, args, child, retain);
    this.#processes.set(id, process);
    if (!process.exit) {
      this.#live.add(process);
      // Registered after the process's own exit handler, so `exit` is set by the time this runs.
      child.status.then(() => this.#live.delete(process), () => this.#live.delete(process));
    }
    const resumes: StreamResume[] = [{ sid: args.stdout, from: 0 }];
    if (args.stderr !== undefined && process.outputs.length > 1) {
      resumes.push({ sid: args.stderr, from: 0 });
    }
    process.attach(link, resumes, args.window, args.stdin);
    for (const output of process.outputs) output.pull();
    return process;
  }

  get(id: string): ManagedProcess {
    const process = this.#processes.get(id);
    if (!process) {
      throw new DaemonRequestError("UNKNOWN_PROCESS", `No process with id '${id}' on this daemon`);
    }
    return process;
  }

  attach(link: Link, args: AttachArgs): ManagedProcess {
    const process = this.get(args.proc);
    const resumes = [args.stdout, args.stderr];
    // The link's earlier attachments stay: one controller may follow a process with several handles (each
    // output stream is its own attachment, by stream id; stdin moves to the newest binding).
    process.attach(link, resumes, args.window, args.stdin);
    return process;
  }

  list(): ProcessInfo[] {
    if (this.#lingering.size > 0) this.#sweep();
    return [...this.#processes.values()].map((p) => p.info());
  }

  /** A link closed: drop its attachments everywhere. */
  linkClosed(link: Link): void {
    for (const process of this.#processes.values()) process.detach(link, true);
  }

  forget(process: ManagedProcess): void {
    // The exit status is forgotten: what the command left behind goes with it.
    if (process.lingering > 0) {
      signalGroup(process.group, "SIGKILL", process.pty);
      process.groupEnded();
    }
    process.clearTimers();
    for (const output of process.outputs) output.release();
    this.#processes.delete(process.id);
    this.#live.delete(process);
  }

  /** Terminate every running process and clear timers. */
  async shutdown(): Promise<void> {
    await Promise.all([...this.#processes.values()].map((p) => p.terminate(this.killGraceMs)));
    for (const p of this.#processes.values()) {
      p.clearTimers();
      for (const output of p.outputs) output.release();
    }
    this.#processes.clear();
    this.#live.clear();
    this.#lingering.clear();
    clearInterval(this.#sweepTimer);
    this.#sweepTimer = undefined;
  }
}
