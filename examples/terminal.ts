/**
 * An interactive terminal on a worker: the local terminal is attached to a remote shell, like `ssh` but with the
 * worker dialling in.
 *
 * ```sh
 * # 1. start the controller (this script); it waits for a daemon
 * deno run -A examples/terminal.ts --port 8765
 * # 2. on the worker
 * deno run -A daemon/main.ts --server-url ws://CONTROLLER:8765/ws --daemon-id worker-1
 * ```
 *
 * Flags: `--hostname H` (default 127.0.0.1), `--port N` (default 8765), `--daemon ID` (default: the first daemon
 * that connects), `--attach SHELL_ID` (re-attach to a session instead of opening one), `--command CMD` (instead of
 * the worker's login shell), `--local-daemon` (also start a daemon on this machine, for trying it out).
 *
 * Keys: `Ctrl-]` then `d` detaches, leaving the session running (the shell id is printed, for `--attach`);
 * `Ctrl-]` twice sends one `Ctrl-]`. Local window resizes are forwarded. The local terminal is restored on every
 * exit path: shell exit, detach, errors, SIGINT/SIGTERM/SIGHUP.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type RemoteShell, Server } from "../mod.ts";
import { DAEMON_PERMISSION_FLAGS } from "../daemon/permissions.ts";
import {
  attachTerminal,
  type TerminalOutcome,
  terminalSize,
} from "../daemon/commands/_terminal.ts";

const USAGE =
  "Usage: terminal.ts [--hostname H] [--port N] [--daemon ID] [--attach SHELL_ID] [--command CMD] [--local-daemon]";

const encoder = new TextEncoder();

function note(text: string): void {
  // In raw mode the terminal does not turn "\n" into "\r\n".
  Deno.stderr.writeSync(encoder.encode(`\r\n[terminal] ${text.replaceAll("\n", "\r\n")}\r\n`));
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      hostname: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: "8765" },
      daemon: { type: "string" },
      attach: { type: "string" },
      command: { type: "string" },
      "local-daemon": { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const port = Number(values.port);
  await using server = await Server.listen({ hostname: values.hostname, port });
  let localDaemon: Deno.ChildProcess | undefined;
  if (values["local-daemon"]) {
    localDaemon = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...DAEMON_PERMISSION_FLAGS,
        new URL("../daemon/main.ts", import.meta.url).pathname,
        "--server-url",
        server.url,
        "--daemon-id",
        values.daemon ?? "local",
        "--log-level",
        "error",
      ],
      stdin: "null",
    }).spawn();
  }
  note(`listening on ${server.url}; waiting for ${values.daemon ?? "a daemon"}...`);
  const daemonId = values.daemon ??
    (server.daemons()[0]?.id ?? await new Promise<string>((resolve) => {
      server.addEventListener(
        "connect",
        (event) => resolve(event.daemon.id),
        { once: true },
      );
    }));
  await server.waitForDaemon(daemonId, { timeout: 24 * 3600_000 });
  const size = terminalSize();
  const sh: RemoteShell = values.attach
    ? await server.attachShell(daemonId, values.attach)
    : await server.shell(daemonId, {
      ...size,
      ...(values.command !== undefined ? { command: values.command } : {}),
    });
  if (values.attach) await sh.resize(size.cols, size.rows).catch(() => {});

  note(`shell ${sh.id} on ${daemonId}. Detach: Ctrl-] then d.`);
  try {
    // Output byte-exact to stdout; input to the terminal, watching for the detach sequence even from a pipe.
    let outcome: TerminalOutcome;
    try {
      outcome = await attachTerminal(sh, { escape: true, interrupt: "detach" });
    } catch (error) {
      note(`error: ${(error as Error)?.message ?? error}`);
      return 1;
    }
    if (outcome.kind === "exit") {
      note(`shell exited with code ${outcome.status.exitCode}`);
      return outcome.status.exitCode;
    }
    note(
      `detached; the session keeps running. Re-attach with:\n  deno run -A examples/terminal.ts --port ${server.port} --daemon ${daemonId} --attach ${sh.id}`,
    );
    return 0;
  } finally {
    if (localDaemon) {
      try {
        localDaemon.kill("SIGTERM");
      } catch {
        // gone already
      }
      await localDaemon.status;
    }
  }
}

if (import.meta.main) {
  let code = 1;
  try {
    code = await main();
  } catch (error) {
    try {
      Deno.stdin.setRaw(false);
    } catch {
      // not a terminal, or not in raw mode
    }
    note(`error: ${(error as Error)?.message ?? error}`);
  }
  Deno.exit(code);
}
