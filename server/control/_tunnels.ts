// The control API's port routes, so a remote `Client` (and `sandd forward`) can reach a worker's ports too:
// - `GET /daemons/{id}/tunnel?port=N`: a WebSocket carrying one TCP connection to 127.0.0.1:N on the worker.
//   Binary frames are the connection's bytes; text frames are JSON: `{ "type": "ack", "offset": N }` returns
//   credit (each direction runs the one stream layer, CreditSender/CreditReceiver, with TUNNEL_API_WINDOW),
//   `{ "type": "eof" }` is a half-close, `{ "type": "error", "code", "message" }` ends it with a reason.
//   The worker connection is opened before the upgrade, so a refused port or a policy refusal is a JSON error.
// - `POST /daemons/{id}/expose` `{ port }` → 201 `{ url, handle }`, and `POST /daemons/{id}/expose/{proc}/close`
//   (`{proc}` = the handle) → 204: an `exposeHttp` URL made and revoked over the API.
import type { HttpRequest } from "../_http1_request.ts";
import { CreditReceiver, CreditSender } from "@sandd/protocol/stream";
import type { ControlContext, RouteParams } from "./_context.ts";
import { upgradeWebSocket } from "../_http1_request.ts";
import { badRequest, errorResponse, HttpError } from "./_errors.ts";
import { type BodySchema, onlyParams, readJson } from "./_body.ts";
import type { ExposedHttp } from "../forward.ts";

/** Bytes a side may have in flight on an API tunnel before the other acknowledges them. */
export const TUNNEL_API_WINDOW = 1024 * 1024;
const EXPOSE: BodySchema = { required: { port: { type: "int", min: 1, max: 65535 } } };
/** Exposures made over the API, at most, per controller. */
const MAX_API_EXPOSURES = 1024;

function port(value: unknown, name: string): number {
  const n = typeof value === "string" && /^\d{1,5}$/.test(value) ? Number(value) : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 65535) {
    throw badRequest(`${name} must be an integer from 1 to 65535, got ${JSON.stringify(value)}`);
  }
  return n;
}

/** `GET /daemons/{id}/tunnel?port=N`. */
export async function handleTunnel(
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  const id = params.id!;
  onlyParams(ctx.url, ["port"]);
  const remotePort = port(ctx.url.searchParams.get("port") ?? undefined, "port");
  if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    throw new HttpError(400, "BAD_REQUEST", "Expected a WebSocket upgrade");
  }
  const open = ctx.host.tunnel;
  if (!open) throw new HttpError(501, "NOT_IMPLEMENTED", "This controller has no port tunnels");
  const tunnel = await open(id, remotePort);
  const { socket, response } = upgradeWebSocket(request, { idleTimeout: 0 });
  socket.binaryType = "arraybuffer";
  const up = new CreditReceiver({ window: TUNNEL_API_WINDOW, gaps: false, name: "tunnel input" });
  const down = new CreditSender({ window: TUNNEL_API_WINDOW });
  let wakeDown: (() => void) | null = null;
  let writing: Promise<void> = Promise.resolve();
  let done = false;
  const finish = (code: number, reason: string, error?: { code: string; message: string }) => {
    if (done) return;
    done = true;
    wakeDown?.();
    if (error) tunnel.abort(error.message);
    if (socket.readyState === WebSocket.OPEN) {
      if (error) socket.send(JSON.stringify({ type: "error", ...error }));
      socket.close(code, reason);
    }
  };
  ctx.closing.addEventListener("abort", () => finish(1001, "controller closing"), { once: true });
  // Both directions ended (the client's eof written through, the worker's eof sent): the connection is over.
  let upEnded = false, downEnded = false;
  const ended = () => {
    if (upEnded && downEnded) finish(1000, "connection closed");
  };
  // Worker → client, within the client's credit.
  const pumpDown = async () => {
    try {
      while (!done) {
        const chunk = await tunnel.read();
        if (chunk === null) {
          if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "eof" }));
          downEnded = true;
          ended();
          return;
        }
        for (let at = 0; at < chunk.length && !done;) {
          if (down.room === 0) {
            await new Promise<void>((resolve) => wakeDown = resolve);
            wakeDown = null;
            continue;
          }
          const n = Math.min(down.room, chunk.length - at);
          down.sent(n);
          socket.send(chunk.subarray(at, at + n));
          at += n;
        }
      }
    } catch (error) {
      const e = error as { code?: string; message?: string };
      finish(1011, "worker connection failed", {
        code: e.code ?? "ECONNRESET",
        message: e.message ?? String(error),
      });
    }
  };
  socket.onopen = () => void pumpDown();
  socket.onmessage = (event) => {
    if (done) return;
    try {
      if (typeof event.data === "string") {
        const message = parseControl(event.data);
        if (message.type === "ack") {
          down.ack(message.offset);
          wakeDown?.();
        } else if (message.type === "eof") {
          writing = writing.then(() => {
            tunnel.closeWrite();
            upEnded = true;
            ended();
          });
        } else {
          finish(1000, "client error", { code: message.code, message: message.message });
        }
        return;
      }
      const bytes = new Uint8Array(event.data as ArrayBuffer);
      up.data(up.received, bytes);
      writing = writing.then(async () => {
        const chunk = up.take();
        if (chunk === undefined || done) return;
        await tunnel.write(chunk);
        const ack = up.ackDue();
        if (ack !== null && socket.readyState === WebSocket.OPEN) {
          socket.send(JSON.stringify({ type: "ack", offset: ack }));
        }
      }).catch((error) =>
        finish(1011, "worker connection failed", { code: "ECONNRESET", message: String(error) })
      );
    } catch (error) {
      // A frame past the credit granted, or a malformed control message: the client broke the rules.
      finish(1008, "protocol violation", {
        code: "PROTOCOL",
        message: (error as Error).message,
      });
    }
  };
  socket.onclose = () => {
    if (!done) {
      done = true;
      wakeDown?.();
      tunnel.abort("the API client closed the tunnel");
    }
  };
  socket.onerror = () => {};
  return response;
}

