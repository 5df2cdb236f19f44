// A daemon killed with SIGKILL in the middle of a snapshot leaves its store consistent: no manifest names a
// missing or damaged blob, and the next daemon on the same state directory removes what the crash left (temporary
// files, blobs no manifest names), then snapshots and restores as usual.
import { createHash } from "node:crypto";
import { join } from "node:path";
import { assert, assertEquals, assertGreater } from "./_assert.ts";
import { Server } from "../mod.ts";
import { eventually, TestDaemon } from "./_daemon.ts";

const decoder = new TextDecoder();

function random(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let at = 0; at < n; at += 65536) crypto.getRandomValues(out.subarray(at, at + 65536));
  return out;
}

function countBlobs(stateDir: string): number {
  let n = 0;
  try {
    for (const fan of Deno.readDirSync(join(stateDir, "snapshots/blobs"))) {
      for (const _ of Deno.readDirSync(join(stateDir, "snapshots/blobs", fan.name))) n++;
    }
  } catch {
    // not created yet
  }
  return n;
}

/** Every manifest's blobs exist with the right content; returns the blobs named and the blobs on disk. */
async function checkStore(stateDir: string): Promise<{ named: Set<string>; onDisk: Set<string> }> {
  const store = join(stateDir, "snapshots");
  const named = new Set<string>();
  for await (const entry of Deno.readDir(join(store, "manifests"))) {
    assert(entry.name.endsWith(".jsonl"), `only manifests in manifests/: ${entry.name}`);
    const lines = (await Deno.readTextFile(join(store, "manifests", entry.name))).trim().split(
      "\n",
    );
    for (const line of lines.slice(1)) {
      const item = JSON.parse(line) as { type: string; sha256?: string; size?: number };
      if (item.type === "file") named.add(item.sha256!);
    }
  }
  const onDisk = new Set<string>();
  for await (const fan of Deno.readDir(join(store, "blobs"))) {
    for await (const blob of Deno.readDir(join(store, "blobs", fan.name))) onDisk.add(blob.name);
  }
  for (const hash of named) {
    assert(onDisk.has(hash), `a manifest names the missing blob ${hash}`);
    const bytes = await Deno.readFile(join(store, "blobs", hash.slice(0, 2), hash));
    assertEquals(createHash("sha256").update(bytes).digest("hex"), hash, `blob ${hash} is damaged`);
  }
  return { named, onDisk };
}

Deno.test("a daemon killed mid-snapshot leaves a consistent store; the next one cleans up and works", async () => {
  const work = await Deno.realPath(await Deno.makeTempDir({ prefix: "sandd-snap-crash-" }));
  const state = join(work, "state");
  const tree = join(work, "tree");
  for (let d = 0; d < 20; d++) {
    await Deno.mkdir(join(tree, `d${d}`), { recursive: true });
    for (let f = 0; f < 100; f++) {
      await Deno.writeFile(join(tree, `d${d}`, `f${f}.bin`), random(8 * 1024));
    }
    await Deno.writeFile(join(tree, `d${d}`, "big.bin"), random(4 * 1024 * 1024));
  }
  // Last in the walk (siblings go by name): 1 GiB to read, hash and store, so that the snapshot is still running
  // when the kill lands however fast the machine (a fast VM finished the rest first now and then). Sparse: it
  // takes no room here, and the killed daemon's partial blob of it is what the next one cleans up.
  {
    using slow = await Deno.open(join(tree, "zz-slow.bin"), { write: true, create: true });
    await slow.truncate(1024 * 1024 * 1024);
  }
  const server = await Server.listen({ port: 0 });
  let daemon = new TestDaemon({ id: "w1", url: server.url, args: ["--state-dir", state] });
  try {
    await server.waitForDaemon("w1", { timeout: 20_000 });
    // A first, complete snapshot: the crash must not damage it.
    const snaps = server.snapshots("w1");
    const kept = await snaps.create(join(tree, "d0"), { message: "before the crash" });
    const before = countBlobs(state);
    const pending = snaps.create(tree, { message: "killed" }).then(
      () => "completed",
      (error: Error) => error.name,
    );
    // A snapshot writes its blobs under temporary names in tmp/ as it walks, and names them only once all are
    // written: killed while 200 wait there (the 1 GiB at the end of the walk still to come), it leaves them.
    const temporary = () => [...Deno.readDirSync(join(state, "snapshots/tmp"))].length;
    await eventually(() => temporary() >= 200, 60_000, "blobs of the snapshot in progress");
    await daemon.stop("SIGKILL");
    assertEquals(await pending, "DaemonDisconnectedError");
    await checkStore(state);
    assertEquals(
      [...Deno.readDirSync(join(state, "snapshots/manifests"))].map((e) => e.name),
      [`${kept.id}.jsonl`],
      "only the complete snapshot has a manifest",
    );
    assertEquals(countBlobs(state), before, "no blob of the killed snapshot was named");
    assertGreater(temporary(), 100, "the killed snapshot left its blobs in tmp/");
    // A crash after the blobs were named and before the manifest was written leaves blobs no manifest names:
    // one such blob, as that crash leaves it.
    const orphan = new TextEncoder().encode("a blob whose manifest was never written");
    const orphanHash = createHash("sha256").update(orphan).digest("hex");
    await Deno.mkdir(join(state, "snapshots/blobs", orphanHash.slice(0, 2)), { recursive: true });
    await Deno.writeFile(
      join(state, "snapshots/blobs", orphanHash.slice(0, 2), orphanHash),
      orphan,
    );
    assert(!(await checkStore(state)).named.has(orphanHash));

    // Half the tree goes away: the crash's blobs of those files are orphans for good.
    for (let d = 10; d < 20; d++) await Deno.remove(join(tree, `d${d}`), { recursive: true });
    await Deno.remove(join(tree, "zz-slow.bin"));
    daemon = new TestDaemon({ id: "w1", url: server.url, args: ["--state-dir", state] });
    await server.waitForDaemon("w1", { timeout: 20_000 });
    const next = await snaps.create(tree, { message: "after the crash" });
    assertEquals(next.fileCount, 10 * 101);
    const dest = join(work, "restored");
    await snaps.restore(next.id, dest);
    const diff = await new Deno.Command("diff", { args: ["-r", "--no-dereference", tree, dest] })
      .output();
    assertEquals(diff.code, 0, decoder.decode(diff.stdout));
    await snaps.restore(kept.id, join(work, "kept"));
    const keptDiff = await new Deno.Command("diff", {
      args: ["-r", join(tree, "d0"), join(work, "kept")],
    })
      .output();
    assertEquals(keptDiff.code, 0, decoder.decode(keptDiff.stdout));
    // Nothing the crash left remains: no temporary file, no blob that no manifest names.
    const final = await checkStore(state);
    assertEquals([...final.onDisk].filter((h) => !final.named.has(h)), []);
    assertEquals([...Deno.readDirSync(join(state, "snapshots/tmp"))], []);
    assertEquals((await snaps.list()).map((s) => s.message), [
      "after the crash",
      "before the crash",
    ]);
  } finally {
    await daemon.stop("SIGKILL");
    await server.close();
    await Deno.remove(work, { recursive: true });
  }
});
