// Start a child on a pseudo-terminal (daemon/pty) and adapt it to the process table's ChildHandle.
//
// - One output: the terminal (stdout and stderr are the same stream on a tty), byte-exact.
// - `write` goes to the terminal's input. `closeInput` writes the terminal's end-of-file character (VEOF, ^D):
//   a terminal has no half-close, and ^D ends input for a program reading a line (`cat`, `wc`, a shell at its
//   prompt), the same as a user typing it.
// - `kill("SIGHUP")` hangs the terminal up (closes the master, as a modem or an ssh disconnect would): the kernel
//   then hangs up the whole session, which ends a shell even when it misses a bare SIGHUP, and anything left after
//   the grace gets SIGKILL. Other signals go to the process group.
// - After the program exits, output still in the terminal is read for up to `EXIT_DRAIN_MS`; then the terminal is
//   hung up, so background jobs that still hold it cannot keep the session (and its output stream) open forever.
import type { SpawnArgs } from "@sandd/protocol/messages";
import { Pty, PtyError } from "./pty/pty.ts";
import type { ChildHandle, ExitStatus } from "./process_table.ts";
import { OS } from "./ffi/constants.ts";
import {
  commandArgv,
  failedChild,
  LOGIN_SHELL_COMMAND,
  loginShellArgv,
  spawnFailure,
} from "./ffi/spawn.ts";

export { LOGIN_SHELL_COMMAND, loginShellArgv };

/** How long output is still read after the program exits before the terminal is hung up. */
const EXIT_DRAIN_MS = 2_000;

const VEOF = new Uint8Array([0x04]);

/** Options for {@linkcode spawnPtyChild}. */
export interface PtyChildOptions {
  /** Final environment transform (policy). Receives the complete environment. */
  env?: (requested: Record<string, string>) => Record<string, string>;
  /** Final argv transform (policy wrappers). */
  argv?: (argv: string[]) => string[];
}

/**
 * Start a child on a new pseudo-terminal for a `spawn` request that has `pty` set.
 *
 * The environment is the daemon's, plus `TERM=xterm-256color` unless the daemon or the request sets `TERM`, plus
 * the request's `env`. A string command runs through `/bin/sh -c`; {@linkcode LOGIN_SHELL_COMMAND} runs the
 * login shell.
 */
export function spawnPtyChild(args: SpawnArgs, options: PtyChildOptions = {}): ChildHandle {
  let env: Record<string, string> = {
    TERM: "xterm-256color",
    ...Deno.env.toObject(),
    ...(args.env ?? {}),
  };
  if (options.env) env = options.env(env);
  let argv = args.command === LOGIN_SHELL_COMMAND
    ? loginShellArgv(env, args.cwd)
    : commandArgv(args.command);
  if (options.argv) argv = options.argv(argv);
  const program = argv[0]!;
  let pty: Pty;
  try {
    pty = Pty.spawn({
      command: program,
      args: argv.slice(1),
      cols: args.pty?.cols ?? 80,
      rows: args.pty?.rows ?? 24,
      env,
      ...(args.cwd !== undefined ? { cwd: args.cwd } : {}),
    });
  } catch (error) {
    if (!(error instanceof PtyError)) {
      return failedChild({ exitCode: 126, message: `sandd: ${program}: ${String(error)}` }, true);
    }
    const code = OS.errno[error.code as keyof typeof OS.errno] ?? OS.errno.EACCES;
    return failedChild(spawnFailure(program, args.cwd, code), true);
  }
  let drainTimer: ReturnType<typeof setTimeout> | undefined;
  let ended = false;
  const status: Promise<ExitStatus> = pty.exited.then((exit) => {
    if (!ended) drainTimer = setTimeout(() => pty.close().catch(() => {}), EXIT_DRAIN_MS);
    return { exitCode: exit.exitCode, signal: exit.signal };
  });
  return {
    pid: pty.pid,
    outputs: [async () => {
      const chunk = await pty.read();
      if (chunk === null) {
        ended = true;
        clearTimeout(drainTimer);
      }
      return chunk;
    }],
    write: (bytes) => pty.write(bytes),
    closeInput: () => pty.write(VEOF),
    kill: (signal) => {
      if (signal === "SIGHUP") pty.close().catch(() => {});
      else pty.kill(signal);
    },
    status,
    resize: (cols, rows) => pty.resize(cols, rows),
    dispose: async () => {
      clearTimeout(drainTimer);
      await pty.close();
    },
  };
}
