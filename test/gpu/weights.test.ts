// The weights option (issue 10 item 1) on CUDA against the CPU backend holding the same requantized weights
// (cuda/src/opt/weights/requant.hpp: every weight is exactly s (q - z) on both backends). Teacher-forced logits
// of prefill and decode agree within the bf16-activation tolerance of cpu-vs-cuda.test.ts (2e-2 relative);
// CUDA prefill also rounds the dequantized weights to bf16 for the GEMM, as for every quantized GGUF type.
// Decode (the dequantizing GEMV, group 128) sees the exact weights. Each arm also runs with gemv = marlin (issue 10:
// tensor-core W4/W8 GEMV over repacked weights, exact scales) against the CPU and against gemv = simple's tokens, and
// marlin's batched decode must equal each sequence alone bit for bit. The lm_head requantized too
// (weightsLayers.output) through both GEMV arms and a verify-sized pass (rows >= QW_LMHEAD_GEMM_ROWS: a non-bf16
// lm_head stays on the GEMV), on an untied copy of the embedded model (lm_head.weight = its embedding; the embedded
// model is tied, which refuses the option). Trained, not random: on a random-init tiny model these cases differed from
// the CPU by 2.5e-2 (q4) and 3.3e-2 (q8) (max-abs / max-ref; seventeenth run, H100), above the 2e-2 bar that the
// trained model's arms meet with margin (4.4-4.8e-3 above). That random model's error with the lm_head as loaded was
// not measured apart, so whether bf16 activations alone explain it is a guess; on the trained model a lm_head fault
// cannot hide under the noise. Skips without a GPU.
import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_MODEL_DIR, openModel, type Model } from "../../engine/index.ts";
import { encodeSafetensors, openSafetensorsDir } from "../../engine/formats/safetensors.ts";
import type { WeightsOption } from "../../engine/formats/requant.ts";
import { batchedVsAlone, noGpu, teacherForced } from "./gpu.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

const ARMS: { name: string; opt: WeightsOption }[] = [
  { name: "q8", opt: { weights: "q8" } },
  { name: "q4", opt: { weights: "q4" } },
  { name: "bf16", opt: { weights: "bf16" } },
  { name: "q4, layer 0 bf16, layer 1 q8", opt: { weights: "q4", weightsLayers: { "0": "bf16", "1": "q8" } } },
];

