// Workspace snapshots end to end: real daemons with their own state directories, real trees compared with
// `diff -r` and lstat, the store inspected on disk.
import { createHash } from "node:crypto";
import { join } from "node:path";
import {
  assert,
  assertEquals,
  assertGreater,
  assertLess,
  assertRejects,
  assertStringIncludes,
} from "./_assert.ts";
import {
  type AuditRecord,
  Client,
  FileError,
  PolicyError,
  RemoteError,
  RemoteWorker,
  Server,
  type ServerOptions,
} from "../mod.ts";
import { TestDaemon } from "./_daemon.ts";

const decoder = new TextDecoder();

async function tempDir(prefix: string): Promise<string> {
  return await Deno.realPath(await Deno.makeTempDir({ prefix }));
}

/** A controller and daemons `ids`, each with its own state directory; extra daemon args per id. */
async function setup(
  ids: string[] = ["w1"],
  args: Record<string, string[]> = {},
  options: ServerOptions = {},
) {
  const server = await Server.listen({ port: 0, ...options });
  const work = await tempDir("sandd-snap-");
  const state: Record<string, string> = {};
  const daemons = ids.map((id) => {
    state[id] = join(work, `state-${id}`);
    return new TestDaemon({
      id,
      url: server.url,
      args: ["--state-dir", state[id]!, ...(args[id] ?? [])],
    });
  });
  await Promise.all(ids.map((id) => server.waitForDaemon(id, { timeout: 20_000 })));
  return {
    server,
    work,
    state,
    async [Symbol.asyncDispose]() {
      await Promise.all(daemons.map((d) => d.stop()));
      await server.close();
      await new Deno.Command("chmod", { args: ["-R", "u+w", work] }).output();
      await Deno.remove(work, { recursive: true }).catch(() => {});
    },
  };
}

function random(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let at = 0; at < n; at += 65536) crypto.getRandomValues(out.subarray(at, at + 65536));
  return out;
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** A tree with modes, symlinks, empty directories, odd names, an empty file and a file bigger than 1 MiB. */
async function makeTree(dir: string): Promise<void> {
  await Deno.mkdir(dir);
  await Deno.mkdir(join(dir, "src/deep/er"), { recursive: true });
  await Deno.mkdir(join(dir, "empty"));
  await Deno.mkdir(join(dir, "private"), { mode: 0o700 });
  await Deno.chmod(join(dir, "private"), 0o700);
  await Deno.writeTextFile(join(dir, "src/a.txt"), "alpha\n");
  await Deno.writeTextFile(join(dir, "src/deep/er/b.txt"), "beta\n");
  await Deno.writeFile(join(dir, "run.sh"), new TextEncoder().encode("#!/bin/sh\necho hi\n"));
  await Deno.chmod(join(dir, "run.sh"), 0o755);
  await Deno.writeTextFile(join(dir, "private/secret"), "s3cret");
  await Deno.chmod(join(dir, "private/secret"), 0o600);
  await Deno.writeTextFile(join(dir, "with space.txt"), "space");
  await Deno.writeTextFile(join(dir, "new\nline"), "newline");
  await Deno.writeTextFile(join(dir, "ünïcödé 日本.txt"), "unicode");
  await Deno.writeFile(join(dir, "empty-file"), new Uint8Array(0));
  await Deno.writeFile(join(dir, "big.bin"), random(3 * 1024 * 1024 + 17));
  await Deno.writeTextFile(join(dir, "src/copy-of-a.txt"), "alpha\n"); // same content: one blob
  await Deno.symlink("src/a.txt", join(dir, "link-to-a"));
  await Deno.symlink("/nonexistent/dangling", join(dir, "dangling"));
  await Deno.symlink("../..", join(dir, "src/up"));
  await Deno.chmod(join(dir, "src/deep"), 0o750);
  await Deno.utime(join(dir, "src/a.txt"), 1_600_000_000, 1_600_000_000);
}

