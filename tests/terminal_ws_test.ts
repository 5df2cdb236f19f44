// The terminal WebSocket of the control API (`/api/v1/daemons/{id}/terminal`) and of the console: a real
// controller with the API mounted, the real daemon, a real login shell; the client is Deno's WebSocket.
import { assert, assertEquals } from "./_assert.ts";
import { startWorker } from "./_daemon.ts";

const BASH = "bash --norc --noprofile -i";

/** A terminal client: collects bytes and control messages; `until` waits for a pattern or a message. */
class TermClient {
  readonly socket: WebSocket;
  text = "";
  bytes = 0;
  readonly messages: Record<string, unknown>[] = [];
  readonly closed: Promise<CloseEvent>;
  /** Ack every binary message as it arrives (for sockets opened with `flow`). */
  autoAck = false;
  #wake = () => {};
  #decoder = new TextDecoder();

  constructor(url: string, protocols?: string[]) {
    this.socket = new WebSocket(url, protocols);
    this.socket.binaryType = "arraybuffer";
    this.closed = new Promise((resolve) => this.socket.addEventListener("close", resolve));
    this.socket.addEventListener("message", (event) => {
      if (typeof event.data === "string") this.messages.push(JSON.parse(event.data));
      else {
        this.bytes += event.data.byteLength;
        this.text += this.#decoder.decode(new Uint8Array(event.data), { stream: true });
        if (this.autoAck) this.control({ type: "ack", bytes: this.bytes });
      }
      this.#wake();
    });
    this.socket.addEventListener("close", () => this.#wake());
  }

  async until(test: () => boolean, what: string, ms = 15_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!test()) {
      if (Date.now() > deadline) {
        throw new Error(
          `No ${what} within ${ms} ms: ${JSON.stringify(this.text.slice(-400))} ${
            JSON.stringify(this.messages)
          }`,
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.#wake = resolve),
        new Promise<void>((resolve) => timer = setTimeout(resolve, 250)),
      ]);
      clearTimeout(timer);
    }
  }

  text_(pattern: RegExp): Promise<void> {
    return this.until(() => pattern.test(this.text), String(pattern));
  }

  message(type: string): Promise<void> {
    return this.until(() => this.messages.some((m) => m.type === type), `${type} message`);
  }

  find(type: string): Record<string, unknown> | undefined {
    return this.messages.find((m) => m.type === type);
  }

  type(text: string): void {
    this.socket.send(new TextEncoder().encode(text));
  }

  control(message: Record<string, unknown>): void {
    this.socket.send(JSON.stringify(message));
  }
}

Deno.test("terminal WebSocket: open, type, resize, detach, reattach with the scrollback, read-only watcher", async () => {
  await using t = await startWorker("w1", [], { control: true });
  const base = t.server.url.replace(/\/ws$/, "").replace(/^http/, "ws");
  const api = `${base}/api/v1/daemons/w1/terminal`;
  const query = new URLSearchParams({ cols: "100", rows: "30", command: BASH });
  const a = new TermClient(`${api}?${query}`);
  await a.message("open");
  const open = a.find("open")!;
  assertEquals([open.cols, open.rows, open.offset, open.readOnly], [100, 30, 0, false]);
  const id = String(open.id);
  a.type("echo $((6*7))\r");
  await a.text_(/[\r\n]42\r\n/);
  a.control({ type: "resize", cols: 120, rows: 40 });
  a.type("stty size\r");
  await a.text_(/40 120/);
  // A read-only watcher joins: it sees the scrollback, then live bytes; what it types is refused.
  const w = new TermClient(`${api}?attach=${id}&readOnly=true`);
  await w.message("open");
  assertEquals(w.find("open")!.readOnly, true);
  await w.text_(/42/);
  w.type("echo nope\r");
  await w.message("error");
  assertEquals(w.find("error")!.code, "READ_ONLY");
  a.type("echo shared-$((1+2))\r");
  await w.text_(/shared-3/);
  assert(!a.text.includes("nope"));
  // The owner resizes: the watcher is told.
  a.control({ type: "resize", cols: 90, rows: 20 });
  await w.until(() => w.messages.some((m) => m.type === "resize" && m.cols === 90), "resize");
  // Detach: the session stays; a reattach replays the scrollback.
  a.control({ type: "detach" });
  await a.closed;
  const b = new TermClient(`${api}?attach=${id}&cols=80&rows=24&flow=65536`);
  await b.message("open");
  await b.text_(/42[\s\S]*shared-3/);
  b.control({ type: "ack", bytes: b.bytes });
  b.type("exit 7\r");
  await b.message("exit");
  assertEquals(b.find("exit")!.exitCode, 7);
  await b.closed;
  await w.message("exit");
  await w.closed;
});

