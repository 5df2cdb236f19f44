import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStrictEquals,
} from "../../tests/_assert.ts";
import { readTar, type TarEntryHeader, TarFormatError, TarWriter } from "./tar.ts";

const encoder = new TextEncoder();

type Body = Uint8Array | ReadableStream<Uint8Array> | undefined;

async function bytesOf(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Writes entries with a TarWriter while a concurrent consumer collects the archive. */
async function write(entries: [TarEntryHeader, Body][]): Promise<Uint8Array> {
  const writer = new TarWriter();
  const archive = bytesOf(writer.readable);
  for (const [header, body] of entries) await writer.addEntry(header, body);
  await writer.close();
  return await archive;
}

function streamOf(
  bytes: Uint8Array,
  chunkSizes: number[] = [bytes.length],
): ReadableStream<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (let i = 0; offset < bytes.length; i++) {
    const size = Math.max(1, chunkSizes[i % chunkSizes.length]!);
    chunks.push(bytes.slice(offset, offset + size));
    offset += size;
  }
  return ReadableStream.from(chunks);
}

async function readAll(
  archive: Uint8Array | ReadableStream<Uint8Array>,
): Promise<{ header: TarEntryHeader; body: Uint8Array }[]> {
  const out = [];
  const stream = archive instanceof Uint8Array ? streamOf(archive, [700, 3, 512, 4096]) : archive;
  for await (const entry of readTar(stream)) {
    out.push({ header: entry.header, body: await bytesOf(entry.body) });
  }
  return out;
}

function random(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(out.subarray(i, i + 65536));
  return out;
}

function file(
  path: string | Uint8Array,
  size: number,
  extra: Partial<TarEntryHeader> = {},
): TarEntryHeader {
  return { path, type: "file", size, mode: 0o644, mtime: 1_700_000_000, ...extra };
}

/** A raw ustar header block with a correct checksum, for crafting archives TarWriter refuses to make. */
function rawHeader(
  fields: { name: string; typeflag: string; size?: number; sizeField?: Uint8Array; link?: string },
): Uint8Array {
  const block = new Uint8Array(512);
  const put = (offset: number, text: string) => block.set(encoder.encode(text), offset);
  put(0, fields.name);
  put(100, "0000644\0");
  put(108, "0000000\0");
  put(116, "0000000\0");
  if (fields.sizeField !== undefined) block.set(fields.sizeField, 124);
  else put(124, (fields.size ?? 0).toString(8).padStart(11, "0") + "\0");
  put(136, "00000000000\0");
  block[156] = fields.typeflag.charCodeAt(0);
  if (fields.link !== undefined) put(157, fields.link);
  put(257, "ustar\x0000");
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  put(148, sum.toString(8).padStart(6, "0") + "\0 ");
  return block;
}