/** lstat of every entry beneath `dir`: type, mode, size, mtime (files and dirs), link target. */
async function describeTree(dir: string, rel = ""): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const entry of Deno.readDir(join(dir, rel))) {
    const path = rel === "" ? entry.name : `${rel}/${entry.name}`;
    const info = await Deno.lstat(join(dir, path));
    const mode = ((info.mode ?? 0) & 0o7777).toString(8);
    if (info.isSymlink) {
      out[path] = `symlink -> ${await Deno.readLink(join(dir, path))}`;
    } else if (info.isDirectory) {
      out[path] = `dir ${mode} ${info.mtime?.getTime()}`;
      Object.assign(out, await describeTree(dir, path));
    } else {
      out[path] = `file ${mode} ${info.size} ${info.mtime?.getTime()}`;
    }
  }
  return out;
}

async function diffTrees(a: string, b: string): Promise<{ code: number; output: string }> {
  const out = await new Deno.Command("diff", { args: ["-r", "--no-dereference", a, b] }).output();
  return { code: out.code, output: decoder.decode(out.stdout) + decoder.decode(out.stderr) };
}

/** Sizes of every blob file in a state directory's store. */
async function blobs(stateDir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const root = join(stateDir, "snapshots/blobs");
  for await (const fan of Deno.readDir(root)) {
    for await (const blob of Deno.readDir(join(root, fan.name))) {
      out.set(blob.name, (await Deno.stat(join(root, fan.name, blob.name))).size);
    }
  }
  return out;
}

function sum(map: Map<string, number>): number {
  let total = 0;
  for (const size of map.values()) total += size;
  return total;
}

Deno.test("a snapshot round trip keeps modes, symlinks as links, empty directories and odd names", async () => {
  await using t = await setup();
  const src = join(t.work, "tree");
  await makeTree(src);
  const snaps = t.server.snapshots("w1");
  const snap = await snaps.create(src, { message: "first", tags: ["green", "ci"] });
  assertEquals(snap.message, "first");
  assertEquals(snap.tags, ["green", "ci"]);
  assertEquals(snap.fileCount, 10);
  assertEquals(snap.symlinkCount, 3);
  assertEquals(snap.dirCount, 5);
  assert(snap.createdAt instanceof Date && Date.now() - snap.createdAt.getTime() < 60_000);
  // Two files share their content: 9 blobs for 10 files.
  assertEquals(snap.newBlobs, 9);
  assertEquals((await blobs(t.state.w1!)).size, 9);
  const dest = join(t.work, "restored");
  const restored = await snaps.restore(snap.id, dest);
  assertEquals(restored, {
    fileCount: 10,
    dirCount: 5,
    symlinkCount: 3,
    totalSize: snap.totalSize,
  });
  assertEquals(await diffTrees(src, dest), { code: 0, output: "" });
  assertEquals(await describeTree(dest), await describeTree(src));
  assertEquals((await Deno.stat(dest)).mode! & 0o777, (await Deno.stat(src)).mode! & 0o777);
  // The store's own directory is private.
  assertEquals((await Deno.stat(t.state.w1!)).mode! & 0o777, 0o700);
  // get/list/findByTag describe the same snapshot.
  const got = await snaps.get(snap.id);
  assertEquals(got.id, snap.id);
  assertEquals(got.totalSize, snap.totalSize);
  assertEquals(got.createdAt.getTime(), snap.createdAt.getTime());
  const second = await snaps.create(join(src, "src"), { message: "second", tags: ["ci"] });
  assertEquals((await snaps.list()).map((s) => s.id), [second.id, snap.id]);
  assertEquals((await snaps.list({ tags: ["green"] })).map((s) => s.id), [snap.id]);
  assertEquals((await snaps.list({ tags: ["ci", "green"] })).map((s) => s.id), [snap.id]);
  assertEquals((await snaps.findByTag("ci"))?.id, second.id);
  assertEquals(await snaps.findByTag("nope"), undefined);
  const missing = await assertRejects(() => snaps.get("no-such-snapshot"), FileError);
  assertEquals(missing.code, "ENOENT");
  assertEquals(
    (await assertRejects(() => snaps.create(join(src, "run.sh")), FileError)).code,
    "ENOTDIR",
  );
});

