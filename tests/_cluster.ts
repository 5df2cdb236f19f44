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
              heartbeatMs: 300,
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
