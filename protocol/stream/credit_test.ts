// The stream layer in-process: a CreditSender and a CreditReceiver joined by fake links that lose frames, reorder
// acks and drop the whole link at every offset; gaps, resets and every credit violation a peer can commit.
import { createHash } from "node:crypto";
import { assert, assertEquals, assertThrows } from "../../tests/_assert.ts";
import { CreditError, CreditReceiver } from "./credit_receiver.ts";
import { CreditSender } from "./credit_sender.ts";

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Move `source` from a retaining sender to a receiver over a fake link. `lose` decides per frame whether the link
 * drops it; a lost frame means the link is dead until the next reconnect (as on a WebSocket: nothing after a lost
 * frame arrives). Acks travel back through a queue that `shuffle` may reorder. Returns what the consumer read.
 */
function transfer(
  source: Uint8Array,
  options: {
    window: number;
    frame: number;
    lose?: (offset: number) => boolean;
    random?: () => number;
    reorderAcks?: boolean;
    sha256?: boolean;
  },
): { out: Uint8Array; reconnects: number } {
  const tx = new CreditSender({ window: options.window, retain: true });
  const rx = new CreditReceiver({
    window: options.window,
    gaps: false,
    sha256: options.sha256 ?? false,
  });
  const out: Uint8Array[] = [];
  let acks: number[] = [];
  let linkUp = true;
  let reconnects = 0;
  let written = 0;
  let eofDelivered = false;
  const deliver = (offset: number, bytes: Uint8Array) => {
    if (!linkUp) return;
    if (options.lose?.(offset)) {
      linkUp = false;
      return;
    }
    rx.data(offset, bytes);
  };
  for (let steps = 0; steps < 1_000_000; steps++) {
    // The sender writes what its credit allows (copying, as a writer keeps its frames).
    while (written < source.length && tx.room > 0) {
      const n = Math.min(tx.room, options.frame, source.length - written);
      const piece = source.slice(written, written + n);
      const at = tx.sent(piece);
      written += n;
      deliver(at, piece);
    }
    if (written === source.length && !eofDelivered && linkUp && tx.offset === source.length) {
      rx.eof(source.length, createHash("sha256").update(source).digest("hex"));
      eofDelivered = true;
    }
    // The consumer reads one chunk; its acks go back (maybe reordered).
    const chunk = rx.take();
    if (chunk) out.push(chunk);
    const ack = rx.ackDue(chunk === undefined);
    if (ack !== null && linkUp) acks.push(ack);
    if (options.reorderAcks && acks.length > 1 && options.random!() < 0.5) acks.reverse();
    if (linkUp) {
      for (const offset of acks) tx.ack(offset);
      acks = [];
    }
    if (eofDelivered && rx.queued === 0) return { out: concat(out), reconnects };
    if (!linkUp) {
      // Reconnect: acks in flight are lost; the receiver says where to resume, the sender resends.
      acks = [];
      linkUp = true;
      reconnects++;
      for (const piece of tx.resume(rx.rebind())) deliver(piece.offset, piece.bytes);
    }
  }
  throw new Error("transfer did not finish");
}

Deno.test("credit: a clean transfer delivers every byte once and never exceeds the window", () => {
  const random = prng(7);
  const source = new Uint8Array(100_000).map(() => random() * 256);
  const { out, reconnects } = transfer(source, { window: 4096, frame: 1000, sha256: true });
  assertEquals(reconnects, 0);
  assertEquals(out, source);
});

Deno.test("credit: a link lost at every offset resumes with nothing lost and nothing doubled", () => {
  const source = crypto.getRandomValues(new Uint8Array(6000));
  for (let cut = 0; cut < source.length; cut += 97) {
    let cutDone = false;
    const { out, reconnects } = transfer(source, {
      window: 1024,
      frame: 300,
      sha256: true,
      lose: (offset) => {
        if (cutDone || offset + 300 <= cut) return false;
        cutDone = true;
        return true;
      },
    });
    assertEquals(out, source, `cut at ${cut}`);
    assertEquals(reconnects, 1, `cut at ${cut}`);
  }
});

