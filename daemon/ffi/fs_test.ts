import { assert, assertEquals, assertThrows } from "../../tests/_assert.ts";
import {
  acquireFs,
  AT,
  closeFd,
  fchmod,
  FsError,
  fstat,
  fstatAt,
  linkFd,
  mkdirAt,
  O,
  openAt,
  openBeneath,
  pread,
  readDirFd,
  readlinkAt,
  releaseFs,
  renameAt,
  symlinkAt,
  unlinkAt,
  usesOpenat2,
  walkBeneath,
  writeAll,
} from "./fs.ts";

async function withRoot(fn: (root: string, rootFd: number) => void | Promise<void>): Promise<void> {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "sandd-fs-" }));
  acquireFs();
  const rootFd = openAt(AT.FDCWD, root, O.RDONLY | O.DIRECTORY);
  try {
    await fn(root, rootFd);
  } finally {
    closeFd(rootFd);
    releaseFs();
    await Deno.remove(root, { recursive: true });
  }
}

function code(fn: () => unknown): string {
  return assertThrows(fn, FsError).code;
}

Deno.test("openBeneath opens inside the root and refuses symlinks, .. and absolute paths", async () => {
  await withRoot(async (root, rootFd) => {
    await Deno.mkdir(`${root}/d/e`, { recursive: true });
    await Deno.writeTextFile(`${root}/d/e/f`, "hello");
    await Deno.symlink("/etc", `${root}/etc-link`);
    await Deno.symlink("e", `${root}/d/inner-link`);
    const fd = openBeneath(rootFd, "d/e/f", O.RDONLY);
    const buffer = new Uint8Array(16);
    assertEquals(new TextDecoder().decode(buffer.subarray(0, pread(fd, buffer, 0))), "hello");
    assertEquals(fstat(fd).kind, "file");
    assertEquals(fstat(fd).size, 5);
    closeFd(fd);
    assert(usesOpenat2() !== null);
    for (const walk of [false, true]) {
      const open = (path: string, flags: number) =>
        walk
          ? walkBeneath(rootFd, path.split("/"), flags | O.NOFOLLOW, 0)
          : openBeneath(rootFd, path, flags);
      assertEquals(code(() => open("etc-link/passwd", O.RDONLY)), "ELOOP");
      assertEquals(code(() => open("d/inner-link/f", O.RDONLY)), "ELOOP");
      assertEquals(code(() => open("d/inner-link", O.RDONLY)), "ELOOP");
      assertEquals(code(() => open("d/e/f/x", O.RDONLY)), "ENOTDIR");
      assertEquals(code(() => open("d/missing", O.RDONLY)), "ENOENT");
    }
    assertEquals(code(() => openBeneath(rootFd, "../x", O.RDONLY)), "EXDEV");
    assertEquals(code(() => openBeneath(rootFd, "/etc/passwd", O.RDONLY)), "EXDEV");
    assertEquals(code(() => openBeneath(rootFd, "d//e", O.RDONLY)), "EXDEV");
    const self = openBeneath(rootFd, "", O.RDONLY | O.DIRECTORY);
    assertEquals(fstat(self).kind, "directory");
    closeFd(self);
  });
});

Deno.test("descriptor operations: create, chmod, rename, link, list, symlink, unlink", async () => {
  await withRoot(async (root, rootFd) => {
    mkdirAt(rootFd, "sub", 0o755);
    assertEquals(code(() => mkdirAt(rootFd, "sub", 0o755)), "EEXIST");
    const dir = openBeneath(rootFd, "sub", O.RDONLY | O.DIRECTORY);
    const tmp = openAt(dir, ".", O.TMPFILE | O.WRONLY, 0o600);
    writeAll(tmp, new TextEncoder().encode("data"));
    fchmod(tmp, 0o640);
    linkFd(tmp, dir, ".staged");
    renameAt(dir, ".staged", dir, "final");
    assertEquals(fstat(tmp).id, fstatAt(dir, "final").id);
    closeFd(tmp);
    assertEquals(await Deno.readTextFile(`${root}/sub/final`), "data");
    assertEquals((await Deno.stat(`${root}/sub/final`)).mode! & 0o777, 0o640);
    symlinkAt("final", dir, "link");
    assertEquals(new TextDecoder().decode(readlinkAt(dir, "link")), "final");
    assertEquals(fstatAt(dir, "link").kind, "symlink");
    const names = readDirFd(dir).map((e) => `${e.name}:${e.kind}`).sort();
    assertEquals(names, ["final:file", "link:symlink"]);
    unlinkAt(dir, "link");
    unlinkAt(dir, "final");
    closeFd(dir);
    unlinkAt(rootFd, "sub", true);
    assertEquals([...Deno.readDirSync(root)], []);
  });
});

Deno.test("a FIFO opened non-blocking is seen as a FIFO at once", async () => {
  await withRoot(async (root, rootFd) => {
    const made = await new Deno.Command("mkfifo", { args: [`${root}/p`] }).output();
    assert(made.success);
    const fd = openBeneath(rootFd, "p", O.RDONLY | O.NONBLOCK);
    assertEquals(fstat(fd).kind, "fifo");
    closeFd(fd);
  });
});
