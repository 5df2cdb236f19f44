/**
 * Audit trail: one record per security-relevant action (a command run, a shell opened, a file moved, a daemon
 * connected), delivered in order to one or more sinks such as a JSON-lines file or LogTape.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";

/**
 * One audited action.
 *
 * @example A command record
 * ```ts
 * import type { AuditRecord } from "./audit.ts";
 * const record: AuditRecord = {
 *   time: new Date().toISOString(),
 *   daemon: "worker-1",
 *   identity: "alice",
 *   action: "exec",
 *   command: ["ls", "-l"],
 *   exitCode: 0,
 *   durationMs: 3,
 *   ok: true,
 * };
 * console.assert(record.ok);
 * ```
 */
export interface AuditRecord {
  /** When the action happened (ISO 8601). */
  time: string;
  /** The daemon the action ran on. */
  daemon: string;
  /** Who asked for it (the authenticated subject). */
  identity?: string;
  /** What was done. */
  action:
    | "exec"
    | "spawn"
    | "shell"
    | "attach"
    | "attachShell"
    | "processes"
    | "signal"
    | "resize"
    | "exit"
    | "upload"
    | "download"
    | "uploadDir"
    | "downloadDir"
    | "fs.stat"
    | "fs.list"
    | "fs.mkdir"
    | "fs.remove"
    | "fs.move"
    | "fs.watch"
    | "connect"
    | "disconnect"
    | (string & Record<never, never>);
  /** The command line: a shell string or an argument vector. */
  command?: string | string[];
  /** The file or directory involved (for `fs.move`, the source). */
  path?: string;
  /** Where `fs.move` moved `path` to. */
  to?: string;
  /** The daemon's process id, for actions on a process. */
  process?: string;
  /** The OS process id on the worker, once started. */
  pid?: number;
  /** Exit code of a process; `null` if it was killed by a signal. */
  exitCode?: number | null;
  /** Bytes transferred. */
  bytes?: number;
  /** How long the action took, in milliseconds. */
  durationMs?: number;
  /** Whether the action succeeded. */
  ok: boolean;
  /** Why it failed. */
  error?: string;
}

/** What {@linkcode AuditLog.prototype.write} takes: a record whose `time` defaults to now. */
export type AuditInput = Omit<AuditRecord, "time"> & { time?: string };

/**
 * Receives audit records. May be asynchronous; {@linkcode AuditLog} delivers records to each sink one at a
 * time, in order.
 */
export type AuditSink = (record: AuditRecord) => void | Promise<void>;

/**
 * Options for {@linkcode fileAuditSink}.
 *
 * @example Durable audit lines
 * ```ts
 * import type { FileAuditSinkOptions } from "./audit.ts";
 * const options: FileAuditSinkOptions = { sync: true };
 * console.assert(options.sync);
 * ```
 */
export interface FileAuditSinkOptions {
  /**
   * Call `fdatasync` after each batch of lines, so a written record survives a crash of the machine.
   *
   * @default {false}
   */
  sync?: boolean;
  /**
   * Permissions of the file if it is created.
   *
   * @default {0o600}
   */
  mode?: number;
}

/**
 * Marks a sink that keeps the order of its calls itself (and batches them), so {@linkcode AuditLog} need not
 * wait for one record's promise before handing it the next.
 */
const SELF_ORDERED = Symbol("sandd.audit.selfOrdered");

/**
 * A sink that appends one JSON line per record to a file, in order. Each returned promise resolves once its
 * line has been written to the file (and synced, with `sync: true`). Records that arrive while a write is in
 * progress are written together in the next write. Disposing waits for pending lines, then closes the file.
 *
 * The file is opened now (created if missing, mode `0o600`), so a bad path fails here.
 *
 * @param path The file to append to.
 * @param options Durability and permissions.
 * @returns The sink; dispose it to close the file.
 * @throws {TypeError} If `path` is not a non-empty string.
 * @throws {Deno.errors.NotFound} If the directory does not exist (and other open errors).
 *
 * @example Append records to a file
 * ```ts
 * import { AuditLog, fileAuditSink } from "./audit.ts";
 * const path = await Deno.makeTempFile({ suffix: ".jsonl" });
 * {
 *   await using log = new AuditLog([fileAuditSink(path)]);
 *   log.write({ daemon: "worker-1", action: "connect", ok: true });
 * }
 * const line = JSON.parse((await Deno.readTextFile(path)).trim());
 * console.assert(line.action === "connect");
 * await Deno.remove(path);
 * ```
 */
