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
import type { SpawnArgs } from "../protocol/messages.ts";
import { Pty, PtyError } from "./pty/pty.ts";
import type { ChildHandle, ExitStatus } from "./process_table.ts";

/**
 * The `command` a controller sends to ask for the worker's login shell. It contains a NUL character, so it can
 * never name a real program or shell command.
 */
export const LOGIN_SHELL_COMMAND = "\0login-shell";

/** How long output is still read after the program exits before the terminal is hung up. */
const EXIT_DRAIN_MS = 2_000;

const VEOF = new Uint8Array([0x04]);

function executable(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && (info.mode === null || (info.mode & 0o111) !== 0);
  } catch {
    return false;
  }
}

function findInPath(name: string, path: string | undefined): string | null {
  for (const dir of (path ?? "/usr/local/bin:/usr/bin:/bin").split(":")) {
    if (dir && executable(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  return null;
}

/**
 * The worker's login shell as an argv: `$SHELL -l`, else `bash -l`, else `sh -l` (on Windows: `%COMSPEC%`, else
 * `cmd.exe`).
 */
export function loginShellArgv(env: Record<string, string>): string[] {
  if (Deno.build.os === "windows") return [env.COMSPEC || env.ComSpec || "cmd.exe"];
  const shell = env.SHELL;
  if (shell && shell.startsWith("/") && executable(shell)) return [shell, "-l"];
  const bash = findInPath("bash", env.PATH);
  if (bash) return [bash, "-l"];
  return [findInPath("sh", env.PATH) ?? "/bin/sh", "-l"];
}

/** Options for {@linkcode spawnPtyChild}. */
export interface PtyChildOptions {
  /** Final environment transform (policy). Receives the complete environment. */
  env?: (requested: Record<string, string>) => Record<string, string>;
  /** Final argv transform (policy wrappers). */
  argv?: (argv: string[]) => string[];
}

/** A terminal child that never ran: its one output is `message`, then it exits with `code`. */
function failedChild(code: number, message: string): ChildHandle {
  let sent = false;
  return {
    pid: 0,
    outputs: [
      () => Promise.resolve(sent ? null : (sent = true, new TextEncoder().encode(message))),
    ],
    kill: () => {},
    status: Promise.resolve({ exitCode: code, signal: null }),
  };
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
  let argv: string[];
  if (args.command === LOGIN_SHELL_COMMAND) argv = loginShellArgv(env);
  else if (typeof args.command === "string") {
    argv = Deno.build.os === "windows"
      ? ["cmd.exe", "/C", args.command]
      : ["/bin/sh", "-c", args.command];
  } else argv = args.command;
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
    const code = error instanceof PtyError ? error.code : "";
    if (code === "ENOENT") {
      if (args.cwd !== undefined && !exists(args.cwd)) {
        return failedChild(127, `sandd: cd: ${args.cwd}: No such file or directory\r\n`);
      }
      return failedChild(127, `sandd: ${program}: command not found\r\n`);
    }
    if (code === "EACCES") return failedChild(126, `sandd: ${program}: Permission denied\r\n`);
    return failedChild(126, `sandd: ${program}: ${(error as Error).message}\r\n`);
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

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
