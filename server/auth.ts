/**
 * Authentication of a daemon's WebSocket upgrade request, before the upgrade.
 *
 * A daemon sends its credential as `Authorization: Bearer <credential>` on the upgrade request. The controller
 * accepts a shared token (compared in constant time), a JWT signed with EdDSA (Ed25519) or ES256 (P-256), or
 * whatever a custom hook decides. A refused request learns nothing about why; the reason goes to `onFailure`
 * for the logs.
 *
 * @module
 */

import { createHash, createPublicKey, timingSafeEqual } from "node:crypto";
import { registerHeaderCheck } from "./_header_auth.ts";
import {
  createLocalJWKSet,
  importSPKI,
  jwtVerify,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
} from "jose";

/**
 * Who a request was authenticated as.
 *
 * @example An identity from a JWT
 * ```ts
 * import type { Identity } from "./auth.ts";
 * const identity: Identity = { subject: "daemon-1", method: "jwt", claims: { sub: "daemon-1" } };
 * console.assert(identity.subject === "daemon-1");
 * ```
 */
export interface Identity {
  /**
   * The authenticated subject. For a JWT this is its `sub` claim; for the shared token it is `"token"`; with
   * no authentication configured it is `"anonymous"`.
   */
  subject: string;
  /** Which method accepted the request. */
  method: "none" | "token" | "jwt" | "custom";
  /** The verified JWT claims (for `method: "jwt"`), or whatever a custom hook attached. */
  claims?: Record<string, unknown>;
}

/**
 * A JSON Web Key Set (RFC 7517 section 5): public keys, each usually with a `kid` that tokens name in their
 * header. Private key members (`d`) are refused.
 *
 * @example A set with one Ed25519 key
 * ```ts
 * import type { JsonWebKeySet } from "./auth.ts";
 * const set: JsonWebKeySet = {
 *   keys: [{ kty: "OKP", crv: "Ed25519", x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", kid: "k1" }],
 * };
 * console.assert(set.keys.length === 1);
 * ```
 */
export interface JsonWebKeySet {
  /** The keys. */
  keys: (JsonWebKey & { kid?: string })[];
}

/** A JWT signature algorithm that {@linkcode createAuthenticator} accepts. */
export type JwtAlgorithm = "EdDSA" | "ES256";

/**
 * How to verify JWT bearer credentials.
 *
 * @example Verify with a JWKS
 * ```ts
 * import type { JwtOptions } from "./auth.ts";
 * const options: JwtOptions = {
 *   key: { keys: [] },
 *   audience: "sandd",
 *   issuer: "https://issuer.example",
 * };
 * console.assert(options.audience === "sandd");
 * ```
 */
export interface JwtOptions {
  /**
   * The verification key: a public `CryptoKey` (Ed25519 or ECDSA P-256), a JSON Web Key Set whose key is chosen
   * by the token's `kid` header, or a PEM-encoded SPKI public key (`-----BEGIN PUBLIC KEY-----`).
   */
  key: CryptoKey | JsonWebKeySet | string;
  /**
   * The signature algorithms to accept. `none` and HMAC algorithms are never accepted.
   *
   * @default {["EdDSA", "ES256"]}
   */
  algorithms?: JwtAlgorithm[];
  /** The expected `aud` claim: the token must name at least one of these. Not checked when omitted. */
  audience?: string | string[];
  /** The expected `iss` claim: the token must carry one of these. Not checked when omitted. */
  issuer?: string | string[];
  /**
   * Clock skew tolerated when checking `exp`, `nbf` and `iat`, in seconds.
   *
   * @default {5}
   */
  clockToleranceSeconds?: number;
  /**
   * Whether a token without an `exp` claim is refused. Tokens that never expire cannot be revoked by time.
   *
   * @default {true}
   */
  requireExpiration?: boolean;
}

