// engine/measure/perplexity-run.ts — one perplexity measurement as the CLI, the notebook and the web run it: the text
// (Brown validation split, a text, or token ids) → tokens; an optional reference run (another toggle set on
// the same model, or another model of the same vocab) whose top-K log-probs are saved once to a file and
// reused while its model, toggles, text, ctx and scoring match; then the candidate run scored against it.
import { existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { EngineModel, EngineSession } from "../api.ts";
import type { ToggleValues } from "./profile.ts";
import { applyToggles } from "./record.ts";
import { brownTokens } from "../text/brown.ts";
import { outputFormat } from "../formats/requant.ts";
import { measurePerplexity, ReferenceReader, type PerplexityPhase, type PerplexityResult, type ScoreMode } from "./perplexity.ts";

export type TextSource = { kind: "brown" } | { kind: "text"; text: string; name?: string } | { kind: "tokens"; tokens: number[]; name?: string };

/** The end-of-text id documents are separated with: <|endoftext|> when the tokenizer has it, else the first EOS. */
export function endOfTextId(model: EngineModel): number {
  const inner = (model.tokenizer as { inner?: { specialId(s: string): number | undefined } }).inner;
  const id = inner?.specialId("<|endoftext|>");
  if (id !== undefined) return id;
  if (model.tokenizer.eosIds.length) return model.tokenizer.eosIds[0];
  throw new Error("perplexity: the tokenizer has neither <|endoftext|> nor an EOS token to separate documents");
}

export function textTokens(model: EngineModel, src: TextSource, maxTokens?: number): { tokens: number[]; name: string } {
  let tokens: number[], name: string;
  if (src.kind === "brown") {
    tokens = brownTokens((t) => model.tokenizer.encode(t), endOfTextId(model));
    name = "Brown corpus validation split (25 documents, every 20th)";
  } else if (src.kind === "text") {
    tokens = model.tokenizer.encode(src.text);
    name = src.name ?? "text";
  } else {
    const V = model.config.vocab_size;
    const bad = src.tokens.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= V);
    if (bad >= 0) throw new Error(`perplexity: token ${String(src.tokens[bad])} at index ${bad} is not a valid id (0..${V - 1})`);
    tokens = [...src.tokens];
    name = src.name ?? "tokens";
  }
  if (maxTokens !== undefined && tokens.length > maxTokens) tokens = tokens.slice(0, maxTokens);
  return { tokens, name };
}

export interface Arm { model: EngineModel; session: EngineSession; toggles: ToggleValues; label: string }

export interface PerplexityRunSpec {
  candidate: Arm;
  tokens: number[];
  ctx: number;
  score?: ScoreMode;
  /** prefill (default) | decode: how each arm computes its rows (perplexity.ts header); a saved reference is reused
   *  only when made in the same phase. */
  phase?: PerplexityPhase;
  /**
   * A reference: `run` (another toggle set and/or model) is measured and saved to `logits` (a temporary file
   * when absent) unless `logits` already holds the same reference; `logits` alone reads a saved reference.
   */
  reference?: { logits?: string; run?: Arm };
  /** Save the candidate's top-K log-probs as a reference for later runs. */
  saveLogits?: string;
  topK?: number;
  signal?: AbortSignal;
  onProgress?: (p: { arm: "reference" | "candidate"; window: number; windows: number; ppl: number | null }) => void;
}

