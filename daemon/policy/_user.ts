/**
 * User lookup for `runAs`, and finding the helper programs the wrapper uses.
 *
 * @module
 */

import { PolicyError } from "./policy_error.ts";

/** A user children run as. */
export interface ResolvedUser {
  /** User id. */
  uid: number;
  /** Primary group id. */
  gid: number;
  /** The uid has a passwd entry, so supplementary groups can be initialised. */
  named: boolean;
}

/**
 * Resolve a user name or numeric uid from `/etc/passwd`, else with `id -u` / `id -g`.
 *
 * @param runAs A user name or numeric uid.
 * @returns The user.
 * @throws {PolicyError} With rule `"runAs"` for an unknown name.
 */
export function resolveUser(runAs: string): ResolvedUser {
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

/**
 * Find an executable in the daemon's `PATH` (absolute entries only).
 *
 * @param name The program name.
 * @returns Its absolute path, or `undefined`.
 */
export function findExecutable(name: string): string | undefined {
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
