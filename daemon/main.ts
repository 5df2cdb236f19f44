/**
 * The `sandd` entry point: the worker daemon, and (loaded only when asked for) the standalone controller and the
 * operator commands of `daemon/commands/`.
 *
 * ```sh
 * deno run -A daemon/main.ts --server-url ws://host:8765/ws --daemon-id worker-1 --label role=gpu
 * deno run -A daemon/main.ts daemon --server-url ws://host:8765/ws   # the same, spelled out
 * deno run -A daemon/main.ts serve --port 8765                         # a standalone controller
 * deno run -A daemon/main.ts exec worker-1 -- uname -a                 # an operator command
 * ```
 *
 * @module
 */

import { configure, getJsonLinesFormatter, getTextFormatter } from "@logtape/logtape";
import { VERSION } from "@sandd/protocol/version";
import { type DaemonConfig, parseDaemonArgs, USAGE, UsageError } from "./cli.ts";
import { Daemon, RefusedError } from "./daemon.ts";
import { Policy, type PolicyOptions } from "./policy/mod.ts";
import { fileHandlers } from "./files.ts";
import { snapshotHandlers } from "./snapshots/mod.ts";
import { acquireFs, FS_UNSUPPORTED, releaseFs } from "./ffi/fs.ts";

/**
 * `sandd daemon ...` (or bare flags) runs the worker; any other first word is a subcommand of
 * `commands/mod.ts`, imported only then so that the worker never loads the controller's code.
 */
async function main(args: string[]): Promise<number> {
  const [first, ...rest] = args;
  if (first === "daemon") return await daemonMain(rest);
  if (first !== undefined && !first.startsWith("-")) {
    const { runCommand } = await import("./commands/mod.ts");
    return await runCommand(first, rest);
  }
  return await daemonMain(args);
}

async function daemonMain(args: string[]): Promise<number> {
  let config: DaemonConfig;
  try {
    config = parseDaemonArgs(args, Deno.env.toObject());
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`sandd: ${error.message}\nRun 'sandd --help' for usage.`);
      return 2;
    }
    throw error;
  }
  // The daemon's own settings (the token above all) must not reach children: a child spawned without an env
  // option inherits this process's environment as it is, so remove them here, once they have been read.
  for (const name of Object.keys(Deno.env.toObject())) {
    if (name.startsWith("SANDD_")) Deno.env.delete(name);
  }
  for (const warning of config.warnings) console.error(`sandd: warning: ${warning}`);
  if (config.help) {
    console.log(USAGE);
    return 0;
  }
  if (config.version) {
    console.log(`sandd ${VERSION}`);
    return 0;
  }
  let policy: Policy;
  try {
    const file = config.policyFile !== undefined
      ? (await Policy.fromFile(config.policyFile)).options
      : {};
    const merged: PolicyOptions = Policy.merge(file, config.policy);
    // One root for every file operation: --root or else the policy file's, resolved now and checked once.
    if (merged.root !== undefined) merged.root = rootDirectory(merged.root);
    policy = new Policy(merged);
    // Fail now, not on the first command, when a user switch or a resource limit cannot be applied here.
    policy.wrapArgv(["true"]);
  } catch (error) {
    console.error(`sandd: ${(error as Error).message}\nRun 'sandd --help' for usage.`);
    return 2;
  }
  const encoder = new TextEncoder();
  const formatter = config.logFormat === "json" ? getJsonLinesFormatter() : getTextFormatter();
  await configure({
    sinks: {
      stderr: (record) => {
        Deno.stderr.writeSync(encoder.encode(formatter(record)));
      },
    },
    loggers: [
      { category: ["sandd"], lowestLevel: config.logLevel, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
  const daemon = new Daemon({
    serverUrl: config.serverUrls,
    id: config.id,
    labels: config.labels,
    ...(config.token ? { token: config.token } : {}),
    caCerts: config.caCerts,
    ...(config.proxies.some((p) => p) ? { proxy: config.proxies } : {}),
    retainBytes: config.retainBytes,
    detachedHoldMs: config.detachedHoldMs,
    orphanTimeoutMs: config.orphanTimeoutMs,
    exitRetentionMs: config.exitRetentionMs,
    killGraceMs: config.killGraceMs,
    reconnectInitialMs: config.reconnectInitialMs,
    reconnectMaxMs: config.reconnectMaxMs,
    // The file service gets the one root; the policy only to refuse everything under noFiles.
    handlers: {
      ...fileHandlers({
        ...(policy.options.root !== undefined ? { root: policy.options.root } : {}),
        policy,
      }),
      // Workspace snapshots (daemon/snapshots/): the same root and policy, the store in --state-dir.
      ...snapshotHandlers({
        stateDir: config.stateDir,
        ...(policy.options.root !== undefined ? { root: policy.options.root } : {}),
        policy,
      }),
    },
    policy,
  });
  const stop = () => {
    daemon.close();
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  // On an OS where the file binding is not verified (anything but Linux), file operations are refused: say so now.
  if (FS_UNSUPPORTED !== null) console.error(`sandd: warning: ${FS_UNSUPPORTED}`);
  acquireFs(); // loaded once for the whole run: file operations then only count their holds
  try {
    await daemon.run();
  } catch (error) {
    // Refused for good (close code 4000/4001, HTTP 426): the reason is logged; exit with its own code.
    if (!(error instanceof RefusedError)) throw error;
    return RefusedError.exitCode;
  } finally {
    releaseFs();
    Deno.removeSignalListener("SIGINT", stop);
    Deno.removeSignalListener("SIGTERM", stop);
  }
  return 0;
}

/** The real path of a root directory, or an error naming it. */
function rootDirectory(path: string): string {
  let real: string;
  try {
    real = Deno.realPathSync(path);
    if (!Deno.statSync(real).isDirectory) throw new Error("not a directory");
  } catch (error) {
    throw new Error(`Root must be a directory, got '${path}': ${(error as Error).message}`, {
      cause: error,
    });
  }
  return real;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
