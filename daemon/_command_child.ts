// Start a pipe-based child with Deno.Command, in its own session and process group so signals reach its tree.
import type { SpawnArgs } from "@sandd/protocol/messages";
import type { ChildHandle, ExitStatus } from "./process_table.ts";
import { posixChildSupported, spawnPosixChild } from "./_posix_child.ts";
import { OS } from "./ffi/constants.ts";
import { commandArgv, failedChild, spawnFailure } from "./ffi/spawn.ts";

export { commandArgv };

function killGroup(pid: number, signal: Deno.Signal): void {
  try {
    if (Deno.build.os === "windows") Deno.kill(pid, signal);
    else Deno.kill(-pid, signal);
  } catch {
    // the group is gone already
  }
}

function streamReader(stream: ReadableStream<Uint8Array>): () => Promise<Uint8Array | null> {
  const reader = stream.getReader();
  return async () => {
    const { value, done } = await reader.read();
    if (done) {
      reader.releaseLock();
      return null;
    }
    return value;
  };
}

/** Options for {@linkcode spawnCommandChild}. */
export interface CommandChildOptions {
  /**
   * Final environment transform (policy). Receives the complete environment (the daemon's, then the request's
   * on top); the child gets exactly what it returns, nothing inherited besides.
   */
  env?: (requested: Record<string, string>) => Record<string, string>;
  /** Final argv transform (policy wrappers). */
  argv?: (argv: string[]) => string[];
}

/** Start a pipe-based child for a `spawn` request. */
export function spawnCommandChild(args: SpawnArgs, options: CommandChildOptions = {}): ChildHandle {
  let argv = commandArgv(args.command);
  if (options.argv) argv = options.argv(argv);
  const env = options.env ? options.env({ ...Deno.env.toObject(), ...(args.env ?? {}) }) : args.env;
  if (posixChildSupported) {
    // posix_spawn through FFI: a fraction of the cost of Deno.Command's detached (fork) path, in its own process
    // group, signal mask and dispositions reset (see _posix_child.ts).
    return spawnPosixChild({
      argv,
      // No env option: the child inherits the daemon's environment without copying it (see _posix_child.ts).
      ...(options.env
        ? { env: env! }
        : args.env && Object.keys(args.env).length > 0
        ? { env: { ...Deno.env.toObject(), ...args.env } }
        : {}),
      ...(args.cwd !== undefined ? { cwd: args.cwd } : {}),
      stdin: args.stdin !== undefined,
    });
  }
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(argv[0]!, {
      args: argv.slice(1),
      ...(env ? { env } : {}),
      ...(options.env ? { clearEnv: true } : {}),
      ...(args.cwd !== undefined ? { cwd: args.cwd } : {}),
      stdin: args.stdin !== undefined ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      detached: true,
    }).spawn();
  } catch (error) {
    const program = argv[0]!;
    if (error instanceof Deno.errors.NotFound) {
      return failedChild(spawnFailure(program, args.cwd, OS.errno.ENOENT), false);
    }
    if (error instanceof Deno.errors.PermissionDenied) {
      return failedChild(spawnFailure(program, args.cwd, OS.errno.EACCES), false);
    }
    return failedChild(
      { exitCode: 126, message: `sandd: ${program}: ${(error as Error).message}` },
      false,
    );
  }
  const writer = args.stdin !== undefined ? child.stdin.getWriter() : undefined;
  const status: Promise<ExitStatus> = child.status.then((s) => ({
    exitCode: s.code,
    signal: s.signal,
  }));
  return {
    pid: child.pid,
    outputs: [streamReader(child.stdout), streamReader(child.stderr)],
    ...(writer
      ? {
        write: (bytes: Uint8Array) => writer.write(bytes),
        closeInput: () => writer.close(),
      }
      : {}),
    kill: (signal) => killGroup(child.pid, signal),
    status,
  };
}