export function fileAuditSink(
  path: string,
  options: FileAuditSinkOptions = {},
): AuditSink & AsyncDisposable {
  if (typeof path !== "string" || path.length === 0) {
    throw new TypeError(`Audit file path must be a non-empty string, got ${JSON.stringify(path)}`);
  }
  const sync = options.sync ?? false;
  if (typeof sync !== "boolean") {
    throw new TypeError(`Option 'sync' must be a boolean, got ${typeof sync}`);
  }
  const mode = options.mode ?? 0o600;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
    throw new RangeError(`Option 'mode' must be a file mode between 0 and 0o7777, got ${mode}`);
  }
  const file = Deno.openSync(path, { append: true, create: true, mode });
  const encoder = new TextEncoder();
  let queue: { line: string; resolve: () => void; reject: (error: unknown) => void }[] = [];
  let writing: Promise<void> | undefined;
  let closed = false;

  async function drain(): Promise<void> {
    while (queue.length > 0) {
      const batch = queue;
      queue = [];
      try {
        await writeAll(file, encoder.encode(batch.map((item) => item.line).join("")));
        if (sync) await file.syncData();
        for (const item of batch) item.resolve();
      } catch (error) {
        for (const item of batch) item.reject(error);
      }
    }
    writing = undefined;
  }

  function sink(record: AuditRecord): Promise<void> {
    if (closed) return Promise.reject(new Error(`Audit file '${path}' is closed`));
    let line: string;
    try {
      line = `${JSON.stringify(record)}\n`;
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<void>((resolve, reject) => {
      queue.push({ line, resolve, reject });
      writing ??= drain();
    });
  }

  return Object.assign(sink, {
    [SELF_ORDERED]: true,
    async [Symbol.asyncDispose](): Promise<void> {
      if (closed) return;
      closed = true;
      await writing;
      file.close();
    },
  });
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
}

/**
 * A sink that logs each record through LogTape: successes at `info`, failures at `warning`, with every field
 * of the record as a property (so a JSON formatter keeps them all). Configure LogTape to route the category.
 *
 * @param category The LogTape category to log under.
 * @default {["sandd", "audit"]}
 * @returns The sink.
 * @throws {TypeError} If `category` is not a non-empty array of strings.
 *
 * @example Log audit records
 * ```ts
 * import { AuditLog, logtapeAuditSink } from "./audit.ts";
 * const log = new AuditLog([logtapeAuditSink()]);
 * log.write({ daemon: "worker-1", action: "exec", command: "uptime", exitCode: 0, ok: true });
 * await log.flush();
 * ```
 */
export function logtapeAuditSink(category: string[] = ["sandd", "audit"]): AuditSink {
  if (
    !Array.isArray(category) || category.length === 0 ||
    category.some((part) => typeof part !== "string" || part.length === 0)
  ) {
    throw new TypeError(
      `Audit category must be a non-empty array of non-empty strings, got ${
        JSON.stringify(category)
      }`,
    );
  }
  const logger = getLogger([...category]);
  return (record) => {
    if (record.ok) logger.info("{action} on {daemon}", { ...record });
    else logger.warn("{action} on {daemon} failed: {error}", { ...record });
  };
}

/**
 * Options for {@linkcode AuditLog}.
 *
 * @example Count sink failures
 * ```ts
 * import type { AuditLogOptions } from "./audit.ts";
 * let failures = 0;
 * const options: AuditLogOptions = { onError: () => failures++ };
 * console.assert(typeof options.onError === "function");
 * ```
 */
export interface AuditLogOptions {
  /**
   * Called when a sink throws or rejects, with the error and the record it failed on. Errors thrown by this
   * callback are ignored.
   *
   * @default {Logs the failure with console.error}
   */
  onError?: (error: unknown, record: AuditRecord) => void;
}

interface SinkSlot {
  sink: AuditSink;
  tail: Promise<void> | undefined;
  selfOrdered: boolean;
}

/**
 * Writes audit records to several sinks. Writing never blocks and never throws because of a sink: each sink
 * gets the records in the order they were written, one at a time (the file sink
 * orders and batches its own writes, so it gets them at once), and its failures go to `onError`. The log
 * owns its sinks: disposing it waits for pending records, then disposes every sink that is `AsyncDisposable`.
 *
 * @example Audit a command to a file and to LogTape
 * ```ts
 * import { AuditLog, fileAuditSink, logtapeAuditSink } from "./audit.ts";
 * const path = await Deno.makeTempFile();
 * {
 *   await using log = new AuditLog([fileAuditSink(path), logtapeAuditSink()]);
 *   log.write({ daemon: "worker-1", identity: "alice", action: "exec", command: ["id"], ok: true });
 * }
 * console.assert((await Deno.readTextFile(path)).includes('"identity":"alice"'));
 * await Deno.remove(path);
 * ```
 */
export class AuditLog implements AsyncDisposable {
  #slots: SinkSlot[];
  #onError: (error: unknown, record: AuditRecord) => void;
  #closed = false;

