// Client authentication of the control API: scopes, refusals, the separation of client and daemon credentials
// (both directions, with real requests and a real daemon), the failure limit, listen-time checks, the token file
// parser, and the OpenAPI document against the router.
import { generateKeyPair, SignJWT } from "jose";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStrictEquals,
  assertStringIncludes,
  assertThrows,
} from "./_assert.ts";
import { TestDaemon } from "./_daemon.ts";
import { call, codeOf, startApiWorker } from "./_control.ts";
import { parseClientTokens, Server } from "../mod.ts";
import { ROUTES } from "../server/control/_router.ts";
import openapi from "../server/control/openapi.json" with { type: "json" };

const ADMIN = "admin-token-0123456789";
const READ = "read-token-0123456789";
const EXEC = "exec-token-0123456789";
const FILES = "files-token-0123456789";
const DAEMON = "daemon-token-0123456789";

const TOKENS = [
  { token: ADMIN, name: "admin", scopes: ["admin" as const] },
  { token: READ, name: "reader", scopes: ["read" as const] },
  { token: EXEC, name: "runner", scopes: ["exec" as const] },
  { token: FILES, name: "mover", scopes: ["files" as const] },
];

Deno.test("control auth: each scope opens its routes and nothing else (403 FORBIDDEN)", async () => {
  await using w = await startApiWorker("auth-scopes", { control: { tokens: TOKENS } });
  const d = `${w.base}/daemons/auth-scopes`;
  const probes: { scope: string; run: (token: string) => Promise<number> }[] = [
    { scope: "read", run: async (t) => (await call(`${w.base}/daemons`, { token: t })).status },
    { scope: "read", run: async (t) => (await call(`${d}/processes`, { token: t })).status },
    { scope: "read", run: async (t) => (await call(`${d}/fs/stat?path=/`, { token: t })).status },
    {
      scope: "exec",
      run: async (t) =>
        (await call(`${d}/exec`, { method: "POST", json: { command: "true" }, token: t })).status,
    },
    {
      scope: "exec",
      run: async (t) =>
        (await call(`${w.base}/broadcast`, { method: "POST", json: { command: "true" }, token: t }))
          .status,
    },
    {
      scope: "files",
      run: async (t) => (await call(`${d}/files?path=/etc/hostname`, { token: t })).status,
    },
    {
      scope: "files",
      run: async (t) =>
        (await call(`${d}/fs/mkdir`, {
          method: "POST",
          json: { path: `/tmp/sandd-auth-${crypto.randomUUID()}` },
          token: t,
        })).status,
    },
  ];
  const holders: Record<string, string> = { read: READ, exec: EXEC, files: FILES };
  for (const probe of probes) {
    for (const [scope, token] of Object.entries(holders)) {
      const status = await probe.run(token);
      if (scope === probe.scope) {
        assert(status < 300, `${scope} token on a ${probe.scope} route: ${status}`);
      } else {
        assertStrictEquals(status, 403, `${scope} token on a ${probe.scope} route`);
      }
    }
    assert((await probe.run(ADMIN)) < 300, `admin on a ${probe.scope} route`);
  }
  const forbidden = await call(`${d}/exec`, {
    method: "POST",
    json: { command: "true" },
    token: READ,
  });
  assertStrictEquals(codeOf(forbidden), "FORBIDDEN");
  assertStringIncludes((forbidden.body as { message: string }).message, "exec");
  // The document needs no token.
  assertStrictEquals((await call(`${w.base}/openapi.json`)).status, 200);
});

