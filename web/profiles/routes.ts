// Profiles sub-app (mounted at /api): the saved profiles (list, read, delete), the views the pages draw from
// one profile (latency matrices, timelines, roofline points against the device's measured ceilings), the
// comparison of two, the per-device grouping of the Roofline page, the ceilings, and the palette.
import { Hono } from "hono";
import { z } from "zod";
import { compareProfiles, latencyMatrix, stepTimeline, tokenTimeline } from "../../engine/measure/aggregate.ts";
import { compareSvg } from "../../engine/export/svg.ts";
import {
  aboveDramReason, aggregateCeilings, cacheNote, ceilingsFor, groupByDevice, loadCeilings, loadCeilingsReport, mixedDeviceWarning,
  rooflinePoints, stepRooflinePoints, TP_ROOFLINE_NOTE,
} from "../../engine/measure/roofline.ts";
import { rankViews } from "../../engine/measure/ranks.ts";
import { paletteDoc } from "../../engine/export/palette.ts";
import { summaryStats } from "../../engine/measure/stats.ts";
import type { WebContext } from "../context.ts";
import { check } from "../http.ts";
import { KeyParam, keyOf, keysParam } from "./keys.ts";

export function profileRoutes(ctx: WebContext) {
  const { profiles, ceilingsDir } = ctx;
  const app = new Hono();

  app.get("/profiles", (c) => c.json({ root: profiles.root, profiles: profiles.list() }));

  app.get("/profiles/:key", (c) => c.json(profiles.get(keyOf(c))));

  app.delete("/profiles/:key", (c) => {
    const key = keyOf(c);
    profiles.delete(key);
    return c.json({ deleted: key });
  });

  app.get("/profiles/:key/views", (c) => {
    const key = keyOf(c);
    const stat = check(z.enum(["mean", "median"]).default("mean"), c.req.query("stat"), "stat");
    const p = profiles.get(key);
    const ceil = ceilingsFor(loadCeilings(ceilingsDir), p.manifest.device.name, p.manifest.device.backend);
    const points = (g: "op" | "layer" | "layer-op") => rooflinePoints(p, g).map((x) => ({ ...x, why: aboveDramReason(x, ceil) }));
    // tensor parallelism: the step points, each against its N ranks' aggregate roofs (empty for one rank)
    const step = stepRooflinePoints(p).map((x) => ({ ...x, why: aboveDramReason(x, ceil && aggregateCeilings(ceil, x.ranks!)) }));
    return c.json({
      key, id: p.id, kind: p.kind, manifest: p.manifest, summary: p.summary, stats: summaryStats(p), notes: p.notes ?? [],
      latency: { prefill: latencyMatrix(p, "prefill", undefined, stat), decode: latencyMatrix(p, "decode", undefined, stat) },
      steps: stepTimeline(p), tokens: tokenTimeline(p),
      roofline: { op: points("op"), layer: points("layer"), "layer-op": points("layer-op"), step },
      ranks: rankViews(p, stat),
      ceilings: ceil, quant_error: p.quant_error ?? null, output_text: p.output_text ?? null,
      fidelity: p.fidelity ?? null, counters_meta: p.counters_meta ?? null,
    });
  });

  // The devices of a set of runs and the mixed-device warning, as the Roofline page and the SVG export draw them.
  app.get("/roofline/devices", (c) => {
    const keys = keysParam(c);
    const groups = groupByDevice(keys.map((k) => profiles.get(k)));
    const all = loadCeilings(ceilingsDir);
    return c.json({
      warning: mixedDeviceWarning(groups),
      devices: groups.map((g) => {
        const ceilings = ceilingsFor(all, g.device, g.backend);
        const notes = g.items.map(({ item }) => cacheNote(item, rooflinePoints(item, "op"), ceilings)).filter((n) => n !== null);
        // tensor-parallel runs: N × the roofs for each N among them (the step points' ceilings)
        const ns = [...new Set(g.items.flatMap(({ item }) => stepRooflinePoints(item).map((x) => x.ranks!)))].sort((a, b) => a - b);
        if (ns.length) notes.push(TP_ROOFLINE_NOTE);
        const aggregates = ceilings ? ns.map((n) => ({ ranks: n, ceilings: aggregateCeilings(ceilings, n) })) : [];
        return { key: g.key, device: g.device, backend: g.backend, runs: g.items.map((i) => keys[i.index]), ceilings, notes, aggregates };
      }),
    });
  });

  app.get("/compare", (c) => {
    const a = check(KeyParam, c.req.query("a"), "a"), b = check(KeyParam, c.req.query("b"), "b");
    const cmp = compareProfiles(profiles.get(a), profiles.get(b));
    if (c.req.query("format") === "svg") return c.body(compareSvg(cmp), 200, { "Content-Type": "image/svg+xml; charset=utf-8" });
    return c.json({ ...cmp, keys: { a, b } });
  });

  app.get("/ceilings", (c) => {
    const { ceilings: all, skipped } = loadCeilingsReport(ceilingsDir);
    return c.json({
      dirs: ceilingsDir, ceilings: all, skipped,
      note: all.length ? null : "no measured ceilings — run notebooks/calibrate.ts on the device",
    });
  });

  // The categorical palette and the op → colour mapping of engine/export/palette.ts (the pages draw with these).
  app.get("/palette", (c) => {
    c.header("Cache-Control", "no-cache");
    return c.json(paletteDoc());
  });

  return app;
}
