/**
 * Prometheus metrics of the controller at `GET /metrics` (text exposition format 0.0.4), turned on with
 * {@linkcode ServerOptions.metrics}. Counting is always on and costs a field increment where the work happens;
 * the text is built only when scraped, from aggregates kept at connect and disconnect, so a scrape costs the same
 * with 10 daemons or 19,000.
 *
 * Access: with `metrics: { token }` a scrape must send `Authorization: Bearer <token>`; with client tokens
 * configured for the control API (`control.tokens`), a client token with the `read` (or `admin`) scope is
 * accepted too (401 otherwise; repeated failures from one address get 429 like the daemon endpoint's). With
 * neither, the endpoint is open like `/health`, which is only allowed on a loopback address unless
 * `insecure: true` says it is meant.
 *
 * @module
 */

import { createHash, timingSafeEqual } from "node:crypto";
import type { HttpMount } from "./_http.ts";
import { CONTENT_TYPE, renderMetrics } from "./_metrics_render.ts";
import { ENDPOINT_METRICS, type MetricsState } from "./_metrics_state.ts";
import type { ServerOptions } from "./options.ts";

/**
 * Options of {@linkcode ServerOptions.metrics}.
 *
 * @example Protect the endpoint and break daemons down by region
 * ```ts
 * import type { MetricsOptions } from "./metrics.ts";
 * const metrics: MetricsOptions = { token: "scrape-secret", labels: ["region"] };
 * console.assert(metrics.labels?.[0] === "region");
 * ```
 */
export interface MetricsOptions {
  /**
   * Bearer token a scrape must send (`Authorization: Bearer <token>`); visible ASCII, no spaces.
   * @default undefined (open: only allowed on a loopback address, or with `insecure`)
   */
  token?: string;
  /**
   * Daemon label keys to count connected daemons by (`sandd_daemons_by_label{label,value}`). Pick keys with few
   * values (region, pool), not unique ones; each key counts at most 1,000 values, the rest as `other`.
   * @default []
   */
  labels?: string[];
  /** Serve the endpoint without a token on a non-loopback address. @default false */
  insecure?: boolean;
}

const TOKEN_PATTERN = /^[\x21-\x7e]+$/;

/** Whether `hostname` is a loopback address. */
function loopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/**
 * @internal Validate `options.metrics` (and that an open endpoint listens on loopback only).
 *
 * @throws {TypeError} For a malformed value, or an open endpoint on a non-loopback address.
 */
export function checkMetricsOptions(options: ServerOptions): void {
  const metrics = options.metrics;
  if (metrics === undefined || metrics === false || metrics === true) {
    if (metrics === true && clientTokens(options).length === 0) checkOpen(options.hostname, false);
    return;
  }
  if (typeof metrics !== "object" || metrics === null || Array.isArray(metrics)) {
    throw new TypeError(`metrics must be a boolean or an object, got ${JSON.stringify(metrics)}`);
  }
  for (const key of Object.keys(metrics)) {
    if (key !== "token" && key !== "labels" && key !== "insecure") {
      throw new TypeError(`metrics has an unknown option '${key}'`);
    }
  }
  if (metrics.token !== undefined) {
    if (typeof metrics.token !== "string" || !TOKEN_PATTERN.test(metrics.token)) {
      throw new TypeError(
        "metrics.token must be a non-empty string of visible ASCII characters (no spaces)",
      );
    }
  }
  if (metrics.labels !== undefined) {
    if (!Array.isArray(metrics.labels) || metrics.labels.length > 16) {
      throw new TypeError(
        `metrics.labels must be an array of at most 16 label keys, got ${
          JSON.stringify(metrics.labels)
        }`,
      );
    }
    for (const key of metrics.labels) {
      if (typeof key !== "string" || key.length === 0 || key.length > 128) {
        throw new TypeError(
          `metrics.labels entries must be label keys of 1 to 128 characters, got ${
            JSON.stringify(key)
          }`,
        );
      }
    }
  }
  if (metrics.insecure !== undefined && typeof metrics.insecure !== "boolean") {
    throw new TypeError(
      `metrics.insecure must be a boolean, got ${JSON.stringify(metrics.insecure)}`,
    );
  }
  if (metrics.token === undefined && clientTokens(options).length === 0) {
    checkOpen(options.hostname, metrics.insecure === true);
  }
}

