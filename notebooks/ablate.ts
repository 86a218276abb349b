// Ablation: sweep optimization toggles over a prompt set and write one profile per arm, a comparison table and
// plots. Run top to bottom:
//
//   bun notebooks/ablate.ts                                  # every toggle with >1 arm on this backend, one at a time
//   bun notebooks/ablate.ts --toggle gqa=native,broadcast --toggle kvCache=bf16,f32 --cartesian
//   bun notebooks/ablate.ts --model synthetic:0.5b --backend cuda --prompts prompts.jsonl --repeats 5
//   bun notebooks/ablate.ts --max-contention 10 --retries 3  # re-run a pass while others use > 10 % CPU (as `bench`)
//   bun notebooks/ablate.ts --profiling on,off               # profiling mode as an axis (its overhead)
//   bun notebooks/ablate.ts --backend cpu,cuda --toggle gqa=*  # the backend as an axis (a missing one is skipped)
//   bun notebooks/ablate.ts --weights q4,output=q8 --toggle actQuant=*  # the model loaded with a weights option (CLI form)
//   bun notebooks/ablate.ts --toggle weights=*                # as-loaded vs bf16 vs q8 vs q4 on the same model file (the
//                                                             # default sweep leaves weights out: name it to sweep it)
//                                                             # (each weights arm loads its own copy: a load-time option)
//
// Every arm gets one warm-up pass, then >= 3 (--repeats) measured passes, interleaved across arms (round r runs
// A, B, C, ... once each), each pass checked for contention like the CLI bench. Summaries are medians with
// min–max; a Δ is significant only outside both arms' spreads (engine/measure/stats.ts, the rule Compare uses too).
// Output (default profiles/ablate/<stamp>/): <arm>.json per arm, comparison.md (llama-bench table + deltas
// vs the baseline arm), table.{csv,json,jsonl}, roofline.svg, latency-<arm>.svg, decode.svg.
import { parseArgs } from "node:util";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { openModel } from "../engine/index.ts";
import { parseWeightsArg, type WeightsOption } from "../engine/formats/requant.ts";
import type { EngineModel } from "../engine/api.ts";
import { writeProfile, type Profile } from "../engine/measure/profile.ts";
import { parsePromptSet, SamplingSpec, type PromptSpec } from "../engine/measure/record.ts";
import { buildArms, MIN_REPEATS, runArmsInterleaved, weightArmModels } from "../engine/measure/sweep.ts";
import { compareSummaries, fmtPct, fmtSpread, summaryStats, type SummaryDelta } from "../engine/measure/stats.ts";
import { renderTable, tableRows } from "../engine/export/table.ts";
import { loadCeilings } from "../engine/measure/roofline.ts";

const REPO = resolve(import.meta.dir, "..");
const { values: a } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    model: { type: "string", default: "default" },
    weights: { type: "string" },
    backend: { type: "string", default: "auto" },
    threads: { type: "string" },
    prompts: { type: "string" },
    toggle: { type: "string", multiple: true },
    cartesian: { type: "boolean", default: false },
    profiling: { type: "string", default: "on" },
    "max-tokens": { type: "string", default: "32" },
    "steps-per-sync": { type: "string" },
    repeats: { type: "string", default: "3" },
    "max-contention": { type: "string", default: "10" },
    retries: { type: "string", default: "3" },
    "no-warmup": { type: "boolean", default: false },
    seed: { type: "string", default: "0" },
    out: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (a.help) {
  console.log(`usage: npm run ablate -- [--model SRC] [--weights SPEC] [--backend auto|cpu|cuda[,…]] [--threads N] [--prompts SET.json|.jsonl]
                      [--toggle id=v1,v2|id=* …] [--cartesian] [--profiling on,off] [--max-tokens N] [--repeats N]
                      [--steps-per-sync N] [--no-warmup] [--max-contention PCT] [--retries N] [--seed N] [--out DIR]
                      (= bun notebooks/ablate.ts)
  Sweeps optimization toggles (default: every toggle with more than one value on the backend, one at a time) and
  runs >= 3 (--repeats, default 3) measured passes per arm after a warm-up, interleaved across arms (A B A B …), re-running
  a pass while other processes use > --max-contention % CPU (default 10, up to --retries 3 times); writes one profile per arm
  (medians over the repetitions), comparison.md (Δ faster/slower only outside both arms' min–max, else within noise),
  table.{csv,json,jsonl} and plots to --out (default profiles/ablate/<stamp>/). --weights: the model's load-time weights
  option in the CLI form (q4, q4,0=bf16, q4,output=q8); weights= arms keep its output format.`);
  process.exit(0);
}
// decode steps per engine call, every arm alike (absent: the recorded runs' default, DEFAULT_STEPS_PER_SYNC)
const stepsPerSync = a["steps-per-sync"] === undefined ? undefined : Number(a["steps-per-sync"]);
if (stepsPerSync !== undefined && (!Number.isInteger(stepsPerSync) || stepsPerSync < 1 || stepsPerSync > 64)) { console.error(`ablate: --steps-per-sync must be an integer in 1..64, got ${a["steps-per-sync"]}`); process.exit(2); }
let baseWeights: WeightsOption = {};
if (a.weights !== undefined) {
  try { baseWeights = parseWeightsArg(a.weights); } catch (e) { console.error(`ablate: ${(e as Error).message}`); process.exit(2); }
}
const repeats = Number(a.repeats);
if (!Number.isInteger(repeats) || repeats < MIN_REPEATS) { console.error(`ablate: --repeats must be an integer >= ${MIN_REPEATS} (a median with a spread), got ${a.repeats}`); process.exit(2); }