Deno.test("a second snapshot of a tree with one changed file stores about one file", async () => {
  await using t = await setup();
  const src = join(t.work, "tree");
  await Deno.mkdir(join(src, "d"), { recursive: true });
  const size = 256 * 1024;
  for (let i = 0; i < 40; i++) await Deno.writeFile(join(src, "d", `f${i}.bin`), random(size));
  const snaps = t.server.snapshots("w1");
  const first = await snaps.create(src);
  assertEquals(first.newBlobs, 40);
  const before = sum(await blobs(t.state.w1!));
  assertEquals(before, 40 * size);
  await Deno.writeFile(join(src, "d", "f7.bin"), random(size));
  const second = await snaps.create(src);
  assertEquals(second.newBlobs, 1);
  assertEquals(second.newBytes, size);
  const after = sum(await blobs(t.state.w1!));
  assertEquals(after - before, size, "the store grew by exactly the changed file");
  // An unchanged tree stores nothing at all.
  const third = await snaps.create(src);
  assertEquals([third.newBlobs, third.newBytes], [0, 0]);
});

Deno.test("a corrupt or missing blob fails the restore and leaves the destination untouched", async () => {
  await using t = await setup();
  const src = join(t.work, "tree");
  await makeTree(src);
  const snaps = t.server.snapshots("w1");
  const snap = await snaps.create(src);
  const target = sha256(await Deno.readFile(join(src, "src/deep/er/b.txt")));
  const blobPath = join(t.state.w1!, "snapshots/blobs", target.slice(0, 2), target);
  await Deno.chmod(blobPath, 0o644);
  await Deno.writeTextFile(blobPath, "BETA\n"); // same size, other bytes
  const dest = join(t.work, "restored");
  const error = await assertRejects(() => snaps.restore(snap.id, dest), FileError);
  assertEquals(error.code, "EINTEGRITY");
  assertStringIncludes(error.message, target);
  assertEquals(await Deno.lstat(dest).catch(() => null), null);
  // An existing destination stays as it was, even with overwrite.
  await Deno.mkdir(dest);
  await Deno.writeTextFile(join(dest, "keep.txt"), "mine");
  await assertRejects(
    () => snaps.restore(snap.id, dest, { overwrite: true }),
    FileError,
    "corrupt",
  );
  assertEquals([...Deno.readDirSync(dest)].map((e) => e.name), ["keep.txt"]);
  // No temporary tree is left beside it.
  assertEquals(
    [...Deno.readDirSync(t.work)].map((e) => e.name).filter((n) => n.includes(".sandd-")),
    [],
  );
  // A missing blob is the same failure, and so is a corrupt blob in an export.
  await Deno.remove(blobPath);
  assertEquals(
    (await assertRejects(() => snaps.restore(snap.id, join(t.work, "r2")), FileError)).code,
    "EINTEGRITY",
  );
  assertEquals(await Deno.lstat(join(t.work, "r2")).catch(() => null), null);
});

Deno.test("restore refuses an existing destination unless overwrite, which replaces it in one rename", async () => {
  await using t = await setup();
  const src = join(t.work, "tree");
  await makeTree(src);
  const snaps = t.server.snapshots("w1");
  const snap = await snaps.create(src);
  const dest = join(t.work, "dest");
  await Deno.mkdir(dest);
  await Deno.writeTextFile(join(dest, "old.txt"), "old");
  const exists = await assertRejects(() => snaps.restore(snap.id, dest), FileError);
  assertEquals(exists.code, "EEXIST");
  assertEquals(await Deno.readTextFile(join(dest, "old.txt")), "old");
  await snaps.restore(snap.id, dest, { overwrite: true });
  assertEquals(await diffTrees(src, dest), { code: 0, output: "" });
  // A file in the way is replaced too; a missing parent is ENOENT.
  const file = join(t.work, "file");
  await Deno.writeTextFile(file, "x");
  await snaps.restore(snap.id, file, { overwrite: true });
  assertEquals(await diffTrees(src, file), { code: 0, output: "" });
  const noParent = await assertRejects(
    () => snaps.restore(snap.id, join(t.work, "a/b/c")),
    FileError,
  );
  assertEquals(noParent.code, "ENOENT");
  assertEquals(
    [...Deno.readDirSync(t.work)].map((e) => e.name).filter((n) => n.includes(".sandd-")),
    [],
  );
});

