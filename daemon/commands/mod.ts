/**
 * The `sandd` subcommands other than the worker itself: `serve` and the operator commands. `daemon/main.ts`
 * loads this module with a dynamic `import()` only when one of them is asked for, so the worker never loads the
 * controller's code.
 *
 * @example Run a command
 * ```ts ignore
 * import { runCommand } from "./mod.ts";
 * Deno.exit(await runCommand("daemons", ["--json"]));
 * ```
 *
 * @module
 */

import { VERSION } from "@sandd/protocol/version";
import { CliError, EXIT, exitCodeOf } from "./exit_codes.ts";
import { out } from "./_format.ts";
import { daemons, DAEMONS_USAGE } from "./daemons.ts";
import { broadcast, BROADCAST_USAGE, exec, EXEC_USAGE, shell, SHELL_USAGE } from "./exec.ts";
import {
  attach,
  ATTACH_USAGE,
  kill,
  KILL_USAGE,
  logs,
  LOGS_USAGE,
  ps,
  PS_USAGE,
} from "./processes.ts";
import { cp, CP_USAGE } from "./cp.ts";
import { FS_USAGE, fsCommand } from "./fs.ts";
import { forward, FORWARD_USAGE } from "./forward.ts";

interface Command {
  summary: string;
  /** The help text, or how to load it. */
  usage: string | (() => Promise<string>);
  run(args: string[]): Promise<number>;
}

/** `serve` loads the whole controller (Server, the cluster and NATS): only `sandd serve` and its help pay for it. */
const loadServe = () => import("./serve.ts");

const COMMANDS: Record<string, Command> = {
  serve: {
    summary: "run a standalone controller",
    usage: async () => (await loadServe()).SERVE_USAGE,
    run: async (args) => (await loadServe()).serve(args),
  },
  daemons: { summary: "list the connected workers", usage: DAEMONS_USAGE, run: daemons },
  exec: {
    summary: "run a command on a worker (its exit code is sandd's)",
    usage: EXEC_USAGE,
    run: exec,
  },
  shell: { summary: "interactive terminal on a worker", usage: SHELL_USAGE, run: shell },
  ps: { summary: "processes and sessions on a worker", usage: PS_USAGE, run: ps },
  logs: { summary: "output of a process, resumable by offset", usage: LOGS_USAGE, run: logs },
  kill: { summary: "signal a process", usage: KILL_USAGE, run: kill },
  attach: { summary: "attach to a running process or session", usage: ATTACH_USAGE, run: attach },
  cp: { summary: "copy files and directories to or from a worker", usage: CP_USAGE, run: cp },
  ls: {
    summary: "list a directory on a worker",
    usage: FS_USAGE.ls!,
    run: (a) => fsCommand("ls", a),
  },
  stat: {
    summary: "describe a path on a worker",
    usage: FS_USAGE.stat!,
    run: (a) => fsCommand("stat", a),
  },
  rm: { summary: "remove a path on a worker", usage: FS_USAGE.rm!, run: (a) => fsCommand("rm", a) },
  mkdir: {
    summary: "create a directory on a worker",
    usage: FS_USAGE.mkdir!,
    run: (a) => fsCommand("mkdir", a),
  },
  mv: { summary: "rename a path on a worker", usage: FS_USAGE.mv!, run: (a) => fsCommand("mv", a) },
  broadcast: {
    summary: "run a command on every matching worker",
    usage: BROADCAST_USAGE,
    run: broadcast,
  },
  forward: { summary: "forward a local port to a worker", usage: FORWARD_USAGE, run: forward },
};

