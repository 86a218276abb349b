// Merging measured passes (repetitions) of one configuration into one profile. The headline numbers become the
// median over the passes, with every pass's value kept in summary.stats (engine/measure/stats.ts reads them back);
// op records and token events of every measured pass are kept (step ids renumbered, kernel names re-indexed)
// so per-step spreads cover all repetitions. Used by recordRun (web runs: warm-up + N passes) and by the
// interleaved ablation sweep (one pass per arm per round, merged per arm at the end). The fidelity sum check
// stays the first pass's.
import { Profile, type OpColumns } from "./profile.ts";
import { appendCounters, emptyCounterColumns } from "./counters.ts";
import { quantile, summaryStat, SUMMARY_METRICS } from "./stats.ts";
import { DEFAULT_MAX_CONTENTION } from "./bench-core.ts";
import type { Capture } from "../api.ts";

/** One measured pass over the prompt set: its headline values (the samples of summary.stats). */
export interface PassMeasure {
  ttft_ms?: number;          // median TTFT over the prompts
  tpot_ms?: number;          // median TPOT over the decode steps
  prefill_tok_s?: number;
  decode_tok_s?: number;
  tpots: number[];           // every decode step (pooled for the p90)
  others: number | null;     // share of the machine's CPU other processes used meanwhile (null: unknown)
  reruns?: number;           // contended passes re-run before this one was kept
}

export interface RecordResult {
  profile: Profile;
  cancelled: boolean;
  captures: Capture[][];     // per prompt (only with keepCaptures), first measured pass
  tokens: number[][];        // generated tokens per prompt, first measured pass
  passes: PassMeasure[];     // one per measured pass
}

const COLS = ["step", "phase", "layer", "op", "kernel", "t_start_ns", "t_end_ns", "flops", "bytes", "n_tokens"] as const;

function mergeOps(profiles: Profile[]): { ops?: OpColumns; kernels: string[] } {
  const kernels: string[] = [];
  const withOps = profiles.filter((p) => p.ops?.step.length);
  if (!withOps.length) return { kernels: profiles[0]?.kernels ?? [] };
  const out = Object.fromEntries(COLS.map((c) => [c, [] as number[]])) as unknown as OpColumns;
  const overlap = withOps.some((p) => p.ops!.overlap_ns); // optional column (kernels mode): kept when any pass has it
  if (overlap) out.overlap_ns = [];
  const rank = withOps.some((p) => p.ops!.rank); // optional column (tensor parallelism): kept when any pass has it
  if (rank) out.rank = [];
  const counters = withOps.some((p) => p.ops!.counters); // profiling mode counters: kept when any pass has them
  if (counters) out.counters = emptyCounterColumns();
  let stepBase = 0;
  for (const p of withOps) {
    const o = p.ops!;
    const kmap = p.kernels.map((k) => { let i = kernels.indexOf(k); if (i < 0) i = kernels.push(k) - 1; return i; });
    let maxStep = -1;
    if (counters) appendCounters(out.counters!, o.counters, 0, o.step.length);
    for (let i = 0; i < o.step.length; i++) {
      for (const c of COLS) (out[c] as number[]).push(o[c][i]);
      if (overlap) out.overlap_ns!.push(o.overlap_ns?.[i] ?? 0);
      if (rank) out.rank!.push(o.rank?.[i] ?? 0);
      out.step[out.step.length - 1] = o.step[i] + stepBase;
      out.kernel[out.kernel.length - 1] = kmap[o.kernel[i]] ?? 0;
      if (o.step[i] > maxStep) maxStep = o.step[i];
    }
    stepBase += maxStep + 1;
  }
  return { ops: out, kernels };
}

/**
 * One result from several measured passes of the same spec (in order). The first pass gives the manifest,
 * texts, token lists and captures; the summary's headline values are medians over the passes; TPOT p90 / min /
 * max are over every decode step of every pass.
 */
export function mergeResults(results: RecordResult[], o: { warmup: number }): RecordResult {
  if (!results.length) throw new Error("mergeResults: no pass to merge");
  const first = results[0];
  const passes: PassMeasure[] = results.flatMap((r) => r.passes);
  const profiles = results.map((r) => r.profile);
  const cancelled = results.some((r) => r.cancelled);
  const base = first.profile;
  const stats: Record<string, ReturnType<typeof summaryStat>> = {};
  for (const { key } of SUMMARY_METRICS) {
    const v = passes.map((p) => p[key]).filter((x): x is number => x !== undefined && Number.isFinite(x));
    if (v.length) stats[key] = summaryStat(v);
  }
  const steps = passes.flatMap((p) => p.tpots).sort((a, b) => a - b);
  const { ops, kernels } = mergeOps(profiles);
  const others = passes.map((p) => p.others);
  const contended = passes.filter((p) => p.others !== null && p.others > DEFAULT_MAX_CONTENTION).length;
  const notes = [...(base.notes ?? [])];
  notes.push(`${passes.length} measured repetition(s)${o.warmup ? ` after ${o.warmup} unrecorded warm-up pass(es)` : " (no warm-up)"}: summary values are medians over the repetitions (spread in summary.stats); op records and token events of every repetition`);
  if (contended) notes.push(`${contended} of ${passes.length} repetition(s) ran while other processes used > ${100 * DEFAULT_MAX_CONTENTION} % of the machine's CPU (summary.others_cpu_share)`);
  const summary: Profile["summary"] = {
    ...base.summary,
    ...(stats.ttft_ms ? { ttft_ms: stats.ttft_ms.median } : {}),
    ...(steps.length ? { tpot_ms: { median: stats.tpot_ms?.median ?? quantile(steps, 0.5), p90: quantile(steps, 0.9), min: steps[0], max: steps[steps.length - 1] } } : {}),
    ...(stats.prefill_tok_s ? { prefill_tok_s: stats.prefill_tok_s.median } : {}),
    ...(stats.decode_tok_s ? { decode_tok_s: stats.decode_tok_s.median } : {}),
    wall_ms: profiles.reduce((a, p) => a + Number(p.summary.wall_ms ?? 0), 0),
    repeats: passes.length,
    warmup: o.warmup,
    stats,
    others_cpu_share: others,
  };
  const profile: Profile = {
    ...base,
    summary,
    kernels,
    ...(ops ? { ops } : {}),
    tokens: profiles.flatMap((p) => p.tokens ?? []),
    notes,
  };
  if (!ops) delete profile.ops;
  return { profile: Profile.parse(profile), cancelled, captures: first.captures, tokens: first.tokens, passes };
}