Deno.test("delete frees only the blobs no other snapshot uses", async () => {
  await using t = await setup();
  const src = join(t.work, "tree");
  await Deno.mkdir(src);
  await Deno.writeTextFile(join(src, "shared"), "shared content");
  await Deno.writeTextFile(join(src, "only-a"), "only in a");
  const snaps = t.server.snapshots("w1");
  const a = await snaps.create(src);
  await Deno.remove(join(src, "only-a"));
  await Deno.writeTextFile(join(src, "only-b"), "only in b!");
  const b = await snaps.create(src);
  assertEquals((await blobs(t.state.w1!)).size, 3);
  assertEquals(await snaps.delete(a.id), { freedBlobs: 1, freedBytes: "only in a".length });
  const left = await blobs(t.state.w1!);
  assertEquals(left.size, 2);
  assert(left.has(sha256(new TextEncoder().encode("shared content"))));
  assertEquals((await snaps.list()).map((s) => s.id), [b.id]);
  assertEquals((await assertRejects(() => snaps.get(a.id), FileError)).code, "ENOENT");
  assertEquals((await assertRejects(() => snaps.delete(a.id), FileError)).code, "ENOENT");
  const dest = join(t.work, "b");
  await snaps.restore(b.id, dest);
  assertEquals(await diffTrees(src, dest), { code: 0, output: "" });
  assertEquals(await snaps.delete(b.id), {
    freedBlobs: 2,
    freedBytes: "shared content".length + "only in b!".length,
  });
  assertEquals((await blobs(t.state.w1!)).size, 0);
  assertEquals(await snaps.list(), []);
});

Deno.test("export and import as tar round-trip a snapshot through the controller", async () => {
  await using t = await setup(["w1", "w2"]);
  const src = join(t.work, "tree");
  await makeTree(src);
  const snap = await t.server.snapshots("w1").create(src, { message: "to export" });
  const archive = await t.server.snapshots("w1").export(snap.id);
  const imported = await t.server.snapshots("w2").import(archive, {
    message: "imported",
    tags: ["x"],
  });
  assertEquals(imported.message, "imported");
  assertEquals(imported.tags, ["x"]);
  assertEquals(
    [imported.fileCount, imported.dirCount, imported.symlinkCount, imported.totalSize],
    [snap.fileCount, snap.dirCount, snap.symlinkCount, snap.totalSize],
  );
  const dest = join(t.work, "via-tar");
  await t.server.snapshots("w2").restore(imported.id, dest);
  assertEquals(await diffTrees(src, dest), { code: 0, output: "" });
  // Modes and file mtimes survive the tar (directory mtimes and symlink mtimes are not compared here).
  const strip = (tree: Record<string, string>) =>
    Object.fromEntries(
      Object.entries(tree).map((
        [k, v],
      ) => [k, v.startsWith("dir") ? v.split(" ").slice(0, 2).join(" ") : v]),
    );
  assertEquals(strip(await describeTree(dest)), strip(await describeTree(src)));
  // A hostile archive (an entry climbing out) is refused and leaves no snapshot.
  const { TarWriter } = await import("../protocol/tar/mod.ts");
  const tar = new TarWriter();
  const bytes = new Response(tar.readable).arrayBuffer();
  await tar.addEntry(
    { path: "../escape", type: "file", size: 1, mode: 0o644, mtime: 0 },
    new Uint8Array([1]),
  );
  await tar.close();
  const hostile = new Uint8Array(await bytes);
  const bad = await assertRejects(
    () => t.server.snapshots("w2").import(ReadableStream.from([hostile])),
    RemoteError,
  );
  assertStringIncludes(bad.message, "..");
  assertEquals((await t.server.snapshots("w2").list()).length, 1);
});

