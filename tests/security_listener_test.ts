// Attack (issue 10 item 6): raw TCP sockets that each send a partial HTTP request head, until the controller runs
// out of file descriptors. Before the fix, `Deno.serve`'s accept loop failed with "Too many open files" and the
// controller process exited with code 1. The controller runs in a child process under a lowered descriptor limit
// (`ulimit -n` in `sh -c`), so the flood exhausts its descriptors and not the test runner's.
//
// Run with `deno run` and `--child`, this file is that child: a controller on 127.0.0.1:0 that prints its port and
// answers line commands on stdin (`wait ID`, `exec ID`).
import { configure, getTextFormatter } from "@logtape/logtape";
import { assert, assertEquals, assertGreater, assertLess } from "./_assert.ts";
import { Server } from "../mod.ts";
import { alive, TestDaemon } from "./_daemon.ts";

const FD_LIMIT = 256;
const FLOOD = 420;
const HEADER_TIMEOUT_MS = 1_500;
const TOKEN = "listener-flood-token-0123456789abcdef";

async function child(headerTimeoutMs: number): Promise<void> {
  const encoder = new TextEncoder();
  const formatter = getTextFormatter();
  await configure({
    sinks: { stderr: (record) => void Deno.stderr.writeSync(encoder.encode(formatter(record))) },
    loggers: [
      { category: ["sandd"], lowestLevel: "warning", sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
  const server = await Server.listen({
    hostname: "127.0.0.1",
    port: 0,
    token: TOKEN,
    headerTimeoutMs,
  });
  const say = (value: unknown) =>
    Deno.stdout.writeSync(encoder.encode(JSON.stringify(value) + "\n"));
  say({ port: server.port, url: server.url });
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  let buffered = "";
  for await (const chunk of lines) {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const [command, id = ""] = buffered.slice(0, newline).split(" ");
      buffered = buffered.slice(newline + 1);
      try {
        if (command === "wait") {
          await server.waitForDaemon(id, { timeout: 20_000 });
          say({ ok: true });
        } else if (command === "exec") {
          const result = await server.exec(id, ["echo", "still-serving"], { timeout: 10_000 });
          say({ ok: true, stdout: result.stdout, exitCode: result.exitCode });
        }
      } catch (error) {
        say({ ok: false, error: String(error) });
      }
    }
  }
  await server.close();
}

if (import.meta.main && Deno.args[0] === "--child") {
  await child(Number(Deno.args[1]));
}

/** The controller child: line commands in, JSON lines out, stderr collected. */
class ControllerChild implements AsyncDisposable {
  readonly process: Deno.ChildProcess;
  stderr = "";
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #lines: AsyncIterator<string>;
  #stderrDone: Promise<void>;
  #waiters: { needle: string; resolve: () => void }[] = [];

  constructor(fdLimit: number, headerTimeoutMs: number) {
    const script = new URL(import.meta.url).pathname;
    this.process = new Deno.Command("sh", {
      args: [
        "-c",
        `ulimit -n ${fdLimit} && exec "$0" "$@"`,
        Deno.execPath(),
        "run",
        "--allow-all",
        script,
        "--child",
        String(headerTimeoutMs),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#writer = this.process.stdin.getWriter();
    this.#lines = lineReader(this.process.stdout);
    const stderr = this.process.stderr;
    this.#stderrDone = (async () => {
      for await (const chunk of stderr.pipeThrough(new TextDecoderStream())) {
        this.stderr += chunk;
        this.#waiters = this.#waiters.filter((w) => {
          if (!this.stderr.includes(w.needle)) return true;
          w.resolve();
          return false;
        });
      }
    })();
  }

  /** Resolves once the child's stderr contains `needle`, or rejects after `timeoutMs`. */
  waitForLog(needle: string, timeoutMs: number): Promise<void> {
    if (this.stderr.includes(needle)) return Promise.resolve();
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const timer = setTimeout(
      () => reject(new Error(`No '${needle}' in the controller's log: ${this.stderr}`)),
      timeoutMs,
    );
    this.#waiters.push({
      needle,
      resolve: () => {
        clearTimeout(timer);
        resolve();
      },
    });
    return promise;
  }

  async read(): Promise<Record<string, unknown>> {
    const next = await this.#lines.next();
    if (next.done) throw new Error(`The controller exited; its log: ${this.stderr}`);
    return JSON.parse(next.value);
  }

  async ask(line: string): Promise<Record<string, unknown>> {
    await this.#writer.write(new TextEncoder().encode(line + "\n"));
    return await this.read();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#writer.close().catch(() => {});
    const timer = setTimeout(() => this.process.kill("SIGKILL"), 5_000);
    await this.process.status;
    clearTimeout(timer);
    await this.#lines.return?.();
    await this.#stderrDone;
  }
}