/**
 * Which authentication methods to accept. With several methods configured, a request is accepted if any one
 * of them accepts it. With none configured, every request is accepted as
 * `{ subject: "anonymous", method: "none" }`.
 *
 * @example A shared token with failure logging
 * ```ts
 * import type { AuthOptions } from "./auth.ts";
 * const options: AuthOptions = {
 *   token: "a-long-random-secret",
 *   onFailure: (reason) => console.warn(`refused daemon: ${reason}`),
 * };
 * console.assert(options.token !== undefined);
 * ```
 */
export interface AuthOptions {
  /**
   * A shared secret that daemons send as `Authorization: Bearer <token>`. Accepted requests get the identity
   * `{ subject: "token", method: "token" }`. Must be non-empty, without whitespace or control characters.
   */
  token?: string;
  /** Accept JWT bearer credentials verified with these options. */
  jwt?: JwtOptions;
  /**
   * A custom hook: return an identity to accept the request or `null` to refuse it. A hook that throws counts
   * as a refusal. The method of the returned identity is reported as `"custom"`.
   */
  authenticate?: (request: Request) => Identity | null | Promise<Identity | null>;
  /**
   * Called with the reason a request was refused, for logging. The reason never contains the credential.
   * Errors thrown by this callback are ignored.
   */
  onFailure?: (reason: string) => void;
}

/**
 * Decides whether an upgrade request may proceed. Resolves to the identity, or to `null` to refuse the request
 * (answer it with 401). Never rejects.
 */
export type Authenticator = (request: Request) => Promise<Identity | null>;

/**
 * A daemon could not be authenticated. The server throws or reports this; the authenticator itself only
 * resolves to `null`.
 *
 * @example Refuse a request
 * ```ts
 * import { AuthenticationError } from "./auth.ts";
 * const error = new AuthenticationError("Daemon 'worker-1' was refused");
 * console.assert(error.code === "UNAUTHENTICATED");
 * ```
 */
export class AuthenticationError extends Error {
  /** Stable error code. */
  readonly code: "UNAUTHENTICATED" = "UNAUTHENTICATED";
  /**
   * Make an authentication error.
   *
   * @param message What was refused. Do not include the credential or why it was wrong.
   * @param options Standard error options (`cause`).
   */
  constructor(message: string = "Authentication failed", options?: ErrorOptions) {
    super(message, options);
    this.name = "AuthenticationError";
  }
}

/** Longest `Authorization` header looked at; longer ones are refused without parsing. */
const MAX_AUTHORIZATION_LENGTH = 16 * 1024;
const ALL_ALGORITHMS: readonly JwtAlgorithm[] = ["EdDSA", "ES256"];
const TOKEN_PATTERN = /^[\x21-\x7e]+$/;
const BEARER_PATTERN = /^Bearer +([\x21-\x7e]+) *$/i;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

type Method = (
  request: () => Request,
  credential: string | undefined,
) => Promise<Identity | string>;

/**
 * Build an authenticator from options. Options are validated now; bad ones throw.
 *
 * @param options Which methods to accept.
 * @returns A function that resolves to the identity of a request, or `null` to refuse it.
 * @throws {TypeError} If an option has the wrong type or is empty (an empty token, a malformed key).
 * @throws {RangeError} If `clockToleranceSeconds` is negative or not finite.
 *
 * @example Accept a shared token
 * ```ts
 * import { createAuthenticator } from "./auth.ts";
 * const authenticate = createAuthenticator({ token: "s3cret-token" });
 * const good = new Request("http://localhost/", { headers: { authorization: "Bearer s3cret-token" } });
 * const bad = new Request("http://localhost/", { headers: { authorization: "Bearer guess" } });
 * console.assert((await authenticate(good))?.method === "token");
 * console.assert((await authenticate(bad)) === null);
 * ```
 *
 * @example Accept EdDSA JWTs whose subject is the daemon id
 * ```ts
 * import { createAuthenticator } from "./auth.ts";
 * import { generateKeyPair, SignJWT } from "jose";
 * const { publicKey, privateKey } = await generateKeyPair("EdDSA");
 * const authenticate = createAuthenticator({ jwt: { key: publicKey, audience: "sandd" } });
 * const jwt = await new SignJWT({}).setProtectedHeader({ alg: "EdDSA" }).setSubject("worker-1")
 *   .setAudience("sandd").setExpirationTime("5m").sign(privateKey);
 * const request = new Request("http://localhost/", { headers: { authorization: `Bearer ${jwt}` } });
 * console.assert((await authenticate(request))?.subject === "worker-1");
 * ```
 */
