// Export a profile: Chrome trace (Perfetto), llama-bench tables, static SVG plots, a self-contained HTML report.
//
//   bun notebooks/export.ts profiles/ablate/<stamp>/baseline.json                 # everything, next to the profile
//   bun notebooks/export.ts run.json --format trace --out /tmp/x                    # one format
//   bun notebooks/export.ts a.json b.json --format md                               # one table over several profiles
// formats: trace md csv json jsonl html svg-latency svg-timeline svg-roofline svg-quant all
import { parseArgs } from "node:util";
import { mkdirSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { readProfile } from "../engine/measure/profile.ts";
import { chromeTrace } from "../engine/export/trace.ts";
import { renderTable, tableRows, TABLE_FORMATS, type TableFormat } from "../engine/export/table.ts";
import { htmlReport } from "../engine/export/report.ts";
import { latencySvg, quantSvg, rooflineSvg, timelineSvg } from "../engine/export/svg.ts";
import { loadCeilings } from "../engine/measure/roofline.ts";

const FORMATS = ["trace", ...TABLE_FORMATS, "html", "svg-latency", "svg-timeline", "svg-roofline", "svg-quant"] as const;
const { values: a, positionals } = parseArgs({
  args: Bun.argv.slice(2), allowPositionals: true,
  options: { format: { type: "string", default: "all" }, out: { type: "string" }, ceilings: { type: "string" }, help: { type: "boolean", short: "h" } },
});
if (a.help || !positionals.length) {
  console.log(`usage: npm run export -- PROFILE.json... [--format ${["all", ...FORMATS].join("|")}[,…]] [--out DIR] [--ceilings DIR]   (= bun notebooks/export.ts)`);
  process.exit(a.help ? 0 : 2);
}
const all = a.format === "all";
const fmts = all ? [...FORMATS] : a.format!.split(",");
const noQuant: string[] = [];
for (const f of fmts) if (!(FORMATS as readonly string[]).includes(f)) { console.error(`unknown format ${f}`); process.exit(2); }
const ceilings = loadCeilings(a.ceilings ? resolve(a.ceilings) : undefined);
const profiles = positionals.map((p) => ({ path: resolve(p), p: readProfile(resolve(p)) }));

// Tables over several profiles go into one file; everything else is per profile.
if (profiles.length > 1) {
  const out = resolve(a.out ?? ".");
  mkdirSync(out, { recursive: true });
  for (const f of fmts.filter((x): x is TableFormat => (TABLE_FORMATS as readonly string[]).includes(x))) {
    const file = join(out, `table.${f}`);
    writeFileSync(file, renderTable(tableRows(profiles.map((x) => x.p)), f));
    console.log(file);
  }
}
for (const { path, p } of profiles) {
  const out = resolve(a.out ?? dirname(path));
  mkdirSync(out, { recursive: true });
  const stem = basename(path).replace(/\.json$/, "");
  const write = (name: string, body: string) => { const f = join(out, name); writeFileSync(f, body); console.log(f); };
  for (const f of fmts) {
    if (f === "trace") write(`${stem}.trace.json`, JSON.stringify(chromeTrace(p)));
    else if (f === "html") write(`${stem}.report.html`, htmlReport(p, { ceilings }));
    else if (f === "svg-latency") write(`${stem}.latency.svg`, latencySvg(p));
    else if (f === "svg-timeline") write(`${stem}.timeline.svg`, timelineSvg(p));
    else if (f === "svg-roofline") write(`${stem}.roofline.svg`, rooflineSvg([p], ceilings, "op"));
    else if (f === "svg-quant") {
      if (p.quant_error?.length) write(`${stem}.quant.svg`, quantSvg(p));
      else if (!all) noQuant.push(path); // asked for by name: say so (with --format all it is just not written)
    }
    else if (profiles.length === 1) write(`${stem}.bench.${f}`, renderTable(tableRows([p]), f as TableFormat));
  }
}
if (noQuant.length) {
  console.error(`export: no quantization-error data in ${noQuant.join(", ")}: svg-quant needs a profile of kind "quant-error" (the Quantization error page or POST /api/quant makes one)`);
  process.exit(1);
}
