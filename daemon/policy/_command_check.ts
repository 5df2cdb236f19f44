/**
 * Command checks of the policy: allow and deny patterns matched against argv arrays and shell strings, program
 * paths normalised, shells refused under `noShell`. Every check runs in time linear in the command (see
 * `_glob.ts` and the lexer's scan budget).
 *
 * @module
 */

import { programFiles, programPath } from "./_program.ts";
import { Glob } from "./_glob.ts";
import {
  ASSIGNMENT,
  commandHeads,
  type Commands,
  evalScript,
  MAX_NESTING,
  MULTI_CALL,
  programBasename,
  ScanBudget,
  scanShell,
  type Segment,
  SHELLS,
  shorten,
  type Word,
} from "./_shell_lexer.ts";
import { describe } from "./options.ts";
import { PolicyError } from "./policy_error.ts";

/** A command pattern: a path glob for the program, and a text glob for the rest of the line. */
interface Matcher {
  pattern: string;
  program: Glob;
  /** What follows the program (from the pattern's first unescaped space on, that space included). */
  rest: Glob | undefined;
}

function toMatcher(pattern: string): Matcher {
  const space = firstSpace(pattern);
  if (space < 0) return { pattern, program: new Glob(pattern, { path: true }), rest: undefined };
  return {
    pattern,
    program: new Glob(pattern.slice(0, space), { path: true }),
    rest: new Glob(pattern.slice(space)),
  };
}

/** Index of the first space that is neither escaped nor inside a `[...]` class, or -1. */
function firstSpace(pattern: string): number {
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "\\") {
      i++;
    } else if (c === "[" && !inClass) {
      inClass = pattern.indexOf("]", i + 2) > 0;
    } else if (c === "]" && inClass) {
      inClass = false;
    } else if (c === " " && !inClass) {
      return i;
    }
  }
  return -1;
}

