/**
 * A conservative POSIX shell lexer for the policy: it splits a shell string into simple commands (words with quotes
 * removed) and finds where commands start in them, erring on the side of more commands. It never runs anything.
 *
 * Work is bounded: every string scanned (the command, and each nested `sh -c` or `eval` script) is charged to a
 * {@linkcode ScanBudget}, so a crafted command cannot make the check take more than linear time.
 *
 * @module
 */

import { basename } from "node:path";
import { PolicyError } from "./policy_error.ts";

/** One shell word. */
export interface Word {
  /** The word with quotes and escapes removed. */
  text: string;
  /** The shell would run it as written: no `$`, substitution, glob or brace expansion. */
  literal: boolean;
}

/** The words of one simple command. */
export type Segment = Word[];

/** Where a command starts in a segment. */
export interface Head {
  /** Index of the command word in the segment. */
  index: number;
  /** The word certainly starts a command (not only possibly, after a wrapper program). */
  definite: boolean;
  /** The word names a shell program (`sh`, `bash`, `busybox sh`, ...) or `env -S`, with or without `-c`. */
  shellProgram: boolean;
  /** This head is a shell given `-c`. */
  shell: boolean;
}

/** The commands of one segment, and the scripts they run. */
export interface Commands {
  /** The segment's words. */
  words: Word[];
  /** Where commands start. */
  heads: Head[];
  /** Scripts run by the heads (`sh -c SCRIPT`, `env -S STRING`), each parsed in turn. */
  scripts: Word[];
  /** Where the arguments of each `eval` head start: the words from there on, joined, are a script. */
  evalFrom: number[];
}

/** How much text one policy check may scan, counting nested scripts. */
export class ScanBudget {
  #left: number;
  /**
   * @param chars Characters that may be scanned in all.
   */
  constructor(chars: number) {
    this.#left = chars;
  }
  /**
   * Charge `chars` characters.
   *
   * @param chars Characters about to be scanned.
   * @param shown The command, for the error message.
   * @throws {PolicyError} With rule `"shellMeta"` once the budget is spent.
   */
  charge(chars: number, shown: string): void {
    this.#left -= chars;
    if (this.#left < 0) {
      throw new PolicyError(
        `Command is too complex to be checked against the deny list: ${shorten(shown)}`,
        { rule: "shellMeta" },
      );
    }
  }
}

