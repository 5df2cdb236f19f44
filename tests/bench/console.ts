// The web console in a real browser (Debian's chromium, headless, playwright-core), over loopback: time from page
// load to a usable terminal, keystroke echo as the page sees it (WebSocket + xterm drawing), and a `cat` of
// 10 MiB into the page's terminal: its rate, the longest stall of the page's main thread meanwhile, and the
// controller's memory (the browser's acks pace the program, so nothing queues without bound).
import type { Page } from "playwright-core";
import { haveChromium, launchBrowser } from "../_browser.ts";
import type { BenchContext, Section } from "./_context.ts";
import { withDaemon } from "./_daemon.ts";
import {
  type Figure,
  median,
  mibPerSecond,
  peakOf,
  quantile,
  resetPeak,
  type SectionResult,
  toMiB,
} from "./_stats.ts";

const ID = "bench-console";
const ECHO = "stty raw -echo && echo READY && exec cat";

/** In the page: open a terminal socket running `ECHO`, then type `keys` bytes one at a time, each timed from
 * send to drawn by xterm. Returns the samples in ms. */
const PAGE_ECHO = `async ({ keys, command }) => {
  const { Terminal } = globalThis.sandd;
  const host = document.createElement("div");
  document.body.append(host);
  const term = new Terminal({ cols: 80, rows: 24 });
  term.open(host);
  const query = new URLSearchParams({ cols: "80", rows: "24", command, flow: "262144" });
  const ws = new WebSocket("ws://" + location.host + "/console/terminal/${ID}?" + query);
  ws.binaryType = "arraybuffer";
  let text = "";
  let drawn = null;
  const decoder = new TextDecoder();
  ws.onmessage = (event) => {
    if (typeof event.data === "string") return;
    const bytes = new Uint8Array(event.data);
    term.write(bytes, () => {
      text += decoder.decode(bytes, { stream: true });
      drawn?.();
    });
  };
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  while (!text.includes("READY")) await new Promise((resolve) => drawn = resolve);
  const samples = [];
  for (let i = 0; i < keys; i++) {
    const start = performance.now();
    const done = new Promise((resolve) => drawn = resolve);
    ws.send(new Uint8Array([0x61]));
    await done;
    samples.push(performance.now() - start);
  }
  ws.send(JSON.stringify({ type: "kill", signal: "SIGKILL" }));
  await new Promise((resolve) => { ws.onclose = resolve; });
  term.dispose();
  host.remove();
  return samples;
}`;

/** Keystroke echo through the same command from the Deno side (no browser): the baseline. */
async function denoEcho(
  server: { shell(id: string, o: object): Promise<ShellLike> },
  keys: number,
): Promise<number[]> {
  const sh = await server.shell(ID, { command: ["sh", "-c", ECHO] });
  const reader = sh.output.getReader();
  let seen = "";
  const decoder = new TextDecoder();
  while (!seen.includes("READY")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("Ended before READY");
    seen += decoder.decode(value, { stream: true });
  }
  const samples: number[] = [];
  for (let i = 0; i < keys; i++) {
    const start = performance.now();
    await sh.write(new Uint8Array([0x61]));
    const { done } = await reader.read();
    if (done) throw new Error("Ended during echo");
    samples.push(performance.now() - start);
  }
  reader.releaseLock();
  await sh.close();
  return samples;
}

/** In the page (a function, not a string: the console's CSP forbids eval): the terminal has drawn bytes. */
function termDrawn(): boolean {
  const sandd = (globalThis as unknown as { sandd?: { term: { drawn: number } | null } }).sandd;
  return (sandd?.term?.drawn ?? 0) > 0;
}

interface ShellLike {
  output: ReadableStream<Uint8Array>;
  write(data: Uint8Array): Promise<void>;
  close(): Promise<unknown>;
}

async function screenHas(page: Page, pattern: RegExp, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (true) {
    const text = await page.evaluate("globalThis.sandd.screen()") as string;
    if (pattern.test(text)) return;
    if (Date.now() > deadline) throw new Error(`No ${pattern} within ${ms} ms`);
    await page.waitForTimeout(100);
  }
}

