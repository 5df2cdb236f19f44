// The file service's path confinement (FilePaths), with real directories and symlinks. These carry over the
// assertions of the earlier path-based confinement (`confinePath`), with one deliberate change: beneath a root no
// symlink is followed at all, not even one that stays inside (a swap could otherwise redirect a later step).
import { assert, assertEquals, assertThrows } from "../tests/_assert.ts";
import { acquireFs, closeFd, O, releaseFs } from "./ffi/fs.ts";
import { fileError, FilePaths } from "./_file_paths.ts";
import { Policy, PolicyError } from "./policy/mod.ts";
import { DaemonRequestError } from "./process_table.ts";

async function withRoot(fn: (root: string) => Promise<void> | void): Promise<void> {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "sandd-paths-" }));
  acquireFs();
  try {
    await fn(root);
  } finally {
    releaseFs();
    await Deno.remove(root, { recursive: true });
  }
}

function parts(paths: FilePaths, requested: string): string[] {
  return paths.resolve(requested).parts;
}

function assertRootRefusal(fn: () => unknown): void {
  const error = assertThrows(fn, PolicyError);
  assertEquals(error.rule, "root");
}

/** Open a path the way a file operation does and return the wire error it would answer with. */
function openRefusal(
  paths: FilePaths,
  requested: string,
  flags: number = O.RDONLY,
): DaemonRequestError {
  try {
    closeFd(paths.open(paths.resolve(requested), flags));
  } catch (error) {
    return fileError(error, requested, "open", paths.confined);
  }
  throw new Error(`Opening '${requested}' was not refused`);
}

Deno.test("FilePaths accepts paths inside the root", async () => {
  await withRoot(async (root) => {
    await Deno.mkdir(`${root}/sub`);
    await Deno.writeTextFile(`${root}/sub/file.txt`, "x");
    const paths = new FilePaths(root, undefined);
    assertEquals(paths.base, root);
    assertEquals(parts(paths, "sub/file.txt"), ["sub", "file.txt"]);
    assertEquals(parts(paths, `${root}/sub/file.txt`), ["sub", "file.txt"]);
    assertEquals(parts(paths, "./sub/../sub/file.txt"), ["sub", "file.txt"]);
    assertEquals(parts(paths, "."), []);
    assertEquals(parts(paths, root), []);
    assertEquals(parts(paths, "/" + root.slice(1) + "/"), []);
    closeFd(paths.open(paths.resolve("sub/file.txt"), O.RDONLY));
  });
});

Deno.test("FilePaths accepts a target that does not exist yet; a symlink inside is not followed", async () => {
  await withRoot(async (root) => {
    const paths = new FilePaths(root, undefined);
    assertEquals(parts(paths, "upload.bin"), ["upload.bin"]);
    assertEquals(parts(paths, "new/dir/upload.bin"), ["new", "dir", "upload.bin"]);
    await Deno.mkdir(`${root}/real`);
    await Deno.symlink(`${root}/real`, `${root}/inner`);
    const entry = paths.entry(paths.resolve("real/new.txt"));
    closeFd(entry.dirFd);
    assertEquals(entry.name, "new.txt");
    const refusal = openRefusal(paths, "inner", O.RDONLY | O.DIRECTORY);
    assertEquals(refusal.code, "POLICY");
  });
});

Deno.test("FilePaths refuses .. escapes and absolute paths outside the root", async () => {
  await withRoot((root) => {
    const paths = new FilePaths(root, undefined);
    assertRootRefusal(() => paths.resolve("../x"));
    assertRootRefusal(() => paths.resolve("a/../../x"));
    assertRootRefusal(() => paths.resolve(".."));
    assertRootRefusal(() => paths.resolve("/etc/passwd"));
    assertRootRefusal(() => paths.resolve(`${root}-sibling/file`));
    assertRootRefusal(() => paths.resolve("/"));
  });
});

Deno.test("FilePaths refuses symlink escapes when the path is opened", async () => {
  await withRoot(async (root) => {
    const paths = new FilePaths(root, undefined);
    await Deno.symlink("/etc", `${root}/link`);
    for (const path of ["link/passwd", "link", "link/does-not-exist"]) {
      assertEquals(openRefusal(paths, path).code, "POLICY", path);
    }
    await Deno.symlink("/etc/passwd", `${root}/file_link`);
    assertEquals(openRefusal(paths, "file_link").code, "POLICY");
    // A dangling link would let a write create a file wherever it points.
    await Deno.symlink("/tmp/sandd-nonexistent-target-dir/x", `${root}/dangling`);
    assertEquals(openRefusal(paths, "dangling", O.WRONLY | O.CREAT).code, "POLICY");
    assertEquals(openRefusal(paths, "dangling/y", O.WRONLY | O.CREAT).code, "POLICY");
  });
});

Deno.test("FilePaths works when the root is reached through a symlink", async () => {
  await withRoot(async (base) => {
    await Deno.mkdir(`${base}/real`);
    await Deno.symlink(`${base}/real`, `${base}/alias`);
    const paths = new FilePaths(`${base}/alias`, undefined);
    assertEquals(paths.base, `${base}/real`);
    assertEquals(parts(paths, "f"), ["f"]);
    assertEquals(parts(paths, `${base}/alias/f`), ["f"]);
    assertEquals(parts(paths, `${base}/real/f`), ["f"]);
    assertRootRefusal(() => paths.resolve(`${base}/other`));
  });
});

Deno.test("FilePaths refuses a missing root and bad arguments", async () => {
  await withRoot((root) => {
    const missing = new FilePaths(`${root}/nonexistent-root`, undefined);
    const refusal = openRefusal(missing, "x");
    assert(refusal.code === "ENOENT", `got ${refusal.code}`);
    const paths = new FilePaths(root, undefined);
    for (const bad of ["", "a\0b"]) {
      const error = assertThrows(() => paths.resolve(bad), DaemonRequestError);
      assertEquals(error.code, "EINVAL");
    }
  });
});

Deno.test("FilePaths takes the policy's root, and refuses when noFiles is set", async () => {
  await withRoot((root) => {
    const confined = new FilePaths(undefined, new Policy({ root }));
    assertEquals(parts(confined, "a/b"), ["a", "b"]);
    assertRootRefusal(() => confined.resolve("../x"));
    const none = new FilePaths(undefined, new Policy({ root, noFiles: true }));
    assertEquals(assertThrows(() => none.resolve("a"), PolicyError).rule, "noFiles");
    const unconfined = new FilePaths(undefined, new Policy());
    assertEquals(parts(unconfined, "x"), `${Deno.cwd()}/x`.slice(1).split("/"));
  });
});
