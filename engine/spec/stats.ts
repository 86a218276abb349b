// engine/spec/stats.ts — what a speculative generation records per verify step, and its summary (the
// `speculative` block of a profile's summary and of bench rows' extra). Validated with zod where it is read back.
import { z } from "zod";
import { mergePhases, MsStatSchema, msStat, PhaseSummarySchema, summarizePhases, type PhaseTrace } from "./phases.ts";

/** Per-step trace of one speculative generation (kept by the loop, summarized by summarizeSpec). */
export interface SpecTrace {
  k: number;
  /** Draft tokens proposed in each verify step (k, or fewer near max tokens / max context). */
  proposed: number[];
  /** Draft tokens accepted in each verify step (the target adds one more token of its own every step). */
  accepted: number[];
  /** Wall ms per step spent in the draft model (its prefill / decode calls and reading its logits). */
  draftMs: number[];
  /** Wall ms per step of the target's verify pass (prefill of 1 + proposed tokens, all logits read, accept/reject). */
  verifyMs: number[];
  /** EAGLE: draft tree nodes verified in each step (proposed is then the depth of each step's tree). */
  nodes?: number[];
  /** Where each step's time went, by phase (engine/spec/phases.ts). */
  phases?: PhaseTrace;
}

export const SpecSummary = z.object({
  method: z.enum(["draft", "eagle"]),
  draft_model: z.string(),                       // the draft model, or the EAGLE head's directory
  tree: z.object({ depth: z.number().int(), top_k: z.number().int(), budget: z.number().int() }).optional(), // eagle
  nodes_per_step: z.number().optional(),          // eagle: draft tree nodes verified per step (mean)
  k: z.number().int(),
  steps: z.number().int(),                       // verify passes of the target
  proposed: z.number().int(),                    // draft tokens proposed in all
  accepted: z.number().int(),                    // of them accepted
  acceptance_rate: z.number(),                   // accepted / proposed
  mean_accepted: z.number(),                     // draft tokens accepted per verify step
  tokens_per_step: z.number(),                   // tokens emitted per verify step = mean_accepted + 1 (the fixture's "tokens per target pass")
  // index i = draft position i+1: of the steps that proposed position i+1, the share where it was accepted
  // (unconditional), and of those that reached it (every earlier position accepted), the share accepted (conditional)
  acceptance_by_position: z.array(z.number()),
  conditional_acceptance_by_position: z.array(z.number()),
  accepted_length_histogram: z.array(z.number().int()), // [a] = steps that accepted exactly a draft tokens, a = 0..k
  draft_ms_per_step: MsStatSchema,
  verify_ms_per_step: MsStatSchema,
  draft_share: z.number(),                       // draft time / (draft + verify)
  // where a step's time goes (engine/spec/phases.ts DRAFT_PHASES / EAGLE_PHASES), and eagle's head_expand per tree level
  phases: z.array(PhaseSummarySchema).optional(),
  expand_ms_by_level: z.array(MsStatSchema).optional(),
  accepted_per_step: z.array(z.number().int()).optional(), // the raw trace (profiles of single runs)
  draft_ms: z.array(z.number()).optional(),
  verify_ms: z.array(z.number()).optional(),
});
export type SpecSummary = z.infer<typeof SpecSummary>;

/** Merges traces of several generations (e.g. the prompts of a bench) into one. */
export function mergeTraces(ts: SpecTrace[]): SpecTrace {
  if (ts.length === 0) throw new Error("mergeTraces: no traces");
  return {
    k: ts[0].k,
    proposed: ts.flatMap((t) => t.proposed), accepted: ts.flatMap((t) => t.accepted),
    draftMs: ts.flatMap((t) => t.draftMs), verifyMs: ts.flatMap((t) => t.verifyMs),
    ...(ts.every((t) => t.nodes) ? { nodes: ts.flatMap((t) => t.nodes ?? []) } : {}),
    ...(ts.every((t) => t.phases) ? { phases: mergePhases(ts.map((t) => t.phases!)) } : {}),
  };
}

/**
 * The summary of a trace; `raw` keeps the per-step arrays too. For an EAGLE trace (tree given) "position i" is
 * tree depth i: acceptance_by_position[i] = share of steps whose tree reached depth i+1 that accepted a path of
 * length > i.
 */
export function summarizeSpec(t: SpecTrace, draftModel: string, raw = false, tree?: { depth: number; topK: number; budget: number }): SpecSummary {
  const k = t.k;
  const byPos = new Array<number>(k).fill(0), reached = new Array<number>(k).fill(0), offered = new Array<number>(k).fill(0);
  const hist = new Array<number>(k + 1).fill(0);
  let proposed = 0, accepted = 0;
  for (let s = 0; s < t.proposed.length; s++) {
    const n = t.proposed[s], a = t.accepted[s];
    proposed += n;
    accepted += a;
    hist[a]++;
    for (let i = 0; i < n; i++) {
      offered[i]++;
      if (i <= a) reached[i]++;
      if (i < a) byPos[i]++;
    }
  }
  const draft = t.draftMs.reduce((a, b) => a + b, 0), verify = t.verifyMs.reduce((a, b) => a + b, 0);
  const steps = t.proposed.length;
  const ph = t.phases && steps ? summarizePhases(t.phases) : undefined;
  return {
    method: tree ? "eagle" : "draft", draft_model: draftModel, k, steps, proposed, accepted,
    ...(tree ? { tree: { depth: tree.depth, top_k: tree.topK, budget: tree.budget } } : {}),
    ...(t.nodes && steps ? { nodes_per_step: t.nodes.reduce((a, b) => a + b, 0) / steps } : {}),
    acceptance_rate: proposed ? accepted / proposed : 0,
    mean_accepted: steps ? accepted / steps : 0,
    tokens_per_step: steps ? (accepted + steps) / steps : 0,
    acceptance_by_position: byPos.map((x, i) => (offered[i] ? x / offered[i] : 0)),
    conditional_acceptance_by_position: byPos.map((x, i) => (reached[i] ? x / reached[i] : 0)),
    accepted_length_histogram: hist,
    draft_ms_per_step: msStat(t.draftMs), verify_ms_per_step: msStat(t.verifyMs),
    draft_share: draft + verify > 0 ? draft / (draft + verify) : 0,
    ...(ph ? { phases: ph.phases, ...(ph.levels ? { expand_ms_by_level: ph.levels } : {}) } : {}),
    ...(raw ? { accepted_per_step: [...t.accepted], draft_ms: [...t.draftMs], verify_ms: [...t.verifyMs] } : {}),
  };
}
