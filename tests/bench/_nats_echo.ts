// The floor of a request routed through NATS: a plain request/reply between two connections of this process
// (npm @nats-io/transport-node, no SandD code), with a payload the size of a small exec request. A cross-node
// exec pays this round trip (node → nats-server → node and back) on top of a same-node exec.
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
  readonly #answerer: Awaited<ReturnType<typeof connect>>;

  private constructor(
    asker: Awaited<ReturnType<typeof connect>>,
    answerer: Awaited<ReturnType<typeof connect>>,
  ) {
    this.#asker = asker;
    this.#answerer = answerer;
  }

  /** Connects both to `servers` and waits until the answering side's subscription is known to the server. */
  static async start(servers: string): Promise<NatsEcho> {
    const answerer = await connect({ servers });
    answerer.subscribe(SUBJECT, {
      callback: (_error, msg) => {
        msg.respond(msg.data);
      },
    });
    await answerer.flush();
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
    await this.#answerer.close();
  }
}
