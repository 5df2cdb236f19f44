// Client authentication of the control API: bearer tokens compared in constant time (over their SHA-256, so
// neither the length nor the content leaks through timing), scopes, and the guard that keeps client tokens off
// the daemon endpoint.
import { headerOf, type HttpRequest } from "../_http1_request.ts";
import { createHash, timingSafeEqual } from "node:crypto";
import type { Authenticator } from "../auth.ts";
import { authenticateHeader, registerHeaderCheck } from "../_header_auth.ts";
import type { ClientIdentity } from "./_context.ts";
import { type ClientToken, type Scope, SCOPES } from "./options.ts";

interface Entry {
  digest: Uint8Array;
  identity: ClientIdentity;
}

function digest(token: string): Uint8Array {
  return createHash("sha256").update(token).digest();
}

/** The bearer token of a request, or null. */
export function bearer(request: HttpRequest): string | null {
  return bearerOf(headerOf(request, "authorization"));
}

/** The credential of an Authorization header's value, if it is `Bearer <credential>`. */
function bearerOf(header: string | null): string | null {
  if (header === null) return null;
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  return match ? match[1]! : null;
}

export class ClientAuth {
  readonly #entries: Entry[];
  /** Whether no tokens are configured (every request gets every scope). */
  readonly open: boolean;

  constructor(tokens: readonly ClientToken[]) {
    this.open = tokens.length === 0;
    this.#entries = tokens.map((t, i) => ({
      digest: digest(t.token),
      identity: {
        name: t.name ?? `token-${i + 1}`,
        scopes: new Set<Scope>(
          t.scopes === undefined || t.scopes.length === 0 || t.scopes.includes("admin")
            ? SCOPES
            : t.scopes,
        ),
      },
    }));
  }

  /** The client a request authenticates as, or null (no or unknown token). */
  authenticate(request: HttpRequest): ClientIdentity | null {
    if (this.open) return ANONYMOUS;
    const token = bearer(request);
    if (token === null || token.length > 4096) return null;
    const presented = digest(token);
    let found: ClientIdentity | null = null;
    // Compare with every entry, whatever matched, so the time does not say which one did.
    for (const entry of this.#entries) {
      if (timingSafeEqual(presented, entry.digest)) found = entry.identity;
    }
    return found;
  }

  /** Whether a token is a client token (for the daemon endpoint's guard). */
  isClientToken(token: string): boolean {
    if (this.open) return false;
    const presented = digest(token);
    let found = false;
    for (const entry of this.#entries) {
      if (timingSafeEqual(presented, entry.digest)) found = true;
    }
    return found;
  }
}

const ANONYMOUS: ClientIdentity = { name: "anonymous", scopes: new Set(SCOPES) };

/**
 * Wrap the daemon endpoint's authenticator so a request presenting a client token is refused, even when daemons
 * need no credential: a client's token never registers a daemon.
 */
export function refuseClientTokens(auth: ClientAuth, inner: Authenticator): Authenticator {
  if (auth.open) return inner;
  const wrapped: Authenticator = (request: Request) => {
    const token = bearer(request);
    if (token !== null && auth.isClientToken(token)) return Promise.resolve(null);
    return inner(request);
  };
  // The same by the header alone, for a daemon's connect (server/_header_auth.ts).
  registerHeaderCheck(wrapped, (authorization, request) => {
    const token = bearerOf(authorization);
    if (token !== null && auth.isClientToken(token)) return Promise.resolve(null);
    return authenticateHeader(inner, authorization, request);
  });
  return wrapped;
}
