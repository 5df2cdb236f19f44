// The relay's batches (server/cluster/_relay_batch.ts): the envelope, the order of a link's messages, acks
// replaced by newer ones, and what is held going out on the next macrotask or when large.
import { decodeBatch, encodeBatch, RelayBatch } from "../server/cluster/_relay_batch.ts";
import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { VirtualSocket } from "../server/cluster/_virtual_socket.ts";

type Published = { kind: string; messages: (string | Uint8Array)[] };

function recorder(): {
  out: Published[];
  batch: (options?: { maxBytes?: number; holdBinary?: boolean }) => RelayBatch;
} {
  const out: Published[] = [];
  const decoder = new TextDecoder();
  return {
    out,
    batch: (options = {}) =>
      new RelayBatch({
        ...options,
        publish: (kind, payload) => {
          const messages: (string | Uint8Array)[] = [];
          if (kind === "m") decodeBatch(payload, (m) => messages.push(m));
          else messages.push(kind === "t" ? decoder.decode(payload) : payload);
          out.push({ kind, messages });
        },
      }),
  };
}

const ack = (sid: number, offset: number) => JSON.stringify({ t: "ack", sid, offset });

Deno.test("relay batch: the envelope round-trips text and bytes, binary messages as views of it (not copied)", () => {
  const bytes = new Uint8Array([1, 2, 3, 4]);
  const encoded = encodeBatch(["héllo", bytes, "", new Uint8Array(0)]);
  const got: (string | Uint8Array)[] = [];
  decodeBatch(encoded, (m) => got.push(m));
  assertEquals(got, ["héllo", bytes, "", new Uint8Array(0)]);
  // The receiver's copy guard (server/_message_buffers.ts ownsBuffer) sees a view that does not own its buffer.
  const view = got[1] as Uint8Array;
  assertEquals(view.buffer, encoded.buffer);
  assertEquals(view.byteOffset, encoded.byteOffset + 5 + 6 + 5);
});

Deno.test("relay batch: a truncated envelope or an unknown entry type is an error naming the offset", () => {
  const encoded = encodeBatch(["one", new Uint8Array(10)]);
  const got: unknown[] = [];
  assertThrows(
    () => decodeBatch(encoded.subarray(0, encoded.length - 1), (m) => got.push(m)),
    Error,
    "bad entry at 8",
  );
  assertEquals(got, ["one"]); // what came before the bad entry was given
  assertThrows(
    () => decodeBatch(encoded.subarray(0, 3), () => {}),
    Error,
    "ends inside an entry at 0",
  );
  const bad = encodeBatch(["x"]);
  bad[0] = 7;
  assertThrows(() => decodeBatch(bad, () => {}), Error, "type 7");
});

Deno.test("relay batch: frames and acks wait for the next macrotask, a newer ack replaces an older one", async () => {
  const { out, batch } = recorder();
  const b = batch();
  const f1 = new Uint8Array([1]);
  const f2 = new Uint8Array([2]);
  b.send(f1);
  b.send(ack(5, 100));
  b.send(f2);
  b.send(ack(5, 200));
  b.send(ack(6, 10));
  assertEquals(out, []);
  await new Promise((resolve) => setTimeout(resolve, 0));
  assertEquals(out, [{ kind: "m", messages: [f1, f2, ack(5, 200), ack(6, 10)] }]);
  assertEquals([b.messages, b.publishes], [5, 1]);
});

Deno.test("relay batch: any other message goes at once, after what is held (order kept)", () => {
  const { out, batch } = recorder();
  const b = batch();
  const f1 = new Uint8Array([1]);
  b.send(f1);
  b.send(ack(5, 100));
  const eof = JSON.stringify({ t: "eof", sid: 5, offset: 100 });
  b.send(eof);
  assertEquals(out, [{ kind: "m", messages: [f1, ack(5, 100), eof] }]);
  b.send('{"t":"req","rid":1}');
  assertEquals(out[1], { kind: "t", messages: ['{"t":"req","rid":1}'] });
  b.close();
});

Deno.test("relay batch: a batch stays within its size (the NATS max_payload); frames can be sent unheld", () => {
  const { out, batch } = recorder();
  // Each entry is 5 bytes of header and its message: two fit in 24 bytes, a third goes in the next batch.
  const b = batch({ maxBytes: 24 });
  b.send(new Uint8Array(5));
  b.send(new Uint8Array(5));
  assertEquals(out.length, 0);
  b.send(new Uint8Array(5));
  assertEquals(out.length, 1);
  assertEquals(out[0]!.messages.length, 2);
  b.close();
  const unheld = batch({ holdBinary: false });
  unheld.send(ack(1, 1));
  const frame = new Uint8Array([9]);
  unheld.send(frame);
  assertEquals(out[1], { kind: "m", messages: [ack(1, 1), frame] });
  unheld.send(frame);
  assertEquals(out[2], { kind: "b", messages: [frame] });
});

Deno.test("relay batch: close drops what is held and its timer", async () => {
  const { out, batch } = recorder();
  const b = batch();
  b.send(new Uint8Array([1]));
  b.close();
  await new Promise((resolve) => setTimeout(resolve, 0));
  assertEquals(out, []);
});

Deno.test("virtual socket: a relay pong folds NATS's round trip plus the owner's into the link's", () => {
  const socket = new VirtualSocket(() => {});
  assertEquals(socket.ponged(undefined, 1), undefined); // no ping out
  socket.pinged();
  const first = socket.ponged(undefined, 40)!;
  assert(first >= 40 && first < 40 + 1_000, String(first));
  assertEquals(socket.ponged(first, 40), undefined); // answered already
  socket.pinged();
  assertEquals(socket.ponged(first, Number.NaN), undefined); // a bad answer
  socket.pinged();
  const next = socket.ponged(80, 0)!;
  assert(next >= 70 && next < 80, String(next)); // 7/8 of the old plus 1/8 of a short sample
  socket.close();
});
