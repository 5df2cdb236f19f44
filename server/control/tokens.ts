/**
 * The `--client-token-file` format: one client token per line, optionally followed by its scopes.
 *
 * @module
 */

import { type ClientToken, type Scope, SCOPES } from "./options.ts";

/**
 * Parse a client token file: one `TOKEN [scope,scope,...]` per line (no scopes: all of them); blank lines and
 * lines starting with `#` are ignored. Tokens are named `line-<n>` after their line, for the audit trail.
 *
 * @example Parse two tokens
 * ```ts
 * import { parseClientTokens } from "./tokens.ts";
 * const tokens = parseClientTokens("# ops\nops-0123456789abcdef\nro-0123456789abcdef read\n");
 * console.assert(tokens.length === 2 && tokens[1]!.scopes![0] === "read");
 * ```
 *
 * @param text The file's contents.
 * @returns The tokens.
 * @throws {SyntaxError} For a malformed line, naming its line number.
 */
export function parseClientTokens(text: string): ClientToken[] {
  if (typeof text !== "string") {
    throw new TypeError(`Client token file text must be a string, got ${typeof text}`);
  }
  const tokens: ClientToken[] = [];
  const seen = new Set<string>();
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    const n = index + 1;
    if (line === "" || line.startsWith("#")) return;
    const parts = line.split(/[ \t]+/);
    if (parts.length > 2) {
      throw new SyntaxError(
        `Line ${n}: expected 'TOKEN [scope,scope]', got ${parts.length} fields (scopes are comma-separated)`,
      );
    }
    const token = parts[0]!;
    if (!/^[\x21-\x7e]{16,4096}$/.test(token)) {
      throw new SyntaxError(
        `Line ${n}: a token must be 16 to 4096 printable characters, got ${token.length} characters`,
      );
    }
    if (seen.has(token)) throw new SyntaxError(`Line ${n}: this token is listed twice`);
    seen.add(token);
    const entry: ClientToken = { token, name: `line-${n}` };
    if (parts[1] !== undefined) {
      const scopes: Scope[] = [];
      for (const scope of parts[1].split(",")) {
        if (!SCOPES.includes(scope as Scope)) {
          throw new SyntaxError(
            `Line ${n}: unknown scope ${JSON.stringify(scope)} (expected ${SCOPES.join(", ")})`,
          );
        }
        if (!scopes.includes(scope as Scope)) scopes.push(scope as Scope);
      }
      entry.scopes = scopes;
    }
    tokens.push(entry);
  });
  return tokens;
}
