// The fp64 reference itself must reproduce Hugging Face's golden outputs for tiny-qwen2-brown before it can
// be trusted to judge the engine. Tolerances: top-20 logits 1e-4 abs, hidden states 1e-4 abs (fixture README
// reports 5e-6 / 1e-4 for its own fp64 pass), greedy tokens identical.
import { test, expect } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Qwen2Reference, argmax } from "./qwen2-ref.ts";
import { readHfDirF64 } from "./read-safetensors.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const root = join(import.meta.dir, "..", "..");
const golden = JSON.parse(readFileSync(join(root, "test/fixtures/golden.json"), "utf8"));
const { config, weights } = readHfDirF64(join(root, "models/tiny-qwen2-brown"));
const ref = new Qwen2Reference(config, weights);

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test("fp64 reference matches HF golden top-20 logits and hidden states", () => {
  for (const [pi, p] of golden.prompts.entries()) {
    const seq = ref.newSequence();
    const out = ref.forward(seq, p.ids);
    const last = out.logits[out.logits.length - 1];
    const top = p.top20_ids.map((id: number) => last[id]);
    expect(maxAbs(top, p.top20_logits)).toBeLessThan(1e-4);
    expect(argmax(last)).toBe(p.argmax);
    if (pi === 0) {
      const h = p.hidden_last_pos;
      const lastPos = p.ids.length - 1;
      expect(maxAbs(out.embedding[lastPos], h.embedding)).toBeLessThan(1e-4);
      for (let L = 0; L < h.after_layer.length; L++) expect(maxAbs(out.residPost[L][lastPos], h.after_layer[L])).toBeLessThan(1e-4);
      expect(maxAbs(out.finalNorm[lastPos], h.after_final_norm)).toBeLessThan(1e-4);
    }
  }
});

test("fp64 reference reproduces the HF greedy-32 continuation (incremental decode)", () => {
  const p = golden.prompts[0];
  const seq = ref.newSequence();
  let out = ref.forward(seq, p.ids);
  const got: number[] = [];
  let tok = argmax(out.logits[out.logits.length - 1]);
  for (let i = 0; i < 32; i++) {
    got.push(tok);
    if (i === 31) break;
    out = ref.forward(seq, [tok]);
    tok = argmax(out.logits[0]);
  }
  expect(got).toEqual(p.greedy32);
});