export interface PerplexityRunResult {
  candidate: PerplexityResult & { label: string; model: string; toggles: ToggleValues };
  /** The reference run, when it was measured now (absent when a saved reference was reused or read). */
  reference?: PerplexityResult & { label: string; model: string; toggles: ToggleValues };
  reference_file?: { path: string; reused: boolean; kept: boolean };
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** What a saved reference records of its model: id, hash, and the lm_head's format when requantized (no toggle has it). */
function modelKey(m: EngineModel): { id: string; hash: string; weights_output?: string } {
  const out = outputFormat(m.weights);
  return { id: m.id, hash: m.hash, ...(out !== "as-loaded" ? { weights_output: out } : {}) };
}

function prepare(arm: Arm): ToggleValues {
  applyToggles(arm.model, arm.session, arm.toggles);
  return arm.session.toggles();
}

export async function runPerplexity(spec: PerplexityRunSpec): Promise<PerplexityRunResult> {
  const score = spec.score ?? "all";
  const phase = spec.phase ?? "prefill";
  const cand = spec.candidate;
  const vocab = cand.model.config.vocab_size;
  const out: Partial<PerplexityRunResult> = {};
  let reader: ReferenceReader | undefined;
  let tmp: string | undefined;
  try {
    const run = spec.reference?.run;
    if (run) {
      if (run.model.config.vocab_size !== vocab) {
        throw new Error(`the reference model's vocab (${run.model.config.vocab_size}) differs from the candidate's (${vocab}): KL needs the same vocabulary`);
      }
      const path = spec.reference?.logits ?? (tmp = join(tmpdir(), `qw-kl-ref-${process.pid}-${Date.now()}.qwkl`));
      const toggles = prepare(run);
      let reused = false;
      if (existsSync(path)) {
        // Reuse only a reference made by the same model and toggles on the same text, ctx and scoring.
        try {
          const r = new ReferenceReader(path);
          const h = r.header;
          const sameModel = h.model.hash === run.model.hash && (h.model.weights_output ?? "as-loaded") === outputFormat(run.model.weights);
          if (!r.mismatch(spec.tokens, spec.ctx, score, vocab) && (h.phase ?? "prefill") === phase && sameModel && same(h.toggles, toggles)) { reader = r; reused = true; }
          else r.close();
        } catch { /* unreadable: measure again and overwrite */ }
      }
      if (!reader) {
        const r = await measurePerplexity(run.session, spec.tokens, vocab, {
          ctx: spec.ctx, score, phase, signal: spec.signal,
          save: { path, topK: spec.topK, model: modelKey(run.model), toggles, label: run.label },
          onProgress: (p) => spec.onProgress?.({ arm: "reference", window: p.window, windows: p.windows, ppl: p.ppl }),
        });
        out.reference = { ...r, label: run.label, model: run.model.id, toggles };
        reader = new ReferenceReader(path);
      }
      out.reference_file = { path, reused, kept: !tmp };
    } else if (spec.reference?.logits) {
      reader = new ReferenceReader(spec.reference.logits);
      out.reference_file = { path: spec.reference.logits, reused: true, kept: true };
    }
    const toggles = prepare(cand);
    const r = await measurePerplexity(cand.session, spec.tokens, vocab, {
      ctx: spec.ctx, score, phase, reference: reader, signal: spec.signal,
      ...(spec.saveLogits ? { save: { path: spec.saveLogits, topK: spec.topK, model: modelKey(cand.model), toggles, label: cand.label } } : {}),
      onProgress: (p) => spec.onProgress?.({ arm: "candidate", window: p.window, windows: p.windows, ppl: p.ppl }),
    });
    out.candidate = { ...r, label: cand.label, model: cand.model.id, toggles };
    return out as PerplexityRunResult;
  } finally {
    reader?.close();
    if (tmp) rmSync(tmp, { force: true });
  }
}

/** A plain-text report of a run (CLI and notebook). */
export function formatPerplexity(r: PerplexityRunResult, textName: string): string {
  const c = r.candidate;
  const f = (x: number | null | undefined, d = 4) => (x === null || x === undefined ? "n/a" : x.toFixed(d));
  const e = (x: number | null | undefined) => (x === null || x === undefined ? "n/a" : x.toExponential(3));
  const lines = [
    `text: ${textName}: ${c.tokens} tokens; ctx ${c.ctx}, score ${c.score} (${c.score === "all" ? "every token after the first, windows at stride ctx" : "second half of each ctx chunk, as llama-perplexity"})${c.phase === "decode" ? ", phase decode (one decode step per scored token)" : ""}: ${c.windows} windows, ${c.scored} tokens scored`,
  ];
  const one = (x: typeof c, what: string) => {
    lines.push(`${what} [${x.label}] ${x.model}: perplexity ${f(x.ppl)} ± ${f(x.ppl_se)} (NLL ${f(x.nll_mean, 5)} ± ${f(x.nll_se, 5)}), ${x.seconds.toFixed(1)} s`);
    if (x.nonfinite_rows) lines.push(`  FINDING: ${x.nonfinite_rows} scored positions had non-finite logits (first at token ${x.first_nonfinite_token}); left out of the statistics`);
  };
  if (r.reference) one(r.reference, "reference");
  one(c, "candidate");
  if (r.reference_file) lines.push(`reference logits: ${r.reference_file.reused ? "reused" : "saved"} ${r.reference_file.kept ? r.reference_file.path : "(temporary file, removed)"}`);
  if (c.kl) {
    const k = c.kl;
    lines.push(`vs reference [${k.reference_label}] ${k.reference_model} (ppl ${f(k.reference_ppl)}), ${k.rows} positions, top-${k.top_k} coarse KL:`);
    lines.push(`  KL divergence mean ${e(k.mean)} ± ${e(k.se)} nats; median ${e(k.median)}, p90 ${e(k.p90)}, p99 ${e(k.p99)}, max ${e(k.max)}`);
    lines.push(`  top-1 agreement ${k.top1_agreement === null ? "n/a" : (100 * k.top1_agreement).toFixed(3)} ± ${k.top1_se === null ? "n/a" : (100 * k.top1_se).toFixed(3)} %`);
    lines.push(`  ln(PPL / PPL_ref) ${e(k.ln_ppl_ratio)} ± ${e(k.ln_ppl_ratio_se)}`);
  }
  if (c.saved) lines.push(`saved this run's logits (top-K) to ${c.saved}`);
  return lines.join("\n");
}