Deno.test("copyTo sends only the blobs the other worker lacks", async () => {
  await using t = await setup(["w1", "w2"]);
  const src = join(t.work, "tree");
  await makeTree(src);
  const one = t.server.snapshots("w1");
  const first = await one.create(src, { message: "v1", tags: ["release"] });
  const copied = await one.copyTo("w2", first.id);
  assertEquals(copied.id, first.id);
  assertEquals(copied.blobs, 9);
  assertEquals(copied.blobsSent, 9);
  assertEquals(copied.bytesSent, sum(await blobs(t.state.w1!)));
  const two = t.server.snapshots("w2");
  const there = await two.get(first.id);
  assertEquals([there.message, there.tags, there.totalSize], ["v1", ["release"], first.totalSize]);
  const dest = join(t.work, "on-w2");
  await two.restore(first.id, dest);
  assertEquals(await diffTrees(src, dest), { code: 0, output: "" });
  // One file changed: one blob travels.
  await Deno.writeTextFile(join(src, "src/a.txt"), "alpha, changed\n");
  const second = await one.create(src, { message: "v2" });
  const again = await one.copyTo("w2", second.id);
  assertEquals([again.blobsSent, again.bytesSent], [1, "alpha, changed\n".length]);
  // Copying what the target has sends no blob, and is not an error.
  assertEquals((await one.copyTo("w2", second.id)).blobsSent, 0);
  assertEquals((await two.list()).map((s) => s.id), [second.id, first.id]);
  const dest2 = join(t.work, "on-w2-v2");
  await two.restore(second.id, dest2);
  assertEquals(await diffTrees(src, dest2), { code: 0, output: "" });
});

Deno.test("--root: a symlink to the outside is stored as a link, never followed; paths outside are refused", async () => {
  const outside = await tempDir("sandd-snap-outside-");
  await Deno.writeTextFile(join(outside, "secret.txt"), "TOP SECRET OUTSIDE");
  const secretHash = sha256(new TextEncoder().encode("TOP SECRET OUTSIDE"));
  const root = await tempDir("sandd-snap-root-");
  const state = await tempDir("sandd-snap-state-");
  await using t = await setup(["w1"], { w1: ["--root", root] });
  // The setup's state dir is replaced by one outside the root on purpose: see the next test for one inside.
  void state;
  const tree = join(root, "tree");
  await Deno.mkdir(join(tree, "sub"), { recursive: true });
  await Deno.writeTextFile(join(tree, "sub/inside.txt"), "inside");
  await Deno.symlink(join(outside, "secret.txt"), join(tree, "to-secret"));
  await Deno.symlink(outside, join(tree, "to-outside-dir"));
  const snaps = t.server.snapshots("w1");
  const snap = await snaps.create("tree");
  assertEquals([snap.fileCount, snap.symlinkCount], [1, 2]);
  assert(!(await blobs(t.state.w1!)).has(secretHash), "the outside file was not read");
  // Restored as links with the same targets.
  await snaps.restore(snap.id, "copy");
  assertEquals(await Deno.readLink(join(root, "copy/to-secret")), join(outside, "secret.txt"));
  assertEquals(await Deno.readLink(join(root, "copy/to-outside-dir")), outside);
  // The export carries the link, not the secret.
  const archive = new Uint8Array(await new Response(await snaps.export(snap.id)).arrayBuffer());
  assert(!decoder.decode(archive).includes("TOP SECRET"), "the archive holds no outside bytes");
  // Snapshotting or restoring outside the root, or through a symlink, is refused.
  await assertRejects(() => snaps.create(outside), PolicyError);
  await assertRejects(() => snaps.create("tree/to-outside-dir"), PolicyError);
  await assertRejects(() => snaps.create("../"), PolicyError);
  await assertRejects(() => snaps.restore(snap.id, join(outside, "restored")), PolicyError);
  await assertRejects(() => snaps.restore(snap.id, "tree/to-outside-dir/restored"), PolicyError);
  await assertRejects(() => snaps.restore(snap.id, "/"), PolicyError);
  assertEquals([...Deno.readDirSync(outside)].map((e) => e.name), ["secret.txt"]);
  await Deno.remove(outside, { recursive: true });
  await Deno.remove(root, { recursive: true });
  await Deno.remove(state, { recursive: true });
});

