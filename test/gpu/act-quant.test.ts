// Toggle actQuant = int8 on CUDA (cuda/src/opt/act_quant/gemv_i8.cu: W4 / W8 decode GEMVs with the activations
// quantized to int8 per token and weight group, dp4a) on the embedded model with weights = q8 / q4, under both gemv
// values. The arm is not exact, so it is checked against the exact arm on the same weights: prefill logits identical
// (prefill GEMMs run exact), decode logits different (the arm ran) but within 5e-2 of the largest logit, no greedy
// token changed where the exact arm's top-2 margin is clear; the CPU backend's arm beside it (printed: the CPU runs
// its int8 decode GEMV only with AVX-512 VNNI); batched decode equal to each sequence alone, bit for bit; and a
// per-layer setting (layer 0 only) that changes the logits too. Skips without a GPU.
import { afterAll, describe, expect, test } from "bun:test";
import { openModel, type Model } from "../../engine/index.ts";
import { batchedVsAlone, noGpu, rel, teacherForced } from "./gpu.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

const STEPS = 12;
const int8 = (layer = -1) => (s: { setToggle(id: string, v: string, l?: number): void }) => s.setToggle("actQuant", "int8", layer);

describe.skipIf(noGpu())("actQuant = int8 on CUDA", () => {
  const open: Model[] = [];
  afterAll(() => open.forEach((m) => m.close()));
  for (const weights of ["q8", "q4"] as const)
    for (const gemv of ["simple", "marlin"]) {
      test(`${weights}, gemv=${gemv}: against the exact arm and the CPU arm`, async () => {
        const gpu = (await openModel("default", { backend: "cuda", weights })) as Model;
        const cpu = (await openModel("default", { backend: "cpu", weights })) as Model;
        open.push(gpu, cpu);
        const ids = gpu.tokenizer.encode("The jury said it did find that the court");
        const exact = teacherForced(gpu, ids, undefined, STEPS, gemv);
        const q = teacherForced(gpu, ids, exact.tokens, STEPS, gemv, int8());
        const half = teacherForced(gpu, ids, exact.tokens, STEPS, gemv, int8(0));
        const c = teacherForced(cpu, ids, exact.tokens, STEPS, "simple", int8());
        expect(rel(q.logits[0], exact.logits[0])).toBe(0); // prefill: exact GEMMs
        let worst = 0, worstHalf = 0, worstCpu = 0, changed = 0, disagree = 0;
        for (let k = 1; k <= STEPS; k++) {
          const d = rel(q.logits[k], exact.logits[k]);
          worst = Math.max(worst, d);
          worstHalf = Math.max(worstHalf, rel(half.logits[k], exact.logits[k]));
          worstCpu = Math.max(worstCpu, rel(q.logits[k], c.logits[k]));
          if (d > 0) changed++;
          const top = [...exact.logits[k]].map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0]);
          const maxRef = Math.max(...exact.logits[k].map(Math.abs));
          if (top[0][0] - top[1][0] > 5e-2 * maxRef && q.tokens[k] !== exact.tokens[k]) disagree++;
        }
        console.log(`[actQuant ${weights} gemv=${gemv}] worst relative logit difference over ${STEPS} decode steps: int8 vs exact ${worst.toExponential(2)} (layer 0 only ${worstHalf.toExponential(2)}), CUDA int8 vs CPU int8 ${worstCpu.toExponential(2)}; clear-margin greedy changes ${disagree}`);
        expect(changed).toBe(STEPS); // the arm ran at every decode step
        expect(worstHalf).toBeGreaterThan(0); // the per-layer setting reached the kernels
        expect(worstHalf).toBeLessThan(5e-2);
        expect(worst).toBeLessThan(5e-2);
        expect(disagree).toBe(0);
      }, 600_000);
    }

  for (const weights of ["q8", "q4"] as const)
    test(`${weights}: batched decode with int8 activations equals each sequence alone, logits bit for bit`, async () => {
      const gpu = (await openModel("default", { backend: "cuda", weights })) as Model;
      open.push(gpu);
      const prompts = ["The jury said it did find", "It is a long way", "The"].map((t) => gpu.tokenizer.encode(t));
      const { together, alone, differing } = batchedVsAlone(gpu, prompts, STEPS, int8());
      prompts.forEach((_, i) => expect(together.toks[i]).toEqual(alone[i].toks[0]));
      expect(differing).toBe(0);
    }, 600_000);
});
