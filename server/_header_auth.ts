// Authentication by the Authorization header alone, for the controller's own hot path: a daemon's connect. The
// authenticators `createAuthenticator` makes read only that header unless a custom hook is configured, and making
// a `Request` (a `Headers` of every request header) for them cost a daemon's connect more than the whole check
// (see server/_http.ts). The public `Authenticator` still takes a `Request`; this is how the controller calls one
// of ours without it.
import type { Authenticator, Identity } from "./auth.ts";

/** An authenticator's check of an Authorization header; `request` makes the `Request` a custom hook needs. */
export type HeaderAuthenticate = (
  authorization: string | null,
  request: () => Request,
) => Promise<Identity | null>;

const byHeader = new WeakMap<Authenticator, HeaderAuthenticate>();

/** Register the header check of an authenticator made by `createAuthenticator`. */
export function registerHeaderCheck(authenticator: Authenticator, check: HeaderAuthenticate): void {
  byHeader.set(authenticator, check);
}

/**
 * Authenticate by `authorization`: with the header check of one of our authenticators, else (an authenticator
 * the embedding program wrote) with the `Request` that `request` makes.
 */
export function authenticateHeader(
  authenticator: Authenticator,
  authorization: string | null,
  request: () => Request,
): Promise<Identity | null> {
  const check = byHeader.get(authenticator);
  return check ? check(authorization, request) : authenticator(request());
}
