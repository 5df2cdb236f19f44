import { equal, rejects } from "node:assert/strict";
import { confinePath } from "./_path_confine.ts";
import { PolicyError } from "./policy/mod.ts";

async function withRoot(fn: (root: string) => Promise<void>): Promise<void> {
  const root = await Deno.realPath(await Deno.makeTempDir());
  try {
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

function isRootError(error: unknown): boolean {
  return error instanceof PolicyError && error.rule === "root" && error.code === "POLICY";
}

Deno.test("confinePath accepts paths inside the root", async () => {
  await withRoot(async (root) => {
    await Deno.mkdir(`${root}/sub`);
    await Deno.writeTextFile(`${root}/sub/file.txt`, "x");
    equal(await confinePath(root, "sub/file.txt"), `${root}/sub/file.txt`);
    equal(await confinePath(root, `${root}/sub/file.txt`), `${root}/sub/file.txt`);
    equal(await confinePath(root, "./sub/../sub/file.txt"), `${root}/sub/file.txt`);
    equal(await confinePath(root, "."), root);
    equal(await confinePath(root, root), root);
    equal(await confinePath(root, "/" + root.slice(1) + "/"), root);
  });
});

Deno.test("confinePath accepts a target that does not exist yet", async () => {
  await withRoot(async (root) => {
    equal(await confinePath(root, "upload.bin"), `${root}/upload.bin`);
    equal(await confinePath(root, "new/dir/upload.bin"), `${root}/new/dir/upload.bin`);
    await Deno.mkdir(`${root}/real`);
    await Deno.symlink(`${root}/real`, `${root}/inner`);
    // A symlink that stays inside the root is fine; the result is its real path.
    equal(await confinePath(root, "inner/new.txt"), `${root}/real/new.txt`);
  });
});

Deno.test("confinePath refuses .. escapes and absolute paths outside the root", async () => {
  await withRoot(async (root) => {
    await rejects(confinePath(root, "../x"), isRootError);
    await rejects(confinePath(root, "a/../../x"), isRootError);
    await rejects(confinePath(root, ".."), isRootError);
    await rejects(confinePath(root, "/etc/passwd"), isRootError);
    await rejects(confinePath(root, `${root}-sibling/file`), isRootError);
    await rejects(confinePath(root, "/"), isRootError);
  });
});

Deno.test("confinePath refuses symlink escapes", async () => {
  await withRoot(async (root) => {
    await Deno.symlink("/etc", `${root}/link`);
    await rejects(confinePath(root, "link/passwd"), isRootError);
    await rejects(confinePath(root, "link"), isRootError);
    await rejects(confinePath(root, "link/does-not-exist"), isRootError);
    await Deno.symlink("/etc/passwd", `${root}/file_link`);
    await rejects(confinePath(root, "file_link"), isRootError);
    // A dangling link would let a write create a file wherever it points.
    await Deno.symlink("/tmp/sandd-nonexistent-target-dir/x", `${root}/dangling`);
    await rejects(confinePath(root, "dangling"), isRootError);
    await rejects(confinePath(root, "dangling/y"), isRootError);
  });
});

Deno.test("confinePath works when the root is reached through a symlink", async () => {
  await withRoot(async (base) => {
    await Deno.mkdir(`${base}/real`);
    await Deno.symlink(`${base}/real`, `${base}/alias`);
    equal(await confinePath(`${base}/alias`, "f"), `${base}/real/f`);
    equal(await confinePath(`${base}/alias`, `${base}/alias/f`), `${base}/real/f`);
    equal(await confinePath(`${base}/alias`, `${base}/real/f`), `${base}/real/f`);
    await rejects(confinePath(`${base}/alias`, `${base}/other`), isRootError);
  });
});

Deno.test("confinePath refuses a missing root and bad arguments", async () => {
  await rejects(confinePath("/nonexistent/sandd-root", "x"), isRootError);
  await rejects(confinePath("", "x"), TypeError);
  await rejects(confinePath("/tmp", ""), TypeError);
  await rejects(confinePath("/tmp", "a\0b"), TypeError);
});