Deno.test("--root: a state directory beneath the root, and --no-files, refuse every snapshot operation", async () => {
  const root = await tempDir("sandd-snap-root-");
  await Deno.mkdir(join(root, "tree"));
  const server = await Server.listen({ port: 0 });
  const inside = new TestDaemon({
    id: "inside",
    url: server.url,
    args: ["--root", root, "--state-dir", join(root, ".state")],
  });
  const noFiles = new TestDaemon({
    id: "nofiles",
    url: server.url,
    args: ["--no-files", "--state-dir", join(root, "..", `state-${crypto.randomUUID()}`)],
  });
  try {
    await server.waitForDaemon("inside", { timeout: 20_000 });
    await server.waitForDaemon("nofiles", { timeout: 20_000 });
    const refused = await assertRejects(
      () => server.snapshots("inside").create("tree"),
      PolicyError,
    );
    assertStringIncludes(refused.message, "state directory");
    await assertRejects(() => server.snapshots("inside").list(), PolicyError);
    assertEquals(await Deno.lstat(join(root, ".state")).catch(() => null), null);
    const off = await assertRejects(() => server.snapshots("nofiles").list(), PolicyError);
    assertEquals(off.rule, "noFiles");
    await assertRejects(() => server.snapshots("nofiles").create(join(root, "tree")), PolicyError);
  } finally {
    await inside.stop();
    await noFiles.stop();
    await server.close();
    await Deno.remove(root, { recursive: true });
  }
});

/** Why the race test cannot run here (it drives renameat2 from python3), or null. */
function python3Missing(): string | null {
  try {
    const out = new Deno.Command("python3", { args: ["-c", "import ctypes"] }).outputSync();
    return out.success ? null : "python3 cannot import ctypes";
  } catch {
    return "python3 is not installed";
  }
}

Deno.test({
  name:
    "--root: a directory swapped for an outside symlink while snapshots run never makes one read outside",
  ignore: (() => {
    const reason = python3Missing();
    if (reason) console.warn(`skipping the snapshot swap race test: ${reason}`);
    return reason !== null;
  })(),
}, async () => {
  const outside = await tempDir("sandd-snap-outside-");
  const secret = "OUTSIDE-" + crypto.randomUUID();
  const secretHash = sha256(new TextEncoder().encode(secret));
  await Deno.writeTextFile(join(outside, "s0.txt"), secret);
  const DIRS = 4;
  const root = await tempDir("sandd-snap-root-");
  await using t = await setup(["w1"], { w1: ["--root", root] });
  const tree = join(root, "tree");
  await Deno.mkdir(tree);
  for (let i = 0; i < DIRS; i++) {
    await Deno.mkdir(join(tree, `d${i}`));
    await Deno.writeTextFile(join(tree, `d${i}`, "s0.txt"), `inside ${i}`);
    await Deno.symlink(outside, join(root, `l${i}`));
  }
  // Exchange each d<i> with a symlink to the outside directory (renameat2 RENAME_EXCHANGE: one atomic syscall,
  // so the name flips between a directory and a symlink every few microseconds) in a tight loop of another
  // process, while snapshots walk the tree.
  const script = `
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
tree, root, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
pairs = [((os.path.join(tree, "d%d" % i)).encode(), (os.path.join(root, "l%d" % i)).encode()) for i in range(n)]
stop = os.path.join(root, "stop")
swaps = 0
end = time.time() + 120
while time.time() < end:
    for _ in range(2000):
        for a, b in pairs:
            if libc.renameat2(-100, a, -100, b, 2) != 0:
                raise OSError(ctypes.get_errno(), "renameat2")
            swaps += 1
    if os.path.exists(stop):
        break
# Leave every directory in the tree.
for a, b in pairs:
    if os.path.islink(a):
        libc.renameat2(-100, a, -100, b, 2)
print(swaps)
`;
  const swapperProcess = new Deno.Command("python3", {
    args: ["-c", script, tree, root, String(DIRS)],
    stdout: "piped",
  }).spawn();
  const snaps = t.server.snapshots("w1");
  let ok = 0, changed = 0;
  const taken: string[] = [];
  try {
    for (let round = 0; round < 60; round++) {
      try {
        taken.push((await snaps.create("tree")).id);
        ok++;
      } catch (error) {
        if (!(error instanceof RemoteError) || error.code !== "EAGAIN") throw error;
        changed++;
      }
    }
  } finally {
    await Deno.writeTextFile(join(root, "stop"), "");
  }
  const swaps = Number(decoder.decode((await swapperProcess.output()).stdout).trim());
  assertGreater(swaps, 1000);
  assertEquals(ok + changed, 60);
  assert(
    !(await blobs(t.state.w1!)).has(secretHash),
    "no outside file was ever read into the store",
  );
  // What was taken restores without outside content (links to the outside stay links).
  for (const id of taken.slice(0, 5)) {
    await snaps.restore(id, `r-${id}`);
    const out = await new Deno.Command("grep", {
      args: ["-r", "-l", secret, join(root, `r-${id}`)],
    })
      .output();
    assertEquals(
      out.code,
      1,
      `restore of ${id} holds outside content: ${decoder.decode(out.stdout)}`,
    );
  }
  await Deno.remove(outside, { recursive: true });
  await Deno.remove(root, { recursive: true });
});