Deno.test("terminal WebSocket: refusals are HTTP errors with codes", async () => {
  await using t = await startWorker("w1", [], { control: true });
  const base = t.server.url.replace(/\/ws$/, "").replace(/^ws/, "http");
  const get = async (path: string, upgrade = true) => {
    const response = await fetch(`${base}${path}`, {
      headers: upgrade
        ? {
          upgrade: "websocket",
          connection: "Upgrade",
          "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
          "sec-websocket-version": "13",
        }
        : {},
    });
    const body = await response.json();
    return [response.status, body.code];
  };
  assertEquals(await get("/api/v1/daemons/w1/terminal", false), [400, "BAD_REQUEST"]);
  assertEquals(await get("/api/v1/daemons/w1/terminal?cols=0&rows=10"), [400, "BAD_REQUEST"]);
  assertEquals(await get("/api/v1/daemons/w1/terminal?readOnly=true"), [400, "BAD_REQUEST"]);
  assertEquals(await get("/api/v1/daemons/w1/terminal?bogus=1"), [400, "BAD_REQUEST"]);
  assertEquals(await get("/api/v1/daemons/w1/terminal?attach=p-nope-1"), [404, "UNKNOWN_PROCESS"]);
  assertEquals(await get("/api/v1/daemons/nope/terminal"), [404, "DAEMON_NOT_FOUND"]);
});

Deno.test("terminal WebSocket: a watcher that does not ack is left behind, then told of the gap and resynced", async () => {
  await using t = await startWorker("w1", [], { control: true });
  const api = `${
    t.server.url.replace(/\/ws$/, "").replace(/^http/, "ws")
  }/api/v1/daemons/w1/terminal`;
  const sh = await t.server.shell("w1", {
    command: ["bash", "--norc", "--noprofile", "-i"],
    env: { PS1: "$ ", TERM: "dumb" },
    scrollback: 64 * 1024,
  });
  const decoder = new TextDecoder();
  let owner = "";
  const { promise: ownerDone, resolve: ownerSaw } = Promise.withResolvers<void>();
  const reading = (async () => {
    for await (const chunk of sh.output) {
      owner += decoder.decode(chunk, { stream: true });
      if (/end-4/.test(owner)) ownerSaw();
    }
  })();
  // The watcher grants 4 KiB and never acks: the controller stops sending to it, nobody else waits.
  const w = new TermClient(`${api}?attach=${sh.id}&readOnly=true&flow=4096`);
  await w.message("open");
  await sh.write("head -c 1000000 /dev/zero | tr '\\0' y; echo; echo end-$((2+2))\r");
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    ownerDone,
    new Promise((_, reject) =>
      timer = setTimeout(() => reject(new Error("the owner was held back by the watcher")), 30_000)
    ),
  ]);
  clearTimeout(timer);
  assert(w.bytes <= 4096 + 65536, `watcher got ${w.bytes}`);
  // Now it acks: the next bytes come after a gap message, then it reads on from the controller's scrollback.
  w.autoAck = true;
  w.control({ type: "ack", bytes: w.bytes });
  await w.message("gap");
  const gap = w.find("gap")!;
  assert(Number(gap.to) - Number(gap.from) > 800_000, JSON.stringify(gap));
  await w.text_(/end-4/);
  w.socket.close();
  await w.closed;
  await sh.close();
  await reading;
});
