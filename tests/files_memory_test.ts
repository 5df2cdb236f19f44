// The controller's memory during large transfers through the control API: each chunk of a download arrives in
// its own WebSocket message buffer, and an HTTP response hands it to the runtime; those buffers must be freed as
// the download goes, not left for a late garbage collection (which let the controller grow by ~80 MiB per GiB).
// The controller runs in this process, so its external (ArrayBuffer) memory is watched while the body is read
// into one reused buffer (the reader itself makes no garbage).
import { assertEquals, assertLess } from "./_assert.ts";
import { startApiWorker } from "./_control.ts";
import { createHash } from "node:crypto";

const MiB = 1024 * 1024;

/** A file of `size` pseudo-random bytes (one random block repeated); returns its SHA-256. */
async function writeFile(path: string, size: number): Promise<string> {
  const block = new Uint8Array(4 * MiB);
  for (let at = 0; at < block.length; at += 65536) {
    crypto.getRandomValues(block.subarray(at, at + 65536));
  }
  const hash = createHash("sha256");
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  for (let written = 0; written < size; written += block.length) {
    for (let at = 0; at < block.length;) at += await file.write(block.subarray(at));
    hash.update(block);
  }
  return hash.digest("hex");
}

/**
 * Reads `body` through a BYOB reader into one reused buffer of `bufferSize` bytes, hashing what arrives; returns
 * the byte count, the SHA-256 and how far the process's external (ArrayBuffer) memory rose above its start.
 */
async function readMeasured(
  body: ReadableStream<Uint8Array>,
  bufferSize: number,
): Promise<{ received: number; digest: string; growth: number }> {
  const reader = body.getReader({ mode: "byob" });
  let buffer = new ArrayBuffer(bufferSize);
  const hash = createHash("sha256");
  const start = Deno.memoryUsage().external;
  let peak = start;
  let received = 0;
  while (true) {
    const { done, value } = await reader.read(new Uint8Array(buffer));
    if (done) break;
    hash.update(value);
    received += value.length;
    buffer = value.buffer as ArrayBuffer;
    peak = Math.max(peak, Deno.memoryUsage().external);
  }
  return { received, digest: hash.digest("hex"), growth: peak - start };
}

Deno.test("control API: a 256 MiB download keeps the controller's buffer memory within a few windows", async () => {
  const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "sandd-memory-" });
  try {
    const size = 256 * MiB;
    const digest = await writeFile(`${dir}/big.bin`, size);
    await using worker = await startApiWorker("mem");
    const response = await fetch(
      `${worker.base}/daemons/mem/files?path=${encodeURIComponent(`${dir}/big.bin`)}`,
    );
    assertEquals(response.status, 200);
    const read = await readMeasured(response.body!, MiB);
    assertEquals(read.received, size);
    assertEquals(read.digest, digest);
    // The download window is 8 MiB; before the buffers were freed as they went, this reached 60-70 MiB.
    assertLess(read.growth, 40 * MiB, `external memory grew by ${read.growth / MiB} MiB`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("server: a BYOB reader of a 256 MiB downloadStream gets every byte and the buffer memory stays bounded", async () => {
  const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "sandd-memory-" });
  try {
    const size = 256 * MiB;
    const digest = await writeFile(`${dir}/big.bin`, size);
    await using worker = await startApiWorker("mem-byob");
    const stream = await worker.server.downloadStream("mem-byob", `${dir}/big.bin`);
    const read = await readMeasured(stream, 4 * MiB);
    assertEquals(read.received, size);
    assertEquals(read.digest, digest);
    // Each message buffer is freed as its bytes are copied out: the 8 MiB window, not the file, bounds it.
    assertLess(read.growth, 40 * MiB, `external memory grew by ${read.growth / MiB} MiB`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("server: a BYOB reader with a buffer smaller than a frame gets the bytes in order, then the end", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sandd-memory-" });
  try {
    const data = new Uint8Array(600 * 1024 + 7);
    for (let at = 0; at < data.length; at += 65536) {
      crypto.getRandomValues(data.subarray(at, Math.min(data.length, at + 65536)));
    }
    await Deno.writeFile(`${dir}/small.bin`, data);
    await using worker = await startApiWorker("mem-small");
    const progress: number[] = [];
    const stream = await worker.server.downloadStream("mem-small", `${dir}/small.bin`, {
      onProgress: (p) => progress.push(p.bytes),
    });
    const reader = stream.getReader({ mode: "byob" });
    const out = new Uint8Array(data.length);
    let at = 0;
    while (true) {
      const { done, value } = await reader.read(new Uint8Array(1000));
      if (done) break;
      out.set(value, at);
      at += value.length;
    }
    assertEquals(at, data.length);
    assertEquals(out, data);
    assertEquals(progress.at(-1), data.length);
    for (let i = 1; i < progress.length; i++) assertLess(progress[i - 1]!, progress[i]! + 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
