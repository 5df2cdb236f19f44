/**
 * `sandd ps`, `sandd logs`, `sandd kill`, `sandd attach`: processes left running on a worker.
 *
 * @module
 */

import type { Controller, ProcessInfo } from "@sandd/server";
import {
  COMMON_OPTIONS,
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  integer,
  noMore,
  parse,
  str,
  workerId,
} from "./_args.ts";
import { SIGNALS } from "@sandd/protocol/constants";
import { apiFetch, settingsFrom, withController } from "./_connect.ts";
import { commandLine, duration, json, out, table } from "./_format.ts";
import { runAttached } from "./_stdio.ts";
import { runTerminal, terminalSize } from "./_terminal.ts";
import { CliError, EXIT, usageError } from "./exit_codes.ts";

/** Help of `sandd ps`. */
export const PS_USAGE = `Usage: sandd ps WORKER [--json]

List the processes and terminal sessions WORKER holds: id, pid, state, exit code, age, terminal,
attached clients, command.

Options:
  --json              print { "processes": [...] }
  -h, --help          print this and exit

${CONNECTION_HELP}`;

/** Help of `sandd logs`. */
export const LOGS_USAGE = `Usage: sandd logs WORKER PROC [-f] [--from N] [--stderr]

Print a process's output kept on the worker (stdout to stdout, stderr to stderr). Output older than the
worker retains is reported as a gap on stderr.

Options:
  -f, --follow        keep printing new output until the process exits
  --from N            start at byte offset N of each stream (default: the oldest byte retained)
  --stderr            only stderr (default: both)
  --stdout            only stdout
  --json              print { stdout: { offset, bytes, text }, stderr: {...} } (offset: of the first byte)
  -h, --help          print this and exit

${CONNECTION_HELP}`;

/** Help of `sandd kill`. */
export const KILL_USAGE = `Usage: sandd kill WORKER PROC [-s SIGNAL]

Send a signal to a process (its whole process group).

Options:
  -s, --signal SIGNAL   SIGTERM (default), SIGKILL, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, ...;
                        the SIG prefix is optional
  -h, --help            print this and exit

${CONNECTION_HELP}`;

/** Help of `sandd attach`. */
export const ATTACH_USAGE = `Usage: sandd attach WORKER PROC

Attach to a running process: replay its retained output, then stream it live; the local stdin goes to it.
Exits with its exit code. A terminal session is attached as 'sandd shell WORKER --attach PROC' would.

Options:
  --no-stdin          do not forward the local stdin
  -h, --help          print this and exit

${CONNECTION_HELP}`;

/** Find a process, or fail with exit 66 naming it. */
async function findProcess(
  controller: Controller,
  worker: string,
  id: string,
): Promise<ProcessInfo> {
  const found = (await controller.processes(worker)).find((p) => p.id === id);
  if (found === undefined) {
    throw new CliError(EXIT.NOT_FOUND, `No process '${id}' on worker '${worker}'`);
  }
  return found;
}

/**
 * Run `sandd ps`.
 *
 * @param args The arguments after `ps`.
 * @returns The exit code.
 */
export async function ps(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { ...COMMON_OPTIONS, ...CONNECTION_OPTIONS });
  if (values.help) {
    await out(PS_USAGE);
    return EXIT.OK;
  }
  const worker = workerId(positionals[0]);
  noMore(positionals, 1);
  return await withController(values, async (controller) => {
    const processes = await controller.processes(worker);
    if (values.json) {
      await json({
        processes: processes.map((p) => ({ ...p, startedAt: new Date(p.startedAt).toISOString() })),
      });
      return EXIT.OK;
    }
    const now = Date.now();
    await out(table(
      ["ID", "PID", "STATE", "EXIT", "AGE", "TTY", "ATTACHED", "COMMAND"],
      processes.map((p) => [
        p.id,
        String(p.pid),
        p.state,
        p.exitCode === null ? "-" : p.signal ? `${p.exitCode} (${p.signal})` : String(p.exitCode),
        duration(now - new Date(p.startedAt).getTime()),
        p.pty ? "yes" : "no",
        String(p.attached),
        commandLine(p.command),
      ]),
    ));
    return EXIT.OK;
  });
}

/**
 * Run `sandd logs`.
 *
 * @param args The arguments after `logs`.
 * @returns The exit code.
 */
