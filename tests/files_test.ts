// File transfer and the worker's file system end to end: a real controller, the real daemon as a child process, real
// files. Each test runs against both controllers (the embedded Server, and a Client over the control API) where it
// makes sense on both; then the Client's own: a download whose HTTP connection is cut resumes from the last byte
// received, an upload stream of the wrong size.
import { assert, assertEquals, assertGreater, assertRejects } from "./_assert.ts";
import {
  DaemonDisconnectedError,
  FileError,
  type FsEvent,
  PolicyError,
  Server,
  type TransferProgress,
  type UploadOptions,
} from "../mod.ts";
import { eventually, TestDaemon } from "./_daemon.ts";
import { LinkProxy } from "./_proxy.ts";
import { type ControllerKind, startFleet, testBoth } from "./_controllers.ts";
import { randomBytes as random, sha256 } from "./_bytes.ts";
import { createHash } from "node:crypto";
import { fileHandlers } from "../daemon/files.ts";
import { Link } from "../daemon/_link.ts";
import { DaemonRequestError } from "../daemon/process_table.ts";
import { DAEMON_PERMISSION_FLAGS } from "../daemon/permissions.ts";

const FRAME = 256 * 1024;

async function setup(
  kind: ControllerKind,
  ids: string[] = ["w1"],
  args: string[] = [],
  proxy = false,
) {
  const fleet = await startFleet(kind, ids, args, { server: { reconnectGraceMs: 200 }, proxy });
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "sandd-files-" }));
  return {
    c: fleet.controller,
    server: fleet.server,
    fleet,
    dir,
    async [Symbol.asyncDispose]() {
      await fleet[Symbol.asyncDispose]();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** A stream of `total` pseudo-random bytes in `chunk`-sized pieces, hashed as produced. */
function randomStream(total: number, chunk: number, hash: ReturnType<typeof createHash>) {
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= total) return controller.close();
      const piece = random(Math.min(chunk, total - sent));
      hash.update(piece);
      sent += piece.length;
      controller.enqueue(piece);
    },
  }, { highWaterMark: 0 });
}

function tempLeftovers(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.includes(".sandd-"));
}

testBoth("upload and download round-trip 0 bytes, 1 byte and frame boundaries", async (kind) => {
  await using t = await setup(kind);
  for (const size of [0, 1, FRAME - 1, FRAME, FRAME + 1, 1024 * 1024 + 1]) {
    const data = random(size);
    const path = `${t.dir}/f-${size}.bin`;
    const result = await t.c.upload("w1", path, data);
    assertEquals(result, { bytes: size, sha256: sha256(data) });
    assertEquals(sha256(await Deno.readFile(path)), sha256(data));
    const back = await t.c.download("w1", path);
    assertEquals(back.length, size);
    assertEquals(sha256(back), sha256(data));
    assertEquals((await t.c.fs("w1").stat(path)).size, size);
  }
  assertEquals(tempLeftovers(t.dir), []);
});

testBoth("100 MB of random bytes stream up and down with matching checksums", async (kind) => {
  await using t = await setup(kind);
  const total = 100 * 1000 * 1000;
  const sent = createHash("sha256");
  const path = `${t.dir}/big.bin`;
  const result = await t.c.upload("w1", path, randomStream(total, 999_983, sent), { size: total });
  const expected = sent.digest("hex");
  assertEquals(result, { bytes: total, sha256: expected });
  assertEquals((await Deno.stat(path)).size, total);
  const received = createHash("sha256");
  let length = 0;
  for await (const chunk of await t.c.downloadStream("w1", path)) {
    received.update(chunk);
    length += chunk.length;
  }
  assertEquals(length, total);
  assertEquals(received.digest("hex"), expected);
});