/** A command shortened for an error message. */
export function shorten(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}... (${text.length} characters)` : text;
}

/** `NAME=value` (or `NAME+=value`). */
export const ASSIGNMENT: RegExp = /^[A-Za-z_][A-Za-z0-9_]*\+?=/;

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

/** Shell programs, by basename: a shell reads commands from `-c`, a file, stdin or a terminal. */
export const SHELLS: ReadonlySet<string> = new Set([
  "sh",
  "bash",
  "dash",
  "zsh",
  "ksh",
  "ksh93",
  "mksh",
  "lksh",
  "pdksh",
  "oksh",
  "ash",
  "hush",
  "yash",
  "posh",
  "rbash",
  "rc",
  "es",
  "fish",
  "csh",
  "tcsh",
  "elvish",
  "nu",
  "xonsh",
  "pwsh",
]);

/** Multi-call binaries whose first argument can name a shell (`busybox sh`, `toybox sh`). */
export const MULTI_CALL: ReadonlySet<string> = new Set(["busybox", "toybox"]);

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
  "systemd-run",
]);

/** Dynamic loaders, which run the program named by their first argument (`ld-linux-x86-64.so.2 /bin/sh`). */
const LOADER = /^(?:ld\.so|ld-linux[^/]*\.so[^/]*|ld64\.so[^/]*|ld-musl[^/]*\.so[^/]*)$/;

/**
 * Programs that hand a command string to a shell, or start one: `su` (always a shell, `-c` its script),
 * `script` (`$SHELL`, `-c` its script), `flock -c`, `sudo -s`/`-i`, `watch` (`sh -c` unless `-x`).
 */
function startsShell(base: string, words: readonly Word[], from: number, count: number): boolean {
  if (base === "su" || base === "script") return true;
  const options: string[] = [];
  for (let j = from; j < count && words[j]!.text.startsWith("-"); j++) options.push(words[j]!.text);
  if (base === "flock") {
    // `flock [options] FILE -c COMMAND`: the option may follow the lock file.
    for (let j = from; j < count; j++) {
      const o = words[j]!.text;
      if (o === "--command" || o.startsWith("--command=") || /^-[a-z]*c/.test(o)) return true;
    }
    return false;
  }
  if (base === "sudo") {
    return options.some((o) => o === "--shell" || o === "--login" || /^-[a-zA-Z]*[si]/.test(o));
  }
  if (base === "watch") return !options.some((o) => o === "--exec" || /^-[a-zA-Z]*x/.test(o));
  return false;
}

/** Deepest nesting of substitutions and shell scripts checked. */
export const MAX_NESTING = 32;

/**
 * Split a shell string into simple commands (words with quotes removed). Errs on the side of more commands.
 *
 * @param source The shell string.
 * @param budget Charged with `source.length`.
 * @param shown The whole command, for error messages.
 * @returns The simple commands.
 */
export function scanShell(source: string, budget: ScanBudget, shown: string): Segment[] {
  budget.charge(source.length, shown);
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

/**
 * Where commands start in a simple command's words, and the scripts they run. Linear in the number of words.
 *
 * @param words The words.
 * @param start Index of the first command word.
 * @returns The heads and scripts.
 */
export function commandHeads(words: Word[], start: number): Commands {
  const count = words.length;
  const heads: Head[] = [];
  const visited = new Uint8Array(count);
  // Computed once from the right: the first `-c`-style option at or after each index, and the first word at or
  // after each index that is neither an assignment nor a reserved word.
  const nextFlag = new Int32Array(count + 1).fill(-1);
  const nextWord = new Int32Array(count + 1).fill(count);
  for (let j = count - 1; j >= 0; j--) {
    const text = words[j]!.text;
    nextFlag[j] = /^-[A-Za-z]*c[A-Za-z]*$/.test(text) ? j : nextFlag[j + 1]!;
    nextWord[j] = ASSIGNMENT.test(text) || RESERVED.has(text) ? nextWord[j + 1]! : j;
  }
  // Every word after the earliest `-c` of a shell head is a possible script (the union over all shell heads).
  let firstScript = count;
  // Every word after the earliest wrapper program is a possible command (the union over all wrappers).
  let wrappedFrom = count;
  const evalFrom: number[] = [];
  const splitStrings: Word[] = [];
  const visit = (from: number, definite: boolean) => {
    const h = nextWord[from]!;
    const word = words[h];
    if (word === undefined || visited[h] === 1) return;
    visited[h] = 1;
    const head: Head = { index: h, definite, shellProgram: false, shell: false };
    heads.push(head);
    if (!word.literal) return;
    const base = programBasename(word.text);
    const next = words[h + 1];
    if (SHELLS.has(base) || (MULTI_CALL.has(base) && next !== undefined && SHELLS.has(next.text))) {
      head.shellProgram = true;
      const flag = nextFlag[h + 1]!;
      if (flag >= 0) {
        head.shell = true;
        firstScript = Math.min(firstScript, flag + 1);
      }
    } else if (startsShell(base, words, h + 1, count)) {
      head.shellProgram = true;
    } else if (base === "eval" && next !== undefined) {
      evalFrom.push(h + 1);
    } else if (base === "env") {
      // `env -S STRING` / `--split-string=STRING` splits STRING into a command line: a small shell.
      for (let j = h + 1; j < count; j++) {
        const text = words[j]!.text;
        if (!text.startsWith("-")) break;
        if (text === "-u" || text === "-C" || text === "--unset" || text === "--chdir") {
          j++;
          continue;
        }
        const split = /^(?:-[A-Za-z0-9]*S(.*)|--split-string(?:=(.*))?)$/s.exec(text);
        if (split === null) continue;
        head.shellProgram = true;
        const inline = split[1] || split[2];
        if (inline) {
          splitStrings.push({ text: inline, literal: words[j]!.literal });
        } else if (words[j + 1] !== undefined) {
          splitStrings.push(words[j + 1]!);
        }
        break;
      }
    }
    if (WRAPPERS.has(base) || LOADER.test(base)) wrappedFrom = Math.min(wrappedFrom, h + 1);
  };
  visit(start, true);
  for (let j = start + 1; j < count; j++) {
    if (j >= wrappedFrom) visit(j, false);
    // `function f { rm; }`: a brace group can open in the middle of a simple command's words.
    if (words[j - 1]!.literal && words[j - 1]!.text === "{" && j - 1 > start) visit(j, false);
  }
  const scripts: Word[] = [];
  for (let j = firstScript; j < count; j++) {
    const word = words[j]!;
    if (!/^[-+]/.test(word.text) || !word.literal) scripts.push(word);
  }
  return { words, heads, scripts: [...scripts, ...splitStrings], evalFrom };
}

/**
 * The basename of a program path (`\` also separates on Windows).
 *
 * @param program The program.
 * @returns Its last path component.
 */
export function programBasename(program: string): string {
  return Deno.build.os === "windows" ? basename(program.replaceAll("\\", "/")) : basename(program);
}

/**
 * The script an `eval` runs: its arguments joined by spaces.
 *
 * @param words The segment's words.
 * @param from Index of the first argument.
 * @returns The script.
 */
export function evalScript(words: Word[], from: number): Word {
  const rest = words.slice(from);
  return { text: rest.map((w) => w.text).join(" "), literal: rest.every((w) => w.literal) };
}
