/**
 * Globs of the policy, matched in time linear in the input (times the pattern's length): a pattern is compiled to
 * a small automaton and simulated over the text, never handed to a backtracking RegExp engine, so a hostile
 * command line cannot freeze the daemon (`*a*a*a*b` against 240 KB of `a` takes milliseconds).
 *
 * Syntax: `*` any run of characters, `?` one character, `[abc]`, `[a-z]`, `[!a-z]` (or `[^a-z]`) one character
 * of a class, `\` makes the next character literal. In a path glob, `*`, `?` and classes never match `/`, and
 * `**` matches any run including `/`; in a text glob, `*` and `**` both match anything.
 *
 * @module
 */

type Token =
  | { kind: "char"; code: number }
  | { kind: "any" }
  | { kind: "class"; negate: boolean; ranges: [number, number][] }
  | { kind: "star"; crossesSlash: boolean };

const SLASH = 0x2f;

/** A compiled glob. */
export class Glob {
  /** The pattern as written. */
  readonly pattern: string;
  readonly #tokens: Token[];
  readonly #path: boolean;
  readonly #foldCase: boolean;
  #reversed: Token[] | undefined;
  #forward: Simulation | undefined;

  /**
   * Compile a glob.
   *
   * @param pattern The glob.
   * @param options `path`: `*`, `?` and classes do not match `/` (`**` does); `foldCase`: match ASCII letters
   * of either case.
   * @throws {RangeError} For a reversed character range such as `[z-a]`.
   */
  constructor(pattern: string, options: { path?: boolean; foldCase?: boolean } = {}) {
    this.pattern = pattern;
    this.#path = options.path ?? false;
    this.#foldCase = options.foldCase ?? false;
    this.#tokens = compile(Array.from(pattern), this.#path, this.#foldCase);
  }

