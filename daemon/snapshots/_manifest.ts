/**
 * The snapshot manifest: JSON lines, the first a header describing the snapshot, then one line per entry of the
 * tree (parents before their children, siblings sorted by name). A manifest is the only thing that names blobs;
 * it is written once, atomically, after every blob it names is on disk, and never changed.
 *
 * ```text
 * {"format":"sandd-snapshot/1","id":"…","createdAt":"…","message":"…","tags":[],"fileCount":1,…,"mode":493,"mtime":…}
 * {"path":"src","type":"dir","mode":493,"mtime":1764600000000}
 * {"path":"src/a.txt","type":"file","mode":420,"size":3,"mtime":1764600000000,"sha256":"…"}
 * {"path":"link","type":"symlink","target":"src/a.txt"}
 * ```
 *
 * Every manifest read is validated in full (an imported one comes from a controller): paths are relative, `/`
 * separated, without empty, `.` or `..` components, each parent listed as a directory before its children, no
 * path twice.
 *
 * @module
 */

import { DaemonRequestError } from "../process_table.ts";

/** The format tag of the header line. */
export const MANIFEST_FORMAT = "sandd-snapshot/1";

/** One entry of a snapshot. */
export type ManifestEntry =
  | { path: string; type: "dir"; mode: number; mtime: number }
  | { path: string; type: "file"; mode: number; size: number; mtime: number; sha256: string }
  | { path: string; type: "symlink"; target: string };

/** What describes a snapshot (the header line). */
export interface SnapshotHeader {
  /** The format tag. */
  format: typeof MANIFEST_FORMAT;
  /** The id. */
  id: string;
  /** ISO 8601 time of creation. */
  createdAt: string;
  /** The message. */
  message: string;
  /** The tags. */
  tags: string[];
  /** Regular files. */
  fileCount: number;
  /** Directories (not the top one). */
  dirCount: number;
  /** Symlinks. */
  symlinkCount: number;
  /** Sum of the file sizes. */
  totalSize: number;
  /** Permission bits of the top directory. */
  mode: number;
  /** Modification time of the top directory, ms since 1970. */
  mtime: number;
}

/** A whole manifest. */
export interface Manifest {
  /** The header. */
  header: SnapshotHeader;
  /** The entries. */
  entries: ManifestEntry[];
}

/** The info fields of a header (what the wire describes a snapshot with). */
export function info(header: SnapshotHeader): Record<string, unknown> {
  return {
    id: header.id,
    createdAt: header.createdAt,
    message: header.message,
    tags: header.tags,
    fileCount: header.fileCount,
    dirCount: header.dirCount,
    symlinkCount: header.symlinkCount,
    totalSize: header.totalSize,
  };
}

/** The manifest as bytes (JSON lines). */
export function serialize(manifest: Manifest): Uint8Array {
  const lines = [JSON.stringify(manifest.header)];
  for (const entry of manifest.entries) lines.push(JSON.stringify(entry));
  return new TextEncoder().encode(lines.join("\n") + "\n");
}

/** Counts and total size of `entries`. */
export function count(entries: ManifestEntry[]): {
  fileCount: number;
  dirCount: number;
  symlinkCount: number;
  totalSize: number;
} {
  let fileCount = 0, dirCount = 0, symlinkCount = 0, totalSize = 0;
  for (const entry of entries) {
    if (entry.type === "file") {
      fileCount++;
      totalSize += entry.size;
    } else if (entry.type === "dir") dirCount++;
    else symlinkCount++;
  }
  return { fileCount, dirCount, symlinkCount, totalSize };
}

function bad(what: string, detail: string): DaemonRequestError {
  return new DaemonRequestError("EINVAL", `Invalid snapshot manifest: ${what} ${detail}`);
}

const SHA256 = /^[0-9a-f]{64}$/;
const MAX_NAME = 4096;

/** Check a relative entry path; returns its components. */
export function pathParts(path: unknown, where: string): string[] {
  if (typeof path !== "string" || path === "" || path.length > MAX_NAME || path.includes("\0")) {
    throw bad(
      where,
      `has a path that is not a non-empty string without NUL: ${JSON.stringify(path)}`,
    );
  }
  const parts = path.split("/");
  if (parts.some((p) => p === "" || p === "." || p === "..")) {
    throw bad(where, `has a path with an empty, '.' or '..' component: ${JSON.stringify(path)}`);
  }
  return parts;
}

function int(value: unknown, min: number, max: number, what: string, where: string): number {
  if (!Number.isSafeInteger(value) || (value as number) < min || (value as number) > max) {
    throw bad(where, `has a ${what} that is not an integer from ${min} to ${max}: ${value}`);
  }
  return value as number;
}

function time(value: unknown, where: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || Math.abs(value) > 8.64e15) {
    throw bad(where, `has an mtime that is not a time in ms: ${value}`);
  }
  return value;
}

