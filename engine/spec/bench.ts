// engine/spec/bench.ts — decode tok/s with speculative decoding off, with a draft model at several k and with an
// EAGLE head, on real text (Brown validation prompts: acceptance on random token ids would say nothing), shared by the CLI
// `bench --speculative draft` and notebooks/speculative.ts. Warm-up excluded, >= 3 repetitions, median and
// min–max; every arm runs on the same prompts, interleaved per repetition so load drifts hit all arms alike.
import { loadavg } from "node:os";
import type { EngineModel, EngineSession, GenerateEvent } from "../api.ts";
import { brownDocuments } from "../text/brown.ts";
import { modelLabel, weightLabel } from "../measure/bench-core.ts";
import { statOf, type BenchRow, type Stat } from "../measure/profile.ts";
import { speculativeGenerate, type SpecEvent, type SpecHost, type SpecSession } from "./draft.ts";
import { eagleGenerate } from "./eagle.ts";
import type { TreeParams } from "./eagle-tree.ts";
import { mergeTraces, summarizeSpec, type SpecSummary, type SpecTrace } from "./stats.ts";

/** n Brown validation prompts of `words` words each, from different documents. */
export function brownPromptSet(n: number, words = 24): string[] {
  const docs = brownDocuments("validation");
  return Array.from({ length: n }, (_, i) => {
    const w = docs[i % docs.length].text.split(/\s+/);
    const start = Math.floor(i / docs.length) * words;
    return w.slice(start, start + words).join(" ");
  });
}

export interface SpecBenchOptions {
  prompts: string[];
  nGen: number;          // tokens generated per prompt
  ks: number[];          // draft lengths to measure
  reps?: number;         // measured repetitions (>= 3)
  warmup?: number;       // unmeasured passes first (default 1)
  draftLabel: string;
  /** The EAGLE arm: a head session, its tree and a label (the head's directory). */
  eagle?: { head: EngineSession; tree: TreeParams; label: string };
  /** The draft arms' verify modes (draft.ts verifyAs): one arm per k and mode, named "(chain)" / "(prefill)" when given;
   *  unset: the backend's default, arm names unchanged. */
  verify?: ("chain" | "prefill")[];
  onProgress?: (msg: string) => void;
}

export interface SpecArmResult {
  arm: string;           // "off", "draft k=K" or "eagle d=D k=K b=B"
  k: number;             // 0 for off; the draft length, or the tree depth for eagle
  tokS: Stat;            // decode tok/s per repetition (all prompts' decode tokens / their decode time)
  spec?: SpecSummary;    // over all measured repetitions and prompts
}

type Done = Extract<GenerateEvent, { type: "done" }>;

async function lastEvent<T extends { type: string }>(g: AsyncGenerator<T>): Promise<Extract<T, { type: "done" }>> {
  let done: T | undefined;
  for await (const ev of g) if (ev.type === "done") done = ev;
  if (!done) throw new Error("generation ended without a done event");
  return done as Extract<T, { type: "done" }>;
}

/** Decode tokens and decode ms of one generation (the tokens after the first, the time after the prefill). */
function decodeOf(d: Done): { tokens: number; ms: number } {
  return { tokens: d.tpotMs.length, ms: d.tpotMs.reduce((a, b) => a + b, 0) };
}

