// The remote side of the control API's port routes (see control/_tunnels.ts), for `Client.forward`,
// `Client.exposeHttp` and `sandd forward`: a local TCP listener whose every connection becomes one API tunnel
// WebSocket, with the same credit rules both ways (the one stream layer, CreditSender/CreditReceiver).
import { CreditReceiver, CreditSender } from "@sandd/protocol/stream";
import { parseControl, TUNNEL_API_WINDOW } from "./control/_tunnels.ts";
import type { ExposedHttp, ExposeHttpOptions, Forwarding, ForwardOptions } from "./forward.ts";

/** Where the control API is and how to authenticate to it. */
export interface ApiEndpoint {
  /** The controller's base URL, e.g. `http://127.0.0.1:8765` (no trailing slash). */
  baseUrl: string;
  /** Headers every request carries (the bearer token). */
  headers: Record<string, string>;
  /** WebSocket options (token, trusted certificates); default: just `headers`. */
  webSocketOptions?: object;
  /** An HTTP client for `fetch` (trusted certificates). */
  client?: Deno.HttpClient;
}

function checkPort(name: string, value: unknown, min: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > 65535) {
    throw new RangeError(`${name} must be an integer from ${min} to 65535, got ${String(value)}`);
  }
  return value;
}

function wsUrl(api: ApiEndpoint, id: string, port: number): string {
  const url = new URL(`${api.baseUrl}/api/v1/daemons/${encodeURIComponent(id)}/tunnel`);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("port", String(port));
  return url.href;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

/**
 * Relay one local connection through an API tunnel to `remotePort` on the worker; resolves when both directions
 * ended (or it failed: the local connection is closed then).
 */
export async function relayThroughApi(
  api: ApiEndpoint,
  id: string,
  remotePort: number,
  local: Deno.Conn,
): Promise<void> {
  const socket = new WebSocket(
    wsUrl(api, id, remotePort),
    (api.webSocketOptions ?? { headers: api.headers }) as never,
  );
  socket.binaryType = "arraybuffer";
  const up = new CreditSender({ window: TUNNEL_API_WINDOW });
  const down = new CreditReceiver({
    window: TUNNEL_API_WINDOW,
    gaps: false,
    name: "tunnel output",
  });
  let wakeUp: (() => void) | null = null;
  let writing: Promise<void> = Promise.resolve();
  let failed = false;
  const { promise: closed, resolve: onClosed } = Promise.withResolvers<void>();
  const fail = () => {
    if (failed) return;
    failed = true;
    wakeUp?.();
    try {
      local.close();
    } catch { /* closed */ }
    if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) {
      socket.close();
    }
  };
  socket.onmessage = (event) => {
    try {
      if (typeof event.data === "string") {
        const message = parseControl(event.data);
        if (message.type === "ack") {
          up.ack(message.offset);
          wakeUp?.();
        } else if (message.type === "eof") {
          writing = writing.then(() => local.closeWrite());
        } else fail();
        return;
      }
      down.data(down.received, new Uint8Array(event.data as ArrayBuffer));
      writing = writing.then(async () => {
        const chunk = down.take();
        if (chunk === undefined || failed) return;
        await writeAll(local, chunk);
        const ack = down.ackDue();
        if (ack !== null && socket.readyState === WebSocket.OPEN) {
          socket.send(JSON.stringify({ type: "ack", offset: ack }));
        }
      }).catch(fail);
    } catch {
      fail();
    }
  };
  socket.onerror = () => fail();
  socket.onclose = () => {
    wakeUp?.();
    onClosed();
  };
  await new Promise<void>((resolve) => {
    socket.addEventListener("open", () => resolve(), { once: true });
    socket.addEventListener("close", () => resolve(), { once: true });
  });
  if (socket.readyState !== WebSocket.OPEN) {
    fail();
    await closed;
    return;
  }
  // Local → worker, within the controller's credit.
  const buffer = new Uint8Array(64 * 1024);
  try {
    while (!failed) {
      const n = await local.read(buffer);
      if (n === null) {
        socket.send(JSON.stringify({ type: "eof" }));
        break;
      }
      for (let at = 0; at < n && !failed;) {
        if (up.room === 0) {
          await new Promise<void>((resolve) => wakeUp = resolve);
          wakeUp = null;
          if (socket.readyState !== WebSocket.OPEN) throw new Error("tunnel closed");
          continue;
        }
        const size = Math.min(up.room, n - at);
        up.sent(size);
        socket.send(buffer.slice(at, at + size));
        at += size;
      }
    }
  } catch {
    fail();
  }
  await closed;
  await writing.catch(() => {});
  try {
    local.close();
  } catch { /* closed */ }
}

