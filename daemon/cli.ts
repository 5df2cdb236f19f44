/**
 * Command-line parsing of the `sandd` daemon.
 *
 * @module
 */

import { proxyFor } from "./_proxy.ts";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { DAEMON_ID_RULE, isDaemonId } from "@sandd/protocol/constants";
import { VERSION } from "@sandd/protocol/version";
import type { PolicyOptions } from "./policy/mod.ts";
import { parseForwardPorts } from "./forward/forward_policy.ts";
import { defaultStateDir } from "./snapshots/state_dir.ts";

/** Usage text printed by `--help`. */
export const USAGE: string =
  `sandd ${VERSION} — the SandD worker daemon. Dials out to a controller over WebSocket.

Usage: sandd [daemon] --server-url ws://HOST:PORT/ws [--server-url ...] [options]
       sandd COMMAND ...       (serve, daemons, exec, shell, cp, ...: see 'sandd help')

Connection:
  --server-url URL        controller URL, ws:// or wss:// (env SANDD_SERVER_URL). Repeat it (or give
                          SANDD_SERVER_URL a comma-separated list) for several controllers: the daemon
                          holds one link; when it drops or a connect fails, the next attempt goes to
                          the next URL in order (round robin), with the same backoff and jitter
  --daemon-id ID          this worker's id (env SANDD_DAEMON_ID; default: the host name)
  --label KEY=VALUE       a label; repeat for more
  --token TOKEN           bearer token; visible to local users in /proc/PID/cmdline, so prefer
                          --token-file or env SANDD_TOKEN (SANDD_* is removed from the environment
                          at start-up, so children never see it)
  --token-file FILE       read the bearer token from FILE
  --ca-cert FILE          trust this PEM CA for wss, besides the system roots
  --proxy URL             reach the controller through a proxy: http://[user:pass@]host:port (CONNECT),
                          socks5://host:port or socks5h://host:port (the proxy resolves the name);
                          'none' for a direct connection. Without it, HTTPS_PROXY (wss://) or HTTP_PROXY
                          (ws://), then ALL_PROXY, apply unless NO_PROXY lists the host; a loopback
                          controller is never reached through a proxy from the environment

Processes:
  --retain-bytes N        output kept per stream for resume (default 4194304)
  --detached-hold SEC     outage policy: when the link drops, keep backpressure on running processes for SEC
                          seconds (a process blocks once --retain-bytes are unread, as behind a stalled ssh
                          link), so a controller back within it resumes with nothing lost; after it, output
                          is read on and the oldest bytes dropped, reported as a gap (default 300; 0 = drop)
  --orphan-timeout SEC    kill a process nobody is attached to after SEC seconds; 0 = never (default 3600)
  --exit-retention SEC    keep the exit status of ended processes (default 600)
  --kill-grace SEC        SIGTERM escalates to SIGKILL after SEC seconds (default 5)

Files:
  --root DIR              confine every file operation to DIR (refuses .., outside paths and every symlink);
                          the one root: it replaces a --policy file's root
  --state-dir DIR         where the daemon keeps its state: the workspace snapshot store (env SANDD_STATE_DIR;
                          default $XDG_STATE_HOME/sandd, else ~/.local/state/sandd; created 0700; must lie
                          outside --root)

Policy (what this worker lets any controller do; flags override the same fields of --policy):
  --policy FILE           JSON policy file (fields: allow, deny, noShell, noPty, noFiles, root, runAs,
                          envStrip, envAllow, envSet, maxProcesses, maxSessions, defaultTimeoutMs,
                          maxTimeoutMs, cpuSeconds, memoryBytes, maxOutputBytes, forward,
                          forwardHosts, maxTunnels)
  --allow PATTERN         only commands matching a pattern run (glob; repeat); shell strings must then be
                          one simple command without ; & | $ \` ( ) < > or newlines. The program is matched
                          as its basename, its absolute normalised path (.. resolved) and, without
                          .., as given; in it * and ? never match / (** does). Do not allow programs
                          that run other commands (shells, env, git, find, xargs, interpreters...):
                          see SECURITY.md
  --deny PATTERN          refuse commands matching PATTERN, wherever a shell string would start them (repeat);
                          best effort, not a boundary
  --env-allow NAME        names (glob; repeat) a request's env option may set; others are refused. Without
                          it, an allow list refuses loader, shell start-up and tool-hook variables
                          (LD_*, BASH_ENV, ENV, PATH, GIT_*, PYTHON*, NODE_OPTIONS, ...)
  --no-shell              refuse shell strings (sh -c), interactive shells and any shell program
                          (sh, bash, dash, zsh, busybox sh, env -S ...) wherever it would start: argv
                          arrays of other programs only
  --no-pty                refuse terminal sessions
  --no-files              refuse file operations
  --run-as USER           run children as USER (the daemon must run as root; uses setpriv)
  --env-strip NAME        remove variables matching NAME (glob) from every child's environment (repeat)
  --env-set KEY=VALUE     force a variable in every child's environment (repeat)
  --max-processes N       most processes running at once
  --max-sessions N        most terminal sessions open at once
  --default-timeout SEC   timeout of a command that asks for none
  --max-timeout SEC       largest timeout a command may ask for
  --cpu-seconds N         CPU-time limit of each process (RLIMIT_CPU, via prlimit)
  --memory-bytes N        address-space limit of each process (RLIMIT_AS, via prlimit)
  --max-output-bytes N    output kept per stream of each process; the rest is read and dropped (flagged)

Port forwarding (tunnels to this worker's TCP ports; see SECURITY.md):
  --forward SPEC          none | all | PORTS (e.g. 3000,8000-8999): ports a controller may reach on
                          127.0.0.1 (default all, or none when --allow restricts commands)
  --forward-host HOST     also allow tunnels to HOST (repeat); by default only 127.0.0.1
  --max-tunnels N         most tunnel connections open at once per controller link (default 256)

Reconnect (exponential backoff with full jitter):
  --reconnect-initial SEC upper bound of the first delay (default 1)
  --reconnect-max SEC     cap of any delay (default 30); for 5 minutes after a link that was up
                          dropped, delays are capped at 2 s (jittered), so the daemon is back within
                          about 2 s of the controller returning, inside the controller's grace

Logging:
  --log-level LEVEL       debug | info | warning | error (default info)
  --log-format FORMAT     text | json (default text)

  --help                  print this and exit
  --version               print the version and exit

Exit codes: 0 after SIGINT/SIGTERM, 2 for bad flags, 3 when the controller refused this daemon for good
(close code 4000 or 4001, or HTTP 426: another protocol version); other refusals are retried.`;

