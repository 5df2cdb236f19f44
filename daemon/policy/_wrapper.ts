/**
 * The argv prefix that applies a policy's resource limits and user switch (`prlimit`, `setpriv`, or `sh -c
 * 'ulimit ...'`); see {@linkcode Policy.wrapArgv} for the rules.
 *
 * @module
 */

import { findExecutable, resolveUser } from "./_user.ts";
import type { PolicyOptions } from "./options.ts";
import { PolicyError } from "./policy_error.ts";

/**
 * Build the wrapper argv prefix for these options.
 *
 * @param options The policy's `cpuSeconds`, `memoryBytes` and `runAs`.
 * @returns The prefix (empty when nothing applies).
 * @throws {PolicyError} If a limit or the user switch cannot be applied on this system.
 */
export function buildWrapper(
  options: Pick<PolicyOptions, "cpuSeconds" | "memoryBytes" | "runAs">,
): string[] {
  const { cpuSeconds, memoryBytes, runAs } = options;
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