Deno.test("bad arguments are refused before anything is sent", async () => {
  await using t = await setup();
  const snaps = t.server.snapshots("w1");
  await assertRejects(() => snaps.create(""), TypeError);
  await assertRejects(() => snaps.create("/x", { tags: [""] }), TypeError);
  await assertRejects(() => snaps.create("/x", { message: "m".repeat(5000) }), TypeError);
  await assertRejects(() => snaps.restore("id", ""), TypeError);
  await assertRejects(() => snaps.copyTo("w1", "id"), TypeError);
  await assertRejects(
    () => snaps.import("nope" as unknown as ReadableStream<Uint8Array>),
    TypeError,
  );
  const bad = await assertRejects(() => snaps.get("../etc"), Error);
  assertLess(bad.message.length, 1000);
});

Deno.test("every snapshot call is audited, refused ones too", async () => {
  const records: AuditRecord[] = [];
  await using t = await setup(["w1", "w2"], {}, { audit: (record) => void records.push(record) });
  const src = join(t.work, "tree");
  await Deno.mkdir(src);
  await Deno.writeTextFile(join(src, "a"), "a");
  const snaps = t.server.snapshots("w1");
  const snap = await snaps.create(src, { message: "m" });
  await snaps.list();
  await snaps.get(snap.id);
  await snaps.restore(snap.id, join(t.work, "r"));
  await snaps.copyTo("w2", snap.id);
  await new Response(await snaps.export(snap.id)).arrayBuffer();
  await t.server.snapshots("w2").import(await snaps.export(snap.id));
  await assertRejects(() => snaps.restore(snap.id, join(t.work, "r")), FileError);
  await snaps.delete(snap.id);
  const seen = records.filter((r) => r.action.startsWith("snapshot.")).map((r) =>
    `${r.action} ${r.daemon} ${r.ok}`
  );
  assertEquals(seen, [
    "snapshot.create w1 true",
    "snapshot.list w1 true",
    "snapshot.get w1 true",
    "snapshot.restore w1 true",
    "snapshot.copy w1 true",
    "snapshot.export w1 true",
    "snapshot.export w1 true",
    "snapshot.import w2 true",
    "snapshot.restore w1 false",
    "snapshot.delete w1 true",
  ]);
  const create = records.find((r) => r.action === "snapshot.create")!;
  assertEquals([create.path, create.bytes], [src, 1]);
  assertEquals(records.find((r) => r.action === "snapshot.copy")?.to, "w2");
});

