import {
  assert,
  assertEquals,
  assertMatch,
  assertNotStrictEquals,
  assertRejects,
  assertStrictEquals,
  assertThrows,
} from "../../tests/_assert.ts";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { readTar, type TarEntryHeader, TarFormatError, TarWriter } from "./tar.ts";
import { packDirectory, TarPackError, TarPathError, unpackTar } from "./tar_fs.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function tempDir(): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix: "sandd_tar_fs_" });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true });
    },
  };
}

function random(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(out.subarray(i, i + 65536));
  return out;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path);
  const buffer = new Uint8Array(256 * 1024);
  for (;;) {
    const n = await file.read(buffer);
    if (n === null) break;
    hash.update(buffer.subarray(0, n));
  }
  return hash.digest("hex");
}

/** A description of every entry under `root`: type, mode, content hash or link target. */
async function snapshot(root: string, rel = ""): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const names: string[] = [];
  for await (const entry of Deno.readDir(join(root, rel))) names.push(entry.name);
  for (const name of names.sort()) {
    const path = rel === "" ? name : `${rel}/${name}`;
    const abs = join(root, path);
    const info = await Deno.lstat(abs);
    const mode = (info.mode! & 0o7777).toString(8);
    if (info.isSymlink) out.set(path, `link -> ${await Deno.readLink(abs)}`);
    else if (info.isDirectory) {
      out.set(path, `dir ${mode}`);
      for (const [key, value] of await snapshot(root, path)) out.set(key, value);
    } else out.set(path, `file ${mode} ${info.size} ${await sha256File(abs)}`);
  }
  return out;
}

/** Builds the tree used by the round-trip tests and returns its expected file count and byte total. */
async function buildTree(
  root: string,
): Promise<{ files: number; directories: number; symlinks: number }> {
  const write = async (rel: string, data: Uint8Array, mode = 0o644) => {
    await Deno.writeFile(join(root, rel), data);
    await Deno.chmod(join(root, rel), mode);
  };
  const longComponent = "n".repeat(200); // > 100 bytes in one component
  const deep = ["d".repeat(90), "e".repeat(90), "f".repeat(90)].join("/"); // > 255 bytes with the file
  await Deno.mkdir(join(root, "nested/deeper/deepest"), { recursive: true });
  await Deno.mkdir(join(root, "empty-dir"));
  await Deno.mkdir(join(root, deep), { recursive: true });
  await Deno.mkdir(join(root, "private"), { mode: 0o700 });
  await Deno.chmod(join(root, "private"), 0o700);
  await write("empty", new Uint8Array());
  await write("one-byte", encoder.encode("x"));
  await write("block-511", random(511));
  await write("block-512", random(512));
  await write("block-513", random(513));
  await write("nested/deeper/deepest/big.bin", random(10 * 1024 * 1024));
  await write("nested/script.sh", encoder.encode("#!/bin/sh\necho hi\n"), 0o755);
  await write("private/secret", encoder.encode("s3cret"), 0o600);
  await write(longComponent, encoder.encode("long component"));
  await write(`${deep}/${"g".repeat(60)}.txt`, encoder.encode("deep"));
  await write("ünïcödé 日本語 🎉", encoder.encode("unicode"));
  await write("new\nline", encoder.encode("newline"));
  await write(" leading and trailing spaces ", encoder.encode("spaces"));
  await write("-leading-dash", encoder.encode("dash"));
  await write("--", encoder.encode("double dash"));
  await write("back\\slash 'quote' \"dq\" $dollar *star", encoder.encode("shell"));
  await Deno.symlink("nested/script.sh", join(root, "link-relative"));
  await Deno.symlink("../../one-byte", join(root, "nested/deeper/link-up"));
  await Deno.symlink("/etc/hostname", join(root, "link-absolute"));
  await Deno.symlink("does/not/exist", join(root, "link-dangling"));
  await Deno.symlink("nested", join(root, "link-to-dir"));
  return { files: 16, directories: 8, symlinks: 5 };
}

