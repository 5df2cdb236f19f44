// The Client's HTTP transport: one base URL, one bearer token, one pooled HTTP client, deadlines, and the API's
// JSON errors mapped back to the embedded controller's error classes (`_client_errors.ts`).
import { apiError, ControlApiError, type ErrorContext } from "./_client_errors.ts";
import { type SocketBody, socketGet, socketGetUsable } from "./_client_socket_get.ts";

/** Query parameters: a value per key, or several (repeated keys); undefined ones are left out. */
export type Query = Record<string, string | number | boolean | string[] | undefined>;

/** One API call. */
export interface CallOptions {
  /** Query parameters. */
  query?: Query;
  /** A JSON body (sent with `Content-Type: application/json`). */
  json?: unknown;
  /** A raw body (bytes or a stream). */
  body?: BodyInit;
  /** Extra headers. */
  headers?: Record<string, string>;
  /** The caller's abort signal: aborting rejects with its reason. */
  signal?: AbortSignal | undefined;
  /**
   * Deadline for the answer's head, in milliseconds; `null` for none (long polls, streams, commands with their
   * own timeout). @default the client's `requestTimeoutMs`
   */
  timeout?: number | null;
  /** What the call is about, for error mapping. */
  context?: ErrorContext;
}

/** What the transport is made with. */
export interface TransportInit {
  /** The controller's base URL (no trailing slash). */
  base: string;
  /** Bearer token, if any. */
  token: string | undefined;
  /** Default deadline of calls answered at once. */
  requestTimeoutMs: number;
  /** How long a dropped stream keeps trying to come back. */
  reconnectTimeoutMs: number;
  /** PEM certificates to trust for https. */
  caCerts: string[] | undefined;
}

/** A dropped connection or an unreachable controller: retried by resumable streams. */
export function isNetworkError(error: unknown): boolean {
  return error instanceof ControlApiError && error.code === "UNREACHABLE";
}

/** The HTTP side of a `Client`. */
export class Transport {
  readonly base: string;
  readonly requestTimeoutMs: number;
  readonly reconnectTimeoutMs: number;
  readonly #token: string | undefined;
  readonly #client: Deno.HttpClient;
  readonly #closing = new AbortController();
  readonly #caCerts: string[] | undefined;

  constructor(init: TransportInit) {
    this.base = init.base;
    this.#token = init.token;
    this.requestTimeoutMs = init.requestTimeoutMs;
    this.reconnectTimeoutMs = init.reconnectTimeoutMs;
    this.#caCerts = init.caCerts;
    this.#client = Deno.createHttpClient(init.caCerts ? { caCerts: init.caCerts } : {});
  }

  /** Aborts when the client closes. */
  get closed(): AbortSignal {
    return this.#closing.signal;
  }

  /** The `Authorization` header, if a token was given. */
  authorization(): Record<string, string> {
    return this.#token === undefined ? {} : { authorization: `Bearer ${this.#token}` };
  }

  /** The HTTP client requests use (it carries the trusted certificates). */
  get httpClient(): Deno.HttpClient {
    return this.#client;
  }