/** PAX records; a record given as [key, value] gets its length computed, a string is used as is. */
function paxBlock(...records: ([string, string] | string)[]): Uint8Array[] {
  const text = records.map((record) => {
    if (typeof record === "string") return record;
    const base = record[0].length + record[1].length + 3;
    const length = base + String(base + String(base).length).length;
    return `${length} ${record[0]}=${record[1]}\n`;
  }).join("");
  const data = encoder.encode(text);
  const padded = new Uint8Array(Math.ceil(data.length / 512) * 512);
  padded.set(data);
  return [rawHeader({ name: "PaxHeader", typeflag: "x", size: data.length }), padded];
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

const END = new Uint8Array(1024);

async function rejectsFormat(
  archive: Uint8Array | ReadableStream<Uint8Array>,
  pattern?: RegExp,
): Promise<void> {
  const error = await assertRejects(() => readAll(archive));
  assert(error instanceof TarFormatError, `expected TarFormatError, got ${error}`);
  assertEquals(error.code, "TAR_FORMAT");
  if (pattern !== undefined) assertMatch(error.message, pattern);
}

async function gnuTar(args: string[], stdin?: Uint8Array): Promise<Deno.CommandOutput> {
  const child = new Deno.Command("tar", {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: { LC_ALL: "C.UTF-8" },
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(stdin).catch(() => {}); // tar may stop reading early on a bad archive
    await writer.close().catch(() => {});
  }
  return await child.output();
}

Deno.test("tar round trips files at block boundaries, from bytes and from streams", async () => {
  const sizes = [0, 1, 511, 512, 513, 1023, 1024, 1025, 70_000, 200_001];
  const bodies = sizes.map(random);
  const entries: [TarEntryHeader, Body][] = [
    [{ path: "dir", type: "directory", size: 0, mode: 0o755, mtime: 1 }, undefined],
  ];
  sizes.forEach((size, i) => {
    entries.push([file(`dir/bytes-${size}`, size, { mode: 0o600 }), bodies[i]]);
    entries.push([file(`dir/stream-${size}`, size), streamOf(bodies[i]!, [1000, 1, 7, 65536])]);
  });
  const archive = await write(entries);
  assertEquals(archive.length % 512, 0);
  const read = await readAll(archive);
  assertStrictEquals(read.length, entries.length);
  assertEquals(read[0]!.header, {
    path: "dir",
    type: "directory",
    size: 0,
    mode: 0o755,
    mtime: 1,
  });
  sizes.forEach((size, i) => {
    const a = read[1 + 2 * i]!;
    const b = read[2 + 2 * i]!;
    assertEquals(a.header, file(`dir/bytes-${size}`, size, { mode: 0o600 }));
    assertEquals(b.header, file(`dir/stream-${size}`, size));
    assertEquals(a.body, bodies[i]);
    assertEquals(b.body, bodies[i]);
  });
});

Deno.test("tar round trips long, unicode, newline and non-UTF-8 names and link targets", async () => {
  const long150 = "a".repeat(60) + "/" + "b".repeat(89); // 150 bytes
  const long300 = ["c".repeat(99), "d".repeat(99), "e".repeat(100)].join("/"); // 300 bytes
  const unicode = "ünïcödé/日本語 ファイル 🎉.txt";
  const newline = "new\nline\r\n name";
  const binaryShort = new Uint8Array([0x62, 0x61, 0x64, 0xff, 0xfe, 0x2e, 0x74]); // "bad\xff\xfe.t"
  const binaryLong = new Uint8Array([...encoder.encode("x".repeat(120) + "/"), 0xc3, 0x28, 0x80]);
  const linkLong = "../" + "t".repeat(200);
  const bom = "\uFEFFbom";
  const archive = await write([
    [file(long150, 3), encoder.encode("150")],
    [file(long300, 3), encoder.encode("300")],
    [{ path: long300.slice(0, 199), type: "directory", size: 0, mode: 0o700, mtime: 5 }, undefined],
    [file(unicode, 1), encoder.encode("u")],
    [file(newline, 1), encoder.encode("n")],
    [file(binaryShort, 1), encoder.encode("s")],
    [file(binaryLong, 1), encoder.encode("l")],
    [file(bom, 0), undefined],
    [
      { path: "link", type: "symlink", size: 0, mode: 0o777, mtime: 0, linkTarget: linkLong },
      undefined,
    ],
    [
      { path: "blink", type: "symlink", size: 0, mode: 0o777, mtime: 0, linkTarget: binaryShort },
      undefined,
    ],
  ]);
  const text = new TextDecoder("latin1").decode(archive);
  assert(
    text.includes("hdrcharset=BINARY"),
    "a PAX hdrcharset record marks the non-UTF-8 long name",
  );
  const read = await readAll(archive);
  assertEquals(read.map((entry) => entry.header.path), [
    long150,
    long300,
    long300.slice(0, 199),
    unicode,
    newline,
    binaryShort,
    binaryLong,
    bom,
    "link",
    "blink",
  ]);
  assert(read[5]!.header.path instanceof Uint8Array);
  assertStrictEquals(read[8]!.header.linkTarget, linkLong);
  assertEquals(read[9]!.header.linkTarget, binaryShort);
  assertEquals(
    read.map((entry) => new TextDecoder().decode(entry.body)).join(""),
    "150300uns" + "l",
  );

  // GNU tar agrees on the names, including the raw bytes of the non-UTF-8 ones.
  const listing = await gnuTar(["-tf", "-", "--quoting-style=literal"], archive);
  assertEquals(listing.code, 0, new TextDecoder().decode(listing.stderr));
  const expected = concat([
    ...[long150, long300, long300.slice(0, 199) + "/", unicode, newline].map((name) =>
      encoder.encode(name + "\n")
    ),
    binaryShort,
    encoder.encode("\n"),
    binaryLong,
    encoder.encode(`\n${bom}\nlink\nblink\n`),
  ]);
  assertEquals(listing.stdout, expected);
  const verbose = await gnuTar(["-tvf", "-", "--quoting-style=literal"], archive);
  assertEquals(verbose.code, 0);
  assert(new TextDecoder().decode(verbose.stdout).includes(`link -> ${linkLong}`));
});

Deno.test("tar keeps mtimes that ustar cannot hold, through PAX", async () => {
  const mtimes = [0, 1.5, -86_400, 2 ** 33 + 7, 1_700_000_000.25];
  const archive = await write(mtimes.map((mtime, i) => [file(`f${i}`, 0, { mtime }), undefined]));
  const read = await readAll(archive);
  assertEquals(read.map((entry) => entry.header.mtime), mtimes);
});

Deno.test("tar writes and reads sizes of 8 GiB and more through PAX and base-256", async () => {
  const size = 8 * 1024 ** 3 + 5;
  const writer = new TarWriter();
  let pulls = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulls++;
      controller.enqueue(new Uint8Array(65536));
    },
  }, { highWaterMark: 0 });
  const adding = writer.addEntry(file("huge.bin", size), body);
  const reader = writer.readable.getReader();
  const headerBlocks: Uint8Array[] = [];
  let length = 0;
  while (length < 3 * 512) { // PAX header + PAX records + ustar header
    const { value } = await reader.read();
    headerBlocks.push(value!);
    length += value!.length;
  }
  await reader.cancel(new Error("enough"));
  await assertRejects(() => adding, Error, /enough/);
  assert(pulls < 10, `body pulled ${pulls} times for a consumer that read only the header`);
  const header = concat(headerBlocks).subarray(0, 3 * 512);
  assert(new TextDecoder().decode(header).includes(`size=${size}\n`));
  assertEquals(header[2 * 512 + 124], 0x80, "the ustar size field is base-256");

  // Our reader takes the size from the header, then finds the body truncated.
  const entries = readTar(ReadableStream.from([header]));
  const first = await entries.next();
  assertEquals(first.done, false);
  assertStrictEquals(first.value!.header.size, size);
  await assertRejects(() => bytesOf(first.value!.body), TarFormatError);
  await assertRejects(() => entries.next(), TarFormatError);

  // GNU tar reads the same size.
  const listing = await gnuTar(["-tvf", "-"], header);
  assertMatch(new TextDecoder().decode(listing.stdout), new RegExp(` ${size} .*huge\\.bin`));
});

