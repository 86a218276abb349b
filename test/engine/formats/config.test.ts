import { describe, expect, test } from "bun:test";
import * as nodePath from "node:path";
import { configFromGguf, configFromHf, ggufMetadataForConfig, shortestF32, validateQwenConfig } from "../../../engine/formats/config.ts";
import { encodeGguf, gv, parseGguf } from "../../../engine/formats/gguf.ts";
import { tinyConfig, tinyGguf } from "./helpers.ts";
import { generousTimeout } from "../../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const fixture = await Bun.file(nodePath.join(import.meta.dir, "../../fixtures/tiny-qwen2-brown-config.json")).json();

const qwen05 = {
  architectures: ["Qwen2ForCausalLM"], model_type: "qwen2", hidden_size: 896, intermediate_size: 4864,
  num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2, vocab_size: 151936,
  max_position_embeddings: 32768, rope_theta: 1000000.0, rms_norm_eps: 1e-6, tie_word_embeddings: true,
  bos_token_id: 151643, eos_token_id: 151645, hidden_act: "silu", rope_scaling: null, sliding_window: 32768,
  use_sliding_window: false, torch_dtype: "bfloat16",
};

describe("config from config.json", () => {
  test("the tiny-qwen2-brown fixture (transformers-5 rope_parameters)", () => {
    const { config, warnings } = configFromHf(fixture);
    expect(config).toEqual({
      vocab_size: 8256, hidden_size: 256, intermediate_size: 768, num_hidden_layers: 4, num_attention_heads: 4,
      num_key_value_heads: 1, head_dim: 64, max_position_embeddings: 4096, rope_theta: 1e6, rms_norm_eps: 1e-6,
      tie_word_embeddings: true, bos_token_id: 8192, eos_token_id: 8192,
    });
    expect(warnings).toEqual([]);
  });

  test("a released Qwen2.5-0.5B style config (top-level rope_theta)", () => {
    const { config } = configFromHf(qwen05);
    expect(config.head_dim).toBe(64);
    expect(config.rope_theta).toBe(1e6);
    expect(config.num_key_value_heads).toBe(2);
    expect(config.eos_token_id).toBe(151645);
  });

  test("defaults: kv heads = heads, head_dim = hidden/heads, rope_theta 10000, untied", () => {
    const { config } = configFromHf({ model_type: "qwen2", vocab_size: 10, hidden_size: 64, intermediate_size: 8, num_hidden_layers: 1, num_attention_heads: 4 });
    expect(config).toMatchObject({ num_key_value_heads: 4, head_dim: 16, rope_theta: 10000, tie_word_embeddings: false, rms_norm_eps: 1e-6, max_position_embeddings: 32768 });
  });

  test("clear messages", () => {
    expect(() => configFromHf({ ...qwen05, hidden_size: 900 })).toThrow("config.json: num_attention_heads (14) must divide hidden_size (900)");
    expect(() => configFromHf({ ...qwen05, num_key_value_heads: 3 })).toThrow("config.json: num_key_value_heads (3) must divide num_attention_heads (14)");
    expect(() => configFromHf({ ...qwen05, model_type: "llama" })).toThrow("config.json: model_type is 'llama', expected 'qwen2'");
    expect(() => configFromHf({ ...qwen05, model_type: undefined, architectures: ["LlamaForCausalLM"] })).toThrow(/expected 'qwen2'/);
    expect(() => configFromHf({ ...qwen05, vocab_size: "big" })).toThrow(/config.json: vocab_size: /);
    expect(() => configFromHf({ ...qwen05, num_hidden_layers: 0 })).toThrow(/num_hidden_layers/);
    expect(() => configFromHf({ ...qwen05, head_dim: 63 })).toThrow(/head_dim \(63\) must be even/);
    expect(() => configFromHf({ ...qwen05, rope_parameters: { rope_theta: 5 } })).toThrow(/disagree/);
    expect(() => configFromHf({ ...qwen05, eos_token_id: 999999 })).toThrow(/eos_token_id \(999999\) is outside the vocabulary/);
    expect(() => configFromHf({ ...qwen05, hidden_act: "gelu" })).toThrow(/hidden_act is 'gelu'/);
    expect(() => configFromHf([1, 2])).toThrow(/not a JSON object/);
    expect(configFromHf({ ...qwen05, rope_scaling: { type: "yarn", factor: 4 } }).warnings[0]).toMatch(/rope type 'yarn'/);
  });

  test("validateQwenConfig", () => {
    expect(validateQwenConfig(tinyConfig())).toEqual(tinyConfig());
    expect(() => validateQwenConfig({ ...tinyConfig(), rope_theta: -1 }, "preset")).toThrow(/preset: rope_theta/);
  });
});

describe("config from GGUF", () => {
  test("round trip through ggufMetadataForConfig", () => {
    for (const c of [tinyConfig(), tinyConfig({ tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2 }), tinyConfig({ head_dim: 32 })]) {
      const g = parseGguf(tinyGguf(c));
      expect(configFromGguf(g).config).toEqual(c);
    }
  });

  test("f32 metadata reads back as the decimal that was meant", () => {
    expect(shortestF32(Math.fround(1e-6))).toBe(1e-6);
    expect(shortestF32(Math.fround(1e-5))).toBe(1e-5);
    expect(shortestF32(1e6)).toBe(1e6);
  });

  test("wrong or missing architecture, missing keys", () => {
    const c = tinyConfig();
    expect(() => configFromGguf(parseGguf(tinyGguf(c, { arch: "llama" })))).toThrow("GGUF: general.architecture is 'llama', expected 'qwen2'");
    expect(() => configFromGguf(parseGguf(encodeGguf({ metadata: [], tensors: [] })))).toThrow(/general.architecture is missing/);
    const m = ggufMetadataForConfig(c).filter(([k]) => k !== "qwen2.block_count");
    expect(() => configFromGguf(parseGguf(encodeGguf({ metadata: m, tensors: [] })))).toThrow(/metadata key qwen2.block_count is missing/);
    const s = ggufMetadataForConfig(c).map(([k, v]) => (k === "qwen2.block_count" ? [k, gv.str("2")] : [k, v]) as [string, typeof v]);
    expect(() => configFromGguf(parseGguf(encodeGguf({ metadata: s, tensors: [] })))).toThrow(/qwen2.block_count must be a number/);
  });
});
