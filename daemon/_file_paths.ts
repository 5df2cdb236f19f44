/**
 * Where the daemon's file operations may act, and how a requested path becomes a descriptor: each operation
 * resolves its path once, to a descriptor beneath the root (`openBeneath`: no symlink is followed, no `..`
 * escapes), and acts on that descriptor or relative to its parent directory's descriptor from then on. A path
 * swapped for a symlink after the check cannot redirect the operation, because there is no later check.
 *
 * Without a root (an unconfined daemon) paths are opened the ordinary way, symlinks followed.
 *
 * @module
 */

import { isAbsolute, relative, resolve, sep } from "node:path";
import { AT, closeFd, FsError, fstatAt, mkdirAt, O, openAt, openBeneath } from "./ffi/fs.ts";
import { type Policy, PolicyError } from "./policy/mod.ts";
import { DaemonRequestError } from "./process_table.ts";

/** Names of transfers' temporary files and trees: hidden from `list`, refused as a path component. */
export const TEMP_NAME: RegExp = /^\..*\.sandd-[0-9a-f]{8}\.(?:part|old)$/;

/** A temporary name beside `name` for a transfer in progress. */
export function tempName(name: string, kind: "part" | "old"): string {
  const random = crypto.randomUUID().slice(0, 8);
  return `.${name.slice(0, 120)}.sandd-${random}.${kind}`;
}

/** A path resolved to components below the base directory. */
export interface Resolved {
  /** Components below the base (`[]` is the base itself). */
  parts: string[];
}

/** A directory descriptor and one name in it (the last component of a path). */
export interface Entry {
  /** The parent directory, owned by the holder (close it). */
  dirFd: number;
  /** The last component. */
  name: string;
}

/** Confinement of file operations to a root directory (or none), opening paths as descriptors. */
export class FilePaths {
  /** The real path of the root, or `"/"` when unconfined. */
  readonly base: string;
  /** Whether operations are confined beneath a root. */
  readonly confined: boolean;
  readonly #lexicalRoot: string | undefined;
  readonly #policy: Policy | undefined;
  readonly #refusal: PolicyError | undefined;

  constructor(root: string | undefined, policy: Policy | undefined) {
    this.#policy = policy;
    const roots = [root, policy?.options.root].filter((r): r is string => r !== undefined).map((
      r,
    ) => resolve(r));
    let chosen: string | undefined;
    let refusal: PolicyError | undefined;
    if (roots.length > 0) {
      const reals = roots.map((r) => {
        try {
          return Deno.realPathSync(r);
        } catch {
          return r;
        }
      });
      // Both a root and a policy root: the inner one, if one lies inside the other; else nothing passes both.
      chosen = reals.reduce((a, b) => (isInside(a, b) ? b : isInside(b, a) ? a : ""));
      if (chosen === "") {
        refusal = new PolicyError(
          `The daemon's root '${root}' and its policy's root '${policy?.options.root}' do not overlap`,
          { rule: "root" },
        );
      }
      this.#lexicalRoot = roots[reals.indexOf(chosen)] ?? roots[0];
    }
    const runAs = policy?.options.runAs;
    if (runAs !== undefined && chosen === undefined && !policy?.options.noFiles) {
      refusal = new PolicyError(
        `File operations are refused: children run as '${runAs}' (--run-as) but file operations run as the ` +
          `daemon's own user; confine them with --root DIR, or disable them with --no-files`,
        { rule: "runAs" },
      );
    }
    this.#refusal = refusal;
    this.confined = chosen !== undefined && chosen !== "";
    this.base = this.confined ? chosen! : "/";
  }

