import {
  assert,
  assertEquals,
  assertMatch,
  assertStrictEquals,
  assertThrows,
} from "../tests/_assert.ts";
import { exportJWK, exportSPKI, generateKeyPair, type JWK, SignJWT } from "jose";
import { AuthenticationError, createAuthenticator, type Identity } from "./auth.ts";

const AUDIENCE = "sandd-controller";
const ISSUER = "https://issuer.test";

function request(authorization?: string): Request {
  const headers = new Headers();
  if (authorization !== undefined) headers.set("authorization", authorization);
  return new Request("http://127.0.0.1/daemon", { headers });
}

function bearer(credential: string): Request {
  return request(`Bearer ${credential}`);
}

const now = () => Math.floor(Date.now() / 1000);

interface SignOptions {
  alg?: string;
  kid?: string;
  sub?: string | null;
  aud?: string | null;
  iss?: string | null;
  exp?: number | null;
  nbf?: number;
}

async function sign(key: CryptoKey, options: SignOptions = {}): Promise<string> {
  const jwt = new SignJWT({}).setProtectedHeader({
    alg: options.alg ?? "EdDSA",
    ...(options.kid === undefined ? {} : { kid: options.kid }),
  }).setIssuedAt();
  if (options.sub !== null) jwt.setSubject(options.sub ?? "worker-1");
  if (options.aud !== null) jwt.setAudience(options.aud ?? AUDIENCE);
  if (options.iss !== null) jwt.setIssuer(options.iss ?? ISSUER);
  if (options.exp !== null) jwt.setExpirationTime(options.exp ?? now() + 300);
  if (options.nbf !== undefined) jwt.setNotBefore(options.nbf);
  return await jwt.sign(key);
}

