// The web console in a real browser: Debian's chromium driven by playwright-core, against a real controller
// (control API + console mounted) and the real daemon. Skipped, with the reason printed, when chromium is not
// installed (.ci/run installs it).
//
// Sanitizers: playwright talks to chromium over a pipe and keeps timers and reads of its own that end only after
// `close()` has resolved (its transport drains asynchronously), which the op sanitizer counts as leaks of this
// test. The browser is closed in `finally`, the controller and daemon are disposed and checked by their own
// tests; only the op sanitizer is off, for the browser tests alone.
import { Buffer } from "node:buffer";
import type { Page } from "playwright-core";
import { assert, assertEquals } from "./_assert.ts";
import { Server } from "../mod.ts";
import { TestDaemon } from "./_daemon.ts";
import { CHROMIUM, haveChromium, launchBrowser } from "./_browser.ts";
import { buildAssets } from "../server/console/build_assets.ts";

const HAVE_CHROMIUM = haveChromium();
if (!HAVE_CHROMIUM) console.log(`console_test: skipped, ${CHROMIUM} is not installed`);

const DEADLINE_MS = 20_000;

/** The open terminal's screen text (xterm's buffer, scrollback included). */
function screen(page: Page): Promise<string> {
  return page.evaluate(() =>
    (globalThis as unknown as { sandd: { screen(): string } }).sandd.screen()
  );
}

async function screenUntil(page: Page, pattern: RegExp, what: string): Promise<string> {
  const deadline = Date.now() + DEADLINE_MS;
  while (true) {
    const text = await screen(page);
    if (pattern.test(text)) return text;
    if (Date.now() > deadline) {
      throw new Error(`No ${what} (${pattern}) on screen: ${JSON.stringify(text.slice(-600))}`);
    }
    await page.waitForTimeout(50);
  }
}

Deno.test("the console's embedded assets match page/ and the npm packages deno.json imports", async () => {
  assert(await buildAssets(true), "run server/console/build_assets.ts");
});

