// The Client's upload body from a byte stream (a file's `readable`): read in pieces as the runtime sends them,
// byte for byte in order, and a source that fails mid-way fails the upload with its own error and leaves
// nothing behind (`sandd cp` of a file uploads this way; tests/cli_remote_test.ts copies both ways).
import { assertEquals, assertRejects } from "./_assert.ts";
import { startFleet } from "./_controllers.ts";
import { randomBytes as random, sha256 } from "./_bytes.ts";

/** A byte stream over `data` in pieces of `piece` bytes, failing with `failAt`'s error once that many are out. */
function byteStream(data: Uint8Array, piece: number, failAt?: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    type: "bytes",
    pull(controller) {
      if (failAt !== undefined && at >= failAt) {
        controller.error(new Error(`source failed at ${at}`));
        return;
      }
      if (at >= data.length) {
        controller.close();
        controller.byobRequest?.respond(0);
        return;
      }
      const request = controller.byobRequest!;
      const view = request.view as Uint8Array;
      const n = Math.min(view.length, piece, data.length - at);
      view.set(data.subarray(at, at + n));
      at += n;
      request.respond(n);
    },
  });
}

async function setup() {
  const fleet = await startFleet("client", ["w1"], [], { server: { reconnectGraceMs: 200 } });
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "sandd-body-" }));
  return {
    c: fleet.controller,
    dir,
    async [Symbol.asyncDispose]() {
      await fleet[Symbol.asyncDispose]();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

Deno.test("client: an upload from a byte stream arrives byte for byte, progress in order", async () => {
  await using t = await setup();
  const data = random(9 * 1024 * 1024 + 12345);
  const path = `${t.dir}/ahead.bin`;
  const progress: number[] = [];
  const result = await t.c.upload("w1", path, byteStream(data, 700 * 1024), {
    size: data.length,
    onProgress: (p) => progress.push(p.bytes),
  });
  assertEquals(result, { bytes: data.length, sha256: sha256(data) });
  assertEquals(sha256(await Deno.readFile(path)), sha256(data));
  assertEquals(progress.at(-1), data.length);
  assertEquals(progress, [...progress].sort((a, b) => a - b));
});

Deno.test("client: an upload whose byte stream fails mid-way fails with the source's error and leaves nothing", async () => {
  await using t = await setup();
  const data = random(6 * 1024 * 1024);
  const path = `${t.dir}/failed.bin`;
  await assertRejects(
    () => t.c.upload("w1", path, byteStream(data, 1024 * 1024, 3 * 1024 * 1024)),
    Error,
    "source failed at 3145728",
  );
  assertEquals(await Deno.lstat(path).catch(() => null), null);
  const left = [...Deno.readDirSync(t.dir)].map((e) => e.name);
  assertEquals(left, []);
});
