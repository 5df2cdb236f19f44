import { serveHttp } from "../../../server/_http_listener.ts";
import { LeanHttpClient } from "./_lean_http.ts";
const handler = async (request: any) => {
  if (request.method === "POST") { const b = await request.json(); return Response.json({ ok: b }); }
  return Response.json({ hello: "world" });
};
const a = serveHttp({ port: 0, engine: "sandd" }, handler);
const b = serveHttp({ port: 0, engine: "deno" }, handler);
const ca = await LeanHttpClient.connect(a.addr.port), cb = await LeanHttpClient.connect(b.addr.port);
const t: Record<string, number[]> = { sandd: [], deno: [], sanddPost: [], denoPost: [] };
for (let i = 0; i < 3000; i++) {
  let s = performance.now(); await ca.request("GET", "/x"); t.sandd.push(performance.now() - s);
  s = performance.now(); await cb.request("GET", "/x"); t.deno.push(performance.now() - s);
  s = performance.now(); await ca.request("POST", "/x", '{"a":1}'); t.sanddPost.push(performance.now() - s);
  s = performance.now(); await cb.request("POST", "/x", '{"a":1}'); t.denoPost.push(performance.now() - s);
}
const med = (x: number[]) => x.slice(500).sort((p, q) => p - q)[(x.length - 500) >> 1];
for (const k in t) console.log(k, med(t[k]).toFixed(3));
ca.close(); cb.close(); await a.shutdown(); await b.shutdown();
