// Test helpers for the `sandd` program: a real `sandd serve` child process, the operator commands run as child
// processes, both with the permission flags the compiled binary embeds.
import { DAEMON_PERMISSION_FLAGS } from "../daemon/permissions.ts";
import { TestDaemon } from "./_daemon.ts";

/** The one `sandd` entry point. */
export const SANDD = new URL("../daemon/main.ts", import.meta.url).pathname;

/** What a `sandd` run printed and its exit code. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  stdoutBytes: Uint8Array;
}

/** Options of {@linkcode sandd}. */
export interface CliOptions {
  /** Bytes for stdin, then EOF; without it stdin is /dev/null. */
  stdin?: string | Uint8Array;
  /** The environment (nothing else is inherited but PATH and HOME). */
  env?: Record<string, string>;
  /** The working directory. */
  cwd?: string;
}

/** Run `sandd ARGS...` to completion. */
export async function sandd(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...DAEMON_PERMISSION_FLAGS, SANDD, ...args],
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: Deno.env.get("HOME") ?? "/root",
      NO_COLOR: "1",
      SANDD_CONFIG: "/nonexistent/sandd-config.json",
      ...options.env,
    },
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    const bytes = typeof options.stdin === "string"
      ? new TextEncoder().encode(options.stdin)
      : options.stdin;
    // The remote side may exit before it reads everything: a broken pipe is not the test's failure.
    await writer.write(bytes).catch(() => {});
    await writer.close().catch(() => {});
  }
  const output = await child.output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
    stdoutBytes: output.stdout,
  };
}

/** A running `sandd serve`. */
export class ServeProcess implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  /** Base URL, `http://127.0.0.1:PORT`. */
  url = "";
  /** The daemons' WebSocket URL. */
  wsUrl = "";
  #stderr: Promise<string>;
  #status: Promise<Deno.CommandStatus> | null = null;
  #stdoutRest: Promise<string> = Promise.resolve("");

  constructor(args: string[] = []) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...DAEMON_PERMISSION_FLAGS,
        SANDD,
        "serve",
        "--port",
        "0",
        "--log-level",
        "warning",
        ...args,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stderr = new Response(this.child.stderr).text();
  }

  /** Resolves with the base URL once `listening on URL` is printed; rejects when it exits first. */
  async ready(): Promise<string> {
    const reader = this.child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("\n")) {
      const { done, value } = await reader.read();
      if (done) {
        const { code } = await this.stop();
        throw new Error(`sandd serve exited (${code}) before listening: ${await this.#stderr}`);
      }
      text += value;
    }
    const match = text.match(/listening on (\S+) \(daemons: (\S+),/);
    if (!match) throw new Error(`Unexpected first line of sandd serve: ${text}`);
    this.url = match[1]!;
    this.wsUrl = match[2]!;
    this.#stdoutRest = (async () => {
      let rest = "";
      while (true) {
        const { done, value } = await reader.read();
        if (done) return rest;
        rest += value;
      }
    })();
    return this.url;
  }

  /** Send `signal` (once) and wait for the exit. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<{ code: number; stderr: string }> {
    if (!this.#status) {
      try {
        this.child.kill(signal);
      } catch {
        // exited already
      }
      this.#status = this.child.status;
    }
    const { code } = await this.#status;
    await this.#stdoutRest;
    return { code, stderr: await this.#stderr };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** Start `sandd serve` and wait until it listens. */
export async function startServe(args: string[] = []): Promise<ServeProcess> {
  const serve = new ServeProcess(args);
  try {
    await serve.ready();
  } catch (error) {
    await serve.stop().catch(() => {});
    throw error;
  }
  return serve;
}

/** Wait until the controller at `url` lists daemon `id` (through the control API's wait route). */
export async function waitForWorker(url: string, id: string, token?: string): Promise<void> {
  const response = await fetch(
    `${url}/api/v1/daemons/${encodeURIComponent(id)}/wait?timeout=20000`,
    { headers: token ? { authorization: `Bearer ${token}` } : {} },
  );
  const body = await response.text();
  if (!response.ok) throw new Error(`Waiting for ${id}: ${response.status} ${body}`);
}

/** A `sandd serve` with real daemons connected to it. */
export interface Fleet extends AsyncDisposable {
  serve: ServeProcess;
  daemons: TestDaemon[];
  /** Environment for `sandd` runs that reaches this controller. */
  env: Record<string, string>;
}

/** Start `sandd serve` and daemons with these ids (and per-daemon extra args), all connected. */
export async function startFleet(
  workers: { id: string; args?: string[] }[],
  serveArgs: string[] = [],
  token?: string,
): Promise<Fleet> {
  const serve = await startServe(serveArgs);
  const daemons = workers.map((w) =>
    new TestDaemon({ id: w.id, url: serve.wsUrl, ...(w.args ? { args: w.args } : {}) })
  );
  try {
    for (const w of workers) await waitForWorker(serve.url, w.id, token);
  } catch (error) {
    await Promise.all(daemons.map((d) => d.stop()));
    await serve.stop();
    throw error;
  }
  return {
    serve,
    daemons,
    env: { SANDD_URL: serve.url, ...(token ? { SANDD_API_TOKEN: token } : {}) },
    async [Symbol.asyncDispose]() {
      await Promise.all(daemons.map((d) => d.stop()));
      await serve.stop();
    },
  };
}