Deno.test("packDirectory + unpackTar round trip a tree: sizes, modes, symlinks, odd and long names", async () => {
  await using src = await tempDir();
  await using dst = await tempDir();
  const counts = await buildTree(src.path);
  const result = await unpackTar(packDirectory(src.path), join(dst.path, "out"));
  const totalBytes = [...(await snapshot(src.path)).values()]
    .filter((value) => value.startsWith("file "))
    .reduce((sum, value) => sum + Number(value.split(" ")[2]), 0);
  assertEquals(result, { ...counts, bytes: totalBytes });
  const before = await snapshot(src.path);
  const after = await snapshot(join(dst.path, "out"));
  assertEquals(after, before);
  // Spot checks that the snapshot covers what the brief asks for.
  assertMatch(after.get("nested/deeper/deepest/big.bin")!, /^file 644 10485760 [0-9a-f]{64}$/);
  assertMatch(after.get("nested/script.sh")!, /^file 755 /);
  assertMatch(after.get("private/secret")!, /^file 600 /);
  assertEquals(after.get("private"), "dir 700");
  assertEquals(after.get("link-absolute"), "link -> /etc/hostname");
  assertEquals(after.get("link-relative"), "link -> nested/script.sh");
  assert(after.has(`${"d".repeat(90)}/${"e".repeat(90)}/${"f".repeat(90)}/${"g".repeat(60)}.txt`));
  // mtimes are kept (whole seconds).
  const srcInfo = await Deno.stat(join(src.path, "nested/script.sh"));
  const dstInfo = await Deno.stat(join(dst.path, "out/nested/script.sh"));
  assertStrictEquals(
    Math.floor(dstInfo.mtime!.getTime() / 1000),
    Math.floor(srcInfo.mtime!.getTime() / 1000),
  );
  // No temporary files are left behind.
  assert(![...after.keys()].some((key) => key.includes(".sandd-tar-")));
});

