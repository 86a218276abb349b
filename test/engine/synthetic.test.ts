// Synthetic models: determinism, shapes of the real presets, the Q4_K_M-like type plan, streaming encode equal
// to whole-tensor encode, and (with the CPU library) GGUF / HF files of the tiny preset loading into the engine
// with the same logits as the in-memory path.
import { test, expect, describe } from "bun:test";
import { mkdtempSync, rmSync, existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  encodeFloat, encodeTensor, f32ToBf16Bits, f32ToF16Bits, generateTensor, paramCount, planType, PRESETS, synthSpec, tensorList,
  writeSyntheticGguf, writeSyntheticHf,
} from "../../engine/synth/synthetic.ts";
import { GGML } from "../../engine/ffi.ts";
import { openModel, openSyntheticInMemory } from "../../engine/index.ts";
import { openModelSource } from "../../engine/formats/modelfile.ts";
import { openGguf } from "../../engine/formats/gguf.ts";
import { cpuLibraryBuilt, maxAbsDiff, prompt } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

test("presets have the exact Qwen2.5 shapes and parameter counts", () => {
  expect(PRESETS["0.5b"]).toMatchObject({ hidden_size: 896, num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2, head_dim: 64, intermediate_size: 4864, vocab_size: 151936, tie_word_embeddings: true });
  expect(PRESETS["1.5b"]).toMatchObject({ hidden_size: 1536, num_hidden_layers: 28, num_attention_heads: 12, num_key_value_heads: 2, head_dim: 128, intermediate_size: 8960, vocab_size: 151936, tie_word_embeddings: true });
  expect(PRESETS["7b"]).toMatchObject({ hidden_size: 3584, num_hidden_layers: 28, num_attention_heads: 28, num_key_value_heads: 4, head_dim: 128, intermediate_size: 18944, vocab_size: 152064, tie_word_embeddings: false });
  expect(Math.round(paramCount(PRESETS["0.5b"]) / 1e6)).toBe(494);
  expect(Math.round(paramCount(PRESETS["1.5b"]) / 1e6)).toBe(1544);
  expect(Math.round(paramCount(PRESETS["7b"]) / 1e6)).toBe(7616);
  // Qwen2.5-32B / 72B (the tensor-parallel shapes): 32.8B and 72.7B parameters as their safetensors hold them
  expect(PRESETS["72b"]).toMatchObject({ hidden_size: 8192, num_hidden_layers: 80, num_attention_heads: 64, num_key_value_heads: 8, head_dim: 128, intermediate_size: 29568, vocab_size: 152064, tie_word_embeddings: false });
  expect(Math.round(paramCount(PRESETS["32b"]) / 1e6)).toBe(32764);
  expect(Math.round(paramCount(PRESETS["72b"]) / 1e6)).toBe(72706);
  const t7 = tensorList(PRESETS["7b"]);
  expect(t7.find((t) => t.name === "blk.0.attn_k.weight")!.ne).toEqual([3584, 512]);
  expect(t7.some((t) => t.name === "output.weight")).toBe(true);
  expect(tensorList(PRESETS["0.5b"]).some((t) => t.name === "output.weight")).toBe(false);
});

test("weights are deterministic in (seed, name), N(0, 0.02²), norms 1", () => {
  const s = synthSpec("tiny", { seed: 3 });
  const ts = tensorList(s.config);
  const q = ts.find((t) => t.name === "blk.1.attn_q.weight")!;
  const a = generateTensor(s, q), b = generateTensor(s, q);
  expect(a).toEqual(b);
  expect(generateTensor(synthSpec("tiny", { seed: 4 }), q)).not.toEqual(a);
  expect(generateTensor(s, ts.find((t) => t.name === "blk.2.attn_q.weight")!)).not.toEqual(a);
  let m = 0, v = 0;
  for (const x of a) m += x;
  m /= a.length;
  for (const x of a) v += (x - m) ** 2;
  const std = Math.sqrt(v / a.length);
  expect(Math.abs(m)).toBeLessThan(1e-3);
  expect(std).toBeGreaterThan(0.0195);
  expect(std).toBeLessThan(0.0205);
  expect(generateTensor(s, ts.find((t) => t.name === "output_norm.weight")!).every((x) => x === 1)).toBe(true);
});

test("streaming (chunked) encode equals whole-tensor encode", async () => {
  const s = synthSpec("tiny", { seed: 1 });
  const emb = tensorList(s.config)[0]; // 256 x 8256 = 2.1M elements -> one chunk; force a big custom one
  const big = { ...emb, ne: [256, 20000] }; // 5.1M elements > 4M chunk
  const whole = encodeFloat(generateTensor(s, big), GGML.BF16);
  const streamed = await encodeTensor(s, big, GGML.BF16);
  expect(streamed.length).toBe(whole.length);
  expect(Buffer.compare(Buffer.from(streamed), Buffer.from(whole))).toBe(0);
});

