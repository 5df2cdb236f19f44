// Copyright 2026 the SandD authors. MIT license.
/**
 * What every way of starting a child shares (pipe children, `Deno.Command` children, pseudo-terminals): the argv
 * of a command, the lookup of a program, the login shell, and the child that reports a failed start as a shell
 * would (exit 127 or 126 with the shell's message).
 *
 * ## The PATH rule (POSIX platforms)
 *
 * A program whose name contains `/` is used as given (relative to the child's working directory). A bare name is
 * searched in the child's `PATH`, entry by entry, left to right; the first regular file the daemon may execute
 * wins. `PATH` unset means `/usr/local/bin:/usr/bin:/bin`; `PATH=""` means nowhere. **An empty entry (`::`, or a
 * leading or trailing `:`) is skipped: it does not mean the working directory**, unlike historical `execvp`
 * (write `.` to search it on purpose). A relative entry such as `.` or `bin` is taken relative to the child's
 * working directory. When nothing is found the result is `ENOENT`, or `EACCES` when a candidate existed but was
 * not executable.
 *
 * Windows keeps its own loader's rule (`pty/_windows.ts`: the working directory first, then `PATH` with
 * `PATHEXT`, as `cmd.exe` does; empty entries skipped there too); `Deno.Command` children resolve through Deno.
 *
 * @module
 */

import type { ChildHandle } from "../process_table.ts";
import { ACCESS, errnoMessage, OS } from "./constants.ts";
import { LOGIN_SHELL_COMMAND } from "@sandd/protocol/constants";
import { acquireLibc, errno, type Libc, releaseLibc } from "./libc.ts";
import { cString, offHeap } from "./_c_memory.ts";

const IS_WINDOWS = Deno.build.os === "windows";
const IS_LINUX = Deno.build.os === "linux";
/** `statx`'s mask bit for the file type and mode, and where `stx_mode` sits in its result. */
const STATX_TYPE_MODE = 0x3;
const STATX_MODE_OFFSET = 28;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
/**
 * One buffer for the C string of every path a lookup probes, and one for `statx`'s result: the calls are
 * synchronous, so reusing them is safe, and a lookup (one probe per `PATH` entry, 11 on some machines) then
 * allocates nothing off the heap.
 */
const probePath = offHeap(4096);
const probeStat = offHeap(256);
/** `stx_mode` of the last `statx`, in native byte order. */
const probeMode = new Uint16Array(probeStat.buffer, STATX_MODE_OFFSET, 1);
const encoder = new TextEncoder();
/** The search path when the child's `PATH` is unset. */
export const DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin";

/** The `command` that asks for the worker's login shell (one definition, in `protocol/constants.ts`). */
export { LOGIN_SHELL_COMMAND };

/**
 * The argv a command runs as: a string through the shell (`/bin/sh -c`, or `cmd.exe /C` on Windows), an array
 * directly.
 *
 * @example Build argv
 * ```ts
 * import { commandArgv } from "./spawn.ts";
 *
 * console.log(commandArgv("echo hi")); // ["/bin/sh", "-c", "echo hi"] on Linux and macOS
 * console.log(commandArgv(["ls", "-l"])); // ["ls", "-l"]
 * ```
 *
 * @param command A shell command line or an argv.
 * @returns The argv to start.
 */
export function commandArgv(command: string | string[]): string[] {
  if (typeof command !== "string") return command;
  return IS_WINDOWS ? ["cmd.exe", "/C", command] : ["/bin/sh", "-c", command];
}

/** `path` joined to `dir` with one `/`. */
function join(dir: string, path: string): string {
  return dir.endsWith("/") ? dir + path : `${dir}/${path}`;
}

/**
 * Where a path relative to the child's working directory is, seen from the daemon.
 *
 * @param path A path.
 * @param cwd The child's working directory (undefined: the daemon's).
 * @returns An absolute path, or `path` itself when it is absolute or there is no `cwd`.
 */
function fromCwd(path: string, cwd: string | undefined): string {
  return cwd === undefined || path.startsWith("/") ? path : join(cwd, path);
}

/** Run `use` with libc held (loading it costs milliseconds when nothing else holds it: hold it once per lookup). */
function withLibc<T>(use: (libc: Libc) => T): T {
  const libc = acquireLibc();
  try {
    return use(libc);
  } finally {
    releaseLibc();
  }
}