// 1. The prompt set (a small built-in one unless --prompts names a JSON/JSONL file).
const DEFAULT_PROMPTS: PromptSpec[] = [
  { prompt: "The old man walked into the room and", seed: 1 },
  { prompt: "The jury said it did find that the court", seed: 2 },
  { prompt: "In the first place, the committee", seed: 3 },
];
const set = a.prompts ? parsePromptSet(readFileSync(a.prompts, "utf8"), "cli") : { name: "builtin", prompts: DEFAULT_PROMPTS, sampling: {}, maxTokens: undefined };
const sampling = SamplingSpec.parse({ seed: Number(a.seed), ...(set.sampling ?? {}) });
const maxTokens = set.maxTokens ?? Number(a["max-tokens"]);

// 2. Toggle axes from the command line (none: every toggle with more than one arm on the backend).
const axes: Record<string, string[]> = {};
for (const t of a.toggle ?? []) {
  const [id, vals] = t.split("=");
  if (!id || !vals) throw new Error(`--toggle ${t}: expected id=v1,v2 (or id=*)`);
  axes[id] = vals.split(",");
}
const profilingAxis = a.profiling!.split(",").map((x) => x.trim() === "on");

// 3. For each backend (--backend cpu,cuda makes the backend an axis too): open the model, build the arms from
//    its toggle registry, run every arm; one profile each.
const stamp = new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 13);
const out = resolve(a.out ?? join(REPO, "profiles/ablate", stamp));
mkdirSync(out, { recursive: true });
const slug = (s: string) => s.replace(/[^A-Za-z0-9._=-]+/g, "_").replace(/=/g, "-").slice(0, 100);
const profiles: Profile[] = [];
const backends = a.backend!.split(",").map((b) => b.trim()) as ("auto" | "cpu" | "cuda")[];
let model: EngineModel | null = null;
for (const backend of backends) {
  let m: EngineModel;
  try {
    m = await openModel(a.model!, { backend, threads: a.threads ? Number(a.threads) : undefined, ...baseWeights });
  } catch (e) {
    if (backends.length > 1) { console.log(`backend ${backend}: skipped (${(e as Error).message})`); continue; }
    throw e;
  }
  model ??= m;
  const session = m.newSession({ maxBatch: 1 });
  console.log(`model ${m.id} · ${m.backend} · ${m.device.name} · ${m.config.num_hidden_layers} layers`);
  const arms = buildArms(m.toggleRegistry(), m.backend, axes, { cartesian: a.cartesian, profiling: profilingAxis })
    .map((arm) => (backends.length > 1 ? { ...arm, label: `${m.backend}:${arm.label}` } : arm));
  console.log(`${arms.length} arms × ${set.prompts.length} prompts × ${repeats} repetitions, interleaved: ${arms.map((x) => x.label).join(" | ")}`);
  const wm = await weightArmModels(m, session, arms, (opt) => openModel(a.model!, { backend: m.backend, threads: a.threads ? Number(a.threads) : undefined, ...opt }));
  const ps = await runArmsInterleaved(m, session, arms, {
    envOf: wm.envOf, idOf: (arm) => `ablate-${stamp}-${slug(arm.label)}`, prompts: set.prompts, maxTokens, sampling, repeats, stepsPerSync,
    warmup: !a["no-warmup"], command: `bun notebooks/ablate.ts ${Bun.argv.slice(2).join(" ")}`,
    maxContention: Number(a["max-contention"]) / 100, retries: Number(a.retries),
    onProgress: (msg) => process.stdout.write(`\r  ${msg}                    `),
  });
  for (const p of ps) writeProfile(join(out, `${slug(p.manifest.label ?? p.id)}.json`), p);
  profiles.push(...ps);
  process.stdout.write("\n");
  wm.close();
  session.close();
  if (m !== model) m.close();
}
if (!model || !profiles.length) throw new Error("no backend could run the sweep");


