// Profiling mode "counters" through the web server (fake engine standing in for a GPU backend with CUPTI): a run in
// that mode stores measured counters in its profile; the views give the latency table its "GB/s measured" and "L2
// hit" columns and the roofline points their measured bytes; the Roofline page plots the measured intensity with
// the modelled one as a second, hollow marker. A profile without counters keeps the columns empty and one marker.
import { describe, expect, test } from "bun:test";
// @ts-expect-error plain browser ES module without types
import { rooflineFigure } from "../../web/public/roofline.js";
import { PALETTE } from "../../engine/export/palette.ts";
import { appsForFile, runToEnd } from "./helpers.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)
const fakeApp = appsForFile();

async function viewsOf(profiling: string | boolean) {
  const { app } = fakeApp();
  const { events } = await runToEnd(app, { prompt: "the quick brown fox", maxTokens: 5, profiling });
  const last = events.at(-1)!;
  expect(last.event).toBe("done");
  const key = last.data.profileKey as string;
  const profile = await (await app.request(`/api/profiles/${encodeURIComponent(key)}`)).json() as any;
  const views = await (await app.request(`/api/profiles/${encodeURIComponent(key)}/views`)).json() as any;
  return { profile, views, key };
}

const dev = (key: string) => ({ warning: null, devices: [{ key: "fake (cpu)", device: "fake", backend: "cpu", runs: [key], ceilings: null }] });

describe("counters mode through the server", () => {
  test("the profile stores counters; latency rows get GB/s measured and L2 hit; roofline points measured bytes", async () => {
    const { profile, views, key } = await viewsOf("counters");
    expect(views.summary.profiling_mode).toBe("counters");
    const c = profile.ops.counters;
    expect(c.dram_read.length).toBe(profile.ops.step.length);
    expect(profile.counters_meta.unavailable[0]).toMatch(/not available on this GPU/);
    expect(views.counters_meta.unavailable).toEqual(profile.counters_meta.unavailable);
    const m = views.latency.decode;
    expect(m.gbpsMeasured.length).toBe(m.layers.length);
    expect(m.gbpsMeasured.every((g: number | null) => g !== null && g > 0)).toBe(true);
    expect(m.l2HitPct.every((h: number) => Math.abs(h - 80) < 1e-9)).toBe(true);
    const pts = views.roofline.op;
    expect(pts.length).toBeGreaterThan(3);
    for (const p of pts) {
      expect(p.measuredBytes).toBeGreaterThan(p.bytes); // 1.05 x modelled + writes
      expect(p.measuredIntensity).toBeLessThan(p.intensity);
      expect(p.l2HitPct).toBeCloseTo(80, 9);
    }
    // the page: measured x on the main marker, the modelled intensity as a hollow second marker at the same FLOP/s
    const f = rooflineFigure([views], [key], dev(key), { group: "op", phase: "decode", palette: PALETTE });
    const main = f.traces.find((t: any) => t.name.endsWith("· decode"));
    const modelled = f.traces.find((t: any) => t.name.endsWith("· decode · modelled bytes"));
    const dec = pts.filter((p: any) => p.phase === "decode");
    expect(main.x).toEqual(dec.map((p: any) => p.measuredIntensity));
    expect(modelled.x).toEqual(dec.map((p: any) => p.intensity));
    expect(modelled.y).toEqual(main.y);
    expect(modelled.marker.symbol).toBe("triangle-up-open");
    expect(main.customdata[0][6]).toMatch(/measured DRAM: .* MB \(modelled .* MB\).*L2 hit 80\.0 %/);
  }, 120_000);

  test("without counters: no measured columns, one marker per point", async () => {
    const { views, key } = await viewsOf("events");
    expect(views.latency.decode.gbpsMeasured).toBeUndefined();
    expect(views.latency.decode.l2HitPct).toBeUndefined();
    expect(views.roofline.op.every((p: any) => p.measuredBytes === undefined)).toBe(true);
    const f = rooflineFigure([views], [key], dev(key), { group: "op", phase: "both", palette: PALETTE });
    expect(f.traces.some((t: any) => t.name.includes("modelled bytes"))).toBe(false);
  }, 120_000);
});
