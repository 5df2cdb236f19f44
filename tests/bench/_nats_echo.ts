// The floor of a request routed through NATS: a plain request/reply between two connections (npm
// @nats-io/transport-node, no SandD code), with a payload the size of a small exec request. A cross-node exec pays
// this round trip (node → nats-server → node and back) on top of a same-node exec. Both connections are in this
// process, or (`apart`) the answering one is in a process of its own, as an owner node in its own process is:
// `deno run -A _nats_echo.ts NATS_URL` answers, printing "ready" once its subscription is known to the server.
import { connect } from "@nats-io/transport-node";

const SUBJECT = "bench.floor.echo";
const PAYLOAD = new TextEncoder().encode(JSON.stringify({
  type: "exec",
  id: "bench-cluster",
  command: ["true"],
  options: { cwd: "/tmp", env: {}, timeout: 60_000, maxOutputBytes: 1_048_576 },
}));

/** Two NATS connections: one answers, the other asks. */
export class NatsEcho implements AsyncDisposable {
  readonly #asker: Awaited<ReturnType<typeof connect>>;
  readonly #answerer: Awaited<ReturnType<typeof connect>> | Deno.ChildProcess;

  private constructor(
    asker: Awaited<ReturnType<typeof connect>>,
    answerer: Awaited<ReturnType<typeof connect>> | Deno.ChildProcess,
  ) {
    this.#asker = asker;
    this.#answerer = answerer;
  }

  /**
   * Connects both to `servers` and waits until the answering side's subscription is known to the server
   * (`apart`: the answering side in a child process).
   */
  static async start(
    servers: string,
    { apart = false }: { apart?: boolean } = {},
  ): Promise<NatsEcho> {
    const answerer = apart ? await answerApart(servers) : await answer(servers);
    const asker = await connect({ servers });
    return new NatsEcho(asker, answerer);
  }

  /** One request/reply round trip. */
  async request(): Promise<void> {
    const reply = await this.#asker.request(SUBJECT, PAYLOAD, { timeout: 10_000 });
    if (reply.data.length !== PAYLOAD.length) {
      throw new Error("The NATS echo answered with other bytes");
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#asker.close();
    if (this.#answerer instanceof Deno.ChildProcess) {
      this.#answerer.kill();
      await this.#answerer.status;
    } else await this.#answerer.close();
  }
}

/** A connection that answers every request with its own bytes. */
async function answer(servers: string): Promise<Awaited<ReturnType<typeof connect>>> {
  const answerer = await connect({ servers });
  answerer.subscribe(SUBJECT, {
    callback: (_error, msg) => {
      msg.respond(msg.data);
    },
  });
  await answerer.flush();
  return answerer;
}

/** The answering connection in a child process, once it is ready. */
async function answerApart(servers: string): Promise<Deno.ChildProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, servers],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  for await (const chunk of child.stdout) {
    text += decoder.decode(chunk, { stream: true });
    if (text.includes("ready\n")) break;
  }
  if (!text.includes("ready\n")) {
    await child.status;
    throw new Error(`The NATS echo process exited before it was ready: ${text}`);
  }
  return child;
}

if (import.meta.main) {
  await answer(Deno.args[0]!);
  console.log("ready");
}
