// The manifest parser is the gate for imported manifests (a copy from another worker goes through it): every
// hostile shape is refused with a message naming the line.
import { assertEquals, assertThrows } from "../../tests/_assert.ts";
import { DaemonRequestError } from "../process_table.ts";
import { count, type Manifest, MANIFEST_FORMAT, parse, serialize } from "./_manifest.ts";

const SHA = "c".repeat(64);

function manifest(entries: unknown[], header: Record<string, unknown> = {}): Uint8Array {
  const counts = count(entries as Manifest["entries"]);
  const head = {
    format: MANIFEST_FORMAT,
    id: "20261201T000000Z-00000000",
    createdAt: "2026-12-01T00:00:00.000Z",
    message: "",
    tags: [],
    ...counts,
    mode: 0o755,
    mtime: 0,
    ...header,
  };
  return new TextEncoder().encode(
    [head, ...entries].map((e) => JSON.stringify(e)).join("\n") + "\n",
  );
}

const FILE = { path: "a", type: "file", mode: 0o644, size: 1, mtime: 0, sha256: SHA };

Deno.test("a manifest round-trips through serialize and parse", () => {
  const bytes = manifest([
    { path: "d", type: "dir", mode: 0o755, mtime: 1 },
    { ...FILE, path: "d/a b\nc ü" },
    { path: "d/l", type: "symlink", target: "../../etc/passwd" },
  ]);
  const parsed = parse(bytes);
  assertEquals(parsed.entries.length, 3);
  assertEquals(serialize(parsed), bytes);
});

Deno.test("hostile manifests are refused, naming what is wrong", () => {
  const bad: [Uint8Array, string][] = [
    [manifest([{ ...FILE, path: "../x" }]), "'..'"],
    [manifest([{ ...FILE, path: "/etc/x" }]), "empty"],
    [manifest([{ ...FILE, path: "a/./b" }]), "'.'"],
    [manifest([{ ...FILE, path: "a\u0000b" }]), "NUL"],
    [manifest([{ ...FILE, path: "x/a" }]), "before its parent"],
    [manifest([{ ...FILE, sha256: "../../x" }]), "sha256"],
    [manifest([{ ...FILE, mode: 0o10000 }]), "mode"],
    [manifest([{ ...FILE, extra: 1 }]), "fields"],
    [manifest([FILE, FILE]), "repeats"],
    [manifest([{ path: "a", type: "fifo" }]), "unknown type"],
    [manifest([{ path: "l", type: "symlink", target: "" }]), "target"],
    [
      manifest([{ path: "a", type: "file", mode: 0o644, size: -1, mtime: 0, sha256: SHA }], {
        totalSize: 0,
      }),
      "has a size",
    ],
    [manifest([FILE], { fileCount: 5 }), "fileCount"],
    [manifest([FILE], { format: "other" }), "format"],
    [manifest([FILE], { id: "../evil" }), "id"],
    [new TextEncoder().encode("{}\n"), "format"],
    [new TextEncoder().encode("not json\n"), "not JSON"],
    [new Uint8Array([0xff, 0xfe]), "UTF-8"],
    [new Uint8Array(0), "empty"],
  ];
  for (const [bytes, needle] of bad) {
    assertThrows(() => parse(bytes), DaemonRequestError, needle);
  }
});