export function createAuthenticator(options: AuthOptions): Authenticator {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`Authentication options must be an object, got ${String(options)}`);
  }
  const { onFailure } = options;
  if (onFailure !== undefined && typeof onFailure !== "function") {
    throw new TypeError(`Option 'onFailure' must be a function, got ${typeof onFailure}`);
  }
  const methods: [string, Method][] = [];
  if (options.token !== undefined) methods.push(["token", tokenMethod(options.token)]);
  if (options.jwt !== undefined) methods.push(["jwt", jwtMethod(options.jwt)]);
  if (options.authenticate !== undefined) {
    methods.push(["custom", customMethod(options.authenticate)]);
  }
  if (methods.length === 0) {
    const open: Authenticator = () => Promise.resolve({ subject: "anonymous", method: "none" });
    registerHeaderCheck(open, () => Promise.resolve({ subject: "anonymous", method: "none" }));
    return open;
  }
  function refuse(reason: string): null {
    try {
      onFailure?.(reason);
    } catch {
      // A logging callback must not turn a refusal into an error.
    }
    return null;
  }
  // The check itself needs only the Authorization header; a custom hook gets the Request (`request()`).
  const check = async (
    header: string | null,
    request: () => Request,
  ): Promise<Identity | null> => {
    let credential: string | undefined;
    let headerProblem: string | undefined;
    {
      if (header === null) {
        headerProblem = "missing Authorization header";
      } else if (header.length > MAX_AUTHORIZATION_LENGTH) {
        headerProblem = `Authorization header too long (${header.length} characters)`;
      } else {
        const match = BEARER_PATTERN.exec(header);
        if (match === null) headerProblem = "Authorization header is not 'Bearer <credential>'";
        else credential = match[1];
      }
    }
    const reasons: string[] = [];
    for (const [name, method] of methods) {
      try {
        const result = await method(request, credential);
        if (typeof result !== "string") return result;
        reasons.push(`${name}: ${result}`);
      } catch (error) {
        reasons.push(`${name}: ${describe(error)}`);
      }
    }
    if (headerProblem !== undefined) reasons.unshift(headerProblem);
    return refuse(reasons.join("; "));
  };
  const authenticator: Authenticator = (request) => {
    let header: string | null;
    try {
      header = request.headers.get("authorization");
    } catch (error) {
      return Promise.resolve(refuse(`cannot read request headers: ${describe(error)}`));
    }
    return check(header, () => request);
  };
  registerHeaderCheck(authenticator, check);
  return authenticator;
}

function tokenMethod(token: unknown): Method {
  if (typeof token !== "string") {
    throw new TypeError(`Option 'token' must be a string, got ${typeof token}`);
  }
  if (token.length === 0) throw new TypeError("Option 'token' must not be empty");
  if (!TOKEN_PATTERN.test(token)) {
    throw new TypeError(
      "Option 'token' must contain only visible ASCII characters (no spaces or control characters)",
    );
  }
  const expected = sha256(token);
  return (_request, credential) => {
    if (credential === undefined) return Promise.resolve("no bearer credential");
    // Hashing first makes both sides the same length, so the comparison time does not depend on the token.
    const matches = timingSafeEqual(sha256(credential), expected);
    return Promise.resolve(
      matches ? { subject: "token", method: "token" } : "token does not match",
    );
  };
}

function sha256(text: string): Uint8Array {
  return createHash("sha256").update(text, "utf8").digest();
}