function base64url(value: unknown): string {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

Deno.test("no options accepts every request anonymously", async () => {
  const authenticate = createAuthenticator({});
  assertEquals(await authenticate(request()), { subject: "anonymous", method: "none" });
  assertEquals(await authenticate(bearer("anything")), {
    subject: "anonymous",
    method: "none",
  });
});

Deno.test("shared token: right token accepted, wrong and missing refused with a reason", async () => {
  const reasons: string[] = [];
  const secret = "c0rrect-horse-battery-staple";
  const authenticate = createAuthenticator({ token: secret, onFailure: (r) => reasons.push(r) });
  assertEquals(await authenticate(bearer(secret)), { subject: "token", method: "token" });
  assertEquals(await authenticate(request(`bearer   ${secret}`)), {
    subject: "token",
    method: "token",
  });
  const refused = [
    request(),
    request(secret),
    request(`Basic ${btoa(`user:${secret}`)}`),
    bearer(""),
    bearer(`${secret}x`),
    bearer(secret.slice(0, -1)),
    bearer("x".repeat(20_000)),
    request(`Bearer ${secret} extra`),
  ];
  let accepted = 0;
  for (const r of refused) if (await authenticate(r) !== null) accepted++;
  assertEquals(accepted, 0);
  assertStrictEquals(reasons.length, refused.length);
  for (const reason of reasons) assert(!reason.includes(secret), reason);
  assertMatch(reasons[0]!, /missing Authorization header/);
  assertMatch(reasons[4]!, /token does not match/);
  assertMatch(reasons[6]!, /too long/);
});

Deno.test("options are validated eagerly", async () => {
  assertThrows(() => createAuthenticator({ token: "" }), TypeError);
  assertThrows(() => createAuthenticator({ token: "has space" }), TypeError);
  assertThrows(() => createAuthenticator({ token: 42 as unknown as string }), TypeError);
  assertThrows(
    () => createAuthenticator({ authenticate: "yes" as unknown as () => null }),
    TypeError,
  );
  assertThrows(
    () => createAuthenticator({ onFailure: 1 as unknown as () => void }),
    TypeError,
  );
  assertThrows(() => createAuthenticator({ jwt: { key: "not a pem" } }), TypeError);
  assertThrows(
    () =>
      createAuthenticator({
        jwt: { key: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n" },
      }),
    TypeError,
  );
  assertThrows(() => createAuthenticator({ jwt: { key: { keys: [] } } }), TypeError);
  assertThrows(
    () => createAuthenticator({ jwt: { key: null as unknown as string } }),
    TypeError,
  );
  const { publicKey, privateKey } = await generateKeyPair("EdDSA", { extractable: true });
  assertThrows(() => createAuthenticator({ jwt: { key: privateKey } }), Error, /public key/);
  assertThrows(
    () => createAuthenticator({ jwt: { key: publicKey, algorithms: ["ES256"] } }),
    Error,
    /does not allow/,
  );
  assertThrows(
    () =>
      createAuthenticator({
        jwt: { key: publicKey, algorithms: ["HS256" as unknown as "EdDSA"] },
      }),
    Error,
    /HS256/,
  );
  assertThrows(() => createAuthenticator({ jwt: { key: publicKey, algorithms: [] } }), TypeError);
  assertThrows(
    () => createAuthenticator({ jwt: { key: publicKey, clockToleranceSeconds: -1 } }),
    RangeError,
  );
  assertThrows(() => createAuthenticator({ jwt: { key: publicKey, audience: "" } }), TypeError);
  assertThrows(() => createAuthenticator({ jwt: { key: publicKey, issuer: [] } }), TypeError);
  const privateJwk = await exportJWK(privateKey);
  assertThrows(
    () => createAuthenticator({ jwt: { key: { keys: [privateJwk] } } }),
    Error,
    /private/,
  );
  const rsa = await generateKeyPair("RS256");
  assertThrows(() => createAuthenticator({ jwt: { key: rsa.publicKey } }), Error, /RSASSA/);
  const rsaPem = await exportSPKI(
    (await generateKeyPair("RS256", { extractable: true })).publicKey,
  );
  assertThrows(() => createAuthenticator({ jwt: { key: rsaPem } }), Error, /rsa/);
});

Deno.test("JWT: good EdDSA and ES256 tokens are accepted with their subject", async () => {
  const ed = await generateKeyPair("EdDSA");
  const ec = await generateKeyPair("ES256");
  for (const [alg, pair] of [["EdDSA", ed], ["ES256", ec]] as const) {
    const authenticate = createAuthenticator({
      jwt: { key: pair.publicKey, audience: AUDIENCE, issuer: ISSUER },
    });
    const identity = await authenticate(
      bearer(await sign(pair.privateKey, { alg, sub: `worker-${alg}` })),
    );
    assertEquals(identity?.subject, `worker-${alg}`);
    assertEquals(identity?.method, "jwt");
    assertStrictEquals(identity?.claims?.aud, AUDIENCE);
    assertStrictEquals(identity?.claims?.iss, ISSUER);
  }
});

Deno.test("JWT: PEM SPKI keys work for both algorithms", async () => {
  for (const alg of ["EdDSA", "ES256"] as const) {
    const pair = await generateKeyPair(alg, { extractable: true });
    const pem = await exportSPKI(pair.publicKey);
    const authenticate = createAuthenticator({ jwt: { key: pem, audience: AUDIENCE } });
    const token = await sign(pair.privateKey, { alg, sub: "pem-daemon" });
    assertEquals((await authenticate(bearer(token)))?.subject, "pem-daemon");
    // Second use goes through the cached imported key.
    assertEquals((await authenticate(bearer(token)))?.subject, "pem-daemon");
  }
});

Deno.test("JWT: bad tokens are all refused", async () => {
  const ed = await generateKeyPair("EdDSA");
  const other = await generateKeyPair("EdDSA");
  const ec = await generateKeyPair("ES256");
  const reasons: string[] = [];
  const authenticate = createAuthenticator({
    jwt: { key: ed.publicKey, audience: AUDIENCE, issuer: ISSUER },
    onFailure: (reason) => reasons.push(reason),
  });
  const good = await sign(ed.privateKey);
  assertEquals((await authenticate(bearer(good)))?.subject, "worker-1");
  const [header, payload, signature] = good.split(".") as [string, string, string];
  const unsignedHeader = base64url({ alg: "none", typ: "JWT" });
  const tamperedPayload = base64url({
    sub: "admin",
    aud: AUDIENCE,
    iss: ISSUER,
    exp: now() + 300,
  });
  const bad: Record<string, string> = {
    expired: await sign(ed.privateKey, { exp: now() - 60 }),
    notYetValid: await sign(ed.privateKey, { nbf: now() + 60 }),
    forged: await sign(other.privateKey),
    wrongAlgorithmKey: await sign(ec.privateKey, { alg: "ES256" }),
    wrongAudience: await sign(ed.privateKey, { aud: "someone-else" }),
    missingAudience: await sign(ed.privateKey, { aud: null }),
    wrongIssuer: await sign(ed.privateKey, { iss: "https://evil.test" }),
    missingSubject: await sign(ed.privateKey, { sub: null }),
    emptySubject: await sign(ed.privateKey, { sub: "" }),
    noExpiration: await sign(ed.privateKey, { exp: null }),
    algNone: `${unsignedHeader}.${payload}.`,
    algNoneWithSignature: `${unsignedHeader}.${payload}.${signature}`,
    tampered: `${header}.${tamperedPayload}.${signature}`,
    truncated: `${header}.${payload}`,
    garbage: "not-a-jwt",
  };
  let accepted = 0;
  for (const token of Object.values(bad)) {
    if (await authenticate(bearer(token)) !== null) accepted++;
  }
  assertEquals(accepted, 0);
  assertStrictEquals(reasons.length, Object.keys(bad).length);
  const byName = Object.fromEntries(Object.keys(bad).map((name, i) => [name, reasons[i]!]));
  assertMatch(byName.expired!, /exp/);
  assertMatch(byName.notYetValid!, /nbf/);
  assertMatch(byName.forged!, /signature/i);
  assertMatch(byName.wrongAudience!, /aud/);
  assertMatch(byName.wrongIssuer!, /iss/);
  assertMatch(byName.missingSubject!, /sub/);
  assertMatch(byName.noExpiration!, /exp/);
  assertMatch(byName.algNone!, /alg/i);
  for (const reason of reasons) assert(!reason.includes(good), reason);
});

Deno.test("JWT: clock tolerance and optional expiration", async () => {
  const ed = await generateKeyPair("EdDSA");
  const strict = createAuthenticator({ jwt: { key: ed.publicKey, clockToleranceSeconds: 0 } });
  const lenient = createAuthenticator({
    jwt: { key: ed.publicKey, clockToleranceSeconds: 120, requireExpiration: false },
  });
  const justExpired = await sign(ed.privateKey, { exp: now() - 30 });
  assertEquals(await strict(bearer(justExpired)), null);
  assertEquals((await lenient(bearer(justExpired)))?.subject, "worker-1");
  const neverExpires = await sign(ed.privateKey, { exp: null });
  assertEquals(await strict(bearer(neverExpires)), null);
  assertEquals((await lenient(bearer(neverExpires)))?.subject, "worker-1");
});

Deno.test("JWT: a JWKS selects the key by kid", async () => {
  const a = await generateKeyPair("EdDSA");
  const b = await generateKeyPair("ES256");
  const c = await generateKeyPair("EdDSA");
  const jwk = async (key: CryptoKey, kid: string): Promise<JWK> => ({
    ...(await exportJWK(key)),
    kid,
  });
  const authenticate = createAuthenticator({
    jwt: {
      key: { keys: [await jwk(a.publicKey, "key-a"), await jwk(b.publicKey, "key-b")] },
      audience: AUDIENCE,
    },
  });
  assertEquals(
    (await authenticate(bearer(await sign(a.privateKey, { kid: "key-a", sub: "via-a" }))))
      ?.subject,
    "via-a",
  );
  assertEquals(
    (await authenticate(
      bearer(await sign(b.privateKey, { alg: "ES256", kid: "key-b", sub: "via-b" })),
    ))?.subject,
    "via-b",
  );
  const refused = [
    // Signed by a but claims to be key-b's (different algorithm), by b with a's kid, unknown kid, unknown key.
    await sign(a.privateKey, { kid: "key-b" }),
    await sign(b.privateKey, { alg: "ES256", kid: "key-a" }),
    await sign(a.privateKey, { kid: "key-z" }),
    await sign(c.privateKey, { kid: "key-a" }),
  ];
  let accepted = 0;
  for (const token of refused) if (await authenticate(bearer(token)) !== null) accepted++;
  assertEquals(accepted, 0);
});

Deno.test("JWT: algorithms option restricts what a JWKS accepts", async () => {
  const ec = await generateKeyPair("ES256");
  const authenticate = createAuthenticator({
    jwt: {
      key: { keys: [{ ...(await exportJWK(ec.publicKey)), kid: "ec" }] },
      algorithms: ["EdDSA"],
    },
  });
  assertEquals(
    await authenticate(bearer(await sign(ec.privateKey, { alg: "ES256", kid: "ec" }))),
    null,
  );
});

Deno.test("custom hook: accepts, refuses, and a throwing hook is a refusal", async () => {
  const reasons: string[] = [];
  const authenticate = createAuthenticator({
    authenticate: (req) => {
      const name = req.headers.get("x-daemon");
      if (name === "boom") throw new Error("hook exploded");
      if (name === "blank") return { subject: "", method: "custom" };
      return name === null ? null : { subject: name, method: "token", claims: { via: "header" } };
    },
    onFailure: (reason) => reasons.push(reason),
  });
  const withHeader = (value: string) =>
    new Request("http://127.0.0.1/", { headers: { "x-daemon": value } });
  const identity: Identity | null = await authenticate(withHeader("alpha"));
  assertEquals(identity, { subject: "alpha", method: "custom", claims: { via: "header" } });
  assertEquals(await authenticate(request()), null);
  assertEquals(await authenticate(withHeader("boom")), null);
  assertEquals(await authenticate(withHeader("blank")), null);
  assertMatch(reasons[1]!, /hook exploded/);
  assertMatch(reasons[2]!, /without a subject/);
});

Deno.test("several methods: any one that succeeds is enough", async () => {
  const ed = await generateKeyPair("EdDSA");
  const reasons: string[] = [];
  const authenticate = createAuthenticator({
    token: "shared-secret",
    jwt: { key: ed.publicKey },
    authenticate: async (req) =>
      req.headers.get("x-ok") === "1"
        ? await Promise.resolve({ subject: "hooked", method: "custom" })
        : null,
    onFailure: (reason) => reasons.push(reason),
  });
  assertEquals((await authenticate(bearer("shared-secret")))?.method, "token");
  assertEquals((await authenticate(bearer(await sign(ed.privateKey))))?.method, "jwt");
  const hooked = new Request("http://127.0.0.1/", { headers: { "x-ok": "1" } });
  assertEquals((await authenticate(hooked))?.method, "custom");
  assertEquals(await authenticate(bearer("wrong")), null);
  assertEquals(reasons.length, 1);
  assertMatch(reasons[0]!, /token: token does not match; jwt: .*; custom: /);
});

Deno.test("a throwing onFailure does not turn a refusal into an error", async () => {
  const authenticate = createAuthenticator({
    token: "secret",
    onFailure: () => {
      throw new Error("logger down");
    },
  });
  assertEquals(await authenticate(bearer("nope")), null);
});

Deno.test("AuthenticationError has a stable code", () => {
  const error = new AuthenticationError("Daemon 'x' refused", { cause: "why" });
  assertEquals(error.code, "UNAUTHENTICATED");
  assertEquals(error.name, "AuthenticationError");
  assertEquals(error.cause, "why");
  assert(error instanceof Error);
});

Deno.test("works on a real upgrade request over a socket", async () => {
  const ed = await generateKeyPair("EdDSA");
  const authenticate = createAuthenticator({ jwt: { key: ed.publicKey } });
  const subjects: string[] = [];
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      const identity = await authenticate(req);
      if (identity === null) return new Response("Unauthorized", { status: 401 });
      subjects.push(identity.subject);
      const { socket, response } = Deno.upgradeWebSocket(req);
      socket.onmessage = (event) => socket.send(event.data);
      return response;
    },
  );
  const url = `ws://127.0.0.1:${server.addr.port}/`;
  const token = await sign(ed.privateKey, { sub: "ws-daemon" });
  const socket = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
  const echoed = await new Promise<string>((resolve, reject) => {
    socket.onopen = () => socket.send("ping");
    socket.onmessage = (event) => resolve(String(event.data));
    socket.onerror = () => reject(new Error("socket error"));
  });
  assertEquals(echoed, "ping");
  const closed = new Promise((resolve) => socket.onclose = resolve);
  socket.close();
  await closed;
  assertEquals(subjects, ["ws-daemon"]);
  const refused = await fetch(url.replace("ws:", "http:"), {
    headers: { authorization: "Bearer forged.token.value" },
  });
  assertEquals(refused.status, 401);
  await refused.body?.cancel();
});