Deno.test("control auth: missing, unknown and malformed tokens get 401 UNAUTHORIZED", async () => {
  await using w = await startApiWorker("auth-401", { control: { tokens: TOKENS } });
  for (
    const headers of [
      {},
      { authorization: "Bearer nope-nope-nope-nope" },
      {
        authorization: `Basic ${btoa(`x:${ADMIN}`)}`,
      },
      { authorization: `Bearer ${ADMIN} extra` },
      { authorization: `Bearer ${ADMIN}x` },
    ]
  ) {
    const r = await call(`${w.base}/daemons`, { headers });
    assertStrictEquals(r.status, 401, JSON.stringify(headers));
    assertStrictEquals(codeOf(r), "UNAUTHORIZED");
    assertMatch(r.headers.get("www-authenticate") ?? "", /^Bearer/);
  }
  // A refused request's body is not acted on.
  const r = await call(`${w.base}/daemons/auth-401/exec`, {
    method: "POST",
    json: { command: "touch /tmp/should-not-exist-sandd" },
  });
  assertStrictEquals(r.status, 401);
});

Deno.test("control auth: a daemon's shared token never authorizes the API", async () => {
  await using w = await startApiWorker("auth-dtok", {
    token: DAEMON,
    control: { tokens: TOKENS },
  }, ["--token", DAEMON]);
  // The token works for daemons (one is connected with it) and not for the API.
  assertStrictEquals(w.server.daemonCount, 1);
  const r = await call(`${w.base}/daemons`, { token: DAEMON });
  assertStrictEquals(r.status, 401);
});

Deno.test("control auth: a daemon's JWT never authorizes the API", async () => {
  const { publicKey, privateKey } = await generateKeyPair("EdDSA");
  const jwt = await new SignJWT({}).setProtectedHeader({ alg: "EdDSA" }).setSubject("auth-jwt")
    .setExpirationTime("5m").sign(privateKey);
  await using server = await Server.listen({
    port: 0,
    jwt: { key: publicKey },
    control: { tokens: TOKENS },
  });
  const base = `http://127.0.0.1:${server.port}/api/v1`;
  const r = await call(`${base}/daemons`, { token: jwt });
  assertStrictEquals(r.status, 401);
});

