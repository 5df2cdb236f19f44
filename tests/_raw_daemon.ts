// The daemon side of the wire, written by hand for tests that play a hostile or broken daemon against a real
// controller: the upgrade with a bearer token, the hello, and pongs; the test decides everything else.
import { SUBPROTOCOL } from "../mod.ts";

/** A parsed text message from the controller (loosely typed on purpose: tests poke at any field). */
// deno-lint-ignore no-explicit-any
export type RawMessage = any;

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
  socket.onopen = () =>
    socket.send(JSON.stringify({
      t: "hello",
      id,
      labels: {},
      hostname: "hostile",
      platform: "linux",
      arch: "x86_64",
      version: "0",
      pid: 1,
      processes: 0,
      instance: crypto.randomUUID(),
    }));
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