/** A flag was wrong: print the message and exit 2. */
export class UsageError extends Error {
  /** Stable code. */
  readonly code: "USAGE" = "USAGE";
  /**
   * @param message What was wrong.
   */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Parsed daemon configuration. */
export interface DaemonConfig {
  /** `--help` was given. */
  help: boolean;
  /** `--version` was given. */
  version: boolean;
  /** The first controller URL (the one the daemon tries first). */
  serverUrl: string;
  /** Every controller URL, in the order the daemon tries them (`--server-url` repeated, or SANDD_SERVER_URL split on commas). */
  serverUrls: string[];
  /** Daemon id. */
  id: string;
  /** Labels. */
  labels: Record<string, string>;
  /** Bearer token. */
  token?: string;
  /** CA certificate files' contents. */
  caCerts: string[];
  /** The proxy to reach the first controller URL through (`--proxy` or the environment), or null. */
  proxy: URL | null;
  /** The proxy for each of {@linkcode DaemonConfig.serverUrls}, in the same order (null: direct). */
  proxies: (URL | null)[];
  /** Bytes retained per stream. */
  retainBytes: number;
  /** Outage hold in ms. */
  detachedHoldMs: number;
  /** Orphan timeout in ms. */
  orphanTimeoutMs: number;
  /** Exit retention in ms. */
  exitRetentionMs: number;
  /** Kill grace in ms. */
  killGraceMs: number;
  /** Directory every file operation is confined to (`--root`), absolute. */
  root?: string;
  /** The daemon's state directory (`--state-dir`), absolute: the snapshot store lives in it. */
  stateDir: string;
  /** First reconnect delay bound in ms. */
  reconnectInitialMs: number;
  /** Reconnect delay cap in ms. */
  reconnectMaxMs: number;
  /** Log level. */
  logLevel: "debug" | "info" | "warning" | "error";
  /** Log format. */
  logFormat: "text" | "json";
  /** Warnings about the flags given (e.g. `--token` on the command line), for the caller to print. */
  warnings: string[];
  /** Policy file (`--policy`), read and validated by the caller. */
  policyFile?: string;
  /** Policy fields given as flags; they override the policy file's. Not validated here beyond their syntax. */
  policy: PolicyOptions;
}

/** Refuse a controller URL that is not ws:// or wss://, naming it. */
function checkServerUrl(url: string): void {
  if (!/^wss?:\/\/./.test(url)) {
    throw new UsageError(`--server-url must start with ws:// or wss://, got '${url}'`);
  }
  try {
    new URL(url);
  } catch {
    throw new UsageError(`--server-url must be a valid URL, got '${url}'`);
  }
}

function number(name: string, value: string | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || value.trim() === "") {
    throw new UsageError(`--${name} must be a number >= ${min}, got '${value}'`);
  }
  return n;
}

