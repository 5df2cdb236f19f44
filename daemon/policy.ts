/**
 * The daemon's own policy: what it lets a controller do on this machine, whatever the controller asks.
 *
 * A {@linkcode Policy} is built from {@linkcode PolicyOptions} (flags, a JSON policy file, or both merged) and is
 * consulted by the daemon before every action: {@linkcode Policy.checkCommand} before a spawn,
 * {@linkcode Policy.checkTimeout} to settle a timeout, {@linkcode Policy.childEnv} to build the child's
 * environment, {@linkcode Policy.wrapArgv} to apply resource limits and a user switch, and
 * {@linkcode Policy.confine} for every file path. Refusals are {@linkcode PolicyError}s naming the rule.
 *
 * @module
 */

import { basename, dirname, resolve } from "node:path";
import { confinePath } from "./_path_confine.ts";

/**
 * Options of a {@linkcode Policy}. Every field is optional; an empty object allows everything the daemon can do.
 *
 * Command patterns (`allow`, `deny`) are globs: `*` matches any run of characters (`/` and spaces included),
 * `?` one character, `[abc]`, `[a-z]`, `[!a-z]` (or `[^a-z]`) one character of a class; `\` makes the next
 * character literal. A pattern matches a whole name or line, never a part. See {@linkcode Policy.checkCommand}
 * for what patterns are matched against.
 */
export interface PolicyOptions {
  /**
   * Command patterns; if non-empty, only commands matching one of them run, and shell strings are limited to a
   * single simple command (see {@linkcode Policy.checkCommand}).
   *
   * @default {[]}
   */
  allow?: string[];
  /**
   * Command patterns refused even if allowed, checked against every command a shell string would start.
   *
   * @default {[]}
   */
  deny?: string[];
  /**
   * Refuse string commands (run through `sh -c`), and argv arrays that start a shell with `-c`; only plain argv
   * arrays run.
   *
   * @default {false}
   */
  noShell?: boolean;
  /**
   * Refuse interactive PTY sessions.
   *
   * @default {false}
   */
  noPty?: boolean;
  /**
   * Refuse file transfers (upload, download, listing).
   *
   * @default {false}
   */
  noFiles?: boolean;
  /**
   * Confine every file operation to this directory (see {@linkcode confinePath}). A relative path is resolved
   * against the current directory (against the policy file's directory in {@linkcode Policy.fromFile}).
   *
   * @default {undefined} (no confinement)
   */
  root?: string;
  /**
   * User name or numeric uid to run children as. Only meaningful when the daemon runs as root; see
   * {@linkcode Policy.wrapArgv}.
   *
   * @default {undefined} (children run as the daemon's user)
   */
  runAs?: string;
  /**
   * Environment variable names removed from every child environment; globs allowed, e.g. `"AWS_*"`.
   *
   * @default {[]}
   */
  envStrip?: string[];
  /**
   * Environment variables forced on every child, after stripping (so they win over `envStrip`).
   *
   * @default {{}}
   */
  envSet?: Record<string, string>;
  /**
   * Most processes (commands and sessions) running at once.
   *
   * @default {undefined} (no limit)
   */
  maxProcesses?: number;
  /**
   * Most interactive sessions open at once.
   *
   * @default {undefined} (no limit)
   */
  maxSessions?: number;
  /**
   * Timeout in milliseconds applied when a command asks for none.
   *
   * @default {undefined} (`maxTimeoutMs` if set, else no timeout)
   */
  defaultTimeoutMs?: number;
  /**
   * Largest timeout in milliseconds a command may ask for.
   *
   * @default {undefined} (no limit)
   */
  maxTimeoutMs?: number;
  /**
   * Most output bytes kept per process; enforced by the daemon core.
   *
   * @default {undefined} (the core's own default)
   */
  maxOutputBytes?: number;
  /**
   * CPU time limit per process in seconds (`RLIMIT_CPU`).
   *
   * @default {undefined} (no limit)
   */
  cpuSeconds?: number;
  /**
   * Address-space limit per process in bytes (`RLIMIT_AS`).
   *
   * @default {undefined} (no limit)
   */
  memoryBytes?: number;
}

/** Options of a {@linkcode PolicyError}. */
export interface PolicyErrorOptions extends ErrorOptions {
  /** The rule that refused, e.g. `"allow"`, `"deny:rm *"`, `"noShell"`, `"shellMeta"`, `"maxProcesses"`, `"root"`. */
  rule: string;
}

/**
 * The daemon's policy refused an action.
 *
 * @example Inspect a refusal
 * ```ts
 * import { Policy, PolicyError } from "./policy.ts";
 * import { equal } from "node:assert/strict";
 *
 * const policy = new Policy({ deny: ["rm"] });
 * try {
 *   policy.checkCommand("echo hi; rm -rf /");
 * } catch (error) {
 *   equal(error instanceof PolicyError && error.rule, "deny:rm");
 * }
 * ```
 */
