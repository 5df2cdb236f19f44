// Daemon resources: list (label and platform filters), get, and wait until one connects.
import { isDaemonId } from "@sandd/protocol/constants";
import type { DaemonInfo } from "../_connection.ts";
import { DaemonNotFoundError } from "../errors.ts";
import type { ControlContext, RouteParams } from "./_context.ts";
import { intParam, onlyParams, queryParam } from "./_body.ts";
import { badRequest, HttpError } from "./_errors.ts";
import { fixedAnswer } from "../_http1_answer.ts";

const JSON_HEADERS = { "content-type": "application/json" };
const SMALL_JSON_HEADERS = { "content-type": "application/json", "cache-control": "no-transform" };

/**
 * A JSON answer. Small ones are marked `no-transform`, which keeps Deno from compressing them: for a few hundred
 * bytes compression costs more time than it saves (the exec round trip is the figure users feel).
 */
export function json(data: unknown, status = 200): Response {
  const text = JSON.stringify(data);
  return fixedAnswer(text, status, text.length < 4096 ? SMALL_JSON_HEADERS : JSON_HEADERS);
}

/** An empty 204 answer. */
export function noContent(): Response {
  return new Response(null, { status: 204 });
}

/** A daemon as the API shows it (`connectedAt` as an ISO string). */
export function daemonJson(info: DaemonInfo): Record<string, unknown> {
  return { ...info, connectedAt: info.connectedAt.toISOString() };
}

/** `GET /daemons?label=k=v&platform=`. */
export function listDaemons(ctx: ControlContext): Response {
  onlyParams(ctx.url, ["label", "platform"]);
  const labels: Record<string, string> = {};
  for (const label of ctx.url.searchParams.getAll("label")) {
    const at = label.indexOf("=");
    if (at <= 0) {
      throw badRequest(`Query parameter 'label' must be KEY=VALUE, got '${label.slice(0, 100)}'`);
    }
    labels[label.slice(0, at)] = label.slice(at + 1);
  }
  const platform = queryParam(ctx.url, "platform");
  const daemons = ctx.server.daemons({
    labels,
    ...(platform !== undefined ? { platform } : {}),
  });
  audit(ctx, "api.daemons", "");
  return json({ daemons: daemons.map(daemonJson) });
}

/** `GET /daemons/{id}`. */
export function getDaemon(ctx: ControlContext, params: RouteParams): Response {
  onlyParams(ctx.url, []);
  const id = params.id!;
  const info = ctx.server.daemon(id);
  audit(ctx, "api.daemon", id, info !== undefined);
  if (!info) throw new DaemonNotFoundError(id);
  return json(daemonJson(info));
}

/** `GET /daemons/{id}/wait?timeout=ms`: once it is connected (504 when it did not connect in time). */
export async function waitDaemon(ctx: ControlContext, params: RouteParams): Promise<Response> {
  onlyParams(ctx.url, ["timeout"]);
  const id = params.id!;
  const timeout = intParam(ctx.url, "timeout", 0, 3_600_000) ?? 30_000;
  try {
    const info = await ctx.server.waitForDaemon(id, { timeout, signal: ctx.closing });
    audit(ctx, "api.wait", id);
    return json(daemonJson(info));
  } catch (error) {
    audit(ctx, "api.wait", id, false);
    if (ctx.closing.aborted) {
      throw new HttpError(503, "SHUTTING_DOWN", "The controller is shutting down");
    }
    if (error instanceof DaemonNotFoundError) {
      throw new HttpError(504, "TIMEOUT", error.message);
    }
    throw error;
  }
}

/** Record an API action that reaches no daemon (those that do are recorded by the server's own audit). */
export function audit(ctx: ControlContext, action: string, daemon: string, ok = true): void {
  ctx.host.auditor.write({ daemon, identity: `client:${ctx.client.name}`, action, ok });
}

export { isDaemonId };
