// Shared by the browser tests: the real server as a child process, and headless Chromium through playwright-core.
import { join, resolve } from "node:path";
import type { BrowserContext, Page } from "playwright-core";

export const REPO = resolve(import.meta.dir, "../..");
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** Starts web/server.ts on a random port with `args`; resolves once /api/health answers (or after ~60 s: a loaded
 *  machine starts Bun slowly). */
export async function spawnServer(args: string[]) {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const proc = Bun.spawn([process.execPath, join(REPO, "web/server.ts"), "--port", String(port), ...args], {
    cwd: REPO, stdout: "pipe", stderr: "pipe", env: { ...process.env, PORT: String(port) },
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 600; i++) {
    try { if ((await fetch(`${base}/api/health`)).ok) break; } catch { /* not yet */ }
    await Bun.sleep(100);
  }
  return { proc, base };
}

/** Headless Chromium with a fresh profile directory (playwright wants it as launchPersistentContext's userDataDir). */
export async function launchChromium(userDataDir: string, viewport = { width: 1440, height: 1000 }): Promise<BrowserContext> {
  const { chromium } = await import("playwright-core");
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM, headless: true, acceptDownloads: true, viewport,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run",
      "--disable-component-update", "--disable-sync"],
  });
}

/** Collects a page's uncaught errors and console errors into `errors` (a test expects it empty). */
export function collectErrors(page: Page, errors: string[]): void {
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") errors.push(`console: ${m.text()}`); });
}
