// Red-team pass 2 on the daemon's proxy dialer: a hostile (or wedged) egress proxy, written here as a tiny TCP server,
// answering CONNECT or SOCKS5 with nothing, a slow drip, a gigantic head, data before the tunnel or malformed
// replies. The daemon must give up within a deadline, release the socket, and never print the proxy password.
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { within } from "./_raw_daemon.ts";
import { dialThroughProxy, parseProxyUrl, ProxyError, proxyFor } from "../daemon/_proxy.ts";
import { WebSocketClient } from "../daemon/_websocket_client.ts";

/**
 * A hostile proxy: `behave` gets each accepted connection and does its reads and writes; once it settles, the
 * connection is read to its end, and `closed` resolves when the daemon let go.
 */
function hostileProxy(behave: (conn: Deno.Conn) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { promise: closed, resolve: onClosed } = Promise.withResolvers<void>();
  const conns = new Set<Deno.Conn>();
  const tasks: Promise<void>[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        conns.add(conn);
        tasks.push((async () => {
          await behave(conn).catch(() => {});
          // Then watch for the daemon closing its side.
          const buffer = new Uint8Array(4096);
          try {
            while ((await conn.read(buffer)) !== null) {
              // requests are ignored
            }
          } catch {
            // reset
          }
          onClosed();
        })());
      }
    } catch {
      // closed
    }
  })();
  return {
    url: (scheme: string, auth = "") =>
      new URL(`${scheme}://${auth}127.0.0.1:${listener.addr.port}`),
    closed,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // closed
        }
      }
      await accepting;
      await Promise.all(tasks);
    },
  };
}

const encoder = new TextEncoder();
/** Say nothing more (the connection is then watched for its end). */
const silent = () => Promise.resolve();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("redteam2: a proxy that never answers cannot keep the daemon's socket once the attempt is given up", async () => {
  await using proxy = hostileProxy(silent);
  const socket = new WebSocketClient("ws://ctl.example.com:8765/ws", {
    proxy: proxy.url("http"),
  });
  const closed = new Promise<void>((resolve) => socket.onclose = () => resolve());
  // The daemon's handshake timeout gives up on the attempt by closing the socket.
  await sleep(200);
  socket.close();
  await closed;
  await within(proxy.closed, 3_000, "the daemon to close its connection to the silent proxy");
});

Deno.test("redteam2: a slow drip, a silent SOCKS5 proxy or a half address fail within the handshake deadline", async () => {
  const dripping: Promise<void>[] = [];
  const drip = async (conn: Deno.Conn) => {
    await conn.write(encoder.encode("HTTP/1.1 200 OK\r\n"));
    // One byte every 50 ms, in the background, until the daemon leaves.
    dripping.push(
      (async () => {
        for (let i = 0; i < 10_000; i++) {
          await conn.write(encoder.encode("x"));
          await sleep(50);
        }
      })().catch(() => {}),
    );
  };
  const socksHalf = async (conn: Deno.Conn) => {
    const buffer = new Uint8Array(512);
    await conn.read(buffer); // greeting
    await conn.write(new Uint8Array([5, 0]));
    await conn.read(buffer); // request
    // Success, a domain bound address of 255 bytes... of which none ever arrive.
    await conn.write(new Uint8Array([5, 0, 0, 3, 255]));
  };
  for (
    const [scheme, behave] of [["http", drip], ["socks5h", silent], ["socks5h", socksHalf]] as const
  ) {
    await using proxy = hostileProxy(behave);
    const error = await within(
      assertRejects(
        () => dialThroughProxy(proxy.url(scheme), "ctl.example.com", 443, { timeoutMs: 500 }),
        ProxyError,
      ),
      5_000,
      `${scheme} dial to give up`,
    );
    assertEquals(error.code, "PROXY_TIMEOUT", `${scheme}: ${error.message}`);
    await within(proxy.closed, 3_000, "the daemon to close its connection");
  }
  await Promise.all(dripping);
});

Deno.test("redteam2: gigantic heads, data before the tunnel and malformed SOCKS5 replies are refused", async () => {
  const cases: [string, (conn: Deno.Conn) => Promise<void>, string][] = [
    ["http", async (conn) => {
      // A megabyte of header with no end.
      await conn.write(encoder.encode("HTTP/1.1 200 OK\r\nX: " + "a".repeat(1 << 20)));
    }, "PROXY_PROTOCOL"],
    ["http", async (conn) => {
      await conn.write(encoder.encode("HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 101 Switching\r\n\r\n"));
    }, "PROXY_PROTOCOL"],
    ["http", async (conn) => {
      await conn.write(encoder.encode("SSH-2.0-OpenSSH\r\n\r\n"));
    }, "PROXY_PROTOCOL"],
    ["socks5h", async (conn) => {
      const buffer = new Uint8Array(512);
      await conn.read(buffer);
      await conn.write(new Uint8Array([5, 0]));
      await conn.read(buffer);
      await conn.write(new Uint8Array([5, 0, 0, 9, 1, 2, 3, 4, 0, 80])); // address type 9
    }, "PROXY_PROTOCOL"],
    ["socks5h", async (conn) => {
      const buffer = new Uint8Array(512);
      await conn.read(buffer);
      await conn.write(new Uint8Array([4, 90])); // SOCKS4
    }, "PROXY_PROTOCOL"],
    ["socks5h", async (conn) => {
      const buffer = new Uint8Array(512);
      await conn.read(buffer);
      await conn.write(new Uint8Array([5, 7])); // a method nobody offered
    }, "PROXY_PROTOCOL"],
  ];
  for (const [scheme, behave, code] of cases) {
    await using proxy = hostileProxy(behave);
    const error = await within(
      assertRejects(
        () => dialThroughProxy(proxy.url(scheme), "ctl.example.com", 443, { timeoutMs: 5_000 }),
        ProxyError,
      ),
      10_000,
      `${scheme} dial to fail`,
    );
    assertEquals(error.code, code, error.message);
    await within(proxy.closed, 3_000, "the daemon to close its connection");
  }
});

Deno.test("redteam2: the proxy password never appears in an error, even for a URL that does not parse", () => {
  for (const value of ["http://u:s3cr3tpw@proxy:99999", "http://u:s3cr3tpw@[::1", "u:s3cr3tpw@"]) {
    let message = "";
    try {
      parseProxyUrl(value, "HTTPS_PROXY");
    } catch (error) {
      message = (error as Error).message;
    }
    assert(message !== "", `${value} parsed`);
    assert(!message.includes("s3cr3tpw"), message);
  }
});

Deno.test("redteam2: NO_PROXY and the loopback rule see through a trailing dot and IPv4-mapped loopback", () => {
  const env = { HTTPS_PROXY: "http://p:3128", NO_PROXY: "example.com" };
  assertEquals(proxyFor(new URL("wss://ctl.example.com.:8765/ws"), env), null);
  assertEquals(
    proxyFor(new URL("wss://[::ffff:127.0.0.1]:8765/ws"), { HTTPS_PROXY: "http://p:1" }),
    null,
  );
  assertEquals(
    proxyFor(new URL("wss://ctl.example.com.evil:8765/ws"), env)?.href,
    "http://p:3128/",
  );
});
