/**
 * The terminal WebSocket route of the control API: `GET /api/v1/daemons/{id}/terminal`.
 *
 * Owned by the `console` work: this file is a stub answering 501 until it is replaced. The router has already
 * authenticated the client, checked the `exec` scope and validated `id` (a daemon id) when it calls
 * {@linkcode handleTerminal}; errors can be answered with `errorResponse` from `./_errors.ts`.
 *
 * @module
 */

import type { ControlContext } from "./_context.ts";
import { errorResponse, HttpError } from "./_errors.ts";

/**
 * Answer a terminal request: upgrade to a WebSocket (`Deno.upgradeWebSocket(request)`) and bridge it to
 * `ctx.server.shell(id, ...)` or `ctx.server.attachShell(id, attach, ...)` as the contract describes
 * (`?cols&rows&command&cwd`, or `?attach={proc}&from=N`; binary frames are terminal bytes, text frames JSON
 * control messages).
 *
 * @example Called by the router
 * ```ts ignore
 * const response = await handleTerminal(ctx, request, "worker-1");
 * ```
 *
 * @param ctx The request context (client already authorized for `exec`).
 * @param request The upgrade request.
 * @param id The daemon id (already validated).
 * @returns The upgrade response, or a JSON error.
 */
export function handleTerminal(
  ctx: ControlContext,
  request: Request,
  id: string,
): Response | Promise<Response> {
  void ctx;
  void request;
  return errorResponse(
    new HttpError(501, "NOT_IMPLEMENTED", `Terminals are not available yet (daemon '${id}')`),
  );
}
