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

const ESCAPE = 0x1d; // Ctrl-]
const USAGE =
  "Usage: terminal.ts [--hostname H] [--port N] [--daemon ID] [--attach SHELL_ID] [--command CMD] [--local-daemon]";

const encoder = new TextEncoder();
const isTerminal = Deno.stdin.isTerminal();

function note(text: string): void {
  // In raw mode the terminal does not turn "\n" into "\r\n".
  Deno.stderr.writeSync(encoder.encode(`\r\n[terminal] ${text.replaceAll("\n", "\r\n")}\r\n`));
}

async function writeAll(bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await Deno.stdout.write(bytes.subarray(at));
}

function terminalSize(): { cols: number; rows: number } {
  try {
    const { columns, rows } = Deno.consoleSize();
    if (columns > 0 && rows > 0) return { cols: columns, rows };
  } catch {
    // not a terminal
  }
  return { cols: 80, rows: 24 };
}

/** Remembers which terminal modes the remote program switched on, to switch them off when we leave early. */
class ModeTracker {
  alternateScreen = false;
  readonly #decoder = new TextDecoder("latin1");
  #tail = "";

  see(chunk: Uint8Array): void {
    const text = this.#tail + this.#decoder.decode(chunk);
    const on = text.lastIndexOf("\x1b[?1049h");
    const off = text.lastIndexOf("\x1b[?1049l");
    if (on > off) this.alternateScreen = true;
    else if (off > on) this.alternateScreen = false;
    this.#tail = text.slice(-8);
  }

  /** Escape sequences that put the local terminal back into a usable state. */
  reset(): string {
    return (this.alternateScreen ? "\x1b[?1049l" : "") +
      "\x1b[0m\x1b[?25h\x1b[?2004l\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?1l\x1b>";
  }
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

  const modes = new ModeTracker();
  const { promise: finished, resolve: finish } = Promise.withResolvers<
    { kind: "exit"; code: number } | { kind: "detach" } | { kind: "error"; error: unknown }
  >();
  let rawMode = false;
  const restore = () => {
    if (rawMode) {
      try {
        Deno.stdin.setRaw(false);
      } catch {
        // the terminal is gone
      }
      rawMode = false;
    }
  };
  const signals: [Deno.Signal, () => void][] = [
    ["SIGINT", () => finish({ kind: "detach" })],
    ["SIGTERM", () => finish({ kind: "detach" })],
    ["SIGHUP", () => finish({ kind: "detach" })],
    ["SIGWINCH", () => {
      const { cols, rows } = terminalSize();
      sh.resize(cols, rows).catch(() => {});
    }],
  ];
  for (const [signal, handler] of signals) {
    try {
      Deno.addSignalListener(signal, handler);
    } catch {
      // not supported on this platform (Windows has no SIGWINCH/SIGHUP)
    }
  }
  try {
    if (isTerminal) {
      Deno.stdin.setRaw(true);
      rawMode = true;
    }
    note(`shell ${sh.id} on ${daemonId}. Detach: Ctrl-] then d.`);

    // Output: remote terminal -> local stdout, byte-exact.
    (async () => {
      for await (const chunk of sh.output) {
        modes.see(chunk);
        await writeAll(chunk);
      }
      const status = await sh.exited;
      finish({ kind: "exit", code: status.exitCode });
    })().catch((error) => finish({ kind: "error", error }));

    // Input: local stdin -> remote terminal, watching for the detach sequence.
    (async () => {
      const buffer = new Uint8Array(16 * 1024);
      let pendingEscape = false;
      while (true) {
        const n = await Deno.stdin.read(buffer);
        if (n === null) {
          // Local input ended (a pipe): send EOF as a terminal would and keep showing output.
          await sh.write("\x04");
          return;
        }
        const out: number[] = [];
        for (const byte of buffer.subarray(0, n)) {
          if (pendingEscape) {
            pendingEscape = false;
            if (byte === 0x64 /* d */ || byte === 0x44 /* D */) {
              if (out.length) await sh.write(new Uint8Array(out));
              finish({ kind: "detach" });
              return;
            }
            out.push(ESCAPE);
            if (byte === ESCAPE) continue;
            out.push(byte);
          } else if (byte === ESCAPE) {
            pendingEscape = true;
          } else {
            out.push(byte);
          }
        }
        if (out.length) await sh.write(new Uint8Array(out));
      }
    })().catch((error) => finish({ kind: "error", error }));

    const outcome = await finished;
    restore();
    if (outcome.kind === "exit") {
      note(`shell exited with code ${outcome.code}`);
      return outcome.code;
    }
    if (outcome.kind === "detach") {
      await writeAll(encoder.encode(modes.reset()));
      await sh.detach().catch(() => {});
      note(
        `detached; the session keeps running. Re-attach with:\n  deno run -A examples/terminal.ts --port ${server.port} --daemon ${daemonId} --attach ${sh.id}`,
      );
      return 0;
    }
    await writeAll(encoder.encode(modes.reset()));
    note(`error: ${(outcome.error as Error)?.message ?? outcome.error}`);
    return 1;
  } finally {
    restore();
    for (const [signal, handler] of signals) {
      try {
        Deno.removeSignalListener(signal, handler);
      } catch {
        // was never added
      }
    }
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
