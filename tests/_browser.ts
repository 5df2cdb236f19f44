// Test helper: Debian's chromium, headless, driven by playwright-core, with a fresh profile per launch.
import { chromium } from "playwright-core";
import type { BrowserContext } from "playwright-core";

/** Where Debian installs chromium. */
export const CHROMIUM = "/usr/bin/chromium";

/** Whether chromium is installed (tests and benchmarks skip with a printed reason otherwise). */
export function haveChromium(): boolean {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
}

/** A browser with its own profile; `close` ends it and removes the profile. */
export interface TestBrowser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** Launch headless chromium with a fresh profile (`--user-data-dir` in a temporary directory). */
export async function launchBrowser(
  viewport: { width: number; height: number } = { width: 1100, height: 700 },
): Promise<TestBrowser> {
  const profile = await Deno.makeTempDir({ prefix: "sandd-chromium-" });
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
  } catch (error) {
    await Deno.remove(profile, { recursive: true }).catch(() => {});
    throw error;
  }
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    },
  };
}