  /**
   * Make an audit log.
   *
   * @param sinks Where records go.
   * @param options Error reporting.
   * @throws {TypeError} If `sinks` is not an array of functions.
   */
  constructor(sinks: AuditSink[], options: AuditLogOptions = {}) {
    if (!Array.isArray(sinks)) {
      throw new TypeError(`Audit sinks must be an array, got ${typeof sinks}`);
    }
    sinks.forEach((sink, index) => {
      if (typeof sink !== "function") {
        throw new TypeError(`Audit sink at index ${index} must be a function, got ${typeof sink}`);
      }
    });
    const onError = options.onError ?? defaultOnError;
    if (typeof onError !== "function") {
      throw new TypeError(`Option 'onError' must be a function, got ${typeof onError}`);
    }
    this.#onError = onError;
    this.#slots = sinks.map((sink) => ({
      sink,
      tail: undefined,
      selfOrdered: (sink as { [SELF_ORDERED]?: boolean })[SELF_ORDERED] === true,
    }));
  }

  /**
   * Record an action. Returns at once; synchronous sinks have already run, asynchronous ones are queued.
   * After the log is closed, the record is reported to `onError` and dropped.
   *
   * @param input The record; `time` defaults to now.
   * @throws {TypeError} If `daemon` or `action` is not a non-empty string, or `ok` is not a boolean.
   */
  write(input: AuditInput): void {
    if (typeof input !== "object" || input === null) {
      throw new TypeError(`Audit record must be an object, got ${String(input)}`);
    }
    if (typeof input.daemon !== "string") {
      throw new TypeError(`Audit record 'daemon' must be a string, got ${typeof input.daemon}`);
    }
    if (typeof input.action !== "string" || input.action.length === 0) {
      throw new TypeError(
        `Audit record 'action' must be a non-empty string, got ${JSON.stringify(input.action)}`,
      );
    }
    if (typeof input.ok !== "boolean") {
      throw new TypeError(`Audit record 'ok' must be a boolean, got ${typeof input.ok}`);
    }
    if (input.time !== undefined && typeof input.time !== "string") {
      throw new TypeError(`Audit record 'time' must be a string, got ${typeof input.time}`);
    }
    // `time` first, so it leads each JSON line.
    const record = { time: "", ...input } as AuditRecord;
    record.time = input.time ?? new Date().toISOString();
    if (Array.isArray(record.command)) record.command = [...record.command];
    Object.freeze(record);
    if (this.#closed) {
      this.#report(new Error("Audit log is closed"), record);
      return;
    }
    for (const slot of this.#slots) this.#deliver(slot, record);
  }

  /**
   * Wait until every record written so far has been delivered to every sink (or failed).
   *
   * @returns A promise that resolves when nothing is pending. It never rejects.
   */
  async flush(): Promise<void> {
    // Tails never reject (failures are reported), and a slot's tail settles last among its deliveries.
    while (true) {
      const tails = this.#slots.map((slot) => slot.tail);
      await Promise.all(tails);
      if (this.#slots.every((slot, index) => slot.tail === tails[index])) return;
    }
  }

  /**
   * Stop accepting records, wait for pending ones, then dispose the sinks that are `AsyncDisposable`. Calling
   * it again does nothing.
   *
   * @returns A promise that resolves when the sinks are closed. It never rejects; failures go to `onError`.
   */
  async close(): Promise<void> {
    if (this.#closed) return await this.flush();
    this.#closed = true;
    await this.flush();
    for (const { sink } of this.#slots) {
      const dispose = (sink as Partial<AsyncDisposable>)[Symbol.asyncDispose];
      if (typeof dispose !== "function") continue;
      try {
        await dispose.call(sink);
      } catch (error) {
        this.#report(error, {
          time: new Date().toISOString(),
          daemon: "",
          action: "close",
          ok: false,
        });
      }
    }
  }

  /** Same as {@linkcode AuditLog.prototype.close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #deliver(slot: SinkSlot, record: AuditRecord): void {
    const report = (error: unknown) => this.#report(error, record);
    if (slot.tail !== undefined && !slot.selfOrdered) {
      // Wait for the previous record: the tail is always the newest delivery, which settles after all others.
      slot.tail = slot.tail.then(() => slot.sink(record)).then(undefined, report);
      return;
    }
    let result: void | PromiseLike<void>;
    try {
      result = slot.sink(record);
    } catch (error) {
      report(error);
      return;
    }
    // A self-ordered sink settles its records in order, so its newest promise is also the last to settle.
    if (isThenable(result)) slot.tail = Promise.resolve(result).then(undefined, report);
  }

  #report(error: unknown, record: AuditRecord): void {
    try {
      this.#onError(error, record);
    } catch {
      // A failing error reporter must not reach the caller either.
    }
  }
}

function isThenable(value: unknown): value is PromiseLike<void> {
  return typeof value === "object" && value !== null &&
    typeof (value as { then?: unknown }).then === "function";
}

function defaultOnError(error: unknown, record: AuditRecord): void {
  console.error(`Audit sink failed for '${record.action}' on '${record.daemon}':`, error);
}