/** Control API client tokens that may read metrics (scopes `read` or `admin`, or all scopes). */
function clientTokens(options: ServerOptions): string[] {
  const control = options.control;
  if (typeof control !== "object" || control === null || !Array.isArray(control.tokens)) return [];
  return control.tokens
    .filter((t) =>
      t.scopes === undefined || t.scopes.includes("read") || t.scopes.includes("admin")
    )
    .map((t) => t.token);
}

function checkOpen(hostname: string | undefined, insecure: boolean): void {
  const host = hostname ?? "127.0.0.1";
  if (!insecure && !loopback(host)) {
    throw new TypeError(
      `metrics without a token on a non-loopback address ('${host}') would be open to the network: ` +
        "set metrics.token, or metrics.insecure: true if that is meant",
    );
  }
}

/** @internal The label keys `options.metrics` asks for. */
export function metricsLabelKeys(options: ServerOptions): string[] {
  const metrics = options.metrics;
  return typeof metrics === "object" && metrics !== null ? [...(metrics.labels ?? [])] : [];
}

/** What the `/metrics` handler needs from the server. */
export interface MetricsHost {
  state: MetricsState;
  /** Commands and processes followed now. */
  followed(): number;
  /** Count a failed authentication from `address`; milliseconds to ask it to wait (429), else 0. */
  failed(address: string): number;
}

/**
 * @internal The `/metrics` mount, or null when `options.metrics` does not ask for it. Starts the event-loop lag
 * sampler (stopped by `host.state.close()`).
 */
export function metricsMount(options: ServerOptions, host: MetricsHost): HttpMount | null {
  const metrics = options.metrics;
  if (metrics === undefined || metrics === false) return null;
  const token = typeof metrics === "object" ? metrics.token : undefined;
  const accepted = [...(token !== undefined ? [token] : []), ...clientTokens(options)].map(digest);
  host.state.sampleEventLoop();
  return {
    prefix: "/metrics",
    handle(request, info) {
      const url = new URL(request.url);
      if (url.pathname !== "/metrics") return new Response("Not found\n", { status: 404 });
      if (request.method !== "GET" && request.method !== "HEAD") {
        return new Response("Method not allowed\n", {
          status: 405,
          headers: { allow: "GET, HEAD" },
        });
      }
      if (accepted.length > 0) {
        const header = request.headers.get("authorization") ?? "";
        const credential = /^Bearer (.+)$/i.exec(header)?.[1];
        if (credential === undefined || !matches(digest(credential), accepted)) {
          host.state.authFailures[ENDPOINT_METRICS]!++;
          const retryMs = host.failed(info.remoteAddr.hostname);
          if (retryMs > 0) {
            host.state.authRateLimited++;
            return new Response("Too many failed attempts\n", {
              status: 429,
              headers: { "retry-after": String(Math.ceil(retryMs / 1000)) },
            });
          }
          return new Response("Unauthorized\n", {
            status: 401,
            headers: { "www-authenticate": 'Bearer realm="metrics"' },
          });
        }
      }
      const body = renderMetrics(host.state, { followed: host.followed() });
      return new Response(request.method === "HEAD" ? null : body, {
        headers: { "content-type": CONTENT_TYPE, "cache-control": "no-store" },
      });
    },
  };
}

/** Whether `candidate` equals one of `accepted` (every one compared, in constant time each). */
function matches(candidate: Uint8Array, accepted: Uint8Array[]): boolean {
  let found = false;
  for (const digest of accepted) found = timingSafeEqual(candidate, digest) || found;
  return found;
}

function digest(text: string): Uint8Array {
  return createHash("sha256").update(text, "utf8").digest();
}