Deno.test("tar rejects a corrupt header checksum", async () => {
  const archive = await write([[file("a.txt", 5), encoder.encode("hello")]]);
  const corrupt = archive.slice();
  corrupt[10] = 0x41; // a byte of the name, checksum left as it was
  await rejectsFormat(corrupt, /checksum mismatch/);
  const corruptField = archive.slice();
  corruptField.set(encoder.encode("zz"), 148);
  await rejectsFormat(corruptField, /checksum/);
  await rejectsFormat(concat([random(512), END]), /checksum/);
});

Deno.test("tar rejects an archive truncated at any point before its end marker", async () => {
  const archive = await write([
    [file("x".repeat(150), 700), random(700)],
    [file("b", 512), random(512)],
    [{ path: "l", type: "symlink", size: 0, mode: 0o777, mtime: 0, linkTarget: "b" }, undefined],
  ]);
  const lastEntryEnd = archive.length - 1024;
  for (let cut = 0; cut <= lastEntryEnd + 511; cut++) {
    await rejectsFormat(archive.subarray(0, cut), /truncated/);
  }
  assertEquals(
    (await readAll(archive.subarray(0, lastEntryEnd + 512))).length,
    3,
    "one zero block ends it",
  );
  assertEquals((await readAll(archive)).length, 3);
});

