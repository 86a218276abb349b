// Exports sub-app (mounted at /api): one profile as a Chrome trace, the profile JSON, an HTML report, static
// SVG figures or a table (md, csv, json, jsonl); several profiles as one table or one roofline SVG.
import { Hono } from "hono";
import { z } from "zod";
import { chromeTrace } from "../../engine/export/trace.ts";
import { renderTable, tableRows, TABLE_FORMATS, TABLE_MIME } from "../../engine/export/table.ts";
import { htmlReport } from "../../engine/export/report.ts";
import { latencySvg, quantSvg, rooflineSvg, timelineSvg } from "../../engine/export/svg.ts";
import { loadCeilings } from "../../engine/measure/roofline.ts";
import type { WebContext } from "../context.ts";
import { check, slug } from "../http.ts";
import { keyOf, keysParam, RooflineGroup } from "../profiles/keys.ts";

const EXPORTS = ["trace", "md", "csv", "json", "jsonl", "html", "profile", "svg-latency", "svg-timeline", "svg-roofline", "svg-quant"] as const;
const SVG = { "Content-Type": "image/svg+xml; charset=utf-8" };

export function exportRoutes(ctx: WebContext) {
  const { profiles, ceilingsDir } = ctx;
  const app = new Hono();

  app.get("/profiles/:key/export/:format", (c) => {
    const key = keyOf(c);
    const format = check(z.enum(EXPORTS), c.req.param("format"), "export format");
    const p = profiles.get(key);
    const name = slug(p.manifest.label ?? p.id);
    const attach = (ext: string) => c.header("Content-Disposition", `attachment; filename="${name}.${ext}"`);
    switch (format) {
      case "trace": attach("trace.json"); return c.json(chromeTrace(p));
      case "profile": attach("json"); return c.json(p);
      case "html": if (c.req.query("download") !== "0") attach("html"); return c.html(htmlReport(p, { ceilings: loadCeilings(ceilingsDir) }));
      case "svg-latency": case "svg-timeline": case "svg-roofline": case "svg-quant": {
        const svg = format === "svg-latency" ? latencySvg(p) : format === "svg-timeline" ? timelineSvg(p)
          : format === "svg-roofline" ? rooflineSvg([p], loadCeilings(ceilingsDir), check(RooflineGroup, c.req.query("group"), "group"))
          : quantSvg(p);
        if (c.req.query("download") === "1") attach(`${format.slice(4)}.svg`);
        return c.body(svg, 200, SVG);
      }
      default: {
        attach(format);
        return c.body(renderTable(tableRows([p]), format), 200, { "Content-Type": TABLE_MIME[format] });
      }
    }
  });

  app.get("/export/table", (c) => {
    const format = check(z.enum(TABLE_FORMATS), c.req.query("format") ?? "md", "format");
    const ps = keysParam(c).map((k) => profiles.get(k));
    return c.body(renderTable(tableRows(ps), format), 200, { "Content-Type": TABLE_MIME[format] });
  });

  app.get("/export/roofline.svg", (c) => {
    const ps = keysParam(c).map((k) => profiles.get(k));
    const group = check(RooflineGroup, c.req.query("group"), "group");
    return c.body(rooflineSvg(ps, loadCeilings(ceilingsDir), group), 200, SVG);
  });

  return app;
}
