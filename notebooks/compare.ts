// Compare two profiles (A/B): summary deltas (medians over the measured repetitions with min–max), per layer and
// per op medians with p10–p90 spread over steps, and the HTA-style status of every (phase, layer, op): faster /
// slower / within noise / added / removed. One rule everywhere (engine/measure/stats.ts): a difference counts only when
// each side's median lies outside the other side's spread; notebooks/ablate.ts and the web Compare page use it too.
//
//   bun notebooks/compare.ts profiles/ablate/<stamp>/baseline.json profiles/ablate/<stamp>/gqa-broadcast.json
//   bun notebooks/compare.ts A.json B.json --out /tmp/cmp      # also writes compare.md, compare.json, compare.svg
import { parseArgs } from "node:util";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { readProfile } from "../engine/measure/profile.ts";
import { compareProfiles, type Spread } from "../engine/measure/aggregate.ts";
import { fmtPct, fmtSpread } from "../engine/measure/stats.ts";
import { compareSvg } from "../engine/export/svg.ts";
import { renderTable, tableRows } from "../engine/export/table.ts";

const { values: a, positionals } = parseArgs({
  args: Bun.argv.slice(2), allowPositionals: true,
  options: { out: { type: "string" }, all: { type: "boolean", default: false }, help: { type: "boolean", short: "h" } },
});
if (a.help || positionals.length !== 2) {
  console.log("usage: npm run compare -- A.json B.json [--out DIR] [--all (every row, not only changed ones)]   (= bun notebooks/compare.ts)");
  process.exit(a.help ? 0 : 2);
}
const [A, B] = positionals.map((p) => readProfile(resolve(p)));
const c = compareProfiles(A, B);

const f = (v: number | null | undefined, d = 3) => (v === null || v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(d));
const sp = (s: Spread) => (s.n ? `${f(s.median, 4)} [${f(s.p10, 4)}–${f(s.p90, 4)}]` : "–");
const lines: string[] = [
  `# ${c.b.label} (B) vs ${c.a.label} (A)`, "",
  `toggles: ${c.toggleDiff.length ? c.toggleDiff.map((t) => `${t.id} ${JSON.stringify(t.a)} → ${JSON.stringify(t.b)}`).join(", ") : "identical"} · generated tokens: ${c.sameTokens === null ? "–" : c.sameTokens ? "identical" : "differ"}`, "",
  "Medians over the measured repetitions (min–max); Δ = median(B) − median(A); status: faster/slower only when each median lies outside the other side's min–max.", "",
  "| metric | A | B | Δ | Δ % | status |", "| --- | ---: | ---: | ---: | ---: | --- |",
  ...c.summary.map((s) => `| ${s.metric} (${s.unit}) | ${fmtSpread(s.aSpread, 3)} | ${fmtSpread(s.bSpread, 3)} | ${f(s.delta)} | ${fmtPct(s.pct)} | ${s.status} |`), "",
  "## Per layer (ms per step: median [p10–p90])", "", "| phase | layer | A | B | Δ median | status |", "| --- | --- | ---: | ---: | ---: | --- |",
  ...c.byLayer.map((r) => `| ${r.phase} | ${r.layer >= 0 ? `L${r.layer}` : "head/tail"} | ${sp(r.a)} | ${sp(r.b)} | ${f(r.deltaMs, 4)} | ${r.status} |`), "",
  "## Per op", "", "| phase | op | A | B | Δ median | status |", "| --- | --- | ---: | ---: | ---: | --- |",
  ...c.byOp.map((r) => `| ${r.phase} | ${r.op} | ${sp(r.a)} | ${sp(r.b)} | ${f(r.deltaMs, 4)} | ${r.status} |`), "",
  `## Per phase, layer and op${a.all ? "" : " (changed beyond noise only; --all for every row)"}`, "",
  "| phase | layer | op | A | B | B/A | status |", "| --- | --- | --- | ---: | ---: | ---: | --- |",
  ...c.rows.filter((r) => a.all || r.status !== "within noise").map((r) => `| ${r.phase} | ${r.layer >= 0 ? `L${r.layer}` : "head/tail"} | ${r.op} | ${sp(r.a)} | ${sp(r.b)} | ${f(r.ratio)} | ${r.status} |`), "",
  "## Rates", "", renderTable(tableRows([A, B]), "md"),
];
const md = lines.join("\n");
console.log(md);
if (a.out) {
  const out = resolve(a.out);
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "compare.md"), md);
  writeFileSync(join(out, "compare.json"), JSON.stringify(c, null, 1));
  writeFileSync(join(out, "compare.svg"), compareSvg(c));
  console.log(`wrote compare.md, compare.json, compare.svg to ${out}`);
}