describe.skipIf(noGpu())("weights option: CUDA vs CPU on the same requantized weights", () => {
  const sources = ["default"]; // the trained model: random-init shapes have bf16-noise-sized logit margins
  const open: Model[] = [];
  afterAll(() => open.forEach((m) => m.close()));
  for (const source of sources)
    for (const arm of ARMS) {
      test(`${source.split("/").pop()}: ${arm.name}`, async () => {
        const cpu = (await openModel(source, { backend: "cpu", ...arm.opt })) as Model;
        const gpu = (await openModel(source, { backend: "cuda", ...arm.opt })) as Model;
        open.push(cpu, gpu);
        const [sg, sc] = [gpu, cpu].map((m) => m.newSession({ maxBatch: 1, maxContext: 16 }));
        expect(sg.toggles().weights).toEqual(sc.toggles().weights);
        sg.close();
        sc.close();
        const ids = cpu.tokenizer.encode("The jury said it did find that the court");
        const c = teacherForced(cpu, ids, undefined, 12);
        const g = teacherForced(gpu, ids, c.tokens, 12);
        let worst = 0;
        c.logits.forEach((lc, k) => {
          let maxAbs = 0, maxRef = 0;
          for (let i = 0; i < lc.length; i++) { maxAbs = Math.max(maxAbs, Math.abs(lc[i] - g.logits[k][i])); maxRef = Math.max(maxRef, Math.abs(lc[i])); }
          worst = Math.max(worst, maxAbs / maxRef);
        });
        console.log(`[weights ${arm.name}] ${source}: worst relative logit difference CUDA vs CPU over prefill + 12 decode steps ${worst.toExponential(2)}`);
        expect(worst).toBeLessThan(2e-2);
        // gemv = marlin (tensor-core W4/W8 decode GEMV, chunked dequantization in prefill): the same tolerance against
        // the CPU, and the simple kernels' greedy token wherever their top-2 margin exceeds the bf16 noise
        const mg = teacherForced(gpu, ids, c.tokens, 12, "marlin");
        let worstM = 0, disagree = 0;
        c.logits.forEach((lc, k) => {
          let maxAbs = 0, maxRef = 0;
          for (let i = 0; i < lc.length; i++) { maxAbs = Math.max(maxAbs, Math.abs(lc[i] - mg.logits[k][i])); maxRef = Math.max(maxRef, Math.abs(lc[i])); }
          worstM = Math.max(worstM, maxAbs / maxRef);
          const top = [...g.logits[k]].map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0]);
          if (top[0][0] - top[1][0] > 2e-2 * maxRef && g.tokens[k] !== mg.tokens[k]) disagree++;
        });
        console.log(`[weights ${arm.name}] gemv=marlin: worst relative logit difference vs CPU ${worstM.toExponential(2)}, clear-margin token disagreements with simple ${disagree}`);
        expect(worstM).toBeLessThan(2e-2);
        expect(disagree).toBe(0);
      }, 600_000);
    }

  const untied = untiedEmbedded();
  afterAll(() => rmSync(untied, { recursive: true, force: true }));
  for (const opt of [{ weightsLayers: { output: "q8" } }, { weights: "q4", weightsLayers: { output: "q4" } }] as WeightsOption[])
    test(`untied embedded model: output = ${opt.weightsLayers!.output} (weights ${opt.weights ?? "as-loaded"}), simple and marlin, all-position logits`, async () => {
      const cpu = (await openModel(untied, { backend: "cpu", ...opt })) as Model;
      const gpu = (await openModel(untied, { backend: "cuda", ...opt })) as Model;
      open.push(cpu, gpu);
      expect(gpu.nativeTensors().find((t) => t.name === "output.weight")!.native).toBe(opt.weightsLayers!.output === "q8" ? "w8" : "w4");
      const ids = cpu.tokenizer.encode("The jury said it did find that the court had no evidence of any irregularities");
      expect(ids.length).toBeGreaterThan(16);
      const rel = (a: Float32Array, b: Float32Array) => {
        let d = 0, r = 0;
        for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); r = Math.max(r, Math.abs(a[i])); }
        return d / r;
      };
      const c = teacherForced(cpu, ids, undefined, 8);
      for (const gemv of ["simple", "marlin"]) {
        const g = teacherForced(gpu, ids, c.tokens, 8, gemv);
        const worst = Math.max(...c.logits.map((lc, k) => rel(lc, g.logits[k])));
        console.log(`[output ${opt.weightsLayers!.output}] gemv=${gemv}: worst relative logit difference vs CPU ${worst.toExponential(2)}`);
        expect(worst).toBeLessThan(2e-2);
      }
      // every position's logits (a 19-row pass: past QW_LMHEAD_GEMM_ROWS, which takes the GEMM for bf16 only)
      const all = [cpu, gpu].map((m) => {
        const s = m.newSession({ maxBatch: 1, maxContext: 64 });
        s.setLogitsMode(2);
        s.prefill(0, ids);
        const l = s.logits().data.slice();
        s.close();
        return l;
      });
      expect(rel(all[0], all[1])).toBeLessThan(2e-2);
    }, 600_000);

  // gemv = marlin keeps batch invariance: three sequences decoded together give the logits each gets alone, bit for
  // bit (the split-K plan depends on the matrix shape only; an mma output row depends on its own activations only).
  test("gemv=marlin, q4: batched decode equals each sequence alone, logits bit for bit", async () => {
    const gpu = (await openModel("default", { backend: "cuda", weights: "q4" })) as Model;
    open.push(gpu);
    const prompts = ["The jury said it did find", "It is a long way", "The"].map((t) => gpu.tokenizer.encode(t));
    const { together, alone, differing } = batchedVsAlone(gpu, prompts, 12, (s) => s.setToggle("gemv", "marlin"));
    prompts.forEach((_, i) => expect(together.toks[i]).toEqual(alone[i].toks[0]));
    expect(differing).toBe(0);
  }, 600_000);

  // gemv = marlin with bf16 weights: gemv_mma.cu's tensor cores at every batch size (the embedded model's lm_head;
  // synthetic 0.5B: gate_up and the lm_head on whole row tiles, qkv / o / down with K split over blocks) — batch
  // invariance holds there too
  for (const source of ["default", "synthetic:0.5b:bf16"])
    test(`gemv=marlin, bf16 (${source}): batched decode equals each sequence alone, logits bit for bit`, async () => {
      const gpu = (await openModel(source, { backend: "cuda", weights: "bf16" })) as Model;
      open.push(gpu);
      const prompts = [[1, 2, 3, 4, 5, 6], [7, 8, 9], [10]];
      const { together, alone, differing } = batchedVsAlone(gpu, prompts, 8, (s) => s.setToggle("gemv", "marlin"));
      prompts.forEach((_, i) => expect(together.toks[i]).toEqual(alone[i].toks[0]));
      expect(differing).toBe(0);
    }, 600_000);
});

/** An untied copy of the embedded model in a temp folder: lm_head.weight = its embedding, the config untied, the
 *  tokenizer files as they are. */
function untiedEmbedded(): string {
  const src = DEFAULT_MODEL_DIR;
  const dir = mkdtempSync(join(tmpdir(), "qw-untied-"));
  for (const f of readdirSync(src)) if (f !== "model.safetensors" && f !== "config.json") copyFileSync(join(src, f), join(dir, f));
  const cfg = JSON.parse(readFileSync(join(src, "config.json"), "utf8"));
  writeFileSync(join(dir, "config.json"), JSON.stringify({ ...cfg, tie_word_embeddings: false }, null, 2));
  const st = openSafetensorsDir(src);
  const emb = st.tensor("model.embed_tokens.weight");
  if (!emb) throw new Error("the embedded model has no model.embed_tokens.weight");
  const tensors = [...st.tensors, { ...emb, name: "lm_head.weight" }].map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: t.data.slice() }));
  writeFileSync(join(dir, "model.safetensors"), encodeSafetensors(tensors));
  return dir;
}
