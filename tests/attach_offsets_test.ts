// attach() with per-stream replay offsets (issue 15): `from: { stdout, stderr }` picks each stream's first byte; a
// plain number keeps its meaning (both streams).
import { assertEquals, assertRejects } from "./_assert.ts";
import { startWorker } from "./_daemon.ts";

Deno.test("attach replays each stream from its own offset; a number applies to both", async () => {
  await using t = await startWorker("offsets");
  const p = await t.server.spawn("offsets", "printf abcdef; printf ghijkl >&2");
  const [out, err] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
  ]);
  assertEquals([out, err], ["abcdef", "ghijkl"]);
  await p.status;
  const read = async (from: Parameters<typeof t.server.attach>[2]) => {
    const a = await t.server.attach("offsets", p.id, { ...from, stdin: false });
    const texts = await Promise.all([new Response(a.stdout).text(), new Response(a.stderr).text()]);
    await a.status;
    return texts;
  };
  assertEquals(await read({ from: { stdout: 2, stderr: 4 } }), ["cdef", "kl"]);
  assertEquals(await read({ from: { stderr: 5 } }), ["abcdef", "l"]);
  assertEquals(await read({ from: 3 }), ["def", "jkl"]);
  assertEquals(await read({ from: null }), ["abcdef", "ghijkl"]);
  await assertRejects(
    () => t.server.attach("offsets", p.id, { from: { stdout: -1 } }),
    RangeError,
    "from.stdout",
  );
  await assertRejects(
    () => t.server.attach("offsets", p.id, { from: { stdin: 1 } as never }),
    TypeError,
    "stdin",
  );
});