Deno.test("control auth: a client token never registers a daemon, with or without daemon auth", async () => {
  for (const daemonToken of [DAEMON, undefined]) {
    await using server = await Server.listen({
      port: 0,
      ...(daemonToken ? { token: daemonToken } : {}),
      control: { tokens: TOKENS },
    });
    // The raw upgrade request with a client token is refused before the upgrade.
    const raw = await fetch(`http://127.0.0.1:${server.port}/ws`, {
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    await raw.body?.cancel();
    assertStrictEquals(raw.status, 401);
    // A real daemon configured with the client token does not get in.
    const daemon = new TestDaemon({
      id: "auth-cli-as-daemon",
      url: server.url,
      env: { SANDD_TOKEN: ADMIN },
    });
    try {
      await daemon.waitForLog("401");
      assertStrictEquals(server.daemonCount, 0);
    } finally {
      await daemon.stop();
    }
  }
});

Deno.test("control auth: repeated failures from one address are limited (429 RATE_LIMITED)", async () => {
  await using w = await startApiWorker("auth-429", {
    control: { tokens: TOKENS },
    authFailureLimit: { rate: 0.01, burst: 3 },
  });
  const statuses: number[] = [];
  for (let i = 0; i < 5; i++) {
    statuses.push((await call(`${w.base}/daemons`, { token: `bad-token-${i}-0123456789` })).status);
  }
  assertEquals(statuses, [401, 401, 401, 429, 429]);
  const limited = await call(`${w.base}/daemons`, { token: "bad-token-x-0123456789" });
  assertStrictEquals(codeOf(limited), "RATE_LIMITED");
  assert(Number(limited.headers.get("retry-after")) >= 1);
  // A valid token is never refused because of others' failures.
  assertStrictEquals((await call(`${w.base}/daemons`, { token: READ })).status, 200);
});

Deno.test("control auth: the listen options are checked before the socket opens", async () => {
  await assertRejects(
    () => Server.listen({ port: 0, hostname: "0.0.0.0", control: true }),
    TypeError,
    "loopback",
  );
  const open = await Server.listen({ port: 0, hostname: "0.0.0.0", control: { insecure: true } });
  await open.close();
  const bad: [unknown, string][] = [
    [{ tokens: [{ token: DAEMON }] }, "differ"],
    [{ tokens: [{ token: "short" }] }, "control.tokens[0].token"],
    [{ tokens: [{ token: ADMIN, scopes: ["root"] }] }, "unknown scope"],
    [{ tokens: [{ token: ADMIN, extra: 1 }] }, "unknown field 'extra'"],
    [{ tokens: [{ token: ADMIN }, { token: ADMIN }] }, "twice"],
    [{ tokens: [{ token: ADMIN, name: "a" }, { token: READ, name: "a" }] }, "used twice"],
    [{ tokenz: [] }, "unknown option 'tokenz'"],
    [{ insecure: "yes" }, "control.insecure"],
    ["on", "control must be true or an object"],
  ];
  for (const [control, message] of bad) {
    await assertRejects(
      () => Server.listen({ port: 0, token: DAEMON, control: control as true }),
      Error,
      message,
    );
  }
});

Deno.test("control auth: parseClientTokens reads TOKEN [scopes] lines and names bad lines", () => {
  const tokens = parseClientTokens(
    `# operators\n\n${ADMIN}\n  ${READ}   read \n${EXEC} exec,files\n`,
  );
  assertEquals(tokens, [
    { token: ADMIN, name: "line-3" },
    { token: READ, name: "line-4", scopes: ["read"] },
    { token: EXEC, name: "line-5", scopes: ["exec", "files"] },
  ]);
  assertThrows(() => parseClientTokens(`${ADMIN}\nshort`), SyntaxError, "Line 2");
  assertThrows(
    () => parseClientTokens(`${ADMIN} read,root`),
    SyntaxError,
    'Line 1: unknown scope "root"',
  );
  assertThrows(() => parseClientTokens(`${ADMIN} read exec`), SyntaxError, "Line 1");
  assertThrows(() => parseClientTokens(`${ADMIN}\n${ADMIN}`), SyntaxError, "Line 2");
  assertEquals(parseClientTokens("\n# nothing\n"), []);
});

Deno.test("control auth: the OpenAPI document lists exactly the router's routes, with their scopes", async () => {
  assertMatch(openapi.openapi, /^3\.1\.\d+$/);
  const documented = new Set<string>();
  const paths = openapi.paths as Record<string, Record<string, { "x-sandd-scope"?: string }>>;
  for (const [path, methods] of Object.entries(paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      documented.add(`${method.toUpperCase()} ${path}`);
      const route = ROUTES.find((r) =>
        `/api/v1${r.path}` === path && r.method === method.toUpperCase()
      );
      if (route) {
        assertStrictEquals(operation["x-sandd-scope"] ?? null, route.scope, `${method} ${path}`);
      }
    }
  }
  const routed = new Set(ROUTES.map((r) => `${r.method} /api/v1${r.path}`));
  assertEquals(
    [...routed].filter((r) => !documented.has(r)),
    [],
    "routes missing from the document",
  );
  assertEquals(
    [...documented].filter((r) => !routed.has(r)),
    [],
    "documented routes the router lacks",
  );
  // Every $ref resolves.
  const text = JSON.stringify(openapi);
  for (const [, ref] of text.matchAll(/"\$ref":"#\/components\/(\w+)\/(\w+)"/g)) {
    void ref;
  }
  for (const match of text.matchAll(/"\$ref":"#\/components\/(\w+)\/(\w+)"/g)) {
    const section = (openapi.components as Record<string, Record<string, unknown>>)[match[1]!];
    assert(section?.[match[2]!] !== undefined, `unresolved ${match[0]}`);
  }
  // And it is what the server serves.
  await using w = await startApiWorker("auth-openapi");
  const served = await call(`${w.base}/openapi.json`);
  assertEquals(served.body, openapi);
});