  /** Options for a WebSocket to the API (the token on the upgrade, the trusted certificates). */
  webSocketOptions(): WebSocketOptions {
    return {
      headers: this.authorization(),
      ...(this.#caCerts ? { client: this.#client } : {}),
    };
  }

  /** The full URL of an API path (`/daemons/x`), with its query. */
  url(path: string, query: Query = {}): URL {
    const url = new URL(`${this.base}/api/v1${path}`);
    for (const [key, value] of Object.entries(query)) {
      if (value === undefined) continue;
      if (Array.isArray(value)) { for (const v of value) url.searchParams.append(key, v); }
      else url.searchParams.set(key, String(value));
    }
    return url;
  }

  /**
   * Make a call; resolves with the answer once its head arrived with a 2xx status, rejects with the mapped
   * error otherwise. The caller reads (or cancels) the body.
   */
  async call(method: string, path: string, options: CallOptions = {}): Promise<Response> {
    const url = this.url(path, options.query);
    const { signal, deadline, timer, timeout } = this.#headDeadline(options);
    const headers: Record<string, string> = { ...this.authorization(), ...options.headers };
    let body = options.body;
    if (options.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.json);
    }
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers,
        ...(body !== undefined ? { body } : {}),
        signal,
        client: this.#client,
      });
    } catch (error) {
      throw this.#failure(error, method, url, options.signal, deadline, timeout);
    } finally {
      clearTimeout(timer);
    }
    if (response.ok) return response;
    let parsed: unknown = null;
    try {
      parsed = await response.json();
    } catch {
      // not JSON: the generic error below names the status
    }
    throw apiError(response.status, parsed, options.context, response.headers);
  }

  /**
   * A GET whose 2xx answer's body is read as bytes (a file download): on a connection of its own, read straight
   * from the socket where that is possible (`_client_socket_get.ts`), else through `fetch` as {@linkcode call}.
   * Errors and deadlines as `call`'s.
   */
  async get(
    path: string,
    options: CallOptions = {},
  ): Promise<{ headers: Headers; body: ReadableStream<Uint8Array> | SocketBody | null }> {
    const url = this.url(path, options.query);
    if (!socketGetUsable(url)) return await this.call("GET", path, options);
    const { signal, deadline, timer, timeout } = this.#headDeadline(options);
    let answer;
    try {
      answer = await socketGet(url, {
        headers: { ...this.authorization(), ...options.headers },
        caCerts: this.#caCerts,
        signal,
        bodySignal: options.signal
          ? AbortSignal.any([this.#closing.signal, options.signal])
          : this.#closing.signal,
      });
    } catch (error) {
      throw this.#failure(error, "GET", url, options.signal, deadline, timeout);
    } finally {
      clearTimeout(timer);
    }
    if (answer.unframed) return await this.call("GET", path, options);
    if (answer.body) return { headers: answer.headers, body: answer.body };
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(answer.text);
    } catch {
      // not JSON: the generic error below names the status
    }
    throw apiError(answer.status, parsed, options.context, answer.headers);
  }

  /**
   * What ends a call before its answer's head: the client closing, the caller's signal, and the deadline (which
   * covers the head only: a stream's body may take as long as it takes). Clear `timer` once the head is in.
   */
  #headDeadline(options: CallOptions): {
    signal: AbortSignal;
    deadline: AbortSignal | undefined;
    timer: ReturnType<typeof setTimeout> | undefined;
    timeout: number | null;
  } {
    const timeout = options.timeout === undefined ? this.requestTimeoutMs : options.timeout;
    const signals = [this.#closing.signal];
    if (options.signal) signals.push(options.signal);
    const expiry = timeout === null ? undefined : new AbortController();
    const timer = expiry ? setTimeout(() => expiry.abort(), timeout!) : undefined;
    const deadline = expiry?.signal;
    if (deadline) signals.push(deadline);
    return { signal: AbortSignal.any(signals), deadline, timer, timeout };
  }

  /** A call whose 2xx answer is JSON (or empty: then `undefined`). */
  async json(method: string, path: string, options: CallOptions = {}): Promise<unknown> {
    const response = await this.call(method, path, options);
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      throw this.failure(error, method, this.url(path), options.signal);
    }
    if (text === "") return undefined;
    try {
      return JSON.parse(text);
    } catch {
      throw new ControlApiError(
        "BAD_RESPONSE",
        `The control API answered ${method} ${path} with invalid JSON: ${
          JSON.stringify(text.slice(0, 80))
        }`,
        response.status,
      );
    }
  }

  /** What a failed fetch turns into: the caller's abort reason, a timeout, the client closing, or a network error. */
  failure(error: unknown, method: string, url: URL, signal?: AbortSignal): unknown {
    return this.#failure(error, method, url, signal, undefined, null);
  }

  #failure(
    error: unknown,
    method: string,
    url: URL,
    signal: AbortSignal | undefined,
    deadline: AbortSignal | undefined,
    timeout: number | null,
  ): unknown {
    if (signal?.aborted) return signal.reason;
    if (this.#closing.signal.aborted) return this.#closing.signal.reason;
    if (deadline?.aborted) {
      return new ControlApiError(
        "TIMEOUT",
        `The controller at ${this.base} did not answer ${method} ${url.pathname} within ${timeout} ms`,
      );
    }
    if (error instanceof ControlApiError) return error;
    const detail = error instanceof Error ? error.message : String(error);
    return new ControlApiError(
      "UNREACHABLE",
      `Lost the connection to the controller at ${this.base} (${method} ${url.pathname}): ${detail}`,
      0,
      { cause: error },
    );
  }

  /** Stop every call and release the pooled connections. */
  close(): void {
    if (this.#closing.signal.aborted) return;
    this.#closing.abort(new ControlApiError("CLOSED", "The client was closed"));
    this.#client.close();
  }
}

/** Sleep for `ms`, or less when `signal` aborts (never rejects). */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