Deno.test("credit: random loss and reordered acks still deliver the stream exactly", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const random = prng(seed);
    const source = new Uint8Array(20_000 + Math.floor(random() * 20_000)).map(() => random() * 256);
    const { out } = transfer(source, {
      window: 2048 + Math.floor(random() * 4096),
      frame: 100 + Math.floor(random() * 1500),
      lose: () => random() < 0.05,
      random,
      reorderAcks: true,
      sha256: true,
    });
    assertEquals(out, source, `seed ${seed}`);
  }
});

Deno.test("credit: the sender ignores acks that go backwards or name bytes never sent", () => {
  const tx = new CreditSender({ window: 10, retain: true });
  tx.sent(new Uint8Array(8));
  assertEquals(tx.ack(20), false);
  assertEquals(tx.ack(5), true);
  assertEquals(tx.ack(3), false);
  assertEquals(tx.acked, 5);
  assertEquals(tx.room, 7);
  assertThrows(() => tx.sent(new Uint8Array(8)), RangeError, "window leaves 7");
  assertThrows(() => tx.resume(9), CreditError, "only 8");
  assertThrows(() => tx.resume(4), CreditError, "released");
  const again = tx.resume(6);
  assertEquals(again.map((p) => [p.offset, p.bytes.length]), [[6, 2]]);
});

Deno.test("credit: a sender that keeps its bytes elsewhere rewinds on resume; skip counts as acknowledged", () => {
  const tx = new CreditSender({ window: 100, from: 50 });
  tx.sent(60);
  assertEquals(tx.resume(80), []);
  assertEquals([tx.offset, tx.acked, tx.room], [80, 80, 100]);
  tx.skip(500);
  assertEquals([tx.offset, tx.acked, tx.room], [500, 500, 100]);
  const fresh = new CreditSender({ window: 4, retain: true });
  fresh.startAt(1000);
  assertEquals(fresh.offset, 1000);
  fresh.sent(new Uint8Array(2));
  assertThrows(() => fresh.startAt(0), RangeError, "in flight");
});

Deno.test("credit: data beyond the granted window is refused", () => {
  const rx = new CreditReceiver({ window: 100 });
  rx.data(0, new Uint8Array(100));
  assertThrows(
    () => rx.data(100, new Uint8Array(1)),
    CreditError,
    "beyond the credit granted up to 100",
  );
  rx.take();
  assertEquals(rx.ackDue(), 100);
  rx.data(100, new Uint8Array(100));
});

Deno.test("credit: a resend overlapping what arrived is trimmed, never doubled", () => {
  const rx = new CreditReceiver({ window: 100 });
  rx.data(0, new Uint8Array([1, 2, 3, 4]));
  assertEquals(rx.data(2, new Uint8Array([3, 4, 5, 6])), null);
  assertEquals(rx.data(0, new Uint8Array([1, 2])), null);
  assertEquals(concat([rx.take()!, rx.take()!]), new Uint8Array([1, 2, 3, 4, 5, 6]));
  assertEquals(rx.take(), undefined);
});

Deno.test("credit: a gap must start inside the credit; its bytes cost nothing but the queue stays bounded", () => {
  const rx = new CreditReceiver({ window: 100 });
  assertThrows(() => rx.gap(100, 150), CreditError, "beyond the credit");
  assertEquals(rx.gap(0, 5000), { from: 0, to: 5000 });
  assertEquals([rx.received, rx.consumed, rx.limit], [5000, 5000, 5100]);
  rx.data(5000, new Uint8Array(99));
  // A sender trying to buy a fresh window with each gap: the queue never holds more than two windows.
  assertEquals(rx.gap(5099, 9000), { from: 5099, to: 9000 });
  rx.data(9000, new Uint8Array(100));
  assertThrows(() => rx.gap(9100, 20_000), CreditError, "beyond the credit");
  assertEquals(rx.gap(9099, 20_000), { from: 9100, to: 20_000 });
  assertThrows(() => rx.data(20_000, new Uint8Array(2)), CreditError, "201 bytes queued");
  assertEquals(rx.queued, 199);
  assertThrows(() => rx.gap(9, 3), CreditError, "inverted");
  assertEquals(rx.gap(0, 10), null); // already past it
});

