import { assertEquals, assertThrows } from "../tests/_assert.ts";
import { parseProxyUrl, ProxyError, proxyFor, redact } from "./_proxy.ts";
import { parseDaemonArgs, UsageError } from "./cli.ts";

const WSS = new URL("wss://ctl.example.com:8765/ws");
const WS = new URL("ws://ctl.example.com/ws");

Deno.test("proxy: HTTPS_PROXY for wss, HTTP_PROXY for ws, ALL_PROXY last, lower-case names too", () => {
  const env = {
    HTTPS_PROXY: "http://a:3128",
    http_proxy: "socks5h://b:1080",
    ALL_PROXY: "socks5://c",
  };
  assertEquals(proxyFor(WSS, env)?.href, "http://a:3128/");
  assertEquals(proxyFor(WS, env)?.href, "socks5h://b:1080");
  assertEquals(proxyFor(WSS, { ALL_PROXY: "socks5://c:1" })?.href, "socks5://c:1");
  assertEquals(proxyFor(WSS, {}), null);
});

Deno.test("proxy: --proxy wins; 'none' forces a direct connection", () => {
  const env = { HTTPS_PROXY: "http://a:3128" };
  assertEquals(proxyFor(WSS, env, "socks5h://z:9")?.href, "socks5h://z:9");
  assertEquals(proxyFor(WSS, env, "none"), null);
  // A bare host:port is an HTTP proxy, as in curl.
  assertEquals(proxyFor(WSS, {}, "proxy.corp:8080")?.href, "http://proxy.corp:8080/");
});

Deno.test("proxy: NO_PROXY by host, domain suffix, port and *", () => {
  const p = "http://a:3128";
  for (
    const list of ["ctl.example.com", "example.com", ".example.com", "*", "x, example.com:8765"]
  ) {
    assertEquals(proxyFor(WSS, { HTTPS_PROXY: p, NO_PROXY: list }), null, list);
  }
  for (const list of ["other.com", "le.com", "example.com:443", "ctl.example.com.evil"]) {
    assertEquals(proxyFor(WSS, { HTTPS_PROXY: p, NO_PROXY: list })?.href, "http://a:3128/", list);
  }
});

Deno.test("proxy: the environment never proxies a loopback controller; --proxy does", () => {
  const env = { HTTPS_PROXY: "http://a:3128", HTTP_PROXY: "http://a:3128" };
  for (const url of ["ws://127.0.0.1:1/ws", "ws://localhost:1/ws", "wss://[::1]:1/ws"]) {
    assertEquals(proxyFor(new URL(url), env), null, url);
    assertEquals(proxyFor(new URL(url), {}, "http://p:1")?.href, "http://p:1/", url);
  }
});

Deno.test("proxy: unsupported schemes and junk are clear errors; passwords never shown", () => {
  const e = assertThrows(() => parseProxyUrl("https://u:secret@p:1", "HTTPS_PROXY"), ProxyError);
  assertEquals(e.code, "PROXY_UNSUPPORTED");
  assertEquals(e.message.includes("secret"), false);
  assertEquals(e.message.includes("HTTPS_PROXY"), true);
  assertThrows(() => parseProxyUrl("http://", "--proxy"), ProxyError);
  assertEquals(redact(new URL("http://u:pw@h:1")), "http://u:***@h:1/");
  const usage = assertThrows(
    () => parseDaemonArgs(["--server-url", "ws://h:1/ws", "--proxy", "ftp://p"], {}),
    UsageError,
  );
  assertEquals(usage.message.includes("ftp:"), true);
  assertEquals(
    parseDaemonArgs(["--server-url", "ws://h:1/ws"], { HTTP_PROXY: "socks5h://p:1" }).proxy?.href,
    "socks5h://p:1",
  );
});
