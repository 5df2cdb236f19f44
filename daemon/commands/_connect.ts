// Connecting an operator command to its controller through the TypeScript Client (server/client.ts), from the
// connection flags, the environment and the config file.
// The Client alone, not the package's barrel: mod.ts also loads Server, the cluster and NATS, which took about
// 0.3 s of CPU at every start of an operator command.
import { Client } from "@sandd/server/client";
import type { Controller } from "@sandd/server";
import { type ConnectionSettings, resolveConnection } from "./config.ts";
import { str } from "./_args.ts";
import { CliError, EXIT, isUnreachable } from "./exit_codes.ts";

/** The connection settings from a command's parsed flags and the environment. */
export function settingsFrom(values: Record<string, unknown>): ConnectionSettings {
  return resolveConnection({
    url: str(values, "url"),
    token: str(values, "token"),
    tokenFile: str(values, "token-file"),
    profile: str(values, "profile"),
    caCert: str(values, "ca-cert"),
  }, Deno.env.toObject());
}

/** Connect to the controller; unreachable is exit 69, a refused token 77. */
export async function connect(settings: ConnectionSettings): Promise<Controller> {
  try {
    return await Client.connect(settings.url, {
      ...(settings.token !== undefined ? { token: settings.token } : {}),
      ...(settings.caCerts.length ? { caCerts: settings.caCerts } : {}),
    });
  } catch (error) {
    throw annotate(error, settings);
  }
}

/** Turn an unreachable-controller error into a CliError naming the URL; others pass through. */
export function annotate(error: unknown, settings: ConnectionSettings): unknown {
  if (error instanceof CliError) return error;
  if (isUnreachable(error)) {
    return new CliError(
      EXIT.UNAVAILABLE,
      `Cannot reach the controller at ${settings.url}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  return error;
}

/** Run `fn` with a connected controller, closing it afterwards. */
export async function withController<T>(
  values: Record<string, unknown>,
  fn: (controller: Controller) => Promise<T>,
): Promise<T> {
  const settings = settingsFrom(values);
  const controller = await connect(settings);
  try {
    return await fn(controller);
  } catch (error) {
    throw annotate(error, settings);
  } finally {
    await controller.close().catch(() => {});
  }
}

/** An error answer of the control API, with its stable code and HTTP status. */
export class ApiError extends Error {
  /** Stable code from the answer (`DAEMON_NOT_FOUND`, `UNKNOWN_PROCESS`, ...). */
  readonly code: string;
  /** HTTP status. */
  readonly status: number;
  constructor(code: string, message: string, status: number) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.status = status;
  }
}

/**
 * One request to the control API, for the few things the `Controller` interface does not offer (the output a
 * process has now, without following it). A non-2xx answer throws an {@linkcode ApiError}.
 */
export async function apiFetch(
  settings: ConnectionSettings,
  path: string,
  init: RequestInit = {},
): Promise<Response> {
  const client = settings.caCerts.length
    ? Deno.createHttpClient({ caCerts: settings.caCerts })
    : undefined;
  try {
    const headers = new Headers(init.headers);
    if (settings.token !== undefined) headers.set("authorization", `Bearer ${settings.token}`);
    let response: Response;
    try {
      response = await fetch(`${settings.url}/api/v1${path}`, {
        ...init,
        headers,
        ...(client ? { client } : {}),
      });
    } catch (error) {
      throw annotate(error, settings);
    }
    if (response.ok) return response;
    const text = await response.text();
    let body: { code?: unknown; message?: unknown } = {};
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: the status says it
    }
    throw new ApiError(
      typeof body.code === "string" ? body.code : `HTTP_${response.status}`,
      typeof body.message === "string"
        ? body.message
        : `HTTP ${response.status} ${text.slice(0, 200)}`,
      response.status,
    );
  } finally {
    client?.close();
  }
}
