// The Client's own argument checks (the controller methods' checks are shared with Server: `_validate.ts`): its
// options, the controller URL, daemon filters.
import type { ClientOptions } from "./client.ts";
import type { DaemonFilter } from "./options.ts";

function checkTimeout(name: string, value: unknown): void {
  if (value !== undefined && (typeof value !== "number" || !Number.isInteger(value) || value < 1)) {
    throw new RangeError(`${name} must be an integer >= 1, got ${String(value)}`);
  }
}

export function checkClientOptions(options: ClientOptions): void {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object, got ${String(options)}`);
  }
  const token = options.token;
  if (token !== undefined && (typeof token !== "string" || !/^[\x21-\x7e]+$/.test(token))) {
    throw new TypeError("token must be a non-empty string of printable ASCII without spaces");
  }
  checkTimeout("requestTimeoutMs", options.requestTimeoutMs);
  checkTimeout("reconnectTimeoutMs", options.reconnectTimeoutMs);
  if (
    options.caCerts !== undefined &&
    (!Array.isArray(options.caCerts) ||
      !options.caCerts.every((c) => typeof c === "string" && c.includes("-----BEGIN ")))
  ) {
    throw new TypeError("caCerts must be an array of PEM strings");
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new TypeError(`signal must be an AbortSignal, got ${typeof options.signal}`);
  }
}

/** The controller's base URL, checked: http(s), no credentials, query or fragment; no trailing slash. */
export function baseUrl(url: string | URL): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(
      `Controller URL must be an absolute http:// or https:// URL, got ${
        JSON.stringify(String(url))
      }`,
    );
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new TypeError(
      `Controller URL must use http:// or https://, got ${JSON.stringify(String(url))}`,
    );
  }
  if (parsed.username || parsed.password) {
    throw new TypeError("Controller URL must not carry credentials; use the token option");
  }
  if (parsed.search || parsed.hash) {
    throw new TypeError(
      `Controller URL must not have a query or fragment, got ${JSON.stringify(String(url))}`,
    );
  }
  return `${parsed.origin}${parsed.pathname.replace(/\/+$/, "")}`;
}

export function labelQuery(filter: DaemonFilter): string[] | undefined {
  const labels = Object.entries(filter.labels ?? {});
  return labels.length ? labels.map(([k, v]) => `${k}=${v}`) : undefined;
}

export function checkFilter(filter: unknown): asserts filter is DaemonFilter {
  if (typeof filter !== "object" || filter === null || Array.isArray(filter)) {
    throw new TypeError(`filter must be an object, got ${JSON.stringify(filter)}`);
  }
  const { labels, platform } = filter as DaemonFilter;
  if (platform !== undefined && typeof platform !== "string") {
    throw new TypeError(`filter.platform must be a string, got ${typeof platform}`);
  }
  if (labels === undefined) return;
  if (typeof labels !== "object" || labels === null || Array.isArray(labels)) {
    throw new TypeError(
      `filter.labels must be an object of strings, got ${JSON.stringify(labels)}`,
    );
  }
  for (const [key, value] of Object.entries(labels)) {
    if (typeof value !== "string" || key === "" || key.includes("=")) {
      throw new TypeError(`filter.labels.${key} must be a string with a key without '='`);
    }
  }
}
