// engine/cli/perplexity.ts — `npm run cli -- perplexity`: perplexity over a text (± its standard error) and
// KL divergence / top-1 agreement against a reference run (engine/measure/perplexity-run.ts does the work).
import { readFileSync, statSync } from "node:fs";
import { parseArgs } from "node:util";
import type { BackendChoice, EngineModel } from "../api.ts";
import { openModel } from "../index.ts";
import { parseToggleArg, validateToggleSettings } from "../toggles.ts";
import { formatPerplexity, runPerplexity, textTokens, type Arm, type TextSource } from "../measure/perplexity-run.ts";
import type { PerplexityPhase, ScoreMode } from "../measure/perplexity.ts";
import { parseWeightsArg, weightsLabel, type WeightsOption } from "../formats/requant.ts";

export const PERPLEXITY_HELP = `  perplexity [model]             perplexity over a text, KL divergence / top-1 agreement against a reference
      --brown | --text FILE       the embedded model's Brown validation split (default) or a UTF-8 text file
      --ctx N                     window length in tokens (default 512)
      --score all|half            all: every token after the first, windows at stride ctx (default);
                                  half: only the second half of each ctx chunk (llama-perplexity)
      --phase prefill|decode      prefill: rows from prefill calls (default); decode: one decode step per scored
                                  token (arms that act only in decode, e.g. CUDA actQuant=int8; slower)
      --max-tokens N              only the first N tokens of the text
      --toggle id=value,...       the measured run's toggles
      --weights F[,L=F...]        the measured run's weights, requantized at load (as for generate)
      --reference-weights F[,...] reference: the same model (or --reference-model) loaded with these weights
      --reference-model PATH      reference: another model of the same vocab (e.g. the bf16 checkpoint)
      --reference-toggle id=v,... reference: this toggle set (on --reference-model, or on the same model)
      --reference-logits FILE     where the reference's logits are saved, reused while model, toggles,
                                  text, ctx and scoring match (rewritten otherwise); alone: read a saved one
      --save-logits FILE          save this run's logits as a reference for later runs (--kl-divergence-base)
      --top-k K                   log-probs kept per token in a saved reference (default 32)
      --backend --threads         as for generate;  --json  print the result as JSON
`;

class PerplexityUsage extends Error {}
const fail = (m: string): never => { throw new PerplexityUsage(m); };

function int(v: unknown, name: string, min: number): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (typeof v !== "string" || v.trim() === "" || !Number.isInteger(x) || x < min) fail(`--${name} expects an integer >= ${min}, got '${String(v)}'`);
  return x;
}

function toggles(m: EngineModel, arg: string | undefined): Record<string, string | string[]> {
  if (!arg) return {};
  return validateToggleSettings(m.toggleRegistry(), parseToggleArg(arg), { backend: m.backend, nLayers: m.config.num_hidden_layers });
}