/** Runs every arm (off, draft at each k, eagle) on every prompt, reps times after warm-up; greedy. */
export async function runSpecBench(target: SpecSession, draft: EngineSession | undefined, host: SpecHost, o: SpecBenchOptions): Promise<SpecArmResult[]> {
  const reps = Math.max(3, o.reps ?? 3), warmup = o.warmup ?? 1;
  if (o.ks.length > 0 && !draft) throw new Error("runSpecBench: draft arms need a draft session");
  interface Arm { name: string; k: number; run?: (opts: { prompt: string; maxTokens: number; stop: number[] }) => AsyncGenerator<SpecEvent>; samples: number[]; traces: SpecTrace[] }
  const arms: Arm[] = [
    { name: "off", k: 0, samples: [], traces: [] },
    ...o.ks.flatMap((k) => (o.verify ?? [undefined]).map((verifyAs) => ({
      name: verifyAs ? `draft k=${k} (${verifyAs})` : `draft k=${k}`, k, samples: [], traces: [],
      run: (g: { prompt: string; maxTokens: number; stop: number[] }) => speculativeGenerate(target, draft!, host, { ...g, k, ...(verifyAs ? { verifyAs } : {}) }),
    }))),
    ...(o.eagle ? [{
      name: `eagle d=${o.eagle.tree.depth} k=${o.eagle.tree.topK} b=${o.eagle.tree.budget}`, k: o.eagle.tree.depth,
      run: (g: { prompt: string; maxTokens: number; stop: number[] }) => eagleGenerate(target, o.eagle!.head, host, { ...g, tree: o.eagle!.tree }), samples: [], traces: [],
    }] : []),
  ];
  for (let r = 0; r < warmup + reps; r++) {
    const measured = r >= warmup;
    for (const arm of arms) {
      let tokens = 0, ms = 0;
      for (const prompt of o.prompts) {
        const opts = { prompt, maxTokens: o.nGen, stop: [] as number[] };
        const d = arm.run ? await lastEvent(arm.run(opts)) : await lastEvent(target.generate(opts));
        const x = decodeOf(d);
        tokens += x.tokens;
        ms += x.ms;
        if (measured && arm.run) arm.traces.push((d as Done & { speculative: SpecTrace }).speculative);
      }
      const tps = ms > 0 ? (tokens / ms) * 1000 : 0;
      if (measured) arm.samples.push(tps);
      o.onProgress?.(`${arm.name} ${measured ? `rep ${r - warmup + 1}/${reps}` : `warm-up ${r + 1}/${warmup}`}: ${tps.toFixed(1)} tok/s`);
    }
  }
  return arms.map((a) => ({
    arm: a.name, k: a.k, tokS: statOf(a.samples, "tok/s"),
    ...(a.run ? { spec: a.name.startsWith("eagle") ? summarizeSpec(mergeTraces(a.traces), o.eagle!.label, false, o.eagle!.tree) : summarizeSpec(mergeTraces(a.traces), o.draftLabel) } : {}),
  }));
}

/**
 * What an arm would reach against off if every drafted token were accepted at the same cost per verify step: its
 * measured speedup times (k + 1) / (tokens per verify step). The evidence behind "speculation cannot pay here":
 * below 1 even a perfect drafter loses, because one step (draft + verify) costs more than k + 1 plain decode
 * steps. null for off and for arms without statistics.
 */
export function speedupAtFullAcceptance(r: SpecArmResult, off: SpecArmResult): number | null {
  const tps = r.spec?.tokens_per_step;
  if (!r.k || !tps || !(tps > 0) || !(off.tokS.median > 0)) return null;
  return (r.tokS.median / off.tokS.median) * (r.k + 1) / tps;
}

/** The arms as bench rows (extra.speculative holds the acceptance statistics and the draft / verify split). */
export function specBenchRows(model: EngineModel, res: SpecArmResult[], o: { nGen: number; prompts: number }): BenchRow[] {
  const load = loadavg()[0];
  return res.map((r) => ({
    model: modelLabel(model.id), weights: weightLabel(model), backend: model.backend, system: "qwen-workbench",
    test: `tg${o.nGen} b1 brown ${r.arm}`, batch: 1, n_prompt: 0, n_gen: o.nGen, tokens_per_s: r.tokS,
    extra: { prompts: o.prompts, loadavg_1m_end: Number(load.toFixed(2)), speculative_k: r.k, ...(r.spec ? { speculative: r.spec } : {}) },
  }));
}
