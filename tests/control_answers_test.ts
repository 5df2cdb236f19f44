// The control API's JSON answers on the wire: a small answer is `application/json` marked `no-transform` (so Deno
// does not compress it for a client that accepts gzip), a large one is `application/json` without the mark. The
// answers are built so Deno takes its fast path for them (see `json` in server/control/_daemons.ts); this checks
// that what the client gets stayed the same.
import { assertEquals } from "./_assert.ts";
import { Server } from "../mod.ts";

/** One request on a raw socket: the answer's head lines, lower-cased names. */
async function head(port: number, path: string): Promise<Map<string, string>> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const request = `GET ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\naccept-encoding: gzip\r\n` +
      "connection: close\r\n\r\n";
    await conn.write(new TextEncoder().encode(request));
    let text = "";
    const buffer = new Uint8Array(64 * 1024);
    while (!text.includes("\r\n\r\n")) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    const lines = text.slice(0, text.indexOf("\r\n\r\n")).split("\r\n");
    const out = new Map<string, string>([[":status", lines[0]!.slice(9, 12)]]);
    for (const line of lines.slice(1)) {
      const at = line.indexOf(":");
      out.set(line.slice(0, at).toLowerCase(), line.slice(at + 1).trim());
    }
    return out;
  } finally {
    conn.close();
  }
}

Deno.test("control API: a small JSON answer is application/json, no-transform and not compressed", async () => {
  await using server = await Server.listen({ port: 0, control: true });
  const answer = await head(server.port, "/api/v1/daemons");
  assertEquals(answer.get(":status"), "200");
  assertEquals(answer.get("content-type"), "application/json");
  assertEquals(answer.get("cache-control"), "no-transform");
  assertEquals(answer.get("content-encoding"), undefined);
});

Deno.test("control API: an error answer is application/json with its status", async () => {
  await using server = await Server.listen({ port: 0, control: true });
  const answer = await head(server.port, "/api/v1/daemons/nobody");
  assertEquals(answer.get(":status"), "404");
  assertEquals(answer.get("content-type"), "application/json");
});