testBoth(
  "a digest given with an upload is what the bytes must have: else EINTEGRITY and the target stays",
  async (kind) => {
    await using t = await setup(kind);
    const path = `${t.dir}/given.bin`;
    const old = random(1000);
    await Deno.writeFile(path, old);
    const data = random(FRAME + 17);
    const stream = () => new Blob([data as Uint8Array<ArrayBuffer>]).stream();
    // The right digest, ahead or at the end: stored.
    assertEquals(await t.c.upload("w1", path, data, { sha256: sha256(data) }), {
      bytes: data.length,
      sha256: sha256(data),
    });
    assertEquals(
      (await t.c.upload("w1", path, stream(), { sha256: () => sha256(data) })).sha256,
      sha256(data),
    );
    await Deno.writeFile(path, old);
    // Another digest: refused by the daemon, for bytes and streams, ahead and at the end.
    const wrong = sha256(old);
    for (
      const [data_, sha] of [[data, wrong], [stream(), wrong], [stream(), () => wrong]] as const
    ) {
      const error = await assertRejects(
        () => t.c.upload("w1", path, data_, { sha256: sha }),
        FileError,
      );
      assertEquals(error.code, "EINTEGRITY");
      assertEquals(await Deno.readFile(path), old);
    }
    // A digest function that throws fails the upload with its error; one that gives no digest is a TypeError.
    await assertRejects(
      () =>
        t.c.upload("w1", path, stream(), {
          sha256: () => {
            throw new RangeError("no digest today");
          },
        }),
      RangeError,
      "no digest today",
    );
    await assertRejects(
      () => t.c.upload("w1", path, stream(), { sha256: () => "ABC" }),
      TypeError,
      "64 lowercase hex digits",
    );
    await assertRejects(() => t.c.upload("w1", path, data, { sha256: "xyz" }), TypeError, "sha256");
    assertEquals(await Deno.readFile(path), old);
    assertEquals(tempLeftovers(t.dir), []);
    // Options shared with a directory upload carry no digest there: the tree's tar is hashed as before.
    const tree = await Deno.makeTempDir();
    try {
      await Deno.writeFile(`${tree}/a.txt`, new TextEncoder().encode("a"));
      const shared: UploadOptions = { mkdirs: true, sha256: wrong };
      const result = await t.c.uploadDir("w1", tree, `${t.dir}/tree`, shared);
      assertEquals(result.files, 1);
    } finally {
      await Deno.remove(tree, { recursive: true });
    }
  },
);

testBoth("a missing file is ENOENT, a directory is EISDIR, never empty bytes", async (kind) => {
  await using t = await setup(kind);
  const missing = `${t.dir}/missing.txt`;
  const error = await assertRejects(() => t.c.download("w1", missing), FileError);
  assertEquals(error.code, "ENOENT");
  assertEquals(error.path, missing);
  await assertRejects(() => t.c.downloadStream("w1", missing), FileError, "missing.txt");
  const isDir = await assertRejects(() => t.c.download("w1", t.dir), FileError);
  assertEquals(isDir.code, "EISDIR");
  const upDir = await assertRejects(() => t.c.upload("w1", t.dir, new Uint8Array(3)), FileError);
  assertEquals(upDir.code, "EISDIR");
  assertEquals((await t.c.fs("w1").stat(t.dir)).type, "directory");
  const stat = await assertRejects(() => t.c.fs("w1").stat(missing), FileError);
  assertEquals(stat.code, "ENOENT");
  // An empty file is empty, not an error.
  await Deno.writeFile(`${t.dir}/empty`, new Uint8Array(0));
  assertEquals((await t.c.download("w1", `${t.dir}/empty`)).length, 0);
});

testBoth(
  "missing parents: ENOENT without mkdirs, created with it; a file as parent is ENOTDIR",
  async (kind) => {
    await using t = await setup(kind);
    const deep = `${t.dir}/a/b/c/file.txt`;
    const error = await assertRejects(() => t.c.upload("w1", deep, new Uint8Array([1])), FileError);
    assertEquals(error.code, "ENOENT");
    assertEquals(error.path, deep);
    await t.c.upload("w1", deep, new TextEncoder().encode("hi"), { mkdirs: true });
    assertEquals(await Deno.readTextFile(deep), "hi");
    const underFile = await assertRejects(
      () => t.c.upload("w1", `${deep}/x`, new Uint8Array([1])),
      FileError,
    );
    assertEquals(underFile.code, "ENOTDIR");
  },
);