/** A segment's command line, joined once, with where each word ends; line globs are matched on its suffixes. */
class Line {
  readonly #text: string;
  readonly #ends: Int32Array;
  readonly #suffixes = new Map<Matcher, Uint8Array>();
  constructor(words: Word[]) {
    this.#text = words.map((word) => word.text).join(" ");
    this.#ends = new Int32Array(words.length);
    let end = -1;
    for (const [i, word] of words.entries()) {
      end += 1 + word.text.length;
      this.#ends[i] = end;
    }
  }
  /** Length of the line from word `index` on. */
  charsFrom(index: number): number {
    return index === 0 ? this.#text.length : this.#text.length - this.#ends[index - 1]! - 1;
  }
  /** Whether `matcher.rest` matches the line after word `index`. */
  restMatches(matcher: Matcher, index: number): boolean {
    let suffixes = this.#suffixes.get(matcher);
    if (suffixes === undefined) {
      suffixes = matcher.rest!.suffixMatches(this.#text);
      this.#suffixes.set(matcher, suffixes);
    }
    return suffixes[this.#ends[index]!] === 1;
  }
}

interface Checked extends Commands {
  line?: Line;
}

/** How much shell text one check may scan: the command several times over, and at least 1 MiB. */
function budgetFor(length: number): ScanBudget {
  return new ScanBudget(1024 * 1024 + 8 * length);
}

/**
 * Whether a command starts a shell once its programs are read as the files they resolve to: each command head is
 * replaced by its real path (a symlink `bin/notashell -> /bin/dash` becomes `/usr/bin/dash`; a bare name is
 * looked up in each `PATH` given) and the heads are found again. A multi-call binary (`busybox`) keeps the name
 * given, since it runs the applet its `argv[0]` names. The check and the exec are two lookups: a link swapped in
 * between is not seen (see daemon/SECURITY.md).
 */
function resolvesToShell(
  words: Word[],
  commands: Commands,
  cwd: string | undefined,
  pathVariables: readonly (string | undefined)[],
): boolean {
  let changed = false;
  const resolved = words.slice();
  for (const head of commands.heads) {
    const word = words[head.index];
    if (word === undefined || !word.literal) continue;
    for (const file of programFiles(word.text, cwd, pathVariables)) {
      const base = programBasename(file);
      if (MULTI_CALL.has(base) || file === word.text) continue;
      if (SHELLS.has(base)) return true;
      resolved[head.index] = { text: file, literal: true };
      changed = true;
    }
  }
  return changed && commandHeads(resolved, 0).heads.some((head) => head.shellProgram);
}

/** The command rules of a policy: `allow`, `deny` and `noShell`. */
export class CommandCheck {
  readonly #allow: Matcher[];
  readonly #deny: Matcher[];
  readonly #noShell: boolean;

  /**
   * @param options The policy's command rules (validated).
   */
  constructor(options: { allow?: readonly string[]; deny?: readonly string[]; noShell?: boolean }) {
    this.#allow = (options.allow ?? []).map(toMatcher);
    this.#deny = (options.deny ?? []).map(toMatcher);
    this.#noShell = options.noShell ?? false;
  }

  /**
   * Check a command (see `Policy.checkCommand`).
   *
   * @param command An argv array, or a string for `sh -c`.
   * @param cwd The directory relative program paths resolve against (default: the daemon's).
   * @param pathVariables The `PATH` values a bare program name may be looked up in (for `noShell`, which checks
   * the file a program resolves to as well as its name).
   * @returns The command to run: the same, or for an argv array under an allow list whose program climbs with
   * `..`, the argv with that program normalised.
   * @throws {TypeError} If the command is malformed.
   * @throws {PolicyError} If a rule refuses it.
   */
  check(
    command: string | string[],
    cwd: string | undefined,
    pathVariables: readonly (string | undefined)[] = [Deno.env.get("PATH")],
  ): string | string[] {
    if (typeof command === "string") {
      this.#checkString(command, cwd);
      return command;
    }
    return this.#checkArgv(command, cwd, pathVariables);
  }

  #checkArgv(
    argv: string[],
    cwd: string | undefined,
    pathVariables: readonly (string | undefined)[],
  ): string[] {
    checkArgv(argv);
    // No command rule: nothing to scan (this runs on every exec).
    if (!this.#noShell && this.#deny.length === 0 && this.#allow.length === 0) return argv;
    const words: Word[] = argv.map((text) => ({ text, literal: true }));
    const commands: Checked = commandHeads(words, 0);
    if (this.#noShell && commands.heads.some((head) => head.shellProgram)) {
      throw new PolicyError(
        `Shell commands are disabled by the daemon's policy: ${shorten(argv.join(" "))}`,
        { rule: "noShell" },
      );
    }
    if (this.#noShell && resolvesToShell(words, commands, cwd, pathVariables)) {
      throw new PolicyError(
        `Shell commands are disabled by the daemon's policy: ${
          shorten(argv.join(" "))
        } (a program resolves to a shell)`,
        { rule: "noShell" },
      );
    }
    if (this.#deny.length > 0) {
      const shown = argv.join(" ");
      this.#checkDeny([commands], shown, cwd, budgetFor(shown.length), 0);
    }
    if (this.#allow.length === 0) return argv;
    if (!this.#matchesAt(this.#allow, commands, 0, cwd)) {
      throw new PolicyError(`Command '${shorten(argv[0]!)}' is not in the daemon's allow list`, {
        rule: "allow",
      });
    }
    // Run what was checked: a path that climbs with `..` runs by its normalised form.
    const program = programPath(argv[0]!, cwd);
    return program.climbs && program.normalized !== undefined
      ? [program.normalized, ...argv.slice(1)]
      : argv;
  }

  #checkString(command: string, cwd: string | undefined): void {
    if (typeof command !== "string" || command.trim() === "") {
      throw new TypeError(
        `Command must be a non-empty string or argv array, got ${describe(command)}`,
      );
    }
    if (command.includes("\0")) {
      throw new TypeError(
        `Command must not contain a NUL character, got ${JSON.stringify(shorten(command))}`,
      );
    }
    if (this.#noShell) {
      throw new PolicyError(
        `Shell commands are disabled by the daemon's policy: ${shorten(command)}`,
        { rule: "noShell" },
      );
    }
    const budget = budgetFor(command.length);
    let segments: Segment[] | undefined;
    if (this.#allow.length > 0) {
      const meta = /[;&|$`()<>\n\\]/.exec(command);
      if (meta) {
        throw new PolicyError(
          `Command contains the shell metacharacter ${JSON.stringify(meta[0])}: ${
            shorten(command)
          }`,
          { rule: "shellMeta" },
        );
      }
      segments = scanShell(command, budget, command);
      const first = segments[0]?.[0];
      if (first === undefined) {
        throw new TypeError(`Command must not be empty, got ${JSON.stringify(command)}`);
      }
      if (!first.literal || ASSIGNMENT.test(first.text)) {
        throw new PolicyError(
          `Command word '${shorten(first.text)}' is not a plain program name: ${shorten(command)}`,
          { rule: "shellMeta" },
        );
      }
      if (programPath(first.text, cwd).climbs) {
        throw new PolicyError(
          `Program path '${
            shorten(first.text)
          }' climbs with '..'; give the command as an argv array: ${shorten(command)}`,
          { rule: "allow" },
        );
      }
    }
    if (this.#deny.length > 0) {
      segments ??= scanShell(command, budget, command);
      this.#checkDeny(segments.map((words) => commandHeads(words, 0)), command, cwd, budget, 0);
    }
    if (segments !== undefined && this.#allow.length > 0) {
      const words = segments[0] ?? [];
      if (!this.#matchesAt(this.#allow, commandHeads(words, 0), 0, cwd)) {
        throw new PolicyError(
          `Command '${shorten(words[0]?.text ?? "")}' is not in the daemon's allow list`,
          { rule: "allow" },
        );
      }
    }
  }