/**
 * Parse daemon flags and environment.
 *
 * @example Parse flags
 * ```ts
 * import { parseDaemonArgs } from "./cli.ts";
 * const config = parseDaemonArgs(["--server-url", "ws://127.0.0.1:8765/ws", "--label", "role=gpu"], {});
 * console.assert(config.labels.role === "gpu");
 * ```
 *
 * @param args Command-line arguments.
 * @param env Environment variables (`SANDD_SERVER_URL`, `SANDD_DAEMON_ID`, `SANDD_TOKEN`).
 * @returns The configuration.
 * @throws {UsageError} For an unknown flag, a missing URL or a bad value.
 */
export function parseDaemonArgs(
  args: string[],
  env: Record<string, string | undefined>,
): DaemonConfig {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        "server-url": { type: "string", multiple: true },
        "daemon-id": { type: "string" },
        label: { type: "string", multiple: true },
        token: { type: "string" },
        "token-file": { type: "string" },
        "ca-cert": { type: "string", multiple: true },
        proxy: { type: "string" },
        "retain-bytes": { type: "string" },
        "detached-hold": { type: "string" },
        "orphan-timeout": { type: "string" },
        "exit-retention": { type: "string" },
        "kill-grace": { type: "string" },
        root: { type: "string" },
        "state-dir": { type: "string" },
        policy: { type: "string" },
        allow: { type: "string", multiple: true },
        deny: { type: "string", multiple: true },
        "no-shell": { type: "boolean" },
        "no-pty": { type: "boolean" },
        "no-files": { type: "boolean" },
        "run-as": { type: "string" },
        "env-strip": { type: "string", multiple: true },
        "env-set": { type: "string", multiple: true },
        "env-allow": { type: "string", multiple: true },
        "max-processes": { type: "string" },
        "max-sessions": { type: "string" },
        "default-timeout": { type: "string" },
        "max-timeout": { type: "string" },
        "cpu-seconds": { type: "string" },
        "memory-bytes": { type: "string" },
        "max-output-bytes": { type: "string" },
        forward: { type: "string" },
        "forward-host": { type: "string", multiple: true },
        "max-tunnels": { type: "string" },
        "reconnect-initial": { type: "string" },
        "reconnect-max": { type: "string" },
        "log-level": { type: "string" },
        "log-format": { type: "string" },
        help: { type: "boolean" },
        version: { type: "boolean" },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const base = {
    help: values.help ?? false,
    version: values.version ?? false,
  };
  const serverUrls = values["server-url"] ??
    (env.SANDD_SERVER_URL ?? "").split(",").map((url) => url.trim()).filter((url) => url !== "");
  if (!base.help && !base.version) {
    if (!serverUrls.length) {
      throw new UsageError("--server-url is required (or set SANDD_SERVER_URL)");
    }
    for (const url of serverUrls) checkServerUrl(url);
  }
  const serverUrl = serverUrls[0] ?? "";
  const labels: Record<string, string> = {};
  for (const label of values.label ?? []) {
    const eq = label.indexOf("=");
    if (eq <= 0) throw new UsageError(`--label must be KEY=VALUE, got '${label}'`);
    labels[label.slice(0, eq)] = label.slice(eq + 1);
  }
  const id = values["daemon-id"] ?? env.SANDD_DAEMON_ID ?? Deno.hostname();
  if (!isDaemonId(id)) {
    throw new UsageError(`--daemon-id must be ${DAEMON_ID_RULE}, got '${id}'`);
  }
  let token = values.token ?? env.SANDD_TOKEN;
  const warnings: string[] = [];
  if (values.token !== undefined) {
    warnings.push(
      "--token puts the token in this process's command line, which local users can read in /proc; " +
        "use --token-file FILE or the SANDD_TOKEN environment variable instead",
    );
  }
  if (values["token-file"] !== undefined) {
    try {
      token = Deno.readTextFileSync(values["token-file"]).trim();
    } catch (error) {
      throw new UsageError(
        `Cannot read --token-file '${values["token-file"]}': ${(error as Error).message}`,
      );
    }
  }
  const caCerts = (values["ca-cert"] ?? []).map((file) => {
    try {
      return Deno.readTextFileSync(file);
    } catch (error) {
      throw new UsageError(`Cannot read --ca-cert '${file}': ${(error as Error).message}`);
    }
  });
  const proxies: (URL | null)[] = [];
  for (const url of serverUrls) {
    if (!/^wss?:\/\/./.test(url)) continue; // --help or --version with a bad URL: not checked
    try {
      proxies.push(proxyFor(new URL(url), env, values.proxy));
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
  const proxy = proxies[0] ?? null;
  if (values.proxy !== undefined && proxy?.password) {
    warnings.push(
      "--proxy carries a password, visible to local users in /proc/PID/cmdline; prefer HTTPS_PROXY/HTTP_PROXY in the environment",
    );
  }
  let root: string | undefined;
  if (values.root !== undefined) {
    try {
      root = Deno.realPathSync(values.root);
      if (!Deno.statSync(root).isDirectory) throw new Error("not a directory");
    } catch (error) {
      throw new UsageError(
        `--root must be a directory, got '${values.root}': ${(error as Error).message}`,
      );
    }
  }
  const stateDirFlag = values["state-dir"] ?? env.SANDD_STATE_DIR;
  if (stateDirFlag !== undefined && (stateDirFlag === "" || stateDirFlag.includes("\0"))) {
    throw new UsageError(`--state-dir must be a directory path, got '${stateDirFlag}'`);
  }
  const stateDir = stateDirFlag === undefined ? defaultStateDir(env) : resolve(stateDirFlag);
  const policy: PolicyOptions = {};
  // One root: --root is the policy's root field, so it replaces a policy file's root rather than stacking on it.
  if (root !== undefined) policy.root = root;
  if (values["env-allow"] !== undefined) policy.envAllow = values["env-allow"];
  if (values.allow !== undefined) policy.allow = values.allow;
  if (values.deny !== undefined) policy.deny = values.deny;
  if (values["no-shell"]) policy.noShell = true;
  if (values["no-pty"]) policy.noPty = true;
  if (values["no-files"]) policy.noFiles = true;
  if (values["run-as"] !== undefined) policy.runAs = values["run-as"];
  if (values["env-strip"] !== undefined) policy.envStrip = values["env-strip"];
  if (values["env-set"] !== undefined) {
    const envSet: Record<string, string> = {};
    for (const pair of values["env-set"]) {
      const eq = pair.indexOf("=");
      if (eq <= 0) throw new UsageError(`--env-set must be KEY=VALUE, got '${pair}'`);
      envSet[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    policy.envSet = envSet;
  }
  const integer = (name: string, value: string | undefined): number | undefined => {
    if (value === undefined) return undefined;
    const n = Number(value);
    if (value.trim() === "" || !Number.isSafeInteger(n) || n < 1) {
      throw new UsageError(`--${name} must be an integer >= 1, got '${value}'`);
    }
    return n;
  };
  const maxProcesses = integer("max-processes", values["max-processes"]);
  if (maxProcesses !== undefined) policy.maxProcesses = maxProcesses;
  const maxSessions = integer("max-sessions", values["max-sessions"]);
  if (maxSessions !== undefined) policy.maxSessions = maxSessions;
  const cpuSeconds = integer("cpu-seconds", values["cpu-seconds"]);
  if (cpuSeconds !== undefined) policy.cpuSeconds = cpuSeconds;
  const memoryBytes = integer("memory-bytes", values["memory-bytes"]);
  if (memoryBytes !== undefined) policy.memoryBytes = memoryBytes;
  const maxOutputBytes = integer("max-output-bytes", values["max-output-bytes"]);
  if (maxOutputBytes !== undefined) policy.maxOutputBytes = maxOutputBytes;
  if (values["default-timeout"] !== undefined) {
    policy.defaultTimeoutMs = Math.round(
      number("default-timeout", values["default-timeout"], 0, 0.001) * 1000,
    );
  }
  if (values["max-timeout"] !== undefined) {
    policy.maxTimeoutMs = Math.round(number("max-timeout", values["max-timeout"], 0, 0.001) * 1000);
  }
  // port forwarding
  if (values.forward !== undefined) {
    try {
      parseForwardPorts(values.forward);
    } catch (error) {
      throw new UsageError(`--forward: ${(error as Error).message}`);
    }
    policy.forward = values.forward.trim();
  }
  if (values["forward-host"] !== undefined) policy.forwardHosts = values["forward-host"];
  const maxTunnels = integer("max-tunnels", values["max-tunnels"]);
  if (maxTunnels !== undefined) policy.maxTunnels = maxTunnels;
  const logLevel = values["log-level"] ?? "info";
  if (!["debug", "info", "warning", "error"].includes(logLevel)) {
    throw new UsageError(`--log-level must be debug, info, warning or error, got '${logLevel}'`);
  }
  const logFormat = values["log-format"] ?? "text";
  if (logFormat !== "text" && logFormat !== "json") {
    throw new UsageError(`--log-format must be text or json, got '${logFormat}'`);
  }
  return {
    ...base,
    serverUrl,
    serverUrls,
    id,
    labels,
    ...(token ? { token } : {}),
    caCerts,
    proxy,
    proxies,
    ...(root !== undefined ? { root } : {}),
    stateDir,
    retainBytes: number("retain-bytes", values["retain-bytes"], 4 * 1024 * 1024, 65536),
    detachedHoldMs: number("detached-hold", values["detached-hold"], 300, 0) * 1000,
    orphanTimeoutMs: number("orphan-timeout", values["orphan-timeout"], 3600, 0) * 1000,
    exitRetentionMs: number("exit-retention", values["exit-retention"], 600, 0) * 1000,
    killGraceMs: number("kill-grace", values["kill-grace"], 5, 0) * 1000,
    reconnectInitialMs: number("reconnect-initial", values["reconnect-initial"], 1, 0.01) * 1000,
    reconnectMaxMs: number("reconnect-max", values["reconnect-max"], 30, 0.01) * 1000,
    logLevel: logLevel as DaemonConfig["logLevel"],
    logFormat,
    warnings,
    ...(values.policy !== undefined ? { policyFile: values.policy } : {}),
    policy,
  };
}
