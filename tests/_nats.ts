// Test helper: a real `nats-server` with JetStream on a free port and a temporary store directory. Tests that
// need it skip (with a printed reason) when the program is not installed; `.ci/run` installs it.

/** Whether `nats-server` is on this machine (prints why a test is skipped when it is not). */
export function haveNats(): boolean {
  try {
    new Deno.Command("nats-server", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync();
    return true;
  } catch {
    console.log("skipped: nats-server is not installed (apt-get install nats-server)");
    return false;
  }
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** A `nats-server -js` child; `restart()` stops it and starts it again on the same port and store. */
export class TestNats implements AsyncDisposable {
  readonly port: number;
  readonly storeDir: string;
  readonly #args: string[];
  readonly #env: Record<string, string>;
  #child: Deno.ChildProcess | null = null;
  #log: Promise<string> | null = null;

  private constructor(
    port: number,
    storeDir: string,
    args: string[],
    env: Record<string, string>,
  ) {
    this.port = port;
    this.storeDir = storeDir;
    this.#args = args;
    this.#env = env;
  }

  /**
   * Start one; `args` are extra `nats-server` flags (e.g. `--auth TOKEN`), `env` extra environment variables
   * (e.g. `GOGC`).
   */
  static async start(
    args: string[] = [],
    { env = {} }: { env?: Record<string, string> } = {},
  ): Promise<TestNats> {
    const nats = new TestNats(
      freePort(),
      await Deno.makeTempDir({ prefix: "sandd-nats-" }),
      args,
      env,
    );
    await nats.#spawn();
    return nats;
  }

  /** The client URL. */
  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async #spawn(): Promise<void> {
    const child = new Deno.Command("nats-server", {
      args: [
        "-js",
        "-a",
        "127.0.0.1",
        "-p",
        String(this.port),
        "-sd",
        this.storeDir,
        ...this.#args,
      ],
      env: this.#env,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    const ready = Promise.withResolvers<void>();
    let text = "";
    this.#log = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of child.stderr) {
        text += decoder.decode(chunk, { stream: true });
        if (text.includes("Server is ready")) ready.resolve();
      }
      ready.reject(new Error(`nats-server exited before it was ready:\n${text}`));
      return text;
    })();
    await ready.promise;
  }

  /** Stop (SIGTERM) and wait. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    this.#child = null;
    try {
      child.kill("SIGTERM");
    } catch {
      // gone
    }
    await child.status;
    await this.#log;
  }

  /** Stop and start again on the same port and store (JetStream state survives). */
  async restart(): Promise<void> {
    await this.stop();
    await this.#spawn();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
    await Deno.remove(this.storeDir, { recursive: true }).catch(() => {});
  }
}
