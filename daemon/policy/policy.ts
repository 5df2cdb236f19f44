/**
 * The daemon's own policy: what it lets a controller do on this machine, whatever the controller asks.
 *
 * A {@linkcode Policy} is built from {@linkcode PolicyOptions} (flags, a JSON policy file, or both merged) and is
 * consulted by the daemon before every action: {@linkcode Policy.checkSpawn} before a spawn (command, shells,
 * environment, PTY and process counts, timeout), {@linkcode Policy.childEnv} to build the child's environment,
 * {@linkcode Policy.wrapArgv} to apply resource limits and a user switch, and {@linkcode Policy.confine} for
 * file paths. Refusals are {@linkcode PolicyError}s naming the rule.
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import { checkArgv, CommandCheck } from "./_command_check.ts";
import { ENV_DENY, EnvRule } from "./_env.ts";
import { Glob } from "./_glob.ts";
import { buildWrapper } from "./_wrapper.ts";
import {
  describe,
  mergeOptions,
  messageOf,
  type PolicyOptions,
  validateOptions,
} from "./options.ts";
import { PolicyError } from "./policy_error.ts";

/** The fields of a spawn request the policy checks (a structural subset of the protocol's `spawn` arguments). */
export interface SpawnRequest {
  /** An argv array, or a string for `sh -c`. */
  command: string | string[];
  /** Variables the request adds to the child's environment. */
  env?: Record<string, string>;
  /** Working directory of the child. */
  cwd?: string;
  /** Present for a terminal session. */
  pty?: unknown;
  /** Requested timeout in milliseconds. */
  timeoutMs?: number;
}

/** What the daemon runs now, and what kind of spawn this is, for {@linkcode Policy.checkSpawn}. */
export interface SpawnState {
  /** Processes running now (a command whose process group outlives it counts until the group ends). */
  running: number;
  /**
   * How many of `running` are commands that exited while jobs they started still run (named in the refusal).
   *
   * @default {0}
   */
  lingering?: number;
  /** Terminal sessions open now (only read for a terminal request). */
  sessions: number;
  /**
   * The request asks for the user's interactive login shell.
   *
   * @default {false}
   */
  loginShell?: boolean;
}

/**
 * The daemon's worker-side policy.
 *
 * @example Allow a few programs, deny one, strip secrets
 * ```ts
 * import { Policy, PolicyError } from "./mod.ts";
 * import { deepEqual, throws } from "node:assert/strict";
 *
 * const policy = new Policy({ allow: ["ls", "git status*"], envStrip: ["AWS_*"], envSet: { LANG: "C" } });
 * policy.checkCommand(["ls", "-l"]);
 * policy.checkCommand("git status --short");
 * throws(() => policy.checkCommand("ls; id"), PolicyError);
 * throws(() => policy.checkCommand(["rm", "-rf", "/"]), PolicyError);
 * deepEqual(policy.childEnv({ AWS_SECRET: "x", HOME: "/root" }), { HOME: "/root", LANG: "C" });
 * ```
 */
export class Policy {
  /** The validated options, frozen (arrays and `envSet` copied). `root` is absolute. */
  readonly options: Readonly<PolicyOptions>;
  #commands: CommandCheck;
  #envStrip: Glob[];
  #env: EnvRule | undefined;
  #wrapper: string[] | undefined;

  /**
   * Make a policy.
   *
   * @param options What to allow; validated here.
   * @throws {TypeError} If a field has the wrong type or is unknown; the message names the field.
   * @throws {RangeError} If a field is out of range (or a pattern is malformed); the message names the field.
   */
  constructor(options: PolicyOptions = {}) {
    this.options = validateOptions(options, "options");
    this.#commands = new CommandCheck(this.options);
    const foldCase = Deno.build.os === "windows";
    this.#envStrip = (this.options.envStrip ?? []).map((glob) => new Glob(glob, { foldCase }));
    const { envAllow, allow } = this.options;
    this.#env = envAllow !== undefined
      ? new EnvRule(envAllow, [])
      : allow?.length
      ? new EnvRule(undefined, ENV_DENY)
      : undefined;
  }