/** `path` as a C string, in the shared {@linkcode probePath} buffer when it fits (valid until the next call). */
function probeString(path: string): Uint8Array<ArrayBuffer> {
  if (path.length * 3 + 1 > probePath.length) return cString(path);
  const { written } = encoder.encodeInto(path, probePath);
  probePath[written] = 0;
  return probePath.subarray(0, written + 1);
}

/** errno of `access(path, X_OK)` for the daemon's user: 0 when allowed. */
function accessError(libc: Libc, path: string | Uint8Array<ArrayBuffer>): number {
  const text = typeof path === "string" ? probeString(path) : path;
  return libc.access(text, ACCESS.X_OK) === 0 ? 0 : errno();
}

/** ENOENT for a path that is missing (or under a non-directory), else EACCES. */
function missingOrDenied(code: number): number {
  return code === OS.errno.ENOENT || code === OS.errno.ENOTDIR ? OS.errno.ENOENT : OS.errno.EACCES;
}

/**
 * errno of `path` as a program: 0 for a regular file the daemon may execute, else `ENOENT` (missing) or `EACCES`
 * (a directory, not executable, or not reachable). On Linux one `statx` (the type) and, for a regular file, one
 * `access` (the permission, ACLs included); elsewhere `access` and a stat.
 */
function probe(libc: Libc, path: string): number {
  const text = probeString(path);
  if (IS_LINUX && libc.statx !== null) {
    const { AT_FDCWD } = OS.at;
    if (libc.statx(AT_FDCWD, text, 0, STATX_TYPE_MODE, probeStat) !== 0) {
      return missingOrDenied(errno());
    }
    if ((probeMode[0]! & S_IFMT) !== S_IFREG) return OS.errno.EACCES;
    const code = accessError(libc, text);
    return code === 0 ? 0 : missingOrDenied(code);
  }
  const code = accessError(libc, text);
  if (code !== 0) return missingOrDenied(code);
  try {
    return Deno.statSync(path).isFile ? 0 : OS.errno.EACCES;
  } catch {
    return OS.errno.ENOENT;
  }
}

/**
 * The candidate paths of a program under the PATH rule (see the module documentation), without probing them.
 *
 * @example Candidates
 * ```ts
 * import { programCandidates } from "./spawn.ts";
 *
 * console.log(programCandidates("ls", "/usr/bin::bin", "/home/u")); // ["/usr/bin/ls", "/home/u/bin/ls"]
 * ```
 *
 * @param program A program name or path.
 * @param pathVariable The child's `PATH` (undefined: unset).
 * @param cwd The child's working directory (undefined: the daemon's).
 * @returns The paths to try, in order, as seen from the daemon.
 */
export function programCandidates(
  program: string,
  pathVariable: string | undefined,
  cwd?: string,
): string[] {
  if (program.includes("/")) return [fromCwd(program, cwd)];
  const candidates: string[] = [];
  for (const entry of (pathVariable ?? DEFAULT_PATH).split(":")) {
    if (entry !== "") candidates.push(join(fromCwd(entry, cwd), program));
  }
  return candidates;
}

/** The outcome of {@linkcode findProgram}: a path, or why there is none. */
export type ProgramLookup = { path: string } | { errno: number };

/**
 * Find a program under the PATH rule (see the module documentation).
 *
 * @example Find sh
 * ```ts
 * import { findProgram } from "./spawn.ts";
 *
 * console.log(findProgram("sh", "/usr/bin:/bin")); // { path: "/usr/bin/sh" } (or /bin/sh)
 * ```
 *
 * @param program A program name or path.
 * @param pathVariable The child's `PATH` (undefined: unset).
 * @param cwd The child's working directory (undefined: the daemon's).
 * @returns The path to execute (as seen from the daemon), or the errno (`ENOENT`, `EACCES`).
 */
export function findProgram(
  program: string,
  pathVariable: string | undefined,
  cwd?: string,
): ProgramLookup {
  return withLibc((libc) => {
    let failure = OS.errno.ENOENT;
    for (const candidate of programCandidates(program, pathVariable, cwd)) {
      const code = probe(libc, candidate);
      if (code === 0) return { path: candidate };
      if (code === OS.errno.EACCES) failure = code;
    }
    return { errno: failure };
  });
}

/**
 * Why a working directory cannot be entered: 0 when it can, else an errno value (`ENOENT`, `ENOTDIR`, `EACCES`).
 *
 * @example Check a directory
 * ```ts
 * import { cwdProblem } from "./spawn.ts";
 *
 * console.log(cwdProblem("/no/such/dir")); // 2 (ENOENT)
 * ```
 *
 * @param cwd The directory.
 * @returns 0 or the errno value.
 */
