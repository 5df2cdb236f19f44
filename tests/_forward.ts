// Test helpers for port forwarding: start a worker-side server program and learn its port.

/** A program listening on 127.0.0.1 (a child process), killed on dispose. */
export class ServerProgram implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly port: Promise<number>;
  #stdout: Promise<void>;

  constructor(command: string, args: string[], options: { cwd?: string; portFrom?: RegExp } = {}) {
    this.child = new Deno.Command(command, {
      args,
      ...(options.cwd ? { cwd: options.cwd } : {}),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const { promise, resolve, reject } = Promise.withResolvers<number>();
    this.port = promise;
    const pattern = options.portFrom ?? /PORT (\d+)/;
    const read = async (stream: ReadableStream<Uint8Array>) => {
      let text = "";
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        text += chunk;
        const match = pattern.exec(text);
        if (match) resolve(Number(match[1]));
      }
      reject(new Error(`${command} ended without printing its port: ${text.slice(0, 500)}`));
    };
    this.#stdout = Promise.all([read(this.child.stdout), read(this.child.stderr)]).then(() => {});
    promise.catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // exited
    }
    await this.child.status;
    await this.#stdout;
  }
}

const SERVERS = new URL("./_forward_servers.ts", import.meta.url).pathname;

/** One of the Deno test servers of `_forward_servers.ts`. */
export function denoServer(mode: "echo" | "count" | "http"): ServerProgram {
  return new ServerProgram(Deno.execPath(), ["run", "--allow-net", SERVERS, mode]);
}

/** A port nothing listens on (bound, then released). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

/** Read a connection to its end. */
export async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buffer = new Uint8Array(65536);
  while (true) {
    const n = await conn.read(buffer);
    if (n === null) break;
    parts.push(buffer.slice(0, n));
  }
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
