// The interactive terminal client of `sandd shell`, `sandd exec -t` and `sandd attach` (of a terminal session), and of
// examples/terminal.ts: the local terminal in raw mode attached to a remote PTY, resizes forwarded, `Ctrl-]` then `d`
// detaches. The local terminal is restored on every exit path.
import type { ProcessStatus, ShellHandle } from "@sandd/server";
import { writeAll } from "./_format.ts";

const ESCAPE = 0x1d; // Ctrl-]
const encoder = new TextEncoder();

/** The local terminal's size, or 80x24 when stdout is not a terminal. */
export function terminalSize(): { cols: number; rows: number } {
  try {
    const { columns, rows } = Deno.consoleSize();
    if (columns > 0 && rows > 0) return { cols: columns, rows };
  } catch {
    // not a terminal
  }
  return { cols: 80, rows: 24 };
}

/** A note on stderr that survives raw mode (which does not turn "\n" into "\r\n"). */
function note(text: string): void {
  Deno.stderr.writeSync(encoder.encode(`\r\nsandd: ${text.replaceAll("\n", "\r\n")}\r\n`));
}

/** Tracks whether the remote program switched to the alternate screen, to switch back on an early exit. */
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

  reset(): string {
    return (this.alternateScreen ? "\x1b[?1049l" : "") +
      "\x1b[0m\x1b[?25h\x1b[?2004l\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?1l\x1b>";
  }
}

/** What SIGINT does while a terminal is attached. */
export type InterruptAction = "forward" | "detach";

/** Options of {@linkcode attachTerminal}. */
export interface AttachTerminalOptions {
  /** `Ctrl-]` then `d` detaches (`Ctrl-]` twice sends one). @default true when stdin is a terminal */
  escape?: boolean;
  /**
   * SIGINT sends `Ctrl-C` to the program (`forward`) or detaches (`detach`). A local terminal in raw mode sends
   * `Ctrl-C` as a byte, not as SIGINT. @default "forward" when stdin is not a terminal, else no listener
   */
  interrupt?: InterruptAction;
}

/** How an attached terminal ended: the program exited (its status), or the user detached. */
export type TerminalOutcome =
  | { kind: "exit"; status: ProcessStatus }
  | { kind: "detach" };

/**
 * Attach the local terminal (raw mode when stdin is one) to `sh` until the program exits or the user detaches
 * (`sh.detach()` is called then). Resizes are forwarded; SIGTERM and SIGHUP detach. The local terminal is restored
 * on every exit path; the terminal modes the program switched on are reset on a detach or an error, which is
 * rethrown. Prints nothing of its own: the caller says what happened.
 */
export async function attachTerminal(
  sh: ShellHandle,
  options: AttachTerminalOptions = {},
): Promise<TerminalOutcome> {
  const interactive = Deno.stdin.isTerminal();
  const escape = options.escape ?? interactive;
  const interrupt = options.interrupt ?? (interactive ? undefined : "forward");
  const modes = new ModeTracker();
  type Outcome = { kind: "exit" } | { kind: "detach" } | { kind: "error"; error: unknown };
  const { promise: finished, resolve: finish } = Promise.withResolvers<Outcome>();
  let raw = false;
  const restore = () => {
    if (!raw) return;
    try {
      Deno.stdin.setRaw(false);
    } catch {
      // the terminal is gone
    }
    raw = false;
  };
  const signals: [Deno.Signal, () => void][] = [
    ["SIGTERM", () => finish({ kind: "detach" })],
    ["SIGHUP", () => finish({ kind: "detach" })],
    ["SIGWINCH", () => {
      const { cols, rows } = terminalSize();
      sh.resize(cols, rows).catch(() => {});
    }],
  ];
  if (interrupt === "forward") {
    // Without a local terminal, Ctrl-C arrives as SIGINT: pass it on as the terminal would.
    signals.push(["SIGINT", () => void sh.write("\x03").catch(() => {})]);
  } else if (interrupt === "detach") {
    signals.push(["SIGINT", () => finish({ kind: "detach" })]);
  }
  for (const [signal, handler] of signals) {
    try {
      Deno.addSignalListener(signal, handler);
    } catch {
      // not on this platform
    }
  }
  try {
    if (interactive) {
      Deno.stdin.setRaw(true);
      raw = true;
    }
    (async () => {
      for await (const chunk of sh.output) {
        modes.see(chunk);
        await writeAll(Deno.stdout, chunk);
      }
      finish({ kind: "exit" });
    })().catch((error) => finish({ kind: "error", error }));
    (async () => {
      const buffer = new Uint8Array(16 * 1024);
      let pendingEscape = false;
      while (true) {
        const n = await Deno.stdin.read(buffer);
        if (n === null) {
          // Local input ended (a pipe): send EOF as a terminal would, keep showing output.
          await sh.write("\x04");
          return;
        }
        const bytes: number[] = [];
        for (const byte of buffer.subarray(0, n)) {
          if (pendingEscape) {
            pendingEscape = false;
            if (byte === 0x64 || byte === 0x44) { // d, D
              if (bytes.length) await sh.write(new Uint8Array(bytes));
              finish({ kind: "detach" });
              return;
            }
            bytes.push(ESCAPE);
            if (byte !== ESCAPE) bytes.push(byte);
          } else if (byte === ESCAPE && escape) {
            pendingEscape = true;
          } else {
            bytes.push(byte);
          }
        }
        if (bytes.length) await sh.write(new Uint8Array(bytes));
      }
      // A write fails once the program has ended: its output's end (or error) decides the outcome, not this.
    })().catch(() => {});

    const outcome = await finished;
    restore();
    if (outcome.kind === "exit") return { kind: "exit", status: await sh.close() };
    await writeAll(Deno.stdout, modes.reset());
    if (outcome.kind === "detach") {
      await sh.detach().catch(() => {});
      return { kind: "detach" };
    }
    throw outcome.error;
  } finally {
    restore();
    for (const [signal, handler] of signals) {
      try {
        Deno.removeSignalListener(signal, handler);
      } catch {
        // never added
      }
    }
  }
}

/** Options of {@linkcode runTerminal}. */
export interface RunTerminalOptions {
  /** The worker, for the re-attach hint. */
  worker: string;
  /** Print the detach hint at the start. @default true when stdin is a terminal */
  banner?: boolean;
}

/** Run the terminal client until the program exits (its exit code) or the user detaches (0). */
export async function runTerminal(sh: ShellHandle, options: RunTerminalOptions): Promise<number> {
  if (options.banner ?? Deno.stdin.isTerminal()) {
    note(`session ${sh.id} on ${options.worker}; detach with Ctrl-] then d`);
  }
  const outcome = await attachTerminal(sh);
  if (outcome.kind === "exit") return outcome.status.exitCode;
  note(
    `detached; session ${sh.id} keeps running. Re-attach: sandd shell ${options.worker} --attach ${sh.id}`,
  );
  return 0;
}
