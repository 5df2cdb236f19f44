/**
 * Program paths as the policy matches them: a path with a `/` is made absolute against the working directory and
 * normalised (`.`, `..` and repeated `/` resolved), so `/usr/bin/../../tmp/x` is matched as `/tmp/x`.
 *
 * @module
 */

import { resolve } from "node:path";

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
