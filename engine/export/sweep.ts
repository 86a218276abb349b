// Sweep machinery for ablations (notebooks/ablate.ts): arms are toggle assignments, built from the engine's
// toggle registry (one factor at a time, or a cartesian product of named toggles), run over a prompt set with
// warm-up and repetitions, each arm ending as one Profile of kind "ablation" with llama-bench rows whose
// tokens/s keep every repetition. The machinery does not know which toggles exist: it reads the registry.
import type { EngineModel, EngineSession, ToggleDef } from "../api.ts";
import { statOf, type Profile, type ToggleValues } from "../profile.ts";
import { effectiveDefault, recordRun, type PromptSpec, type SamplingSpec } from "./record.ts";
import { toggleValueProblem } from "../toggles.ts";

export interface Arm { label: string; toggles: ToggleValues; profiling: boolean }

/** Values of a toggle that the backend implements. */
export function implementedValues(def: ToggleDef, backend: "cpu" | "cuda"): string[] {
  return def.values.filter((v) => (def.backends[backend] ?? def.values).includes(v));
}

export function armLabel(t: ToggleValues, profiling = true): string {
  const parts = Object.entries(t).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("/") : v}`);
  return (parts.join(",") || "baseline") + (profiling ? "" : ",profiling=off");
}

/**
 * Arms for a sweep. `axes` maps toggle id → values ("*" = every implemented value). With no axes, every toggle
 * with more than one implemented value on this backend is swept one factor at a time against the baseline.
 * cartesian=true takes the product of the axes instead. Unknown toggles or unimplemented values throw.
 */
export function buildArms(reg: ToggleDef[], backend: "cpu" | "cuda", axes: Record<string, string[]> = {},
  o: { cartesian?: boolean; profiling?: boolean[] } = {}): Arm[] {
  const profiling = o.profiling?.length ? o.profiling : [true];
  const defs = new Map(reg.map((d) => [d.id, d]));
  let axisList: [string, string[]][];
  if (Object.keys(axes).length) {
    axisList = Object.entries(axes).map(([id, vals]) => {
      const d = defs.get(id);
      if (!d) throw new Error(`unknown toggle "${id}" (registry: ${reg.map((x) => x.id).join(", ")})`);
      const impl = implementedValues(d, backend);
      const v = vals.includes("*") ? impl : vals;
      for (const x of v) { const why = toggleValueProblem(d, x, backend); if (why) throw new Error(why); }
      return [id, v];
    });
  } else {
    axisList = reg.map((d) => [d.id, implementedValues(d, backend)] as [string, string[]]).filter(([, v]) => v.length > 1);
  }
  const base = (id: string) => effectiveDefault(defs.get(id)!, backend);
  const assignments: ToggleValues[] = [];
  if (o.cartesian) {
    let acc: ToggleValues[] = [{}];
    for (const [id, vals] of axisList) acc = acc.flatMap((a) => vals.map((v) => (v === base(id) ? { ...a } : { ...a, [id]: v })));
    assignments.push(...acc);
  } else {
    assignments.push({});
    for (const [id, vals] of axisList) for (const v of vals) if (v !== base(id)) assignments.push({ [id]: v });
  }
  const seen = new Set<string>();
  const arms: Arm[] = [];
  for (const p of profiling) for (const t of assignments) {
    const label = armLabel(t, p);
    if (seen.has(label)) continue;
    seen.add(label);
    arms.push({ label, toggles: t, profiling: p });
  }
  return arms;
}

export interface ArmOptions {
  prompts: PromptSpec[];
  maxTokens: number;
  sampling: SamplingSpec;
  repeats: number;          // measured repetitions (≥ 1)
  warmup: boolean;          // one unmeasured pass first
  id: string;
  command?: string;
  onProgress?: (msg: string) => void;
}

/** Runs one arm: warm-up, `repeats` measured passes over the prompt set; the last pass's op records are kept. */
export async function runArm(model: EngineModel, session: EngineSession, arm: Arm, o: ArmOptions): Promise<Profile> {
  const spec = (id: string) => ({
    id, prompts: o.prompts, maxTokens: o.maxTokens, sampling: o.sampling, toggles: arm.toggles,
    profiling: arm.profiling, capture: [], label: arm.label, command: o.command,
  });
  if (o.warmup) { o.onProgress?.(`${arm.label}: warm-up`); await recordRun(model, session, spec(`${o.id}-warmup`), { yieldToLoop: false }); }
  const pp: number[] = [], tg: number[] = [], ttft: number[] = [];
  let last: Profile | null = null;
  const tokens: number[][] = [];
  for (let r = 0; r < Math.max(1, o.repeats); r++) {
    o.onProgress?.(`${arm.label}: repetition ${r + 1}/${o.repeats}`);
    const res = await recordRun(model, session, spec(o.id), { yieldToLoop: false });
    last = res.profile;
    if (r === 0) tokens.push(...res.tokens);
    const s = res.profile.summary;
    if (s.prefill_tok_s) pp.push(s.prefill_tok_s);
    if (s.decode_tok_s) tg.push(s.decode_tok_s);
    if (s.ttft_ms !== undefined) ttft.push(s.ttft_ms);
  }
  const p = last!;
  const nPrompt = Math.round((p.summary.prefill_tokens ?? 0) / Math.max(1, o.prompts.length));
  const nGen = Math.round((p.summary.decode_tokens ?? 0) / Math.max(1, o.prompts.length));
  const weights = Object.entries(model.weightTypes).sort((a, b) => b[1] - a[1])[0]?.[0] ?? "?";
  const row = (test: string, rates: number[], np: number, ng: number) => ({
    test, model: model.id, weights, backend: model.backend, batch: 1, n_prompt: np, n_gen: ng,
    tokens_per_s: statOf(rates, "tok/s"), system: "qwen-workbench", extra: { arm: arm.label, profiling: arm.profiling },
  });
  return {
    ...p,
    kind: "ablation",
    summary: { ...p.summary, ttft_ms_samples: ttft, repeats: o.repeats, first_tokens: tokens },
    bench: [
      ...(pp.length ? [row(`pp${nPrompt}`, pp, nPrompt, 0)] : []),
      ...(tg.length ? [row(`tg${nGen}`, tg, 0, nGen)] : []),
    ],
    notes: [...(p.notes ?? []), `${o.repeats} measured repetition(s) over ${o.prompts.length} prompt(s)${o.warmup ? " after one warm-up pass" : ""}; op records from the last repetition`],
  };
}
