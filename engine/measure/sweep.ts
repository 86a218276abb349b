// Sweep machinery for ablations (notebooks/ablate.ts): arms are toggle assignments, built from the engine's
// toggle registry (one factor at a time, or a cartesian product of named toggles), run over a prompt set with
// warm-up and >= 3 repetitions interleaved across arms (A B A B ...), each pass checked for contention, each arm
// ending as one Profile of kind "ablation" (median summary) with llama-bench rows whose tokens/s keep every
// repetition. The machinery does not know which toggles exist: it reads the registry.
import type { EngineModel, EngineSession, ToggleDef } from "../api.ts";
import { statOf, type Profile, type ToggleValues } from "./profile.ts";
import { effectiveDefault, recordRun, type PromptSpec, type RecordResult, type RunSpec, type SamplingSpec } from "./record.ts";
import { mergeResults } from "./passes.ts";
import { DEFAULT_MAX_CONTENTION } from "./bench-core.ts";
import { toggleValueProblem } from "../toggles.ts";
import { optionFromToggle, outputFormat, sameWeights, weightsLabel, withOutput, WEIGHTS_TOGGLE, type WeightsOption } from "../formats/requant.ts";
import { PARALLEL_TOGGLE } from "../formats/parallel.ts";
import { TOGGLE_VALUES_NEEDING_INPUT } from "../spec/draft.ts";

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
    // values that need more than a toggle (a draft model) are swept only when asked for by name; weights is a
    // load-time option: each of its arms needs its own copy of the model (weightArmModels), so the default sweep
    // leaves it out too (--toggle weights=* sweeps it).
    axisList = reg.map((d) => [d.id, implementedValues(d, backend).filter((v) => !TOGGLE_VALUES_NEEDING_INPUT[d.id]?.values.includes(v))] as [string, string[]])
      .filter(([id, v]) => v.length > 1 && id !== WEIGHTS_TOGGLE && id !== PARALLEL_TOGGLE);
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
  repeats: number;          // measured repetitions (>= 3 unless allowFewer)
  warmup: boolean;          // one unmeasured pass first
  stepsPerSync?: number;    // decode steps per engine call (RunSpec.stepsPerSync), every arm alike
  id: string;
  command?: string;
  onProgress?: (msg: string) => void;
  /** Share of the machine's CPU other processes may use during a pass before it is re-run (default 0.1). */
  maxContention?: number;
  /** Re-runs of a contended pass before it is kept anyway and flagged (default 3, as the CLI bench). */
  retries?: number;
  allowFewer?: boolean;
}

/**
 * Models for the arms whose `weights` toggle differs from the loaded model's (a load-time option): the same
 * source opened once per distinct value, each with a session. `close()` frees them. All stay in memory at once,
 * so the arms can be interleaved (4 copies of the weights for as-loaded | bf16 | q8 | q4). Each keeps the loaded
 * model's output format (weightsLayers.output: no toggle carries it), so an arm changes only the layers.
 */
export async function weightArmModels(model: EngineModel, session: EngineSession, arms: Arm[],
  open: (opt: WeightsOption) => Promise<EngineModel>): Promise<{ envOf: (arm: Arm) => { model: EngineModel; session: EngineSession } | undefined; close: () => void }> {
  const cur = session.toggles()[WEIGHTS_TOGGLE] ?? "as-loaded";
  const out = outputFormat(model.weights);
  const envs = new Map<string, { model: EngineModel; session: EngineSession }>();
  for (const arm of arms) {
    const w = arm.toggles[WEIGHTS_TOGGLE];
    if (w === undefined || sameWeights(w, cur)) continue;
    const key = JSON.stringify(optionFromToggle(w));
    if (envs.has(key)) continue;
    const m = await open(withOutput(optionFromToggle(w), out));
    envs.set(key, { model: m, session: m.newSession({ maxBatch: 1, maxContext: session.maxContext }) });
  }
  return {
    envOf: (arm) => { const w = arm.toggles[WEIGHTS_TOGGLE]; return w === undefined ? undefined : envs.get(JSON.stringify(optionFromToggle(w))); },
    close: () => { for (const e of envs.values()) { e.session.close(); e.model.close(); } },
  };
}

/** Fewest measured repetitions per arm: a median with a spread needs at least three. */
export const MIN_REPEATS = 3;

function armSpec(arm: Arm, o: ArmOptions, id: string): RunSpec {
  return {
    id, prompts: o.prompts, maxTokens: o.maxTokens, sampling: o.sampling, toggles: arm.toggles, ...(o.stepsPerSync ? { stepsPerSync: o.stepsPerSync } : {}),
    profiling: arm.profiling, capture: [], label: arm.label, command: o.command, warmup: 0, repeats: 1,
  };
}

/** The unrecorded warm-up pass of an arm. */
export async function warmArm(model: EngineModel, session: EngineSession, arm: Arm, o: ArmOptions): Promise<void> {
  o.onProgress?.(`${arm.label}: warm-up`);
  await recordRun(model, session, armSpec(arm, o, `${o.id}-warmup`), { yieldToLoop: false });
}