/** `sandd help config`. */
export const CONFIG_HELP = `Connection settings of the operator commands, first found wins:

  1. --url URL, --token TOKEN / --token-file FILE, --ca-cert FILE
  2. the profile named by --profile NAME or SANDD_PROFILE
  3. SANDD_URL and SANDD_API_TOKEN
  4. the config file's "default" profile
  5. http://127.0.0.1:8765 without a token

The config file is $SANDD_CONFIG, else $XDG_CONFIG_HOME/sandd/config.json, else
~/.config/sandd/config.json:

  {
    "default": "lab",
    "profiles": {
      "lab":  { "url": "http://10.0.0.5:8765", "tokenFile": "~/.config/sandd/lab.token" },
      "prod": { "url": "https://ctl.example:8765", "token": "...", "caCert": "/etc/sandd/ca.pem" }
    }
  }

Profile fields: url, token, tokenFile, caCert (all optional strings; '~/' is the home directory).`;

/** `sandd help exit-codes`. */
export const EXIT_CODES_HELP = `Exit codes of the operator commands:

  exec, attach, shell  the remote command's exit code (128 + n when signal n ended it)
  0    success
  1    the operation ran and failed (a worker error; broadcast: some worker failed)
  64   usage: unknown command or flag, missing argument, bad WORKER:PATH or value
  65   unknown worker (no connected worker has this id; broadcast: none matched)
  66   no such process or file (remote or local)
  69   controller unreachable, or the worker disconnected during the call
  70   internal error
  74   a file could not be read or written (other than a missing one)
  75   timed out or rate limited (retry later)
  77   refused: no or a wrong API token, a missing scope, or the worker's policy
  78   configuration: bad config file, unknown profile, unreadable token file
  124  exec --timeout expired (the remote command was killed)
  141  exec: the local reader went away (| head); the remote command is stopped

Every failure of sandd itself prints one line starting with 'sandd:' on stderr.
The worker (sandd daemon) has its own: 0 after SIGINT/SIGTERM, 2 bad flags, 3 refused for good.`;

/** `sandd help`. */
export function mainHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length)) + 2;
  return `sandd ${VERSION}: worker, controller and operator commands of SandD.

Usage: sandd COMMAND [options]      (sandd help COMMAND, or sandd COMMAND --help)

Worker:
  ${"daemon".padEnd(width)}run the worker daemon (also: sandd --server-url ... with no command)

Controller:
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}${c.summary}`).join("\n")}

More: sandd help config (connection, profiles), sandd help exit-codes.`;
}

async function help(args: string[]): Promise<number> {
  const topic = args[0];
  if (topic === undefined) await out(mainHelp());
  else if (topic === "config") await out(CONFIG_HELP);
  else if (topic === "exit-codes") await out(EXIT_CODES_HELP);
  else if (topic === "daemon") {
    const { USAGE } = await import("../cli.ts");
    await out(USAGE);
  } else if (COMMANDS[topic]) {
    const usage = COMMANDS[topic].usage;
    await out(typeof usage === "string" ? usage : await usage());
  } else throw new CliError(EXIT.USAGE, `Unknown help topic '${topic}'`, { showUsage: true });
  return EXIT.OK;
}

/**
 * Run a subcommand and return its exit code. Failures are printed as one `sandd: ...` line on stderr.
 *
 * @param name The subcommand (`help`, `serve`, `exec`, ...).
 * @param args The arguments after it.
 * @returns The exit code.
 */
export async function runCommand(name: string, args: string[]): Promise<number> {
  try {
    if (name === "help") return await help(args);
    const command = COMMANDS[name];
    if (command === undefined) {
      throw new CliError(EXIT.USAGE, `Unknown command '${name}'`, { showUsage: true });
    }
    return await command.run(args);
  } catch (error) {
    const code = exitCodeOf(error);
    const message = error instanceof Error ? error.message : String(error);
    const hint = error instanceof CliError && error.showUsage
      ? `\nRun 'sandd ${COMMANDS[name] ? `${name} --help` : "help"}' for usage.`
      : "";
    console.error(`sandd: ${message}${hint}`);
    if (code === EXIT.INTERNAL && Deno.env.get("SANDD_DEBUG")) console.error(error);
    return code;
  }
}
