// The daemon's file transfer ends in-process, over fake links: a download sent within the window, cut at every
// frame (frames in flight lost) and resumed on a new link from what the controller received, for a file and for
// an archive stream, ends with every byte once and the SHA-256 verified; an upload acknowledges as written,
// refuses data past its window and a wrong digest.
import { createHash } from "node:crypto";
import { assert, assertEquals, assertRejects, assertThrows } from "../tests/_assert.ts";
import { decodeDataFrame } from "@sandd/protocol/frame";
import { CreditReceiver } from "@sandd/protocol/stream";
import type { Link, StreamRoute } from "./_link.ts";
import {
  DownloadSender,
  type DownloadSource,
  fileSource,
  streamSource,
  UploadReceiver,
} from "./_file_streams.ts";
import { ParkedTransfers } from "./_parked_transfers.ts";
import { DaemonRequestError } from "./process_table.ts";

class FakeLink {
  readonly routes: Map<number, StreamRoute> = new Map();
  readonly sent: Record<string, unknown>[] = [];
  readonly frames: Uint8Array[] = [];
  bind(sid: number, route: StreamRoute): void {
    this.routes.set(sid, route);
  }
  unbind(sid: number, route?: StreamRoute): void {
    if (!route || this.routes.get(sid) === route) this.routes.delete(sid);
  }
  send(message: Record<string, unknown>): void {
    this.sent.push(message);
  }
  sendBinary(frame: Uint8Array): void {
    this.frames.push(frame.slice());
  }
  /** The link drops: every route hears it. */
  close(): void {
    const routes = [...this.routes.values()];
    this.routes.clear();
    for (const route of routes) route.onClose?.();
  }
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

function random(n: number): Uint8Array {
  const bytes = new Uint8Array(n);
  for (let at = 0; at < n; at += 65536) crypto.getRandomValues(bytes.subarray(at, at + 65536));
  return bytes;
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function memoryFile(data: Uint8Array): DownloadSource & { readonly closed: boolean } {
  let closed = false;
  const source = fileSource((buffer, offset) => {
    const n = Math.max(0, Math.min(buffer.length, data.length - offset));
    buffer.set(data.subarray(offset, offset + n));
    return n;
  }, () => closed = true);
  return {
    read: source.read,
    close: source.close,
    get closed() {
      return closed;
    },
  };
}

function chunkedStream(data: Uint8Array, seed: number): ReadableStream<Uint8Array> {
  let at = 0;
  let s = seed;
  return new ReadableStream({
    pull(controller) {
      if (at >= data.length) return controller.close();
      s = (s * 1103515245 + 12345) % 2 ** 31;
      const n = 1 + (s % 700);
      controller.enqueue(data.slice(at, at + n));
      at += n;
    },
  });
}

/**
 * Play the controller: deliver up to `deliver` frames (then the link drops, the rest in flight lost), consuming
 * and acknowledging as it goes. Returns whether the stream ended.
 */
async function drive(
  link: FakeLink,
  sid: number,
  rx: CreditReceiver,
  out: number[],
  deliver: number,
): Promise<{ ended: boolean; sha256?: string }> {
  let delivered = 0;
  while (true) {
    await settle();
    const frame = link.frames.shift();
    if (frame) {
      if (delivered === deliver) return { ended: false };
      delivered++;
      const { sid: fsid, offset, payload } = decodeDataFrame(frame);
      assertEquals(fsid, sid);
      rx.data(offset, payload);
      for (let chunk = rx.take(); chunk; chunk = rx.take()) out.push(...chunk);
      const ack = rx.ackDue();
      if (ack !== null) link.routes.get(sid)?.onAck?.(ack);
      continue;
    }
    const eof = link.sent.find((m) => m.t === "eof");
    if (eof) {
      rx.eof(eof.offset as number, eof.sha256 as string);
      link.routes.get(sid)?.onAck?.(eof.offset as number);
      return { ended: true, sha256: eof.sha256 as string };
    }
    if (delivered === deliver) return { ended: false };
    // Nothing sent: the sender waits for credit we hold back, or reads.
    const ack = rx.ackDue(true);
    if (ack !== null) link.routes.get(sid)?.onAck?.(ack);
    else await settle();
  }
}

async function resumeEverywhere(makeSource: () => DownloadSource, data: Uint8Array): Promise<void> {
  const window = 1024;
  // Cut after k frames, for every k until the transfer fits before the first cut.
  for (let k = 0;; k++) {
    const parked = new ParkedTransfers(60_000);
    const source = makeSource();
    let done = false;
    const sender: DownloadSender = new DownloadSender(source, {
      window,
      describeError: (e) => ({ code: "EIO", message: String(e) }),
      onDetached: () => parked.park("key-0123456789abcdef"),
      onDone: () => {
        done = true;
        parked.remove("key-0123456789abcdef", sender);
      },
    });
    parked.add("key-0123456789abcdef", "f", sender, { size: data.length });
    const rx = new CreditReceiver({
      window,
      ackEvery: window / 4,
      ackWhenCaughtUp: false,
      gaps: false,
      sha256: true,
    });
    const out: number[] = [];
    let link = new FakeLink();
    let sid = 1;
    sender.bind(link as unknown as Link, sid);
    void sender.pump();
    let cuts = 0;
    let result = await drive(link, sid, rx, out, k);
    // Cut at frame k, then again every 3 frames, until the end.
    while (!result.ended) {
      cuts++;
      link.close();
      await settle();
      assert(!done, "a cut transfer waits for its resume");
      link = new FakeLink();
      sid++;
      const reply = parked.resume(
        "key-0123456789abcdef",
        "f",
        link as unknown as Link,
        sid,
        rx.rebind(window),
      );
      assertEquals(reply, { size: data.length });
      result = await drive(link, sid, rx, out, 3);
    }
    assertEquals(out.length, data.length, `k=${k}`);
    assertEquals(new Uint8Array(out), data, `k=${k}`);
    assertEquals(result.sha256, sha256(data));
    await settle();
    assert(done && parked.size === 0, "acknowledging the end ends the transfer");
    if (cuts === 0) return;
  }
}

Deno.test("download sender: a file cut at every frame resumes from what was received, each byte once", async () => {
  const data = random(5000);
  await resumeEverywhere(() => memoryFile(data), data);
});

Deno.test("download sender: an archive stream cut at every frame resends the bytes it kept", async () => {
  const data = random(4000);
  let seed = 1;
  await resumeEverywhere(() => {
    const reader = chunkedStream(data, seed++).getReader();
    return streamSource(reader, () => void reader.cancel());
  }, data);
});

Deno.test("download sender: never beyond the window; without a transfer key a closed link ends it", async () => {
  const data = random(3000);
  const source = memoryFile(data);
  const sender = new DownloadSender(source, {
    window: 1000,
    describeError: (e) => ({ code: "EIO", message: String(e) }),
  });
  const link = new FakeLink();
  sender.bind(link as unknown as Link, 7);
  await sender.pump();
  await settle();
  assertEquals(link.frames.length, 1);
  assertEquals(decodeDataFrame(link.frames[0]!).payload.length, 1000);
  link.routes.get(7)!.onAck!(5000); // the future: ignored
  link.routes.get(7)!.onAck!(400);
  await settle();
  assertEquals(link.frames.length, 2);
  assertEquals(decodeDataFrame(link.frames[1]!).offset, 1000);
  assertEquals(decodeDataFrame(link.frames[1]!).payload.length, 400);
  link.close();
  assert(sender.done && source.closed);
});

Deno.test("download sender: resume checks (beyond what was sent, unknown key, bytes an archive released)", async () => {
  const parked = new ParkedTransfers(60_000);
  const data = random(2000);
  const sender: DownloadSender = new DownloadSender(memoryFile(data), {
    window: 1000,
    describeError: (e) => ({ code: "EIO", message: String(e) }),
    onDetached: () => parked.park("k-0123456789abcdef"),
    onDone: () => parked.remove("k-0123456789abcdef", sender),
  });
  parked.add("k-0123456789abcdef", "p", sender, {});
  const a = new FakeLink();
  sender.bind(a as unknown as Link, 1);
  await sender.pump();
  a.close();
  const b = new FakeLink();
  const stale = assertThrows(
    () => parked.resume("other-0123456789ab", "p", b as unknown as Link, 2, 0),
    DaemonRequestError,
  );
  assertEquals(stale.code, "ESTALE");
  assertEquals(
    assertThrows(
      () => parked.resume("k-0123456789abcdef", "q", b as unknown as Link, 2, 0),
      DaemonRequestError,
    ).code,
    "ESTALE",
  );
  const beyond = assertThrows(
    () => parked.resume("k-0123456789abcdef", "p", b as unknown as Link, 2, 1001),
    DaemonRequestError,
  );
  assertEquals(beyond.code, "EINVAL");
  parked.clear();
  assertEquals(parked.size, 0);

  const reader = chunkedStream(data, 3).getReader();
  const archive = streamSource(reader, () => void reader.cancel());
  const buffer = new Uint8Array(100);
  assertEquals(await archive.read(buffer, 0), 100);
  archive.release!(100);
  await assertRejects(() => archive.read(buffer, 50));
  archive.close();
});

Deno.test("download sender: a parked transfer is stopped when its time runs out", async () => {
  const parked = new ParkedTransfers(1);
  const source = memoryFile(random(5000));
  const stopped = Promise.withResolvers<void>();
  const sender: DownloadSender = new DownloadSender(source, {
    window: 1000,
    describeError: (e) => ({ code: "EIO", message: String(e) }),
    onDetached: () => parked.park("k-0123456789abcdef"),
    onDone: () => {
      parked.remove("k-0123456789abcdef", sender);
      stopped.resolve();
    },
  });
  parked.add("k-0123456789abcdef", "p", sender, {});
  const link = new FakeLink();
  sender.bind(link as unknown as Link, 1);
  await sender.pump();
  // The park timer does not hold the daemon's event loop: hold it here while waiting.
  const hold = setInterval(() => {}, 1000);
  link.close();
  await stopped.promise;
  clearInterval(hold);
  assert(source.closed && parked.size === 0);
});

Deno.test("upload receiver: acks as consumed, verifies count and digest", async () => {
  const link = new FakeLink();
  const rx = new UploadReceiver(link as unknown as Link, 5, 800);
  const data = random(2000);
  const route = link.routes.get(5)!;
  route.onData!(0, data.subarray(0, 800));
  const first = await rx.read();
  assertEquals(first?.length, 800);
  rx.consumed();
  assertEquals(link.sent, [{ t: "ack", sid: 5, offset: 800 }]);
  route.onData!(800, data.subarray(800, 1600));
  const got = [...first!];
  const second = await rx.read();
  got.push(...second!);
  rx.consumed();
  assertEquals(link.sent.at(-1), { t: "ack", sid: 5, offset: 1600 });
  route.onData!(1600, data.subarray(1600));
  route.onEof!(2000, sha256(data));
  for (let chunk = await rx.read(); chunk; chunk = await rx.read()) {
    got.push(...chunk);
    rx.consumed();
  }
  rx.consumed(true);
  assertEquals(new Uint8Array(got), data);
  assertEquals(rx.verify("f", 2000), sha256(data));
  assertEquals(link.sent.at(-1), { t: "ack", sid: 5, offset: 2000 });
  rx.finish();
  assertEquals(link.routes.size, 0);
});

Deno.test("upload receiver: data beyond the window and a wrong digest fail it", async () => {
  const link = new FakeLink();
  const rx = new UploadReceiver(link as unknown as Link, 5, 800);
  link.routes.get(5)!.onData!(0, new Uint8Array(801));
  const error = await assertRejects(() => rx.read(), DaemonRequestError);
  assertEquals(error.code, "PROTOCOL");
  rx.finish();
  link.routes.get(5)!.onReset!("gone");
  assertEquals(link.routes.size, 0);

  const link2 = new FakeLink();
  const rx2 = new UploadReceiver(link2 as unknown as Link, 6, 800);
  link2.routes.get(6)!.onData!(0, new Uint8Array(10));
  link2.routes.get(6)!.onEof!(10, "0".repeat(64));
  await rx2.read();
  assertEquals(await rx2.read(), null);
  const bad = assertThrows(() => rx2.verify("f", undefined), DaemonRequestError);
  assertEquals(bad.code, "EINTEGRITY");
  assert(bad.message.startsWith("SHA-256 mismatch for 'f'"), bad.message);
  rx2.finish();
});