async function run({ checkout, quick }: BenchContext): Promise<SectionResult> {
  if (!haveChromium()) {
    return {
      figures: [],
      skipped: [{ id: "console", reason: "/usr/bin/chromium is not installed" }],
    };
  }
  const loads = quick ? 2 : 7;
  const keys = quick ? 30 : 500;
  const megabytes = quick ? 1 : 10;
  const bytes = megabytes * 1024 * 1024;
  const file = await Deno.makeTempFile({ prefix: "sandd_bench_console_", suffix: ".txt" });
  try {
    {
      // Printable lines of 64 characters: what a log looks like on a terminal.
      const line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\n";
      await Deno.writeTextFile(file, line.repeat(bytes / line.length));
    }
    return await withDaemon(checkout, ID, async (server) => {
      const http = server.url.replace(/^ws/, "http").replace(/\/ws$/, "");
      const probe = await fetch(`${http}/console/`);
      await probe.body?.cancel();
      if (probe.status !== 200) {
        return {
          figures: [],
          skipped: [{
            id: "console",
            reason: "this checkout has no console (/console/ answered " + probe.status + ")",
          }],
        };
      }
      const browser = await launchBrowser();
      try {
        const page = await browser.context.newPage();
        // Page load to usable terminal (a prompt drawn), against page load to the live fleet view.
        const usable: number[] = [];
        const prompt: number[] = [];
        const fleet: number[] = [];
        for (let i = 0; i < loads; i++) {
          let start = performance.now();
          await page.goto(`${http}/console/`);
          await page.waitForSelector("#status:text('live')");
          fleet.push(performance.now() - start);
          await page.goto("about:blank");
          start = performance.now();
          await page.goto(`${http}/console/#new=${ID}`);
          // Usable: the session is open and attached, keys typed now reach the terminal (the login shell's
          // own start-up, its profile scripts, is the worker's business and is reported apart).
          await page.waitForSelector("body[data-terminal='open']");
          usable.push(performance.now() - start);
          await page.waitForFunction(termDrawn, undefined, { timeout: 60_000 });
          prompt.push(performance.now() - start);
          await page.evaluate(
            "globalThis.sandd.term.socket.send(JSON.stringify({ type: 'kill', signal: 'SIGKILL' }))",
          );
          await page.waitForSelector("#term-state:text('exited')");
          await page.goto("about:blank");
        }
        await page.goto(`${http}/console/`);
        await page.waitForSelector("#status:text('live')");
        const warm = await page.evaluate(
          `(${PAGE_ECHO})({ keys: 10, command: ${JSON.stringify(ECHO)} })`,
        );
        void warm;
        const browserEcho = await page.evaluate(
          `(${PAGE_ECHO})({ keys: ${keys}, command: ${JSON.stringify(ECHO)} })`,
        ) as number[];
        const deno = await denoEcho(server as unknown as Parameters<typeof denoEcho>[0], keys);

        // Bulk output into the page's terminal, with a probe of the page's main thread.
        await page.goto("about:blank");
        await page.goto(`${http}/console/#new=${ID}`);
        await page.waitForFunction(termDrawn);
        await page.evaluate(`(() => {
          const probe = { max: 0, last: performance.now() };
          globalThis.__stall = probe;
          probe.timer = setInterval(() => {
            const now = performance.now();
            probe.max = Math.max(probe.max, now - probe.last - 10);
            probe.last = now;
          }, 10);
        })()`);
        const startRss = resetPeak("self");
        await page.locator("#terminal").click();
        const start = performance.now();
        await page.keyboard.type(`cat ${file}; echo END-$((40+2))\n`);
        // Wait on the byte count first (cheap for the page), then look at the screen once.
        await page.waitForFunction(
          (least: number) =>
            ((globalThis as unknown as { sandd: { term: { drawn: number } } }).sandd.term.drawn) >=
              least,
          bytes,
          { timeout: 600_000, polling: 250 },
        );
        const stall = await page.evaluate(
          "(() => { clearInterval(globalThis.__stall.timer); return globalThis.__stall.max; })()",
        ) as number;
        await screenHas(page, /^END-42\s*$/m, 60_000);
        const elapsed = performance.now() - start;
        const peak = peakOf("self");
        await page.keyboard.type("exit\n");
        await page.waitForSelector("#term-state:text('exited')");
        // The same file through a Deno-side shell handle: the rate without a browser.
        const sh = await server.shell(ID, { command: ["cat", file] });
        const denoStart = performance.now();
        let got = 0;
        for await (const chunk of sh.output) got += chunk.length;
        const denoElapsed = performance.now() - denoStart;
        await sh.close();
        // The same bytes written straight into an xterm in the same page (no network, no program): what the
        // browser's terminal itself can draw, and how long it holds the page doing so.
        const local = await page.evaluate(`(async () => {
          const { Terminal } = globalThis.sandd;
          const host = document.createElement("div");
          document.body.append(host);
          const term = new Terminal({ cols: 120, rows: 30, scrollback: 5000 });
          term.open(host);
          const line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\\r\\n";
          const chunk = new TextEncoder().encode(line.repeat(1024));
          let max = 0, last = performance.now();
          const timer = setInterval(() => {
            const now = performance.now();
            max = Math.max(max, now - last - 10);
            last = now;
          }, 10);
          const start = performance.now();
          let total = 0;
          while (total < ${bytes}) {
            await new Promise((resolve) => {
              for (let at = 0; at < chunk.length; at += 8192) {
                term.write(chunk.subarray(at, at + 8192), at + 8192 >= chunk.length ? resolve : undefined);
              }
            });
            total += chunk.length;
          }
          const elapsed = performance.now() - start;
          clearInterval(timer);
          term.dispose();
          host.remove();
          return { total, elapsed, max };
        })()`) as { total: number; elapsed: number; max: number };
        const figures: Figure[] = [
          {
            id: "console.load_to_terminal_ms",
            label:
              `page load to a usable terminal (session open, keys reach it), median of ${loads}`,
            unit: "ms",
            value: median(usable),
            baseline: median(fleet),
            baselineLabel: "page load to the live fleet view",
            comparison: "overhead",
            better: "lower",
            goal: "≤ 1 s",
          },
          {
            id: "console.load_to_prompt_ms",
            label: `page load to the login shell's first prompt drawn, median of ${loads}`,
            unit: "ms",
            value: median(prompt),
            baseline: median(usable),
            baselineLabel: "page load to a usable terminal",
            comparison: "overhead",
            better: "lower",
            goal: "— (the worker's login profile)",
          },
          {
            id: "console.echo_p50",
            label: `keystroke echo in the browser (WebSocket + xterm drawn), p50 of ${keys}`,
            unit: "ms",
            value: quantile(browserEcho, 0.5),
            baseline: quantile(deno, 0.5),
            baselineLabel: "same echo from a Deno RemoteShell",
            comparison: "overhead",
            better: "lower",
            goal: "≤ 5 ms",
          },
          {
            id: "console.echo_p99",
            label: `keystroke echo in the browser, p99 of ${keys}`,
            unit: "ms",
            value: quantile(browserEcho, 0.99),
            baseline: quantile(deno, 0.99),
            baselineLabel: "same echo from a Deno RemoteShell",
            comparison: "overhead",
            better: "lower",
            goal: "—",
          },
          {
            id: "console.cat_mib_per_second",
            label: `\`cat\` of ${megabytes} MiB into the page's terminal`,
            unit: "MiB/s",
            value: mibPerSecond(bytes, elapsed),
            baseline: mibPerSecond(local.total, local.elapsed),
            baselineLabel: "same bytes written into an xterm in the page",
            comparison: "ratio",
            better: "higher",
            goal: "—",
          },
          {
            id: "console.cat_deno_mib_per_second",
            label: `the same \`cat\` to a Deno RemoteShell (no browser)`,
            unit: "MiB/s",
            value: mibPerSecond(got, denoElapsed),
            baseline: mibPerSecond(bytes, elapsed),
            baselineLabel: "into the page's terminal",
            comparison: "ratio",
            better: "higher",
            goal: "—",
          },
          {
            id: "console.cat_page_stall_ms",
            label: `longest main-thread stall of the page during that \`cat\``,
            unit: "ms",
            value: stall,
            baseline: local.max,
            baselineLabel: "writing the same bytes into an xterm in the page",
            comparison: "overhead",
            better: "lower",
            goal: "no more than xterm's own (no freeze added)",
          },
          {
            id: "console.cat_controller_peak_rss",
            label: `controller peak RSS during that \`cat\``,
            unit: "MiB",
            value: toMiB(peak),
            baseline: toMiB(startRss),
            baselineLabel: "at the start",
            comparison: "growth",
            better: "lower",
            goal: "bounded (flow control reaches the program)",
          },
        ];
        return { figures, skipped: [] };
      } finally {
        await browser.close();
      }
    }, { listen: { control: true, console: true } as Record<string, unknown> });
  } finally {
    await Deno.remove(file).catch(() => {});
  }
}

/** The `console` section. */
export const consoleSection: Section = {
  name: "console",
  about: "web console in chromium: load to terminal, keystroke echo, 10 MiB cat without freezing",
  run,
};