// A daemon started as `nobody` on the embedded controller only (the Client maps FileError codes as above).
Deno.test("server: permission denied is EACCES with the path (daemon run as an unprivileged user)", async () => {
  // Root ignores mode bits, so run the daemon as `nobody`: bundle it (no module cache needed) and start it
  // through setpriv.
  const setpriv = await new Deno.Command("sh", { args: ["-c", "command -v setpriv"] }).output();
  if (Deno.uid() !== 0 || !setpriv.success) {
    console.log("skipped: needs root and setpriv to start a daemon as another user");
    return;
  }
  const work = await Deno.realPath(await Deno.makeTempDir({ prefix: "sandd-eacces-" }));
  await Deno.chmod(work, 0o777);
  const server = await Server.listen({ port: 0 });
  let child: Deno.ChildProcess | undefined;
  try {
    const bundle = `${work}/sandd.js`;
    const built = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", new URL("../daemon/main.ts", import.meta.url).pathname, "-o", bundle],
      stdout: "null",
      stderr: "piped",
    }).output();
    assert(built.success, new TextDecoder().decode(built.stderr));
    await Deno.chmod(bundle, 0o644);
    await Deno.mkdir(`${work}/deno-dir`, { mode: 0o777 });
    await Deno.chmod(`${work}/deno-dir`, 0o777);
    child = new Deno.Command("setpriv", {
      args: [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        Deno.execPath(),
        "run",
        ...DAEMON_PERMISSION_FLAGS,
        bundle,
        "--server-url",
        server.url,
        "--daemon-id",
        "nobody",
        "--log-level",
        "error",
      ],
      env: { DENO_DIR: `${work}/deno-dir`, HOME: work },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    await server.waitForDaemon("nobody", { timeout: 20_000 });
    await Deno.mkdir(`${work}/locked`, { mode: 0o700 });
    await Deno.chmod(`${work}/locked`, 0o700);
    await Deno.writeTextFile(`${work}/private.txt`, "root only", { mode: 0o600 });
    await Deno.chmod(`${work}/private.txt`, 0o600);
    const up = await assertRejects(
      () => server.upload("nobody", `${work}/locked/file.bin`, new Uint8Array(10)),
      FileError,
    );
    assertEquals(up.code, "EACCES");
    assertEquals(up.path, `${work}/locked/file.bin`);
    const down = await assertRejects(
      () => server.download("nobody", `${work}/private.txt`),
      FileError,
    );
    assertEquals(down.code, "EACCES");
    assertEquals(down.path, `${work}/private.txt`);
    assertEquals([...Deno.readDirSync(`${work}/locked`)], []);
  } finally {
    child?.kill("SIGTERM");
    await child?.status;
    await server.close();
    await Deno.remove(work, { recursive: true });
  }
});

testBoth(
  "a full disk is ENOSPC and leaves neither target nor temporary file",
  async (kind, test) => {
    const mount = `${await Deno.makeTempDir()}`;
    const mounted = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mount],
      stderr: "null",
    }).output();
    if (!mounted.success) {
      console.log("skipped: cannot mount a tmpfs here");
      await Deno.remove(mount);
      return;
    }
    try {
      await using t = await setup(kind);
      await test.step("upload 3 MB into 1 MB", async () => {
        const error = await assertRejects(
          () => t.c.upload("w1", `${mount}/big.bin`, random(3 * 1024 * 1024)),
          FileError,
        );
        assertEquals(error.code, "ENOSPC");
        await eventually(() => [...Deno.readDirSync(mount)].length === 0, 5_000, "cleanup");
      });
    } finally {
      await new Deno.Command("umount", { args: [mount] }).output();
      await Deno.remove(mount);
    }
  },
);

testBoth(
  "modes are set and kept; replacing keeps the old mode; the target is replaced atomically",
  async (kind) => {
    await using t = await setup(kind);
    const path = `${t.dir}/script.sh`;
    await t.c.upload("w1", path, new TextEncoder().encode("#!/bin/sh\n"), { mode: 0o750 });
    assertEquals((await Deno.stat(path)).mode! & 0o7777, 0o750);
    assertEquals((await t.c.fs("w1").stat(path)).mode, 0o750);
    await t.c.upload("w1", path, new TextEncoder().encode("#!/bin/sh\necho 2\n"));
    assertEquals((await Deno.stat(path)).mode! & 0o7777, 0o750);
    await t.c.upload("w1", `${t.dir}/plain`, new Uint8Array(1));
    assertEquals((await Deno.stat(`${t.dir}/plain`)).mode! & 0o7777, 0o644);
    await assertRejects(
      () => t.c.upload("w1", path, new Uint8Array(1), { mode: 0o10000 }),
      RangeError,
    );
  },
);