export async function cmdPerplexity(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s), log: (s: string) => void = (s) => process.stderr.write(s)): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv, allowPositionals: true, strict: true, options: {
        model: { type: "string" }, brown: { type: "boolean" }, text: { type: "string" }, ctx: { type: "string" }, score: { type: "string" }, phase: { type: "string" },
        "max-tokens": { type: "string" }, toggle: { type: "string" }, toggles: { type: "string" },
        "reference-model": { type: "string" }, "reference-toggle": { type: "string" }, "reference-toggles": { type: "string" },
        "reference-logits": { type: "string" }, "save-logits": { type: "string" }, "top-k": { type: "string" },
        backend: { type: "string" }, threads: { type: "string" }, json: { type: "boolean" },
        weights: { type: "string" }, "reference-weights": { type: "string" },
      },
    });
  } catch (e) {
    fail(`perplexity: ${(e as Error).message.replace(/\. To specify a positional.*$/s, "")} (see \`npm run cli -- help\`)`);
  }
  const o = parsed!.values;
  if (parsed!.positionals.length > 1) fail(`perplexity: one model at most, got ${parsed!.positionals.join(" ")}`);
  const source = (o.model as string | undefined) ?? parsed!.positionals[0] ?? "default";
  if (o.brown && o.text) fail("perplexity: give --brown or --text FILE, not both");
  let text: TextSource = { kind: "brown" };
  if (o.text) {
    const f = o.text as string;
    let st;
    try { st = statSync(f); } catch { fail(`perplexity: --text '${f}' does not exist`); }
    if (!st!.isFile()) fail(`perplexity: --text '${f}' is not a regular file`);
    text = { kind: "text", text: readFileSync(f, "utf8"), name: f };
  }
  const ctx = int(o.ctx, "ctx", 2) ?? 512;
  const score = ((o.score as string | undefined) ?? "all") as ScoreMode;
  if (score !== "all" && score !== "half") fail(`perplexity: --score must be all or half, got '${String(o.score)}'`);
  const phase = ((o.phase as string | undefined) ?? "prefill") as PerplexityPhase;
  if (phase !== "prefill" && phase !== "decode") fail(`perplexity: --phase must be prefill or decode, got '${String(o.phase)}'`);
  const maxTokens = int(o["max-tokens"], "max-tokens", 2);
  const topK = int(o["top-k"], "top-k", 1);
  if (topK !== undefined && topK > 1024) fail("perplexity: --top-k must be <= 1024");
  const threads = int(o.threads, "threads", 0);
  const backend = ((o.backend as string | undefined) ?? "auto") as BackendChoice;
  if (!["auto", "cpu", "cuda"].includes(backend)) fail(`perplexity: --backend must be auto, cpu or cuda, got '${backend}'`);
  const refTogArg = (o["reference-toggle"] ?? o["reference-toggles"]) as string | undefined;
  const refModelArg = o["reference-model"] as string | undefined;
  const candTogArg = (o.toggle ?? o.toggles) as string | undefined;
  const weightsArg = (flag: "weights" | "reference-weights"): WeightsOption | undefined => {
    const v = o[flag] as string | undefined;
    if (v === undefined) return undefined;
    try { return parseWeightsArg(v); } catch (e) { return fail(`perplexity: ${(e as Error).message.replace("--weights", `--${flag}`)}`); }
  };
  const weights = weightsArg("weights"), refWeights = weightsArg("reference-weights");

  const models: EngineModel[] = [];
  try {
    const m = await openModel(source, { backend, threads, ...weights });
    models.push(m);
    log(`${m.id}: ${m.backend} (${m.device.name}), vocab ${m.config.vocab_size}\n`);
    const { tokens, name } = textTokens(m, text, maxTokens);
    const session = m.newSession({ maxContext: ctx });
    const wl = (w: WeightsOption | undefined) => (w ? `weights=${weightsLabel(w)}` : undefined);
    const cand: Arm = { model: m, session, toggles: toggles(m, candTogArg), label: [wl(weights), candTogArg].filter(Boolean).join(" ") || "defaults" };
    let run: Arm | undefined;
    if (refModelArg || refTogArg || refWeights) {
      const rm = refModelArg || refWeights ? await openModel(refModelArg ?? source, { backend, threads, ...refWeights }) : m;
      if (rm !== m) models.push(rm);
      const rs = rm === m ? session : rm.newSession({ maxContext: ctx });
      run = { model: rm, session: rs, toggles: toggles(rm, refTogArg), label: [refModelArg, wl(refWeights), refTogArg].filter(Boolean).join(" ") || "defaults" };
    }
    const r = await runPerplexity({
      candidate: cand, tokens, ctx, score, phase, topK,
      reference: run || o["reference-logits"] ? { logits: o["reference-logits"] as string | undefined, run } : undefined,
      saveLogits: o["save-logits"] as string | undefined,
      onProgress: (p) => { if (p.window === p.windows || p.window % 20 === 0) log(`  ${p.arm} window ${p.window}/${p.windows}${p.ppl ? `, running ppl ${p.ppl.toFixed(2)}` : ""}\n`); },
    });
    out(o.json ? JSON.stringify({ text: name, ...r }, null, 2) + "\n" : formatPerplexity(r, name) + "\n");
  } finally {
    for (const m of models) m.close();
  }
}
