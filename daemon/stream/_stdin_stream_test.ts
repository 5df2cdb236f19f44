// The daemon's stdin stream in-process, over fake links: writes in order, acks as written, resumes on a new link
// without doubling, refuses data past the window, drops (and still acks) bytes after the child closed its stdin.
import { assertEquals } from "../../tests/_assert.ts";
import type { Link, StreamRoute } from "../_link.ts";
import { StdinStream } from "./_stdin_stream.ts";

class FakeLink {
  readonly routes: Map<number, StreamRoute> = new Map();
  readonly sent: Record<string, unknown>[] = [];
  bind(sid: number, route: StreamRoute): void {
    this.routes.set(sid, route);
  }
  unbind(sid: number, route?: StreamRoute): void {
    if (!route || this.routes.get(sid) === route) this.routes.delete(sid);
  }
  send(message: Record<string, unknown>): void {
    this.sent.push(message);
  }
  acks(): number[] {
    return this.sent.filter((m) => m.t === "ack").map((m) => m.offset as number);
  }
}

/** A child's stdin that records writes; `gate` holds writes until released. */
function sink() {
  const written: number[] = [];
  let closed = false;
  let gate = Promise.withResolvers<void>();
  gate.resolve();
  return {
    written,
    get closed() {
      return closed;
    },
    hold() {
      gate = Promise.withResolvers<void>();
    },
    release() {
      gate.resolve();
    },
    sink: {
      write: async (bytes: Uint8Array) => {
        await gate.promise;
        written.push(...bytes);
      },
      close: () => {
        closed = true;
        return Promise.resolve();
      },
    },
  };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

Deno.test("stdin stream: writes in order, acks as written, resumes on a new link without doubling", async () => {
  const child = sink();
  const stdin = new StdinStream(child.sink);
  const a = new FakeLink();
  stdin.bind(a as unknown as Link, 3, 8);
  child.hold();
  a.routes.get(3)!.onData!(0, new Uint8Array([1, 2, 3, 4]));
  a.routes.get(3)!.onData!(4, new Uint8Array([5, 6]));
  assertEquals(stdin.received, 6);
  // The link drops before anything was written; a new one resumes at `received` and resends an overlap.
  a.routes.get(3)!.onClose!();
  const b = new FakeLink();
  stdin.bind(b as unknown as Link, 9, 8);
  b.routes.get(9)!.onData!(4, new Uint8Array([5, 6, 7, 8]));
  child.release();
  await settle();
  await settle();
  assertEquals(child.written, [1, 2, 3, 4, 5, 6, 7, 8]);
  assertEquals(stdin.written, 8);
  assertEquals(b.acks().at(-1), 8);
  b.routes.get(9)!.onEof!(8, undefined);
  await settle();
  assertEquals(child.closed, true);
});

Deno.test("stdin stream: data past the window is reset; bytes after the child closed stdin are acked", async () => {
  const child = sink();
  const stdin = new StdinStream(child.sink);
  const link = new FakeLink();
  stdin.bind(link as unknown as Link, 1, 4);
  child.hold();
  link.routes.get(1)!.onData!(0, new Uint8Array(4));
  link.routes.get(1)!.onData!(4, new Uint8Array(1));
  assertEquals(link.sent.filter((m) => m.t === "reset").length, 1);
  assertEquals(link.routes.has(1), false);
  child.release();
  await settle();
  assertEquals(child.written.length, 4);
  stdin.closed();
  const again = new FakeLink();
  stdin.bind(again as unknown as Link, 2, 4);
  again.routes.get(2)!.onData!(4, new Uint8Array(3));
  await settle();
  assertEquals(child.written.length, 4);
  assertEquals(again.acks().at(-1), 7);
});

Deno.test("stdin stream: a process without stdin acknowledges and drops", async () => {
  const stdin = new StdinStream(null);
  const link = new FakeLink();
  stdin.bind(link as unknown as Link, 1, 16);
  link.routes.get(1)!.onData!(0, new Uint8Array(5));
  await settle();
  assertEquals([stdin.written, link.acks().at(-1)], [5, 5]);
});
