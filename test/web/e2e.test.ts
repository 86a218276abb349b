// End-to-end: the real server (web/server.ts, engine in its worker, the embedded default model on the CPU)
// driven by headless Chromium through playwright-core. Screenshots go to test/artifacts/ (git-ignored).
// Skips with a message when /usr/bin/chromium is absent (apt-get install -y chromium).
// QW_E2E_ENGINE=fake runs it against test/web/fake-engine.ts instead (no native library needed).
import { describe, expect, test, beforeAll, afterAll } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Page, BrowserContext } from "playwright-core";
import { launchChromium, spawnServer } from "./browser.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const REPO = resolve(import.meta.dir, "../..");
const ART = join(REPO, "test/artifacts");
const have = existsSync(CHROMIUM);
if (!have) console.warn(`[e2e] skipped: ${CHROMIUM} not found (apt-get install -y chromium)`);
const nativeBuilt = existsSync(join(REPO, "cuda/build/libqwen_cpu.so"));
if (have && !nativeBuilt && process.env.QW_E2E_ENGINE !== "fake") console.warn("[e2e] libqwen_cpu.so is not built: running the pages against the fake engine");
const engine = process.env.QW_E2E_ENGINE === "fake" || !nativeBuilt ? join(REPO, "test/web/fake-engine.ts") : join(REPO, "engine/index.ts");