async function* lineReader(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffered = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
    }
  }
}

/**
 * Read until the peer closes; returns when, and whether it was a reset. The controller closes a slow head with
 * EOF; a reset comes from the kernel, for connections beyond the listen backlog that it never handed over.
 */
async function closedAt(conn: Deno.Conn): Promise<{ at: number; reset: boolean }> {
  const buffer = new Uint8Array(1024);
  try {
    while (await conn.read(buffer) !== null) {
      // A controller may answer 408 or the like before closing; keep reading to the close.
    }
  } catch {
    return { at: performance.now(), reset: true };
  }
  return { at: performance.now(), reset: false };
}

Deno.test(
  "security: a flood of partial request heads exhausts the controller's descriptors; it survives, logs it, closes slow heads after the header timeout and serves again",
  async () => {
    await using controller = new ControllerChild(FD_LIMIT, HEADER_TIMEOUT_MS);
    const { port, url } = await controller.read() as { port: number; url: string };
    await using daemon = new TestDaemon({
      id: "flooded",
      url: url,
      env: { SANDD_TOKEN: TOKEN },
    });
    assertEquals((await controller.ask("wait flooded")).ok, true);

    // The flood: each socket sends the start of a request head and never finishes it.
    const head = new TextEncoder().encode(
      `GET /health HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Slow: `,
    );
    const started = performance.now();
    const sockets: Deno.Conn[] = [];
    try {
      for (let i = 0; i < FLOOD; i += 20) {
        const batch = await Promise.allSettled(
          Array.from({ length: 20 }, () => Deno.connect({ hostname: "127.0.0.1", port })),
        );
        const opened = batch.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
        sockets.push(...opened);
        await Promise.allSettled(opened.map((conn) => conn.write(head)));
        // A refused connection means the listener is gone: the checks below say why.
        if (opened.length < batch.length) break;
      }
      // The controller ran out of descriptors and said so (and did not exit).
      await controller.waitForLog("Too many open files", 10_000);
      assert(alive(controller.process.pid), `The controller exited; its log: ${controller.stderr}`);

      // Every slow head is closed by the controller, none before the header timeout.
      const closes = await Promise.all(sockets.map((conn) => closedAt(conn)));
      const byController = closes.filter((close) => !close.reset).map((close) =>
        close.at - started
      );
      assertGreater(
        byController.length,
        FD_LIMIT / 2,
        `${byController.length} slow heads closed with EOF`,
      );
      const first = Math.min(...byController);
      const last = Math.max(...closes.map((close) => close.at - started));
      assertGreater(first, HEADER_TIMEOUT_MS - 100, `a slow head was closed after ${first} ms`);
      assertLess(
        last,
        4 * HEADER_TIMEOUT_MS + 5_000,
        `the last slow head was closed after ${last} ms`,
      );
    } finally {
      for (const conn of sockets) conn.close();
    }

    // Still alive, still serving HTTP, still relaying to its daemon.
    assert(alive(controller.process.pid), `The controller exited; its log: ${controller.stderr}`);
    const health = await fetch(`http://127.0.0.1:${port}/health`);
    assertEquals(health.status, 200);
    assertEquals((await health.json()).status, "ok");
    assertEquals((await controller.ask("wait flooded")).ok, true);
    const exec = await controller.ask("exec flooded");
    assertEquals(exec, { ok: true, stdout: "still-serving\n", exitCode: 0 });
    await daemon.stop();
  },
);
