// %% [markdown]
// # Compare two runs (A/B)
//
// Two profiled runs of the same prompt, A = baseline and B = one toggle changed (or two profile files:
// `QW_NB_A=a.json QW_NB_B=b.json bun notebooks/compare.nb.ts`). Summary deltas, per-layer and per-op medians
// with their p10–p90 spread, and the noise-aware status of every (phase, layer, op): the same
// `compareProfiles` as the Compare page and `notebooks/compare.ts`.

// %% A and B
import { openModel } from "../engine/index.ts";
import { recordRun } from "../engine/measure/record.ts";
import { compareProfiles } from "../engine/measure/aggregate.ts";
import { fmtSpread } from "../engine/measure/stats.ts";
import { compareSvg } from "../engine/export/svg.ts";
import { readProfile, type Profile } from "../engine/measure/profile.ts";
import { display, plotly, svg, table } from "../engine/notebook/display.ts";

async function twoRuns(): Promise<[Profile, Profile]> {
  const model = await openModel(process.env.QW_NB_MODEL ?? "default");
  const session = model.newSession({ maxBatch: 1 });
  const run = async (label: string, toggles: Record<string, string>) => (await recordRun(model, session, {
    id: `nb-compare-${label}`, prompts: [{ prompt: "In the first place, the committee" }], maxTokens: 24,
    sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 }, toggles, profiling: true, capture: [], label, warmup: 1, repeats: 3,
  })).profile;
  const pair: [Profile, Profile] = [await run("baseline", {}), await run("gqa=broadcast", { gqa: "broadcast" })];
  session.close();
  model.close();
  return pair;
}
const [A, B] = process.env.QW_NB_A && process.env.QW_NB_B ? [readProfile(process.env.QW_NB_A), readProfile(process.env.QW_NB_B)] : await twoRuns();
const c = compareProfiles(A, B);
display(`${A.manifest.model.id} · B = ${c.b.label} vs A = ${c.a.label} · toggles: ${c.toggleDiff.map((t) => `${t.id} ${t.a} → ${t.b}`).join(", ") || "identical"} · generated tokens ${c.sameTokens ? "identical" : "differ"}`);

// %% Summary
const r3 = (v: number | null) => (v === null || !Number.isFinite(v) ? null : +v.toPrecision(4));
// medians over the repetitions, min–max, and the verdict of the one rule (engine/measure/stats.ts)
table(c.summary.map((s) => ({ metric: `${s.metric} (${s.unit})`, A: fmtSpread(s.aSpread, 3), B: fmtSpread(s.bSpread, 3), "Δ": r3(s.delta), "Δ %": s.pct === null ? null : +s.pct.toFixed(1), status: s.status })));

// %% Per op: Δ median time per step
plotly(["prefill", "decode"].map((phase) => {
  const r = c.byOp.filter((o) => o.phase === phase);
  return { type: "bar", name: phase, x: r.map((o) => o.op), y: r.map((o) => o.deltaMs) };
}), { title: { text: "Δ median ms per step (B − A), per op" }, barmode: "group", height: 320 });
svg(compareSvg(c));

// %% Rows that changed beyond noise
table(c.rows.filter((r) => r.status !== "within noise").map((r) => ({
  phase: r.phase, layer: r.layer >= 0 ? `L${r.layer}` : "head/tail", op: r.op,
  "A ms": +r.a.median.toPrecision(3), "B ms": +r.b.median.toPrecision(3), "B/A": r.ratio === null ? null : +r.ratio.toFixed(3), status: r.status,
})));
