// Reaching the controller through an egress proxy: which proxy applies to a URL (`--proxy`, `HTTPS_PROXY`,
// `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, as curl reads them), and a TCP tunnel through it: HTTP CONNECT (with basic
// auth) or SOCKS5 (RFC 1928, user/password per RFC 1929; `socks5h://` lets the proxy resolve the name). TLS to the
// controller, when the URL is `wss://`, runs inside the tunnel and checks the controller's own name.

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** A proxy's answer to CONNECT longer than this is refused (a real one is a few hundred bytes). */
const MAX_PROXY_HEAD = 16 * 1024;
/** How long the proxy's part of a connection (its CONNECT answer, its SOCKS5 handshake) may take. */
export const PROXY_HANDSHAKE_TIMEOUT_MS = 10_000;

/** A proxy that cannot be used or that refused the tunnel. */
export class ProxyError extends Error {
  /** Stable code: `PROXY_REFUSED`, `PROXY_AUTH`, `PROXY_PROTOCOL`, `PROXY_UNSUPPORTED`, `PROXY_TIMEOUT`. */
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = "ProxyError";
    this.code = code;
  }
}

/** The proxy URL schemes the daemon speaks. */
const SCHEMES = new Set(["http:", "socks5:", "socks5h:"]);

/**
 * Check a proxy URL given on the command line or in the environment.
 *
 * @param value The URL, e.g. `http://user:pass@proxy:3128` or `socks5h://127.0.0.1:1080`.
 * @param source Where it came from, for the message (`--proxy`, `HTTPS_PROXY`...).
 * @returns The parsed URL.
 * @throws {ProxyError} `PROXY_UNSUPPORTED` for another scheme or a malformed URL.
 */
export function parseProxyUrl(value: string, source: string): URL {
  let url: URL;
  try {
    // curl accepts a bare host:port as an HTTP proxy; so do we.
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`);
  } catch {
    // The text may hold a password (`http://user:pw@host:99999`): show it without the user part.
    throw new ProxyError(
      "PROXY_UNSUPPORTED",
      `${source}: not a URL: '${value.replace(/^([a-z][a-z0-9+.-]*:\/\/)?[^@/]*@/i, "$1***@")}'`,
    );
  }
  if (!SCHEMES.has(url.protocol)) {
    throw new ProxyError(
      "PROXY_UNSUPPORTED",
      `${source}: unsupported proxy scheme '${url.protocol}' in '${
        redact(url)
      }' (use http://, socks5:// or socks5h://)`,
    );
  }
  if (!url.hostname) {
    throw new ProxyError("PROXY_UNSUPPORTED", `${source}: no host in '${redact(url)}'`);
  }
  return url;
}

/** The URL without its password, for messages and logs. */
export function redact(url: URL): string {
  if (!url.password) return url.href;
  const copy = new URL(url.href);
  copy.password = "***";
  return copy.href;
}

/**
 * Which proxy applies to a controller URL: `explicit` (the `--proxy` flag) first, else `HTTPS_PROXY` for `wss://`
 * and `HTTP_PROXY` for `ws://` (lower-case names too, then `ALL_PROXY`); none when `NO_PROXY` lists the host
 * (`*`, a host or domain suffix, `.domain`, an IP, optionally `:port`). A proxy from the environment never applies
 * to a loopback controller (`localhost`, 127.0.0.0/8, `::1`); `--proxy` does.
 *
 * @param target The controller URL.
 * @param env The environment.
 * @param explicit The `--proxy` value, or `"none"`/`""` for a direct connection whatever the environment says.
 * @returns The proxy, or null for a direct connection.
 */
export function proxyFor(
  target: URL,
  env: Record<string, string | undefined>,
  explicit?: string,
): URL | null {
  if (explicit === "none" || explicit === "") return null;
  const get = (name: string) => env[name] ?? env[name.toLowerCase()];
  let source: string | undefined;
  let value: string | undefined;
  if (explicit !== undefined) [source, value] = ["--proxy", explicit];
  else {
    const name = target.protocol === "wss:" ? "HTTPS_PROXY" : "HTTP_PROXY";
    for (const candidate of [name, "ALL_PROXY"]) {
      const v = get(candidate);
      if (v) {
        [source, value] = [candidate, v];
        break;
      }
    }
  }
  if (value === undefined || source === undefined) return null;
  // Like Go's net/http: a proxy from the environment never applies to a loopback controller.
  const host = bareHost(target);
  if (explicit === undefined && isLoopback(host)) return null;
  if (noProxy(target, get("NO_PROXY") ?? "")) return null;
  return parseProxyUrl(value, source);
}