function jwtMethod(options: JwtOptions): Method {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`Option 'jwt' must be an object, got ${String(options)}`);
  }
  const algorithms = validateAlgorithms(options.algorithms);
  const verifyOptions: JWTVerifyOptions = {
    requiredClaims: options.requireExpiration === false ? ["sub"] : ["sub", "exp"],
  };
  const tolerance = options.clockToleranceSeconds ?? 5;
  if (typeof tolerance !== "number" || !Number.isFinite(tolerance) || tolerance < 0) {
    throw new RangeError(
      `Option 'jwt.clockToleranceSeconds' must be a non-negative finite number, got ${
        String(tolerance)
      }`,
    );
  }
  verifyOptions.clockTolerance = tolerance;
  if (options.requireExpiration !== undefined && typeof options.requireExpiration !== "boolean") {
    throw new TypeError(
      `Option 'jwt.requireExpiration' must be a boolean, got ${typeof options.requireExpiration}`,
    );
  }
  if (options.audience !== undefined) {
    verifyOptions.audience = validateClaimList("jwt.audience", options.audience);
  }
  if (options.issuer !== undefined) {
    verifyOptions.issuer = validateClaimList("jwt.issuer", options.issuer);
  }
  const key = resolveKey(options.key, algorithms);
  verifyOptions.algorithms = key.algorithms;
  return async (_request, credential) => {
    if (credential === undefined) return "no bearer credential";
    if (!JWT_SHAPE.test(credential)) return "credential is not a compact JWT";
    const { payload } = await jwtVerify(credential, key.getKey, verifyOptions);
    const subject = payload.sub;
    if (typeof subject !== "string" || subject.length === 0) return "JWT 'sub' claim is empty";
    return { subject, method: "jwt", claims: { ...payload } };
  };
}

function validateAlgorithms(value: unknown): JwtAlgorithm[] {
  if (value === undefined) return [...ALL_ALGORITHMS];
  if (!Array.isArray(value) || value.length === 0) {
    throw new TypeError(
      `Option 'jwt.algorithms' must be a non-empty array, got ${JSON.stringify(value)}`,
    );
  }
  for (const algorithm of value) {
    if (!ALL_ALGORITHMS.includes(algorithm)) {
      throw new TypeError(
        `Option 'jwt.algorithms' may contain only "EdDSA" and "ES256", got ${
          JSON.stringify(algorithm)
        }`,
      );
    }
  }
  return [...new Set(value as JwtAlgorithm[])];
}

function validateClaimList(name: string, value: unknown): string | string[] {
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0 || list.some((item) => typeof item !== "string" || item.length === 0)) {
    throw new TypeError(
      `Option '${name}' must be a non-empty string or array of them, got ${JSON.stringify(value)}`,
    );
  }
  return value as string | string[];
}

interface ResolvedKey {
  getKey: JWTVerifyGetKey;
  algorithms: JwtAlgorithm[];
}

function resolveKey(key: unknown, algorithms: JwtAlgorithm[]): ResolvedKey {
  if (typeof key === "string") return resolvePemKey(key, algorithms);
  if (key instanceof CryptoKey) return resolveCryptoKey(key, algorithms);
  if (typeof key === "object" && key !== null && "keys" in key) {
    return resolveKeySet(key as JsonWebKeySet, algorithms);
  }
  throw new TypeError(
    "Option 'jwt.key' must be a CryptoKey, a JSON Web Key Set ({ keys: [...] }) or a PEM public key, " +
      `got ${key === null ? "null" : typeof key}`,
  );
}

function restrict(alg: JwtAlgorithm, algorithms: JwtAlgorithm[], what: string): JwtAlgorithm[] {
  if (!algorithms.includes(alg)) {
    throw new TypeError(
      `Option 'jwt.key' is ${what} (${alg}), which option 'jwt.algorithms' (${
        algorithms.join(", ")
      }) does not allow`,
    );
  }
  return [alg];
}

