/**
 * The error of a policy refusal.
 *
 * @module
 */

/** Options of a {@linkcode PolicyError}. */
export interface PolicyErrorOptions extends ErrorOptions {
  /**
   * The rule that refused, e.g. `"allow"`, `"deny:rm *"`, `"noShell"`, `"shellMeta"`, `"env"`, `"maxProcesses"`,
   * `"root"`.
   */
  rule: string;
}

/**
 * The daemon's policy refused an action.
 *
 * @example Inspect a refusal
 * ```ts
 * import { Policy, PolicyError } from "./mod.ts";
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
  /**
   * The rule that refused, e.g. `"allow"`, `"deny:rm *"`, `"noShell"`, `"shellMeta"`, `"env"`, `"maxProcesses"`,
   * `"root"`.
   */
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