/** The URL's host without brackets, in lower case, without a final dot (`example.com.` is `example.com`). */
function bareHost(target: URL): string {
  return target.hostname.replace(/^\[|\]$/g, "").toLowerCase().replace(/\.$/, "");
}

function isLoopback(host: string): boolean {
  // `[::ffff:127.0.0.1]` is written `::ffff:7f00:1` by the URL parser.
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host) ||
    /^::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}$/.test(host);
}

function noProxy(target: URL, list: string): boolean {
  const host = bareHost(target);
  const port = target.port || (target.protocol === "wss:" ? "443" : "80");
  for (let entry of list.split(/[,\s]+/)) {
    entry = entry.trim().toLowerCase();
    if (!entry) continue;
    if (entry === "*") return true;
    let entryPort: string | undefined;
    if (entry.startsWith("[")) {
      const close = entry.indexOf("]");
      entryPort = entry.slice(close + 1).replace(/^:/, "") || undefined;
      entry = entry.slice(1, close);
    } else if (entry.split(":").length === 2) {
      [entry, entryPort] = entry.split(":") as [string, string];
    }
    if (entryPort !== undefined && entryPort !== port) continue;
    const bare = (entry.startsWith(".") ? entry.slice(1) : entry).replace(/\.$/, "");
    if (!bare) continue;
    if (host === bare || host.endsWith("." + bare)) return true;
  }
  return false;
}

/**
 * Open a TCP connection to `hostname:port` through a proxy.
 *
 * The proxy's part (its CONNECT answer, the SOCKS5 handshake) must end within `timeoutMs`, and `signal` gives it up
 * early: either closes the connection to the proxy (a proxy that accepts and never answers, or drips a byte at a
 * time, would otherwise hold the socket and the caller forever).
 *
 * @param proxy The proxy (from {@linkcode proxyFor}).
 * @param hostname The controller's host.
 * @param port The controller's port.
 * @param options `timeoutMs` (default {@linkcode PROXY_HANDSHAKE_TIMEOUT_MS}) and `signal`.
 * @returns The tunnel: bytes written go to the controller.
 * @throws {ProxyError} When the proxy refuses, answers nonsense or too late (`PROXY_TIMEOUT`); connection errors
 * to the proxy as they are.
 */
export async function dialThroughProxy(
  proxy: URL,
  hostname: string,
  port: number,
  options: DialThroughProxyOptions = {},
): Promise<Deno.TcpConn> {
  const timeoutMs = options.timeoutMs ?? PROXY_HANDSHAKE_TIMEOUT_MS;
  options.signal?.throwIfAborted();
  const proxyPort = Number(proxy.port || (proxy.protocol === "http:" ? 80 : 1080));
  const conn = await Deno.connect({
    hostname: proxy.hostname.replace(/^\[|\]$/g, ""),
    port: proxyPort,
  });
  let gaveUp: string | null = null;
  const giveUp = (why: string) => {
    gaveUp ??= why;
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  const timer = setTimeout(
    () => giveUp(`did not complete its handshake within ${timeoutMs} ms`),
    timeoutMs,
  );
  const onAbort = () => giveUp("was given up (the connection attempt was abandoned)");
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) onAbort();
  try {
    conn.setNoDelay(true);
    if (proxy.protocol === "http:") await httpConnect(conn, proxy, hostname, port);
    else await socks5Connect(conn, proxy, hostname, port, proxy.protocol === "socks5h:");
    if (gaveUp !== null) throw new Error("given up");
    return conn;
  } catch (error) {
    if (gaveUp === null) {
      try {
        conn.close();
      } catch { /* already closed */ }
      throw error;
    }
    throw new ProxyError("PROXY_TIMEOUT", `Proxy ${redact(proxy)} ${gaveUp}`);
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", onAbort);
  }
}

