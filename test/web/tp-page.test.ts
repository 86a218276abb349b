// The Latency and Roofline pages of a tensor-parallel profile in headless Chromium (the real server over the fake
// engine; a constructed tp2 profile, test/engine/tp-fixture.ts, and an H200 ceilings file in its profiles folder):
// the ranks panel shows one column per rank and the communication share, the layer plots say rank 0 of 2, the
// roofline draws the step diamonds and 2 × the roofs; a one-rank profile keeps the panel hidden. Screenshots go to
// test/artifacts/ (git-ignored). Skips when /usr/bin/chromium is absent.
import { describe, expect, test, beforeAll, afterAll } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BrowserContext, Page } from "playwright-core";
import { CHROMIUM, collectErrors, launchChromium, REPO, spawnServer } from "./browser.ts";
import { cpuLibraryBuilt } from "../reference/fixtures.ts";
import { tpProfile } from "../engine/tp-fixture.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const ART = join(REPO, "test/artifacts");

describe.skipIf(!existsSync(CHROMIUM) || !cpuLibraryBuilt())("tensor-parallel profile on the Latency and Roofline pages", () => {
  let server: ReturnType<typeof Bun.spawn>;
  let base = "";
  let ctx: BrowserContext, page: Page;
  const tmp = mkdtempSync(join(tmpdir(), "qwb-tp-"));
  const errors: string[] = [];

  beforeAll(async () => {
    mkdirSync(ART, { recursive: true });
    const profiles = join(tmp, "profiles");
    mkdirSync(join(profiles, "ceilings"), { recursive: true });
    writeFileSync(join(profiles, "tp2.json"), JSON.stringify({ ...tpProfile(2), id: "tp2" }));
    writeFileSync(join(profiles, "tp1.json"), JSON.stringify({ ...tpProfile(1, { rankColumn: false }), id: "tp1" }));
    writeFileSync(join(profiles, "ceilings", "h200.json"), JSON.stringify({ schema: "qwen-workbench/ceilings", version: 1, device: "NVIDIA H200",
      backend: "cuda", bandwidth_bytes_s: 4.2e12, flops: { bf16: 8e14 } }));
    ({ proc: server, base } = await spawnServer(["--profiles", profiles, "--backend", "cpu", "--engine", join(REPO, "test/web/fake-engine.ts")]));
    ctx = await launchChromium(join(tmp, "chrome"));
    page = await ctx.newPage();
    collectErrors(page, errors);
  }, 300_000);

  afterAll(async () => {
    await ctx?.close().catch(() => {});
    server?.kill();
    rmSync(tmp, { recursive: true, force: true });
  });

  test("Latency: the ranks panel with a column per rank and the communication share", async () => {
    await page.goto(`${base}/#latency?key=tp2`);
    await page.waitForSelector("body[data-ready='1']", { timeout: 60_000 });
    await page.waitForSelector("#lat-ranks:not([hidden]) table.ranks[data-phase=decode]", { timeout: 60_000 });
    const head = await page.$$eval("#lat-ranks table.ranks[data-phase=decode] th", (ths) => ths.map((t) => t.textContent));
    expect(head).toEqual(["op", "rank 0", "rank 1"]);
    expect(await page.textContent("#lat-ranks")).toContain("communication share of the step");
    const bars = await page.evaluate(() => (document.getElementById("lat-ranks-decode") as any).data.map((t: any) => t.name));
    expect(bars.length).toBe(2);
    expect(bars[0]).toMatch(/^rank 0 · comm \d+\.\d %$/);
    const title = await page.evaluate(() => (document.getElementById("lat-decode") as any).layout.title.text);
    expect(title).toContain("Decode · rank 0 of 2");
    await page.screenshot({ path: join(ART, "tp-latency.png"), fullPage: true });
    // a profile of one rank: the panel hides again
    await page.selectOption("#lat-profile", "tp1");
    await page.waitForFunction(() => (document.getElementById("lat-ranks") as HTMLElement).hidden, null, { timeout: 30_000 });
    expect(errors).toEqual([]);
  });

  test("Roofline: the step diamonds and 2 × the roofs", async () => {
    await page.goto(`${base}/#roofline?keys=tp2`);
    await page.waitForFunction(() => ((document.getElementById("roof-plot") as any).data ?? []).some((t: any) => t.marker?.symbol === "diamond"), null, { timeout: 60_000 });
    const names = await page.evaluate(() => (document.getElementById("roof-plot") as any).data.map((t: any) => t.name));
    expect(names.some((n: string) => n.startsWith("2 × DRAM bandwidth"))).toBe(true);
    expect(await page.textContent("#roof-note")).toContain("aggregate bandwidth");
    await page.screenshot({ path: join(ART, "tp-roofline.png"), fullPage: true });
    expect(errors).toEqual([]);
  });
});
