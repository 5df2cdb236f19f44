// Copyright 2026 the SandD authors. MIT license.
/**
 * The one `posix_spawn` call of the daemon, for pipe children and pseudo-terminal children alike: a new process
 * group (or session), an empty signal mask, every signal at its default disposition (Deno ignores SIGPIPE, and
 * ignored dispositions survive exec), stdio from file actions, every other descriptor closed
 * (`addclosefrom_np` on glibc >= 2.34, `POSIX_SPAWN_CLOEXEC_DEFAULT` on macOS) and an optional working directory.
 *
 * @module
 */

import { check, type Libc } from "./libc.ts";
import { OS } from "./constants.ts";
import { cString, cStringArrays, offHeap } from "./_c_memory.ts";

const IS_LINUX = Deno.build.os === "linux";
/** glibc's posix_spawnattr_t is 336 bytes and its file actions 80; macOS uses one pointer each. */
const OPAQUE_SIZE = 512;
/** glibc's sigset_t is 128 bytes; macOS uses 4. */
const SIGSET_SIZE = 256;

/** What a child's descriptor `fd` is: a copy of a parent descriptor, or a path opened in the child. */
export type StdioAction = { fd: number; dup: number } | { fd: number; open: string; flags: number };

/** One spawn. */
export interface PosixSpawnRequest {
  /** The file to execute (a path: callers resolve bare names first). */
  path: string;
  /** The argument vector, `argv[0]` included. */
  argv: string[];
  /** The child's complete environment; undefined for the daemon's own. */
  env: Record<string, string> | undefined;
  /** The child's working directory; undefined for the daemon's. */
  cwd: string | undefined;
  /** Descriptors 0-2 (and any others) of the child, applied in order. */
  stdio: StdioAction[];
  /** A new session (`setsid`) rather than only a new process group. */
  session: boolean;
}

/**
 * The two attribute sets, made once per process and kept (plain memory on glibc, two small allocations on
 * macOS): they never change.
 */
let attributes: { group: Uint8Array<ArrayBuffer>; session: Uint8Array<ArrayBuffer> } | null = null;

function makeAttributes(libc: Libc, flag: number): Uint8Array<ArrayBuffer> {
  const { POSIX_SPAWN_SETSIGMASK, POSIX_SPAWN_SETSIGDEF, POSIX_SPAWN_CLOEXEC_DEFAULT } = OS.spawn;
  const attr = offHeap(OPAQUE_SIZE);
  const mask = offHeap(SIGSET_SIZE);
  const defaults = offHeap(SIGSET_SIZE);
  check(libc.posix_spawnattr_init(attr), "posix_spawnattr_init", true);
  libc.sigemptyset(mask);
  libc.sigfillset(defaults);
  // The process group id stays 0 after init: the child's own pid.
  const flags = flag | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_CLOEXEC_DEFAULT;
  check(libc.posix_spawnattr_setflags(attr, flags), "posix_spawnattr_setflags", true);
  check(libc.posix_spawnattr_setsigmask(attr, mask), "posix_spawnattr_setsigmask", true);
  check(libc.posix_spawnattr_setsigdefault(attr, defaults), "posix_spawnattr_setsigdefault", true);
  return attr;
}

/**
 * The file actions and the pid of a spawn, reused by every call (each call initialises and destroys the actions;
 * `posixSpawn` is synchronous, so calls never overlap).
 */
const fileActions = offHeap(OPAQUE_SIZE);
const spawnedPid = new Int32Array(1);

function attributesFor(libc: Libc, session: boolean): Uint8Array<ArrayBuffer> {
  attributes ??= {
    group: makeAttributes(libc, OS.spawn.POSIX_SPAWN_SETPGROUP),
    session: makeAttributes(libc, OS.spawn.POSIX_SPAWN_SETSID),
  };
  return session ? attributes.session : attributes.group;
}

/**
 * Start a child. Failures of `exec` itself (not found, not executable, a bad working directory) are returned as
 * an errno value, for the caller to report as a shell would; failures to set the spawn up throw.
 *
 * @param libc The loaded libc (held by the caller).
 * @param request What to start.
 * @returns The child's pid, or the errno value of a failed exec.
 */
export function posixSpawn(libc: Libc, request: PosixSpawnRequest): { pid: number } | {
  errno: number;
} {
  const attr = attributesFor(libc, request.session);
  // Without an explicit environment the child gets the daemon's own: glibc's `environ` as it is, which saves
  // copying and encoding it on every spawn (`Deno.env.set` updates it, so it is never stale).
  const environ = request.env === undefined && IS_LINUX && libc.environ !== null
    ? new Deno.UnsafePointerView(libc.environ).getPointer(0)
    : null;
  const env = environ === null ? request.env ?? Deno.env.toObject() : null;
  const actions = fileActions;
  check(libc.posix_spawn_file_actions_init(actions), "posix_spawn_file_actions_init", true);
  try {
    const keep: Uint8Array[] = [];
    for (const action of request.stdio) {
      if ("dup" in action) {
        check(
          libc.posix_spawn_file_actions_adddup2(actions, action.dup, action.fd),
          "posix_spawn_file_actions_adddup2",
          true,
        );
      } else {
        const path = cString(action.open);
        keep.push(path);
        check(
          libc.posix_spawn_file_actions_addopen(actions, action.fd, path, action.flags, 0),
          "posix_spawn_file_actions_addopen",
          true,
        );
      }
    }
    // Fds the daemon inherited without close-on-exec must not reach the child either (glibc >= 2.34).
    if (libc.posix_spawn_file_actions_addclosefrom_np !== null) {
      const first = Math.max(3, ...request.stdio.map((action) => action.fd + 1));
      check(
        libc.posix_spawn_file_actions_addclosefrom_np(actions, first),
        "posix_spawn_file_actions_addclosefrom_np",
        true,
      );
    }
    if (request.cwd !== undefined) {
      if (libc.posix_spawn_file_actions_addchdir_np === null) {
        throw Object.assign(
          new Error("posix_spawn_file_actions_addchdir_np is missing (glibc < 2.29)"),
          { code: "ENOSYS" },
        );
      }
      const cwd = cString(request.cwd);
      keep.push(cwd);
      check(
        libc.posix_spawn_file_actions_addchdir_np(actions, cwd),
        "posix_spawn_file_actions_addchdir_np",
        true,
      );
    }
    const envList = env === null
      ? []
      : Object.entries(env).map(([key, value]) => `${key}=${value}`);
    const { arrays, strings } = cStringArrays([request.argv, envList]);
    const pid = spawnedPid;
    const path = cString(request.path);
    const result = environ === null
      ? libc.posix_spawn(pid, path, actions, attr, arrays[0]!, arrays[1]!)
      : libc.posix_spawn_environ(pid, path, actions, attr, arrays[0]!, environ);
    void strings;
    void keep;
    return result === 0 ? { pid: pid[0]! } : { errno: result };
  } finally {
    libc.posix_spawn_file_actions_destroy(actions);
  }
}