export class PolicyError extends Error {
  /** Stable error code. */
  readonly code: "POLICY" = "POLICY";
  /** The rule that refused, e.g. `"allow"`, `"deny:rm *"`, `"noShell"`, `"shellMeta"`, `"maxProcesses"`, `"root"`. */
  readonly rule: string;
  /**
   * Make a policy error.
   *
   * @param message What was refused and why, with the refused value.
   * @param options The rule that refused, and standard error options (`cause`).
   */
  constructor(message: string, options: PolicyErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "PolicyError";
    this.rule = options.rule;
  }
}

/**
 * The daemon's worker-side policy.
 *
 * @example Allow a few programs, deny one, strip secrets
 * ```ts
 * import { Policy, PolicyError } from "./policy.ts";
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
  #allow: Matcher[];
  #deny: Matcher[];
  #envStrip: RegExp[];
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
    this.#allow = (this.options.allow ?? []).map(toMatcher);
    this.#deny = (this.options.deny ?? []).map(toMatcher);
    const envFlags = Deno.build.os === "windows" ? "i" : "";
    this.#envStrip = (this.options.envStrip ?? []).map((glob) => globToRegExp(glob, envFlags));
  }

  /**
   * Read a policy from a JSON file holding an object with the fields of {@linkcode PolicyOptions}. A relative
   * `root` is resolved against the file's directory.
   *
   * @example Load a policy file
   * ```ts
   * import { Policy } from "./policy.ts";
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
   * import { Policy } from "./policy.ts";
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
    const merged: Record<string, unknown> = {};
    for (const source of [file, flags]) {
      for (const [key, value] of Object.entries(source ?? {})) {
        if (value !== undefined) merged[key] = value;
      }
    }
    return merged as PolicyOptions;
  }

  /**
   * Check a command before it is spawned.
   *
   * An argv array (run without a shell): each non-spacing pattern is matched against `argv[0]` as given and
   * against its basename (`/usr/bin/rm` matches `rm` and `/usr/bin/*`); a pattern containing a space is matched
   * against the command line `argv.join(" ")`, with `argv[0]` as given and as its basename (`rm -rf *`).
   *
   * A string (run by the daemon through `sh -c`):
   * - with `noShell`, it is refused (rule `"noShell"`);
   * - when an allow list is present, it must not contain `;`, `&`, `|`, `$`, a backquote, `(`, `)`, `<`, `>`,
   *   a newline or `\` (rule `"shellMeta"`), even inside quotes, and its first word (quotes removed) must not be
   *   an assignment or contain glob or brace characters (rule `"shellMeta"`); that first word is then matched
   *   like `argv[0]`, and the whole string (words joined by one space) like a command line.
   *
   * Deny patterns are checked against every command the string would start: the first word of each command
   * after `;`, `&`, `|`, newline, `(`, `)`, inside `$(...)` and backquotes (also within double quotes), after
   * leading `NAME=value` assignments, redirections and reserved words (`!`, `if`, `then`, `do`, `{`, ...); every
   * later word of a wrapper program (`env`, `nice`, `sudo`, `xargs`, `find`, `timeout`, `exec`, `command`, ...)
   * is also treated as a possible command; the script of a shell started with `-c` (`sh -c '...'`, also in an
   * argv array) and the arguments of `eval` are parsed in turn. A command word the daemon cannot know before the
   * shell runs (it contains `$`, a command substitution, or glob/brace characters) is refused with rule
   * `"shellMeta"` whenever a deny list is present, since `X=rm; $X -rf /` would otherwise pass. With `noShell`,
   * an argv array that starts a shell with a `-c` option is also refused (rule `"noShell"`).
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
   * import { Policy, PolicyError } from "./policy.ts";
   * import { throws } from "node:assert/strict";
   *
   * const policy = new Policy({ allow: ["ls", "cat"], deny: ["cat /etc/*"] });
   * policy.checkCommand("ls -la /tmp");
   * throws(() => policy.checkCommand("ls $(id)"), PolicyError);
   * throws(() => policy.checkCommand(["cat", "/etc/shadow"]), PolicyError);
   * ```
   *
   * @param command An argv array, or a string for `sh -c`.
   * @throws {TypeError} If the command is empty, not a string or string array, or contains a NUL character.
   * @throws {PolicyError} If the policy refuses the command; `rule` says which rule.
   */
  checkCommand(command: string | string[]): void {
    if (typeof command === "string") {
      this.#checkString(command);
    } else {
      this.#checkArgv(command);
    }
  }

  /**
   * Settle the timeout of a command: the requested one, or the default when none is requested.
   *
   * @example Default and maximum
   * ```ts
   * import { Policy, PolicyError } from "./policy.ts";
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
   * import { Policy } from "./policy.ts";
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
      if (!this.#envStrip.some((pattern) => pattern.test(name))) entries.push([name, value]);
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
   * import { Policy } from "./policy.ts";
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
    this.#wrapper ??= this.#buildWrapper();
    return [...this.#wrapper, ...argv];
  }

  /**
   * Resolve a file path under the policy: confined to `root` with {@linkcode confinePath} when one is set,
   * else resolved against the current directory.
   *
   * @example Confine a path
   * ```ts
   * import { Policy } from "./policy.ts";
   * import { equal } from "node:assert/strict";
   *
   * const root = await Deno.realPath(await Deno.makeTempDir());
   * try {
   *   equal(await new Policy({ root }).confine("a.txt"), `${root}/a.txt`);
   * } finally {
   *   await Deno.remove(root, { recursive: true });
   * }
   * ```
   *
   * @param requested The path asked for.
   * @returns The path to operate on.
   * @throws {PolicyError} With rule `"noFiles"` if file operations are refused, or `"root"` on an escape.
   */
  async confine(requested: string): Promise<string> {
    this.checkFiles();
    if (this.options.root !== undefined) return await confinePath(this.options.root, requested);
    if (typeof requested !== "string" || requested === "" || requested.includes("\0")) {
      throw new TypeError(
        `Path must be a non-empty string without NUL, got ${describe(requested)}`,
      );
    }
    return resolve(requested);
  }

  /**
   * Refuse file operations if `noFiles` is set.
   *
   * @example Refuse files
   * ```ts
   * import { Policy, PolicyError } from "./policy.ts";
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
   * import { Policy, PolicyError } from "./policy.ts";
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
   * import { Policy, PolicyError } from "./policy.ts";
   * import { throws } from "node:assert/strict";
   *
   * const policy = new Policy({ maxProcesses: 2 });
   * policy.checkProcessCount(1);
   * throws(() => policy.checkProcessCount(2), PolicyError);
   * ```
   *
   * @param running How many processes run now.
   * @throws {PolicyError} With rule `"maxProcesses"` if `running` already reached `maxProcesses`.
   */
  checkProcessCount(running: number): void {
    const max = this.options.maxProcesses;
    if (max !== undefined && running >= max) {
      throw new PolicyError(`Too many processes: ${running} running, the maximum is ${max}`, {
        rule: "maxProcesses",
      });
    }
  }

  /**
   * Check that one more session may open.
   *
   * @example At the limit
   * ```ts
   * import { Policy, PolicyError } from "./policy.ts";
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

  #checkArgv(argv: string[]): void {
    checkArgv(argv);
    const words: Word[] = argv.map((text) => ({ text, literal: true }));
    const heads = commandHeads(words, 0);
    if (this.options.noShell && heads.some((head) => head.shell)) {
      throw new PolicyError(
        `Shell commands are disabled by the daemon's policy: ${argv.join(" ")}`,
        {
          rule: "noShell",
        },
      );
    }
    this.#checkDeny([{ words, heads }], argv.join(" "));
    if (this.#allow.length > 0 && !this.#matchesAny(this.#allow, words, 0)) {
      throw new PolicyError(`Command '${argv[0]}' is not in the daemon's allow list`, {
        rule: "allow",
      });
    }
  }

  #checkString(command: string): void {
    if (typeof command !== "string" || command.trim() === "") {
      throw new TypeError(
        `Command must be a non-empty string or argv array, got ${describe(command)}`,
      );
    }
    if (command.includes("\0")) {
      throw new TypeError(
        `Command must not contain a NUL character, got ${JSON.stringify(command)}`,
      );
    }
    if (this.options.noShell) {
      throw new PolicyError(`Shell commands are disabled by the daemon's policy: ${command}`, {
        rule: "noShell",
      });
    }
    let segments: Segment[] | undefined;
    if (this.#allow.length > 0) {
      const meta = /[;&|$`()<>\n\\]/.exec(command);
      if (meta) {
        throw new PolicyError(
          `Command contains the shell metacharacter ${JSON.stringify(meta[0])}: ${command}`,
          { rule: "shellMeta" },
        );
      }
      segments = scanShell(command);
      const first = segments[0]?.[0];
      if (first === undefined) {
        throw new TypeError(`Command must not be empty, got ${JSON.stringify(command)}`);
      }
      if (!first.literal || ASSIGNMENT.test(first.text)) {
        throw new PolicyError(
          `Command word '${first.text}' is not a plain program name: ${command}`,
          { rule: "shellMeta" },
        );
      }
    }
    if (this.#deny.length > 0) {
      segments ??= scanShell(command);
      this.#checkDeny(
        segments.map((words) => ({ words, heads: commandHeads(words, 0) })),
        command,
      );
    }
    if (segments !== undefined && this.#allow.length > 0) {
      const words = segments[0] ?? [];
      if (!this.#matchesAny(this.#allow, words, 0)) {
        throw new PolicyError(`Command '${words[0]?.text}' is not in the daemon's allow list`, {
          rule: "allow",
        });
      }
    }
  }

  #checkDeny(commands: { words: Word[]; heads: Head[] }[], shown: string, depth = 0): void {
    if (this.#deny.length === 0) return;
    if (depth > MAX_NESTING) {
      throw new PolicyError(`Command nests shells too deeply to be checked: ${shown}`, {
        rule: "shellMeta",
      });
    }
    for (const { words, heads } of commands) {
      for (const head of heads) {
        const word = words[head.index];
        if (word === undefined) continue;
        if (!word.literal) {
          if (!head.definite) continue;
          throw new PolicyError(
            `Command word '${word.text}' cannot be checked against the deny list before the shell runs: ${shown}`,
            { rule: "shellMeta" },
          );
        }
        const matched = this.#matchesAny(this.#deny, words, head.index);
        if (matched) {
          throw new PolicyError(`Command is denied by the pattern '${matched.pattern}': ${shown}`, {
            rule: `deny:${matched.pattern}`,
          });
        }
      }
      for (const head of heads) {
        for (const script of head.scripts) {
          if (!script.literal) {
            throw new PolicyError(
              `Shell script '${script.text}' cannot be checked against the deny list before the shell runs: ${shown}`,
              { rule: "shellMeta" },
            );
          }
          const nested = scanShell(script.text);
          this.#checkDeny(
            nested.map((nestedWords) => ({
              words: nestedWords,
              heads: commandHeads(nestedWords, 0),
            })),
            shown,
            depth + 1,
          );
        }
      }
    }
  }

  #matchesAny(matchers: Matcher[], words: Word[], start: number): Matcher | undefined {
    const program = words[start]?.text;
    if (program === undefined) return undefined;
    const base = programBasename(program);
    const rest = words.slice(start + 1).map((word) => word.text);
    const lines = [[program, ...rest].join(" "), [base, ...rest].join(" ")];
    return matchers.find((matcher) =>
      matcher.line
        ? lines.some((line) => matcher.regexp.test(line))
        : matcher.regexp.test(program) || matcher.regexp.test(base)
    );
  }

  #buildWrapper(): string[] {
    const { cpuSeconds, memoryBytes, runAs } = this.options;
    let userSwitch: string[] = [];
    if (runAs !== undefined) {
      const user = resolveUser(runAs);
      if (Deno.uid() !== user.uid) {
        if (Deno.uid() !== 0) {
          throw new PolicyError(
            `Cannot run children as '${runAs}' (uid ${user.uid}): the daemon is not running as root`,
            { rule: "runAs" },
          );
        }
        const setpriv = findExecutable("setpriv");
        if (setpriv === undefined) {
          throw new PolicyError(
            `Cannot run children as '${runAs}': setpriv (util-linux) is not in PATH`,
            { rule: "runAs" },
          );
        }
        userSwitch = [
          setpriv,
          `--reuid=${user.uid}`,
          `--regid=${user.gid}`,
          user.named ? "--init-groups" : "--clear-groups",
          "--",
        ];
      }
    }
    if (cpuSeconds === undefined && memoryBytes === undefined) return userSwitch;
    const prlimit = Deno.build.os === "linux" ? findExecutable("prlimit") : undefined;
    if (prlimit !== undefined) {
      return [
        prlimit,
        ...(cpuSeconds === undefined ? [] : [`--cpu=${cpuSeconds}`]),
        ...(memoryBytes === undefined ? [] : [`--as=${memoryBytes}`]),
        "--",
        ...userSwitch,
      ];
    }
    const sh = Deno.build.os === "windows" ? undefined : findExecutable("sh");
    if (sh === undefined) {
      throw new PolicyError(
        "Cannot apply resource limits: neither prlimit nor sh is available on this system",
        { rule: cpuSeconds === undefined ? "memoryBytes" : "cpuSeconds" },
      );
    }
    const steps = [
      ...(cpuSeconds === undefined ? [] : [`ulimit -t ${cpuSeconds}`]),
      ...(memoryBytes === undefined ? [] : [`ulimit -v ${Math.ceil(memoryBytes / 1024)}`]),
      'exec "$@"',
    ];
    return [sh, "-c", steps.join(" && "), "sandd-limits", ...userSwitch];
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Option validation

const KNOWN_FIELDS: ReadonlySet<string> = new Set([
  "allow",
  "deny",
  "noShell",
  "noPty",
  "noFiles",
  "root",
  "runAs",
  "envStrip",
  "envSet",
  "maxProcesses",
  "maxSessions",
  "defaultTimeoutMs",
  "maxTimeoutMs",
  "maxOutputBytes",
  "cpuSeconds",
  "memoryBytes",
]);

function validateOptions(input: unknown, where: string): Readonly<PolicyOptions> {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new TypeError(`Policy ${where} must be an object, got ${describe(input)}`);
  }
  const raw = input as Record<string, unknown>;
  const out: PolicyOptions = {};
  for (const key of Object.keys(raw)) {
    if (!KNOWN_FIELDS.has(key)) {
      throw new TypeError(`Unknown policy field '${key}'`);
    }
  }
  for (const field of ["allow", "deny", "envStrip"] as const) {
    const value = raw[field];
    if (value === undefined) continue;
    if (!Array.isArray(value)) {
      throw new TypeError(
        `Policy field '${field}' must be an array of strings, got ${describe(value)}`,
      );
    }
    const patterns: string[] = [];
    for (const [i, pattern] of value.entries()) {
      if (typeof pattern !== "string") {
        throw new TypeError(
          `Policy field '${field}[${i}]' must be a string, got ${describe(pattern)}`,
        );
      }
      if (pattern === "" || pattern.includes("\0")) {
        throw new RangeError(
          `Policy field '${field}[${i}]' must be a non-empty pattern without NUL, got ${
            JSON.stringify(pattern)
          }`,
        );
      }
      try {
        globToRegExp(pattern, "");
      } catch (error) {
        throw new RangeError(`Policy field '${field}[${i}]': ${messageOf(error)}`, {
          cause: error,
        });
      }
      patterns.push(pattern);
    }
    out[field] = Object.freeze(patterns) as string[];
  }
  for (const field of ["noShell", "noPty", "noFiles"] as const) {
    const value = raw[field];
    if (value === undefined) continue;
    if (typeof value !== "boolean") {
      throw new TypeError(`Policy field '${field}' must be a boolean, got ${describe(value)}`);
    }
    out[field] = value;
  }
  if (raw.root !== undefined) {
    const root = raw.root;
    if (typeof root !== "string") {
      throw new TypeError(`Policy field 'root' must be a string, got ${describe(root)}`);
    }
    if (root === "" || root.includes("\0")) {
      throw new RangeError(
        `Policy field 'root' must be a non-empty path, got ${JSON.stringify(root)}`,
      );
    }
    out.root = resolve(root);
  }
  if (raw.runAs !== undefined) {
    const runAs = raw.runAs;
    if (typeof runAs !== "string") {
      throw new TypeError(
        `Policy field 'runAs' must be a user name or uid string, got ${describe(runAs)}`,
      );
    }
    if (!/^(?:\d+|[A-Za-z_][A-Za-z0-9_.-]*\$?)$/.test(runAs) || runAs.length > 256) {
      throw new RangeError(
        `Policy field 'runAs' must be a user name or numeric uid, got ${JSON.stringify(runAs)}`,
      );
    }
    out.runAs = runAs;
  }
  if (raw.envSet !== undefined) {
    const envSet = raw.envSet;
    if (typeof envSet !== "object" || envSet === null || Array.isArray(envSet)) {
      throw new TypeError(
        `Policy field 'envSet' must be an object of strings, got ${describe(envSet)}`,
      );
    }
    const entries: [string, string][] = [];
    for (const [name, value] of Object.entries(envSet)) {
      if (name === "" || name.includes("=") || name.includes("\0")) {
        throw new RangeError(
          `Policy field 'envSet' has an invalid variable name ${JSON.stringify(name)}`,
        );
      }
      if (typeof value !== "string") {
        throw new TypeError(
          `Policy field 'envSet.${name}' must be a string, got ${describe(value)}`,
        );
      }
      if (value.includes("\0")) {
        throw new RangeError(`Policy field 'envSet.${name}' must not contain a NUL character`);
      }
      entries.push([name, value]);
    }
    out.envSet = Object.freeze(Object.fromEntries(entries));
  }
  for (
    const field of [
      "maxProcesses",
      "maxSessions",
      "maxOutputBytes",
      "cpuSeconds",
      "memoryBytes",
    ] as const
  ) {
    const value = raw[field];
    if (value === undefined) continue;
    if (typeof value !== "number") {
      throw new TypeError(`Policy field '${field}' must be a number, got ${describe(value)}`);
    }
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(`Policy field '${field}' must be a positive integer, got ${value}`);
    }
    out[field] = value;
  }
  for (const field of ["defaultTimeoutMs", "maxTimeoutMs"] as const) {
    const value = raw[field];
    if (value === undefined) continue;
    if (typeof value !== "number") {
      throw new TypeError(`Policy field '${field}' must be a number, got ${describe(value)}`);
    }
    if (!Number.isFinite(value) || value <= 0) {
      throw new RangeError(
        `Policy field '${field}' must be a positive finite number, got ${value}`,
      );
    }
    out[field] = value;
  }
  if (
    out.defaultTimeoutMs !== undefined && out.maxTimeoutMs !== undefined &&
    out.defaultTimeoutMs > out.maxTimeoutMs
  ) {
    throw new RangeError(
      `Policy field 'defaultTimeoutMs' (${out.defaultTimeoutMs}) must not exceed 'maxTimeoutMs' (${out.maxTimeoutMs})`,
    );
  }
  return Object.freeze(out);
}

// ---------------------------------------------------------------------------------------------------------------
// Globs

interface Matcher {
  pattern: string;
  regexp: RegExp;
  /** The pattern contains a space: match it against command lines. */
  line: boolean;
}

