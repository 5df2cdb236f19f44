/**
 * Confinement of file paths to a root directory, symlinks included: a by-name check, used by the policy
 * (`Policy.confine`). The daemon's file service does not rely on it: it resolves each path once to a descriptor
 * beneath the root (`_file_paths.ts`), which no later swap can redirect.
 *
 * @module
 */

import { basename, isAbsolute, join, relative, resolve, sep } from "node:path";
import { PolicyError } from "./policy/mod.ts";

/**
 * Resolve `requested` to a real path inside `root`, or refuse it.
 *
 * Rules:
 * - A relative path is resolved against `root`; an absolute path must already lie inside `root` (or inside the
 *   real path of `root`, when `root` itself is reached through a symlink).
 * - `..` components are resolved lexically first, so `../x` and `a/../../x` are refused as escapes.
 * - Symlinks are resolved: the longest existing prefix of the path goes through {@linkcode Deno.realPath} and must
 *   stay inside the real path of `root`; so a link inside the root that points outside is refused.
 * - The target itself may not exist yet (an upload destination, a directory to create); its missing components
 *   are appended to the resolved prefix. A dangling symlink among those components is refused, because writing
 *   through it would create a file wherever it points.
 * - `root` itself is allowed.
 *
 * The returned path is absolute, free of `..` and of symlinks in its existing part; callers must use it (not
 * the requested path) for the file operation. A check-then-use race remains if another process can swap a
 * directory inside the root for a symlink between this check and the operation.
 *
 * @example Confine an upload destination
 * ```ts
 * import { confinePath } from "./_path_confine.ts";
 * import { PolicyError } from "./policy/mod.ts";
 * import { equal, rejects } from "node:assert/strict";
 *
 * const root = await Deno.realPath(await Deno.makeTempDir());
 * try {
 *   equal(await confinePath(root, "new/file.txt"), `${root}/new/file.txt`);
 *   await rejects(confinePath(root, "../escape"), PolicyError);
 *   await rejects(confinePath(root, "/etc/passwd"), PolicyError);
 * } finally {
 *   await Deno.remove(root, { recursive: true });
 * }
 * ```
 *
 * @param root The directory every path must stay in. It must exist.
 * @param requested The path asked for, relative to `root` or absolute.
 * @returns The resolved real path inside `root`.
 * @throws {TypeError} If an argument is not a non-empty string or contains a NUL character.
 * @throws {PolicyError} With rule `"root"` if the path escapes `root`, or `root` cannot be resolved.
 */
export async function confinePath(root: string, requested: string): Promise<string> {
  checkPathArgument("root", root);
  checkPathArgument("requested", requested);
  const lexicalRoot = resolve(root);
  let realRoot: string;
  try {
    realRoot = await Deno.realPath(lexicalRoot);
  } catch (error) {
    throw new PolicyError(`Root directory '${root}' cannot be resolved: ${messageOf(error)}`, {
      rule: "root",
      cause: error,
    });
  }
  const target = isAbsolute(requested) ? resolve(requested) : resolve(lexicalRoot, requested);
  if (!isInside(lexicalRoot, target) && !isInside(realRoot, target)) {
    throw escapeError(requested, root);
  }

  // Walk up from the target to its longest existing prefix.
  const missing: string[] = [];
  let prefix = target;
  let realPrefix: string | undefined;
  while (realPrefix === undefined) {
    try {
      realPrefix = await Deno.realPath(prefix);
    } catch (error) {
      if (
        !(error instanceof Deno.errors.NotFound) && !(error instanceof Deno.errors.NotADirectory)
      ) {
        throw new PolicyError(`Path '${requested}' cannot be resolved: ${messageOf(error)}`, {
          rule: "root",
          cause: error,
        });
      }
      if (await isSymlink(prefix)) {
        throw new PolicyError(`Path '${requested}' goes through a dangling symlink`, {
          rule: "root",
        });
      }
      const parent = resolve(prefix, "..");
      if (parent === prefix) {
        throw escapeError(requested, root);
      }
      missing.unshift(basename(prefix));
      prefix = parent;
    }
  }
  const real = missing.length === 0 ? realPrefix : join(realPrefix, ...missing);
  if (!isInside(realRoot, real)) {
    throw escapeError(requested, root);
  }
  return real;
}

function checkPathArgument(name: string, value: unknown): asserts value is string {
  if (typeof value !== "string" || value === "") {
    throw new TypeError(`Argument '${name}' must be a non-empty string, got ${String(value)}`);
  }
  if (value.includes("\0")) {
    throw new TypeError(
      `Argument '${name}' must not contain a NUL character, got ${JSON.stringify(value)}`,
    );
  }
}

function isInside(parent: string, child: string): boolean {
  if (parent === child) return true;
  const rel = relative(parent, child);
  return rel !== "" && !rel.startsWith(".." + sep) && rel !== ".." && !isAbsolute(rel);
}

async function isSymlink(path: string): Promise<boolean> {
  try {
    return (await Deno.lstat(path)).isSymlink;
  } catch {
    return false;
  }
}

function escapeError(requested: string, root: string): PolicyError {
  return new PolicyError(`Path '${requested}' is outside the root directory '${root}'`, {
    rule: "root",
  });
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