  #checkDeny(
    list: Checked[],
    shown: string,
    cwd: string | undefined,
    budget: ScanBudget,
    depth: number,
  ): void {
    if (depth > MAX_NESTING) {
      throw new PolicyError(`Command nests shells too deeply to be checked: ${shorten(shown)}`, {
        rule: "shellMeta",
      });
    }
    for (const commands of list) {
      for (const head of commands.heads) {
        const word = commands.words[head.index];
        if (word === undefined) continue;
        if (!word.literal) {
          if (!head.definite) continue;
          throw new PolicyError(
            `Command word '${
              shorten(word.text)
            }' cannot be checked against the deny list before the shell runs: ${shorten(shown)}`,
            { rule: "shellMeta" },
          );
        }
        const matched = this.#matchesAt(this.#deny, commands, head.index, cwd);
        if (matched) {
          throw new PolicyError(
            `Command is denied by the pattern '${matched.pattern}': ${shorten(shown)}`,
            { rule: `deny:${matched.pattern}` },
          );
        }
      }
      const scripts = [...commands.scripts];
      for (const from of commands.evalFrom) {
        commands.line ??= new Line(commands.words);
        budget.charge(commands.line.charsFrom(from), shown);
        scripts.push(evalScript(commands.words, from));
      }
      for (const script of scripts) {
        if (!script.literal) {
          throw new PolicyError(
            `Shell script '${
              shorten(script.text)
            }' cannot be checked against the deny list before the shell runs: ${shorten(shown)}`,
            { rule: "shellMeta" },
          );
        }
        const nested = scanShell(script.text, budget, shown);
        this.#checkDeny(
          nested.map((words) => commandHeads(words, 0)),
          shown,
          cwd,
          budget,
          depth + 1,
        );
      }
    }
  }

  /** The first matcher matching the command that starts at word `start` of `commands`. */
  #matchesAt(
    matchers: Matcher[],
    commands: Checked,
    start: number,
    cwd: string | undefined,
  ): Matcher | undefined {
    const word = commands.words[start];
    if (word === undefined) return undefined;
    const program = programPath(word.text, cwd);
    const candidates = [programBasename(word.text)];
    if (program.normalized !== undefined) candidates.push(program.normalized);
    if (!program.climbs) candidates.push(word.text);
    return matchers.find((matcher) => {
      if (!candidates.some((candidate) => matcher.program.matches(candidate))) return false;
      if (matcher.rest === undefined) return true;
      commands.line ??= new Line(commands.words);
      return commands.line.restMatches(matcher, start);
    });
  }
}

/**
 * Check that `argv` is a non-empty array of strings without NUL whose program is not empty.
 *
 * @param argv The value.
 * @throws {TypeError} If it is not.
 */
export function checkArgv(argv: unknown): asserts argv is string[] {
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
