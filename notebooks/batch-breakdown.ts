// Batch breakdown: where a decode step's time goes at each batch size (issue 10: "batch 16 never slower than
// batch 8"). Per batch: the step's wall time with profiling off (median and min–max over >= 3 repetitions after a
// warm-up), then one profiled run (profiling = kernels): kernel µs per op per step, which kernel variants ran, and
// the time between kernels. Writes DIR/batch-breakdown.md and DIR/batch-breakdown.json.
//
//   npx bun notebooks/batch-breakdown.ts synthetic:tiny:f32 --backend cpu --batches 1,4
//   npx bun notebooks/batch-breakdown.ts /tmp/qw-ref/0.5b --backend cuda --batches 1,8,16 --toggle gemv=marlin
//   npx bun notebooks/batch-breakdown.ts /tmp/qw-ref/7b --backend cuda --weights q4 --batches 1,16
import { parseArgs } from "node:util";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { openModel, type Model } from "../engine/index.ts";
import { cliArgs } from "../engine/notebook/args.ts";
import { parseToggleArg } from "../engine/toggles.ts";
import { parseWeightsArg, weightsLabel, type WeightsOption } from "../engine/formats/requant.ts";
import { applyToggles } from "../engine/measure/record.ts";
import type { ToggleValues } from "../engine/measure/profile.ts";
import { batchBreakdownContext, batchBreakdownTable, measureBatchBreakdown } from "../engine/measure/batch-breakdown.ts";

const USAGE = `usage: npx bun notebooks/batch-breakdown.ts <model> [options]
  <model>                  a GGUF file, an HF directory or synthetic:<shape>:<type>
  --batches 1,8,16         decode batch sizes (default 1,8,16)
  --context N              prompt tokens per sequence before the steps (default 64)
  --steps N                decode steps per repetition and in the profiled run (default 16)
  --reps N (>= 3, default 3)
  --toggle id=value,...    engine toggles, as the CLI's
  --weights F[,L=F...]     requantize at load, as the CLI's (as-loaded | bf16 | q8 | q4; output=F: the lm_head)
  --backend auto|cpu|cuda --threads N
  --out DIR                default profiles/raw/batch-breakdown/<stamp>`;

const { values: o, positionals } = parseArgs({
  args: Bun.argv.slice(2), allowPositionals: true, options: {
    batches: { type: "string" }, context: { type: "string" }, steps: { type: "string" }, reps: { type: "string" },
    toggle: { type: "string" }, weights: { type: "string" }, backend: { type: "string" }, threads: { type: "string" },
    out: { type: "string" }, help: { type: "boolean", short: "h" },
  },
});
if (o.help) { console.log(USAGE); process.exit(0); }
const { die, int, backendOpt, threadsOpt } = cliArgs(USAGE);
if (positionals.length !== 1) die(`expected one model, got ${positionals.length}`);
const source = positionals[0];
const batches = (o.batches ?? "1,8,16").split(",").map((s) => int(s.trim(), "batches", 1, 1));
const context = int(o.context, "context", 64), steps = int(o.steps, "steps", 16), reps = int(o.reps, "reps", 3, 3);
const backend = backendOpt(o.backend);
const threads = threadsOpt(o.threads);
let toggles: ToggleValues = {};
let weights: WeightsOption = {};
try {
  if (o.toggle) toggles = parseToggleArg(o.toggle) as ToggleValues;
  if (o.weights) weights = parseWeightsArg(o.weights);
} catch (e) { die((e as Error).message); }
const out = resolve(o.out ?? join("profiles/raw/batch-breakdown", new Date().toISOString().replace(/[-:]/g, "").slice(0, 15)));

console.error(`opening ${source} (${backend}) ...`);
const model = (await openModel(source, { backend, threads, ...weights })) as Model;
let md: string;
let json: object;
try {
  // sized from the options, so measureBatchBreakdown's own check (batch, context) holds
  const opts = { batches, context, steps, reps, onProgress: (m: string) => console.error(`  ${m}`) };
  const s = model.newSession({ maxBatch: Math.max(...batches), maxContext: batchBreakdownContext(opts), maxPrefill: context });
  try {
    try { applyToggles(model, s, toggles); } catch (e) { die(`--toggle: ${(e as Error).message}`); }
    const rows = measureBatchBreakdown(s, model.config.vocab_size, opts);
    const dev = `${model.device.name} (${model.backend}${model.device.threads ? `, ${model.device.threads} threads` : ""})`;
    const command = `npx bun notebooks/batch-breakdown.ts ${Bun.argv.slice(2).join(" ")}`;
    md = [
      `# Batch breakdown: ${model.id}, weights ${weightsLabel(weights)}, on ${dev}`,
      "",
      `\`${command}\`; toggles ${JSON.stringify(s.toggles())}. Each batch: ${context} prompt tokens per sequence, one warm-up and ${reps} measured runs of ${steps} greedy decode steps (profiling off), then one profiled run of ${steps} steps (profiling = kernels; its records summed per op and divided by the steps).`,
      "",
      ...batchBreakdownTable(rows),
      "",
    ].join("\n");
    json = { command, model: model.id, layers: model.config.num_hidden_layers, device: model.device, backend: model.backend, weights, toggles: s.toggles(), context, steps, reps, rows };
  } finally {
    s.close();
  }
} finally {
  model.close();
}
mkdirSync(out, { recursive: true });
writeFileSync(join(out, "batch-breakdown.md"), md + "\n");
writeFileSync(join(out, "batch-breakdown.json"), JSON.stringify(json, null, 2) + "\n");
console.log(md);
console.error(`wrote ${join(out, "batch-breakdown.md")} and batch-breakdown.json`);