Deno.test("tar rejects absurd sizes and oversized or malformed extended headers", async () => {
  const huge = new Uint8Array(12);
  huge[0] = 0x80;
  huge.fill(0xff, 1);
  await rejectsFormat(
    concat([rawHeader({ name: "a", typeflag: "0", sizeField: huge }), END]),
    /larger than/,
  );
  const negative = new Uint8Array(12).fill(0xff);
  await rejectsFormat(
    concat([rawHeader({ name: "a", typeflag: "0", sizeField: negative }), END]),
    /negative/,
  );
  const notOctal = encoder.encode("12345678z01\0");
  await rejectsFormat(
    concat([rawHeader({ name: "a", typeflag: "0", sizeField: notOctal }), END]),
    /octal/,
  );
  await rejectsFormat(
    concat([
      ...paxBlock(["size", "99999999999999999999"]),
      rawHeader({ name: "a", typeflag: "0" }),
      END,
    ]),
    /not a valid size/,
  );
  await rejectsFormat(
    concat([...paxBlock(["size", "-100"]), rawHeader({ name: "a", typeflag: "0" }), END]),
    /not a valid size/,
  );
  await rejectsFormat(
    concat([...paxBlock("99 path=a\n"), rawHeader({ name: "a", typeflag: "0" }), END]),
    /malformed/,
  );
  await rejectsFormat(
    concat([...paxBlock("8 path=a\n"), rawHeader({ name: "a", typeflag: "0" }), END]),
    /malformed/,
  );
  await rejectsFormat(
    concat([...paxBlock("garbage\n"), rawHeader({ name: "a", typeflag: "0" }), END]),
    /malformed/,
  );
  // An extended header claiming 1 TiB is refused from its header alone: nothing is allocated for it.
  const bigPax = rawHeader({
    name: "PaxHeader",
    typeflag: "x",
    sizeField: encoder.encode("20000000000000\0"),
  });
  await rejectsFormat(concat([bigPax, END]), /more than the limit/);
  const bigLongName = rawHeader({ name: "././@LongLink", typeflag: "L", size: 2 * 1024 * 1024 });
  await rejectsFormat(concat([bigLongName, END]), /more than the limit/);
  // An extended header that is not followed by an entry.
  await rejectsFormat(concat([...paxBlock(["path", "a"]), END]), /not followed by an entry/);
});

Deno.test("tar refuses hard links and devices unless asked to skip them", async () => {
  const archive = concat([
    rawHeader({ name: "hard", typeflag: "1", link: "target" }),
    rawHeader({ name: "fifo", typeflag: "6" }),
    rawHeader({ name: "kept", typeflag: "0", size: 3 }),
    encoder.encode("abc"),
    new Uint8Array(509),
    END,
  ]);
  await rejectsFormat(archive, /hard link/);
  const names = [];
  for await (const entry of readTar(ReadableStream.from([archive]), { skipUnsupported: true })) {
    names.push(entry.header.path);
    assertEquals(await new Response(entry.body).text(), "abc");
  }
  assertEquals(names, ["kept"]);
});

Deno.test("tar reader skips bodies that were not read, and errors them", async () => {
  const archive = await write([
    [file("a", 1000), random(1000)],
    [file("b", 3), encoder.encode("bee")],
  ]);
  const bodies: ReadableStream<Uint8Array>[] = [];
  const texts: string[] = [];
  for await (const entry of readTar(streamOf(archive, [100]))) {
    bodies.push(entry.body);
    if (entry.header.path === "b") texts.push(await new Response(entry.body).text());
  }
  assertEquals(texts, ["bee"]);
  await assertRejects(() => bytesOf(bodies[0]!), Error, /not read before the next entry/);
});

