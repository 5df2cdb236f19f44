// Security end to end: authentication before the upgrade, JWT identities bound to daemon ids, TLS with a private
// CA, the daemon's policy, controller rate limits and message bounds, and the audit trail. Real daemons, real
// sockets, real openssl.
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { assert, assertEquals, assertGreater, assertLess, assertRejects } from "./_assert.ts";
import {
  type AuditRecord,
  type DaemonEvent,
  fileAuditSink,
  PolicyError,
  RateLimitedError,
  Server,
  SUBPROTOCOL,
} from "../mod.ts";
import { runDaemonCli, TestDaemon } from "./_daemon.ts";
import { hasOpenssl, makeTestCerts } from "./_certs.ts";
import { sessionOf } from "../server/_process_session.ts";

const TOKEN = "s3cret-token-for-tests-0123456789";

/** Send a raw HTTP upgrade request and return the status code and body. */
async function rawUpgrade(
  port: number,
  headers: Record<string, string>,
  path = "/ws",
): Promise<{ status: number; text: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const lines = [
      `GET ${path} HTTP/1.1`,
      `Host: 127.0.0.1:${port}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version: 13",
      `Sec-WebSocket-Protocol: ${SUBPROTOCOL}`,
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
      "",
      "",
    ];
    await conn.write(new TextEncoder().encode(lines.join("\r\n")));
    const buffer = new Uint8Array(8192);
    let text = "";
    while (!/\r\n\r\n/.test(text) || (text.includes("content-length:") && !complete(text))) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
      if (text.startsWith("HTTP/1.1 101")) break;
    }
    return { status: Number(text.slice(9, 12)), text };
  } finally {
    conn.close();
  }
}

function complete(text: string): boolean {
  const length = Number(/content-length: *(\d+)/i.exec(text)?.[1] ?? 0);
  const body = text.slice(text.indexOf("\r\n\r\n") + 4);
  return new TextEncoder().encode(body).length >= length;
}

/** Open a WebSocket as a daemon would; resolves with whether it opened and how it closed. */
function tryConnect(
  url: string,
  authorization: string | undefined,
  onOpen?: (socket: WebSocket) => void,
  client?: Deno.HttpClient,
): Promise<{ opened: boolean; code: number; reason: string }> {
  return new Promise((resolve) => {
    const socket = new WebSocket(url, {
      protocols: [SUBPROTOCOL],
      headers: authorization === undefined ? {} : { authorization },
      ...(client ? { client } : {}),
    });
    let opened = false;
    socket.onopen = () => {
      opened = true;
      onOpen?.(socket);
    };
    socket.onerror = () => {};
    socket.onclose = (event) => resolve({ opened, code: event.code, reason: event.reason });
  });
}

function hello(id: string): string {
  return JSON.stringify({
    t: "hello",
    id,
    labels: {},
    hostname: "fake",
    platform: "linux",
    arch: "x86_64",
    version: "0.0.0",
    pid: 1,
    processes: 0,
    instance: crypto.randomUUID(),
  });
}

function countConnects(server: Server): { readonly count: number; stop(): void } {
  let count = 0;
  const listener = () => count++;
  server.addEventListener("connect", listener);
  return {
    get count() {
      return count;
    },
    stop: () => server.removeEventListener("connect", listener),
  };
}

Deno.test("an upgrade without credentials gets a bare 401; /health stays open, /stats needs credentials", async () => {
  await using server = await Server.listen({ port: 0, token: TOKEN });
  const missing = await rawUpgrade(server.port, {});
  assertEquals(missing.status, 401);
  assert(!missing.text.toLowerCase().includes("token"), "the 401 leaks a detail");
  assert(missing.text.includes("www-authenticate: Bearer"));
  const wrong = await rawUpgrade(server.port, { Authorization: "Bearer nope" });
  assertEquals(wrong.status, 401);
  assertEquals(
    wrong.text.slice(wrong.text.indexOf("\r\n\r\n") + 4),
    missing.text.slice(missing.text.indexOf("\r\n\r\n") + 4),
  );
  assertEquals((await rawUpgrade(server.port, { Authorization: `Bearer ${TOKEN}` })).status, 101);
  const health = await fetch(`http://127.0.0.1:${server.port}/health`);
  assertEquals(health.status, 200);
  await health.body?.cancel();
  const stats = await fetch(`http://127.0.0.1:${server.port}/stats`);
  assertEquals(stats.status, 401);
  await stats.body?.cancel();
  const authed = await fetch(`http://127.0.0.1:${server.port}/stats`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  assertEquals(authed.status, 200);
  assertEquals((await authed.json()).daemons, 0);
});

Deno.test("shared token: wrong, missing, expired and forged credentials are never accepted", async () => {
  await using server = await Server.listen({ port: 0, token: TOKEN });
  const connects = countConnects(server);
  const { privateKey } = await generateKeyPair("EdDSA");
  const forged = await new SignJWT({}).setProtectedHeader({ alg: "EdDSA" }).setSubject("x")
    .setExpirationTime("5m").sign(privateKey);
  const attempts = [
    undefined,
    "",
    "Bearer",
    "Bearer wrong",
    `Bearer ${TOKEN}x`,
    `Bearer ${TOKEN.slice(0, -1)}`,
    `Basic ${btoa(`user:${TOKEN}`)}`,
    `Bearer ${forged}`,
    `Bearer ${"A".repeat(20_000)}`,
  ];
  for (const authorization of attempts) {
    const result = await tryConnect(server.url, authorization);
    assertEquals(result.opened, false, `accepted ${authorization?.slice(0, 30)}`);
  }
  // Real daemons with bad tokens keep being refused; one with the right token gets in.
  const bad = new TestDaemon({ id: "bad", url: server.url, args: ["--token", "wrong-token"] });
  const good = new TestDaemon({ id: "good", url: server.url, env: { SANDD_TOKEN: TOKEN } });
  try {
    await server.waitForDaemon("good");
    await bad.waitForLog("401");
    assertEquals(server.daemonCount, 1);
    assertEquals(server.daemon("good")?.identity, "token");
    assertEquals((await server.exec("good", "echo in")).stdout, "in\n");
  } finally {
    await Promise.all([bad.stop(), good.stop()]);
  }
  assertEquals(connects.count, 1);
  connects.stop();
});

Deno.test("--token-file is read and trimmed", async () => {
  await using server = await Server.listen({ port: 0, token: TOKEN });
  const file = await Deno.makeTempFile();
  await Deno.writeTextFile(file, `${TOKEN}\n`);
  await using daemon = new TestDaemon({
    id: "file-token",
    url: server.url,
    args: ["--token-file", file],
  });
  try {
    await server.waitForDaemon("file-token");
  } finally {
    await daemon.stop();
    await Deno.remove(file);
  }
});

Deno.test("JWT: EdDSA and ES256 daemons connect as their subject; expired, forged and mis-bound tokens do not", async () => {
  const ed = await generateKeyPair("EdDSA", { extractable: true });
  const es = await generateKeyPair("ES256", { extractable: true });
  const jwks = {
    keys: [
      { ...(await exportJWK(ed.publicKey)), kid: "ed", alg: "EdDSA" },
      { ...(await exportJWK(es.publicKey)), kid: "es", alg: "ES256" },
    ],
  };
  await using server = await Server.listen({
    port: 0,
    jwt: { key: jwks, audience: "sandd", issuer: "test-issuer" },
  });
  const sign = (
    alg: "EdDSA" | "ES256",
    sub: string,
    key: CryptoKey,
    exp: string | number = "5m",
    aud = "sandd",
  ) =>
    new SignJWT({}).setProtectedHeader({ alg, kid: alg === "EdDSA" ? "ed" : "es" }).setSubject(sub)
      .setIssuer("test-issuer").setAudience(aud).setIssuedAt().setExpirationTime(exp).sign(key);
  const connects = countConnects(server);
  const intruder = await generateKeyPair("EdDSA");
  const bad = [
    await sign("EdDSA", "w", ed.privateKey, Math.floor(Date.now() / 1000) - 3600), // expired
    await sign("EdDSA", "w", intruder.privateKey), // forged: right kid, wrong key
    await sign("EdDSA", "w", ed.privateKey, "5m", "someone-else"), // wrong audience
    `${btoa(JSON.stringify({ alg: "none" })).replace(/=+$/, "")}.${
      btoa(JSON.stringify({ sub: "w", aud: "sandd", iss: "test-issuer", exp: 9999999999 })).replace(
        /=+$/,
        "",
      )
    }.`, // alg none
  ];
  for (const token of bad) {
    assertEquals((await tryConnect(server.url, `Bearer ${token}`)).opened, false);
  }
  assertEquals(connects.count, 0);
  // A valid token for one subject cannot say hello as another daemon id: closed with 4001.
  const edToken = await sign("EdDSA", "ed-worker", ed.privateKey);
  const misbound = await tryConnect(
    server.url,
    `Bearer ${edToken}`,
    (s) => s.send(hello("mallory")),
  );
  assertEquals(misbound.code, 4001);
  assertEquals(connects.count, 0);
  const edDaemon = new TestDaemon({ id: "ed-worker", url: server.url, args: ["--token", edToken] });
  const esDaemon = new TestDaemon({
    id: "es-worker",
    url: server.url,
    args: ["--token", await sign("ES256", "es-worker", es.privateKey)],
  });
  const thief = new TestDaemon({ id: "es-thief", url: server.url, args: ["--token", edToken] });
  try {
    assertEquals((await server.waitForDaemon("ed-worker")).identity, "ed-worker");
    assertEquals((await server.waitForDaemon("es-worker")).identity, "es-worker");
    await thief.waitForLog("4001");
    assertEquals((await server.exec("es-worker", "echo es")).stdout, "es\n");
    assertEquals(server.daemonCount, 2);
  } finally {
    await Promise.all([edDaemon.stop(), esDaemon.stop(), thief.stop()]);
  }
  connects.stop();
});

Deno.test("a custom authenticate hook names the identity, which must match the daemon id", async () => {
  await using server = await Server.listen({
    port: 0,
    // The hook gets the whole request (the controller checks its own authenticators by the header alone).
    authenticate: (request) =>
      request.headers.get("authorization") === "Bearer key-for-alpha" &&
        request.headers.get("upgrade")?.toLowerCase() === "websocket" &&
        new URL(request.url).pathname === "/ws"
        ? { subject: "alpha", method: "custom" }
        : null,
  });
  const alpha = new TestDaemon({
    id: "alpha",
    url: server.url,
    args: ["--token", "key-for-alpha"],
  });
  const beta = new TestDaemon({ id: "beta", url: server.url, args: ["--token", "key-for-alpha"] });
  try {
    assertEquals((await server.waitForDaemon("alpha")).identity, "alpha");
    await beta.waitForLog("4001");
    assertEquals(server.daemonCount, 1);
  } finally {
    await Promise.all([alpha.stop(), beta.stop()]);
  }
});

Deno.test({
  name: "wss with a private CA: a daemon trusting it connects, one without it cannot",
  ignore: !(await hasOpenssl()),
  fn: async () => {
    await using certs = await makeTestCerts();
    await using server = await Server.listen({
      port: 0,
      cert: certs.cert,
      key: certs.key,
      token: TOKEN,
    });
    assert(server.url.startsWith("wss://127.0.0.1:"), server.url);
    const trusting = new TestDaemon({
      id: "tls-ok",
      url: server.url,
      args: ["--ca-cert", certs.caFile, "--token", TOKEN],
    });
    const untrusting = new TestDaemon({ id: "tls-no", url: server.url, args: ["--token", TOKEN] });
    try {
      await server.waitForDaemon("tls-ok");
      assertEquals((await server.exec("tls-ok", ["echo", "over tls"])).stdout, "over tls\n");
      await untrusting.waitForLog("Link error");
      assertEquals(server.daemon("tls-no"), undefined);
      // Plain ws:// to a TLS port does not get in either.
      const plain = await tryConnect(server.url.replace("wss:", "ws:"), `Bearer ${TOKEN}`);
      assertEquals(plain.opened, false);
    } finally {
      await Promise.all([trusting.stop(), untrusting.stop()]);
    }
  },
});

Deno.test("policy: allow list refuses shell escapes and path tricks, naming the rule; allowed commands run", async () => {
  await using server = await Server.listen({ port: 0 });
  await using daemon = new TestDaemon({
    id: "allow",
    url: server.url,
    args: ["--allow", "echo", "--allow", "/bin/ls", "--allow", "printf"],
  });
  await server.waitForDaemon("allow");
  assertEquals((await server.exec("allow", "echo hello")).stdout, "hello\n");
  assertEquals((await server.exec("allow", ["echo", "a;b"])).stdout, "a;b\n");
  assertEquals((await server.exec("allow", ["/bin/ls", "/"])).exitCode, 0);
  const refused: [string | string[], string][] = [
    ["echo hi; id", "shellMeta"],
    ["echo hi && id", "shellMeta"],
    ["echo hi || id", "shellMeta"],
    ["echo $(id)", "shellMeta"],
    ["echo `id`", "shellMeta"],
    ["echo hi | sh", "shellMeta"],
    ["echo hi > /tmp/x", "shellMeta"],
    ["echo hi\nid", "shellMeta"],
    ["id", "allow"],
    [["id"], "allow"],
    [["/usr/bin/id"], "allow"],
    [["/bin/../usr/bin/id"], "allow"],
    [["/usr/bin/ls", "/"], "allow"],
    [["sh", "-c", "echo hi"], "allow"],
  ];
  for (const [command, rule] of refused) {
    const error = await assertRejects(() => server.exec("allow", command), PolicyError);
    assertEquals(error.rule, rule, `${JSON.stringify(command)}: ${error.message}`);
    assertEquals(error.code, "POLICY");
  }
  await daemon.waitForLog(`Policy refused "spawn"`);
  assertEquals((await server.exec("allow", "printf ok")).stdout, "ok");
});

Deno.test("policy: deny list catches commands hidden behind ;, &&, $(), wrappers and paths", async () => {
  await using server = await Server.listen({ port: 0 });
  await using _daemon = new TestDaemon({
    id: "deny",
    url: server.url,
    args: ["--deny", "rm", "--deny", "curl *"],
  });
  await server.waitForDaemon("deny");
  const dir = await Deno.makeTempDir();
  const victim = `${dir}/victim`;
  await Deno.writeTextFile(victim, "x");
  try {
    const refused: (string | string[])[] = [
      `rm ${victim}`,
      `echo ok; rm ${victim}`,
      `true && rm ${victim}`,
      `false || rm ${victim}`,
      `echo $(rm ${victim})`,
      `echo \`rm ${victim}\``,
      `/bin/rm ${victim}`,
      `env rm ${victim}`,
      `sh -c 'rm ${victim}'`,
      ["sh", "-c", `rm ${victim}`],
      ["/usr/bin/env", "rm", victim],
      `X=rm; $X ${victim}`,
      "curl http://example.invalid",
    ];
    for (const command of refused) {
      const error = await assertRejects(() => server.exec("deny", command), PolicyError);
      assert(
        error.rule.startsWith("deny:") || error.rule === "shellMeta",
        `${command}: ${error.rule}`,
      );
    }
    assertEquals(await Deno.readTextFile(victim), "x");
    assertEquals((await server.exec("deny", "echo fine && echo twice")).stdout, "fine\ntwice\n");
    assertEquals((await server.exec("deny", ["ls", dir])).stdout, "victim\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy: no shell, timeouts, process count, environment and resource limits", async () => {
  await using server = await Server.listen({ port: 0 });
  await using _daemon = new TestDaemon({
    id: "strict",
    url: server.url,
    env: { SECRET_API_KEY: "hunter2", PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
    args: [
      "--no-shell",
      "--max-timeout",
      "5",
      "--default-timeout",
      "0.3",
      "--max-processes",
      "2",
      "--env-strip",
      "SECRET_*",
      "--env-set",
      "FORCED=yes",
      "--cpu-seconds",
      "7",
    ],
  });
  await server.waitForDaemon("strict");
  assertEquals(
    (await assertRejects(() => server.exec("strict", "echo hi"), PolicyError)).rule,
    "noShell",
  );
  assertEquals(
    (await assertRejects(() => server.exec("strict", ["sh", "-c", "echo hi"]), PolicyError)).rule,
    "noShell",
  );
  assertEquals(
    (await assertRejects(() => server.exec("strict", ["true"], { timeout: 60_000 }), PolicyError))
      .rule,
    "maxTimeoutMs",
  );
  const env =
    (await server.exec("strict", ["env"], { env: { SECRET_TOKEN: "x", MINE: "1" } })).stdout;
  assert(!env.includes("SECRET_"), env);
  assert(env.includes("FORCED=yes\n") && env.includes("MINE=1\n"), env);
  // The CPU limit applies to the child (prlimit), and the pid is the command's own.
  const limits = await server.exec("strict", ["cat", "/proc/self/limits"]);
  assert(/Max cpu time\s+7\s+7\s+seconds/.test(limits.stdout), limits.stdout);
  // The default timeout kills a command that asked for none.
  const sleeper = await server.spawn("strict", ["sleep", "30"], { stdin: false });
  assertEquals((await sleeper.status).timedOut, true);
  const a = await server.spawn("strict", ["sleep", "4"], { stdin: false, timeout: 5_000 });
  const b = await server.spawn("strict", ["sleep", "4"], { stdin: false, timeout: 5_000 });
  assertEquals(
    (await assertRejects(() => server.spawn("strict", ["true"]), PolicyError)).rule,
    "maxProcesses",
  );
  await Promise.all([a.kill("SIGKILL"), b.kill("SIGKILL")]);
  await Promise.all([a.status, b.status]);
  assertEquals((await server.exec("strict", ["echo", "after"])).stdout, "after\n");
});

Deno.test("policy: --no-pty refuses terminals; --policy file with flags overriding it", async () => {
  const file = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(
    file,
    JSON.stringify({ deny: ["rm"], maxTimeoutMs: 60_000, noPty: true }),
  );
  await using server = await Server.listen({ port: 0 });
  await using daemon = new TestDaemon({
    id: "filed",
    url: server.url,
    args: ["--policy", file, "--max-timeout", "1"],
  });
  try {
    await server.waitForDaemon("filed");
    assertEquals((await assertRejects(() => server.shell("filed"), PolicyError)).rule, "noPty");
    assertEquals(
      (await assertRejects(() => server.exec("filed", "rm -f /nonexistent"), PolicyError)).rule,
      "deny:rm",
    );
    const error = await assertRejects(
      () => server.exec("filed", "true", { timeout: 5_000 }),
      PolicyError,
    );
    assertEquals(error.rule, "maxTimeoutMs");
    assert(error.message.includes("1000"), error.message);
    assertEquals((await server.exec("filed", "echo ok", { timeout: 500 })).stdout, "ok\n");
  } finally {
    await daemon.stop();
    await Deno.remove(file);
  }
  // A bad policy file or flag stops the daemon at start with exit code 2, naming what was wrong; a user switch that
  // cannot work here fails at start, not on the first command.
  const refusals: [string[], string | undefined][] = [
    [["--policy", "/nonexistent.json"], "/nonexistent.json"],
    [["--max-processes", "0"], undefined],
    [["--env-set", "NOEQUALS"], undefined],
    [["--run-as", "no-such-user-x9"], "no-such-user-x9"],
  ];
  for (const [flags, named] of refusals) {
    const result = await runDaemonCli(["--server-url", "ws://127.0.0.1:1/ws", ...flags]);
    assertEquals(result.code, 2, `${flags.join(" ")}: ${result.stderr}`);
    if (named) assert(result.stderr.includes(named), result.stderr);
  }
});

Deno.test("rate limits per daemon and overall throw RateLimitedError", async () => {
  await using server = await Server.listen({
    port: 0,
    rateLimit: { perDaemon: { rate: 0.01, burst: 2 }, global: { rate: 0.01, burst: 3 } },
  });
  await using _one = new TestDaemon({ id: "rl-1", url: server.url });
  await using _two = new TestDaemon({ id: "rl-2", url: server.url });
  await Promise.all([server.waitForDaemon("rl-1"), server.waitForDaemon("rl-2")]);
  await server.exec("rl-1", "true");
  const p = await server.spawn("rl-1", "true", { stdin: false });
  await p.status;
  const perDaemon = await assertRejects(() => server.exec("rl-1", "true"), RateLimitedError);
  assertEquals(perDaemon.scope, "key");
  assertGreater(perDaemon.retryAfterMs, 0);
  await server.exec("rl-2", "true");
  const global = await assertRejects(() => server.exec("rl-2", "true"), RateLimitedError);
  assertEquals(global.scope, "global");
  assertEquals(global.code, "RATE_LIMITED");
});

Deno.test("oversized messages close the link with 1009; a silent client is dropped at the handshake timeout", async () => {
  await using server = await Server.listen({
    port: 0,
    token: TOKEN,
    maxMessageBytes: 64 * 1024,
    handshakeTimeoutMs: 300,
  });
  const auth = `Bearer ${TOKEN}`;
  // A huge hello.
  const big = await tryConnect(server.url, auth, (s) => s.send("x".repeat(100_000)));
  assertEquals(big.code, 1009);
  // A connected fake daemon that sends one oversized binary frame.
  const disconnected = new Promise<void>((resolve) =>
    server.addEventListener("disconnect", () => resolve(), { once: true })
  );
  const fake = await tryConnect(server.url, auth, (s) => {
    s.send(hello("fake-big"));
    s.onmessage = () => s.send(new Uint8Array(65 * 1024));
  });
  assertEquals(fake.code, 1009);
  await disconnected;
  // A WebSocket client that never says hello.
  const started = performance.now();
  const silent = await tryConnect(server.url, auth);
  assertEquals(silent.code, 4008);
  assertLess(performance.now() - started, 3_000);
  // A TCP client that never sends a byte does not stop the server from serving or closing.
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  try {
    const health = await fetch(`http://127.0.0.1:${server.port}/health`);
    assertEquals(health.status, 200);
    await health.body?.cancel();
  } finally {
    tcp.close();
  }
});

Deno.test("a daemon that stops reading is dropped when its send buffer passes the bound", async () => {
  await using server = await Server.listen({
    port: 0,
    maxBufferedBytes: 256 * 1024,
    streamWindow: 64 * 1024 * 1024,
    reconnectGraceMs: 100,
  });
  // A fake daemon over raw TCP: handshake, hello, answer the spawn request, then never read again.
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  try {
    await conn.write(new TextEncoder().encode(
      [
        "GET /ws HTTP/1.1",
        `Host: 127.0.0.1:${server.port}`,
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        `Sec-WebSocket-Protocol: ${SUBPROTOCOL}`,
        "",
        "",
      ].join("\r\n"),
    ));
    const reader = new FrameReader(conn);
    await reader.handshake();
    await conn.write(maskedFrame(1, new TextEncoder().encode(hello("sloth"))));
    await server.waitForDaemon("sloth");
    const spawned = server.spawn("sloth", "cat");
    let rid = -1;
    while (rid < 0) {
      const frame = await reader.next();
      const message = JSON.parse(new TextDecoder().decode(frame.payload));
      if (message.t === "req" && message.op === "spawn") rid = message.rid;
    }
    await conn.write(maskedFrame(
      1,
      new TextEncoder().encode(
        JSON.stringify({ t: "res", rid, ok: true, data: { proc: "p-1", pid: 1 } }),
      ),
    ));
    const process = await spawned;
    const gone = new Promise<void>((resolve) =>
      server.addEventListener("disconnect", () => resolve(), { once: true })
    );
    // Now write far more stdin than the kernel buffers hold while the fake reads nothing.
    const writer = sessionOf(process).input!;
    const chunk = new Uint8Array(1024 * 1024);
    const writing = (async () => {
      for (let i = 0; i < 48; i++) await writer.write(chunk);
    })().catch(() => {});
    await gone;
    assertEquals(server.daemon("sloth"), undefined);
    await process.kill("SIGKILL").catch(() => {});
    await writing;
    await process.status.catch(() => {});
  } finally {
    conn.close();
  }
});

Deno.test("the audit trail records exec, spawn, signal, exit, policy refusals and connects as JSON lines", async () => {
  const path = await Deno.makeTempFile({ suffix: ".jsonl" });
  try {
    {
      await using server = await Server.listen({
        port: 0,
        token: TOKEN,
        audit: fileAuditSink(path),
      });
      await using daemon = new TestDaemon({
        id: "audited",
        url: server.url,
        args: ["--token", TOKEN, "--deny", "rm"],
      });
      await server.waitForDaemon("audited");
      await server.exec("audited", "printf hello; exit 3");
      await assertRejects(() => server.exec("audited", "rm -rf /nope"), PolicyError);
      const p = await server.spawn("audited", ["sleep", "30"], { stdin: false });
      await p.kill("SIGTERM");
      await p.status;
      const gone = new Promise<void>((resolve) =>
        server.addEventListener("disconnect", (e) => {
          if ((e as DaemonEvent).daemon.id === "audited") resolve();
        })
      );
      await daemon.stop();
      await gone;
    }
    const records = (await Deno.readTextFile(path)).trim().split("\n").map((line) =>
      JSON.parse(line) as AuditRecord
    );
    for (const record of records) {
      assertEquals(record.daemon, "audited");
      assertEquals(record.identity, "token");
      assert(!Number.isNaN(Date.parse(record.time)));
    }
    const actions = records.map((r) => r.action);
    assertEquals(actions[0], "connect");
    assertEquals(actions.at(-1), "disconnect");
    const execs = records.filter((r) => r.action === "exec");
    assertEquals(execs.length, 2);
    assertEquals(execs[0]!.command, "printf hello; exit 3");
    assertEquals(execs[0]!.exitCode, 3);
    assertEquals(execs[0]!.bytes, 5);
    assertEquals(execs[0]!.ok, true);
    assert((execs[0]!.durationMs ?? -1) >= 0);
    assertEquals(execs[1]!.ok, false);
    assert(execs[1]!.error?.includes("rm"), execs[1]!.error);
    const spawn = records.find((r) => r.action === "spawn")!;
    assertEquals(spawn.command, ["sleep", "30"]);
    const signal = records.find((r) => r.action === "signal") as AuditRecord & { process: string };
    assertEquals(signal.command, "SIGTERM");
    assertEquals(signal.process, (spawn as AuditRecord & { process: string }).process);
    const exit = records.find((r) => r.action === "exit")!;
    assertEquals(exit.exitCode, 143);
  } finally {
    await Deno.remove(path);
  }
});

// --- a minimal WebSocket client over raw TCP, for a peer that must be able to stop reading ---

/** Encode a masked client frame. */
export function maskedFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const length = payload.length;
  const header = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const frame = new Uint8Array(header + 4 + length);
  frame[0] = 0x80 | opcode;
  if (length < 126) frame[1] = 0x80 | length;
  else if (length < 65536) {
    frame[1] = 0x80 | 126;
    new DataView(frame.buffer).setUint16(2, length);
  } else {
    frame[1] = 0x80 | 127;
    new DataView(frame.buffer).setBigUint64(2, BigInt(length));
  }
  const mask = crypto.getRandomValues(new Uint8Array(4));
  frame.set(mask, header);
  for (let i = 0; i < length; i++) frame[header + 4 + i] = payload[i]! ^ mask[i % 4]!;
  return frame;
}

class FrameReader {
  readonly #conn: Deno.Conn;
  #buffer = new Uint8Array(0);

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  async #fill(n: number): Promise<void> {
    while (this.#buffer.length < n) {
      const chunk = new Uint8Array(65536);
      const read = await this.#conn.read(chunk);
      if (read === null) throw new Error("connection closed");
      const next = new Uint8Array(this.#buffer.length + read);
      next.set(this.#buffer);
      next.set(chunk.subarray(0, read), this.#buffer.length);
      this.#buffer = next;
    }
  }

  #take(n: number): Uint8Array {
    const out = this.#buffer.slice(0, n);
    this.#buffer = this.#buffer.slice(n);
    return out;
  }

  async handshake(): Promise<void> {
    while (true) {
      const text = new TextDecoder().decode(this.#buffer);
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0) {
        if (!text.startsWith("HTTP/1.1 101")) {
          throw new Error(`upgrade refused: ${text.slice(0, 40)}`);
        }
        this.#take(end + 4);
        return;
      }
      await this.#fill(this.#buffer.length + 1);
    }
  }

  async next(): Promise<{ opcode: number; payload: Uint8Array }> {
    await this.#fill(2);
    const opcode = this.#buffer[0]! & 0x0f;
    let length = this.#buffer[1]! & 0x7f;
    let header = 2;
    if (length === 126) {
      await this.#fill(4);
      length = new DataView(this.#buffer.buffer, this.#buffer.byteOffset).getUint16(2);
      header = 4;
    } else if (length === 127) {
      await this.#fill(10);
      length = Number(new DataView(this.#buffer.buffer, this.#buffer.byteOffset).getBigUint64(2));
      header = 10;
    }
    await this.#fill(header + length);
    this.#take(header);
    return { opcode, payload: this.#take(length) };
  }
}

Deno.test("an address that keeps failing authentication gets 429 until its budget refills", async () => {
  await using server = await Server.listen({ port: 0, token: "right-token" });
  const statuses: number[] = [];
  for (let i = 0; i < 25; i++) {
    const response = await fetch(`http://127.0.0.1:${server.port}/stats`, {
      headers: { authorization: "Bearer wrong-token" },
    });
    await response.body?.cancel();
    statuses.push(response.status);
  }
  assertEquals(statuses.slice(0, 20), Array(20).fill(401));
  assert(statuses.slice(20).every((s) => s === 429), statuses.join(","));
  // Health stays open.
  const health = await fetch(`http://127.0.0.1:${server.port}/health`);
  assertEquals(health.status, 200);
  await health.body?.cancel();
});