/** Validate one parsed entry line. */
export function checkEntry(value: unknown, where: string): ManifestEntry {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw bad(where, "is not an object");
  }
  const v = value as Record<string, unknown>;
  const path = v.path as string;
  pathParts(path, where);
  const keys = Object.keys(v).sort().join(",");
  switch (v.type) {
    case "dir":
      if (keys !== "mode,mtime,path,type") throw bad(where, `has fields ${keys}`);
      return {
        path,
        type: "dir",
        mode: int(v.mode, 0, 0o7777, "mode", where),
        mtime: time(v.mtime, where),
      };
    case "file":
      if (keys !== "mode,mtime,path,sha256,size,type") throw bad(where, `has fields ${keys}`);
      if (typeof v.sha256 !== "string" || !SHA256.test(v.sha256)) {
        throw bad(where, `has a sha256 that is not 64 lowercase hex digits`);
      }
      return {
        path,
        type: "file",
        mode: int(v.mode, 0, 0o7777, "mode", where),
        size: int(v.size, 0, Number.MAX_SAFE_INTEGER, "size", where),
        mtime: time(v.mtime, where),
        sha256: v.sha256,
      };
    case "symlink":
      if (keys !== "path,target,type") throw bad(where, `has fields ${keys}`);
      if (
        typeof v.target !== "string" || v.target === "" || v.target.length > MAX_NAME ||
        v.target.includes("\0")
      ) {
        throw bad(where, `has a symlink target that is not a non-empty string without NUL`);
      }
      return { path, type: "symlink", target: v.target };
    default:
      throw bad(where, `has an unknown type ${JSON.stringify(v.type)}`);
  }
}

/** Validate a header line. */
export function checkHeader(value: unknown): SnapshotHeader {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw bad("the header", "is not an object");
  }
  const v = value as Record<string, unknown>;
  if (v.format !== MANIFEST_FORMAT) {
    throw bad("the header", `has format ${JSON.stringify(v.format)}`);
  }
  if (typeof v.id !== "string" || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(v.id)) {
    throw bad("the header", `has a bad id ${JSON.stringify(v.id)}`);
  }
  if (typeof v.createdAt !== "string" || Number.isNaN(Date.parse(v.createdAt))) {
    throw bad("the header", `has a bad createdAt ${JSON.stringify(v.createdAt)}`);
  }
  if (typeof v.message !== "string" || v.message.length > 4096) {
    throw bad("the header", "has a message that is not a string of at most 4096 characters");
  }
  if (
    !Array.isArray(v.tags) || v.tags.length > 64 ||
    v.tags.some((t) => typeof t !== "string" || t === "" || t.length > 128)
  ) {
    throw bad("the header", "has tags that are not at most 64 strings of 1 to 128 characters");
  }
  const max = Number.MAX_SAFE_INTEGER;
  return {
    format: MANIFEST_FORMAT,
    id: v.id,
    createdAt: new Date(v.createdAt).toISOString(),
    message: v.message,
    tags: v.tags as string[],
    fileCount: int(v.fileCount, 0, max, "fileCount", "the header"),
    dirCount: int(v.dirCount, 0, max, "dirCount", "the header"),
    symlinkCount: int(v.symlinkCount, 0, max, "symlinkCount", "the header"),
    totalSize: int(v.totalSize, 0, max, "totalSize", "the header"),
    mode: int(v.mode, 0, 0o7777, "mode", "the header"),
    mtime: time(v.mtime, "the header"),
  };
}

/**
 * Parse and validate a whole manifest: every line, parents before children, no duplicates, and the header's
 * counts matching the entries.
 */
export function parse(bytes: Uint8Array): Manifest {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw bad("the file", "is not UTF-8");
  }
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  const json = (line: string, where: string): unknown => {
    try {
      return JSON.parse(line);
    } catch {
      throw bad(where, "is not JSON");
    }
  };
  if (lines.length === 0) throw bad("the file", "is empty");
  const header = checkHeader(json(lines[0]!, "the header"));
  const entries: ManifestEntry[] = [];
  const dirs = new Set<string>([""]);
  const seen = new Set<string>();
  for (let i = 1; i < lines.length; i++) {
    const where = `line ${i + 1}`;
    const entry = checkEntry(json(lines[i]!, where), where);
    if (seen.has(entry.path)) throw bad(where, `repeats the path ${JSON.stringify(entry.path)}`);
    seen.add(entry.path);
    const slash = entry.path.lastIndexOf("/");
    const parent = slash < 0 ? "" : entry.path.slice(0, slash);
    if (!dirs.has(parent)) {
      throw bad(
        where,
        `comes before its parent directory ${JSON.stringify(parent)} (or it is none)`,
      );
    }
    if (entry.type === "dir") dirs.add(entry.path);
    entries.push(entry);
  }
  const counts = count(entries);
  for (const [key, value] of Object.entries(counts)) {
    if (header[key as keyof typeof counts] !== value) {
      throw bad(
        "the header",
        `says ${key} ${header[key as keyof typeof counts]}, the entries ${value}`,
      );
    }
  }
  return { header, entries };
}
