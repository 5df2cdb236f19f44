/**
 * The HTTP control API (`/api/v1`): a mount on the controller's HTTP listener, with its own client authentication
 * (bearer tokens with scopes, separate from the daemons' credentials), strict input checks, JSON errors with the
 * stable codes of the TypeScript errors, and streamed bodies for process output, stdin and files. The routes are
 * listed in `_router.ts` and described in `openapi.json`.
 *
 * @module
 */

import type { HttpRequest } from "../_http1_request.ts";
import { ENDPOINT_API } from "../_metrics_state.ts";
import { getLogger } from "@logtape/logtape";
import { auditActor } from "../_audited.ts";
import { fastPath, type HttpMount } from "../_http.ts";
import type { Security } from "../_security.ts";
import { ClientAuth, refuseClientTokens } from "./_auth.ts";
import type { ControlContext, ControlHost } from "./_context.ts";
import { errorResponse, HttpError } from "./_errors.ts";
import { EventHub } from "./_events.ts";
import { type Match, Router, ROUTES } from "./_router.ts";
import type { ControlState } from "./_state.ts";
import { daemonJson } from "./_daemons.ts";
import type { ControlOptions } from "./options.ts";
import openapi from "./openapi.json" with { type: "json" };

const log = getLogger(["sandd", "control"]);

/** Base path of the control API. */
export const CONTROL_PREFIX = "/api/v1";

/** The OpenAPI document, serialized once on first use. */
let openapiText: string | undefined;

/** The control API mount with a way to end its long-lived answers when the server closes. */
export interface ControlMount extends HttpMount {
  /** End event streams and waits (the server closes). */
  close(): void;
}

/**
 * Build the control API's mount. Also guards the daemon endpoint: a request presenting a client token is refused
 * there (a client's credential never registers a daemon).
 *
 * @param host The controller and its internals.
 * @param control `ServerOptions.control` (validated by `Server.listen`).
 * @param security The server's security settings (the daemon authenticator, the failure limiter, the audit).
 */
export function createControlMount(
  host: ControlHost,
  control: true | ControlOptions,
  security: Security,
): ControlMount {
  const options: ControlOptions = control === true ? {} : control;
  const auth = new ClientAuth(options.tokens ?? []);
  security.authenticator = refuseClientTokens(auth, security.authenticator);
  const init = { options, auth, failures: security.failures };
  const router = new Router(ROUTES);
  const closing = new AbortController();
  const state: ControlState = {
    processes: new Map(),
    events: new EventHub(init.options.maxEventQueue ?? 1_024),
    maxJsonBytes: init.options.maxJsonBytes ?? 1024 * 1024,
  };
  host.server.addEventListener(
    "connect",
    (e) => {
      // Described only for subscribers: a failover brings thousands of these within seconds.
      if (state.events.size > 0) state.events.publish("connect", daemonJson(e.daemon));
    },
  );
  host.server.addEventListener(
    "disconnect",
    (e) => {
      if (state.events.size > 0) state.events.publish("disconnect", daemonJson(e.daemon));
    },
  );
  const audited = security.audit !== undefined;

  const handle = async (
    request: HttpRequest,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  ): Promise<Response> => {
    const raw = request.url;
    const fast = fastPath(raw);
    let parsed: URL | undefined = fast === null ? new URL(raw) : undefined;
    const pathname = fast === null ? parsed!.pathname : fast.pathname;
    const path = pathname.slice(CONTROL_PREFIX.length) || "/";
    let match: Match | null;
    try {
      match = router.match(path);
    } catch (error) {
      return errorResponse(error);
    }
    if (!match) {
      return errorResponse(new HttpError(404, "NOT_FOUND", `No route ${path.slice(0, 200)}`));
    }
    const route = match.methods.get(request.method) ??
      (request.method === "HEAD" ? match.methods.get("GET") : undefined);
    if (!route) {
      const allow = [...match.methods.keys()].join(", ");
      return errorResponse(
        new HttpError(
          405,
          "METHOD_NOT_ALLOWED",
          `${request.method} is not allowed here; use ${allow}`,
          {
            allow,
          },
        ),
      );
    }
    if (route.scope === null) {
      openapiText ??= JSON.stringify(openapi);
      return new Response(openapiText, { headers: { "content-type": "application/json" } });
    }
    const client = init.auth.authenticate(request);
    if (client === null) {
      if (host.metrics) host.metrics.authFailures[ENDPOINT_API]!++;
      const retryMs = init.failures.failed(info.remoteAddr.hostname);
      host.auditor.write({
        daemon: match.params.id ?? "",
        identity: `client:?@${info.remoteAddr.hostname}`,
        action: `api.refused`,
        ok: false,
        error: retryMs > 0 ? "rate limited" : "unauthorized",
      });
      await request.body?.cancel().catch(() => {});
      if (retryMs > 0) {
        return errorResponse(
          new HttpError(429, "RATE_LIMITED", "Too many failed authentications", {
            "retry-after": String(Math.ceil(retryMs / 1000)),
          }),
        );
      }
      log.warn("Answered 401 to {remote} on {path}", {
        remote: `${info.remoteAddr.hostname}:${info.remoteAddr.port}`,
        path: pathname,
      });
      return errorResponse(
        new HttpError(401, "UNAUTHORIZED", "A valid client token is required", {
          "www-authenticate": 'Bearer realm="sandd"',
        }),
      );
    }
    if (!client.scopes.has(route.scope)) {
      host.auditor.write({
        daemon: match.params.id ?? "",
        identity: `client:${client.name}`,
        action: `api.refused`,
        ok: false,
        error: `missing scope ${route.scope} for ${route.method} ${route.path}`,
      });
      await request.body?.cancel().catch(() => {});
      return errorResponse(
        new HttpError(403, "FORBIDDEN", `This token lacks the '${route.scope}' scope`),
      );
    }
    const ctx: ControlContext = {
      host,
      server: host.server,
      client,
      get url() {
        return parsed ??= new URL(raw);
      },
      hasQuery: fast === null ? parsed!.search !== "" : fast.query,
      get remote() {
        return `${info.remoteAddr.hostname}:${info.remoteAddr.port}`;
      },
      closing: closing.signal,
      state,
    };
    if (route.path === "/events") {
      host.auditor.write({
        daemon: "",
        identity: `client:${client.name}`,
        action: "api.events",
        ok: true,
      });
      return state.events.subscribe();
    }
    const run = async (): Promise<Response> => {
      try {
        return await route.handle(ctx, request, match.params);
      } catch (error) {
        await request.body?.cancel().catch(() => {});
        return errorResponse(error);
      }
    };
    // Not awaited: the handler's promise is the answer (one hop less per call; `run` catches its errors).
    return audited ? auditActor.run(`client:${client.name}`, run) : run();
  };

  return {
    prefix: CONTROL_PREFIX,
    handle,
    close() {
      closing.abort(new Error("Server closed"));
      state.events.close();
    },
  };
}
