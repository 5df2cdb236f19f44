// A bare remote exec (tests/bench/_bare_exec_peer.ts): the floor of exec's p50 on this machine.
import { OWN_ROOT } from "./_checkout.ts";

/** A peer process that runs commands for the bench over a bare Deno WebSocket. */
export class BareExecPeer implements AsyncDisposable {
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #child: Deno.ChildProcess;
  readonly #socket: Promise<WebSocket>;
  #pending: PromiseWithResolvers<number> | undefined;

  private constructor() {
    const ready = Promise.withResolvers<WebSocket>();
    this.#socket = ready.promise;
    this.#server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
      const { socket, response } = Deno.upgradeWebSocket(request, { idleTimeout: 0 });
      socket.onopen = () => ready.resolve(socket);
      socket.onmessage = (event) => this.#pending?.resolve(Number(event.data));
      return response;
    });
    this.#child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net=127.0.0.1",
        "--allow-run",
        `${OWN_ROOT}/tests/bench/_bare_exec_peer.ts`,
        `ws://127.0.0.1:${this.#server.addr.port}/`,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
    }).spawn();
  }

  /** Starts the peer and waits until it has dialled in. */
  static async start(): Promise<BareExecPeer> {
    const peer = new BareExecPeer();
    const timer = setTimeout(() => peer.#child.kill(), 30_000);
    try {
      await Promise.race([
        peer.#socket,
        peer.#child.status.then(() => {
          throw new Error("The bare exec peer exited before it connected");
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    return peer;
  }

  /** Runs `argv` on the peer; resolves with its exit code. */
  async exec(argv: string[]): Promise<number> {
    const socket = await this.#socket;
    this.#pending = Promise.withResolvers<number>();
    socket.send(JSON.stringify(argv));
    return await this.#pending.promise;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    (await this.#socket).close();
    await this.#child.status;
    await this.#server.shutdown();
  }
}