  /**
   * Whether the glob matches the whole of `text`.
   *
   * @param text The text.
   * @returns `true` on a match.
   */
  matches(text: string): boolean {
    const tokens = this.#tokens;
    // A glob ending in a literal character cannot match a text ending in another: a common, cheap rejection.
    const last = tokens.at(-1);
    if (last?.kind === "char" && !this.#foldCase && text.length > 0) {
      if (text.codePointAt(text.length - (last.code > 0xffff ? 2 : 1)) !== last.code) return false;
    }
    const sim = this.#forward ??= new Simulation(tokens, this.#path);
    sim.reset();
    for (let i = 0; i < text.length; i++) {
      let code = text.codePointAt(i)!;
      if (code > 0xffff) i++;
      if (this.#foldCase && code >= 0x41 && code <= 0x5a) code += 0x20;
      if (!sim.step(code)) return false;
    }
    return sim.accepts();
  }

  /**
   * For every UTF-16 offset `p` of `text`, whether the glob matches `text.slice(p)` exactly: one pass from the
   * end with the reversed glob, linear in the text's length.
   *
   * @param text The text.
   * @returns `result[p]` is 1 when the suffix starting at `p` matches (0 inside a surrogate pair);
   * `result.length` is `text.length + 1`.
   */
  suffixMatches(text: string): Uint8Array {
    const tokens = this.#reversed ??= [...this.#tokens].reverse();
    const result = new Uint8Array(text.length + 1);
    const sim = new Simulation(tokens, this.#path);
    if (sim.accepts()) result[text.length] = 1;
    for (let p = text.length - 1; p >= 0; p--) {
      let code = text.charCodeAt(p);
      if (code >= 0xdc00 && code <= 0xdfff && p > 0) {
        const high = text.charCodeAt(p - 1);
        if (high >= 0xd800 && high <= 0xdbff) {
          code = (high - 0xd800) * 0x400 + (code - 0xdc00) + 0x10000;
          p--;
        }
      }
      if (this.#foldCase && code >= 0x41 && code <= 0x5a) code += 0x20;
      if (!sim.step(code)) break;
      if (sim.accepts()) result[p] = 1;
    }
    return result;
  }
}

/** The automaton of a glob run over a text, one code point at a time: two reused state sets, no allocation. */
class Simulation {
  readonly #tokens: Token[];
  readonly #path: boolean;
  #states: Uint8Array;
  #next: Uint8Array;
  constructor(tokens: Token[], path: boolean) {
    this.#tokens = tokens;
    this.#path = path;
    this.#states = new Uint8Array(tokens.length + 1);
    this.#next = new Uint8Array(tokens.length + 1);
    this.reset();
  }
  /** Back to the start state. */
  reset(): void {
    this.#states.fill(0);
    this.#states[0] = 1;
    this.#close(this.#states);
  }
  /** The whole text so far matches. */
  accepts(): boolean {
    return this.#states[this.#tokens.length] === 1;
  }
  /** Consume one code point; `false` once no state is left (nothing longer can match). */
  step(code: number): boolean {
    const tokens = this.#tokens;
    const states = this.#states;
    const next = this.#next;
    next.fill(0);
    let alive = false;
    for (let s = 0; s < tokens.length; s++) {
      if (states[s] !== 1) continue;
      const token = tokens[s]!;
      if (token.kind === "star") {
        if (token.crossesSlash || code !== SLASH) {
          next[s] = 1;
          alive = true;
        }
      } else if (token.kind === "char") {
        if (token.code === code) {
          next[s + 1] = 1;
          alive = true;
        }
      } else if (token.kind === "any") {
        if (!this.#path || code !== SLASH) {
          next[s + 1] = 1;
          alive = true;
        }
      } else if (!this.#path || code !== SLASH) {
        const inside = token.ranges.some(([lo, hi]) => code >= lo && code <= hi);
        if (inside !== token.negate) {
          next[s + 1] = 1;
          alive = true;
        }
      }
    }
    this.#close(next);
    this.#states = next;
    this.#next = states;
    return alive;
  }
  /** Add the states reachable without input: a star may match nothing. */
  #close(states: Uint8Array): void {
    const tokens = this.#tokens;
    for (let s = 0; s < tokens.length; s++) {
      if (states[s] === 1 && tokens[s]!.kind === "star") states[s + 1] = 1;
    }
  }
}

function fold(code: number, foldCase: boolean): number {
  return foldCase && code >= 0x41 && code <= 0x5a ? code + 0x20 : code;
}

function compile(chars: string[], path: boolean, foldCase: boolean): Token[] {
  const tokens: Token[] = [];
  const code = (c: string) => fold(c.codePointAt(0)!, foldCase);
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!;
    if (c === "*") {
      let crossesSlash = !path;
      while (chars[i + 1] === "*") {
        crossesSlash = true;
        i++;
      }
      const last = tokens.at(-1);
      // Consecutive stars collapse into one (the wider one), which keeps the automaton small.
      if (last?.kind === "star") {
        last.crossesSlash ||= crossesSlash;
      } else {
        tokens.push({ kind: "star", crossesSlash });
      }
    } else if (c === "?") {
      tokens.push({ kind: "any" });
    } else if (c === "\\" && i + 1 < chars.length) {
      tokens.push({ kind: "char", code: code(chars[++i]!) });
    } else if (c === "[") {
      const parsed = parseClass(chars, i + 1, foldCase);
      if (parsed === undefined) {
        tokens.push({ kind: "char", code: code(c) });
      } else {
        tokens.push(parsed.token);
        i = parsed.end;
      }
    } else {
      tokens.push({ kind: "char", code: code(c) });
    }
  }
  return tokens;
}

function parseClass(
  chars: string[],
  start: number,
  foldCase: boolean,
): { token: Token; end: number } | undefined {
  let i = start;
  let negate = false;
  if (chars[i] === "!" || chars[i] === "^") {
    negate = true;
    i++;
  }
  const ranges: [number, number][] = [];
  let first = true;
  while (i < chars.length) {
    let c = chars[i]!;
    if (c === "]" && !first) return { token: { kind: "class", negate, ranges }, end: i };
    first = false;
    if (c === "\\" && i + 1 < chars.length) c = chars[++i]!;
    if (chars[i + 1] === "-" && i + 2 < chars.length && chars[i + 2] !== "]") {
      let to = chars[i + 2]!;
      i += 2;
      if (to === "\\" && i + 1 < chars.length) to = chars[++i]!;
      const lo = c.codePointAt(0)!;
      const hi = to.codePointAt(0)!;
      if (lo > hi) {
        throw new RangeError(`Invalid character range '${c}-${to}' in pattern '${chars.join("")}'`);
      }
      ranges.push([lo, hi]);
      if (foldCase) addFolded(ranges, lo, hi);
    } else {
      const code = c.codePointAt(0)!;
      ranges.push([fold(code, foldCase), fold(code, foldCase)]);
    }
    i++;
  }
  return undefined;
}

/** With case folding, a range covering upper-case letters also covers their lower-case forms. */
function addFolded(ranges: [number, number][], lo: number, hi: number): void {
  const from = Math.max(lo, 0x41);
  const to = Math.min(hi, 0x5a);
  if (from <= to) ranges.push([from + 0x20, to + 0x20]);
}
