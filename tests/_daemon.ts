// Test helpers: run the real daemon as a child process.
import { DAEMON_PERMISSION_FLAGS } from "../daemon/permissions.ts";
import { Server, type ServerOptions } from "../mod.ts";

const MAIN = new URL("../daemon/main.ts", import.meta.url).pathname;

export interface TestDaemonOptions {
  id: string;
  url: string;
  args?: string[];
  env?: Record<string, string>;
  /** Extra `deno run` flags, before the script (e.g. V8 heap limits). */
  denoFlags?: string[];
}

/** The real `sandd` daemon, run with `deno run` and the shipped permission flags. */
export class TestDaemon implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly id: string;
  #stderr: Promise<string>;
  #stdout: Promise<string>;
  #status: Promise<Deno.CommandStatus> | null = null;

  constructor(options: TestDaemonOptions) {
    this.id = options.id;
    this.child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...DAEMON_PERMISSION_FLAGS,
        ...(options.denoFlags ?? []),
        MAIN,
        "--server-url",
        options.url,
        "--daemon-id",
        options.id,
        "--reconnect-initial",
        "0.1",
        "--reconnect-max",
        "0.5",
        "--log-level",
        "warning",
        ...(options.args ?? []),
      ],
      env: options.env ?? {},
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stderr = this.#collect(this.child.stderr);
    this.#stdout = new Response(this.child.stdout).text();
  }

  #log = "";
  #logWaiters: { needle: string; resolve: () => void }[] = [];

  async #collect(stream: ReadableStream<Uint8Array>): Promise<string> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      this.#log += decoder.decode(chunk, { stream: true });
      this.#logWaiters = this.#logWaiters.filter((w) => {
        if (!this.#log.includes(w.needle)) return true;
        w.resolve();
        return false;
      });
    }
    return this.#log;
  }

  /** What the daemon has written to stderr so far. */
  get log(): string {
    return this.#log;
  }

  /** Resolves once the daemon's stderr contains `needle`. */
  waitForLog(needle: string): Promise<void> {
    if (this.#log.includes(needle)) return Promise.resolve();
    return new Promise((resolve) => this.#logWaiters.push({ needle, resolve }));
  }

  get pid(): number {
    return this.child.pid;
  }

  /** Stop with `signal` and wait; returns the exit status and stderr. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<{ code: number; stderr: string }> {
    if (!this.#status) {
      try {
        this.child.kill(signal);
      } catch {
        // exited already
      }
      this.#status = this.child.status;
    }
    const status = await this.#status;
    const stderr = await this.#stderr;
    await this.#stdout;
    return { code: status.code, stderr };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** Run the daemon's CLI to completion (for flag tests). */
export async function runDaemonCli(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...DAEMON_PERMISSION_FLAGS, MAIN, ...args],
    env: { SANDD_SERVER_URL: "" },
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** True while a process with this pid exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** Wait (bounded) for a condition that has no event to await, such as a process disappearing. */
export async function eventually(
  check: () => boolean,
  timeoutMs = 5_000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A controller on 127.0.0.1:0 with one real daemon connected to it; disposing stops both. */
export interface TestWorker extends AsyncDisposable {
  server: Server;
  daemon: TestDaemon;
}

/** Start a controller and a daemon with id `id` (and extra daemon `args`), and wait until it has connected. */
export async function startWorker(
  id: string,
  args: string[] = [],
  serverOptions: ServerOptions = {},
): Promise<TestWorker> {
  const server = await Server.listen({ port: 0, ...serverOptions });
  const daemon = new TestDaemon({ id, url: server.url, args });
  await server.waitForDaemon(id, { timeout: 20_000 });
  return {
    server,
    daemon,
    async [Symbol.asyncDispose]() {
      await daemon.stop();
      await server.close();
    },
  };
}
