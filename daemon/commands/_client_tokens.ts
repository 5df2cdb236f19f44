// `--client-token-file`: one `TOKEN [scope,scope]` per line. Interim parser until the control API's own
// `parseClientTokens` (server/control/tokens.ts) is merged; same format and rules.

const SCOPES = ["read", "exec", "files", "admin"];

/** One client token of the file. */
export interface ClientTokenLine {
  token: string;
  scopes?: string[];
  name: string;
}

/** Parse the file; throws a SyntaxError naming the line of a malformed one. */
export function parseClientTokenFile(text: string): ClientTokenLine[] {
  const tokens: ClientTokenLine[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    const n = index + 1;
    if (line === "" || line.startsWith("#")) return;
    const parts = line.split(/[ \t]+/);
    if (parts.length > 2) throw new SyntaxError(`Line ${n}: expected 'TOKEN [scope,scope]'`);
    const token = parts[0]!;
    if (!/^[\x21-\x7e]{16,4096}$/.test(token)) {
      throw new SyntaxError(`Line ${n}: a token must be 16 to 4096 printable characters`);
    }
    const entry: ClientTokenLine = { token, name: `line-${n}` };
    if (parts[1] !== undefined) {
      const scopes = parts[1].split(",");
      const bad = scopes.find((s) => !SCOPES.includes(s));
      if (bad !== undefined) throw new SyntaxError(`Line ${n}: unknown scope '${bad}'`);
      entry.scopes = scopes;
    }
    tokens.push(entry);
  });
  return tokens;
}
