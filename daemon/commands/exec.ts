/**
 * `sandd exec`, `sandd broadcast` and `sandd shell`: commands and terminals on workers.
 *
 * @module
 */

import type { ExecOptions, ExecResult } from "@sandd/server";
import {
  COMMON_OPTIONS,
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  list,
  noMore,
  pairs,
  parse,
  seconds,
  splitAtDashes,
  str,
  workerId,
} from "./_args.ts";
import { withController } from "./_connect.ts";
import { commandLine, json, out, table } from "./_format.ts";
import { runAttached } from "./_stdio.ts";
import { runTerminal, terminalSize } from "./_terminal.ts";
import { CliError, EXIT, usageError } from "./exit_codes.ts";

/** Help of `sandd exec`. */
export const EXEC_USAGE = `Usage: sandd exec WORKER [options] -- CMD [ARG...]

Run CMD on WORKER: its output streams to the local stdout/stderr as it comes, the local stdin goes to it
(EOF included), and sandd exits with its exit code (128 + n when signal n ended it). SIGINT/SIGTERM/SIGHUP
are passed on to it. A single CMD word with spaces runs through 'sh -c' on the worker.

Options:
  --cwd DIR           working directory on the worker
  --env KEY=VALUE     environment variable (repeat)
  --timeout SEC       kill it after SEC seconds; sandd then exits 124
  -t, --tty           run it on a terminal (interactive programs); output and input are raw bytes
  --json              wait for the end and print { exitCode, signal, stdout, stderr, durationMs, truncated }
                      (stdin, if not a terminal, is read fully first); exits with its exit code
  -h, --help          print this and exit

${CONNECTION_HELP}

Exit: the command's own exit code; 124 when --timeout expired; sandd's own failures: see 'sandd help'.`;

/** Help of `sandd broadcast`. */
export const BROADCAST_USAGE =
  `Usage: sandd broadcast [--label KEY=VALUE]... [options] -- CMD [ARG...]

Run CMD on every matching worker at once and print one line per worker: its id, exit code (or error) and
the last line of its output. Exits 0 when every worker ran it with exit code 0, else 1; 65 when no worker
matched.

Options:
  --label KEY=VALUE   only workers with this label (repeat: all must match)
  --platform OS       only workers on this platform
  --cwd DIR           working directory
  --env KEY=VALUE     environment variable (repeat)
  --timeout SEC       kill each after SEC seconds
  --json              print { "results": { ID: { exitCode, stdout, stderr, ... } or { error } } }
  -h, --help          print this and exit

${CONNECTION_HELP}`;

/** Help of `sandd shell`. */
export const SHELL_USAGE = `Usage: sandd shell WORKER [--attach ID] [options] [-- CMD [ARG...]]

Open an interactive terminal on WORKER (its login shell, or CMD), or re-attach to a session left running.
Ctrl-] then d detaches (the session keeps running; its id is printed); Ctrl-] twice sends one Ctrl-].
Local window resizes are passed on. Exits with the program's exit code, 0 after a detach.

Options:
  --attach ID         re-attach to session ID (its scrollback is replayed)
  --cwd DIR           working directory of a new session
  --env KEY=VALUE     environment variable of a new session (repeat)
  -h, --help          print this and exit

${CONNECTION_HELP}`;

const RUN_OPTIONS = {
  ...COMMON_OPTIONS,
  ...CONNECTION_OPTIONS,
  cwd: { type: "string" },
  env: { type: "string", multiple: true },
  timeout: { type: "string" },
} as const;

function command(positionals: string[], after: string[] | null, from: number): string[] {
  const argv = [...positionals.slice(from), ...(after ?? [])];
  if (argv.length === 0) throw usageError("Missing CMD (after --)");
  return argv;
}

/** A single word holding a space runs through the shell, like ssh; anything else runs as argv. */
function asCommand(argv: string[]): string | string[] {
  return argv.length === 1 && /\s/.test(argv[0]!) ? argv[0]! : argv;
}

/** A terminal's command as one shell string: a single word as it is, several quoted word by word. */
function terminalCommand(argv: string[]): string {
  return argv.length === 1 ? argv[0]! : commandLine(argv);
}

function execResultJson(r: ExecResult): Record<string, unknown> {
  return {
    exitCode: r.exitCode,
    signal: r.signal,
    stdout: r.stdout,
    stderr: r.stderr,
    durationMs: Math.round(r.durationMs * 1000) / 1000,
    truncated: r.truncated,
  };
}

/**
 * Run `sandd exec`.
 *
 * @param args The arguments after `exec`.
 * @returns The exit code.
 */