test("f32 -> f16 / bf16 rounding (round to nearest even)", () => {
  expect(f32ToF16Bits(1)).toBe(0x3c00);
  expect(f32ToF16Bits(-2)).toBe(0xc000);
  expect(f32ToF16Bits(65504)).toBe(0x7bff);
  expect(f32ToF16Bits(1e6)).toBe(0x7c00);
  expect(f32ToF16Bits(5.960464477539063e-8)).toBe(0x0001);
  expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie -> even
  expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
  expect(f32ToBf16Bits(1)).toBe(0x3f80);
  expect(f32ToBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie -> even
  expect(f32ToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
  expect(f32ToBf16Bits(Number.NaN) & 0x7fc0).toBe(0x7fc0);
});

test("q4_k_m type plan follows llama.cpp (0.5B falls back where ne0 % 256 != 0)", () => {
  const c = PRESETS["0.5b"];
  const ts = tensorList(c);
  const ty = (n: string) => planType("q4_k_m", ts.find((t) => t.name === n)!, c);
  expect(ty("token_embd.weight")).toBe(GGML.Q8_0);      // tied output: Q6_K -> Q8_0 (896 % 256 != 0)
  expect(ty("blk.0.attn_q.weight")).toBe(GGML.Q5_0);    // Q4_K -> Q5_0
  expect(ty("blk.0.ffn_down.weight")).toBe(GGML.Q6_K);  // 4864 % 256 == 0, first layers get more bits
  expect(ty("blk.5.ffn_down.weight")).toBe(GGML.Q6_K);  // (5 - 3) % 3 == 2
  expect(ty("blk.4.ffn_down.weight")).toBe(GGML.Q4_K);
  expect(ty("blk.0.attn_norm.weight")).toBe(GGML.F32);
  expect(ty("blk.0.attn_q.bias")).toBe(GGML.F32);
  const c7 = PRESETS["7b"];
  const t7 = tensorList(c7);
  expect(planType("q4_k_m", t7.find((t) => t.name === "output.weight")!, c7)).toBe(GGML.Q6_K);
  expect(planType("q4_k_m", t7.find((t) => t.name === "blk.3.attn_q.weight")!, c7)).toBe(GGML.Q4_K);
  expect(planType("q4_k_m", t7.find((t) => t.name === "token_embd.weight")!, c7)).toBe(GGML.Q4_K);
});

describe("synthetic files", () => {
  test("HF writer shards above the shard size and the shards load", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qw-syn-"));
    try {
      await writeSyntheticHf(synthSpec("tiny"), "f32", dir, { shardBytes: 4e6 });
      expect(existsSync(join(dir, "model.safetensors"))).toBe(false);
      const idx = JSON.parse(readFileSync(join(dir, "model.safetensors.index.json"), "utf8"));
      const shards = new Set(Object.values(idx.weight_map as Record<string, string>));
      expect(shards.size).toBeGreaterThan(1);
      const src = openModelSource(dir);
      expect(src.tensors.length).toBe(50);
      expect(src.weightTypes).toEqual({ F32: 50 });
      if (cpuLibraryBuilt()) {
        // the sharded directory loads into the engine and gives the in-memory model's logits exactly (f32 both)
        const run = async (m: Awaited<ReturnType<typeof openModel>>) => {
          const s = m.newSession({ maxContext: 16 });
          s.setLogitsMode(1);
          s.prefill(0, prompt(5, 2));
          const l = s.logits().data.slice();
          m.close();
          return l;
        };
        const a = await run(await openModel(dir, { backend: "cpu" }));
        const b = await run(await openSyntheticInMemory(synthSpec("tiny"), "f32", { backend: "cpu" }));
        expect(maxAbsDiff(a, b)).toBe(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("GGUF: llama.cpp metadata and the tokenizer are written", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qw-syn-"));
    try {
      const p = join(dir, "t.gguf");
      await writeSyntheticGguf(synthSpec("tiny"), "f16", p);
      const g = openGguf(p);
      expect(g.get("general.architecture")).toBe("qwen2");
      expect(g.get("tokenizer.ggml.pre")).toBe("qwen2");
      expect(g.get("tokenizer.ggml.model")).toBe("gpt2");
      expect(g.get("qwen2.attention.head_count_kv")).toBe(2);
      expect(g.get("qwen2.block_count")).toBe(4);
      expect(g.get("general.file_type")).toBe(1);
      expect((g.get("tokenizer.ggml.tokens") as string[]).length).toBe(8256);
      expect(g.tensors.length).toBe(2 + 4 * 12);
      expect(g.tensor("blk.0.attn_q.weight")!.type).toBe(GGML.F16);
      expect(g.tensor("blk.0.attn_q.bias")!.type).toBe(GGML.F32);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test.skipIf(!cpuLibraryBuilt())("GGUF and HF files load with the same logits as the in-memory model", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qw-syn-"));
    try {
      const spec = synthSpec("tiny", { seed: 2 });
      await writeSyntheticGguf(spec, "f16", join(dir, "t.gguf"));
      await writeSyntheticHf(spec, "f16", join(dir, "hf"));
      for (const f of ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"]) {
        expect(existsSync(join(dir, "hf", f))).toBe(true);
      }
      expect(JSON.parse(readFileSync(join(dir, "hf", "config.json"), "utf8")).num_key_value_heads).toBe(2);
      expect(openModelSource(join(dir, "hf")).weightTypes).toEqual({ F16: 50 });
      const logitsOf = async (m: Awaited<ReturnType<typeof openModel>>) => {
        const s = m.newSession({ maxContext: 32 });
        s.setLogitsMode(1);
        const t = s.prefill(0, prompt(6, 1));
        s.decode([0], [t]);
        const l = s.logits().data.slice();
        m.close();
        return l;
      };
      const mem = await logitsOf(await openSyntheticInMemory(spec, "f16", { backend: "cpu" }));
      const gg = await logitsOf(await openModel(join(dir, "t.gguf"), { backend: "cpu" }));
      const hf = await logitsOf(await openModel(join(dir, "hf"), { backend: "cpu" }));
      expect(maxAbsDiff(mem, gg)).toBe(0);
      // the HF file keeps one dtype, so norms and biases are f16 there (F32 in GGUF): close, not equal
      expect(maxAbsDiff(mem, hf)).toBeLessThan(2e-3);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