/**
 * Forward a local port to a worker's port through the control API (what `Client.forward` and `sandd forward` use).
 *
 * @param api The controller's API endpoint.
 * @param id Daemon id.
 * @param remotePort The port on the worker.
 * @param options Local port and address, abort signal.
 * @returns The forwarding.
 */
export function forwardThroughApi(
  api: ApiEndpoint,
  id: string,
  remotePort: number,
  options: ForwardOptions = {},
): Promise<Forwarding> {
  checkPort("remotePort", remotePort, 1);
  const port = checkPort("port", options.port ?? 0, 0);
  const hostname = options.hostname ?? "127.0.0.1";
  options.signal?.throwIfAborted();
  const listener = Deno.listen({ hostname, port });
  const relays = new Set<Promise<void>>();
  const conns = new Set<Deno.Conn>();
  let closing: Promise<void> | null = null;
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        conns.add(conn);
        const relay = relayThroughApi(api, id, remotePort, conn).finally(() => {
          conns.delete(conn);
          relays.delete(relay);
        });
        relays.add(relay);
      }
    } catch { /* listener closed */ }
  })();
  const forwarding: Forwarding = {
    hostname: (listener.addr as Deno.NetAddr).hostname,
    port: (listener.addr as Deno.NetAddr).port,
    daemonId: id,
    remotePort,
    get connections() {
      return conns.size;
    },
    close() {
      closing ??= (async () => {
        listener.close();
        await accepting;
        for (const conn of conns) {
          try {
            conn.close();
          } catch { /* closed */ }
        }
        await Promise.all(relays);
      })();
      return closing;
    },
    [Symbol.asyncDispose]() {
      return forwarding.close();
    },
  } as Forwarding;
  options.signal?.addEventListener("abort", () => void forwarding.close(), { once: true });
  return Promise.resolve(forwarding);
}

/**
 * Expose a worker's HTTP server at a URL on the controller, through the control API.
 *
 * @param api The controller's API endpoint.
 * @param id Daemon id.
 * @param options The worker's port.
 * @param toError Maps a failed API answer to the error to throw.
 * @returns The URL and its `close()`.
 */
export async function exposeThroughApi(
  api: ApiEndpoint,
  id: string,
  options: ExposeHttpOptions,
  toError: (response: Response) => Promise<Error>,
): Promise<ExposedHttp> {
  const port = checkPort("port", options.port, 1);
  options.signal?.throwIfAborted();
  const base = `${api.baseUrl}/api/v1/daemons/${encodeURIComponent(id)}/expose`;
  const response = await fetch(base, {
    method: "POST",
    headers: { ...api.headers, "content-type": "application/json" },
    body: JSON.stringify({ port }),
    ...(api.client ? { client: api.client } : {}),
  });
  if (response.status !== 201) throw await toError(response);
  const made = await response.json() as { url: string; handle: string };
  let closing: Promise<void> | null = null;
  const exposed = {
    url: made.url,
    daemonId: id,
    port,
    close(): Promise<void> {
      closing ??= (async () => {
        const r = await fetch(`${base}/${encodeURIComponent(made.handle)}/close`, {
          method: "POST",
          headers: api.headers,
          ...(api.client ? { client: api.client } : {}),
        });
        await r.body?.cancel();
        if (r.status !== 204 && r.status !== 404) throw await toError(r);
      })();
      return closing;
    },
  } as ExposedHttp;
  options.signal?.addEventListener("abort", () => void exposed.close().catch(() => {}), {
    once: true,
  });
  return exposed;
}
