// The control API's JSON answers, checked and turned into the embedded controller's types (ISO dates become
// `Date`s, base64 output becomes bytes). A malformed answer fails its call with `BAD_RESPONSE`.
import { Buffer } from "node:buffer";
import { ControlApiError } from "./_client_errors.ts";
import type { DaemonInfo } from "./_connection.ts";
import type { ExecResult } from "./options.ts";
import type { ProcessInfo, ProcessStatus } from "./process.ts";
import type { FileEntry, FileStat, FileType } from "./files.ts";

type Json = Record<string, unknown>;

function bad(what: string, value: unknown): ControlApiError {
  return new ControlApiError(
    "BAD_RESPONSE",
    `The control API sent a malformed ${what}: ${JSON.stringify(value)?.slice(0, 200)}`,
  );
}

/** The value as an object, or a `BAD_RESPONSE` error naming `what`. */
export function object(what: string, value: unknown): Json {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw bad(what, value);
  return value as Json;
}

/** The value as an array, or a `BAD_RESPONSE` error naming `what`. */
export function array(what: string, value: unknown): unknown[] {
  if (!Array.isArray(value)) throw bad(what, value);
  return value;
}

function field<T>(what: string, o: Json, key: string, check: (v: unknown) => v is T): T {
  const value = o[key];
  if (!check(value)) throw bad(`${what} (field '${key}')`, o);
  return value;
}

const isString = (v: unknown): v is string => typeof v === "string";
const isNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
const isBool = (v: unknown): v is boolean => typeof v === "boolean";
const isSignal = (v: unknown): v is string | null => v === null || typeof v === "string";
const isCommand = (v: unknown): v is string | string[] =>
  typeof v === "string" || (Array.isArray(v) && v.every((x) => typeof x === "string"));

function date(what: string, value: unknown): Date {
  const d = typeof value === "string" || typeof value === "number" ? new Date(value) : null;
  if (!d || Number.isNaN(d.getTime())) throw bad(what, value);
  return d;
}

function optionalDate(what: string, value: unknown): Date | null {
  return value === null || value === undefined ? null : date(what, value);
}

/** A `DaemonInfo` from the API (`connectedAt` ISO). */
export function daemonInfo(value: unknown): DaemonInfo {
  const o = object("daemon", value);
  const labels = object("daemon labels", o.labels ?? {});
  for (const v of Object.values(labels)) if (typeof v !== "string") throw bad("daemon labels", o);
  return {
    id: field("daemon", o, "id", isString),
    labels: { ...(labels as Record<string, string>) },
    hostname: field("daemon", o, "hostname", isString),
    platform: field("daemon", o, "platform", isString),
    arch: field("daemon", o, "arch", isString),
    version: field("daemon", o, "version", isString),
    pid: field("daemon", o, "pid", isNumber),
    connectedAt: date("daemon connectedAt", o.connectedAt),
    remoteAddress: isString(o.remoteAddress) ? o.remoteAddress : "",
    identity: isString(o.identity) ? o.identity : "",
  };
}

/** A `ProcessInfo` from the API (`startedAt` ISO). */
export function processInfo(value: unknown): ProcessInfo {
  const o = object("process", value);
  const state = o.state;
  if (state !== "running" && state !== "exited") throw bad("process state", o);
  const exitCode = o.exitCode ?? null;
  if (exitCode !== null && !isNumber(exitCode)) throw bad("process exitCode", o);
  return {
    id: field("process", o, "id", isString),
    pid: field("process", o, "pid", isNumber),
    command: field("process", o, "command", isCommand),
    startedAt: date("process startedAt", o.startedAt),
    state,
    exitCode,
    signal: field("process", { signal: o.signal ?? null }, "signal", isSignal),
    pty: o.pty === true,
    attached: isNumber(o.attached) ? o.attached : 0,
    ...(isNumber(o.lingering) ? { lingering: o.lingering } : {}),
  };
}

/** A process status (`{ state, exitCode, signal, timedOut }`); null while it still runs. */
export function processStatus(value: unknown): ProcessStatus | null {
  const o = object("process status", value);
  if (o.state === "running") return null;
  if (o.state !== undefined && o.state !== "exited") throw bad("process status", o);
  const status: ProcessStatus = {
    exitCode: field("process status", o, "exitCode", isNumber),
    signal: field("process status", { signal: o.signal ?? null }, "signal", isSignal) as
      | Deno.Signal
      | null,
    timedOut: o.timedOut === true,
  };
  if (Array.isArray(o.truncated) && o.truncated.every(isBool)) status.truncated = o.truncated;
  return status;
}

function decodeOutput(what: string, value: unknown, encoding: unknown): Uint8Array {
  if (typeof value !== "string") throw bad(what, value);
  if (encoding === "base64") {
    if (value.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) {
      throw bad(`${what} (base64)`, value.slice(0, 40));
    }
    const buffer = Buffer.from(value, "base64");
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  }
  return new TextEncoder().encode(value);
}

const decoder = new TextDecoder();

/** An exec result from the API (output as UTF-8 or base64, per its `encoding`). */
export function execResult(value: unknown): ExecResult {
  const o = object("exec result", value);
  const stdoutBytes = decodeOutput("exec stdout", o.stdout, o.encoding);
  const stderrBytes = decodeOutput("exec stderr", o.stderr, o.encoding);
  const truncated = object("exec truncated", o.truncated ?? { stdout: false, stderr: false });
  return {
    stdout: decoder.decode(stdoutBytes),
    stderr: decoder.decode(stderrBytes),
    stdoutBytes,
    stderrBytes,
    exitCode: field("exec result", o, "exitCode", isNumber),
    signal: field("exec result", { signal: o.signal ?? null }, "signal", isSignal) as
      | Deno.Signal
      | null,
    durationMs: isNumber(o.durationMs) ? o.durationMs : 0,
    truncated: { stdout: truncated.stdout === true, stderr: truncated.stderr === true },
  };
}

const FILE_TYPES: readonly string[] = ["file", "directory", "symlink", "other"];
const isFileType = (v: unknown): v is FileType => typeof v === "string" && FILE_TYPES.includes(v);
const isOwner = (v: unknown): v is number | null => v === null || isNumber(v);

/** A `FileStat` from the API (`mtime` ISO or null). */
export function fileStat(value: unknown): FileStat {
  const o = object("file stat", value);
  return {
    type: field("file stat", o, "type", isFileType),
    size: field("file stat", o, "size", isNumber),
    mode: field("file stat", o, "mode", isNumber),
    mtime: optionalDate("file stat mtime", o.mtime),
    uid: field("file stat", { uid: o.uid ?? null }, "uid", isOwner),
    gid: field("file stat", { gid: o.gid ?? null }, "gid", isOwner),
  };
}

/** A `FileEntry` from the API. */
export function fileEntry(value: unknown): FileEntry {
  const o = object("file entry", value);
  return {
    path: field("file entry", o, "path", isString),
    type: field("file entry", o, "type", isFileType),
    size: field("file entry", o, "size", isNumber),
    mode: field("file entry", o, "mode", isNumber),
    mtime: optionalDate("file entry mtime", o.mtime),
    ...(isString(o.target) ? { target: o.target } : {}),
  };
}

/** Bytes as base64 (exec's binary stdin). */
export function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}
