// engine/spec/phases.ts — where a speculative step's wall time goes: the loops (draft.ts, eagle.ts) time every engine
// call of a step under a phase name and count the calls; what no phase covers (tree building, acceptance, copies of
// features in JS) is the step's "host" phase. The names have one source: DRAFT_PHASES and EAGLE_PHASES below.
//
// The phases of an EAGLE step:
//   head_catchup     the head's prefill over the (token, feature) pairs accepted last step
//   head_expand      the head's tree prefills, one per level (their per-level times are in levelMs)
//   head_readback    the head's top-k proposals and its hidden-state capture (qw_session_read_topk, captures)
//   verify           the target's tree prefill pass(es) (several on the CPU: chunks of <= CPU_VERIFY_CHUNK rows)
//   verify_readback  the verify's argmax (or logits, sampling) and its feature capture
//   compact          the target's KV compaction and the head's truncate
//   host             the rest of the step (tree building, acceptance, JS copies)
// Of a draft-model step:
//   draft_prefill    the draft's catch-up (a prefill of the pending tokens, or its first decode)
//   draft_decode     its further decode steps (one per proposal after the first)
//   draft_readback   its logits (sampling only)
//   verify           the target's verify: a decode step of the chain's rows (verifyAs = chain) or prefill pass(es)
//   verify_readback  its argmax (prefill) or logits (sampling); none for a greedy chain (the step returns the tokens)
//   host as above; rollback = both sessions' truncate.
// Each engine call is timed by wall clock on the host: on CUDA a call returns once its results are on the host, so
// the device time of a pass lands in the phase of the call that waited for it (the pass itself, whose readout
// synchronizes).
import { z } from "zod";
import { statOf } from "../measure/profile.ts";

export const EAGLE_PHASES = ["head_catchup", "head_expand", "head_readback", "verify", "verify_readback", "compact", "host"] as const;
export const DRAFT_PHASES = ["draft_prefill", "draft_decode", "draft_readback", "verify", "verify_readback", "rollback", "host"] as const;
export type EaglePhase = (typeof EAGLE_PHASES)[number];
export type DraftPhase = (typeof DRAFT_PHASES)[number];

/** Per step: ms and engine calls of every phase (each array has one entry per step), and EAGLE's per-level ms. */
export interface PhaseTrace {
  ms: Record<string, number[]>;
  calls: Record<string, number[]>;
  /** EAGLE: per step, the head_expand ms of each tree level (level 2 first). */
  levelMs?: number[][];
}

export const MsStatSchema = z.object({ median: z.number(), mean: z.number(), min: z.number(), max: z.number() });
export type MsStat = z.infer<typeof MsStatSchema>;

/** One phase over all steps of a trace. */
export const PhaseSummarySchema = z.object({
  phase: z.string(),
  ms_per_step: MsStatSchema,
  calls_per_step: z.number().nonnegative(),   // engine calls of the phase per step (mean)
  share: z.number().min(0).max(1),            // its time / all steps' time
});
export type PhaseSummary = z.infer<typeof PhaseSummarySchema>;

/** The profile's median / min / max (engine/measure/profile.ts statOf) and the mean; zeros for no samples. */
export function msStat(xs: readonly number[]): MsStat {
  if (xs.length === 0) return { median: 0, mean: 0, min: 0, max: 0 };
  const { median, min, max } = statOf([...xs], "ms");
  return { median, mean: xs.reduce((a, b) => a + b, 0) / xs.length, min, max };
}

/**
 * The clock of one generation's steps: time(phase, f) runs f and adds its wall ms and one call to the phase;
 * endStep(totalMs) stores the step (host = totalMs - the timed phases) and starts the next.
 */
export class PhaseClock {
  readonly trace: PhaseTrace;
  private ms = new Map<string, number>();
  private calls = new Map<string, number>();
  private levels: number[] = [];

  constructor(private readonly names: readonly string[], levels = false) {
    this.trace = { ms: Object.fromEntries(names.map((n) => [n, []])), calls: Object.fromEntries(names.map((n) => [n, []])), ...(levels ? { levelMs: [] } : {}) };
  }

  time<T>(phase: string, f: () => T): T {
    const t0 = performance.now();
    try {
      return f();
    } finally {
      this.ms.set(phase, (this.ms.get(phase) ?? 0) + performance.now() - t0);
      this.calls.set(phase, (this.calls.get(phase) ?? 0) + 1);
    }
  }

  /** Marks the head_expand time since the last mark as one level (EAGLE). */
  level(ms: number): void {
    this.levels.push(ms);
  }

  /** Ms of the phase so far in this step. */
  sofar(phase: string): number {
    return this.ms.get(phase) ?? 0;
  }

  endStep(totalMs: number): void {
    let timed = 0;
    for (const n of this.names) if (n !== "host") timed += this.ms.get(n) ?? 0;
    this.ms.set("host", Math.max(0, totalMs - timed));
    for (const n of this.names) {
      this.trace.ms[n].push(this.ms.get(n) ?? 0);
      this.trace.calls[n].push(n === "host" ? 0 : this.calls.get(n) ?? 0);
    }
    this.trace.levelMs?.push(this.levels);
    this.ms = new Map();
    this.calls = new Map();
    this.levels = [];
  }
}

/** Concatenates the steps of several generations' phase traces (the phases of the first). */
export function mergePhases(ts: PhaseTrace[]): PhaseTrace {
  const names = Object.keys(ts[0].ms);
  return {
    ms: Object.fromEntries(names.map((n) => [n, ts.flatMap((t) => t.ms[n] ?? [])])),
    calls: Object.fromEntries(names.map((n) => [n, ts.flatMap((t) => t.calls[n] ?? [])])),
    ...(ts.every((t) => t.levelMs) ? { levelMs: ts.flatMap((t) => t.levelMs ?? []) } : {}),
  };
}

/** Every phase's per-step statistics, in the trace's order, and EAGLE's per-level head_expand ms. */
export function summarizePhases(p: PhaseTrace): { phases: PhaseSummary[]; levels?: MsStat[] } {
  const names = Object.keys(p.ms);
  const total = names.reduce((a, n) => a + p.ms[n].reduce((x, y) => x + y, 0), 0);
  const phases = names.map((n) => {
    const ms = p.ms[n], calls = p.calls[n] ?? [];
    const sum = ms.reduce((a, b) => a + b, 0);
    return { phase: n, ms_per_step: msStat(ms), calls_per_step: calls.length ? calls.reduce((a, b) => a + b, 0) / calls.length : 0, share: total > 0 ? sum / total : 0 };
  });
  if (!p.levelMs) return { phases };
  const depth = Math.max(0, ...p.levelMs.map((l) => l.length));
  const levels = Array.from({ length: depth }, (_, i) => msStat(p.levelMs!.filter((l) => l.length > i).map((l) => l[i])));
  return { phases, levels };
}
