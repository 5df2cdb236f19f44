// A long, lossy link per packet (tests/bench/_packet_link.py): this machine at HOST, a network namespace at PEER,
// with RTT and loss applied to every IP packet between them. Processes started with `wrap` run in the namespace.
import { OWN_ROOT } from "./_checkout.ts";

/** Options of {@linkcode PacketLink.start}. */
export interface PacketLinkOptions {
  /** Round-trip time added to every packet pair. */
  rttMs: number;
  /** Probability that a packet is dropped, 0..1. */
  loss: number;
}

let next = 0;

/** The running link; disposing it removes the namespace. */
export class PacketLink implements AsyncDisposable {
  /** This machine's end of the link. */
  readonly hostAddress: string;
  /** The namespace's end. */
  readonly peerAddress: string;
  /** A command prefix that runs a program in the namespace. */
  readonly wrap: string[];
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #stderr: Promise<string>;

  private constructor(
    child: Deno.ChildProcess,
    netns: string,
    addresses: [string, string],
    stderr: Promise<string>,
  ) {
    this.#child = child;
    this.#stdin = child.stdin.getWriter();
    this.#stderr = stderr;
    this.wrap = ["ip", "netns", "exec", netns];
    [this.hostAddress, this.peerAddress] = addresses;
  }

  /** Why the link cannot be set up here, or null when it can. */
  static missing(): string | null {
    if (Deno.build.os !== "linux") return "a packet link needs Linux network namespaces";
    if (Deno.uid() !== 0) return "a packet link needs root (network namespaces, TUN devices)";
    for (const path of ["/dev/net/tun"]) {
      try {
        Deno.statSync(path);
      } catch {
        return `no ${path}`;
      }
    }
    const found = (name: string) =>
      ["/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"].some((dir) => {
        try {
          return Deno.statSync(dir + name).isFile;
        } catch {
          return false;
        }
      });
    if (!found("ip")) return "no ip (apt-get install -y iproute2)";
    if (!found("python3")) return "no python3";
    return null;
  }

  /** Sets up the namespace and the link; resolves once packets flow. */
  static async start(options: PacketLinkOptions): Promise<PacketLink> {
    const id = `${Deno.pid % 10_000}${next++}`;
    const netns = `sdw${id}`;
    const third = 64 + (Deno.pid + next) % 128;
    const addresses: [string, string] = [`10.77.${third}.1`, `10.77.${third}.2`];
    const child = new Deno.Command("python3", {
      args: [
        `${OWN_ROOT}/tests/bench/_packet_link.py`,
        netns,
        ...addresses,
        String(options.rttMs),
        String(options.loss),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let said = "";
    while (!said.includes("ready")) {
      const { done, value } = await reader.read();
      if (done) {
        await child.status;
        throw new Error(`The packet link did not come up: ${await stderr}`);
      }
      said += value;
    }
    void reader.closed.catch(() => {});
    void (async () => {
      while (!(await reader.read()).done);
    })();
    return new PacketLink(child, netns, addresses, stderr);
  }

  /** What the link counted (packets, losses), once it has stopped. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.#stdin.close().catch(() => {});
    await this.#child.status;
    await this.#stderr;
  }
}