Deno.test("credit: a hole is a gap where gaps are allowed, an error where not", () => {
  const loose = new CreditReceiver({ window: 100 });
  assertEquals(loose.data(10, new Uint8Array(5)), { from: 0, to: 10 });
  assertEquals(loose.received, 15);
  const strict = new CreditReceiver({ window: 100, gaps: false });
  assertThrows(() => strict.data(10, new Uint8Array(5)), CreditError, "expected 0");
  assertThrows(() => strict.gap(0, 5), CreditError, "not allowed");
  assertThrows(() => strict.eof(3), CreditError, "ended at offset 3");
});

Deno.test("credit: eof checks the end and the SHA-256; nothing is accepted after it", () => {
  const bytes = new Uint8Array([1, 2, 3]);
  const digest = createHash("sha256").update(bytes).digest("hex");
  const rx = new CreditReceiver({ window: 100, gaps: false, sha256: true });
  rx.data(0, bytes);
  assertThrows(() => rx.eof(2), CreditError, "ended at offset 2 but 3");
  const bad = new CreditReceiver({ window: 100, gaps: false, sha256: true });
  bad.data(0, bytes);
  assertThrows(() => bad.eof(3, "00"), CreditError, "SHA-256 mismatch");
  assertEquals(rx.eof(3, digest), null);
  assertEquals(rx.ended, 3);
  assertThrows(() => rx.data(3, new Uint8Array(1)), CreditError, "after its end");
});

Deno.test("credit: acks follow the schedule, and come at once when the consumer catches up", () => {
  const rx = new CreditReceiver({ window: 100, ackEvery: 50 });
  rx.data(0, new Uint8Array(10));
  rx.data(10, new Uint8Array(10));
  rx.take();
  assertEquals(rx.ackDue(), null); // 10 unacked, more queued
  rx.take();
  assertEquals(rx.ackDue(), 20); // caught up
  const lazy = new CreditReceiver({ window: 100, ackEvery: 50, ackWhenCaughtUp: false });
  lazy.data(0, new Uint8Array(10));
  lazy.take();
  assertEquals(lazy.ackDue(), null);
  assertEquals(lazy.ackDue(true), 10);
});

Deno.test("credit: a resume grants one window on top of what is still queued", () => {
  const rx = new CreditReceiver({ window: 100, gaps: false });
  rx.data(0, new Uint8Array(100));
  assertEquals(rx.rebind(), 100);
  rx.data(100, new Uint8Array(100)); // the resumed sender's new window
  assertThrows(() => rx.data(200, new Uint8Array(1)), CreditError);
  rx.rebind(50); // a smaller window on the next link
  assertEquals(rx.limit, 250);
  rx.clear();
  assertEquals([rx.queued, rx.consumed], [0, 200]);
  assertEquals(rx.ackDue(), null);
  assert(rx.take() === undefined);
});

Deno.test("credit: bad windows and offsets are refused with RangeError", () => {
  assertThrows(() => new CreditReceiver({ window: 0 }), RangeError, "got 0");
  assertThrows(() => new CreditReceiver({ window: 1, from: -1 }), RangeError, "got -1");
  assertThrows(() => new CreditSender({ window: 1.5 }), RangeError, "got 1.5");
  assertThrows(() => new CreditReceiver({ window: 1 }).rebind(0), RangeError, "got 0");
});

Deno.test("credit: copying receivers own their bytes", () => {
  const rx = new CreditReceiver({ window: 10, copy: true });
  const buffer = new Uint8Array([1, 2, 3]);
  rx.data(0, buffer);
  buffer[0] = 9;
  assertEquals(rx.take(), new Uint8Array([1, 2, 3]));
});

Deno.test("credit: a receiver with no start takes the sender's first offset, with a full window from there", () => {
  const rx = new CreditReceiver({ window: 100, from: null });
  assertEquals(rx.started, false);
  assertEquals(rx.data(1_000_000, new Uint8Array(100)), null);
  assertEquals([rx.started, rx.received, rx.limit], [true, 1_000_100, 1_000_100]);
  assertThrows(() => rx.data(1_000_100, new Uint8Array(1)), CreditError, "beyond the credit");
  const viaEof = new CreditReceiver({ window: 100, from: null });
  assertEquals(viaEof.eof(5000), null);
  assertEquals(viaEof.ended, 5000);
});
