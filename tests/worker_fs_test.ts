// The worker handle's fs: Deno's names, shapes and error classes, compared with local Deno calls on the same files
// (the daemon runs on this machine), with the real daemon.
import { assert, assertEquals, assertInstanceOf, assertRejects, assertThrows } from "./_assert.ts";
import {
  FileError,
  PolicyError,
  RemoteAlreadyExistsError,
  RemoteIsADirectoryError,
  RemoteNotADirectoryError,
  RemoteNotFoundError,
  type RemoteWorker,
} from "../mod.ts";
import { startWorker } from "./_daemon.ts";

const encoder = new TextEncoder();

function comparable(info: Deno.FileInfo) {
  return {
    isFile: info.isFile,
    isDirectory: info.isDirectory,
    isSymlink: info.isSymlink,
    size: info.size,
    mode: info.mode,
    mtime: info.mtime?.getTime(),
    uid: info.uid,
    gid: info.gid,
  };
}

async function withWorker(
  id: string,
  fn: (w: RemoteWorker, dir: string, t: Deno.TestContext) => Promise<void>,
  t: Deno.TestContext,
): Promise<void> {
  await using h = await startWorker(id);
  const dir = await Deno.realPath(await Deno.makeTempDir());
  try {
    await fn(h.server.worker(id), dir, t);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("fs: read/write round trips, append, create and createNew semantics", async (t) => {
  await withWorker("wf1", async (w, dir, t) => {
    await t.step("text and bytes round trip, readable locally", async () => {
      await w.fs.writeTextFile(`${dir}/a.txt`, "héllo\n");
      assertEquals(await w.fs.readTextFile(`${dir}/a.txt`), "héllo\n");
      assertEquals(await Deno.readTextFile(`${dir}/a.txt`), "héllo\n");
      const bytes = new Uint8Array(200_000);
      for (let at = 0; at < bytes.length; at += 65_536) {
        crypto.getRandomValues(bytes.subarray(at, at + 65_536));
      }
      await w.fs.writeFile(`${dir}/b.bin`, bytes);
      assertEquals(await w.fs.readFile(`${dir}/b.bin`), bytes);
      assertEquals(await Deno.readFile(`${dir}/b.bin`), bytes);
      await w.fs.writeFile(`${dir}/empty`, new Uint8Array());
      assertEquals((await w.fs.readFile(`${dir}/empty`)).byteLength, 0);
      const stream = ReadableStream.from(["a", "b", "c"]);
      await w.fs.writeTextFile(`${dir}/streamed.txt`, stream);
      assertEquals(await Deno.readTextFile(`${dir}/streamed.txt`), "abc");
    });

    await t.step("append adds to the end; concurrent appends all land", async () => {
      await w.fs.writeTextFile(`${dir}/log`, "1\n");
      await w.fs.writeTextFile(`${dir}/log`, "2\n", { append: true });
      assertEquals(await Deno.readTextFile(`${dir}/log`), "1\n2\n");
      await Promise.all(
        Array.from(
          { length: 8 },
          (_, i) => w.fs.writeTextFile(`${dir}/log`, `line ${i}\n`, { append: true }),
        ),
      );
      const lines = (await Deno.readTextFile(`${dir}/log`)).trim().split("\n");
      assertEquals(lines.length, 10);
      for (let i = 0; i < 8; i++) assert(lines.includes(`line ${i}`), `line ${i} is missing`);
      // append creates by default, as Deno does
      await w.fs.writeTextFile(`${dir}/new-log`, "x", { append: true });
      assertEquals(await Deno.readTextFile(`${dir}/new-log`), "x");
    });

    await t.step("create: false refuses a missing file, like Deno", async () => {
      const local = await assertRejects(
        () => Deno.writeTextFile(`${dir}/nope-local`, "x", { create: false }),
      );
      const remote = await assertRejects(
        () => w.fs.writeTextFile(`${dir}/nope`, "x", { create: false }),
        Deno.errors.NotFound,
      );
      assertInstanceOf(local, Deno.errors.NotFound);
      assertInstanceOf(remote, RemoteNotFoundError);
      assertEquals(await Deno.lstat(`${dir}/nope`).catch(() => null), null);
      await assertRejects(
        () => w.fs.writeTextFile(`${dir}/nope`, "x", { create: false, append: true }),
        Deno.errors.NotFound,
      );
      assertEquals(await Deno.lstat(`${dir}/nope`).catch(() => null), null);
      await w.fs.writeTextFile(`${dir}/a.txt`, "replaced", { create: false });
      assertEquals(await Deno.readTextFile(`${dir}/a.txt`), "replaced");
    });

    await t.step("createNew: AlreadyExists on an existing file, untouched", async () => {
      const error = await assertRejects(
        () => w.fs.writeTextFile(`${dir}/a.txt`, "clobbered", { createNew: true }),
        Deno.errors.AlreadyExists,
      );
      assertInstanceOf(error, RemoteAlreadyExistsError);
      assertEquals(error.code, "EEXIST");
      assertEquals(error.path, `${dir}/a.txt`);
      assertEquals(await Deno.readTextFile(`${dir}/a.txt`), "replaced");
      await w.fs.writeTextFile(`${dir}/fresh`, "new", { createNew: true, mode: 0o600 });
      assertEquals(await Deno.readTextFile(`${dir}/fresh`), "new");
      assertEquals((await Deno.stat(`${dir}/fresh`)).mode! & 0o777, 0o600);
    });

    await t.step("mode is applied; stat matches a local stat", async () => {
      await w.fs.writeTextFile(`${dir}/m`, "x", { mode: 0o640 });
      assertEquals(
        comparable(await w.fs.stat(`${dir}/m`)),
        comparable(await Deno.stat(`${dir}/m`)),
      );
      await w.fs.writeTextFile(`${dir}/m`, "yy", { append: true, mode: 0o600 });
      assertEquals((await w.fs.stat(`${dir}/m`)).mode, (await Deno.stat(`${dir}/m`)).mode);
      assertEquals((await Deno.stat(`${dir}/m`)).mode! & 0o777, 0o600);
    });

    await t.step("a missing parent and a directory target are Deno's errors", async () => {
      await assertRejects(
        () => w.fs.writeTextFile(`${dir}/no/such/file`, "x"),
        Deno.errors.NotFound,
      );
      await assertRejects(
        () => w.fs.writeTextFile(`${dir}/no/such/file`, "x", { append: true }),
        Deno.errors.NotFound,
      );
      await Deno.mkdir(`${dir}/d`);
      await assertRejects(
        () => w.fs.writeTextFile(`${dir}/d`, "x", { append: true }),
        Deno.errors.IsADirectory,
      );
      const missing = await assertRejects(
        () => w.fs.readFile(`${dir}/missing`),
        Deno.errors.NotFound,
      );
      assertInstanceOf(missing, RemoteNotFoundError);
      assertEquals(missing.code, "ENOENT");
      assertEquals(missing.path, `${dir}/missing`);
      assertEquals(missing.daemonId, "wf1");
      assertInstanceOf(missing.cause, FileError);
      const localDirError = await assertRejects(() => Deno.readFile(dir), Error);
      const remoteDirError = await assertRejects(() => w.fs.readFile(dir), Error);
      assertEquals(remoteDirError.name, "RemoteIsADirectoryError");
      assertInstanceOf(localDirError, Deno.errors.IsADirectory);
      assertInstanceOf(remoteDirError, Deno.errors.IsADirectory);
    });
  }, t);
});

Deno.test("fs: directories, stat/lstat, rename, copy, realPath, errors as local ones", async (t) => {
  await withWorker("wf2", async (w, dir, t) => {
    await Deno.mkdir(`${dir}/tree/sub`, { recursive: true });
    await Deno.writeTextFile(`${dir}/tree/file.txt`, "12345");
    await Deno.symlink("file.txt", `${dir}/tree/link`);
    await Deno.symlink("missing-target", `${dir}/tree/dangling`);

    await t.step("readDir yields DirEntry shapes like Deno.readDir", async () => {
      const remote = await Array.fromAsync(w.fs.readDir(`${dir}/tree`));
      const local = await Array.fromAsync(Deno.readDir(`${dir}/tree`));
      local.sort((a, b) => a.name < b.name ? -1 : 1);
      assertEquals(remote, local.map((e) => ({ ...e })));
    });

    await t.step("stat follows symlinks, lstat does not, as locally", async () => {
      for (const name of ["file.txt", "link", "sub"]) {
        const path = `${dir}/tree/${name}`;
        assertEquals(comparable(await w.fs.stat(path)), comparable(await Deno.stat(path)), name);
        assertEquals(
          comparable(await w.fs.lstat(path)).isSymlink,
          (await Deno.lstat(path)).isSymlink,
        );
      }
      const link = await w.fs.lstat(`${dir}/tree/link`);
      const local = await Deno.lstat(`${dir}/tree/link`);
      assertEquals(
        { isSymlink: link.isSymlink, size: link.size, mode: link.mode },
        { isSymlink: local.isSymlink, size: local.size, mode: local.mode },
      );
      assertEquals(
        comparable(await w.fs.lstat(`${dir}/tree/file.txt`)),
        comparable(await Deno.lstat(`${dir}/tree/file.txt`)),
      );
      assertEquals((await w.fs.lstat(`${dir}/tree/dangling`)).isSymlink, true);
      await assertRejects(() => w.fs.stat(`${dir}/tree/dangling`), Deno.errors.NotFound);
      await assertRejects(() => w.fs.lstat(`${dir}/tree/none`), Deno.errors.NotFound);
      await assertRejects(() => w.fs.stat(`${dir}/tree/file.txt/x`), Deno.errors.NotADirectory)
        .then((e) => assertInstanceOf(e, RemoteNotADirectoryError));
    });

    await t.step("mkdir and remove: options and errors like Deno's", async () => {
      await w.fs.mkdir(`${dir}/m/a/b`, { recursive: true, mode: 0o750 });
      assertEquals((await Deno.stat(`${dir}/m/a/b`)).isDirectory, true);
      await w.fs.mkdir(`${dir}/m/a/b`, { recursive: true });
      await assertRejects(() => w.fs.mkdir(`${dir}/m/a/b`), Deno.errors.AlreadyExists);
      await assertRejects(() => Deno.mkdir(`${dir}/m/a/b`), Deno.errors.AlreadyExists);
      await assertRejects(() => w.fs.mkdir(`${dir}/x/y`), Deno.errors.NotFound);
      await assertRejects(() => w.fs.remove(`${dir}/nothing`), Deno.errors.NotFound);
      const notEmpty = await assertRejects(() => w.fs.remove(`${dir}/m`));
      assertEquals((notEmpty as { code?: string }).code, "ENOTEMPTY");
      await w.fs.remove(`${dir}/m`, { recursive: true });
      assertEquals(await Deno.lstat(`${dir}/m`).catch(() => null), null);
    });

    await t.step("rename, copyFile (contents and mode), realPath", async () => {
      await Deno.writeTextFile(`${dir}/src`, "copy me");
      await Deno.chmod(`${dir}/src`, 0o751);
      await w.fs.copyFile(`${dir}/src`, `${dir}/dst`);
      assertEquals(await Deno.readTextFile(`${dir}/dst`), "copy me");
      assertEquals((await Deno.stat(`${dir}/dst`)).mode, (await Deno.stat(`${dir}/src`)).mode);
      await assertRejects(() => w.fs.copyFile(`${dir}/none`, `${dir}/x`), Deno.errors.NotFound);
      await assertRejects(() => w.fs.copyFile(`${dir}/tree`, `${dir}/x`), Deno.errors.IsADirectory)
        .then((e) => assertInstanceOf(e, RemoteIsADirectoryError));
      await w.fs.rename(`${dir}/dst`, `${dir}/moved`);
      assertEquals(await Deno.readTextFile(`${dir}/moved`), "copy me");
      await assertRejects(() => w.fs.rename(`${dir}/dst`, `${dir}/z`), Deno.errors.NotFound);
      for (const path of [`${dir}/tree/link`, `${dir}/tree/sub/../file.txt`, dir]) {
        assertEquals(await w.fs.realPath(path), await Deno.realPath(path));
      }
      await assertRejects(() => w.fs.realPath(`${dir}/nothing`), Deno.errors.NotFound);
    });

    await t.step("bad arguments are TypeErrors (rejections, as Deno's)", async () => {
      await assertRejects(() => w.fs.readFile(""), TypeError);
      await assertRejects(() => w.fs.writeFile("/x", "text" as unknown as Uint8Array), TypeError);
      await assertRejects(() => w.fs.mkdir("/x", { mode: 0o10000 }), RangeError);
      await assertRejects(
        () => w.fs.remove("/x", { recursive: "yes" as unknown as boolean }),
        TypeError,
      );
      assertThrows(() => w.fs.watchFs([]), TypeError);
    });
  }, t);
});

Deno.test("fs: streaming open/create and watchFs", async (t) => {
  await withWorker("wf3", async (w, dir, t) => {
    await t.step("create() streams a large file in; open() streams it out", async () => {
      const chunk = crypto.getRandomValues(new Uint8Array(64 * 1024));
      const chunks = 80; // 5 MiB
      {
        await using file = await w.fs.create(`${dir}/big`);
        const source = ReadableStream.from((function* () {
          for (let i = 0; i < chunks; i++) yield chunk;
        })());
        await source.pipeTo(file.writable);
        assertThrows(() => file.readable, TypeError);
      }
      assertEquals((await Deno.stat(`${dir}/big`)).size, chunk.byteLength * chunks);
      await using input = await w.fs.open(`${dir}/big`);
      let size = 0;
      let same = true;
      for await (const part of input.readable) {
        for (let i = 0; i < part.byteLength; i++) {
          if (part[i] !== chunk[(size + i) % chunk.byteLength]) same = false;
        }
        size += part.byteLength;
      }
      assertEquals(size, chunk.byteLength * chunks);
      assert(same, "the bytes read back differ");
    });

    await t.step("open() of a missing file fails at once; open modes are checked", async () => {
      await assertRejects(() => w.fs.open(`${dir}/none`), Deno.errors.NotFound);
      await assertRejects(() => w.fs.open(`${dir}/big`, { write: true }), TypeError);
      await assertRejects(() => w.fs.open(`${dir}/big`, { read: true, append: true }), TypeError);
      await assertRejects(
        () => w.fs.open(`${dir}/none`, { write: true, truncate: true }),
        Deno.errors.NotFound,
      );
    });

    await t.step("open() to append streams to the end", async () => {
      await Deno.writeTextFile(`${dir}/log`, "a");
      const file = await w.fs.open(`${dir}/log`, { append: true });
      const writer = file.writable.getWriter();
      await writer.write(encoder.encode("b"));
      await writer.write(encoder.encode("c"));
      await writer.close();
      assertEquals(await Deno.readTextFile(`${dir}/log`), "abc");
    });

    await t.step("an aborted create leaves the target untouched", async () => {
      await Deno.writeTextFile(`${dir}/keep`, "original");
      const file = await w.fs.create(`${dir}/keep`);
      const writer = file.writable.getWriter();
      await writer.write(encoder.encode("partial"));
      await writer.abort(new Error("stop"));
      assertEquals(await Deno.readTextFile(`${dir}/keep`), "original");
    });

    await t.step("watchFs yields Deno.FsEvent shapes", async () => {
      await Deno.mkdir(`${dir}/watched`);
      // No `using`: leaving the loop closes the watcher, as with Deno.watchFs.
      const watcher = w.fs.watchFs(`${dir}/watched`);
      // The watch request is in flight when watchFs returns: write until an event shows it is live.
      let n = 0;
      const writer = setInterval(() => {
        Deno.writeTextFileSync(`${dir}/watched/f${n++}`, "x");
      }, 50);
      try {
        for await (const event of watcher) {
          assert(
            ["any", "access", "create", "modify", "rename", "remove", "other"].includes(event.kind),
          );
          assert(event.paths.every((p) => p.startsWith(`${dir}/watched/`)), String(event.paths));
          if (event.kind === "create") break;
        }
      } finally {
        clearInterval(writer);
      }
      // Closed: iterating again ends at once instead of waiting for events.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const again = await Promise.race([
        Array.fromAsync(watcher).then((events) => events.length),
        new Promise((resolve) => timer = setTimeout(() => resolve("still open"), 5_000)),
      ]);
      clearTimeout(timer);
      assertEquals(again, 0);
    });

    await t.step("watchFs of a missing path throws NotFound from the iteration", async () => {
      await using watcher = w.fs.watchFs(`${dir}/absent`);
      await assertRejects(async () => {
        for await (const _ of watcher) { /* nothing */ }
      }, Deno.errors.NotFound);
    });
  }, t);
});

Deno.test("fs: under a daemon --root, refusals stay PolicyErrors and errors keep their classes", async () => {
  const root = await Deno.realPath(await Deno.makeTempDir());
  try {
    await using h = await startWorker("wf4", ["--root", root]);
    const w = h.server.worker("wf4");
    await w.fs.writeTextFile(`${root}/inside.txt`, "in");
    assertEquals(await w.fs.readTextFile(`${root}/inside.txt`), "in");
    assertEquals((await w.fs.lstat(`${root}/inside.txt`)).isFile, true);
    const outside = await assertRejects(() => w.fs.readFile("/etc/hostname"));
    assertInstanceOf(outside, PolicyError);
    assert(!(outside instanceof Deno.errors.PermissionDenied));
    await assertRejects(() => w.fs.stat(`${root}/missing`), Deno.errors.NotFound);
    await assertRejects(() => w.fs.mkdir(root), Deno.errors.AlreadyExists);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
