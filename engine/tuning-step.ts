// engine/tuning-step.ts — the step timers of tile's end-to-end check (engine/tuning.ts checkSteps): a repetition is
// the model's own decode step (GEMV shapes) or prefill of `tokens` tokens (GEMM shapes) with a tile table loaded,
// on a session of its own with tile = auto (the table is what the launches read; setting it drops the captured
// decode graph, so each repetition first runs one untimed step that captures it again).
import type { EngineSession } from "./api.ts";
import type { StepTimer } from "./tuning.ts";

export interface StepTimerOptions {
  /** the wall time one repetition aims at (ms; several steps or prefills per repetition) */
  repMs?: number;
  /** the prefill length of the GEMM check (the tuner's gemmTokens) */
  tokens: number;
  /** the most decode steps per repetition (bounded by the session's max context too) */
  maxSteps?: number;
}

const PROMPT = 16;  // tokens prefilled before the timed decode steps: a short context, as tg128 has

/** A session the timers can use: one sequence, room for the prompt, the steps and the prefill check. */
export function stepSessionDims(o: StepTimerOptions): { maxBatch: number; maxContext: number; maxPrefill: number } {
  const steps = o.maxSteps ?? 256;
  return { maxBatch: 1, maxContext: Math.max(PROMPT + steps + 2, o.tokens), maxPrefill: Math.max(PROMPT, o.tokens) };
}

/** Timers over `s` (profiling off; tile = auto set by the caller, its table replaced at each call). */
export function stepTimers(s: EngineSession, o: StepTimerOptions): { decode: StepTimer; prefill: StepTimer } {
  if (!s.tiles) throw new Error("tile step check: this session has no tile table (its backend cannot tune)");
  const native = s.tiles();
  const repNs = (o.repMs ?? 40) * 1e6;
  const maxSteps = Math.max(4, Math.min(o.maxSteps ?? 256, s.maxContext - PROMPT - 2));
  const prompt = Array.from({ length: PROMPT }, (_, i) => 1 + i);
  const tokens = Array.from({ length: o.tokens }, (_, i) => 1 + (i % 64));
  s.setProfiling(false);
  let steps = 0, prefills = 0;  // per repetition, sized by the first call's timing

  const load = (table: Record<string, string>) => native.tileSet(JSON.stringify(table));
  const decodeOnce = (n: number) => {
    s.reset(0);
    s.prefill(0, prompt);
    const t0 = Bun.nanoseconds();
    if (s.decodeSteps) s.decodeSteps([0], [1], n);
    else for (let i = 0; i < n; ++i) s.decode([0], [1]);
    return Bun.nanoseconds() - t0;
  };
  const decode: StepTimer = (table) => {
    load(table);
    decodeOnce(2);  // captures the decode graph again (the table change dropped it)
    if (steps === 0) steps = Math.max(4, Math.min(maxSteps, Math.round(repNs / Math.max(1, decodeOnce(8) / 8))));
    return decodeOnce(steps) / steps;
  };
  const prefillOnce = () => {
    s.reset(0);
    const t0 = Bun.nanoseconds();
    s.prefill(0, tokens);
    return Bun.nanoseconds() - t0;
  };
  const prefill: StepTimer = (table) => {
    load(table);
    prefillOnce();
    if (prefills === 0) prefills = Math.max(1, Math.min(64, Math.round(repNs / Math.max(1, prefillOnce()))));
    let ns = 0;
    for (let i = 0; i < prefills; ++i) ns += prefillOnce();
    return ns / prefills;
  };
  return { decode, prefill };
}