  /**
   * Check a requested path and resolve it lexically to components below the base. Nothing is opened.
   *
   * @throws {PolicyError} When file operations are refused, the path escapes the root or names a temporary
   *   file of a transfer in progress.
   */
  resolve(requested: string): Resolved {
    if (typeof requested !== "string" || requested === "" || requested.includes("\0")) {
      throw new DaemonRequestError(
        "EINVAL",
        `Path must be a non-empty string without NUL: ${JSON.stringify(requested)}`,
        { path: requested },
      );
    }
    this.#policy?.checkFiles();
    if (this.#refusal) throw this.#refusal;
    let target: string;
    let rel: string;
    if (this.confined) {
      const lexical = this.#lexicalRoot ?? this.base;
      target = isAbsolute(requested) ? resolve(requested) : resolve(this.base, requested);
      if (isInside(this.base, target)) rel = relative(this.base, target);
      else if (isInside(lexical, target)) rel = relative(lexical, target);
      else {
        throw new PolicyError(
          `Path '${requested}' is outside the root directory '${lexical}'`,
          { rule: "root" },
        );
      }
    } else {
      target = resolve(requested);
      rel = relative("/", target);
    }
    const parts = rel === "" ? [] : rel.split(sep);
    if (parts.some((part) => TEMP_NAME.test(part))) {
      throw new PolicyError(
        `Path '${requested}' names the temporary file of a transfer in progress`,
        { rule: "root" },
      );
    }
    return { parts };
  }

  /**
   * Open the resolved path with `flags`. Confined: beneath the root, no symlink followed. Unconfined: the
   * ordinary way.
   */
  open(resolved: Resolved, flags: number, mode = 0): number {
    if (!this.confined) {
      return openAt(AT.FDCWD, "/" + resolved.parts.join("/"), flags, mode);
    }
    const rootFd = openAt(AT.FDCWD, this.base, O.RDONLY | O.DIRECTORY);
    try {
      return openBeneath(rootFd, resolved.parts.join("/"), flags, mode);
    } finally {
      closeFd(rootFd);
    }
  }

  /** Open a resolved path's parent directory; `mkdirs` creates missing parents (mode 0o777 before umask). */
  entry(resolved: Resolved, mkdirs = false): Entry {
    const parts = resolved.parts;
    if (parts.length === 0) {
      throw new PolicyError("The operation cannot act on the root directory itself", {
        rule: "root",
      });
    }
    const parent = { parts: parts.slice(0, -1) };
    const dirFd = mkdirs
      ? this.makeDirectories(parent, 0o777)
      : this.open(parent, O.RDONLY | O.DIRECTORY);
    return { dirFd, name: parts[parts.length - 1]! };
  }

  /**
   * Create every missing directory of a resolved path (each `mkdirat` relative to the one before, none
   * followed when confined) and return a descriptor of the last one.
   */
  makeDirectories(resolved: Resolved, mode: number, created?: (fd: number) => void): number {
    let current = this.open({ parts: [] }, O.RDONLY | O.DIRECTORY);
    try {
      for (const part of resolved.parts) {
        let made = false;
        try {
          mkdirAt(current, part, mode);
          made = true;
        } catch (error) {
          if (!(error instanceof FsError) || error.code !== "EEXIST") throw error;
        }
        let next: number;
        try {
          next = openAt(current, part, O.RDONLY | O.DIRECTORY | (this.confined ? O.NOFOLLOW : 0));
        } catch (error) {
          // O_DIRECTORY | O_NOFOLLOW on a symlink says ENOTDIR: report the symlink (a policy refusal).
          if (
            this.confined && error instanceof FsError && error.code === "ENOTDIR" &&
            lstatAtOrNull(current, part)?.kind === "symlink"
          ) {
            throw new FsError("openat", 40, part);
          }
          throw error;
        }
        closeFd(current);
        current = next;
        if (made) created?.(current);
      }
      const result = current;
      current = -1;
      return result;
    } finally {
      closeFd(current);
    }
  }
}

/** The status of `name` in `dirFd`, or `null` if there is none. */
export function lstatAtOrNull(dirFd: number, name: string): ReturnType<typeof fstatAt> | null {
  try {
    return fstatAt(dirFd, name);
  } catch (error) {
    if (error instanceof FsError && error.code === "ENOENT") return null;
    throw error;
  }
}

function isInside(parent: string, child: string): boolean {
  if (parent === child) return true;
  const rel = relative(parent, child);
  return rel !== "" && rel !== ".." && !rel.startsWith(".." + sep) && !isAbsolute(rel);
}

const DESCRIPTIONS: Record<string, string> = {
  ENOENT: "No such file or directory",
  EACCES: "Permission denied",
  EPERM: "Operation not permitted",
  EEXIST: "File exists",
  EISDIR: "Is a directory",
  ENOTDIR: "Not a directory",
  ENOTEMPTY: "Directory not empty",
  ENOSPC: "No space left on device",
  EDQUOT: "Disk quota exceeded",
  EROFS: "Read-only file system",
  ENAMETOOLONG: "File name too long",
  EMFILE: "Too many open files",
  ENFILE: "Too many open files in system",
  EIO: "Input/output error",
  EBUSY: "Device or resource busy",
  EXDEV: "Invalid cross-device link",
  ETXTBSY: "Text file busy",
  EFBIG: "File too large",
  EINVAL: "Invalid argument",
};

/**
 * The wire error for whatever a file operation threw, naming the path the controller asked for. Under a root,
 * `ELOOP` (a symlink on the way) and `EXDEV` (an escape) are policy refusals.
 */
export function fileError(
  error: unknown,
  path: string,
  verb: string,
  confined: boolean,
): DaemonRequestError {
  if (error instanceof DaemonRequestError) return error;
  if (error instanceof PolicyError) {
    return new DaemonRequestError("POLICY", error.message, { rule: error.rule, path });
  }
  if (error instanceof FsError) {
    if (confined && error.code === "ELOOP") {
      return new DaemonRequestError(
        "POLICY",
        `Cannot ${verb} '${path}': it goes through a symlink, which is not followed beneath the root directory`,
        { rule: "root", path },
      );
    }
    if (confined && error.code === "EXDEV" && error.syscall.startsWith("open")) {
      return new DaemonRequestError(
        "POLICY",
        `Cannot ${verb} '${path}': it leads outside the root directory`,
        { rule: "root", path },
      );
    }
    const text = DESCRIPTIONS[error.code] ?? error.message;
    return new DaemonRequestError(error.code, `Cannot ${verb} '${path}': ${text}`, { path });
  }
  const raw = (error as { code?: unknown })?.code;
  let code = typeof raw === "string" && /^[A-Z][A-Z0-9_]{1,63}$/.test(raw) ? raw : undefined;
  if (error instanceof TypeError || error instanceof RangeError) code ??= "EINVAL";
  code ??= "EIO";
  const message = String((error as Error)?.message ?? error).replace(/ \(os error \d+\).*$/s, "");
  return new DaemonRequestError(code, `Cannot ${verb} '${path}': ${message}`, { path });
}
