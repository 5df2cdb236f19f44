// The console's HTTP side without a browser: what is served to whom. With client tokens nothing but the page's
// files is served before sign-in; a session cookie is HttpOnly, SameSite=Strict, scoped to /console; cross-site
// requests and forged state changes are refused; recordings cannot name paths outside their directory; a read-only
// client cannot type into a terminal.
import { assert, assertEquals } from "./_assert.ts";
import { Server } from "../mod.ts";

const TOKEN = "console-http-token-0123456789";
const READER = "console-http-reader-0123456789";

async function status(response: Response): Promise<[number, string | undefined]> {
  const text = await response.text();
  let code: string | undefined;
  try {
    code = JSON.parse(text).code;
  } catch {
    code = undefined;
  }
  return [response.status, code];
}

Deno.test("console over HTTP: sign-in, cookie, scopes, cross-site refusals, recordings confined", async () => {
  const recordings = await Deno.makeTempDir({ prefix: "sandd-casts-" });
  await Deno.writeTextFile(`${recordings}/a.cast`, '{"version":2,"width":80,"height":24}\n');
  await using server = await Server.listen({
    port: 0,
    control: {
      tokens: [{ token: TOKEN, name: "ops" }, { token: READER, scopes: ["read"], name: "ro" }],
    },
    console: { recordings },
  });
  const http = `http://127.0.0.1:${server.port}`;
  try {
    // The page and its assets are public (no secrets in them), with a strict CSP; everything else needs a session.
    const page = await fetch(`${http}/console/`);
    assertEquals(page.status, 200);
    assert(page.headers.get("content-security-policy")!.includes("default-src 'self'"));
    assert((await page.text()).includes("/console/app.js"));
    const xterm = await fetch(`${http}/console/vendor/xterm.mjs`);
    assertEquals(xterm.headers.get("content-type"), "text/javascript");
    await xterm.body?.cancel();
    assertEquals(await status(await fetch(`${http}/console/api/v1/daemons`)), [
      401,
      "UNAUTHORIZED",
    ]);
    assertEquals(await status(await fetch(`${http}/console/recordings`)), [401, "UNAUTHORIZED"]);
    assertEquals(await status(await fetch(`${http}/console/session`)), [401, "UNAUTHORIZED"]);
    // Sign-in: a forged cross-site POST is refused before the token is looked at.
    const signIn = (token: string, headers: Record<string, string> = {}) =>
      fetch(`${http}/console/session`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-sandd-console": "1", ...headers },
        body: JSON.stringify({ token }),
      });
    assertEquals(
      await status(await signIn(TOKEN, { origin: "https://evil.example" })),
      [403, "FORBIDDEN"],
    );
    assertEquals(
      await status(
        await fetch(`${http}/console/session`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ token: TOKEN }),
        }),
      ),
      [403, "FORBIDDEN"],
    );
    assertEquals(await status(await signIn("not-a-token-0123456789")), [401, "UNAUTHORIZED"]);
    // A sign-in body over 8 KiB is refused as soon as it is: declared, or streamed in chunks that never end.
    assertEquals(await status(await signIn("x".repeat(9000))), [413, "TOO_LARGE"]);
    {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      try {
        const encoder = new TextEncoder();
        await conn.write(encoder.encode(
          `POST /console/session HTTP/1.1\r\nhost: 127.0.0.1:${server.port}\r\n` +
            "content-type: application/json\r\nx-sandd-console: 1\r\ntransfer-encoding: chunked\r\n\r\n",
        ));
        for (let i = 0; i < 16; i++) {
          await conn.write(encoder.encode(`400\r\n${"a".repeat(1024)}\r\n`));
        }
        const buffer = new Uint8Array(4096);
        const n = await conn.read(buffer);
        assert(
          new TextDecoder().decode(buffer.subarray(0, n ?? 0)).startsWith("HTTP/1.1 413 "),
          "an endless chunked sign-in body is answered 413",
        );
      } finally {
        conn.close();
      }
    }
    const ok = await signIn(TOKEN);
    assertEquals(ok.status, 200);
    await ok.body?.cancel();
    const cookie = ok.headers.get("set-cookie")!;
    assert(/^sandd_console=[A-Za-z0-9_-]{43};/.test(cookie), cookie);
    for (const part of ["HttpOnly", "SameSite=Strict", "Path=/console"]) {
      assert(cookie.includes(part), cookie);
    }
    const jar = { cookie: cookie.split(";")[0]! };
    const me = await (await fetch(`${http}/console/session`, { headers: jar })).json();
    assertEquals([me.name, me.open, me.recordings], ["ops", false, true]);
    // The API through the console: the session's token is added; the client's own headers cannot add another.
    const daemons = await fetch(`${http}/console/api/v1/daemons`, { headers: jar });
    assertEquals(daemons.status, 200);
    assertEquals((await daemons.json()).daemons, []);
    // State changes need the console's header (a cross-site form cannot send it).
    assertEquals(
      await status(
        await fetch(`${http}/console/api/v1/broadcast`, {
          method: "POST",
          headers: { ...jar, "content-type": "application/json" },
          body: JSON.stringify({ command: "true" }),
        }),
      ),
      [403, "FORBIDDEN"],
    );
    // Recordings: listed, served, and nothing outside the directory.
    const list = await (await fetch(`${http}/console/recordings`, { headers: jar })).json();
    assertEquals(list.recordings.map((r: { name: string }) => r.name), ["a.cast"]);
    const cast = await fetch(`${http}/console/recordings/a.cast`, { headers: jar });
    assertEquals(cast.status, 200);
    await cast.body?.cancel();
    for (
      const name of [
        "..%2Fa.cast",
        "x%2F..%2Fa.cast",
        "..%2F..%2Fetc%2Fpasswd",
        "a.txt",
        "a.cast%00",
      ]
    ) {
      assertEquals(
        await status(await fetch(`${http}/console/recordings/${name}`, { headers: jar })),
        [404, "NOT_FOUND"],
        name,
      );
    }
    // A WebSocket upgrade through the API forwarder is refused (terminals have their own route).
    assertEquals(
      await status(
        await fetch(`${http}/console/api/v1/daemons/w1/terminal`, {
          headers: { ...jar, upgrade: "websocket" },
        }),
      ),
      [400, "BAD_REQUEST"],
    );
    // A read-only client cannot open or type into a terminal through the console.
    const reader = await signIn(READER);
    const readerJar = { cookie: reader.headers.get("set-cookie")!.split(";")[0]! };
    await reader.body?.cancel();
    const ws = {
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
    };
    assertEquals(
      await status(
        await fetch(`${http}/console/terminal/w1?cols=80&rows=24`, {
          headers: { ...readerJar, ...ws },
        }),
      ),
      [403, "FORBIDDEN"],
    );
    // The reader's session cannot borrow another client's token through its own headers.
    assertEquals(
      await status(
        await fetch(`${http}/console/api/v1/broadcast`, {
          method: "POST",
          headers: {
            ...readerJar,
            "x-sandd-console": "1",
            "content-type": "application/json",
            authorization: `Bearer ${TOKEN}`,
          },
          body: JSON.stringify({ command: "true" }),
        }),
      ),
      [403, "FORBIDDEN"],
    );
    // Signing out ends the session.
    const out = await fetch(`${http}/console/session`, {
      method: "DELETE",
      headers: { ...jar, "x-sandd-console": "1" },
    });
    assertEquals(out.status, 200);
    await out.body?.cancel();
    assertEquals(await status(await fetch(`${http}/console/session`, { headers: jar })), [
      401,
      "UNAUTHORIZED",
    ]);
  } finally {
    await Deno.remove(recordings, { recursive: true });
  }
});

Deno.test("console options are checked before the socket opens; it needs the control API", async () => {
  const refused = async (options: Record<string, unknown>, pattern: string) => {
    try {
      await Server.listen({ port: 0, ...options });
    } catch (error) {
      assert((error as Error).message.includes(pattern), (error as Error).message);
      return;
    }
    throw new Error(`listen accepted ${JSON.stringify(options)}`);
  };
  await refused({ console: true }, "control");
  await refused({ control: true, console: { bogus: 1 } }, "bogus");
  await refused({ control: true, console: { recordings: "" } }, "recordings");
  await refused({ control: true, console: { sessionTtlMs: 5 } }, "sessionTtlMs");
  await refused({ control: true, console: "yes" }, "console");
});
