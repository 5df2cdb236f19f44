// Test helper: a cluster of controller nodes (embedded `Server`s) over a real nats-server, with daemons.
import { Server, type ServerOptions } from "../mod.ts";
import { TestDaemon } from "./_daemon.ts";
import { TestNats } from "./_nats.ts";

/** NATS, three nodes named a, b, c (short heartbeats), and the daemons started on them. */
export class TestCluster implements AsyncDisposable {
  readonly nats: TestNats;
  readonly nodes: Server[];
  readonly daemons: TestDaemon[] = [];

  private constructor(nats: TestNats, nodes: Server[]) {
    this.nats = nats;
    this.nodes = nodes;
  }

  static async start(
    count = 3,
    options: ServerOptions = {},
    natsArgs: string[] = [],
  ): Promise<TestCluster> {
    const nats = await TestNats.start(natsArgs);
    const nodes: Server[] = [];
    try {
      for (let i = 0; i < count; i++) {
        nodes.push(
          await Server.listen({
            port: 0,
            ...options,
            cluster: {
              servers: nats.url,
              name: String.fromCharCode(97 + i),
              heartbeatMs: 2_000,
              ...options.cluster,
            },
          }),
        );
      }
    } catch (error) {
      for (const node of nodes) await node.close();
      await nats[Symbol.asyncDispose]();
      throw error;
    }
    return new TestCluster(nats, nodes);
  }

  /** Start a daemon on node `index` and wait until every node sees it. */
  async daemon(id: string, index: number, args: string[] = []): Promise<TestDaemon> {
    const daemon = new TestDaemon({ id, url: this.nodes[index]!.url, args });
    this.daemons.push(daemon);
    for (const node of this.nodes) await node.waitForDaemon(id, { timeout: 20_000 });
    return daemon;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const daemon of this.daemons) await daemon.stop();
    for (const node of this.nodes) await node.close();
    await this.nats[Symbol.asyncDispose]();
  }
}

/** A TCP relay on 127.0.0.1 whose target can be changed: new connections go to the current target. */
export class SwitchRelay implements AsyncDisposable {
  readonly #listener: Deno.TcpListener;
  readonly #conns = new Set<Deno.TcpConn>();
  readonly #pipes = new Set<Promise<void>>();
  readonly #accepting: Promise<void>;
  /** Where new connections go. */
  target: number;

  constructor(target: number) {
    this.target = target;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#accepting = this.#accept();
  }

  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  url(path = "/ws"): string {
    return `ws://127.0.0.1:${this.port}${path}`;
  }

  async #accept(): Promise<void> {
    try {
      for await (const a of this.#listener) {
        let b: Deno.TcpConn;
        try {
          b = await Deno.connect({ hostname: "127.0.0.1", port: this.target });
        } catch {
          a.close();
          continue;
        }
        this.#conns.add(a);
        this.#conns.add(b);
        const close = () => {
          for (const c of [a, b]) {
            if (this.#conns.delete(c)) {
              try {
                c.close();
              } catch {
                // closed
              }
            }
          }
        };
        const pipe = Promise.all([
          a.readable.pipeTo(b.writable).catch(() => {}).finally(close),
          b.readable.pipeTo(a.writable).catch(() => {}).finally(close),
        ]).then(() => {});
        this.#pipes.add(pipe);
        pipe.finally(() => this.#pipes.delete(pipe));
      }
    } catch {
      // listener closed
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    await this.#accepting;
    for (const c of [...this.#conns]) {
      try {
        c.close();
      } catch {
        // closed
      }
    }
    this.#conns.clear();
    await Promise.all([...this.#pipes]);
  }
}