/** Options of {@linkcode dialThroughProxy}. */
export interface DialThroughProxyOptions {
  /** Most time the proxy's handshake may take. @default {PROXY_HANDSHAKE_TIMEOUT_MS} */
  timeoutMs?: number;
  /** Abandon the attempt: the connection to the proxy is closed. */
  signal?: AbortSignal;
}

async function httpConnect(
  conn: Deno.TcpConn,
  proxy: URL,
  hostname: string,
  port: number,
): Promise<void> {
  const authority = `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
  const lines = [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`];
  if (proxy.username || proxy.password) {
    const credentials = `${decodeURIComponent(proxy.username)}:${
      decodeURIComponent(proxy.password)
    }`;
    lines.push(`Proxy-Authorization: Basic ${base64(encoder.encode(credentials))}`);
  }
  await writeAll(conn, encoder.encode(lines.join("\r\n") + "\r\n\r\n"));
  // Read exactly the response head: byte by byte after the first chunk would be slow, so read chunks and refuse
  // anything after the head (the controller speaks only after we do, so a proxy sending more is broken).
  let head = new Uint8Array(0);
  const buffer = new Uint8Array(4096);
  let end = -1;
  while (end < 0) {
    const n = await conn.read(buffer);
    if (n === null) {
      throw new ProxyError(
        "PROXY_PROTOCOL",
        `Proxy ${redact(proxy)} closed the connection before answering CONNECT ${authority}`,
      );
    }
    const next = new Uint8Array(head.length + n);
    next.set(head);
    next.set(buffer.subarray(0, n), head.length);
    head = next;
    end = findHeadEnd(head);
    if (end < 0 && head.length > MAX_PROXY_HEAD) {
      throw new ProxyError("PROXY_PROTOCOL", `Proxy ${redact(proxy)} sent an oversized answer`);
    }
  }
  const text = decoder.decode(head.subarray(0, end));
  const statusLine = text.split("\r\n", 1)[0] ?? "";
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(statusLine);
  if (!m) {
    throw new ProxyError(
      "PROXY_PROTOCOL",
      `Proxy ${redact(proxy)} answered CONNECT with '${statusLine.slice(0, 100)}'`,
    );
  }
  const status = Number(m[1]);
  // 407 is the standard answer; some proxies (tinyproxy) answer 401.
  if (status === 407 || status === 401) {
    throw new ProxyError(
      "PROXY_AUTH",
      `Proxy ${redact(proxy)} wants authentication for CONNECT ${authority} (${status}${
        proxy.username ? "; the credentials in the proxy URL were refused" : ""
      })`,
    );
  }
  if (status < 200 || status > 299) {
    throw new ProxyError(
      "PROXY_REFUSED",
      `Proxy ${redact(proxy)} refused CONNECT ${authority}: ${status} ${m[2] ?? ""}`.trim(),
    );
  }
  if (head.length > end + 4) {
    throw new ProxyError(
      "PROXY_PROTOCOL",
      `Proxy ${redact(proxy)} sent data before the tunnel was used`,
    );
  }
}

function findHeadEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      return i;
    }
  }
  return -1;
}

const SOCKS_REPLIES: Record<number, string> = {
  1: "general SOCKS server failure",
  2: "connection not allowed by ruleset",
  3: "network unreachable",
  4: "host unreachable",
  5: "connection refused",
  6: "TTL expired",
  7: "command not supported",
  8: "address type not supported",
};

