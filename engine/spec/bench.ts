// engine/spec/bench.ts — decode tok/s with speculative decoding off and with a draft model at several k, on
// real text (Brown validation prompts: acceptance on random token ids would say nothing), shared by the CLI
// `bench --speculative draft` and notebooks/speculative.ts. Warm-up excluded, >= 3 repetitions, median and
// min–max; every arm runs on the same prompts, interleaved per repetition so load drifts hit all arms alike.
import { loadavg } from "node:os";
import type { EngineModel, EngineSession, GenerateEvent } from "../api.ts";
import { brownDocuments } from "../text/brown.ts";
import { modelLabel, weightLabel } from "../measure/bench-core.ts";
import { statOf, type BenchRow, type Stat } from "../measure/profile.ts";
import { speculativeGenerate, type SpecHost, type SpecSession } from "./draft.ts";
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
  onProgress?: (msg: string) => void;
}

export interface SpecArmResult {
  arm: string;           // "off" or "draft k=K"
  k: number;             // 0 for off
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

/** Runs every arm on every prompt, reps times after warm-up; greedy. */
export async function runSpecBench(target: SpecSession, draft: EngineSession, host: SpecHost, o: SpecBenchOptions): Promise<SpecArmResult[]> {
  const reps = Math.max(3, o.reps ?? 3), warmup = o.warmup ?? 1;
  const arms = [0, ...o.ks];
  const samples = new Map<number, number[]>(arms.map((k) => [k, []]));
  const traces = new Map<number, SpecTrace[]>(o.ks.map((k) => [k, []]));
  for (let r = 0; r < warmup + reps; r++) {
    const measured = r >= warmup;
    for (const k of arms) {
      let tokens = 0, ms = 0;
      for (const prompt of o.prompts) {
        const opts = { prompt, maxTokens: o.nGen, stop: [] as number[] };
        const d = k === 0 ? await lastEvent(target.generate(opts)) : await lastEvent(speculativeGenerate(target, draft, host, { ...opts, k }));
        const x = decodeOf(d);
        tokens += x.tokens;
        ms += x.ms;
        if (measured && k > 0) traces.get(k)!.push((d as Done & { speculative: SpecTrace }).speculative);
      }
      const tps = ms > 0 ? (tokens / ms) * 1000 : 0;
      if (measured) samples.get(k)!.push(tps);
      o.onProgress?.(`${k === 0 ? "off" : `draft k=${k}`} ${measured ? `rep ${r - warmup + 1}/${reps}` : `warm-up ${r + 1}/${warmup}`}: ${tps.toFixed(1)} tok/s`);
    }
  }
  return arms.map((k) => ({
    arm: k === 0 ? "off" : `draft k=${k}`, k, tokS: statOf(samples.get(k)!, "tok/s"),
    ...(k > 0 ? { spec: summarizeSpec(mergeTraces(traces.get(k)!), o.draftLabel) } : {}),
  }));
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
