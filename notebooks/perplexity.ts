// Perplexity study: one model (the reference: its defaults, or --reference-toggle) against several arms (toggle
// sets and/or other model files of the same vocab) on one text. The reference's logits are saved once to
// DIR/reference.qwkl and reused by every arm and by later runs with the same model, toggles, text and ctx.
// Writes DIR/perplexity.md (one row per arm: perplexity ± SE, KL divergence, top-1 agreement) and
// DIR/perplexity.json (every number).
//
//   npx bun notebooks/perplexity.ts                                   # embedded model, Brown validation, ctx 512
//   npx bun notebooks/perplexity.ts --arm kvCache=f32 --arm-model models/tiny-q8_0.gguf --max-tokens 8192
//   npx bun notebooks/perplexity.ts path/to/model.gguf --text book.txt --ctx 1024 --arm weights=q8 --out /tmp/ppl
import { parseArgs } from "node:util";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { openModel, type EngineModel } from "../engine/index.ts";
import { parseToggleArg, validateToggleSettings } from "../engine/toggles.ts";
import { runPerplexity, textTokens, type Arm, type PerplexityRunResult } from "../engine/measure/perplexity-run.ts";
import type { PerplexityPhase, ScoreMode } from "../engine/measure/perplexity.ts";
import { optionFromToggle, outputFormat, parseWeightsArg, WEIGHTS_TOGGLE, withOutput, type WeightsOption } from "../engine/formats/requant.ts";
import { cliArgs } from "../engine/notebook/args.ts";

const USAGE = `usage: npx bun notebooks/perplexity.ts [model] [options]
  model                      default | file.gguf | HF dir (default: the embedded model)
  --brown | --text FILE      the text (default: the Brown validation split)
  --ctx N                    window (default 512);  --score all|half (default all)
  --phase prefill|decode     decode: one decode step per scored token (arms that act only in decode; default prefill)
  --max-tokens N             only the first N tokens
  --reference-toggle T       the reference arm's toggles (id=value,...; default: the model's defaults)
  --arm T                    an arm on the same model (repeatable); weights=q8|q4|bf16[/…] loads its own copy
  --arm-model PATH           an arm on another model file of the same vocab, default toggles (repeatable)
  --weights SPEC             the model's load-time weights option, as the CLI's --weights (q4, q4,0=bf16, q4,output=q8);
                             weights= arms keep its output format
  --arm-weights SPEC         an arm on a copy of the model loaded with SPEC (repeatable): e.g. the base as loaded
                             against --arm-weights as-loaded,output=q8 measures requantizing the lm_head alone
  --backend auto|cpu|cuda --threads N
  --out DIR                  default profiles/raw/perplexity/<stamp>`;

const { values: o, positionals } = parseArgs({
  args: Bun.argv.slice(2), allowPositionals: true, options: {
    brown: { type: "boolean" }, text: { type: "string" }, ctx: { type: "string" }, score: { type: "string" }, phase: { type: "string" }, "max-tokens": { type: "string" },
    "reference-toggle": { type: "string" }, arm: { type: "string", multiple: true }, "arm-model": { type: "string", multiple: true },
    backend: { type: "string" }, threads: { type: "string" }, out: { type: "string" }, help: { type: "boolean", short: "h" },
    weights: { type: "string" }, "arm-weights": { type: "string", multiple: true },
  },
});
if (o.help) { console.log(USAGE); process.exit(0); }
const { die, backendOpt, threadsOpt } = cliArgs(USAGE);
const int = (v: string | undefined, name: string, dflt?: number) => {
  if (v === undefined) return dflt;
  const x = Number(v);
  if (!Number.isInteger(x) || x < 2) die(`--${name} expects an integer >= 2, got '${v}'`);
  return x;
};
const ctx = int(o.ctx, "ctx", 512)!;
const maxTokens = int(o["max-tokens"], "max-tokens");
const score = (o.score ?? "all") as ScoreMode;
if (score !== "all" && score !== "half") die(`--score must be all or half`);
const phase = (o.phase ?? "prefill") as PerplexityPhase;
if (phase !== "prefill" && phase !== "decode") die(`--phase must be prefill or decode, got '${o.phase}'`);
const backend = backendOpt(o.backend);
const threads = threadsOpt(o.threads);
const out = resolve(o.out ?? join("profiles/raw/perplexity", new Date().toISOString().replace(/[-:]/g, "").slice(0, 15)));
if (!o["arm"]?.length && !o["arm-model"]?.length && !o["arm-weights"]?.length) die("give at least one --arm, --arm-model or --arm-weights to compare with the reference");
const weightsOf = (v: string, flag: string): WeightsOption => {
  try { return parseWeightsArg(v); } catch (e) { return die((e as Error).message.replace("--weights", `--${flag}`)); }
};
const baseWeights: WeightsOption = o.weights ? weightsOf(o.weights, "weights") : {};
const armWeights = (o["arm-weights"] ?? []).map((v) => ({ spec: v, opt: weightsOf(v, "arm-weights") }));