Deno.test("tar reader cancels its source on break, on error and on abort", async () => {
  const archive = await write([[file("a", 10), random(10)], [file("b", 10), random(10)]]);
  const tracked = () => {
    const state = { cancelled: false, reason: undefined as unknown };
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(archive.slice(0, 1024)); // first entry only; more would need a pull
      },
      pull() {
        return new Promise<void>(() => {}); // never produces more
      },
      cancel(reason) {
        state.cancelled = true;
        state.reason = reason;
      },
    });
    return { stream, state };
  };

  const a = tracked();
  for await (const _entry of readTar(a.stream)) break;
  assert(a.state.cancelled);

  const b = tracked();
  const controller = new AbortController();
  const reading = (async () => {
    for await (const entry of readTar(b.stream, { signal: controller.signal })) {
      await entry.body.cancel();
    }
  })();
  await Promise.resolve();
  controller.abort(new Error("stop"));
  await assertRejects(() => reading, Error, /stop/);
  assert(b.state.cancelled);

  const c = tracked();
  const corrupt = archive.slice(0, 1024);
  corrupt[0] = 0x5a;
  const cStream = new ReadableStream<Uint8Array>({
    start(ctl) {
      ctl.enqueue(corrupt);
    },
    cancel(reason) {
      c.state.cancelled = true;
      c.state.reason = reason;
    },
  });
  await rejectsFormat(cStream);
  assert(c.state.cancelled && c.state.reason instanceof TarFormatError);
});

Deno.test("tar writer validates headers without spoiling the archive", async () => {
  const writer = new TarWriter();
  const archive = bytesOf(writer.readable);
  await assertRejects(() => writer.addEntry(file("a\0b", 0)), TypeError);
  await assertRejects(() => writer.addEntry(file("", 0)), TypeError);
  await assertRejects(
    () => writer.addEntry(file("a", -1)),
    Error,
    /size must be a non-negative safe integer, got -1/,
  );
  await assertRejects(() => writer.addEntry(file("a", 0, { mode: 0o10000000 })), RangeError);
  await assertRejects(() => writer.addEntry(file("a", 0, { mtime: NaN })), RangeError);
  await assertRejects(
    () => writer.addEntry(file("a", 2), new Uint8Array(3)),
    Error,
    /3 bytes but the header size is 2/,
  );
  await assertRejects(() => writer.addEntry(file("a", 2)), Error, /body is missing/);
  await assertRejects(
    () => writer.addEntry({ path: "d", type: "directory", size: 1, mode: 0o755, mtime: 0 }),
    RangeError,
  );
  await assertRejects(
    () => writer.addEntry({ path: "l", type: "symlink", size: 0, mode: 0, mtime: 0 }),
    TypeError,
  );
  await assertRejects(
    () => writer.addEntry({ path: "x", type: "fifo" as "file", size: 0, mode: 0, mtime: 0 }),
    TypeError,
  );
  await writer.addEntry(file("ok", 2), encoder.encode("ok"));
  await writer.close();
  await assertRejects(() => writer.addEntry(file("late", 0)), Error, /closed/);
  const read = await readAll(await archive);
  assertEquals(read.map((entry) => entry.header.path), ["ok"]);
});

Deno.test("tar writer aborts the archive when a stream body has the wrong length", async () => {
  for (const chunks of [[new Uint8Array(5)], [new Uint8Array(5), new Uint8Array(10)]]) {
    const writer = new TarWriter();
    const archive = bytesOf(writer.readable);
    await assertRejects(
      () => writer.addEntry(file("a", 10), ReadableStream.from(chunks)),
      RangeError,
    );
    await assertRejects(
      () => archive,
      RangeError,
      undefined,
      "the consumer sees the failure, not a short archive",
    );
    await assertRejects(() => writer.addEntry(file("b", 0)), TypeError);
    await assertRejects(() => writer.close());
  }
});