Deno.test("GNU tar lists and extracts an archive from packDirectory", async () => {
  await using src = await tempDir();
  await using work = await tempDir();
  await buildTree(src.path);
  const archivePath = join(work.path, "ours.tar");
  await Deno.writeFile(archivePath, packDirectory(src.path));
  const list = await new Deno.Command("tar", {
    args: ["-tvf", archivePath],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  assertEquals(list.code, 0, decoder.decode(list.stderr));
  assertEquals(list.stderr.length, 0, decoder.decode(list.stderr));
  const listing = decoder.decode(list.stdout);
  assertMatch(listing, /^-rwxr-xr-x .* nested\/script\.sh$/m);
  assertMatch(listing, /^-rw------- .* private\/secret$/m);
  assertMatch(listing, /^lrwxrwxrwx .* link-absolute -> \/etc\/hostname$/m);
  assertMatch(listing, / 10485760 .*big\.bin$/m);
  await Deno.mkdir(join(work.path, "gnu"));
  const extract = await new Deno.Command("tar", {
    args: ["-xpf", archivePath, "-C", join(work.path, "gnu")],
    stderr: "piped",
  }).output();
  assertEquals(extract.code, 0, decoder.decode(extract.stderr));
  assertEquals(await snapshot(join(work.path, "gnu")), await snapshot(src.path));
});

Deno.test("unpackTar extracts archives made by GNU tar in pax and gnu formats", async () => {
  await using src = await tempDir();
  await using work = await tempDir();
  await buildTree(src.path);
  for (const format of ["pax", "gnu"]) {
    const archivePath = join(work.path, `${format}.tar`);
    const made = await new Deno.Command("tar", {
      args: [`--format=${format}`, "-cf", archivePath, "-C", src.path, "."],
      stderr: "piped",
    }).output();
    assertEquals(made.code, 0, decoder.decode(made.stderr));
    using file = await Deno.open(archivePath);
    const out = join(work.path, `out-${format}`);
    const result = await unpackTar(file.readable, out);
    assertEquals(result.files, 16);
    assertEquals(result.symlinks, 5);
    assertEquals(await snapshot(out), await snapshot(src.path), format);
  }
});

/** Writes a hostile archive with TarWriter. */
function archiveOf(entries: [TarEntryHeader, Uint8Array?][]): ReadableStream<Uint8Array> {
  const writer = new TarWriter();
  (async () => {
    for (const [header, body] of entries) await writer.addEntry(header, body);
    await writer.close();
  })().catch(() => {}); // a consumer that stops early cancels the stream, which rejects these
  return writer.readable;
}

function fileEntry(path: string | Uint8Array, content = "pwned"): [TarEntryHeader, Uint8Array] {
  const body = encoder.encode(content);
  return [{ path, type: "file", size: body.length, mode: 0o644, mtime: 0 }, body];
}

function linkEntry(path: string, target: string): [TarEntryHeader] {
  return [{ path, type: "symlink", size: 0, mode: 0o777, mtime: 0, linkTarget: target }];
}

async function rejectsPath(
  promise: Promise<unknown>,
  code: "TAR_PATH_ESCAPE" | "TAR_PATH_INVALID",
): Promise<void> {
  const error = await assertRejects(() => promise);
  assert(error instanceof TarPathError, `expected TarPathError, got ${error}`);
  assertStrictEquals(error.code, code, error.message);
}

Deno.test("unpackTar refuses absolute paths and .. components", async () => {
  await using work = await tempDir();
  const out = join(work.path, "out");
  const victim = join(work.path, "victim");
  for (
    const path of [
      victim,
      "../victim",
      "a/../../victim",
      "./../victim",
      "ok/../../../victim",
      "..",
      "a/..",
    ]
  ) {
    await rejectsPath(
      unpackTar(archiveOf([fileEntry("fine.txt"), fileEntry(path)]), out),
      "TAR_PATH_ESCAPE",
    );
    await assertRejects(() => Deno.lstat(victim), Deno.errors.NotFound, undefined, path);
  }
  await rejectsPath(
    unpackTar(archiveOf([[{ path: "/", type: "directory", size: 0, mode: 0o755, mtime: 0 }]]), out),
    "TAR_PATH_ESCAPE",
  );
  // `a/./b` and `a//b` are harmless spellings and are accepted.
  await unpackTar(
    archiveOf([fileEntry("a/./b", "1"), fileEntry("a//c", "2"), fileEntry("./d", "3")]),
    out,
  );
  assertEquals(await Deno.readTextFile(join(out, "a/b")), "1");
  assertEquals(await Deno.readTextFile(join(out, "a/c")), "2");
  assertEquals(await Deno.readTextFile(join(out, "d")), "3");
});

Deno.test("unpackTar never writes through a symlink, from the archive or already on disk", async () => {
  await using work = await tempDir();
  const outside = join(work.path, "outside");
  await Deno.mkdir(outside);
  const out = join(work.path, "out");

  // link -> outside dir, then link/passwd
  await rejectsPath(
    unpackTar(archiveOf([linkEntry("link", outside), fileEntry("link/passwd")]), out),
    "TAR_PATH_ESCAPE",
  );
  // relative escape through a link, and a chain of links
  await rejectsPath(
    unpackTar(
      archiveOf([linkEntry("up", "../outside"), fileEntry("up/x")]),
      join(work.path, "out2"),
    ),
    "TAR_PATH_ESCAPE",
  );
  await rejectsPath(
    unpackTar(
      archiveOf([
        [{ path: "d", type: "directory", size: 0, mode: 0o755, mtime: 0 }],
        linkEntry("d/self", "."),
        fileEntry("d/self/self/x"),
      ]),
      join(work.path, "out3"),
    ),
    "TAR_PATH_ESCAPE",
  );
  // a directory entry through a link
  await rejectsPath(
    unpackTar(
      archiveOf([linkEntry("l", outside), [{
        path: "l/sub",
        type: "directory",
        size: 0,
        mode: 0o755,
        mtime: 0,
      }]]),
      join(work.path, "out4"),
    ),
    "TAR_PATH_ESCAPE",
  );
  // a symlink that was already in the target directory
  const existing = join(work.path, "out5");
  await Deno.mkdir(existing);
  await Deno.symlink(outside, join(existing, "pre"));
  await rejectsPath(unpackTar(archiveOf([fileEntry("pre/x")]), existing), "TAR_PATH_ESCAPE");
  assertEquals(await Array.fromAsync(Deno.readDir(outside)), [], "nothing was written outside");

  // A file entry named like a link replaces the link; it does not write to the link's target.
  const target = join(outside, "target.txt");
  await Deno.writeTextFile(target, "original");
  const out6 = join(work.path, "out6");
  await unpackTar(archiveOf([linkEntry("f", target), fileEntry("f", "replaced")]), out6);
  assertEquals(await Deno.readTextFile(target), "original");
  assertEquals((await Deno.lstat(join(out6, "f"))).isFile, true);
  assertEquals(await Deno.readTextFile(join(out6, "f")), "replaced");

  // Symlinks themselves are created as they are, even pointing outside.
  const out7 = join(work.path, "out7");
  const result = await unpackTar(
    archiveOf([linkEntry("abs", "/etc/passwd"), linkEntry("rel", "../../x")]),
    out7,
  );
  assertEquals(result.symlinks, 2);
  assertEquals(await Deno.readLink(join(out7, "abs")), "/etc/passwd");
  assertEquals(await Deno.readLink(join(out7, "rel")), "../../x");
});

Deno.test("unpackTar refuses names it cannot create and conflicts with directories", async () => {
  await using work = await tempDir();
  const out = join(work.path, "out");
  const notUtf8 = new Uint8Array([0x61, 0xff, 0x62]);
  await rejectsPath(unpackTar(archiveOf([fileEntry(notUtf8)]), out), "TAR_PATH_INVALID");
  await rejectsPath(
    unpackTar(
      archiveOf([[{
        path: "l",
        type: "symlink",
        size: 0,
        mode: 0,
        mtime: 0,
        linkTarget: notUtf8,
      }]]),
      out,
    ),
    "TAR_PATH_INVALID",
  );
  await rejectsPath(
    unpackTar(
      archiveOf([
        [{ path: "d", type: "directory", size: 0, mode: 0o755, mtime: 0 }],
        fileEntry("d"),
      ]),
      out,
    ),
    "TAR_PATH_INVALID",
  );
  await rejectsPath(
    unpackTar(archiveOf([fileEntry("f"), fileEntry("f/g")]), join(work.path, "o2")),
    "TAR_PATH_INVALID",
  );
  await rejectsPath(
    unpackTar(archiveOf([fileEntry(".")]), join(work.path, "o3")),
    "TAR_PATH_INVALID",
  );
});

Deno.test("unpackTar rejects truncated and corrupt archives without leaving a half-written file", async () => {
  await using src = await tempDir();
  await using work = await tempDir();
  await Deno.writeFile(join(src.path, "a-small"), random(1000));
  await Deno.writeFile(join(src.path, "b-big"), random(300_000));
  const archive = new Uint8Array(await new Response(packDirectory(src.path)).arrayBuffer());

  // Cut in the middle of b-big's body.
  const out = join(work.path, "out");
  const cut = archive.subarray(0, 512 + 1024 + 512 + 100_000);
  await assertRejects(() => unpackTar(ReadableStream.from([cut]), out), TarFormatError);
  const left = (await Array.fromAsync(Deno.readDir(out))).map((entry) => entry.name);
  assertEquals(left, ["a-small"], "b-big is neither half-written nor left as a temporary file");

  // Corrupt b-big's header checksum.
  const corrupt = archive.slice();
  corrupt[512 + 1024 + 5] = corrupt[512 + 1024 + 5]! ^ 0x01;
  const out2 = join(work.path, "out2");
  await assertRejects(
    () => unpackTar(ReadableStream.from([corrupt]), out2),
    Error,
    /checksum mismatch/,
  );
  // No end-of-archive marker.
  await assertRejects(
    () =>
      unpackTar(
        ReadableStream.from([archive.subarray(0, archive.length - 1024)]),
        join(work.path, "out3"),
      ),
    Error,
    /truncated/,
  );
});

Deno.test("unpackTar replaces existing files, merges into existing directories, honours preserveMode", async () => {
  await using work = await tempDir();
  const out = join(work.path, "out");
  await Deno.mkdir(join(out, "sub"), { recursive: true });
  await Deno.writeTextFile(join(out, "sub/keep"), "kept");
  await Deno.writeTextFile(join(out, "sub/replace"), "old");
  const body = encoder.encode("new");
  const entries: [TarEntryHeader, Uint8Array?][] = [
    [{ path: "sub", type: "directory", size: 0, mode: 0o750, mtime: 1_000_000 }],
    [{ path: "sub/replace", type: "file", size: 3, mode: 0o4755, mtime: 2_000_000 }, body],
    [{ path: "ro", type: "directory", size: 0, mode: 0o555, mtime: 0 }],
    [{ path: "ro/inside", type: "file", size: 3, mode: 0o444, mtime: 0 }, body],
  ];
  const result = await unpackTar(archiveOf(entries), out);
  assertEquals(result, { files: 2, directories: 2, symlinks: 0, bytes: 6 });
  assertEquals(await Deno.readTextFile(join(out, "sub/keep")), "kept");
  assertEquals(await Deno.readTextFile(join(out, "sub/replace")), "new");
  const replaced = await Deno.stat(join(out, "sub/replace"));
  assertEquals(replaced.mode! & 0o7777, 0o755, "setuid is dropped");
  assertEquals(replaced.mtime!.getTime(), 2_000_000_000);
  const sub = await Deno.stat(join(out, "sub"));
  assertEquals(sub.mode! & 0o777, 0o750);
  assertEquals(sub.mtime!.getTime(), 1_000_000_000);
  assertEquals(
    (await Deno.stat(join(out, "ro"))).mode! & 0o777,
    0o555,
    "read-only dir still got its file",
  );
  assertEquals(await Deno.readTextFile(join(out, "ro/inside")), "new");
  await Deno.chmod(join(out, "ro"), 0o755);

  const plain = join(work.path, "plain");
  await unpackTar(archiveOf(entries), plain, { preserveMode: false, preserveMtime: false });
  const umask = Deno.umask();
  assertStrictEquals((await Deno.stat(join(plain, "sub/replace"))).mode! & 0o777, 0o666 & ~umask);
  assertStrictEquals((await Deno.stat(join(plain, "ro"))).mode! & 0o777, 0o777 & ~umask);
  assertNotStrictEquals(
    (await Deno.stat(join(plain, "sub/replace"))).mtime!.getTime(),
    2_000_000_000,
  );
});

Deno.test("unpackTar masks every mode to 0o777: no setuid, setgid or sticky bit from an archive", async () => {
  // The controller's downloadDir unpacks what a daemon sends with this function: a hostile daemon must not be
  // able to plant a setuid program or a setgid directory on the controller's machine.
  await using work = await tempDir();
  const out = join(work.path, "out");
  const body = encoder.encode("#!/bin/sh\n");
  const entries: [TarEntryHeader, Uint8Array?][] = [
    [{ path: "shared", type: "directory", size: 0, mode: 0o3775, mtime: 0 }],
    [{ path: "shared/suid", type: "file", size: body.length, mode: 0o4755, mtime: 0 }, body],
    [{ path: "shared/sgid", type: "file", size: body.length, mode: 0o2755, mtime: 0 }, body],
    [{ path: "shared/sticky", type: "file", size: body.length, mode: 0o1644, mtime: 0 }, body],
    [{ path: "shared/all", type: "file", size: body.length, mode: 0o7777, mtime: 0 }, body],
    [{ path: "tmp", type: "directory", size: 0, mode: 0o1777, mtime: 0 }],
  ];
  await unpackTar(archiveOf(entries), out);
  const modes: Record<string, string> = {};
  for (
    const path of ["shared", "shared/suid", "shared/sgid", "shared/sticky", "shared/all", "tmp"]
  ) {
    modes[path] = ((await Deno.stat(join(out, path))).mode! & 0o7777).toString(8);
  }
  assertEquals(modes, {
    shared: "775",
    "shared/suid": "755",
    "shared/sgid": "755",
    "shared/sticky": "644",
    "shared/all": "777",
    tmp: "777",
  });
});

Deno.test("packDirectory follows symlinks when asked, and detects loops", async () => {
  await using src = await tempDir();
  await using work = await tempDir();
  await Deno.mkdir(join(src.path, "real"));
  await Deno.writeTextFile(join(src.path, "real/file"), "content");
  await Deno.symlink("real", join(src.path, "alias"));
  await Deno.symlink("missing", join(src.path, "dangling"));
  const out = join(work.path, "out");
  const result = await unpackTar(packDirectory(src.path, { followSymlinks: true }), out);
  assertEquals(result, { files: 2, directories: 2, symlinks: 1, bytes: 14 });
  assertEquals((await Deno.lstat(join(out, "alias"))).isDirectory, true);
  assertEquals(await Deno.readTextFile(join(out, "alias/file")), "content");
  assertEquals(await Deno.readLink(join(out, "dangling")), "missing");

  await Deno.symlink("..", join(src.path, "real/loop"));
  const loop = await assertRejects(
    () => new Response(packDirectory(src.path, { followSymlinks: true })).arrayBuffer(),
    TarPackError,
    /loops/,
  );
  assertEquals(loop.code, "TAR_PACK");
});

Deno.test("packDirectory fails loudly on a name that is not valid UTF-8", async () => {
  await using src = await tempDir();
  const made = await new Deno.Command("sh", {
    args: ["-c", 'printf data > "$1/$(printf "bad\\377name")"', "sh", src.path],
  }).output();
  assertEquals(made.code, 0);
  await Deno.writeTextFile(join(src.path, "good"), "ok");
  await assertRejects(
    () => new Response(packDirectory(src.path)).arrayBuffer(),
    TarPackError,
    /not valid UTF-8/,
  );
});

Deno.test("packDirectory stops and closes its files when the consumer cancels or the signal aborts", async () => {
  await using src = await tempDir();
  await Deno.writeFile(join(src.path, "big"), random(4 * 1024 * 1024));
  await Deno.writeFile(join(src.path, "other"), random(10));

  const stream = packDirectory(src.path);
  const reader = stream.getReader();
  await reader.read();
  await reader.read(); // the file is open and being read now
  await reader.cancel(new Error("no longer needed"));

  const controller = new AbortController();
  const aborted = packDirectory(src.path, { signal: controller.signal });
  const abortedReader = aborted.getReader();
  await abortedReader.read();
  controller.abort(new Error("stop"));
  await assertRejects(
    () =>
      (async () => {
        for (;;) if ((await abortedReader.read()).done) break;
      })(),
    Error,
    /stop/,
  );
  // The test sanitizers fail this test if a file handle or pending op was left behind.
});

Deno.test("packDirectory and unpackTar validate their arguments", async () => {
  assertThrows(() => packDirectory(""), TypeError);
  assertThrows(
    () => packDirectory("/tmp", { followSymlinks: "yes" as unknown as boolean }),
    TypeError,
  );
  await assertRejects(() => unpackTar(new ReadableStream(), ""), TypeError);
  await assertRejects(
    () => unpackTar("nope" as unknown as ReadableStream<Uint8Array>, "/tmp/x"),
    TypeError,
  );
  await assertRejects(
    () => unpackTar(new ReadableStream(), "/tmp/x", { preserveMode: 1 as unknown as boolean }),
    Error,
    /preserveMode/,
  );
});

Deno.test("packDirectory errors when the directory does not exist or is a file", async () => {
  await using work = await tempDir();
  await assertRejects(
    () => new Response(packDirectory(join(work.path, "missing"))).arrayBuffer(),
    Deno.errors.NotFound,
  );
  await Deno.writeTextFile(join(work.path, "file"), "x");
  await assertRejects(
    () => new Response(packDirectory(join(work.path, "file"))).arrayBuffer(),
    Error,
    /not a directory/,
  );
});

Deno.test("readTar sees packDirectory entries in sorted order, directories before their contents", async () => {
  await using src = await tempDir();
  await Deno.mkdir(join(src.path, "b/c"), { recursive: true });
  await Deno.writeTextFile(join(src.path, "b/c/z"), "");
  await Deno.writeTextFile(join(src.path, "a"), "");
  const order: string[] = [];
  for await (const entry of readTar(packDirectory(src.path))) {
    order.push(`${entry.header.type[0]} ${entry.header.path}`);
    await entry.body.cancel();
  }
  assertEquals(order, ["f a", "d b", "d b/c", "f b/c/z"]);
});
