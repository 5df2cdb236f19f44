// The daemon side of the wire, written by hand for tests that play a hostile or broken daemon against a real
// controller: the upgrade with a bearer token, the hello, and pongs; the test decides everything else.
import { SUBPROTOCOL } from "../mod.ts";

/** A parsed text message from the controller (loosely typed on purpose: tests poke at any field). */
// deno-lint-ignore no-explicit-any
export type RawMessage = any;

/** A daemon's `hello` as sent on the wire: daemon `id` on `hostname`, a new instance each time. */
export function helloText(id: string, hostname: string): string {
  return JSON.stringify({
    t: "hello",
    id,
    labels: {},
    hostname,
    platform: "linux",
    arch: "x86_64",
    version: "0",
    pid: 1,
    processes: 0,
    instance: crypto.randomUUID(),
  });
}

/**
 * Open a WebSocket to `url` as daemon `id`: it says hello on open and answers every ping; every other text
 * message goes to `onMessage`, parsed. Binary frames are left to the caller (`socket.binaryType` is
 * `"arraybuffer"`).
 */
export function rawDaemonSocket(
  url: string,
  id: string,
  token: string,
  onMessage: (message: RawMessage) => void,
): WebSocket {
  const socket = new WebSocket(url, {
    protocols: [SUBPROTOCOL],
    headers: { authorization: `Bearer ${token}` },
  });
  socket.binaryType = "arraybuffer";
  socket.onopen = () => socket.send(helloText(id, "hostile"));
  socket.onmessage = (event) => {
    if (typeof event.data !== "string") return;
    const message = JSON.parse(event.data);
    if (message.t === "ping") socket.send('{"t":"pong"}');
    else onMessage(message);
  };
  return socket;
}

/** Fail (instead of hanging the test run) when `promise` has not settled within `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} still pending after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A controller written by hand, for tests that play a hostile controller against a real daemon. */
export interface RawControllerServer {
  /** The listener; the daemon dials `ws://127.0.0.1:${server.addr.port}/ws`. */
  server: Deno.HttpServer<Deno.NetAddr>;
  /** The daemon's socket, once it said hello (and was welcomed). */
  connected: Promise<WebSocket>;
}

/**
 * Listen on 127.0.0.1 for one daemon: accept its upgrade, welcome its hello (heartbeat 60 s, so the test owns the
 * link's timing), answer its pings; every other text message goes to `onMessage`, parsed.
 */
export function serveRawController(onMessage: (message: RawMessage) => void): RawControllerServer {
  const { promise: connected, resolve: onSocket } = Promise.withResolvers<WebSocket>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request, {
      protocol: SUBPROTOCOL,
      idleTimeout: 0,
    });
    socket.binaryType = "arraybuffer";
    socket.onerror = () => {};
    socket.onmessage = (event) => {
      if (typeof event.data !== "string") return;
      const message = JSON.parse(event.data);
      if (message.t === "hello") {
        socket.send(JSON.stringify({ t: "welcome", version: "0", heartbeatMs: 60_000 }));
        onSocket(socket);
      } else if (message.t === "ping") socket.send('{"t":"pong"}');
      else onMessage(message);
    };
    return response;
  });
  return { server, connected };
}
