// The real daemon of the checkout under test, run as a child process the way tests/_daemon.ts runs it.
import type { Checkout, Server } from "./_checkout.ts";

/** Options of {@link BenchDaemon}. */
export interface BenchDaemonOptions {
  id: string;
  url: string;
  /** Extra daemon flags. */
  args?: string[];
  /** A command prefix to run the daemon under (e.g. `ip netns exec NAME`). @default none */
  wrap?: string[];
}

/** One daemon process of the checkout under test. */
export class BenchDaemon implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #output: Promise<string>;
  #stopped: Promise<Deno.CommandStatus> | null = null;

  constructor(checkout: Checkout, options: BenchDaemonOptions) {
    const wrap = options.wrap ?? [];
    this.#child = new Deno.Command(wrap[0] ?? Deno.execPath(), {
      args: [
        ...(wrap.length > 0 ? [...wrap.slice(1), Deno.execPath()] : []),
        "run",
        ...checkout.daemonFlags,
        checkout.daemonMain,
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
      env: {},
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.#output = new Response(this.#child.stderr).text();
  }

  get pid(): number {
    return this.#child.pid;
  }

  /** Stops the daemon (SIGTERM) and waits for it; returns what it logged. */
  async stop(): Promise<string> {
    if (!this.#stopped) {
      try {
        this.#child.kill("SIGTERM");
      } catch {
        // exited already
      }
      this.#stopped = this.#child.status;
    }
    await this.#stopped;
    return await this.#output;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** Options of {@link withDaemon}. */
export interface WithDaemonOptions {
  /** Options of `Server.listen` (port 0 is added). */
  listen?: Parameters<Checkout["mod"]["Server"]["listen"]>[0];
  /** The URL the daemon dials, from the server's. */
  url?: (server: Server) => string;
  /** Extra daemon flags. */
  args?: string[];
  /** A command prefix to run the daemon under. @default none */
  wrap?: string[];
}

/** Starts a controller and one daemon, runs `fn`, then stops both. */
export async function withDaemon<T>(
  checkout: Checkout,
  id: string,
  fn: (server: Server, daemon: BenchDaemon) => Promise<T>,
  options: WithDaemonOptions = {},
): Promise<T> {
  const server = await checkout.mod.Server.listen({ port: 0, ...options.listen });
  const daemon = new BenchDaemon(checkout, {
    id,
    url: options.url?.(server) ?? server.url,
    args: options.args ?? [],
    ...(options.wrap ? { wrap: options.wrap } : {}),
  });
  try {
    await server.waitForDaemon(id, { timeout: 60_000 }).catch(async (error) => {
      throw new Error(`Daemon ${id} did not connect: ${await daemon.stop()}`, { cause: error });
    });
    return await fn(server, daemon);
  } finally {
    await daemon.stop();
    await server.close();
  }
}