Deno.test("tar writer applies backpressure: it reads a body only as fast as the archive is consumed", async () => {
  const writer = new TarWriter();
  let pulled = 0;
  const chunk = 64 * 1024;
  const total = 200;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.enqueue(new Uint8Array(chunk));
      if (++pulled === total) controller.close();
    },
  }, { highWaterMark: 0 });
  const adding = writer.addEntry(file("big", chunk * total), body);
  const reader = writer.readable.getReader();
  let received = 0;
  for (let i = 0; i < 20; i++) {
    const { value } = await reader.read();
    received += value!.length;
    // Let any eager producer run ahead if it could.
    for (let j = 0; j < 5; j++) await new Promise((resolve) => setTimeout(resolve, 0));
    assert(pulled <= i + 3, `after ${i + 1} reads the body was pulled ${pulled} times`);
  }
  const closing = writer.close();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    received += value.length;
  }
  await adding;
  await closing;
  assertStrictEquals(received, 512 + chunk * total + 1024);
});

Deno.test("tar reads GNU tar's own pax, gnu and ustar archives", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const deep = `${"p".repeat(80)}/${"q".repeat(60)}`; // splits into ustar prefix + name
    const long = "F".repeat(120); // needs PAX or a GNU long name
    await Deno.mkdir(`${dir}/src/${deep}`, { recursive: true });
    await Deno.writeTextFile(`${dir}/src/${deep}/file with spaces`, "content");
    await Deno.writeTextFile(`${dir}/src/${long}`, "long");
    await Deno.symlink("../" + "T".repeat(150), `${dir}/src/sym`);
    for (const format of ["pax", "gnu", "ustar"]) {
      if (format === "ustar") {
        await Deno.remove(`${dir}/src/sym`);
        await Deno.remove(`${dir}/src/${long}`);
      }
      const made = await gnuTar([
        "--format=" + format,
        "-cf",
        `${dir}/${format}.tar`,
        "-C",
        `${dir}/src`,
        ".",
      ]);
      assertEquals(made.code, 0, new TextDecoder().decode(made.stderr));
      using archive = await Deno.open(`${dir}/${format}.tar`);
      const seen: string[] = [];
      for await (const entry of readTar(archive.readable)) {
        const body = await new Response(entry.body).text();
        seen.push(
          `${entry.header.type} ${entry.header.path} ${entry.header.linkTarget ?? ""}${body}`,
        );
      }
      const expected = [
        "directory . ",
        `directory ./${"p".repeat(80)} `,
        `directory ./${deep} `,
        `file ./${deep}/file with spaces content`,
      ];
      if (format !== "ustar") {
        expected.push(`symlink ./sym ../${"T".repeat(150)}`, `file ./${long} long`);
      }
      assertEquals(seen.sort(), expected.sort(), format);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tar reads a non-UTF-8 long name from a GNU tar pax archive as raw bytes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A 130-byte name with an invalid UTF-8 byte: GNU tar stores it in a PAX record with hdrcharset=BINARY.
    const made = await new Deno.Command("sh", {
      args: [
        "-c",
        `mkdir "$1/src" && printf hi > "$1/src/$(printf "%0130d\\377" 0)" && ` +
        `LC_ALL=C tar --format=pax -cf "$1/a.tar" -C "$1/src" .`,
        "sh",
        dir,
      ],
      stderr: "piped",
    }).output();
    assertEquals(made.code, 0, new TextDecoder().decode(made.stderr));
    using archive = await Deno.open(`${dir}/a.tar`);
    const paths: (string | Uint8Array)[] = [];
    for await (const entry of readTar(archive.readable)) {
      paths.push(entry.header.path);
      await entry.body.cancel();
    }
    assertEquals(paths.length, 2);
    const name = paths[1]!;
    assert(name instanceof Uint8Array, "not valid UTF-8, so it stays bytes");
    assertEquals(
      name,
      concat([encoder.encode("./" + "0".repeat(130)), new Uint8Array([0xff])]),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
