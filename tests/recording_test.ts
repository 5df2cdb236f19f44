// Shell sessions recorded in asciicast v2 and written to the audit trail, through a real daemon and a real PTY.
import { assert, assertEquals } from "./_assert.ts";
import { type AuditRecord, Server } from "../mod.ts";
import { TestDaemon } from "./_daemon.ts";

function installed(command: string): boolean {
  return new Deno.Command("sh", {
    args: ["-c", `command -v ${command}`],
    stdout: "null",
    stderr: "null",
  })
    .outputSync().success;
}

const hasAsciinema = installed("asciinema") && installed("script");
if (!hasAsciinema) {
  console.log("recording_test: asciinema or script is missing; playback by asciinema is skipped");
}

Deno.test("a shell session is recorded in asciicast v2 and audited", async () => {
  const dir = await Deno.makeTempDir();
  const records: AuditRecord[] = [];
  const server = await Server.listen({ port: 0, audit: (record) => void records.push(record) });
  const daemon = new TestDaemon({ id: "rec", url: server.url });
  try {
    await server.waitForDaemon("rec");
    const cast = `${dir}/session.cast`;
    const sh = await server.shell("rec", {
      command: ["sh", "-c", 'read line; echo "got $line"; stty size; exit 3'],
      cols: 90,
      rows: 30,
      record: cast,
    });
    const text = (async () => {
      let out = "";
      for await (const chunk of sh.output.pipeThrough(new TextDecoderStream())) out += chunk;
      return out;
    })();
    await sh.resize(100, 31);
    await sh.write("héllo\r");
    assertEquals((await sh.exited).exitCode, 3);
    const output = await text;
    assert(output.includes("got héllo"), output);
    await sh.close();

    const lines = (await Deno.readTextFile(cast)).trim().split("\n").map((l) => JSON.parse(l));
    const header = lines[0];
    assertEquals(header.version, 2);
    assertEquals([header.width, header.height], [90, 30]);
    const events = lines.slice(1) as [number, string, string][];
    const outputText = events.filter((e) => e[1] === "o").map((e) => e[2]).join("");
    assert(outputText.includes("got héllo"), outputText);
    assert(events.some((e) => e[1] === "i" && e[2] === "héllo\r"), JSON.stringify(events));
    assert(events.some((e) => e[1] === "r" && e[2] === "100x31"), JSON.stringify(events));
    for (let i = 1; i < events.length; i++) {
      assert(events[i]![0] >= events[i - 1]![0], "times go forward");
    }

    if (hasAsciinema) {
      const played = await new Deno.Command("script", {
        args: ["-qec", `asciinema cat '${cast}'`, "/dev/null"],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert(played.success, new TextDecoder().decode(played.stderr));
      assert(new TextDecoder().decode(played.stdout).includes("got héllo"));
    }

    const shell = records.find((r) => r.action === "shell");
    assert(shell?.ok, JSON.stringify(records));
    assertEquals(shell.daemon, "rec");
    assertEquals(shell.command, ["sh", "-c", 'read line; echo "got $line"; stty size; exit 3']);
    const exit = records.find((r) => r.action === "exit" && r.exitCode === 3);
    assert(exit, JSON.stringify(records));
  } finally {
    await daemon.stop();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