// 5. Comparison table (llama-bench style + deltas vs the first arm, the baseline) and plots.
const rows = tableRows(profiles);
for (const f of ["csv", "json", "jsonl"] as const) writeFileSync(join(out, `table.${f}`), renderTable(rows, f));
const base = profiles[0];
const tok0 = JSON.stringify(base.summary.first_tokens);
// The same numbers and the same rule as notebooks/compare.ts and the web Compare page (engine/measure/stats.ts):
// medians over the repetitions, min–max spreads, "faster"/"slower" only outside both arms' spreads.
const cell = (d: SummaryDelta | undefined) => (!d || d.pct === null ? "" : `${fmtPct(d.pct)} ${d.status === "faster" || d.status === "slower" ? `**${d.status}**` : `(${d.status})`}`);
const deltas = profiles.map((p) => {
  const same = JSON.stringify(p.summary.first_tokens) === tok0 ? "yes" : "no";
  const st = summaryStats(p), d = compareSummaries(base, p);
  const by = (k: string) => (p === base ? undefined : d.find((x) => x.key === k));
  return `| ${p.manifest.label} | ${fmtSpread(st.decode_tok_s)} | ${cell(by("decode_tok_s"))} | ${fmtSpread(st.prefill_tok_s, 1)} | ${cell(by("prefill_tok_s"))} | ${fmtSpread(st.ttft_ms, 3)} | ${cell(by("ttft_ms"))} | ${same} |`;
});
const shares = profiles.flatMap((p) => (p.summary.others_cpu_share as (number | null)[] | undefined) ?? []);
const contended = shares.filter((x) => x !== null && x > Number(a["max-contention"]) / 100).length;
const unjudged = shares.filter((x) => x === null).length; // passes under ~0.1 s of machine time: /proc/stat is too coarse
const md = [
  `# Ablation ${stamp}`, "",
  `model \`${model.id}\` · ${[...new Set(profiles.map((p) => `${p.manifest.device.backend} (${p.manifest.device.name})`))].join(" + ")} · ${set.prompts.length} prompts (${set.name}) · max ${maxTokens} tokens · ${repeats} interleaved repetitions${a["no-warmup"] ? "" : " after a warm-up"} · greedy unless the set says otherwise`, "",
  "## Rates", "", renderTable(rows, "md"),
  "## Against the baseline arm", "",
  `Median (min–max) over ${repeats} repetitions, run interleaved across arms (A B A B …) after a warm-up per arm; Δ = median against the first arm's median. A Δ is **faster**/**slower** only when each arm's median lies outside the other arm's min–max, else "within noise" (the rule of \`notebooks/compare.ts\` and the web Compare page). Passes during which other processes used more than ${a["max-contention"]} % of the CPU were re-run up to ${a.retries} times; ${contended} of ${shares.length} stayed contended${unjudged ? `, ${unjudged} too short to judge (under ~0.1 s of CPU time)` : ""}.`, "",
  "| arm | decode tok/s | Δ | prefill tok/s | Δ | TTFT ms | Δ | same tokens as baseline |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  ...deltas, "",
  "Plots: roofline.svg (all arms overlaid), decode.svg, latency-<arm>.svg. Profiles: one JSON per arm in this folder.", "",
].join("\n");
writeFileSync(join(out, "comparison.md"), md);
// The plots need @observablehq/plot, which the GPU machine's pack does not carry (no registry there): without it the
// measurements and tables are still written, and the plots come from the profiles here (notebooks/export.ts).
let svg: typeof import("../engine/export/svg.ts") | null = null;
try { svg = await import("../engine/export/svg.ts"); } catch (e) {
  console.warn(`plots not written (${(e as Error).message.split("\n")[0]}): render them here with \`bun notebooks/export.ts ${out}/*.json --format svg-latency,svg-roofline\``);
}
if (svg) {
  writeFileSync(join(out, "roofline.svg"), svg.rooflineSvg(profiles, loadCeilings(), "op"));
  for (const p of profiles) writeFileSync(join(out, `latency-${slug(p.manifest.label ?? p.id)}.svg`), svg.latencySvg(p));
  const tg = rows.filter((r) => r.test.startsWith("tg"));
  writeFileSync(join(out, "decode.svg"), svg.barsSvg("Decode throughput per arm", `${model.id} · ${model.device.name} (${model.backend}) · median of ${repeats}, whiskers min–max`,
    tg.map((r) => ({ label: r.label, value: r.tokens_per_s, lo: r.tokens_per_s_min, hi: r.tokens_per_s_max })), "decode (tokens/s)"));
}
console.log(md);
console.log(`wrote ${profiles.length} profiles and the comparison to ${out}`);
model.close();
