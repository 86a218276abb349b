import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { GGML_TYPE, gv } from "../../../engine/formats/gguf.ts";
import { convertToGguf, convertToSafetensors, openModelSource, retypeModel, tensorF32, tensorTable } from "../../../engine/formats/modelfile.ts";
import { errorStats, f32ArrayToBf16 } from "../../../engine/formats/quant.ts";
import { encodeSafetensors } from "../../../engine/formats/safetensors.ts";
import { gaussian, rng, tinyConfig, tmpDir } from "./helpers.ts";
import { generousTimeout } from "../../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const repoModel = nodePath.join(import.meta.dir, "../../../models/tiny-qwen2-brown");

test("HF bf16 → GGUF q8_0 / q4_k_m / bf16: reopens with the same config, accurate weights", async () => {
  const src = openModelSource(repoModel);
  const dir = tmpDir();
  for (const [scheme, bound] of [["bf16", 0], ["q8_0", 0.01], ["q4_k_m", 0.1]] as const) {
    const p = nodePath.join(dir, `m-${scheme}.gguf`);
    const progress: number[] = [];
    const { types } = await convertToGguf(src, p, { scheme, metadata: [["tokenizer.ggml.model", gv.str("gpt2")]], onProgress: (d) => progress.push(d) });
    expect(progress.length).toBe(src.tensors.length);
    const m = openModelSource(p);
    expect(m.config).toEqual(src.config);
    expect(m.metadata["general.file_type"]).toBe({ bf16: 32, q8_0: 7, q4_k_m: 15 }[scheme]);
    expect(m.metadata["tokenizer.ggml.model"]).toBe("gpt2");
    for (const t of m.tensors) {
      if (t.ne.length === 1) expect(t.ggmlType).toBe(GGML_TYPE.F32);
      const a = tensorF32(src.tensors.find((s) => s.name === t.name)!), b = tensorF32(t);
      const e = errorStats(a, b);
      if (bound === 0) expect(e.maxAbs).toBe(0);
      else expect(e.relRmse).toBeLessThan(bound);
    }
    if (scheme === "q4_k_m") {
      expect(types["token_embd.weight"]).toBe("Q6_K"); // tied: doubles as the output
      // llama.cpp's use_more_bits for 4 layers: i < 0 || i >= 3 || i % 3 == 2 → layers 2 and 3
      expect([0, 1, 2, 3].map((i) => types[`blk.${i}.attn_v.weight`])).toEqual(["Q4_K", "Q4_K", "Q6_K", "Q6_K"]);
      expect(types["blk.1.attn_q.weight"]).toBe("Q4_K");
    }
  }
  fs.rmSync(dir, { recursive: true });
});

test("0.5B-like widths (896) take llama.cpp's fallbacks in q4_k_m", async () => {
  const c = tinyConfig({ hidden_size: 896, num_attention_heads: 14, num_key_value_heads: 2, head_dim: 64, intermediate_size: 512, num_hidden_layers: 1, vocab_size: 64 });
  const dir = tmpDir();
  const r = rng(8);
  const tensors = tensorTable(c).map((s) => {
    const n = s.ne.reduce((a, b) => a * b, 1);
    return { name: s.hfName, dtype: "BF16", shape: [...s.ne].reverse(), data: new Uint8Array(f32ArrayToBf16(gaussian(r, n, 0.05)).buffer) };
  });
  fs.writeFileSync(nodePath.join(dir, "model.safetensors"), encodeSafetensors(tensors));
  fs.writeFileSync(nodePath.join(dir, "config.json"), JSON.stringify({ model_type: "qwen2", ...c }));
  const src = openModelSource(dir);
  const { types } = await convertToGguf(src, nodePath.join(dir, "m.gguf"), { scheme: "q4_k_m" });
  expect(types["blk.0.attn_q.weight"]).toBe("Q5_0");
  expect(types["blk.0.ffn_gate.weight"]).toBe("Q5_0");
  expect(types["blk.0.ffn_down.weight"]).toBe("Q6_K"); // ne0 = 512
  expect(types["blk.0.attn_output.weight"]).toBe("Q5_0"); // ne0 = 896
  expect(types["token_embd.weight"]).toBe("Q8_0");
  const m = openModelSource(nodePath.join(dir, "m.gguf"));
  expect(m.weightTypes).toEqual({ Q8_0: 2, F32: 6, Q5_0: 5, Q6_K: 1 }); // attn_v of layer 0 gets more bits: Q6_K → Q8_0
  fs.rmSync(dir, { recursive: true });
});

test("GGUF q4_k_m → HF safetensors (F32, sharded) holds exactly the dequantized weights; HF → HF copies the tokenizer", async () => {
  const dir = tmpDir();
  const q = nodePath.join(dir, "q.gguf");
  await convertToGguf(openModelSource(repoModel), q, { scheme: "q4_k_m" });
  const g = openModelSource(q);
  const out = nodePath.join(dir, "hf");
  const r = await convertToSafetensors(g, out, { dtype: "F32", maxShardBytes: 4 << 20 });
  expect(r.shards).toBeGreaterThan(1);
  expect(r.tokenizer).toBe(false);
  const h = openModelSource(out);
  expect(h.config).toEqual(g.config);
  expect(h.weightTypes).toEqual({ F32: g.tensors.length });
  for (const t of g.tensors) {
    const a = tensorF32(t), b = tensorF32(h.tensors.find((x) => x.name === t.name)!);
    expect(Buffer.compare(new Uint8Array(a.buffer), new Uint8Array(b.buffer))).toBe(0);
  }
  const bf = nodePath.join(dir, "hf-bf16");
  const r2 = await convertToSafetensors(openModelSource(repoModel), bf, { dtype: "BF16" });
  expect(r2).toMatchObject({ shards: 1, tokenizer: true });
  const src = openModelSource(repoModel), copy = openModelSource(bf);
  expect(copy.tokenizer.kind).toBe("hf");
  expect(src.tensors.every((t, i) => Buffer.compare(t.data, copy.tensors[i].data) === 0)).toBe(true);
  expect(JSON.parse(fs.readFileSync(nodePath.join(bf, "config.json"), "utf8")).torch_dtype).toBe("bfloat16");
  fs.rmSync(dir, { recursive: true });
});

test("retypeModel converts lazily and reports the new types and sizes", () => {
  const src = openModelSource(repoModel);
  const q = retypeModel(src, "q8_0");
  expect(q.weightTypes).toEqual({ Q8_0: 4 * 7 + 1, F32: 4 * 5 + 1 });
  const e = q.tensors.find((t) => t.name === "token_embd.weight")!;
  expect(e.ggmlType).toBe(GGML_TYPE.Q8_0);
  expect(e.data.length).toBe(e.nbytes);
  expect(e.nbytes).toBe((256 * 8256) / 32 * 34);
  expect(errorStats(tensorF32(src.tensors[0]), tensorF32(e)).relRmse).toBeLessThan(0.01);
  expect(q.weightBytes).toBeLessThan(src.weightBytes);
  expect(retypeModel(src, "bf16").tensors.filter((t, i) => t === src.tensors[i]).length).toBe(4 * 7 + 1); // matrices pass through
});