testBoth("progress callbacks count up to the total", async (kind) => {
  await using t = await setup(kind);
  const data = random(5 * 1024 * 1024 + 7);
  const up: TransferProgress[] = [];
  await t.c.upload("w1", `${t.dir}/p.bin`, data, { onProgress: (p) => up.push(p) });
  assertGreater(up.length, 1);
  assertEquals(up.at(-1), { bytes: data.length, total: data.length });
  assert(up.every((p, i) => i === 0 || p.bytes > up[i - 1]!.bytes));
  const down: TransferProgress[] = [];
  await t.c.download("w1", `${t.dir}/p.bin`, { onProgress: (p) => down.push(p) });
  assertGreater(down.length, 1);
  assertEquals(down.at(-1), { bytes: data.length, total: data.length });
});

// The daemon's link cut with no reconnect grace, on the embedded controller; the Client's own cut is below.
Deno.test("server: a link cut mid-upload leaves the old target and no temporary file", async () => {
  // No reconnect grace: the cut upload fails at once instead of resuming by itself (files_resume_test.ts).
  const server = await Server.listen({ port: 0, reconnectGraceMs: 0 });
  await using _ = {
    async [Symbol.asyncDispose]() {
      await server.close();
    },
  };
  await using proxied = new LinkProxy(server.port);
  await using daemon = new TestDaemon({ id: "w1", url: proxied.url() });
  await server.waitForDaemon("w1", { timeout: 20_000 });
  const dir = await Deno.realPath(await Deno.makeTempDir());
  try {
    const path = `${dir}/target.bin`;
    await Deno.writeTextFile(path, "old");
    let sent = 0;
    const source = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent === 20 * 1024 * 1024) await proxied.cut();
        sent += 1024 * 1024;
        controller.enqueue(new Uint8Array(1024 * 1024));
      },
    }, { highWaterMark: 0 });
    await assertRejects(() => server.upload("w1", path, source), DaemonDisconnectedError);
    assertEquals(await Deno.readTextFile(path), "old");
    await eventually(() => tempLeftovers(dir).length === 0, 5_000, "the temporary file to go");
    // The daemon comes back and a fresh upload (a restart, not a resume) works.
    await server.waitForDaemon("w1", { timeout: 10_000 });
    const data = random(3 * 1024 * 1024);
    await server.upload("w1", path, data);
    assertEquals(sha256(await Deno.readFile(path)), sha256(data));
  } finally {
    await daemon.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("server: a download cut mid-way errors, then resumes from the offset received", async () => {
  // No reconnect grace: the cut download fails at once instead of resuming by itself (files_resume_test.ts).
  const server = await Server.listen({ port: 0, reconnectGraceMs: 0 });
  await using proxied = new LinkProxy(server.port);
  await using _ = {
    async [Symbol.asyncDispose]() {
      await server.close();
    },
  };
  await using daemon = new TestDaemon({ id: "w1", url: proxied.url() });
  await server.waitForDaemon("w1", { timeout: 20_000 });
  const dir = await Deno.realPath(await Deno.makeTempDir());
  try {
    const data = random(48 * 1024 * 1024);
    await Deno.writeFile(`${dir}/big.bin`, data);
    const parts: Uint8Array[] = [];
    let received = 0;
    const stream = await server.downloadStream("w1", `${dir}/big.bin`);
    const error = await assertRejects(async () => {
      for await (const chunk of stream) {
        parts.push(chunk);
        received += chunk.length;
        if (received >= 8 * 1024 * 1024 && proxied.accepted === 1) await proxied.cut();
      }
    }, DaemonDisconnectedError);
    assert(error);
    assert(received < data.length, `received ${received}`);
    await server.waitForDaemon("w1", { timeout: 10_000 });
    const progress: TransferProgress[] = [];
    const rest = await server.download("w1", `${dir}/big.bin`, {
      from: received,
      onProgress: (p) => progress.push(p),
    });
    assertEquals(received + rest.length, data.length);
    assertEquals(progress.at(-1), { bytes: data.length, total: data.length });
    const whole = createHash("sha256");
    for (const part of parts) whole.update(part);
    whole.update(rest);
    assertEquals(whole.digest("hex"), sha256(data));
    const bad = await assertRejects(
      () => server.download("w1", `${dir}/big.bin`, { from: data.length + 1 }),
      FileError,
    );
    assertEquals(bad.code, "EINVAL");
  } finally {
    await daemon.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

testBoth("--root confines every operation and refuses escapes", async (kind) => {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "sandd-root-" }));
  const outside = await Deno.realPath(await Deno.makeTempDir({ prefix: "sandd-outside-" }));
  try {
    await Deno.writeTextFile(`${outside}/secret`, "secret");
    await Deno.symlink(outside, `${root}/escape`);
    await Deno.writeTextFile(`${root}/inside.txt`, "inside");
    await using t = await setup(kind, ["w1"], ["--root", root]);
    const fs = t.c.fs("w1");
    // Inside works, relative paths resolve against the root.
    assertEquals(new TextDecoder().decode(await t.c.download("w1", "inside.txt")), "inside");
    await t.c.upload("w1", "sub/new.txt", new TextEncoder().encode("n"), { mkdirs: true });
    assertEquals(await Deno.readTextFile(`${root}/sub/new.txt`), "n");
    for (
      const path of [
        "../outside",
        `${outside}/secret`,
        "escape/secret",
        "sub/../../x",
        "/etc/passwd",
      ]
    ) {
      const down = await assertRejects(() => t.c.download("w1", path), PolicyError);
      assertEquals(down.rule, "root");
      assertEquals(down.path, path);
      await assertRejects(() => t.c.upload("w1", path, new Uint8Array(1)), PolicyError);
      await assertRejects(() => fs.stat(path), PolicyError);
      await assertRejects(() => fs.remove(path), PolicyError);
    }
    await assertRejects(() => fs.list("escape"), PolicyError);
    await assertRejects(() => fs.move("inside.txt", "../moved"), PolicyError);
    await assertRejects(() => fs.remove(root, { recursive: true }), PolicyError);
    await assertRejects(() => t.c.uploadDir("w1", root, "escape/tree"), PolicyError);
    // Removing the symlink removes the link, not what it points to.
    await fs.remove("escape");
    assertEquals(await Deno.readTextFile(`${outside}/secret`), "secret");
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
});

testBoth("concurrent transfers to three daemons", async (kind) => {
  const ids = ["w1", "w2", "w3"];
  await using t = await setup(kind, ids);
  const data = ids.map(() => random(12 * 1024 * 1024));
  await Promise.all(ids.map(async (id, i) => {
    for (let k = 0; k < 2; k++) {
      const path = `${t.dir}/${id}-${k}.bin`;
      const result = await t.c.upload(id, path, data[i]!);
      assertEquals(result.sha256, sha256(data[i]!));
      assertEquals(sha256(await t.c.download(id, path)), sha256(data[i]!));
    }
  }));
});

testBoth(
  "a tree with symlinks, modes and odd names goes up and comes back intact",
  async (kind) => {
    await using t = await setup(kind);
    const src = `${t.dir}/src`;
    const names = [
      "plain.txt",
      "with space",
      "new\nline",
      "-dash",
      "ünï©ødé 🚀",
      "a'b\"c",
      "empty",
    ];
    await Deno.mkdir(`${src}/sub/deeper`, { recursive: true });
    for (const [i, name] of names.entries()) {
      await Deno.writeFile(
        `${src}/${name}`,
        name === "empty" ? new Uint8Array(0) : random(i * 1000 + 1),
      );
    }
    await Deno.writeFile(`${src}/sub/deeper/big.bin`, random(3 * 1024 * 1024 + 5));
    await Deno.chmod(`${src}/plain.txt`, 0o751);
    await Deno.chmod(`${src}/sub`, 0o710);
    await Deno.symlink("plain.txt", `${src}/link-to-file`);
    await Deno.symlink("../sub", `${src}/sub/deeper/link-up`);
    await Deno.symlink("/nowhere/at/all", `${src}/dangling`);
    const progress: TransferProgress[] = [];
    const result = await t.c.uploadDir("w1", src, `${t.dir}/remote/tree`, {
      mkdirs: true,
      onProgress: (p) => progress.push(p),
    });
    assertEquals(result.files, names.length + 1);
    assertEquals(result.symlinks, 3);
    assertGreater(progress.length, 0);
    assertEquals(
      (await Deno.stat(`${t.dir}/remote/tree`)).mode! & 0o777,
      (await Deno.stat(src)).mode! & 0o777,
    );
    await compareTrees(src, `${t.dir}/remote/tree`);
    // Uploading again replaces the tree (a file removed locally disappears remotely).
    await Deno.remove(`${src}/with space`);
    await t.c.uploadDir("w1", src, `${t.dir}/remote/tree`);
    await compareTrees(src, `${t.dir}/remote/tree`);
    await t.c.downloadDir("w1", `${t.dir}/remote/tree`, `${t.dir}/back`);
    await compareTrees(src, `${t.dir}/back`);
    assertEquals(tempLeftovers(`${t.dir}/remote`), []);
    assertEquals(tempLeftovers(t.dir), []);
    const notDir = await assertRejects(
      () => t.c.downloadDir("w1", `${src}/plain.txt`, `${t.dir}/x`),
      FileError,
    );
    assertEquals(notDir.code, "ENOTDIR");
    assertEquals(tempLeftovers(t.dir), []);
  },
);

async function compareTrees(a: string, b: string, rel = ""): Promise<void> {
  const list = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  assertEquals(list(`${b}${rel}`), list(`${a}${rel}`), `entries of ${rel || "/"}`);
  for (const name of list(`${a}${rel}`)) {
    const path = `${rel}/${name}`;
    const x = await Deno.lstat(`${a}${path}`);
    const y = await Deno.lstat(`${b}${path}`);
    assertEquals(
      [y.isFile, y.isDirectory, y.isSymlink],
      [x.isFile, x.isDirectory, x.isSymlink],
      path,
    );
    if (x.isSymlink) {
      assertEquals(await Deno.readLink(`${b}${path}`), await Deno.readLink(`${a}${path}`));
      continue;
    }
    assertEquals(y.mode! & 0o7777, x.mode! & 0o7777, `mode of ${path}`);
    if (x.isFile) {
      assertEquals(
        sha256(await Deno.readFile(`${b}${path}`)),
        sha256(await Deno.readFile(`${a}${path}`)),
      );
    } else {
      await compareTrees(a, b, path);
    }
  }
}

testBoth("fs: mkdir, list, move, remove, stat, and their errors", async (kind) => {
  await using t = await setup(kind);
  const fs = t.c.fs("w1");
  await fs.mkdir(`${t.dir}/a/b`, { recursive: true });
  await fs.mkdir(`${t.dir}/a/m`, { mode: 0o700 });
  assertEquals((await fs.stat(`${t.dir}/a/m`)).mode, 0o700);
  assertEquals((await assertRejects(() => fs.mkdir(`${t.dir}/a`), FileError)).code, "EEXIST");
  await t.c.upload("w1", `${t.dir}/a/b/f.txt`, new TextEncoder().encode("12345"));
  await Deno.symlink("b/f.txt", `${t.dir}/a/link`);
  const flat = await fs.list(`${t.dir}/a`);
  assertEquals(flat.map((e) => [e.path, e.type]), [["b", "directory"], ["link", "symlink"], [
    "m",
    "directory",
  ]]);
  assertEquals(flat[1]!.target, "b/f.txt");
  const deep = await fs.list(`${t.dir}/a`, { recursive: true });
  assertEquals(deep.map((e) => e.path), ["b", "link", "m", "b/f.txt"]);
  assertEquals(deep[3]!.size, 5);
  assert(deep[3]!.mtime instanceof Date);
  assertEquals(
    (await assertRejects(() => fs.list(`${t.dir}/a/b/f.txt`), FileError)).code,
    "ENOTDIR",
  );
  await fs.move(`${t.dir}/a/b/f.txt`, `${t.dir}/a/g.txt`);
  assertEquals(await Deno.readTextFile(`${t.dir}/a/g.txt`), "12345");
  assertEquals(
    (await assertRejects(() => fs.move(`${t.dir}/nope`, `${t.dir}/x`), FileError)).code,
    "ENOENT",
  );
  assertEquals((await assertRejects(() => fs.remove(`${t.dir}/a`), FileError)).code, "ENOTEMPTY");
  await fs.remove(`${t.dir}/a/link`);
  assertEquals((await fs.stat(`${t.dir}/a/g.txt`)).type, "file");
  await fs.remove(`${t.dir}/a`, { recursive: true });
  assertEquals((await assertRejects(() => fs.stat(`${t.dir}/a`), FileError)).code, "ENOENT");
  assertEquals((await assertRejects(() => fs.remove(`${t.dir}/a`), FileError)).code, "ENOENT");
});

testBoth("fs.watch reports changes and stops when the loop breaks", async (kind) => {
  await using t = await setup(kind);
  const fs = t.c.fs("w1");
  const events: FsEvent[] = [];
  const iterator = fs.watch(t.dir)[Symbol.asyncIterator]();
  // The first next() sends the watch request; create the file once the daemon answered.
  const first = iterator.next();
  let created = false;
  const writer = (async () => {
    // The watch is set up asynchronously on the daemon and the iterator has no "ready" event: keep touching
    // the file until the first event arrives.
    while (!created) {
      await Deno.writeTextFile(`${t.dir}/watched.txt`, "x");
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const result = await first;
  created = true;
  await writer;
  assert(!result.done);
  events.push(result.value);
  assert(events[0]!.paths.some((p) => p.endsWith("watched.txt")), JSON.stringify(events));
  await iterator.return?.(undefined);
  // A missing path is FileError on both; a bad one is refused before any request.
  await assertRejects(() => fs.watch(`${t.dir}/missing`)[Symbol.asyncIterator]().next(), FileError);
  await assertRejects(() => fs.watch("")[Symbol.asyncIterator]().next(), TypeError);
});

Deno.test("daemon: a checksum mismatch is EINTEGRITY and nothing is renamed", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir());
  const sent: string[] = [];
  const socket = {
    readyState: 1,
    send: (data: unknown) => sent.push(typeof data === "string" ? data : "<binary>"),
    close: () => {},
  } as unknown as ConstructorParameters<typeof Link>[0];
  const link = new Link(socket);
  try {
    const handlers = fileHandlers();
    const upload = Promise.resolve(handlers.upload!({
      path: `${dir}/target.bin`,
      sid: 7,
      window: 1024 * 1024,
    }, link));
    const route = link.routes.get(7)!;
    route.onData!(0, new Uint8Array([1, 2, 3]));
    route.onEof!(3, "0".repeat(64));
    const error = await assertRejects(() => upload, DaemonRequestError);
    assertEquals(error.code, "EINTEGRITY");
    assertEquals(error.extra.path, `${dir}/target.bin`);
    assertEquals([...Deno.readDirSync(dir)], []);
    assertEquals(link.routes.size, 0);
    // A wrong offset (a lost frame) is refused too.
    const skip = Promise.resolve(
      handlers.upload!({ path: `${dir}/t2`, sid: 8, window: 1024 }, link),
    );
    link.routes.get(8)!.onData!(5, new Uint8Array([1]));
    assertEquals((await assertRejects(() => skip, DaemonRequestError)).code, "PROTOCOL");
    link.routes.get(8)?.onReset?.("done");
    assertEquals([...Deno.readDirSync(dir)], []);
  } finally {
    link.closed();
    await Deno.remove(dir, { recursive: true });
  }
});

testBoth(
  "--root: symlinks beneath the root are not followed; stat describes the link itself",
  async (kind) => {
    const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "sandd-root-" }));
    try {
      await Deno.mkdir(`${root}/real`);
      await Deno.writeTextFile(`${root}/real/f.txt`, "inside");
      await Deno.symlink("real", `${root}/dirlink`);
      await Deno.symlink("real/f.txt", `${root}/filelink`);
      await using t = await setup(kind, ["w1"], ["--root", root]);
      const fs = t.c.fs("w1");
      assertEquals(new TextDecoder().decode(await t.c.download("w1", "real/f.txt")), "inside");
      for (const path of ["dirlink/f.txt", "filelink"]) {
        const error = await assertRejects(() => t.c.download("w1", path), PolicyError);
        assertEquals(error.rule, "root");
      }
      await assertRejects(() => t.c.upload("w1", "dirlink/new", new Uint8Array(1)), PolicyError);
      await assertRejects(
        () => t.c.upload("w1", "dirlink/a/new", new Uint8Array(1), { mkdirs: true }),
        PolicyError,
      );
      await assertRejects(() => fs.mkdir("dirlink/a/b", { recursive: true }), PolicyError);
      assertEquals([...Deno.readDirSync(`${root}/real`)].map((e) => e.name), ["f.txt"]);
      await assertRejects(() => fs.list("dirlink"), PolicyError);
      assertEquals((await fs.stat("filelink")).type, "symlink");
      // Uploading over a symlink replaces the link, never writes through it.
      await t.c.upload("w1", "filelink", new TextEncoder().encode("new"));
      assertEquals((await Deno.lstat(`${root}/filelink`)).isFile, true);
      assertEquals(await Deno.readTextFile(`${root}/real/f.txt`), "inside");
      // A FIFO is refused at once, and stat does not block on it.
      const made = await new Deno.Command("mkfifo", { args: [`${root}/pipe`] }).output();
      assert(made.success);
      assertEquals((await fs.stat("pipe")).type, "other");
      const fifo = await assertRejects(() => t.c.download("w1", "pipe"), FileError);
      assertEquals(fifo.code, "EINVAL");
      // A directory download skips the FIFO and stores the links as links.
      const dest = await Deno.makeTempDir({ prefix: "sandd-dest-" });
      try {
        await t.c.downloadDir("w1", ".", `${dest}/copy`);
        assertEquals((await Deno.lstat(`${dest}/copy/dirlink`)).isSymlink, true);
        assertEquals(await Deno.readTextFile(`${dest}/copy/real/f.txt`), "inside");
        assertEquals(await Deno.lstat(`${dest}/copy/pipe`).catch(() => null), null);
      } finally {
        await Deno.remove(dest, { recursive: true });
      }
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);

// --- the Client's own ---

Deno.test("client: a download whose HTTP connection is cut resumes from the last byte received", async () => {
  await using t = await setup("client", ["w1"], [], true);
  const proxy = t.fleet.proxy!;
  const data = random(48 * 1024 * 1024);
  await Deno.writeFile(`${t.dir}/big.bin`, data);
  const progress: TransferProgress[] = [];
  const stream = await t.c.downloadStream("w1", `${t.dir}/big.bin`, {
    onProgress: (p) => progress.push(p),
  });
  const hash = createHash("sha256");
  let received = 0;
  let cuts = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    received += chunk.length;
    if (received >= (cuts + 1) * 12 * 1024 * 1024 && cuts < 3) {
      cuts++;
      await proxy.cut();
    }
  }
  assertEquals(cuts, 3);
  assertEquals(received, data.length);
  assertEquals(hash.digest("hex"), sha256(data));
  assertEquals(progress.at(-1), { bytes: data.length, total: data.length });
  assertGreater(proxy.accepted, 3);
});

Deno.test("client: an upload stream that is not the size it announced fails and leaves nothing", async () => {
  await using t = await setup("client");
  const path = `${t.dir}/sized.bin`;
  await assertRejects(
    () => t.c.upload("w1", path, new Blob([new Uint8Array(10)]).stream(), { size: 11 }),
    RangeError,
    "short",
  );
  await assertRejects(
    () => t.c.upload("w1", path, new Blob([new Uint8Array(12)]).stream(), { size: 11 }),
    RangeError,
    "more than",
  );
  assertEquals(await Deno.lstat(path).catch(() => null), null);
  assertEquals(tempLeftovers(t.dir), []);
});
