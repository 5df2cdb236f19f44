// Downloads survive dropped links: through a proxy that cuts the daemon's link several times mid-transfer, a
// download (streamed, in memory, and a directory archive) resumes by itself from the last byte received and ends
// with identical bytes and a verified SHA-256; a resume the daemon cannot serve (it restarted) fails clearly.
import { assert, assertEquals, assertGreater, assertRejects } from "./_assert.ts";
import { FileError, Server } from "../mod.ts";
import { TestDaemon } from "./_daemon.ts";
import { LinkProxy } from "./_proxy.ts";
import { randomBytes as random, sha256 } from "./_bytes.ts";
import { createHash } from "node:crypto";

const MiB = 1024 * 1024;

async function setup(id: string) {
  const server = await Server.listen({ port: 0, reconnectGraceMs: 15_000 });
  const proxy = new LinkProxy(server.port);
  const daemon = new TestDaemon({ id, url: proxy.url() });
  await server.waitForDaemon(id, { timeout: 20_000 });
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "sandd-resume-" }));
  return {
    server,
    proxy,
    daemon,
    dir,
    async [Symbol.asyncDispose]() {
      await daemon.stop();
      await server.close();
      await proxy.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** Cut the link whenever `bytes` passes the next mark, once per link (the daemon reconnects between cuts). */
function cutter(proxy: LinkProxy, marks: number[]) {
  let next = 0;
  let cutting: Promise<void> = Promise.resolve();
  return {
    get cuts() {
      return next;
    },
    check(bytes: number): void {
      // One cut per link: wait until the daemon has dialled again before the next.
      if (next < marks.length && bytes >= marks[next]! && proxy.accepted === next + 1) {
        next++;
        cutting = proxy.cut();
      }
    },
    settled: () => cutting,
  };
}

Deno.test("a download stream cut three times resumes by itself: identical bytes, sha256 verified", async () => {
  await using t = await setup("r1");
  const data = random(40 * MiB);
  await Deno.writeFile(`${t.dir}/big.bin`, data);
  const cut = cutter(t.proxy, [6 * MiB, 15 * MiB, 27 * MiB]);
  const hash = createHash("sha256");
  let received = 0;
  const stream = await t.server.downloadStream("r1", `${t.dir}/big.bin`);
  for await (const chunk of stream) {
    hash.update(chunk);
    received += chunk.length;
    cut.check(received);
  }
  await cut.settled();
  assertEquals(cut.cuts, 3);
  assertGreater(t.proxy.accepted, 3);
  assertEquals(received, data.length);
  assertEquals(hash.digest("hex"), sha256(data));
});

Deno.test("download() into memory, cut as progress passes marks, completes with the same bytes", async () => {
  await using t = await setup("r2");
  const data = random(24 * MiB);
  await Deno.writeFile(`${t.dir}/mem.bin`, data);
  const cut = cutter(t.proxy, [3 * MiB, 11 * MiB]);
  const got = await t.server.download("r2", `${t.dir}/mem.bin`, {
    onProgress: (p) => cut.check(p.bytes),
  });
  await cut.settled();
  assertEquals(cut.cuts, 2);
  assertEquals(got.length, data.length);
  assertEquals(sha256(got), sha256(data));
});

Deno.test("downloadDir cut twice resumes the archive stream: the tree arrives whole", async () => {
  await using t = await setup("r3");
  const files: Record<string, Uint8Array> = {};
  await Deno.mkdir(`${t.dir}/src/sub`, { recursive: true });
  for (let i = 0; i < 6; i++) {
    const name = i % 2 ? `sub/f${i}.bin` : `f${i}.bin`;
    files[name] = random((3 + i) * MiB);
    await Deno.writeFile(`${t.dir}/src/${name}`, files[name]!);
  }
  const cut = cutter(t.proxy, [5 * MiB, 20 * MiB]);
  await t.server.downloadDir("r3", `${t.dir}/src`, `${t.dir}/copy`, {
    onProgress: (p) => cut.check(p.bytes),
  });
  await cut.settled();
  assertEquals(cut.cuts, 2);
  for (const [name, bytes] of Object.entries(files)) {
    assertEquals(sha256(await Deno.readFile(`${t.dir}/copy/${name}`)), sha256(bytes), name);
  }
});

Deno.test("a download whose daemon restarted cannot resume: a FileError says why", async () => {
  await using t = await setup("r4");
  const data = random(32 * MiB);
  await Deno.writeFile(`${t.dir}/big.bin`, data);
  const stream = await t.server.downloadStream("r4", `${t.dir}/big.bin`);
  let received = 0;
  let restarted: TestDaemon | null = null;
  try {
    const error = await assertRejects(async () => {
      for await (const chunk of stream) {
        received += chunk.length;
        if (received >= 4 * MiB && !restarted) {
          // A new daemon process under the same id: it holds no transfers.
          await t.daemon.stop();
          restarted = new TestDaemon({ id: "r4", url: t.proxy.url() });
        }
      }
    }, FileError);
    assertEquals(error.code, "EIO");
    assert(error.message.includes("ESTALE"), error.message);
    assert(received < data.length);
  } finally {
    await (restarted as TestDaemon | null)?.stop();
  }
});

Deno.test("an upload cut three times resumes by itself: the file arrives whole, nothing left behind", async () => {
  await using t = await setup("r5");
  const data = random(40 * MiB);
  const cut = cutter(t.proxy, [6 * MiB, 15 * MiB, 27 * MiB]);
  const path = `${t.dir}/up.bin`;
  await Deno.writeTextFile(path, "old");
  const result = await t.server.upload("r5", path, data, {
    onProgress: (p) => cut.check(p.bytes),
  });
  await cut.settled();
  assertEquals(cut.cuts, 3);
  assertEquals(result, { bytes: data.length, sha256: sha256(data) });
  assertEquals(sha256(await Deno.readFile(path)), sha256(data));
  const names = [...Deno.readDirSync(t.dir)].map((e) => e.name);
  assertEquals(names, ["up.bin"]);
});

Deno.test("an upload whose daemon restarted cannot resume: the target stays as it was", async () => {
  await using t = await setup("r6");
  const path = `${t.dir}/up.bin`;
  await Deno.writeTextFile(path, "old");
  let sent = 0;
  let restarted: TestDaemon | null = null;
  const source = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (sent === 12 * MiB && !restarted) {
        await t.daemon.stop();
        restarted = new TestDaemon({ id: "r6", url: t.proxy.url() });
      }
      if (sent === 32 * MiB) return controller.close();
      sent += MiB;
      controller.enqueue(new Uint8Array(MiB));
    },
  }, { highWaterMark: 0 });
  try {
    const error = await assertRejects(() => t.server.upload("r6", path, source), FileError);
    assertEquals(error.code, "EIO");
    assert(error.message.includes("ESTALE"), error.message);
    assertEquals(await Deno.readTextFile(path), "old");
  } finally {
    await (restarted as TestDaemon | null)?.stop();
  }
});

Deno.test("a transfer whose link drops right after the request still completes (request lost or not)", async () => {
  await using t = await setup("r7");
  const data = random(6 * MiB);
  await Deno.writeFile(`${t.dir}/src.bin`, data);
  for (let i = 0; i < 3; i++) {
    const accepted = t.proxy.accepted;
    const opening = t.server.downloadStream("r7", `${t.dir}/src.bin`);
    await t.proxy.cut();
    const hash = createHash("sha256");
    let received = 0;
    for await (const chunk of await opening) {
      hash.update(chunk);
      received += chunk.length;
    }
    assertEquals(received, data.length);
    assertEquals(hash.digest("hex"), sha256(data));
    assertGreater(t.proxy.accepted, accepted);

    const uploading = t.server.upload("r7", `${t.dir}/up${i}.bin`, data);
    await t.proxy.cut();
    assertEquals(await uploading, { bytes: data.length, sha256: sha256(data) });
    assertEquals(sha256(await Deno.readFile(`${t.dir}/up${i}.bin`)), sha256(data));
    await t.server.waitForDaemon("r7", { timeout: 10_000 });
  }
});
