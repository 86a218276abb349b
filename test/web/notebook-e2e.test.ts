// End-to-end: the Notebook page in headless Chromium on the real server and the embedded model. A user opens the
// ablation notebook, runs all cells, sees the table and the plots, edits a cell, re-runs it, saves, reloads the
// page (the saved outputs show without re-running) and the file on disk has changed as expected.
// The notebook is a copy in a temp folder beside the repository's notebooks/ (so its ../engine imports resolve);
// skipped with a message when /usr/bin/chromium or the native library is absent.
import { describe, expect, test, beforeAll, afterAll } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Page, BrowserContext } from "playwright-core";
import { CHROMIUM, launchChromium, REPO, spawnServer } from "./browser.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const ART = join(REPO, "test/artifacts");
const have = existsSync(CHROMIUM) && existsSync(join(REPO, "cuda/build/libqwen_cpu.so"));
if (!have) console.warn(`[notebook e2e] skipped: needs ${CHROMIUM} (apt-get install -y chromium) and cuda/build/libqwen_cpu.so (make -C cuda cpu)`);

describe.skipIf(!have)("notebook page in headless Chromium", () => {
  let server: ReturnType<typeof Bun.spawn>;
  let base = "";
  let ctx: BrowserContext, page: Page;
  const tmp = mkdtempSync(join(tmpdir(), "qwb-nbe2e-"));
  const nbDir = mkdtempSync(join(REPO, ".nb-e2e-"));
  const file = join(nbDir, "ablation.nb.ts");
  const errors: string[] = [];

  beforeAll(async () => {
    mkdirSync(ART, { recursive: true });
    copyFileSync(join(REPO, "notebooks/ablation.nb.ts"), file);
    ({ proc: server, base } = await spawnServer(["--profiles", join(tmp, "profiles"), "--backend", "cpu", "--notebooks", nbDir]));
    ctx = await launchChromium(join(tmp, "chrome"), { width: 1280, height: 900 }); // accepts downloads
    page = await ctx.newPage();
    page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
    page.on("console", (m) => { if (m.type() === "error") errors.push(`console: ${m.text()}`); });
  }, 300_000);

  afterAll(async () => {
    await ctx?.close().catch(() => {});
    server?.kill();
    rmSync(tmp, { recursive: true, force: true });
    rmSync(nbDir, { recursive: true, force: true });
  });

  const cellByTitle = (title: string) => page.locator(".nb-cell", { has: page.locator(".nb-title", { hasText: title }) });

  test("run all: the ablation table and plots appear under their cells", async () => {
    await page.goto(`${base}/#notebook?name=ablation`);
    await page.waitForSelector("#nb-cells .nb-cell.code", { timeout: 120_000 });
    expect(await page.locator("#nb-cells .nb-cell").count()).toBeGreaterThanOrEqual(7);
    expect(await page.locator(".nb-cell.markdown .nb-md h1").textContent()).toContain("Ablation");
    await page.click("#nb-run-all");
    await page.waitForFunction(() => /ran \d+ cells|failing|error|cancelled/.test(document.querySelector("#nb-status")!.textContent!), null, { timeout: 240_000 });
    expect(await page.textContent("#nb-status")).toContain("ran 7 cells");
    expect(await page.locator(".nb-state.failed").count()).toBe(0);
    const rates = cellByTitle("Rates against the baseline arm");
    await rates.locator(".nb-tbl tbody tr").first().waitFor();
    expect(await rates.locator(".nb-tbl th").allTextContents()).toContain("Δ vs baseline %");
    expect(await rates.locator(".nb-tbl tbody tr").count()).toBeGreaterThanOrEqual(4);   // ≥ 2 arms × pp/tg
    const plots = cellByTitle("Decode throughput per arm");
    await plots.locator(".js-plotly-plot .bars path").first().waitFor({ state: "attached" });
    expect(await plots.locator("img.nb-svg").count()).toBe(1);
    // sortable: clicking a header sorts the rows by it
    await rates.locator(".nb-tbl th", { hasText: "tok/s" }).first().click();
    const col = await rates.locator(".nb-tbl tbody tr td:nth-child(3)").allTextContents();
    expect(col.map(Number)).toEqual([...col.map(Number)].sort((a, b) => a - b));
    expect(await cellByTitle("Run every arm").locator(".nb-progress progress").getAttribute("value")).toBe(await cellByTitle("Run every arm").locator(".nb-progress progress").getAttribute("max"));
    await page.screenshot({ path: join(ART, "nb-01-run-all.png") });
  }, 300_000);

  test("edit a cell, re-run it, save, reload: the file changed and the outputs come back", async () => {
    const rates = cellByTitle("Rates against the baseline arm");
    const src = rates.locator("textarea.nb-src");
    const before = await src.inputValue();
    await src.fill(before + "\ndisplay(`${results.length} rows from ${arms.length} arms`);");
    await rates.locator(".nb-run").click();
    await rates.locator("pre.nb-text", { hasText: "rows from" }).waitFor({ timeout: 120_000 });
    await page.click("#nb-save");
    await page.waitForFunction(() => document.querySelector("#nb-status")!.textContent!.startsWith("saved"), null, { timeout: 90_000 });
    const text = readFileSync(file, "utf8");
    expect(text).toContain("\ndisplay(`${results.length} rows from ${arms.length} arms`);\n");
    expect(text.replace("\ndisplay(`${results.length} rows from ${arms.length} arms`);", "")).toBe(readFileSync(join(REPO, "notebooks/ablation.nb.ts"), "utf8"));
    const outs = JSON.parse(readFileSync(join(nbDir, "ablation.outputs.json"), "utf8"));
    expect(outs.cells.some((c: { outputs: { type: string; text?: string }[] }) => c.outputs.some((o) => o.type === "text" && o.text?.includes("rows from")))).toBe(true);
    await page.reload();
    await page.waitForSelector("#nb-cells .nb-cell.code");
    const after = cellByTitle("Rates against the baseline arm");
    await after.locator("pre.nb-text", { hasText: "rows from" }).waitFor({ timeout: 90_000 });
    expect(await after.locator(".nb-tbl tbody tr").count()).toBeGreaterThanOrEqual(4);
    await cellByTitle("Decode throughput per arm").locator(".js-plotly-plot .bars path").first().waitFor({ state: "attached" });
    expect(await after.locator("textarea.nb-src").inputValue()).toContain("rows from");
    await page.screenshot({ path: join(ART, "nb-02-reloaded.png") });
    expect(errors).toEqual([]);
  }, 300_000);

  test("export .ipynb from the page and import it back as a new notebook", async () => {
    await page.goto(`${base}/#notebook?name=ablation`);
    await page.waitForFunction(() => (document.querySelector("#nb-select") as HTMLSelectElement).value === "ablation");
    const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#nb-export")]);
    expect(dl.suggestedFilename()).toBe("ablation.ipynb");
    const ipynb = readFileSync((await dl.path())!, "utf8");
    const doc = JSON.parse(ipynb);
    expect(doc.nbformat).toBe(4);
    expect(doc.cells.some((c: { outputs?: { data?: Record<string, unknown> }[] }) => c.outputs?.some((o) => o.data?.["application/vnd.plotly.v1+json"]))).toBe(true);
    await page.setInputFiles("#nb-import", { name: "ablation copy.ipynb", mimeType: "application/json", buffer: Buffer.from(ipynb) });
    await page.waitForFunction(() => (document.querySelector("#nb-select") as HTMLSelectElement).value === "ablation-copy", null, { timeout: 90_000 });
    expect(readFileSync(join(nbDir, "ablation-copy.nb.ts"), "utf8")).toBe(readFileSync(file, "utf8"));
    await cellByTitle("Decode throughput per arm").locator(".js-plotly-plot .bars path").first().waitFor({ state: "attached" });
    expect(await cellByTitle("Rates against the baseline arm").locator("pre.nb-text", { hasText: "rows from" }).count()).toBe(1);
  }, 300_000);

  test("Interrupt kills a runaway cell from the page; the notebook runs again afterwards", async () => {
    const mk = await fetch(`${base}/api/notebooks`, { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "runaway", cells: [{ type: "code", source: "let spins = 0;\nwhile (true) { spins++; }" }, { type: "code", source: "6 * 7" }] }) });
    expect(mk.status).toBe(201);
    await page.goto(`${base}/#notebook?name=runaway`);
    await page.waitForFunction(() => (document.querySelector("#nb-select") as HTMLSelectElement).value === "runaway");
    await page.waitForSelector("#nb-cells .nb-cell.code");
    const [loop, after] = [page.locator(".nb-cell.code").nth(0), page.locator(".nb-cell.code").nth(1)];
    await loop.locator(".nb-run").click();
    await loop.locator(".nb-state.running").waitFor({ timeout: 120_000 });
    expect((await fetch(`${base}/api/health`)).ok).toBe(true);
    // a reloaded page finds the run in progress and follows it
    await page.reload();
    await page.waitForFunction(() => (document.querySelector("#nb-select") as HTMLSelectElement).value === "runaway");
    await loop.locator(".nb-state.running").waitFor({ timeout: 90_000 });
    expect(await page.isDisabled("#nb-interrupt")).toBe(false);
    await page.click("#nb-interrupt");
    await loop.locator(".nb-state", { hasText: "worker terminated" }).waitFor({ timeout: 120_000 });
    expect(await loop.locator(".nb-error").textContent()).toContain("did not stop");
    await after.locator(".nb-run").click();
    await after.locator("pre.nb-text", { hasText: "42" }).waitFor({ timeout: 120_000 });
    expect(errors).toEqual([]);
  }, 300_000);

  test.skipIf(!process.env.QW_DOCS_SCREENSHOT)("README screenshot (QW_DOCS_SCREENSHOT=docs/notebook.png)", async () => {
    await page.setViewportSize({ width: 1200, height: 1000 });
    await page.goto(`${base}/#notebook?name=ablation`);
    await cellByTitle("Rates against the baseline arm").locator(".nb-tbl").waitFor();
    await cellByTitle("Decode throughput per arm").locator(".js-plotly-plot .bars path").first().waitFor({ state: "attached" });
    await cellByTitle("Rates against the baseline arm").locator(".nb-out").evaluate((el) => el.scrollIntoView({ block: "start" }));
    await page.evaluate(() => window.scrollBy(0, -90)); // below the sticky toolbar
    await page.screenshot({ path: resolve(REPO, process.env.QW_DOCS_SCREENSHOT!) });
  }, 300_000);
});