  /**
   * Read a policy from a JSON file holding an object with the fields of {@linkcode PolicyOptions}. A relative
   * `root` is resolved against the file's directory.
   *
   * @example Load a policy file
   * ```ts
   * import { Policy } from "./mod.ts";
   * import { equal } from "node:assert/strict";
   *
   * const path = await Deno.makeTempFile({ suffix: ".json" });
   * try {
   *   await Deno.writeTextFile(path, JSON.stringify({ deny: ["rm"], maxTimeoutMs: 60000 }));
   *   const policy = await Policy.fromFile(path);
   *   equal(policy.options.maxTimeoutMs, 60000);
   * } finally {
   *   await Deno.remove(path);
   * }
   * ```
   *
   * @param path The policy file.
   * @returns The policy.
   * @throws {Error} If the file cannot be read; the message names the file.
   * @throws {SyntaxError} If the file is not valid JSON; the message names the file.
   * @throws {TypeError} If a field is unknown or of the wrong type; the message names the file and the field.
   * @throws {RangeError} If a field is out of range; the message names the file and the field.
   */
  static async fromFile(path: string): Promise<Policy> {
    if (typeof path !== "string" || path === "") {
      throw new TypeError(`Policy file path must be a non-empty string, got ${String(path)}`);
    }
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      throw new Error(`Cannot read policy file '${path}': ${messageOf(error)}`, { cause: error });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new SyntaxError(`Policy file '${path}' is not valid JSON: ${messageOf(error)}`, {
        cause: error,
      });
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new TypeError(`Policy file '${path}' must hold a JSON object, got ${describe(parsed)}`);
    }
    const options = { ...parsed } as Record<string, unknown>;
    if (typeof options.root === "string" && options.root !== "") {
      options.root = resolve(dirname(resolve(path)), options.root);
    }
    try {
      return new Policy(options as PolicyOptions);
    } catch (error) {
      if (error instanceof RangeError) {
        throw new RangeError(`Policy file '${path}': ${error.message}`, { cause: error });
      }
      if (error instanceof TypeError) {
        throw new TypeError(`Policy file '${path}': ${error.message}`, { cause: error });
      }
      throw error;
    }
  }

  /**
   * Merge policy options from a file with options from command-line flags: each field set in `flags` replaces
   * the file's field entirely (arrays and `envSet` are not concatenated).
   *
   * @example Flags override the file
   * ```ts
   * import { Policy } from "./mod.ts";
   * import { deepEqual } from "node:assert/strict";
   *
   * const merged = Policy.merge({ deny: ["rm"], maxProcesses: 4 }, { maxProcesses: 8 });
   * deepEqual(merged, { deny: ["rm"], maxProcesses: 8 });
   * ```
   *
   * @param file Options read from a policy file.
   * @param flags Options given as flags.
   * @returns The merged options (not validated; pass them to the constructor).
   */
  static merge(file: PolicyOptions, flags: PolicyOptions): PolicyOptions {
    return mergeOptions(file, flags);
  }

  /**
   * Check a command before it is spawned.
   *
   * An argv array (run without a shell): the program part of each pattern is matched against `argv[0]` as given
   * (unless it has a `..` component), against its absolute normalised form when it contains a `/` (resolved
   * against `cwd`; `/usr/bin/../../tmp/x` is matched as `/tmp/x`), and against its basename (`/usr/bin/rm`
   * matches `rm` and `/usr/bin/*`); the rest of a pattern containing a space is matched against the rest of the
   * command line (`rm -rf *` matches `["/bin/rm", "-rf", "/a"]`).
   *
   * A string (run by the daemon through `sh -c`):
   * - with `noShell`, it is refused (rule `"noShell"`);
   * - when an allow list is present, it must not contain `;`, `&`, `|`, `$`, a backquote, `(`, `)`, `<`, `>`,
   *   a newline or `\` (rule `"shellMeta"`), even inside quotes, and its first word (quotes removed) must not be
   *   an assignment or contain glob or brace characters (rule `"shellMeta"`); that first word is then matched
   *   like `argv[0]` (a first word with a `..` component is refused with rule `"allow"`: only an argv array can
   *   be run by the normalised path that was checked), and the whole string (words joined by one space) like a
   *   command line.
   *
   * Deny patterns are checked against every command the string would start: the first word of each command
   * after `;`, `&`, `|`, newline, `(`, `)`, inside `$(...)` and backquotes (also within double quotes), after
   * leading `NAME=value` assignments, redirections and reserved words (`!`, `if`, `then`, `do`, `{`, ...); every
   * later word of a wrapper program (`env`, `nice`, `sudo`, `xargs`, `find`, `timeout`, `exec`, `command`, ...)
   * is also treated as a possible command; the script of a shell started with `-c` (`sh -c '...'`, also in an
   * argv array) and the arguments of `eval` are parsed in turn. A command word the daemon cannot know before the
   * shell runs (it contains `$`, a command substitution, or glob/brace characters) is refused with rule
   * `"shellMeta"` whenever a deny list is present, since `X=rm; $X -rf /` would otherwise pass. A command too
   * large or nested to check in linear time is refused with rule `"shellMeta"`.
   *
   * With `noShell`, an argv array that starts a shell program anywhere a command can start (`sh`, `bash -s`,
   * `/bin/dash` reading stdin, `env bash`, `nice sh`, `busybox sh`, and `env -S` / `--split-string`) is refused
   * (rule `"noShell"`), with or without `-c`.
   *
   * Deny lists are a best-effort guard against accidents; they cannot catch every way a program can run
   * another (an interpreter such as `python -c`, a script file). The allow list is the security boundary:
   * keep shells, interpreters and wrapper programs out of it. Because a pattern without `/` also matches the
   * basename of a path, `allow: ["ls"]` allows any program file named `ls`, including one the controller
   * uploaded or reached through a `PATH` it set; to pin binaries, use full-path patterns (`/usr/bin/ls`),
   * force `PATH` with `envSet`, and confine files with `root` or `noFiles`.
   *
   * @example Allow list and deny list
   * ```ts
   * import { Policy, PolicyError } from "./mod.ts";
   * import { throws } from "node:assert/strict";
   *
   * const policy = new Policy({ allow: ["ls", "cat"], deny: ["cat /etc/*"] });
   * policy.checkCommand("ls -la /tmp");
   * throws(() => policy.checkCommand("ls $(id)"), PolicyError);
   * throws(() => policy.checkCommand(["cat", "/etc/shadow"]), PolicyError);
   * ```
   *
   * @param command An argv array, or a string for `sh -c`.
   * @param cwd The directory a relative program path is resolved against.
   * @throws {TypeError} If the command is empty, not a string or string array, or contains a NUL character.
   * @throws {PolicyError} If the policy refuses the command; `rule` says which rule.
   */
  checkCommand(command: string | string[], cwd?: string): void {
    this.#commands.check(command, cwd);
  }

  /**
   * Check a spawn request, the one entry point the daemon calls before every spawn: the command (see
   * {@linkcode Policy.checkCommand}; an interactive login shell counts as a shell and is refused with `noShell`
   * or an allow list), the request's `env` names (see {@linkcode PolicyOptions.envAllow}), PTY and process
   * counts, and the timeout (see {@linkcode Policy.checkTimeout}).
   *
   * @example Settle a request
   * ```ts
   * import { Policy, PolicyError } from "./mod.ts";
   * import { deepEqual, throws } from "node:assert/strict";
   *
   * const policy = new Policy({ allow: ["/usr/bin/*"], defaultTimeoutMs: 1000 });
   * const state = { running: 0, sessions: 0 };
   * deepEqual(policy.checkSpawn({ command: ["/usr/bin/ls"] }, state), {
   *   command: ["/usr/bin/ls"],
   *   timeoutMs: 1000,
   * });
   * throws(() => policy.checkSpawn({ command: ["/usr/bin/../../tmp/x"] }, state), PolicyError);
   * throws(() => policy.checkSpawn({ command: ["/usr/bin/ls"], env: { LD_PRELOAD: "x.so" } }, state), PolicyError);
   * ```
   *
   * @param request The spawn request.
   * @param state What runs now, and whether the request is for a login shell.
   * @returns The request to spawn: the settled timeout, and for an argv array whose program path climbs with
   * `..`, that path normalised (so what runs is what was checked).
   * @throws {TypeError} If the command is malformed.
   * @throws {RangeError} If the timeout is out of range.
   * @throws {PolicyError} If the policy refuses the request; `rule` says which rule.
   */
  checkSpawn<T extends SpawnRequest>(request: T, state: SpawnState): T {
    let command = request.command;
    if (state.loginShell) {
      // An interactive login shell can run anything: no allow list or shell ban can hold inside it.
      if (this.options.noShell) {
        throw new PolicyError("Interactive shells are disabled by the daemon's policy (noShell)", {
          rule: "noShell",
        });
      }
      if (this.options.allow?.length) {
        throw new PolicyError("An interactive login shell is not on the daemon's allow list", {
          rule: "allow",
        });
      }
    } else {
      // The child's PATH: the request's, a forced one, or the daemon's (all are tried for the noShell check).
      command = this.#commands.check(request.command, request.cwd, [
        request.env?.PATH,
        this.options.envSet?.PATH,
        Deno.env.get("PATH"),
      ]);
    }
    this.checkEnv(request.env);
    if (request.pty !== undefined) {
      this.checkPty();
      this.checkSessionCount(state.sessions);
    }
    this.checkProcessCount(state.running, state.lingering);
    const timeoutMs = this.checkTimeout(request.timeoutMs);
    if (timeoutMs === request.timeoutMs && command === request.command) return request;
    return {
      ...request,
      command,
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    };
  }

  /**
   * Check the names a request's `env` option sets: with `envAllow`, each must match one of its globs; else, with
   * an allow list, none may match {@linkcode ENV_DENY} (`LD_PRELOAD`, `BASH_ENV`, `PATH`, `GIT_*`, ...).
   *
   * @example Refuse a preload
   * ```ts
   * import { Policy, PolicyError } from "./mod.ts";
   * import { throws } from "node:assert/strict";
   *
   * const policy = new Policy({ allow: ["ls"] });
   * policy.checkEnv({ LANG: "C" });
   * throws(() => policy.checkEnv({ LD_PRELOAD: "/tmp/x.so" }), PolicyError);
   * ```
   *
   * @param env The request's `env` option.
   * @throws {PolicyError} With rule `"env"`, naming the variable.
   */
  checkEnv(env: Record<string, string> | undefined): void {
    this.#env?.check(env);
  }

  /**
   * Settle the timeout of a command: the requested one, or the default when none is requested.
   *
   * @example Default and maximum
   * ```ts
   * import { Policy, PolicyError } from "./mod.ts";
   * import { equal, throws } from "node:assert/strict";
   *
   * const policy = new Policy({ defaultTimeoutMs: 30000, maxTimeoutMs: 60000 });
   * equal(policy.checkTimeout(undefined), 30000);
   * equal(policy.checkTimeout(1000), 1000);
   * throws(() => policy.checkTimeout(120000), PolicyError);
   * ```
   *
   * @param timeoutMs The requested timeout in milliseconds, or `undefined` for none.
   * @returns The timeout to apply: the requested one, else `defaultTimeoutMs`, else `maxTimeoutMs`, else
   * `undefined` (no timeout).
   * @throws {TypeError} If `timeoutMs` is neither a number nor `undefined`.
   * @throws {RangeError} If `timeoutMs` is not a positive finite number.
   * @throws {PolicyError} With rule `"maxTimeoutMs"` if `timeoutMs` exceeds `maxTimeoutMs`.
   */
  checkTimeout(timeoutMs: number | undefined): number | undefined {
    const { defaultTimeoutMs, maxTimeoutMs } = this.options;
    if (timeoutMs === undefined) return defaultTimeoutMs ?? maxTimeoutMs;
    if (typeof timeoutMs !== "number") {
      throw new TypeError(`Timeout must be a number of milliseconds, got ${describe(timeoutMs)}`);
    }
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new RangeError(
        `Timeout must be a positive finite number of milliseconds, got ${timeoutMs}`,
      );
    }
    if (maxTimeoutMs !== undefined && timeoutMs > maxTimeoutMs) {
      throw new PolicyError(`Timeout ${timeoutMs} ms exceeds the maximum of ${maxTimeoutMs} ms`, {
        rule: "maxTimeoutMs",
      });
    }
    return timeoutMs;
  }

  /**
   * Build a child's environment: `requested` without the variables matching `envStrip`, then `envSet` on top.
   *
   * @example Strip and set
   * ```ts
   * import { Policy } from "./mod.ts";
   * import { deepEqual } from "node:assert/strict";
   *
   * const policy = new Policy({ envStrip: ["*_TOKEN", "AWS_*"], envSet: { PATH: "/usr/bin:/bin" } });
   * deepEqual(
   *   policy.childEnv({ GITHUB_TOKEN: "x", AWS_REGION: "eu", PATH: "/opt", TERM: "xterm" }),
   *   { PATH: "/usr/bin:/bin", TERM: "xterm" },
   * );
   * ```
   *
   * @param requested The environment the child would get otherwise.
   * @returns A new object; `requested` is not modified.
   * @throws {TypeError} If `requested` is not an object of strings.
   */
  childEnv(requested: Record<string, string>): Record<string, string> {
    if (typeof requested !== "object" || requested === null || Array.isArray(requested)) {
      throw new TypeError(`Environment must be an object of strings, got ${describe(requested)}`);
    }
    const entries: [string, string][] = [];
    for (const [name, value] of Object.entries(requested)) {
      if (typeof value !== "string") {
        throw new TypeError(
          `Environment variable '${name}' must be a string, got ${describe(value)}`,
        );
      }
      if (!this.#envStrip.some((pattern) => pattern.matches(name))) entries.push([name, value]);
    }
    const result: Record<string, string> = Object.fromEntries(entries);
    for (const [name, value] of Object.entries(this.options.envSet ?? {})) {
      Object.defineProperty(result, name, {
        value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return result;
  }

  /**
   * Wrap an argv so the child runs under the policy's resource limits and user.
   *
   * Tools, looked up once per policy in the daemon's `PATH` and used by absolute path:
   * - `cpuSeconds` / `memoryBytes`: `prlimit --cpu=N --as=BYTES --` (util-linux) sets `RLIMIT_CPU` and
   *   `RLIMIT_AS` (soft and hard). Where `prlimit` is missing (macOS, BusyBox systems), `sh -c 'ulimit -t N &&
   *   ulimit -v KIB && exec "$@"'` does the same (`memoryBytes` rounded up to KiB); if a limit cannot be set the
   *   wrapper exits non-zero without running the command. Where neither exists (Windows), a
   *   {@linkcode PolicyError} with rule `"cpuSeconds"` or `"memoryBytes"` is thrown: limits are never silently
   *   dropped.
   * - `runAs`: `setpriv --reuid=UID --regid=GID --init-groups --` (util-linux; `--clear-groups` for a uid with
   *   no passwd entry). The user is resolved from `/etc/passwd`, else with `id -u NAME` / `id -g NAME`. If the
   *   daemon already runs as that uid, nothing is wrapped. If the daemon is not root, or `setpriv` is missing,
   *   or the user is unknown, a {@linkcode PolicyError} with rule `"runAs"` is thrown: the daemon never falls
   *   back to running children as itself.
   *
   * Limits wrap the user switch (`prlimit ... -- setpriv ... -- argv`), so root sets the hard limits and the
   * child cannot raise them. The wrapped program is found through the child's `PATH` (`execvp`). Every wrapper
   * replaces itself with the next (`exec`), so the spawned pid is the command's own pid and signals reach it
   * directly; a missing program exits with code 127 and the wrapper's message on stderr.
   *
   * @example No limits, no wrapping
   * ```ts
   * import { Policy } from "./mod.ts";
   * import { deepEqual, equal } from "node:assert/strict";
   *
   * deepEqual(new Policy().wrapArgv(["ls", "-l"]), ["ls", "-l"]);
   * const wrapped = new Policy({ cpuSeconds: 10 }).wrapArgv(["ls", "-l"]);
   * deepEqual(wrapped.slice(-2), ["ls", "-l"]);
   * equal(wrapped.length > 2, true);
   * ```
   *
   * @param argv The command to run.
   * @returns The argv to spawn instead (the same values when nothing applies).
   * @throws {TypeError} If `argv` is not a non-empty array of strings.
   * @throws {PolicyError} If a limit or the user switch cannot be applied on this system.
   */
  wrapArgv(argv: string[]): string[] {
    checkArgv(argv);
    this.#wrapper ??= buildWrapper(this.options);
    return [...this.#wrapper, ...argv];
  }

  /**
   * Refuse file operations if `noFiles` is set.
   *
   * @example Refuse files
   * ```ts
   * import { Policy, PolicyError } from "./mod.ts";
   * import { throws } from "node:assert/strict";
   *
   * throws(() => new Policy({ noFiles: true }).checkFiles(), PolicyError);
   * ```
   *
   * @throws {PolicyError} With rule `"noFiles"`.
   */
  checkFiles(): void {
    if (this.options.noFiles) {
      throw new PolicyError("File operations are disabled by the daemon's policy", {
        rule: "noFiles",
      });
    }
  }

  /**
   * Refuse PTY sessions if `noPty` is set.
   *
   * @example Refuse PTYs
   * ```ts
   * import { Policy, PolicyError } from "./mod.ts";
   * import { throws } from "node:assert/strict";
   *
   * throws(() => new Policy({ noPty: true }).checkPty(), PolicyError);
   * ```
   *
   * @throws {PolicyError} With rule `"noPty"`.
   */
  checkPty(): void {
    if (this.options.noPty) {
      throw new PolicyError("PTY sessions are disabled by the daemon's policy", { rule: "noPty" });
    }
  }

  /**
   * Check that one more process may start.
   *
   * @example At the limit
   * ```ts
   * import { Policy, PolicyError } from "./mod.ts";
   * import { throws } from "node:assert/strict";
   *
   * const policy = new Policy({ maxProcesses: 2 });
   * policy.checkProcessCount(1);
   * throws(() => policy.checkProcessCount(2), PolicyError);
   * ```
   *
   * @param running How many processes run now.
   * @param lingering How many of them are commands that exited while their background jobs still run.
   * @throws {PolicyError} With rule `"maxProcesses"` if `running` already reached `maxProcesses`.
   */
  checkProcessCount(running: number, lingering = 0): void {
    const max = this.options.maxProcesses;
    if (max !== undefined && running >= max) {
      const detail = lingering > 0
        ? ` (${lingering} of them exited commands whose background jobs still run: lingering)`
        : "";
      throw new PolicyError(
        `Too many processes: ${running} running${detail}, the maximum is ${max}`,
        { rule: "maxProcesses" },
      );
    }
  }

  /**
   * Check that one more session may open.
   *
   * @example At the limit
   * ```ts
   * import { Policy, PolicyError } from "./mod.ts";
   * import { throws } from "node:assert/strict";
   *
   * throws(() => new Policy({ maxSessions: 1 }).checkSessionCount(1), PolicyError);
   * ```
   *
   * @param open How many sessions are open now.
   * @throws {PolicyError} With rule `"maxSessions"` if `open` already reached `maxSessions`.
   */
  checkSessionCount(open: number): void {
    const max = this.options.maxSessions;
    if (max !== undefined && open >= max) {
      throw new PolicyError(`Too many sessions: ${open} open, the maximum is ${max}`, {
        rule: "maxSessions",
      });
    }
  }
}
