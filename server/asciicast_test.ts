import {
  assert,
  assertEquals,
  assertRejects,
  assertStrictEquals,
  assertThrows,
} from "../tests/_assert.ts";
import { AsciicastWriter } from "./asciicast.ts";

type Event = [number, "o" | "i" | "r", string];

async function readCast(
  path: string,
): Promise<{ header: Record<string, unknown>; events: Event[] }> {
  const text = await Deno.readTextFile(path);
  assert(text.endsWith("\n"));
  const [header, ...events] = text.slice(0, -1).split("\n").map((line) => JSON.parse(line));
  for (const event of events) {
    assert(Array.isArray(event) && event.length === 3, JSON.stringify(event));
    assertEquals(typeof event[0], "number");
    assert(["o", "i", "r"].includes(event[1]));
    assertEquals(typeof event[2], "string");
  }
  return { header, events };
}

function outputOf(events: Event[]): string {
  return events.filter((e) => e[1] === "o").map((e) => e[2]).join("");
}

const encoder = new TextEncoder();

// Multi-byte characters of every UTF-8 length, escape sequences, and a CR LF.
const SAMPLE = "héllo ✓ wörld 🎉\x1b[1;31mred\x1b[0m 日本語\r\n$ ";

function installed(command: string): boolean {
  const { success } = new Deno.Command("sh", {
    args: ["-c", `command -v ${command}`],
    stdout: "null",
    stderr: "null",
  }).outputSync();
  return success;
}

const hasAsciinema = installed("asciinema") && installed("script");
if (!hasAsciinema) {
  console.log(
    "asciicast_test: 'asciinema' or 'script' is not installed; the asciinema cat comparison is skipped " +
      "(apt-get install -y asciinema)",
  );
}