function resolveCryptoKey(key: CryptoKey, algorithms: JwtAlgorithm[]): ResolvedKey {
  if (key.type !== "public") {
    throw new TypeError(`Option 'jwt.key' must be a public key, got a ${key.type} key`);
  }
  const algorithm = key.algorithm as { name: string; namedCurve?: string };
  let alg: JwtAlgorithm;
  if (algorithm.name === "Ed25519") alg = "EdDSA";
  else if (algorithm.name === "ECDSA" && algorithm.namedCurve === "P-256") alg = "ES256";
  else {
    throw new TypeError(
      `Option 'jwt.key' must be an Ed25519 or ECDSA P-256 key, got ${algorithm.name}${
        algorithm.namedCurve ? ` ${algorithm.namedCurve}` : ""
      }`,
    );
  }
  return {
    getKey: () => Promise.resolve(key),
    algorithms: restrict(alg, algorithms, "a CryptoKey"),
  };
}

function resolvePemKey(pem: string, algorithms: JwtAlgorithm[]): ResolvedKey {
  if (!pem.trimStart().startsWith("-----BEGIN PUBLIC KEY-----")) {
    throw new TypeError(
      "Option 'jwt.key' as a string must be a PEM SPKI public key starting with " +
        `'-----BEGIN PUBLIC KEY-----', got ${JSON.stringify(pem.slice(0, 40))}`,
    );
  }
  let alg: JwtAlgorithm;
  try {
    const parsed = createPublicKey(pem);
    const type = parsed.asymmetricKeyType;
    const curve = parsed.asymmetricKeyDetails?.namedCurve;
    if (type === "ed25519") alg = "EdDSA";
    else if (type === "ec" && (curve === "prime256v1" || curve === "P-256")) alg = "ES256";
    else throw new TypeError(`unsupported key type ${type}${curve ? ` ${curve}` : ""}`);
  } catch (error) {
    throw new TypeError(
      `Option 'jwt.key' must be an Ed25519 or ECDSA P-256 PEM public key: ${describe(error)}`,
      { cause: error },
    );
  }
  let imported: Promise<CryptoKey> | undefined;
  return {
    getKey: () => imported ??= importSPKI(pem, alg),
    algorithms: restrict(alg, algorithms, "a PEM key"),
  };
}

function resolveKeySet(set: JsonWebKeySet, algorithms: JwtAlgorithm[]): ResolvedKey {
  if (!Array.isArray(set.keys) || set.keys.length === 0) {
    throw new TypeError(
      "Option 'jwt.key' as a JSON Web Key Set must have a non-empty 'keys' array",
    );
  }
  set.keys.forEach((jwk, index) => {
    if (typeof jwk !== "object" || jwk === null || typeof jwk.kty !== "string") {
      throw new TypeError(`Option 'jwt.key' has a malformed key at keys[${index}]`);
    }
    if ("d" in jwk) {
      throw new TypeError(
        `Option 'jwt.key' has a private key at keys[${index}]; pass only public keys`,
      );
    }
  });
  let getKey: JWTVerifyGetKey;
  try {
    getKey = createLocalJWKSet(set as Parameters<typeof createLocalJWKSet>[0]);
  } catch (error) {
    throw new TypeError(`Option 'jwt.key' is not a valid JSON Web Key Set: ${describe(error)}`, {
      cause: error,
    });
  }
  return { getKey, algorithms };
}

function customMethod(hook: unknown): Method {
  if (typeof hook !== "function") {
    throw new TypeError(`Option 'authenticate' must be a function, got ${typeof hook}`);
  }
  const authenticate = hook as NonNullable<AuthOptions["authenticate"]>;
  return async (request) => {
    const identity = await authenticate(request());
    if (identity === null || identity === undefined) return "custom hook refused the request";
    if (
      typeof identity !== "object" || typeof identity.subject !== "string" ||
      identity.subject.length === 0
    ) {
      return "custom hook returned an identity without a subject";
    }
    const result: Identity = { subject: identity.subject, method: "custom" };
    if (identity.claims !== undefined) result.claims = identity.claims;
    return result;
  };
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === "string" ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}
