import { assertEquals, assertRejects, assertStrictEquals } from "../tests/_assert.ts";
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

/** Asserts that `promise` rejects with the policy's refusal under its root rule. */
async function assertRootError(promise: Promise<unknown>): Promise<void> {
  const error = await assertRejects(() => promise, PolicyError);
  assertEquals(error.rule, "root");
  assertEquals(error.code, "POLICY");
}

Deno.test("confinePath accepts paths inside the root", async () => {
  await withRoot(async (root) => {
    await Deno.mkdir(`${root}/sub`);
    await Deno.writeTextFile(`${root}/sub/file.txt`, "x");
    assertEquals(await confinePath(root, "sub/file.txt"), `${root}/sub/file.txt`);
    assertEquals(await confinePath(root, `${root}/sub/file.txt`), `${root}/sub/file.txt`);
    assertEquals(await confinePath(root, "./sub/../sub/file.txt"), `${root}/sub/file.txt`);
    assertStrictEquals(await confinePath(root, "."), root);
    assertStrictEquals(await confinePath(root, root), root);
    assertStrictEquals(await confinePath(root, "/" + root.slice(1) + "/"), root);
  });
});

Deno.test("confinePath accepts a target that does not exist yet", async () => {
  await withRoot(async (root) => {
    assertEquals(await confinePath(root, "upload.bin"), `${root}/upload.bin`);
    assertEquals(await confinePath(root, "new/dir/upload.bin"), `${root}/new/dir/upload.bin`);
    await Deno.mkdir(`${root}/real`);
    await Deno.symlink(`${root}/real`, `${root}/inner`);
    // A symlink that stays inside the root is fine; the result is its real path.
    assertEquals(await confinePath(root, "inner/new.txt"), `${root}/real/new.txt`);
  });
});

Deno.test("confinePath refuses .. escapes and absolute paths outside the root", async () => {
  await withRoot(async (root) => {
    await assertRootError(confinePath(root, "../x"));
    await assertRootError(confinePath(root, "a/../../x"));
    await assertRootError(confinePath(root, ".."));
    await assertRootError(confinePath(root, "/etc/passwd"));
    await assertRootError(confinePath(root, `${root}-sibling/file`));
    await assertRootError(confinePath(root, "/"));
  });
});

Deno.test("confinePath refuses symlink escapes", async () => {
  await withRoot(async (root) => {
    await Deno.symlink("/etc", `${root}/link`);
    await assertRootError(confinePath(root, "link/passwd"));
    await assertRootError(confinePath(root, "link"));
    await assertRootError(confinePath(root, "link/does-not-exist"));
    await Deno.symlink("/etc/passwd", `${root}/file_link`);
    await assertRootError(confinePath(root, "file_link"));
    // A dangling link would let a write create a file wherever it points.
    await Deno.symlink("/tmp/sandd-nonexistent-target-dir/x", `${root}/dangling`);
    await assertRootError(confinePath(root, "dangling"));
    await assertRootError(confinePath(root, "dangling/y"));
  });
});

Deno.test("confinePath works when the root is reached through a symlink", async () => {
  await withRoot(async (base) => {
    await Deno.mkdir(`${base}/real`);
    await Deno.symlink(`${base}/real`, `${base}/alias`);
    assertEquals(await confinePath(`${base}/alias`, "f"), `${base}/real/f`);
    assertEquals(await confinePath(`${base}/alias`, `${base}/alias/f`), `${base}/real/f`);
    assertEquals(await confinePath(`${base}/alias`, `${base}/real/f`), `${base}/real/f`);
    await assertRootError(confinePath(`${base}/alias`, `${base}/other`));
  });
});

Deno.test("confinePath refuses a missing root and bad arguments", async () => {
  await assertRootError(confinePath("/nonexistent/sandd-root", "x"));
  await assertRejects(() => confinePath("", "x"), TypeError);
  await assertRejects(() => confinePath("/tmp", ""), TypeError);
  await assertRejects(() => confinePath("/tmp", "a\0b"), TypeError);
});