function toMatcher(pattern: string): Matcher {
  return { pattern, regexp: globToRegExp(pattern, ""), line: pattern.includes(" ") };
}

/** Convert a glob (`*`, `?`, `[...]`, `\` escapes) to an anchored RegExp. */
function globToRegExp(glob: string, flags: string): RegExp {
  const chars = Array.from(glob);
  let source = "^";
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!;
    if (c === "*") {
      source += "[^]*";
    } else if (c === "?") {
      source += "[^]";
    } else if (c === "\\" && i + 1 < chars.length) {
      source += literal(chars[++i]!);
    } else if (c === "[") {
      const parsed = parseClass(chars, i + 1);
      if (parsed === undefined) {
        source += literal(c);
      } else {
        source += parsed.source;
        i = parsed.end;
      }
    } else {
      source += literal(c);
    }
  }
  return new RegExp(source + "$", "u" + flags);
}

function parseClass(chars: string[], start: number): { source: string; end: number } | undefined {
  let i = start;
  let negate = false;
  if (chars[i] === "!" || chars[i] === "^") {
    negate = true;
    i++;
  }
  const members: string[] = [];
  let first = true;
  while (i < chars.length) {
    let c = chars[i]!;
    if (c === "]" && !first) {
      return { source: `[${negate ? "^" : ""}${members.join("")}]`, end: i };
    }
    first = false;
    if (c === "\\" && i + 1 < chars.length) c = chars[++i]!;
    if (chars[i + 1] === "-" && i + 2 < chars.length && chars[i + 2] !== "]") {
      let to = chars[i + 2]!;
      i += 2;
      if (to === "\\" && i + 1 < chars.length) to = chars[++i]!;
      if (c.codePointAt(0)! > to.codePointAt(0)!) {
        throw new RangeError(`Invalid character range '${c}-${to}' in pattern '${chars.join("")}'`);
      }
      members.push(`${classLiteral(c)}-${classLiteral(to)}`);
    } else {
      members.push(classLiteral(c));
    }
    i++;
  }
  return undefined;
}