Deno.test({
  name:
    "console in chromium: a daemon appears, files, a terminal types 42, resizes, survives a reload, a watcher reads along, a replay plays",
  ignore: !HAVE_CHROMIUM,
  sanitizeOps: false,
  async fn() {
    const recordings = await Deno.makeTempDir({ prefix: "sandd-casts-" });
    const shots = await Deno.makeTempDir({ prefix: "sandd-console-shots-" });
    const server = await Server.listen({ port: 0, control: true, console: { recordings } });
    const http = `http://127.0.0.1:${server.port}`;
    const browser = await launchBrowser();
    let daemon: TestDaemon | null = null;
    try {
      const page = await browser.context.newPage();
      await page.goto(`${http}/console/`);
      await page.waitForSelector("#fleet-view:not([hidden])");
      await page.waitForSelector("#status:text('live')", { timeout: DEADLINE_MS });
      // A daemon connects after the page loaded: it appears through the event stream, no reload.
      daemon = new TestDaemon({
        id: "w1",
        url: server.url,
        args: ["--label", "role=web", "--label", "zone=a"],
        // The login shell is `$SHELL -l`; this machine's bash profile takes seconds, sh's does not.
        env: { SHELL: "/bin/sh" },
      });
      const row = page.locator('tr[data-daemon="w1"]');
      await row.waitFor({ timeout: DEADLINE_MS });
      assert((await row.innerText()).includes("role=web"));
      await page.fill("#filter", "role=db");
      await row.waitFor({ state: "detached" });
      await page.fill("#filter", "role=web zone=a");
      await row.waitFor();
      await row.click();
      await page.waitForSelector("#detail-body:not([hidden])");

      // Files: list a directory, download a file, upload one.
      const dir = await Deno.makeTempDir({ prefix: "sandd-console-files-" });
      try {
        await Deno.writeTextFile(`${dir}/hello.txt`, "hello from the worker\n");
        await page.fill("#files-path", dir);
        await page.click("#files-go");
        await page.locator('tr[data-file="hello.txt"]').waitFor({ timeout: DEADLINE_MS });
        const [download] = await Promise.all([
          page.waitForEvent("download"),
          page.click('tr[data-file="hello.txt"] a'),
        ]);
        const saved = await download.path();
        assertEquals(await Deno.readTextFile(saved), "hello from the worker\n");
        await page.setInputFiles("#files-upload", {
          name: "up.txt",
          mimeType: "text/plain",
          buffer: Buffer.from("hello from the browser\n"),
        });
        await page.locator('tr[data-file="up.txt"]').waitFor({ timeout: DEADLINE_MS });
        assertEquals(await Deno.readTextFile(`${dir}/up.txt`), "hello from the browser\n");
      } finally {
        await Deno.remove(dir, { recursive: true });
      }

      // A terminal: open, type, read 42 from the screen.
      await page.click("#new-terminal");
      await page.waitForSelector("body[data-terminal='open']", { timeout: DEADLINE_MS });
      await page.locator("#terminal").click();
      await page.keyboard.type("echo $((6*7))\n");
      await screenUntil(page, /^42\s*$/m, "42");
      const hash = new URL(page.url()).hash;
      const match = /^#t=w1\/(.+)$/.exec(hash);
      assert(match, `hash ${hash}`);
      const id = decodeURIComponent(match[1]!);

      // Resize: the window shrinks, xterm fits, the program sees the new size.
      await page.setViewportSize({ width: 760, height: 420 });
      const size = await page.waitForFunction(
        () => {
          const t = (globalThis as unknown as {
            sandd: { term: { term: { cols: number; rows: number } } | null };
          }).sandd.term?.term;
          return t && t.cols < 100 ? { cols: t.cols, rows: t.rows } : null;
        },
        undefined,
        { timeout: DEADLINE_MS },
      );
      const { cols, rows } = (await size.jsonValue())!;
      await page.keyboard.type("stty size\n");
      await screenUntil(page, new RegExp(`^${rows} ${cols}\\s*$`, "m"), "the new size");

      // Reload: the same session comes back with its scrollback.
      await page.reload();
      await page.waitForSelector("body[data-terminal='open']", { timeout: DEADLINE_MS });
      await screenUntil(page, /^42\s*$/m, "42 replayed after the reload");
      assertEquals(new URL(page.url()).hash, hash);

      // A second page watches read-only: it sees the same output and cannot type.
      const watcher = await browser.context.newPage();
      await watcher.goto(`${http}/console/#w=w1/${encodeURIComponent(id)}`);
      await watcher.waitForSelector("body[data-terminal='open']", { timeout: DEADLINE_MS });
      await screenUntil(watcher, /^42\s*$/m, "42 on the watcher");
      await watcher.locator("#terminal").click();
      await watcher.keyboard.type("echo watcher-typed\n");
      await page.locator("#terminal").click();
      await page.keyboard.type("echo shared-$((2+3))\n");
      await screenUntil(watcher, /^shared-5\s*$/m, "shared-5 on the watcher");
      assert(!(await screen(page)).includes("watcher-typed"), "the read-only page typed");
      const shot = `${shots}/console.png`;
      await page.screenshot({ path: shot });
      await watcher.screenshot({ path: `${shots}/watcher.png` });
      console.log(`console_test: screenshots in ${shots}`);
      await watcher.close();

      // Processes of the worker list the terminal; the fleet shows it running.
      await page.click("#term-back");
      await page.waitForSelector(`tr[data-process="${id}"]`, { timeout: DEADLINE_MS });

      // Replays: a recorded terminal is listed and played back.
      await page.check("#record");
      await page.click("#new-terminal");
      await page.waitForSelector("body[data-terminal='open']", { timeout: DEADLINE_MS });
      await page.locator("#terminal").click();
      await page.keyboard.type("echo replay-$((3+4)); exit\n");
      await page.waitForSelector("#term-state:text('exited')", { timeout: DEADLINE_MS });
      await page.click("#term-back");
      await page.click("#nav-replays");
      const cast = page.locator("tr[data-recording]").first();
      await cast.waitFor({ timeout: DEADLINE_MS });
      await page.selectOption("#replay-speed", "16");
      await cast.click();
      await page.waitForSelector("body[data-replay='done']", { timeout: DEADLINE_MS });
      const played = await page.evaluate(() => {
        const player = (globalThis as unknown as {
          sandd: {
            player: {
              term: {
                buffer: {
                  active: {
                    length: number;
                    getLine(i: number): { translateToString(trim: boolean): string } | undefined;
                  };
                };
              };
            };
          };
        }).sandd.player;
        const buffer = player.term.buffer.active;
        const lines = [];
        for (let i = 0; i < buffer.length; i++) {
          lines.push(buffer.getLine(i)?.translateToString(true) ?? "");
        }
        return lines.join("\n");
      });
      assert(/^replay-7\s*$/m.test(played), JSON.stringify(played.slice(-400)));
      await page.screenshot({ path: `${shots}/replay.png` });

      // The first terminal is still running on the worker: end it through the API.
      const ended = await fetch(
        `${http}/api/v1/daemons/w1/processes/${encodeURIComponent(id)}/signal`,
        {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ signal: "SIGKILL" }),
        },
      );
      assertEquals(ended.status, 204);
      await ended.body?.cancel();
    } finally {
      await browser.close();
      await daemon?.stop();
      await server.close();
      await Deno.remove(recordings, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "console with client tokens: asks for one, keeps an HttpOnly SameSite=Strict cookie, refuses a bad one",
  ignore: !HAVE_CHROMIUM,
  sanitizeOps: false,
  async fn() {
    const token = "console-test-token-0123456789";
    const server = await Server.listen({
      port: 0,
      control: { tokens: [{ token, name: "ops" }, { token: `${token}-ro`, scopes: ["read"] }] },
      console: true,
    });
    const http = `http://127.0.0.1:${server.port}`;
    const browser = await launchBrowser();
    try {
      // Without a session nothing but the page itself is served.
      const refused = await fetch(`${http}/console/api/v1/daemons`);
      assertEquals(refused.status, 401);
      await refused.body?.cancel();
      const page = await browser.context.newPage();
      await page.goto(`${http}/console/`);
      await page.waitForSelector("#login:not([hidden])");
      await page.fill("#login-token", "wrong-token-0123456789");
      await page.click("#login button[type=submit]");
      await page.waitForSelector("#login-error:text('refused')");
      await page.fill("#login-token", token);
      await page.click("#login button[type=submit]");
      await page.waitForSelector("#fleet-view:not([hidden])");
      await page.waitForSelector("#who:text('ops')");
      const cookies = await browser.context.cookies(`${http}/console/`);
      const cookie = cookies.find((c) => c.name === "sandd_console");
      assert(cookie, JSON.stringify(cookies));
      assert(cookie.httpOnly && cookie.sameSite === "Strict" && cookie.path === "/console");
      assert(!(await page.evaluate("document.cookie") as string).includes("sandd_console"));
      // The session survives a reload; signing out ends it.
      await page.reload();
      await page.waitForSelector("#fleet-view:not([hidden])");
      await page.click("#logout");
      await page.waitForSelector("#login:not([hidden])");
    } finally {
      await browser.close();
      await server.close();
    }
  },
});