export async function exec(args: string[]): Promise<number> {
  const { before, after } = splitAtDashes(args);
  const { values, positionals } = parse(before, {
    ...RUN_OPTIONS,
    tty: { type: "boolean", short: "t" },
  });
  if (values.help) {
    await out(EXEC_USAGE);
    return EXIT.OK;
  }
  const worker = workerId(positionals[0]);
  const argv = command(positionals, after, 1);
  const env = pairs(list(values, "env"), "env");
  const timeout = seconds(str(values, "timeout"), "timeout");
  const cwd = str(values, "cwd");
  const options = {
    ...(Object.keys(env).length ? { env } : {}),
    ...(cwd !== undefined ? { cwd } : {}),
    ...(timeout !== undefined ? { timeout } : {}),
  };
  if (values.tty && values.json) throw usageError("-t and --json do not go together");
  return await withController(values, async (controller) => {
    if (values.tty) {
      // A terminal's command travels as one shell string (the terminal route takes one), quoted word by word.
      const sh = await controller.shell(worker, {
        ...options,
        command: terminalCommand(argv),
        ...terminalSize(),
      });
      return await runTerminal(sh, { worker, banner: false });
    }
    if (values.json) {
      const stdin = Deno.stdin.isTerminal() ? undefined : await new Response(Deno.stdin.readable)
        .bytes();
      const execOptions: ExecOptions = { ...options, ...(stdin ? { stdin } : {}) };
      let result: ExecResult;
      try {
        result = await controller.exec(worker, asCommand(argv), execOptions);
      } catch (error) {
        if ((error as { code?: string }).code === "COMMAND_TIMEOUT") {
          await json({ error: { code: "COMMAND_TIMEOUT", message: (error as Error).message } });
          return EXIT.TIMEOUT;
        }
        throw error;
      }
      await json(execResultJson(result));
      return result.exitCode;
    }
    const handle = await controller.spawn(worker, asCommand(argv), { ...options, stdin: true });
    const status = await runAttached(handle);
    if (status.timedOut) {
      throw new CliError(EXIT.TIMEOUT, `Command timed out after ${(timeout ?? 0) / 1000} s`);
    }
    return status.exitCode;
  });
}

/**
 * Run `sandd broadcast`.
 *
 * @param args The arguments after `broadcast`.
 * @returns The exit code.
 */
export async function broadcast(args: string[]): Promise<number> {
  const { before, after } = splitAtDashes(args);
  const { values, positionals } = parse(before, {
    ...RUN_OPTIONS,
    label: { type: "string", multiple: true },
    platform: { type: "string" },
  });
  if (values.help) {
    await out(BROADCAST_USAGE);
    return EXIT.OK;
  }
  const argv = command(positionals, after, 0);
  const labels = pairs(list(values, "label"), "label");
  const platform = str(values, "platform");
  const env = pairs(list(values, "env"), "env");
  const timeout = seconds(str(values, "timeout"), "timeout");
  const cwd = str(values, "cwd");
  return await withController(values, async (controller) => {
    const results = await controller.broadcast(
      {
        ...(Object.keys(labels).length ? { labels } : {}),
        ...(platform !== undefined ? { platform } : {}),
      },
      asCommand(argv),
      {
        ...(Object.keys(env).length ? { env } : {}),
        ...(cwd !== undefined ? { cwd } : {}),
        ...(timeout !== undefined ? { timeout } : {}),
      },
    );
    const ids = [...results.keys()].sort();
    let failed = false;
    const rows: string[][] = [];
    const asJson: Record<string, unknown> = {};
    for (const id of ids) {
      const result = results.get(id)!;
      if (result instanceof Error) {
        failed = true;
        const code = (result as { code?: string }).code ?? "ERROR";
        asJson[id] = { error: { code, message: result.message } };
        rows.push([id, "error", `${code}: ${result.message}`]);
      } else {
        if (result.exitCode !== 0) failed = true;
        asJson[id] = execResultJson(result);
        const last = (result.stdout.trimEnd() || result.stderr.trimEnd()).split("\n").at(-1) ?? "";
        rows.push([id, String(result.exitCode), last.length > 80 ? `${last.slice(0, 79)}…` : last]);
      }
    }
    if (values.json) await json({ results: asJson });
    else if (ids.length) await out(table(["WORKER", "EXIT", "OUTPUT"], rows));
    if (ids.length === 0) {
      throw new CliError(EXIT.UNKNOWN_WORKER, `No worker matched to run ${commandLine(argv)}`);
    }
    return failed ? EXIT.FAILED : EXIT.OK;
  });
}

/**
 * Run `sandd shell`.
 *
 * @param args The arguments after `shell`.
 * @returns The exit code.
 */
export async function shell(args: string[]): Promise<number> {
  const { before, after } = splitAtDashes(args);
  const { values, positionals } = parse(before, {
    ...COMMON_OPTIONS,
    ...CONNECTION_OPTIONS,
    attach: { type: "string" },
    cwd: { type: "string" },
    env: { type: "string", multiple: true },
  });
  if (values.help) {
    await out(SHELL_USAGE);
    return EXIT.OK;
  }
  const worker = workerId(positionals[0]);
  const argv = [...positionals.slice(1), ...(after ?? [])];
  const attach = str(values, "attach");
  const env = pairs(list(values, "env"), "env");
  const cwd = str(values, "cwd");
  if (attach !== undefined) {
    noMore(positionals, 1);
    if (argv.length || cwd !== undefined || Object.keys(env).length) {
      throw usageError("--attach takes no CMD, --cwd or --env: the session exists already");
    }
  }
  return await withController(values, async (controller) => {
    const size = terminalSize();
    const sh = attach !== undefined
      ? await controller.attachShell(worker, attach)
      : await controller.shell(worker, {
        ...size,
        ...(argv.length ? { command: terminalCommand(argv) } : {}),
        ...(Object.keys(env).length ? { env } : {}),
        ...(cwd !== undefined ? { cwd } : {}),
      });
    if (attach !== undefined) await sh.resize(size.cols, size.rows).catch(() => {});
    return await runTerminal(sh, { worker });
  });
}