function literal(c: string): string {
  return /[\\^$.*+?()[\]{}|/]/.test(c) ? `\\${c}` : c;
}

function classLiteral(c: string): string {
  return `\\u{${c.codePointAt(0)!.toString(16)}}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Shell scanning (for deny checks and the allow-list first word)

interface Word {
  /** The word with quotes and escapes removed. */
  text: string;
  /** The shell would run it as written: no `$`, substitution, glob or brace expansion. */
  literal: boolean;
}

type Segment = Word[];

interface Head {
  index: number;
  /** The word certainly starts a command (not only possibly, after a wrapper program). */
  definite: boolean;
  /** This head is a shell given `-c`. */
  shell: boolean;
  /** Scripts this head runs (`sh -c SCRIPT`, `eval ARGS`). */
  scripts: Word[];
}

const ASSIGNMENT = /^[A-Za-z_][A-Za-z0-9_]*\+?=/;

const RESERVED: ReadonlySet<string> = new Set([
  "!",
  "{",
  "}",
  "if",
  "then",
  "else",
  "elif",
  "fi",
  "while",
  "until",
  "do",
  "done",
  "case",
  "esac",
  "for",
  "select",
  "in",
  "function",
  "coproc",
  "time",
  "[[",
]);

const SHELLS: ReadonlySet<string> = new Set([
  "sh",
  "bash",
  "dash",
  "zsh",
  "ksh",
  "mksh",
  "pdksh",
  "ash",
  "yash",
  "posh",
  "rbash",
  "fish",
  "csh",
  "tcsh",
]);

const WRAPPERS: ReadonlySet<string> = new Set([
  "exec",
  "command",
  "builtin",
  "nohup",
  "env",
  "nice",
  "ionice",
  "chrt",
  "taskset",
  "timeout",
  "time",
  "stdbuf",
  "setsid",
  "sudo",
  "doas",
  "su",
  "runuser",
  "setpriv",
  "prlimit",
  "chroot",
  "unshare",
  "nsenter",
  "flock",
  "xargs",
  "find",
  "watch",
  "strace",
  "ltrace",
  "busybox",
  "parallel",
  "script",
]);

const MAX_NESTING = 32;

/** Split a shell string into simple commands (words with quotes removed). Errs on the side of more commands. */
function scanShell(source: string): Segment[] {
  const segments: Segment[] = [];
  scan(source, 0, undefined, segments, 0);
  return segments;
}

function scan(
  src: string,
  start: number,
  terminator: ")" | "`" | undefined,
  segments: Segment[],
  depth: number,
): number {
  if (depth > MAX_NESTING) {
    throw new PolicyError("Command nests substitutions too deeply to be checked", {
      rule: "shellMeta",
    });
  }
  let words: Word[] = [];
  let text = "";
  let started = false;
  let literal = true;
  let quotedAny = false;
  let openBracket = false;
  let openBrace = false;
  let redirectTarget = false;
  let parens = 0;

  const endWord = () => {
    if (started) {
      if (redirectTarget) {
        redirectTarget = false;
      } else {
        words.push({ text, literal });
      }
    }
    text = "";
    started = false;
    literal = true;
    quotedAny = false;
    openBracket = false;
    openBrace = false;
  };
  const endSegment = () => {
    endWord();
    if (words.length > 0) segments.push(words);
    words = [];
    redirectTarget = false;
  };
  const substitute = (from: number, inner: ")" | "`"): number => {
    started = true;
    literal = false;
    return scan(src, from, inner, segments, depth + 1);
  };

  let i = start;
  while (i < src.length) {
    const c = src[i]!;
    if (c === " " || c === "\t") {
      endWord();
      i++;
    } else if (c === "\n" || c === ";" || c === "&" || c === "|") {
      endSegment();
      i++;
    } else if (c === "(") {
      endSegment();
      parens++;
      i++;
    } else if (c === ")") {
      endSegment();
      i++;
      if (terminator === ")" && parens === 0) return i;
      if (parens > 0) parens--;
    } else if (c === "`") {
      if (terminator === "`") {
        endSegment();
        return i + 1;
      }
      i = substitute(i + 1, "`");
    } else if (c === "$") {
      const next = src[i + 1];
      if (next === "(") {
        i = substitute(i + 2, ")");
      } else {
        started = true;
        literal = false;
        text += c;
        i++;
      }
    } else if (c === "'") {
      const end = src.indexOf("'", i + 1);
      const stop = end < 0 ? src.length : end;
      text += src.slice(i + 1, stop);
      started = true;
      quotedAny = true;
      i = stop + 1;
    } else if (c === '"') {
      started = true;
      quotedAny = true;
      i++;
      while (i < src.length && src[i] !== '"') {
        const d = src[i]!;
        if (d === "\\" && i + 1 < src.length) {
          const e = src[i + 1]!;
          if (e === "\n") {
            // line continuation
          } else if (e === "$" || e === "`" || e === '"' || e === "\\") {
            text += e;
          } else {
            text += d + e;
          }
          i += 2;
        } else if (d === "`") {
          i = substitute(i + 1, "`");
        } else if (d === "$") {
          if (src[i + 1] === "(") {
            i = substitute(i + 2, ")");
          } else {
            literal = false;
            text += d;
            i++;
          }
        } else {
          text += d;
          i++;
        }
      }
      i++;
    } else if (c === "\\") {
      if (src[i + 1] === "\n") {
        i += 2;
      } else {
        if (i + 1 < src.length) text += src[i + 1];
        started = true;
        quotedAny = true;
        i += 2;
      }
    } else if (c === "<" || c === ">") {
      if (started && !quotedAny && literal && /^(?:\d+|\{[A-Za-z_][A-Za-z0-9_]*\})$/.test(text)) {
        // An fd prefix such as 2> or {fd}>: part of the redirection, not a word.
        text = "";
        started = false;
      } else {
        endWord();
      }
      i++;
      while (i < src.length && "<>&|-".includes(src[i]!)) {
        if (src[i] === "&" && src[i + 1] === "&") break;
        i++;
      }
      redirectTarget = true;
    } else {
      if (c === "*" || c === "?") literal = false;
      if (c === "[") openBracket = true;
      if (c === "]" && openBracket) literal = false;
      if (c === "{") openBrace = true;
      if (c === "}" && openBrace) literal = false;
      text += c;
      started = true;
      i++;
    }
  }
  endSegment();
  return src.length;
}