/** One measured pass of an arm; a pass during which other processes used more than maxContention of the CPU
 *  is re-run (up to `retries` times, as the CLI bench does) and kept flagged when it stays contended. */
export async function runArmPass(model: EngineModel, session: EngineSession, arm: Arm, o: ArmOptions): Promise<RecordResult> {
  const max = o.maxContention ?? DEFAULT_MAX_CONTENTION, retries = o.retries ?? 3;
  let r = await recordRun(model, session, armSpec(arm, o, o.id), { yieldToLoop: false }), k = 0;
  while (k < retries && (r.passes[0]?.others ?? 0) > max) {
    o.onProgress?.(`${arm.label}: contended (others ${(100 * r.passes[0].others!).toFixed(0)} % CPU), re-running`);
    r = await recordRun(model, session, armSpec(arm, o, o.id), { yieldToLoop: false });
    k++;
  }
  r.passes[0] = { ...r.passes[0], reruns: k };
  return r;
}

/** The ablation profile of an arm from its measured passes: the median summary of mergeResults, plus
 *  llama-bench rows whose tokens/s keep every repetition. */
export function finishArm(model: EngineModel, arm: Arm, passes: RecordResult[], o: ArmOptions): Profile {
  const merged = mergeResults(passes, { warmup: o.warmup ? 1 : 0 });
  const p = merged.profile;
  const st = p.summary.stats ?? {};
  const nPrompt = Math.round((p.summary.prefill_tokens ?? 0) / Math.max(1, o.prompts.length));
  const nGen = Math.round((p.summary.decode_tokens ?? 0) / Math.max(1, o.prompts.length));
  const rq = model.weights?.weights || Object.keys(model.weights?.weightsLayers ?? {}).length ? `→${weightsLabel(model.weights)}` : "";
  const weights = (Object.entries(model.weightTypes).sort((a, b) => b[1] - a[1])[0]?.[0] ?? "?") + rq;
  const others = merged.passes.map((x) => x.others);
  const reruns = merged.passes.reduce((a, x) => a + (x.reruns ?? 0), 0);
  const row = (test: string, rates: number[], np: number, ng: number) => ({
    test, model: model.id, weights, backend: model.backend, batch: 1, n_prompt: np, n_gen: ng,
    tokens_per_s: statOf(rates, "tok/s"), system: "qwen-workbench",
    extra: { arm: arm.label, profiling: arm.profiling, others_cpu_share: others, contended_reruns: reruns },
  });
  return {
    ...p,
    kind: "ablation",
    summary: { ...p.summary, ttft_ms_samples: st.ttft_ms?.samples ?? [], first_tokens: merged.tokens },
    bench: [
      ...(st.prefill_tok_s ? [row(`pp${nPrompt}`, st.prefill_tok_s.samples, nPrompt, 0)] : []),
      ...(st.decode_tok_s ? [row(`tg${nGen}`, st.decode_tok_s.samples, 0, nGen)] : []),
    ],
    notes: [...(p.notes ?? []), `${merged.passes.length} measured repetition(s) over ${o.prompts.length} prompt(s), ${reruns} contended re-run(s)`],
  };
}

function checkRepeats(o: ArmOptions): void {
  if (!o.allowFewer && o.repeats < MIN_REPEATS) throw new Error(`repeats must be >= ${MIN_REPEATS} (a median with a spread needs three), got ${o.repeats}`);
}

/**
 * Runs arms interleaved: a warm-up per arm, then round r runs every arm once (A B C, A B C, ...), so slow drift
 * of the machine (thermals, other jobs) hits every arm alike instead of the one that happened to run last.
 * Returns one ablation profile per arm, in the order of `arms`.
 */
export async function runArmsInterleaved(model: EngineModel, session: EngineSession, arms: Arm[],
  o: Omit<ArmOptions, "id"> & { idOf: (arm: Arm) => string; envOf?: (arm: Arm) => { model: EngineModel; session: EngineSession } | undefined }): Promise<Profile[]> {
  const opts = (arm: Arm): ArmOptions => ({ ...o, id: o.idOf(arm) });
  // An arm may run on its own model (e.g. the weights toggle: the same file loaded with another format).
  const env = arms.map((arm) => o.envOf?.(arm) ?? { model, session });
  checkRepeats(opts(arms[0]));
  if (o.warmup) for (const [i, arm] of arms.entries()) await warmArm(env[i].model, env[i].session, arm, opts(arm));
  const passes: RecordResult[][] = arms.map(() => []);
  for (let r = 0; r < Math.max(1, o.repeats); r++) {
    for (let i = 0; i < arms.length; i++) {
      o.onProgress?.(`round ${r + 1}/${o.repeats}: ${arms[i].label}`);
      passes[i].push(await runArmPass(env[i].model, env[i].session, arms[i], opts(arms[i])));
    }
  }
  return arms.map((arm, i) => finishArm(env[i].model, arm, passes[i], opts(arm)));
}
