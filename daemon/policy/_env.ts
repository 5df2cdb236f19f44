/**
 * What a request's `env` option may set when the daemon has an allow list: an allowed program must not be turned
 * into another program through its environment (a preloaded library, a shell start-up file, a tool hook).
 *
 * @module
 */

import { Glob } from "./_glob.ts";
import { PolicyError } from "./policy_error.ts";

/**
 * Names (globs, matched ignoring ASCII case) refused in a request's `env` when an allow list is present and no
 * `envAllow` is given. Best effort: it covers the loader, shell start-up, `PATH`, the home and configuration
 * directories whose files tools obey, and the hooks of common tools; a program not listed may have its own.
 */
export const ENV_DENY: readonly string[] = Object.freeze([
  // Dynamic loader and C library: run code inside any program.
  "LD_*",
  "DYLD_*",
  "GLIBC_TUNABLES",
  "GCONV_PATH",
  "LOCPATH",
  "NLSPATH",
  "MALLOC_*",
  // Shell start-up and functions: run code in any shell or shell script an allowed program starts.
  "BASH_*",
  "ENV",
  "PROMPT_COMMAND",
  "PS[0-4]",
  "SHELLOPTS",
  "BASHOPTS",
  "IFS",
  "CDPATH",
  "ZDOTDIR",
  "FPATH",
  "HISTFILE",
  "SHELL",
  // Where programs and configuration are found.
  "PATH",
  "HOME",
  "XDG_*",
  // Commands tools run for you.
  "EDITOR",
  "VISUAL",
  "PAGER",
  "MANPAGER",
  "MANOPT",
  "BROWSER",
  "LESS*",
  "VIMINIT",
  "EXINIT",
  "MYVIMRC",
  "VIMRUNTIME",
  "SYSTEMD_*",
  "*_ASKPASS",
  "GIT_*",
  "SSH_*",
  "RSYNC_*",
  "CVS_RSH",
  "TAR_OPTIONS",
  "MAKEFLAGS",
  "MAKEFILES",
  "MFLAGS",
  "OPENSSL_*",
  "WGETRC",
  "CURL_HOME",
  "AWKPATH",
  "AWKLIBPATH",
  // Interpreters.
  "PYTHON*",
  "PERL*",
  "RUBY*",
  "GEM_*",
  "NODE_*",
  "NPM_CONFIG_*",
  "DENO_*",
  "JAVA_TOOL_OPTIONS",
  "_JAVA_OPTIONS",
  "JDK_JAVA_OPTIONS",
  "CLASSPATH",
  "LUA_*",
  "TCLLIBPATH",
  "R_*",
  "PHPRC",
  "PHP_INI_SCAN_DIR",
  // The daemon's own settings.
  "SANDD_*",
]);

/** Checks the names of a request's `env` option. */
export class EnvRule {
  readonly #allow: Glob[] | undefined;
  readonly #deny: Glob[];

  /**
   * @param allow Permitted names (globs); `undefined` for "all but `deny`".
   * @param deny Refused names (globs), used when `allow` is `undefined`.
   */
  constructor(allow: readonly string[] | undefined, deny: readonly string[]) {
    const foldCase = Deno.build.os === "windows";
    this.#allow = allow?.map((name) => new Glob(name, { foldCase }));
    this.#deny = deny.map((name) => new Glob(name, { foldCase: true }));
  }

  /**
   * Refuse a name the rule does not permit.
   *
   * @param env The request's `env` option.
   * @throws {PolicyError} With rule `"env"`, naming the variable.
   */
  check(env: Record<string, string> | undefined): void {
    if (env === undefined) return;
    for (const name of Object.keys(env)) {
      if (this.#allow !== undefined) {
        if (!this.#allow.some((glob) => glob.matches(name))) {
          throw new PolicyError(
            `Environment variable '${name}' is not in the daemon's env allow list`,
            { rule: "env" },
          );
        }
      } else {
        const denied = this.#deny.find((glob) => glob.matches(name));
        if (denied !== undefined) {
          throw new PolicyError(
            `Environment variable '${name}' may not be set when the daemon has an allow list (it matches '${denied.pattern}')`,
            { rule: "env" },
          );
        }
      }
    }
  }
}
