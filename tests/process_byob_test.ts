// Process output read with a BYOB reader (`getReader({ mode: "byob" })`): the bytes are copied into the reader's
// buffer and every message buffer is freed as soon as it has been read. Byte-exact, in order, whatever the size of
// the reader's buffer against the daemon's frames; a default reader of the same byte stream still gets chunks.
import { assert, assertEquals } from "./_assert.ts";
import { startWorker } from "./_daemon.ts";
import { haveNats } from "./_nats.ts";
import { TestCluster } from "./_cluster.ts";

/** Read a byte stream to its end through one reused buffer of `size` bytes: the count, the reads, the text. */
async function readByob(
  stream: ReadableStream<Uint8Array>,
  size: number,
): Promise<{ bytes: number; reads: number; text: string }> {
  const reader = stream.getReader({ mode: "byob" });
  let buffer = new ArrayBuffer(size);
  let bytes = 0;
  let reads = 0;
  const decoder = new TextDecoder();
  let text = "";
  while (true) {
    const { value, done } = await reader.read(new Uint8Array(buffer));
    if (done) break;
    assert(value.byteLength > 0 && value.byteLength <= size, `read of ${value.byteLength} bytes`);
    bytes += value.byteLength;
    reads++;
    if (bytes <= 4 * 1024 * 1024) text += decoder.decode(value, { stream: true });
    buffer = value.buffer as ArrayBuffer;
  }
  reader.releaseLock();
  return { bytes, reads, text };
}

Deno.test("process output: a BYOB reader gets every byte in order, with a buffer smaller and larger than a frame", async () => {
  await using w = await startWorker("byob-a");
  // 600,000 numbered lines (~4.5 MB): several 256 KiB frames, whose bytes must arrive in order.
  const expected = Array.from({ length: 600_000 }, (_, i) => `${i + 1}\n`).join("");
  for (const size of [1000, 64 * 1024, 1024 * 1024]) {
    const p = await w.server.spawn("byob-a", ["seq", "1", "600000"], { stdin: false });
    const [out, err] = await Promise.all([readByob(p.stdout, size), readByob(p.stderr, size)]);
    assertEquals(out.bytes, expected.length, `buffer of ${size}`);
    assertEquals(out.text, expected, `buffer of ${size}`);
    assertEquals(err.bytes, 0);
    if (size === 1000) assert(out.reads >= expected.length / 1000, `${out.reads} reads`);
    assertEquals((await p.status).exitCode, 0);
  }
});

Deno.test("process output: a BYOB reader of a 64 MiB stream through one reused buffer gets every byte", async () => {
  await using w = await startWorker("byob-b");
  const size = 64 * 1024 * 1024;
  const p = await w.server.spawn("byob-b", ["head", "-c", String(size), "/dev/zero"], {
    stdin: false,
  });
  const reader = p.stdout.getReader({ mode: "byob" });
  let buffer = new ArrayBuffer(256 * 1024);
  let n = 0;
  let nonZero = 0;
  while (true) {
    const { value, done } = await reader.read(new Uint8Array(buffer));
    if (done) break;
    n += value.byteLength;
    for (let i = 0; i < value.length; i += 4096) nonZero += value[i]!;
    buffer = value.buffer as ArrayBuffer;
  }
  assertEquals(n, size);
  assertEquals(nonZero, 0);
  assertEquals((await p.status).exitCode, 0);
});

Deno.test("process output: a default reader of the byte stream still gets chunks, and cancelling it resets the stream", async () => {
  await using w = await startWorker("byob-c");
  const p = await w.server.spawn("byob-c", ["seq", "1", "100000"], { stdin: false });
  const text = await new Response(p.stdout).text();
  assertEquals(text, Array.from({ length: 100_000 }, (_, i) => `${i + 1}\n`).join(""));
  assertEquals((await p.status).exitCode, 0);

  const endless = await w.server.spawn("byob-c", ["sh", "-c", "yes | head -c 50000000"], {
    stdin: false,
  });
  const reader = endless.stdout.getReader({ mode: "byob" });
  const first = await reader.read(new Uint8Array(10));
  assertEquals(new TextDecoder().decode(first.value), "y\ny\ny\ny\ny\n");
  await reader.cancel();
  await endless.kill("SIGKILL");
  await endless.status;
});

Deno.test({
  name:
    "process output through another cluster node: BYOB and default readers get every byte though NATS reads are reused",
  ignore: !haveNats(),
  async fn() {
    // On the reading node the NATS client's read buffers are read into again once a read of relayed messages has
    // been handled (server/cluster/_nats_transport.ts), so the relay copies each frame out at once
    // (server/cluster/cluster.ts #fromOwner). With that copy left out (frames kept as views of the reused read)
    // this test fails: the readers get bytes of later reads. stdout and stderr written at once put frames of both
    // streams in the same NATS messages and reads.
    await using cluster = await TestCluster.start();
    await cluster.daemon("w-byob", 0);
    // stdout and stderr written at once: their frames travel in the same NATS reads on the reading node.
    const p = await cluster.nodes[1]!.spawn(
      "w-byob",
      ["sh", "-c", "seq 1 300000 & seq 300001 600000 >&2; wait"],
      { stdin: false },
    );
    const [out, err] = await Promise.all([
      readByob(p.stdout, 1000),
      new Response(p.stderr).text(),
    ]);
    assertEquals(out.text, Array.from({ length: 300_000 }, (_, i) => `${i + 1}\n`).join(""));
    assertEquals(
      err,
      Array.from({ length: 300_000 }, (_, i) => `${i + 300_001}\n`).join(""),
    );
    assertEquals((await p.status).exitCode, 0);
  },
});