Deno.test("unchanged files are not read again, and a same-size change with its mtime put back is still seen", async () => {
  await using t = await setup();
  const src = join(t.work, "tree");
  await Deno.mkdir(src);
  await Deno.writeTextFile(join(src, "same-size.txt"), "version 1");
  await Deno.writeTextFile(join(src, "untouched.txt"), "untouched");
  const before = await Deno.stat(join(src, "same-size.txt"));
  // The daemon trusts a remembered digest only for files whose last change is 2 s old when read (a change in
  // the same kernel clock tick as a read would keep the change time): let that time pass. No event marks it.
  await new Promise((r) => setTimeout(r, 2_100));
  const snaps = t.server.snapshots("w1");
  const first = await snaps.create(src);
  // Same size, and the modification time set back: only the change time (ctime) tells.
  await Deno.writeTextFile(join(src, "same-size.txt"), "version 2");
  await Deno.utime(join(src, "same-size.txt"), before.atime!, before.mtime!);
  const second = await snaps.create(src);
  assertEquals(second.newBlobs, 1);
  await snaps.restore(first.id, join(t.work, "r1"));
  await snaps.restore(second.id, join(t.work, "r2"));
  assertEquals(await Deno.readTextFile(join(t.work, "r1/same-size.txt")), "version 1");
  assertEquals(await Deno.readTextFile(join(t.work, "r2/same-size.txt")), "version 2");
  assertEquals(await Deno.readTextFile(join(t.work, "r2/untouched.txt")), "untouched");
  // A blob deleted from the store is written again, not trusted from memory.
  await snaps.delete(first.id);
  await snaps.delete(second.id);
  const third = await snaps.create(src);
  assertEquals(third.newBlobs, 2);
  await snaps.restore(third.id, join(t.work, "r3"));
  assertEquals(await diffTrees(src, join(t.work, "r3")), { code: 0, output: "" });
});

Deno.test("the worker handle's snapshots are the server's: create, findByTag, list, restore", async () => {
  await using t = await setup();
  const src = join(t.work, "handle-tree");
  await Deno.mkdir(src);
  await Deno.writeTextFile(join(src, "a.txt"), "one");
  const w = t.server.worker("w1");
  const made = await w.snapshots.create(src, { message: "first", tags: ["green"] });
  assertEquals((await w.snapshots.findByTag("green"))?.id, made.id);
  assertEquals((await w.snapshots.list({ tags: ["green"] })).map((s) => s.id), [made.id]);
  const dest = join(t.work, "handle-restored");
  assertEquals((await w.snapshots.restore(made.id, dest)).fileCount, 1);
  assertEquals(await Deno.readTextFile(join(dest, "a.txt")), "one");
});

Deno.test("snapshots through a remote Client: the same operations, and w.snapshots on a Client", async () => {
  await using t = await setup(["c1", "c2"], {}, { control: true });
  await using client = await Client.connect(`http://127.0.0.1:${t.server.port}`);
  const src = join(t.work, "client-tree");
  await makeTree(src);
  // On a Client too, waitForDaemon resolves to the worker handle.
  const w = await client.waitForDaemon("c1");
  assert(w instanceof RemoteWorker);
  assertEquals(w.id, "c1");
  const made = await w.snapshots.create(src, { message: "via the API", tags: ["api", "green"] });
  assert(made.createdAt instanceof Date);
  assertEquals(made.message, "via the API");
  assertEquals((await w.snapshots.get(made.id)).fileCount, made.fileCount);
  assertEquals((await w.snapshots.findByTag("green"))?.id, made.id);
  assertEquals((await w.snapshots.list({ tags: ["api"] })).map((s) => s.id), [made.id]);
  const dest = join(t.work, "client-restored");
  assertEquals((await w.snapshots.restore(made.id, dest)).fileCount, made.fileCount);
  const diff = await new Deno.Command("diff", { args: ["-r", "--no-dereference", src, dest] })
    .output();
  assertEquals(diff.code, 0, new TextDecoder().decode(diff.stdout));
  // Copy to the other worker, then export from there and import back as a new snapshot.
  const copied = await client.snapshots("c1").copyTo("c2", made.id);
  assertEquals(copied.id, made.id);
  const other = client.snapshots("c2");
  assertEquals((await other.get(made.id)).totalSize, made.totalSize);
  const imported = await client.snapshots("c1").import(await other.export(made.id), {
    message: "round trip",
  });
  assertEquals([imported.fileCount, imported.totalSize], [made.fileCount, made.totalSize]);
  await client.snapshots("c1").delete(imported.id);
  // Errors are the embedded controller's: an unknown snapshot, a restore over an existing directory.
  await assertRejects(() => w.snapshots.get("no-such-snapshot"), Error);
  const exists = await assertRejects(() => w.snapshots.restore(made.id, dest), FileError);
  assertEquals(exists.code, "EEXIST");
});