const toggles = (m: EngineModel, s: string | undefined) =>
  s ? validateToggleSettings(m.toggleRegistry(), parseToggleArg(s), { backend: m.backend, nLayers: m.config.num_hidden_layers }) : {};

mkdirSync(out, { recursive: true });
const src = positionals[0] ?? "default";
const base = await openModel(src, { backend, threads, ...baseWeights });
const results: (PerplexityRunResult & { arm: string })[] = [];
try {
  const { tokens, name } = textTokens(base, o.text ? { kind: "text", text: readFileSync(o.text, "utf8"), name: o.text } : { kind: "brown" }, maxTokens);
  console.error(`${base.id} (${base.backend}): ${name}, ${tokens.length} tokens, ctx ${ctx}, score ${score}, phase ${phase}`);
  const session = base.newSession({ maxContext: ctx });
  const refArm: Arm = { model: base, session, toggles: toggles(base, o["reference-toggle"]), label: o["reference-toggle"] ?? "defaults" };
  const refFile = join(out, "reference.qwkl");
  const arms: { label: string; open: () => Promise<Arm> }[] = [
    ...(o.arm ?? []).map((t) => ({ label: t, open: async (): Promise<Arm> => {
      const tg = toggles(base, t), w = tg[WEIGHTS_TOGGLE];
      if (w === undefined) return { model: base, session, toggles: tg, label: t };
      // weights is a load-time option: the arm runs on its own copy of the model, loaded with it
      const m = await openModel(src, { backend, threads, ...withOutput(optionFromToggle(w), outputFormat(baseWeights)) });
      return { model: m, session: m.newSession({ maxContext: ctx }), toggles: tg, label: t };
    } })),
    ...armWeights.map(({ spec, opt }) => ({ label: `weights ${spec}`, open: async (): Promise<Arm> => {
      const m = await openModel(src, { backend, threads, ...opt });
      return { model: m, session: m.newSession({ maxContext: ctx }), toggles: {}, label: `weights ${spec}` };
    } })),
    ...(o["arm-model"] ?? []).map((p) => ({ label: p, open: async () => { const m = await openModel(p, { backend, threads }); return { model: m, session: m.newSession({ maxContext: ctx }), toggles: {}, label: p }; } })),
  ];
  for (const a of arms) {
    const cand = await a.open();
    try {
      const r = await runPerplexity({
        candidate: cand, reference: { logits: refFile, run: refArm }, tokens, ctx, score, phase,
        onProgress: (p) => { if (p.window === p.windows || p.window % 25 === 0) console.error(`  ${a.label}: ${p.arm} ${p.window}/${p.windows}`); },
      });
      results.push({ ...r, arm: a.label });
    } finally { if (cand.model !== base) cand.model.close(); }
  }
  const f = (x: number | null | undefined, d = 3) => (x === null || x === undefined ? "–" : x.toFixed(d));
  const e = (x: number | null | undefined) => (x === null || x === undefined ? "–" : x.toExponential(3));
  const ref = results.find((r) => r.reference)?.reference;
  const refPpl = results[0]?.candidate.kl?.reference_ppl ?? ref?.ppl ?? null;
  const md = [
    `# Perplexity: ${base.id} on ${name}`, "",
    `${tokens.length} tokens, ctx ${ctx}, score ${score} (${score === "all" ? "every token after the first, windows at stride ctx" : "second half of each ctx chunk"}); ` +
      `reference: ${refArm.label}${ref ? ` — perplexity ${f(ref.ppl)} ± ${f(ref.ppl_se)}` : refPpl !== null ? ` — perplexity ${f(refPpl)} (saved reference reused)` : ""}; ` +
      `KL over the reference's top-${results[0]?.candidate.kl?.top_k ?? 32} ids + the rest (a lower bound of the full KL).`, "",
    "| arm | perplexity ± SE | ln(PPL/PPL_ref) ± SE | KL mean ± SE (nats) | KL p99 | top-1 agreement | non-finite | s |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...results.map((r) => {
      const c = r.candidate, k = c.kl;
      return `| ${r.arm} | ${f(c.ppl)} ± ${f(c.ppl_se)} | ${e(k?.ln_ppl_ratio)} ± ${e(k?.ln_ppl_ratio_se)} | ${e(k?.mean)} ± ${e(k?.se)} | ${e(k?.p99)} | ${k?.top1_agreement == null ? "–" : (100 * k.top1_agreement).toFixed(3) + " %"} | ${c.nonfinite_rows} | ${c.seconds.toFixed(1)} |`;
    }), "",
  ].join("\n");
  writeFileSync(join(out, "perplexity.md"), md);
  writeFileSync(join(out, "perplexity.json"), JSON.stringify({ model: base.id, text: name, tokens: tokens.length, ctx, score, phase, reference: refArm.label, results }, null, 2));
  console.log(md);
  console.error(`wrote ${join(out, "perplexity.md")} and perplexity.json; reference logits ${refFile}`);
} finally {
  base.close();
}