export function cwdProblem(cwd: string): number {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(cwd);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return OS.errno.ENOENT;
    if (error instanceof Deno.errors.NotADirectory) return OS.errno.ENOTDIR;
    return OS.errno.EACCES;
  }
  if (!info.isDirectory) return OS.errno.ENOTDIR;
  // Entering a directory needs search (x) permission.
  return IS_WINDOWS ? 0 : withLibc((libc) => accessError(libc, cwd));
}

/** A start that failed, as a shell reports it. */
export interface SpawnFailure {
  /** 127 (not found) or 126 (found but not executable, or another failure). */
  exitCode: 126 | 127;
  /** The shell-like message, one line, without the line end. */
  message: string;
}

/**
 * How a shell reports a start that failed with `code`: a working directory that cannot be entered is
 * `sandd: cd: DIR: <reason>` (127 when missing, else 126), a missing program `sandd: NAME: command not found`
 * (127), anything else `sandd: NAME: <reason>` (126).
 *
 * @example A missing program
 * ```ts
 * import { OS } from "./constants.ts";
 * import { spawnFailure } from "./spawn.ts";
 *
 * console.log(spawnFailure("nope", undefined, OS.errno.ENOENT));
 * // { exitCode: 127, message: "sandd: nope: command not found" }
 * ```
 *
 * @param program The program as the request named it.
 * @param cwd The requested working directory, if any (checked first).
 * @param code The errno value of the failure.
 * @returns The exit code and message.
 */
export function spawnFailure(program: string, cwd: string | undefined, code: number): SpawnFailure {
  const cwdCode = cwd === undefined ? 0 : cwdProblem(cwd);
  if (cwdCode !== 0) {
    return {
      exitCode: cwdCode === OS.errno.ENOENT ? 127 : 126,
      message: `sandd: cd: ${cwd}: ${errnoMessage(cwdCode)}`,
    };
  }
  if (code === OS.errno.ENOENT) {
    return { exitCode: 127, message: `sandd: ${program}: command not found` };
  }
  return { exitCode: 126, message: `sandd: ${program}: ${errnoMessage(code)}` };
}

/**
 * A child that never ran: its message, then its exit code. A pipe child (`terminal: false`) has an empty stdout
 * and the message on stderr ending in `\n`; a terminal child has one output ending in `\r\n`.
 *
 * @example Report a failure
 * ```ts
 * import { failedChild } from "./spawn.ts";
 *
 * const child = failedChild({ exitCode: 127, message: "sandd: nope: command not found" }, false);
 * console.log(await child.status); // { exitCode: 127, signal: null }
 * ```
 *
 * @param failure The exit code and message.
 * @param terminal Whether the child would have run on a terminal.
 * @returns The handle for the process table.
 */
export function failedChild(failure: SpawnFailure, terminal: boolean): ChildHandle {
  let sent = false;
  const message = () =>
    Promise.resolve(
      sent
        ? null
        : (sent = true, new TextEncoder().encode(failure.message + (terminal ? "\r\n" : "\n"))),
    );
  return {
    pid: 0,
    outputs: terminal ? [message] : [() => Promise.resolve(null), message],
    kill: () => {},
    status: Promise.resolve({ exitCode: failure.exitCode, signal: null }),
    dispose: () => Promise.resolve(),
  };
}

/**
 * The worker's login shell as an argv: `$SHELL -l` when `SHELL` is an absolute path to an executable, else
 * `bash -l`, else `sh -l` found through `PATH` (else `/bin/sh -l`). On Windows: `%COMSPEC%`, else `cmd.exe`.
 *
 * @example Resolve the login shell
 * ```ts
 * import { loginShellArgv } from "./spawn.ts";
 *
 * console.log(loginShellArgv({ SHELL: "/bin/sh" })); // ["/bin/sh", "-l"]
 * ```
 *
 * @param env The child's environment.
 * @param cwd The child's working directory (for relative `PATH` entries).
 * @returns The argv.
 */
export function loginShellArgv(env: Record<string, string>, cwd?: string): string[] {
  if (IS_WINDOWS) return [env.COMSPEC || env.ComSpec || "cmd.exe"];
  const shell = env.SHELL;
  return withLibc((libc) => {
    if (shell && shell.startsWith("/") && probe(libc, shell) === 0) return [shell, "-l"];
    for (const name of ["bash", "sh"]) {
      const found = findProgram(name, env.PATH, cwd);
      if ("path" in found) return [found.path, "-l"];
    }
    return ["/bin/sh", "-l"];
  });
}
