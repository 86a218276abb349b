// Toggle decode = persistent on CUDA (src/opt/decode/, src/cuda/persistent_session.cu; written without a GPU, so this
// file is its first end-to-end run): the persistent kernel decodes the greedy tokens of decode = graph on the embedded
// model (loaded as bf16) with logits within bf16 noise; on a random Qwen2.5-0.5B shape (bf16-noise-sized top-1
// margins) the teacher-forced logits agree within bf16 noise and the argmax agrees wherever the graph path's margin
// exceeds twice the difference; a sequence decodes to the same bits alone and in a batch of 8; what the arm does not
// support is refused with the toggle named. Skips without a GPU.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { openModel, type Model } from "../../engine/index.ts";
import { REPO, argmax, batchedVsAlone, greedyTogether, noGpu, rel } from "./gpu.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

type Golden = { prompts: { ids: number[] }[] };
const golden = JSON.parse(readFileSync(join(REPO, "test", "fixtures", "golden.json"), "utf8")) as Golden;
const persistent = (s: { setToggle(id: string, v: string): void }) => s.setToggle("decode", "persistent");

/** Teacher-forced decode of `ids` then `forced` tokens; the logits of every decode step. */
function forcedLogits(m: Model, ids: number[], forced: number[], setup?: (s: ReturnType<Model["newSession"]>) => void) {
  const s = m.newSession({ maxBatch: 1, maxContext: 512, maxPrefill: 256 });
  try {
    setup?.(s);
    s.setLogitsMode(1);
    s.setSampling(0, { temperature: 0 });
    s.prefill(0, ids);
    return forced.map((t) => {
      s.decode([0], [t]);
      return s.logits().data.slice();
    });
  } finally {
    s.close();
  }
}

function top2Margin(a: Float32Array): number {
  let b1 = -Infinity, b2 = -Infinity;
  for (const x of a) if (x > b1) { b2 = b1; b1 = x; } else if (x > b2) b2 = x;
  return b1 - b2;
}

describe.skipIf(noGpu())("CUDA decode = persistent", () => {
  let tiny: Model, random: Model;
  beforeAll(async () => {
    tiny = (await openModel("default", { backend: "cuda", weights: "bf16" })) as Model;
    random = (await openModel("synthetic:0.5b:bf16", { backend: "cuda" })) as Model;
  });
  afterAll(() => {
    tiny?.close();
    random?.close();
  });

  test("embedded model: the greedy tokens of decode = graph, logits within bf16 noise", () => {
    const prompts = golden.prompts.slice(0, 3).map((p) => p.ids);
    const graph = greedyTogether(tiny, prompts, 4, 16);
    const pers = greedyTogether(tiny, prompts, 4, 16, persistent);
    expect(pers.toks).toEqual(graph.toks);
    let worst = 0;
    pers.logits.forEach((seq, i) => seq.forEach((l, k) => (worst = Math.max(worst, rel(l, graph.logits[i][k])))));
    console.log(`[cuda] decode=persistent vs graph, embedded model: max rel ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(2e-2);
  });

  test("random 0.5B shape: teacher-forced logits within bf16 noise, argmax equal where the margin allows", () => {
    const ids = golden.prompts[0].ids;
    const graph = greedyTogether(random, [ids], 1, 8);
    const forced = graph.toks[0].slice(0, 7);
    const g = forcedLogits(random, ids, forced);
    const p = forcedLogits(random, ids, forced, persistent);
    g.forEach((gl, k) => {
      let diff = 0;
      for (let j = 0; j < gl.length; j++) diff = Math.max(diff, Math.abs(gl[j] - p[k][j]));
      console.log(`[cuda] 0.5B step ${k}: rel ${rel(p[k], gl).toExponential(2)}, top-1 margin ${top2Margin(gl).toFixed(3)}`);
      expect(rel(p[k], gl)).toBeLessThan(3e-2);
      if (top2Margin(gl) > 2 * diff) expect(argmax(p[k])).toBe(argmax(gl));
    });
  });

  test("batch invariance: a sequence alone and in a batch of 8 gives the same bits", () => {
    // 8 sequences of different lengths from the 3 golden prompts
    const prompts = Array.from({ length: 8 }, (_, i) => {
      const ids = golden.prompts[i % 3].ids;
      return ids.slice(0, Math.max(4, ids.length - i));
    });
    const { differing } = batchedVsAlone(tiny, prompts, 6, persistent, 8);
    expect(differing).toBe(0);
  });

  test("what it does not support is refused, naming the toggle", () => {
    const s = tiny.newSession({ maxBatch: 1, maxContext: 256, maxPrefill: 128 });
    try {
      s.setToggle("kvCache", "q8");
      persistent(s);
      const t = s.prefill(0, golden.prompts[0].ids);
      expect(() => s.decode([0], [t])).toThrow(/decode = persistent.*kvCache/);
    } finally {
      s.close();
    }
  });
});