describe.skipIf(!have)("workbench in headless Chromium", () => {
  let server: ReturnType<typeof Bun.spawn>;
  let base = "";
  let ctx: BrowserContext, page: Page;
  const tmp = mkdtempSync(join(tmpdir(), "qwb-e2e-"));
  const errors: string[] = [];

  beforeAll(async () => {
    mkdirSync(ART, { recursive: true });
    ({ proc: server, base } = await spawnServer(["--profiles", join(tmp, "profiles"), "--backend", "cpu", "--engine", engine]));
    ctx = await launchChromium(join(tmp, "chrome"));
    page = await ctx.newPage();
    page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
    page.on("console", (m) => { if (m.type() === "error") errors.push(`console: ${m.text()}`); });
    page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("data:") && !r.url().startsWith("blob:")) errors.push(`external request: ${r.url()}`); });
  }, 300_000);

  afterAll(async () => {
    await ctx?.close().catch(() => {});
    server?.kill();
    rmSync(tmp, { recursive: true, force: true });
  });

  const shot = (name: string) => page.screenshot({ path: join(ART, `${name}.png`), fullPage: true });

  async function runOnce(label: string) {
    await page.fill("#label", label);
    await page.evaluate(() => { document.querySelector("#run-status")!.textContent = "starting"; });
    await page.click("#run-btn");
    await page.waitForSelector("#run-output .tok", { timeout: 60_000 });
    await page.waitForFunction(() => ["done", "error", "cancelled"].includes(document.querySelector("#run-status")!.textContent!), null, { timeout: 120_000 });
    expect(await page.textContent("#run-status")).toBe("done");
  }

  test("run a prompt on the default model; tokens arrive", async () => {
    await page.goto(base + "/");
    await page.waitForSelector("body[data-ready='1']", { timeout: 60_000 });
    await page.waitForFunction(() => document.querySelector("#model-chip")!.textContent!.includes("layers"), null, { timeout: 60_000 });
    await page.selectOption("#max-tokens", { index: 0 }).catch(() => {});
    await page.fill("#max-tokens", "16");
    await runOnce("baseline");
    const n = await page.locator("#run-output .tok").count();
    expect(n).toBe(16);
    await page.waitForSelector("#live-layers .bars path", { state: "attached" });
    await shot("01-run");
  }, 300_000);

  test("toggles show their name and description; a value of the other backend says 'not on cpu'", async () => {
    const gqa = page.locator("#toggles .toggle[data-id='gqa']");
    expect(await gqa.locator(".name").textContent()).toContain("Grouped-query attention");
    expect((await gqa.locator(".desc").textContent())!.length).toBeGreaterThan(20);
    const opts = await page.locator("#toggles select[name='run-tile'] option").allTextContents();
    expect(opts).toEqual(["auto", "fixed"]); // both run on the CPU (no toggle value is unimplemented on every backend now)
    const graphs = await page.locator("#toggles select[name='run-graphs'] option").allTextContents();
    expect(graphs).toContain("on (not on cpu)");
  }, 60_000);

  test("the page's names and defaults are the catalog's (GET /api/catalog, from the native library)", async () => {
    const cat = await (await fetch(`${base}/api/catalog`)).json() as {
      profilingModes: { name: string; description: string }[]; hookPatterns: string[]; defaults: { cpu: Record<string, string> };
      toggles: { id: string; cost: { ops: string[]; how: string }[] }[];
    };
    const modes = await page.locator("#profiling option").evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value));
    expect(modes).toEqual(["", ...cat.profilingModes.map((m) => m.name)]);
    // what a mode records and what an optimization changes in the cost model: the library's words
    const titles = await page.locator("#profiling option").evaluateAll((os) => os.map((o) => o.getAttribute("title")));
    expect(titles.slice(1)).toEqual(cat.profilingModes.map((m) => m.description));
    for (const t of cat.toggles.filter((x) => x.cost.length)) {
      expect(await page.locator(`#toggles .toggle[data-id='${t.id}'] .desc .cost`).first().textContent()).toBe(`cost of ${t.cost[0].ops.join(", ")}: ${t.cost[0].how}`);
    }
    const hooks = await page.locator("#hook-patterns option").evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value));
    expect(hooks).toEqual(cat.hookPatterns);
    expect(await page.getAttribute("#capture", "placeholder")).toBe(`e.g. ${cat.hookPatterns.slice(-2).join(", ")}`);
    for (const t of cat.toggles) expect(await page.locator(`#toggles select[name='run-${t.id}']`).inputValue()).toBe(cat.defaults.cpu[t.id]);
  }, 60_000);

  test("latency plots are drawn", async () => {
    await page.goto(base + "/#latency");
    await page.waitForSelector("#lat-prefill .bars path", { timeout: 90_000, state: "attached" });
    await page.waitForSelector("#lat-decode .bars path", { state: "attached" });
    await page.waitForSelector("#lat-timeline .scatterlayer .point");
    expect(await page.locator("#lat-decode .bars path").count()).toBeGreaterThan(4);
    expect(await page.textContent("#lat-cards")).toContain("TTFT");
    const modes = (await (await fetch(`${base}/api/catalog`)).json() as { profilingModes: { name: string; description: string }[] }).profilingModes;
    const fid = (await page.textContent("#lat-fidelity"))!;
    const mode = modes.find((m) => fid.includes(`Profiling mode: ${m.name} — `));
    expect(mode).toBeDefined();
    expect(fid).toContain(mode!.description); // the catalog's words, not the page's
    await shot("02-latency");
  }, 300_000);

  test("roofline is drawn, log-log", async () => {
    await page.goto(base + "/#roofline");
    await page.waitForSelector("#roof-plot .scatterlayer .point", { timeout: 90_000 });
    expect(await page.locator("#roof-plot .scatterlayer .point").count()).toBeGreaterThan(3);
    expect(await page.textContent("#roof-plot")).toContain("arithmetic intensity (FLOP/byte)");
    // the palette comes from the server (engine/export/palette.ts): the page's first run colour is its first colour
    const pal = await (await fetch(`${base}/api/palette`)).json() as { palette: string[] };
    const fill = await page.locator("#roof-plot .scatterlayer .point").first().evaluate((e) => getComputedStyle(e).fill);
    const hex = (rgb: string) => "#" + rgb.match(/\d+/g)!.slice(0, 3).map((x) => Number(x).toString(16).padStart(2, "0")).join("");
    expect(hex(fill)).toBe(pal.palette[0]);
    await shot("03-roofline");
  }, 300_000);

  test("change a toggle and run again; compare the two runs", async () => {
    await page.goto(base + "/#run");
    await page.waitForSelector("select[name='run-gqa']");
    await page.selectOption("select[name='run-gqa']", "broadcast");
    await runOnce("gqa-broadcast");
    await page.goto(base + "/#compare");
    await page.waitForSelector("#cmp-summary table", { timeout: 90_000 });
    await page.waitForSelector("#cmp-layers .bars path", { state: "attached" });
    const summary = await page.textContent("#cmp-summary");
    expect(summary).toContain("gqa");
    expect(summary).toContain("broadcast");
    expect(summary).toContain("tokens: identical");
    await shot("04-compare");
  }, 300_000);

  test("export a PNG and an HTML report", async () => {
    await page.goto(base + "/#latency");
    await page.waitForSelector("#lat-decode .bars path", { timeout: 90_000, state: "attached" });
    const downloads: import("playwright-core").Download[] = [];
    const onDl = (d: import("playwright-core").Download) => downloads.push(d);
    page.on("download", onDl);
    await page.click(".exports[data-for=lat] [data-x=png]");
    for (let i = 0; i < 600 && downloads.length < 3; i++) await Bun.sleep(100); // up to 60 s on a loaded machine
    expect(downloads.map((d) => d.suggestedFilename()).every((n) => n.endsWith(".png"))).toBe(true);
    expect(downloads.length).toBe(3); // prefill bars, decode bars, timeline
    const pngPath = join(ART, "export-latency.png");
    await downloads[1].saveAs(pngPath);
    const bytes = readFileSync(pngPath);
    expect(bytes.subarray(1, 4).toString()).toBe("PNG");
    expect(bytes.length).toBeGreaterThan(5000);
    downloads.length = 0;
    await page.click(".exports[data-for=lat] [data-x=html]");
    for (let i = 0; i < 600 && !downloads.length; i++) await Bun.sleep(100);
    page.off("download", onDl);
    expect(downloads[0].suggestedFilename()).toMatch(/\.html$/);
    const htmlPath = join(ART, "export-report.html");
    await downloads[0].saveAs(htmlPath);
    const text = readFileSync(htmlPath, "utf8");
    expect(text.startsWith("<!doctype html>")).toBe(true);
    expect(text.includes("<svg")).toBe(true);
    expect(text.includes('id="profile-data"')).toBe(true);
    expect(/<script[^>]+src=/.test(text)).toBe(false);
    // the report opens offline: render it from the file and screenshot it
    const p2 = await ctx.newPage();
    await p2.goto("file://" + htmlPath);
    await p2.screenshot({ path: join(ART, "05-report.png"), fullPage: true });
    await p2.close();
  }, 300_000);

  test("per-layer mask and a prompt set replayed from the page", async () => {
    await page.goto(base + "/#run");
    await page.selectOption("select[name='run-gqa']", "native"); // the previous test left it on broadcast
    await page.check(".toggle[data-id=gqa] .perlayer");
    await page.selectOption("select[name='run-gqa-L1']", "broadcast");
    await runOnce("mask-L1");
    const list = (await (await fetch(`${base}/api/profiles`)).json()) as { profiles: { key: string; label: string; toggles: Record<string, unknown> }[] };
    const masked = list.profiles.find((p) => p.label === "mask-L1")!;
    expect(masked.toggles.gqa).toEqual(["native", "broadcast", "native", "native"]);
    await page.uncheck(".toggle[data-id=gqa] .perlayer");
    await page.selectOption("select[name='run-gqa']", "native");
    await page.selectOption("#prompt-source", "set");
    await page.setInputFiles("#set-file", { name: "smoke.jsonl", mimeType: "application/x-ndjson",
      buffer: Buffer.from('{"prompt":"The jury said","seed":1}\n{"prompt":"In the first place","seed":2,"maxTokens":4}\n') });
    await page.waitForSelector("#set-select option[value='smoke']", { state: "attached" });
    await page.selectOption("#set-select", "smoke");
    await runOnce("set-replay");
    expect(await page.textContent("#run-output")).toContain("[prompt 2]");
    await shot("08-prompt-set");
    await page.selectOption("#prompt-source", "text");
  }, 300_000);

  test("quantization error page: only differing comparisons, perplexity / KL next to the per-layer errors", async () => {
    await page.goto(base + "/#quant");
    await page.waitForSelector("#q-cand .toggle");
    // the default candidate already differs from the reference: no "identical" note, Measure enabled
    expect(await page.isHidden("#q-same")).toBe(true);
    expect(await page.isEnabled("#q-run")).toBe(true);
    // the default candidate is weights = q4 (the loaded model is as-loaded): set it back to compare kvCache
    const w = page.locator("#q-cand select[name='qcand-weights']");
    expect(await w.inputValue()).toBe("q4");
    await w.selectOption("as-loaded");
    const cand = page.locator("#q-cand select[name='qcand-kvCache']");
    if (await cand.count()) {
      await cand.selectOption("bf16"); // = the reference
      await page.waitForSelector("#q-same", { state: "visible" });
      expect(await page.isEnabled("#q-run")).toBe(false);
      await cand.selectOption("f32");
      await page.waitForSelector("#q-same", { state: "hidden" });
      await cand.selectOption("bf16");
    }
    await w.selectOption("q4"); // measure q4 against the bf16 file as loaded (the arm loads its own copy)
    await page.fill("#q-repeats", "1");
    await page.fill("#q-ppl-max", "1024");
    await page.fill("#q-ppl-ctx", "256");
    await page.click("#q-run");
    await page.waitForFunction(() => ["done", "failed", "error"].includes(document.querySelector("#q-status")!.textContent!), null, { timeout: 150_000 });
    expect(await page.textContent("#q-status")).toBe("done");
    await page.waitForSelector("#q-sqnr .bars path", { timeout: 90_000, state: "attached" });
    const cards = await page.textContent("#q-cards");
    expect(cards).toContain("top-1 agreement");
    expect(cards).toContain("perplexity ref → cand");
    expect(cards).toContain("KL on text");
    expect(cards).toContain("Requantized weights"); // per-layer weight SQNR next to the time saved
    expect(cards).toMatch(/L3\s*as-loaded → q4/);
    await shot("06-quant");
    await page.click("#q-ppl-run");
    await page.waitForFunction(() => ["done", "failed", "error"].includes(document.querySelector("#q-status")!.textContent!), null, { timeout: 150_000 });
    expect(await page.textContent("#q-ppl-result")).toMatch(/perplexity ± SE[\s\S]*top-1 agreement/);
    // kvCache = q8 against the bf16 cache: the per-layer K/V table beside the attention output's error
    if (await cand.count()) {
      await w.selectOption("as-loaded");
      await cand.selectOption("q8");
      await page.uncheck("#q-ppl");
      await page.click("#q-run");
      await page.waitForFunction(() => ["done", "failed", "error"].includes(document.querySelector("#q-status")!.textContent!), null, { timeout: 150_000 });
      expect(await page.textContent("#q-status")).toBe("done");
      await page.waitForSelector("#q-kv tbody tr", { timeout: 90_000 });
      expect(await page.textContent("#q-cards")).toContain("K and V as each arm's attention reads them");
      expect(await page.locator("#q-kv tbody tr").count()).toBe(4);
      expect(await page.textContent("#q-kv")).toMatch(/L0\s*bf16 → q8/);
      await cand.selectOption("bf16");
    }
    // phase decode: one decode step compared, the page's cards, table and time plot say so (weights q8: "Perplexity
    // only" above reloaded the model with the candidate's q4)
    await w.selectOption("q8");
    await page.selectOption("#q-phase", "decode");
    await page.click("#q-run");
    await page.waitForFunction(() => ["done", "failed", "error"].includes(document.querySelector("#q-status")!.textContent!), null, { timeout: 150_000 });
    expect(await page.textContent("#q-status")).toBe("done");
    await page.waitForFunction(() => document.querySelector("#q-cards")!.textContent!.includes("logits KL (decode step)"), null, { timeout: 90_000 });
    expect(await page.textContent("#q-cards")).toContain("time saved (ms / decode step)");
    expect(await page.textContent("#q-tradeoff")).toContain("Error vs time saved per layer (decode step, median of 1)");
    await page.selectOption("#q-phase", "prefill");
  }, 300_000);

  test("passkey page: a run with sparse prefill, the heat map, the table with keys visited and recall, exports", async () => {
    await page.goto(base + "/#passkey");
    await page.waitForSelector("#pk-run");
    if (engine.includes("fake")) await page.fill("#pk-model", "default");  // the fake has no passkey model
    await page.fill("#pk-lengths", "256");
    await page.fill("#pk-trials", "2");
    if (!engine.includes("fake")) {
      await page.selectOption("#pk-sparse", "vertical-slash");
      await page.fill("#pk-sv", "8");
      await page.fill("#pk-ss", "8");
      await page.check("#pk-stats");
    }
    await page.click("#pk-run");
    await page.waitForFunction(() => document.querySelector("#pk-status")!.textContent!.startsWith("passkey:"), null, { timeout: 150_000 });
    await page.waitForSelector("#pk-heat .heatmaplayer", { timeout: 60_000, state: "attached" });
    const table = await page.textContent("#pk-table");
    expect(table).toContain("256");
    if (!engine.includes("fake")) expect(table).toMatch(/keys visited[\s\S]*recall/);
    expect(await page.locator("#pk-exports a").count()).toBe(4);
    const svg = await (await fetch(base + (await page.getAttribute("#pk-exports a", "href"))!)).text();
    expect(svg).toContain("needle depth");
    await shot("07-passkey");
  }, 300_000);

  // the page's speculative fields (web/public/spec.js): shown per value, read into the run, the acceptance chart drawn
  test.skipIf(engine.endsWith("fake-engine.ts"))("speculative = draft from the page: its fields follow the value; the run draws the acceptance chart", async () => {
    await page.goto(base + "/#run");
    await page.waitForSelector("select[name='run-speculative']");
    const hidden = (sel: string) => page.$eval(`[data-id=speculative] ${sel}`, (e) => (e as HTMLElement).hidden);
    expect(await hidden(".spec-draft")).toBe(true);
    await page.selectOption("select[name='run-speculative']", "eagle");
    expect([await hidden(".spec-eagle"), await hidden(".spec-draft")]).toEqual([false, true]);
    await page.selectOption("select[name='run-speculative']", "draft");
    expect([await hidden(".spec-eagle"), await hidden(".spec-draft")]).toEqual([true, false]);
    await page.fill("input[name='run-spec-k']", "2");
    await runOnce("spec-draft");
    await page.waitForSelector("#run-spec .main-svg", { state: "attached", timeout: 60_000 });
    expect(await page.$eval("#run-spec", (e) => (e as HTMLElement).hidden)).toBe(false);
    expect(await page.textContent("#run-spec")).toContain("draft k = 2");
    await page.selectOption("select[name='run-speculative']", "off");
  }, 300_000);

  test("profiles page lists the runs; no page errors, no external requests", async () => {
    await page.goto(base + "/#profiles");
    await page.waitForSelector("#prof-list tbody tr[data-key]");
    expect(await page.locator("#prof-list tbody tr[data-key]").count()).toBeGreaterThanOrEqual(2);
    await shot("08-profiles");
    expect(errors).toEqual([]);
  }, 300_000);
});
