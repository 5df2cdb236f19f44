/**
 * Program paths as the policy matches them: a path with a `/` is made absolute against the working directory and
 * normalised (`.`, `..` and repeated `/` resolved), so `/usr/bin/../../tmp/x` is matched as `/tmp/x`.
 *
 * @module
 */

import { delimiter, resolve } from "node:path";

/** A program word as the policy sees it. */
export interface ProgramPath {
  /** The word as given. */
  given: string;
  /** The absolute, normalised path; `undefined` for a bare name (looked up in `PATH`). */
  normalized: string | undefined;
  /** The word has a `..` component, so the kernel's reading of it may differ from its text. */
  climbs: boolean;
}

/**
 * Normalise a program word.
 *
 * @param program The program word.
 * @param cwd The working directory the program would be resolved against (default: the daemon's).
 * @returns The forms to match.
 */
export function programPath(program: string, cwd: string | undefined): ProgramPath {
  const separated = Deno.build.os === "windows" ? program.replaceAll("\\", "/") : program;
  if (!separated.includes("/")) return { given: program, normalized: undefined, climbs: false };
  const normalized = cwd === undefined ? resolve(separated) : resolve(cwd, separated);
  return { given: program, normalized, climbs: separated.split("/").includes("..") };
}

/**
 * The files a program word may run, symlinks resolved (`realpath`): for a path, the file it names; for a bare name,
 * the first executable regular file of each `PATH` value given (the child's `PATH` may be any of them). Names that
 * lead to no file are left out.
 *
 * @param program The program word.
 * @param cwd The working directory relative paths (and empty `PATH` entries) resolve against (default: the
 * daemon's).
 * @param pathVariables The `PATH` values the program may be looked up in.
 * @returns The real paths, without duplicates.
 */
export function programFiles(
  program: string,
  cwd: string | undefined,
  pathVariables: readonly (string | undefined)[],
): string[] {
  const base = cwd ?? Deno.cwd();
  const found = new Set<string>();
  const real = (path: string): string | undefined => {
    try {
      const info = Deno.statSync(path);
      if (!info.isFile) return undefined;
      return Deno.realPathSync(path);
    } catch {
      return undefined;
    }
  };
  const normalized = programPath(program, cwd).normalized;
  if (normalized !== undefined) {
    const file = real(normalized);
    if (file !== undefined) found.add(file);
    return [...found];
  }
  for (const pathVariable of new Set(pathVariables)) {
    if (pathVariable === undefined) continue;
    for (const dir of pathVariable.split(delimiter)) {
      const candidate = resolve(base, dir, program);
      const info = (() => {
        try {
          return Deno.statSync(candidate);
        } catch {
          return undefined;
        }
      })();
      if (!info?.isFile || ((info.mode ?? 0o111) & 0o111) === 0) continue;
      const file = real(candidate);
      if (file !== undefined) found.add(file);
      break;
    }
  }
  return [...found];
}
