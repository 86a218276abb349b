// %% [markdown]
// # Ablation: one optimization toggle at a time
//
// Every toggle with more than one value implemented on this backend becomes an arm against the baseline (the
// registry decides, nothing is hard-coded). Each arm runs a warm-up, then `REPEATS` (>= 3) measured passes over
// the prompts, interleaved across arms (A B A B ...); rates are medians with the min–max spread of the passes,
// and a Δ is faster/slower only outside both arms' spreads (engine/measure/stats.ts, the rule of the Compare page).
//
// Runs in the workbench's Notebook page, or unchanged from a terminal: `bun notebooks/ablation.nb.ts`
// (`QW_NB_MODEL=synthetic:0.5b` for another model). `notebooks/ablate.ts` is the command-line sweep with every
// option (prompt-set files, cartesian products, output folders); both call `engine/measure/sweep.ts`.

// %% Parameters
import { openModel } from "../engine/index.ts";
import { buildArms, runArmsInterleaved } from "../engine/measure/sweep.ts";
import { compareSummaries } from "../engine/measure/stats.ts";
import { tableRows } from "../engine/export/table.ts";
import { barsSvg } from "../engine/export/svg.ts";
import { display, plotly, progress, svg, table } from "../engine/notebook/display.ts";
import type { Profile } from "../engine/measure/profile.ts";

const MODEL = process.env.QW_NB_MODEL ?? "default";
const REPEATS = 3;
const MAX_TOKENS = 16;
const PROMPTS = [
  { prompt: "The old man walked into the room and", seed: 1 },
  { prompt: "The jury said it did find that the court", seed: 2 },
];

// %% Open the model
const model = await openModel(MODEL);
const session = model.newSession({ maxBatch: 1 });
display(`${model.id} · ${model.backend} (${model.device.name}) · ${model.config.num_hidden_layers} layers`);

// %% Arms, from the toggle registry
const arms = buildArms(model.toggleRegistry(), model.backend);
table(arms.map((a) => ({ arm: a.label, toggles: JSON.stringify(a.toggles), profiling: a.profiling })));

// %% Run every arm (interleaved rounds)
let done = 0;
const profiles: Profile[] = await runArmsInterleaved(model, session, arms, {
  idOf: (arm) => `nb-ablation-${arms.indexOf(arm)}`, prompts: PROMPTS, maxTokens: MAX_TOKENS, repeats: REPEATS, warmup: true,
  sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 }, command: "notebooks/ablation.nb.ts",
  onProgress: (msg) => { if (msg.startsWith("round")) progress("passes", done++, arms.length * REPEATS); },
});
progress("passes", arms.length * REPEATS, arms.length * REPEATS);

// %% Rates against the baseline arm
const rows = tableRows(profiles);
const baseRate = (test: string) => rows.find((r) => r.label === arms[0].label && r.test === test)?.tokens_per_s ?? NaN;
const firstTokens = (p: Profile) => JSON.stringify(p.summary.first_tokens);
const profileOf = (label: string) => profiles.find((p) => p.manifest.label === label)!;
const deltaOf = (label: string, test: string) => compareSummaries(profiles[0], profileOf(label))
  .find((d) => d.key === (test.startsWith("tg") ? "decode_tok_s" : "prefill_tok_s"))!;
const results = rows.map((r) => ({
  arm: r.label, test: r.test, "tok/s": +r.tokens_per_s.toFixed(2),
  min: +r.tokens_per_s_min.toFixed(2), max: +r.tokens_per_s_max.toFixed(2),
  "Δ vs baseline %": +((100 * (r.tokens_per_s - baseRate(r.test))) / baseRate(r.test)).toFixed(1),
  verdict: r.label === arms[0].label ? "" : deltaOf(r.label, r.test).status,
  "same tokens": firstTokens(profiles.find((p) => p.manifest.label === r.label)!) === firstTokens(profiles[0]),
}));
table(results, { title: `median of ${REPEATS} after a warm-up, ${PROMPTS.length} prompts, ${MAX_TOKENS} tokens` });

// %% Decode throughput per arm
const decode = results.filter((r) => r.test.startsWith("tg"));
plotly([{
  type: "bar", orientation: "h", y: decode.map((r) => r.arm), x: decode.map((r) => r["tok/s"]),
  error_x: { type: "data", symmetric: false, array: decode.map((r) => r.max - r["tok/s"]), arrayminus: decode.map((r) => r["tok/s"] - r.min) },
}], { title: { text: `decode tok/s per arm · ${model.id} · ${model.device.name}` }, xaxis: { title: { text: "tokens/s (median, min–max)" } }, margin: { l: 140 }, height: 280 });
svg(barsSvg("Decode throughput per arm", `${model.id} · ${model.device.name} (${model.backend}) · median of ${REPEATS}, whiskers min–max`,
  decode.map((r) => ({ label: r.arm, value: r["tok/s"], lo: r.min, hi: r.max })), "decode (tokens/s)"));

// %% Release the model
session.close();
model.close();