type TunnelControl =
  | { type: "ack"; offset: number }
  | { type: "eof" }
  | { type: "error"; code: string; message: string };

/** Parse a text frame of an API tunnel (both sides use it). */
export function parseControl(text: string): TunnelControl {
  if (text.length > 4096) throw new TypeError("Tunnel control message over 4096 characters");
  const value = JSON.parse(text) as Record<string, unknown>;
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new TypeError("Tunnel control message must be a JSON object");
  }
  const keys = Object.keys(value).sort().join(",");
  if (value.type === "ack" && keys === "offset,type" && Number.isSafeInteger(value.offset)) {
    return { type: "ack", offset: value.offset as number };
  }
  if (value.type === "eof" && keys === "type") return { type: "eof" };
  if (
    value.type === "error" && keys === "code,message,type" && typeof value.code === "string" &&
    typeof value.message === "string"
  ) {
    return { type: "error", code: value.code.slice(0, 64), message: value.message.slice(0, 1000) };
  }
  throw new TypeError(`Unknown tunnel control message ${text.slice(0, 100)}`);
}

/** `POST /daemons/{id}/expose` `{ port }`. */
export async function exposeCreate(
  ctx: ControlContext,
  request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  onlyParams(ctx.url, []);
  const body = await readJson(request, EXPOSE, ctx.state.maxJsonBytes);
  const remotePort = body.port as number;
  const exposures = exposuresOf(ctx);
  if (exposures.size >= MAX_API_EXPOSURES) {
    throw new HttpError(429, "RATE_LIMITED", `At most ${MAX_API_EXPOSURES} exposed URLs at once`);
  }
  const exposed = await ctx.server.exposeHttp(params.id!, { port: remotePort });
  const handle = `x-${crypto.randomUUID()}`;
  exposures.set(handle, exposed);
  return Response.json({ url: exposed.url, handle, daemonId: params.id, port: remotePort }, {
    status: 201,
  });
}

/** `POST /daemons/{id}/expose/{proc}/close`. */
export async function exposeClose(
  ctx: ControlContext,
  _request: HttpRequest,
  params: RouteParams,
): Promise<Response> {
  onlyParams(ctx.url, []);
  const exposures = exposuresOf(ctx);
  const exposed = exposures.get(params.proc!);
  if (!exposed || exposed.daemonId !== params.id) {
    return errorResponse(
      new HttpError(404, "NOT_FOUND", `No exposed URL '${params.proc}' on daemon '${params.id}'`),
    );
  }
  exposures.delete(params.proc!);
  await exposed.close();
  return new Response(null, { status: 204 });
}

const byState = new WeakMap<object, Map<string, ExposedHttp>>();

function exposuresOf(ctx: ControlContext): Map<string, ExposedHttp> {
  let map = byState.get(ctx.state);
  if (!map) byState.set(ctx.state, map = new Map());
  return map;
}