export async function logs(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    ...COMMON_OPTIONS,
    ...CONNECTION_OPTIONS,
    follow: { type: "boolean", short: "f" },
    from: { type: "string" },
    stderr: { type: "boolean" },
    stdout: { type: "boolean" },
  });
  if (values.help) {
    await out(LOGS_USAGE);
    return EXIT.OK;
  }
  const worker = workerId(positionals[0]);
  const proc = positionals[1];
  if (proc === undefined) throw usageError("Missing PROC (see 'sandd ps WORKER')");
  noMore(positionals, 2);
  const from = integer(str(values, "from"), "from");
  if (values.json && values.follow) {
    throw usageError("--json prints what is there now: not with -f");
  }
  const wantOut = !values.stderr || Boolean(values.stdout);
  const wantErr = !values.stdout || Boolean(values.stderr);
  if (!values.follow) {
    // What is there now: each stream read once to its current end (follow=false), through the API directly,
    // since the Controller interface only follows.
    const settings = settingsFrom(values);
    const base = `/daemons/${encodeURIComponent(worker)}/processes/${encodeURIComponent(proc)}`;
    const asJson: Record<string, { offset: number; bytes: number; text: string }> = {};
    for (
      const [stream, want, to] of [["stdout", wantOut, Deno.stdout], [
        "stderr",
        wantErr,
        Deno.stderr,
      ]] as const
    ) {
      if (!want) continue;
      const response = await apiFetch(
        settings,
        `${base}/output?stream=${stream}&from=${from ?? 0}&follow=false`,
      );
      const offset = Number(response.headers.get("sandd-offset") ?? from ?? 0);
      if (values.json) {
        const bytes = new Uint8Array(await response.arrayBuffer());
        asJson[stream] = { offset, bytes: bytes.length, text: new TextDecoder().decode(bytes) };
        continue;
      }
      if (from !== undefined && offset > from) {
        console.error(
          `sandd: ${stream}: bytes ${from} to ${offset} are no longer retained by the worker (a gap)`,
        );
      }
      if (response.body) await response.body.pipeTo(to.writable, { preventClose: true });
    }
    if (values.json) await json(asJson);
    return EXIT.OK;
  }
  return await withController(values, async (controller) => {
    await findProcess(controller, worker, proc);
    const handle = await controller.attach(worker, proc, {
      ...(from !== undefined ? { from } : {}),
      stdin: false,
      onGap: (gap) =>
        console.error(
          `sandd: ${JSON.stringify(gap)} (output older than the worker retains was dropped)`,
        ),
    });
    const drop = new WritableStream<Uint8Array>();
    await Promise.all([
      handle.stdout.pipeTo(wantOut ? Deno.stdout.writable : drop, { preventClose: true }),
      handle.stderr.pipeTo(wantErr ? Deno.stderr.writable : new WritableStream(), {
        preventClose: true,
      }),
    ]);
    return EXIT.OK;
  });
}

const SIGNAL_NAMES: ReadonlySet<string> = new Set(SIGNALS);

/**
 * Run `sandd kill`.
 *
 * @param args The arguments after `kill`.
 * @returns The exit code.
 */
export async function kill(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    ...COMMON_OPTIONS,
    ...CONNECTION_OPTIONS,
    signal: { type: "string", short: "s" },
  });
  if (values.help) {
    await out(KILL_USAGE);
    return EXIT.OK;
  }
  const worker = workerId(positionals[0]);
  const proc = positionals[1];
  if (proc === undefined) throw usageError("Missing PROC (see 'sandd ps WORKER')");
  noMore(positionals, 2);
  const given = (str(values, "signal") ?? "SIGTERM").toUpperCase();
  const signal = given.startsWith("SIG") ? given : `SIG${given}`;
  if (!SIGNAL_NAMES.has(signal)) {
    throw usageError(
      `Unknown signal '${str(values, "signal")}' (expected one of ${SIGNALS.join(", ")})`,
    );
  }
  return await withController(values, async (controller) => {
    const info = await findProcess(controller, worker, proc);
    if (info.state === "exited") {
      throw new CliError(
        EXIT.NOT_FOUND,
        `Process '${proc}' on worker '${worker}' has exited already`,
      );
    }
    const handle = await controller.attach(worker, proc, { stdin: false });
    handle.stdout.cancel().catch(() => {});
    handle.stderr.cancel().catch(() => {});
    try {
      await handle.kill(signal as Deno.Signal);
    } finally {
      await handle.detach().catch(() => {});
    }
    if (values.json) await json({ worker, process: proc, signal });
    return EXIT.OK;
  });
}

/**
 * Run `sandd attach`.
 *
 * @param args The arguments after `attach`.
 * @returns The exit code.
 */
export async function attach(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    ...COMMON_OPTIONS,
    ...CONNECTION_OPTIONS,
    "no-stdin": { type: "boolean" },
  });
  if (values.help) {
    await out(ATTACH_USAGE);
    return EXIT.OK;
  }
  const worker = workerId(positionals[0]);
  const proc = positionals[1];
  if (proc === undefined) throw usageError("Missing PROC (see 'sandd ps WORKER')");
  noMore(positionals, 2);
  return await withController(values, async (controller) => {
    const info = await findProcess(controller, worker, proc);
    if (info.pty) {
      const sh = await controller.attachShell(worker, proc);
      const { cols, rows } = terminalSize();
      await sh.resize(cols, rows).catch(() => {});
      return await runTerminal(sh, { worker });
    }
    const stdin = !values["no-stdin"] && info.state === "running";
    const handle = await controller.attach(worker, proc, { stdin });
    const status = await runAttached(handle, { stdin });
    return status.exitCode;
  });
}