async function socks5Connect(
  conn: Deno.TcpConn,
  proxy: URL,
  hostname: string,
  port: number,
  remoteDns: boolean,
): Promise<void> {
  const where = `${hostname}:${port}`;
  const user = decodeURIComponent(proxy.username);
  const pass = decodeURIComponent(proxy.password);
  const auth = user !== "" || pass !== "";
  // Greeting: offer "no authentication" or "username/password".
  await writeAll(conn, new Uint8Array([5, 1, auth ? 2 : 0]));
  const choice = await readExactly(conn, 2, proxy);
  if (choice[0] !== 5) {
    throw new ProxyError("PROXY_PROTOCOL", `Proxy ${redact(proxy)} does not speak SOCKS5`);
  }
  if (choice[1] === 0xff) {
    throw new ProxyError(
      "PROXY_AUTH",
      `Proxy ${redact(proxy)} accepts none of the offered methods (${
        auth ? "username/password" : "no authentication"
      })`,
    );
  }
  if (choice[1] === 2) {
    const u = encoder.encode(user), p = encoder.encode(pass);
    if (u.length > 255 || p.length > 255) {
      throw new ProxyError("PROXY_AUTH", "SOCKS5 user name and password are limited to 255 bytes");
    }
    await writeAll(conn, new Uint8Array([1, u.length, ...u, p.length, ...p]));
    const answer = await readExactly(conn, 2, proxy);
    if (answer[1] !== 0) {
      throw new ProxyError("PROXY_AUTH", `Proxy ${redact(proxy)} refused the SOCKS5 credentials`);
    }
  } else if (choice[1] !== 0) {
    throw new ProxyError(
      "PROXY_PROTOCOL",
      `Proxy ${redact(proxy)} chose SOCKS5 method ${choice[1]}, which was not offered`,
    );
  }
  const address = await socksAddress(hostname, remoteDns);
  await writeAll(
    conn,
    new Uint8Array([5, 1, 0, ...address, (port >> 8) & 0xff, port & 0xff]),
  );
  const reply = await readExactly(conn, 4, proxy);
  if (reply[0] !== 5) {
    throw new ProxyError("PROXY_PROTOCOL", `Proxy ${redact(proxy)} sent a malformed SOCKS5 reply`);
  }
  if (reply[1] !== 0) {
    throw new ProxyError(
      "PROXY_REFUSED",
      `Proxy ${redact(proxy)} refused to connect to ${where}: ${
        SOCKS_REPLIES[reply[1]!] ?? `reply ${reply[1]}`
      }`,
    );
  }
  // The bound address that follows: skip it.
  const type = reply[3];
  const rest = type === 1
    ? 4
    : type === 4
    ? 16
    : type === 3
    ? (await readExactly(conn, 1, proxy))[0]!
    : -1;
  if (rest < 0) {
    throw new ProxyError("PROXY_PROTOCOL", `Proxy ${redact(proxy)} sent address type ${type}`);
  }
  await readExactly(conn, rest + 2, proxy);
}

/** The SOCKS5 destination address field for a host. */
async function socksAddress(hostname: string, remoteDns: boolean): Promise<number[]> {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(hostname);
  if (v4) return [1, ...v4.slice(1).map(Number)];
  if (hostname.includes(":")) return [4, ...ipv6Bytes(hostname)];
  if (remoteDns) {
    const name = encoder.encode(hostname);
    if (name.length > 255) throw new ProxyError("PROXY_UNSUPPORTED", "Host name over 255 bytes");
    return [3, name.length, ...name];
  }
  // socks5:// resolves the name here, as curl does.
  let addresses: string[] = [];
  try {
    addresses = await Deno.resolveDns(hostname, "A");
  } catch { /* fall through to AAAA */ }
  if (addresses[0]) return socksAddress(addresses[0], true);
  try {
    addresses = await Deno.resolveDns(hostname, "AAAA");
  } catch { /* not found */ }
  if (addresses[0]) return socksAddress(addresses[0], true);
  if (hostname === "localhost") return [1, 127, 0, 0, 1];
  throw new ProxyError(
    "PROXY_REFUSED",
    `Cannot resolve '${hostname}' for a socks5:// proxy (use socks5h:// to let the proxy resolve it)`,
  );
}

function ipv6Bytes(text: string): number[] {
  const [head, tail] = text.split("::") as [string, string | undefined];
  const parse = (s: string | undefined) => s ? s.split(":").map((h) => parseInt(h, 16)) : [];
  const a = parse(head), b = parse(tail);
  const groups = tail === undefined
    ? a
    : [...a, ...new Array(8 - a.length - b.length).fill(0), ...b];
  if (groups.length !== 8 || groups.some((g) => !(g >= 0 && g <= 0xffff))) {
    throw new ProxyError("PROXY_UNSUPPORTED", `Bad IPv6 address '${text}'`);
  }
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}

async function readExactly(conn: Deno.Conn, n: number, proxy: URL): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await conn.read(out.subarray(got));
    if (r === null) {
      throw new ProxyError(
        "PROXY_PROTOCOL",
        `Proxy ${redact(proxy)} closed the connection during the SOCKS5 handshake`,
      );
    }
    got += r;
  }
  return out;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}

function base64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}