/** `asciinema cat` (v2) insists on a controlling terminal, so run it under `script` for a pty. */
async function asciinemaCat(path: string): Promise<Uint8Array> {
  const quoted = `'${path.replaceAll("'", `'\\''`)}'`;
  const { success, stdout, stderr } = await new Deno.Command("script", {
    args: ["-qec", `asciinema cat ${quoted}`, "/dev/null"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(success, new TextDecoder().decode(stderr));
  return stdout;
}

Deno.test("header and events round-trip with an injected clock", async () => {
  const path = await Deno.makeTempFile({ suffix: ".cast" });
  try {
    let time = 1_700_000_000_123;
    {
      await using cast = await AsciicastWriter.open(path, {
        cols: 80,
        rows: 24,
        title: "worker-1: bash",
        env: { SHELL: "/bin/bash", TERM: "xterm-256color" },
        now: () => time,
      });
      cast.output(encoder.encode("$ "));
      time += 1500.25;
      cast.input(encoder.encode("ls\r"));
      time += 0.5;
      cast.output(encoder.encode("ls\r\nfile\r\n"));
      time += 1000;
      cast.resize(132, 43);
      time -= 5000; // a clock that steps back does not make time run backwards
      cast.output(encoder.encode("after"));
    }
    const { header, events } = await readCast(path);
    assertEquals(header, {
      version: 2,
      width: 80,
      height: 24,
      timestamp: 1_700_000_000,
      title: "worker-1: bash",
      env: { SHELL: "/bin/bash", TERM: "xterm-256color" },
    });
    assertEquals(events, [
      [0, "o", "$ "],
      [1.50025, "i", "ls\r"],
      [1.50075, "o", "ls\r\nfile\r\n"],
      [2.50075, "r", "132x43"],
      [2.50075, "o", "after"],
    ]);
    assertEquals((await Deno.stat(path)).mode! & 0o777, 0o600);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("multi-byte characters split across chunks at every boundary are kept whole", async () => {
  const path = await Deno.makeTempFile({ suffix: ".cast" });
  try {
    const bytes = encoder.encode(SAMPLE);
    {
      await using cast = await AsciicastWriter.open(path, { cols: 80, rows: 24 });
      // One byte at a time: every multi-byte character is split.
      for (const byte of bytes) cast.output(Uint8Array.of(byte));
      cast.output(bytes.subarray(0, 2)); // "h" + first byte of "é"
      cast.input(encoder.encode("✓").subarray(0, 1)); // input has its own decoder
      cast.output(bytes.subarray(2));
      cast.input(encoder.encode("✓").subarray(1));
    }
    const { events } = await readCast(path);
    assertStrictEquals(outputOf(events), SAMPLE + SAMPLE);
    assert(!outputOf(events).includes("\ufffd"));
    assertEquals(events.filter((e) => e[1] === "i").map((e) => e[2]), ["✓"]);
    // Bytes that only start a character produce no event.
    const decoded = events.filter((e) => e[1] === "o").length;
    assert(decoded < bytes.length + 2, `${decoded} output events`);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("an incomplete character at close becomes U+FFFD; invalid bytes too", async () => {
  const path = await Deno.makeTempFile({ suffix: ".cast" });
  try {
    const cast = await AsciicastWriter.open(path, { cols: 10, rows: 5 });
    cast.output(Uint8Array.of(0x61, 0xff, 0x62));
    cast.output(encoder.encode("🎉").subarray(0, 3));
    await cast.close();
    await cast.close(); // idempotent
    cast.output(encoder.encode("ignored after close"));
    const { events } = await readCast(path);
    assertEquals(outputOf(events), "a\ufffdb\ufffd");
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("arguments are validated before the file is opened", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/x.cast`;
    await assertRejects(() => AsciicastWriter.open(path, { cols: 0, rows: 24 }), RangeError);
    await assertRejects(() => AsciicastWriter.open(path, { cols: 80, rows: 1.5 }), Error, /1\.5/);
    await assertRejects(() => AsciicastWriter.open(path, { cols: 80, rows: 70_000 }), RangeError);
    await assertRejects(() => AsciicastWriter.open("", { cols: 80, rows: 24 }), TypeError);
    await assertRejects(
      () =>
        AsciicastWriter.open(path, {
          cols: 80,
          rows: 24,
          env: { TERM: 1 as unknown as string },
        }),
      Error,
      /env\.TERM/,
    );
    await assertRejects(
      () => AsciicastWriter.open(path, { cols: 80, rows: 24, title: 5 as unknown as string }),
      TypeError,
    );
    await assertRejects(() => Deno.stat(path), Deno.errors.NotFound);
    await assertRejects(
      () => AsciicastWriter.open(`${dir}/missing/x.cast`, { cols: 80, rows: 24 }),
      Deno.errors.NotFound,
    );
    await using cast = await AsciicastWriter.open(path, { cols: 80, rows: 24 });
    assertThrows(() => cast.resize(0, 10), RangeError);
    assertThrows(() => cast.output("text" as unknown as Uint8Array), TypeError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("records a real process's output", async () => {
  const path = await Deno.makeTempFile({ suffix: ".cast" });
  try {
    const script =
      `printf 'héllo 🎉\\r\\n'; i=0; while [ $i -lt 200 ]; do printf '日本語 line %d\\r\\n' $i; i=$((i+1)); done`;
    const child = new Deno.Command("sh", { args: ["-c", script], stdout: "piped" }).spawn();
    const chunks: Uint8Array[] = [];
    {
      await using cast = await AsciicastWriter.open(path, { cols: 80, rows: 24, title: "sh" });
      for await (const chunk of child.stdout) {
        chunks.push(chunk);
        cast.output(chunk);
      }
      assert((await child.status).success);
    }
    const expected = new TextDecoder().decode(
      new Uint8Array(await new Blob(chunks as BlobPart[]).arrayBuffer()),
    );
    const { events } = await readCast(path);
    assertStrictEquals(outputOf(events), expected);
    assert(expected.endsWith("日本語 line 199\r\n"));
    for (let i = 1; i < events.length; i++) assert(events[i]![0] >= events[i - 1]![0]);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test({
  name: "asciinema cat prints exactly the recorded output",
  ignore: !hasAsciinema,
  async fn() {
    const path = await Deno.makeTempFile({ suffix: ".cast" });
    try {
      const bytes = encoder.encode(SAMPLE);
      {
        await using cast = await AsciicastWriter.open(path, { cols: 80, rows: 24 });
        for (let i = 0; i < bytes.length; i += 3) cast.output(bytes.subarray(i, i + 3));
        cast.input(encoder.encode("typed input is not printed"));
        cast.resize(100, 30);
        cast.output(encoder.encode("end\r\n"));
      }
      const printed = new TextDecoder().decode(await asciinemaCat(path));
      assertEquals(printed, `${SAMPLE}end\r\n`);
    } finally {
      await Deno.remove(path);
    }
  },
});

Deno.test({
  name: "a write error surfaces from open and leaks no file",
  ignore: Deno.build.os !== "linux",
  async fn() {
    // Writing to /dev/full fails with ENOSPC.
    await assertRejects(() => AsciicastWriter.open("/dev/full", { cols: 80, rows: 24 }));
  },
});
