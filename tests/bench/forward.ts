// Port forwarding: requests/s through `exposeHttp` against the same worker-side HTTP server reached directly
// (`wrk`, skipped with the reason when it is missing), and MiB/s of 1 GiB through `forward` against a direct TCP
// connection to the same sink, in the same run.
import type { BenchContext, Section } from "./_context.ts";
import { withDaemon } from "./_daemon.ts";
import type { Figure, SectionResult, Skipped } from "./_stats.ts";
import { denoServer } from "../_forward.ts";

const MiB = 1024 * 1024;

/** `wrk`'s requests/s against `url`, or null when wrk is missing. */
async function wrk(url: string, seconds: number): Promise<number | null> {
  let out;
  try {
    out = await new Deno.Command("wrk", {
      args: ["-t", "1", "-c", "16", "-d", `${seconds}s`, url],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
  const text = new TextDecoder().decode(out.stdout);
  const match = /Requests\/sec:\s+([\d.]+)/.exec(text);
  if (!out.success || !match) {
    throw new Error(`wrk failed: ${text}${new TextDecoder().decode(out.stderr)}`);
  }
  if (/Non-2xx|Socket errors/.test(text)) throw new Error(`wrk saw errors: ${text}`);
  return Number(match[1]);
}

/** Send `total` bytes to a `count` server at `port` and wait for its reply; MiB/s. */
async function pushThrough(port: number, total: number): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const block = new Uint8Array(MiB);
  for (let at = 0; at < block.length; at += 65536) {
    crypto.getRandomValues(block.subarray(at, at + 65536));
  }
  const started = performance.now();
  for (let sent = 0; sent < total; sent += block.length) {
    for (let at = 0; at < block.length;) at += await conn.write(block.subarray(at));
  }
  await conn.closeWrite();
  const reply = new TextDecoder().decode(await new Response(conn.readable).arrayBuffer());
  const ms = performance.now() - started;
  if (reply !== `got ${total} bytes`) throw new Error(`The sink answered '${reply}'`);
  return total / MiB / (ms / 1000);
}

async function run({ checkout, quick, log }: BenchContext): Promise<SectionResult> {
  const figures: Figure[] = [];
  const skipped: Skipped[] = [];
  await using http = denoServer("http");
  await using sink = denoServer("count");
  const httpPort = await http.port;
  const sinkPort = await sink.port;
  return await withDaemon(checkout, "bench-forward", async (server) => {
    if (typeof (server as { forward?: unknown }).forward !== "function") {
      skipped.push({ id: "forward", reason: "this checkout has no port forwarding" });
      return { figures, skipped };
    }
    const seconds = quick ? 1 : 5;
    await using exposed = await server.exposeHttp("bench-forward", { port: httpPort });
    log("forward: wrk direct");
    const direct = await wrk(`http://127.0.0.1:${httpPort}/hello`, seconds);
    if (direct === null) {
      skipped.push({ id: "forward.http_requests_per_second", reason: "wrk is not installed" });
    } else {
      log("forward: wrk through exposeHttp");
      const proxied = (await wrk(`${exposed.url}hello`, seconds))!;
      figures.push({
        id: "forward.http_requests_per_second",
        label: `HTTP requests/s through exposeHttp (wrk, 16 connections, ${seconds} s)`,
        unit: "/s",
        value: proxied,
        baseline: direct,
        baselineLabel: "wrk direct to the same server",
        comparison: "ratio",
        better: "higher",
        goal: "—",
      });
    }
    const total = (quick ? 32 : 1024) * MiB;
    await using tunnel = await server.forward("bench-forward", sinkPort);
    log(`forward: ${total / MiB} MiB direct`);
    const plain = await pushThrough(sinkPort, total);
    log(`forward: ${total / MiB} MiB through forward`);
    const tunnelled = await pushThrough(tunnel.port, total);
    figures.push({
      id: "forward.tcp_mib_per_second",
      label: `${total / MiB} MiB through forward`,
      unit: "MiB/s",
      value: tunnelled,
      baseline: plain,
      baselineLabel: "direct TCP to the same sink",
      comparison: "ratio",
      better: "higher",
      goal: "—",
    });
    return { figures, skipped };
  });
}

/** Port forwarding. */
export const forward: Section = {
  name: "forward",
  about: "requests/s through exposeHttp vs direct (wrk); 1 GiB through forward vs direct TCP",
  run,
};