/** Where commands start in a simple command's words. */
function commandHeads(words: Word[], start: number): Head[] {
  const heads: Head[] = [];
  const visited = new Set<number>();
  const visit = (from: number, definite: boolean) => {
    let h = from;
    while (h < words.length && (ASSIGNMENT.test(words[h]!.text) || RESERVED.has(words[h]!.text))) {
      h++;
    }
    const word = words[h];
    if (word === undefined || visited.has(h)) return;
    visited.add(h);
    const head: Head = { index: h, definite, shell: false, scripts: [] };
    heads.push(head);
    if (!word.literal) return;
    const base = programBasename(word.text);
    const rest = words.slice(h + 1);
    if (SHELLS.has(base) || (base === "busybox" && rest[0]?.text === "sh")) {
      const flag = rest.findIndex((w) => /^-[A-Za-z]*c[A-Za-z]*$/.test(w.text));
      if (flag >= 0) {
        head.shell = true;
        head.scripts = rest.slice(flag + 1).filter((w) => !/^[-+]/.test(w.text) || !w.literal);
      }
    } else if (base === "eval" && rest.length > 0) {
      head.scripts = [{
        text: rest.map((w) => w.text).join(" "),
        literal: rest.every((w) => w.literal),
      }];
    }
    if (WRAPPERS.has(base)) {
      for (let j = h + 1; j < words.length; j++) visit(j, false);
    }
  };
  visit(start, true);
  // `function f { rm; }`: a brace group can open in the middle of a simple command's words.
  for (let j = start + 1; j < words.length; j++) {
    if (words[j]!.literal && words[j]!.text === "{") visit(j + 1, false);
  }
  return heads;
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers

function checkArgv(argv: unknown): asserts argv is string[] {
  if (!Array.isArray(argv) || argv.length === 0) {
    throw new TypeError(`Command must be a non-empty string or argv array, got ${describe(argv)}`);
  }
  for (const [i, arg] of argv.entries()) {
    if (typeof arg !== "string") {
      throw new TypeError(`Command argument ${i} must be a string, got ${describe(arg)}`);
    }
    if (arg.includes("\0")) {
      throw new TypeError(`Command argument ${i} must not contain a NUL character`);
    }
  }
  if (argv[0] === "") throw new TypeError("Command program (argument 0) must not be empty");
}

function programBasename(program: string): string {
  return Deno.build.os === "windows" ? basename(program.replaceAll("\\", "/")) : basename(program);
}

interface ResolvedUser {
  uid: number;
  gid: number;
  /** The uid has a passwd entry, so supplementary groups can be initialised. */
  named: boolean;
}

function resolveUser(runAs: string): ResolvedUser {
  const numeric = /^\d+$/.test(runAs);
  let passwd = "";
  try {
    passwd = Deno.readTextFileSync("/etc/passwd");
  } catch {
    // fall back to id(1)
  }
  for (const line of passwd.split("\n")) {
    const [name, , uid, gid] = line.split(":");
    if (name === undefined || uid === undefined || gid === undefined) continue;
    if ((numeric ? uid : name) === runAs && /^\d+$/.test(uid) && /^\d+$/.test(gid)) {
      return { uid: Number(uid), gid: Number(gid), named: true };
    }
  }
  const uid = idOf("-u", runAs);
  const gid = idOf("-g", runAs);
  if (uid !== undefined && gid !== undefined) return { uid, gid, named: true };
  if (numeric) return { uid: Number(runAs), gid: Number(runAs), named: false };
  throw new PolicyError(`Cannot run children as '${runAs}': no such user`, { rule: "runAs" });
}

function idOf(flag: "-u" | "-g", user: string): number | undefined {
  const id = findExecutable("id");
  if (id === undefined) return undefined;
  try {
    const output = new Deno.Command(id, {
      args: [flag, user],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const text = new TextDecoder().decode(output.stdout).trim();
    return output.success && /^\d+$/.test(text) ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}

function findExecutable(name: string): string | undefined {
  let path: string | undefined;
  try {
    path = Deno.env.get("PATH");
  } catch {
    return undefined;
  }
  const separator = Deno.build.os === "windows" ? ";" : ":";
  for (const dir of (path ?? "").split(separator)) {
    if (dir === "" || !dir.startsWith("/")) continue;
    const candidate = `${dir}/${name}`;
    try {
      const info = Deno.statSync(candidate);
      if (info.isFile && (info.mode === null || (info.mode & 0o111) !== 0)) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "object") return "an object";
  return `${typeof value} ${String(value)}`;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
