import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { GGML_TYPE } from "../../../engine/formats/gguf.ts";
import { ggufToHfName, hfToGgufName, openModelSource, tensorTable, validateTensors } from "../../../engine/formats/modelfile.ts";
import { tinyConfig, tinyGguf, tinyHfDir, tmpDir } from "./helpers.ts";
import { generousTimeout } from "../../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const repoModel = nodePath.join(import.meta.dir, "../../../models/tiny-qwen2-brown");

describe("tensor table and names", () => {
  test("tied vs untied, ggml shapes", () => {
    const c = tinyConfig();
    const t = tensorTable(c);
    expect(t.length).toBe(1 + 12 * 2 + 1);
    expect(t.find((s) => s.name === "output.weight")).toBeUndefined();
    expect(t.find((s) => s.name === "blk.1.attn_k.weight")!.ne).toEqual([64, 32]);
    expect(t.find((s) => s.name === "blk.0.ffn_down.weight")!.ne).toEqual([128, 64]);
    expect(t.find((s) => s.name === "token_embd.weight")!.ne).toEqual([64, 96]);
    const u = tensorTable({ ...c, tie_word_embeddings: false });
    expect(u[u.length - 1]).toEqual({ name: "output.weight", hfName: "lm_head.weight", ne: [64, 96], layer: -1, kind: "matrix" });
    expect(t.filter((s) => s.kind === "bias").map((s) => s.name).slice(0, 3)).toEqual(["blk.0.attn_q.bias", "blk.0.attn_k.bias", "blk.0.attn_v.bias"]);
    expect(t.filter((s) => s.kind === "norm").length).toBe(2 * 2 + 1);
    expect(t.find((s) => s.name === "blk.1.ffn_up.weight")!.layer).toBe(1);
  });

  test("HF ↔ GGUF names", () => {
    expect(hfToGgufName("model.layers.11.self_attn.q_proj.weight")).toBe("blk.11.attn_q.weight");
    expect(hfToGgufName("model.layers.0.self_attn.v_proj.bias")).toBe("blk.0.attn_v.bias");
    expect(hfToGgufName("model.layers.3.mlp.down_proj.weight")).toBe("blk.3.ffn_down.weight");
    expect(hfToGgufName("model.layers.3.post_attention_layernorm.weight")).toBe("blk.3.ffn_norm.weight");
    expect(hfToGgufName("lm_head.weight")).toBe("output.weight");
    expect(hfToGgufName("model.rotary_emb.inv_freq")).toBeUndefined();
    for (const s of tensorTable(tinyConfig({ tie_word_embeddings: false }))) {
      expect(hfToGgufName(s.hfName)).toBe(s.name);
      expect(ggufToHfName(s.name)).toBe(s.hfName);
    }
  });
});

describe("open model sources", () => {
  test("the repo's tiny-qwen2-brown HF directory", () => {
    const m = openModelSource(repoModel);
    expect(m.format).toBe("hf");
    expect(m.config.hidden_size).toBe(256);
    expect(m.tensors.length).toBe(50);
    expect(m.weightTypes).toEqual({ BF16: 50 });
    expect(m.tokenizer.kind).toBe("hf");
    const q = m.tensors.find((t) => t.name === "blk.0.attn_q.weight")!;
    expect(q.sourceName).toBe("model.layers.0.self_attn.q_proj.weight");
    expect(q.ggmlType).toBe(GGML_TYPE.BF16);
    expect(q.ne).toEqual([256, 256]);
    const e = m.tensors[0];
    expect(e.ne).toEqual([256, 8256]);
    expect(e.data.length).toBe(256 * 8256 * 2);
    expect(openModelSource(nodePath.join(repoModel, "config.json")).format).toBe("hf");
  });

  test("GGUF file", () => {
    const dir = tmpDir();
    const p = nodePath.join(dir, "m.gguf");
    const c = tinyConfig({ tie_word_embeddings: false });
    fs.writeFileSync(p, tinyGguf(c, { type: GGML_TYPE.Q8_0 }));
    const m = openModelSource(p);
    expect(m.format).toBe("gguf");
    expect(m.config).toEqual(c);
    expect(m.tensors.map((t) => t.name)).toEqual(tensorTable(c).map((s) => s.name));
    expect(m.weightTypes).toEqual({ Q8_0: 2 + 2 * 7, F32: 2 * 5 + 1 });
    expect(m.tokenizer.kind).toBe("gguf");
    expect(m.metadata["tokenizer.ggml.tokens"]).toEqual({ array: "STRING", length: 96 });
    expect(m.metadata["qwen2.block_count"]).toBe(2);
    expect(openModelSource(dir).format).toBe("gguf");
    fs.rmSync(dir, { recursive: true });
  });

  test("sharded HF directory (f32)", async () => {
    const c = tinyConfig({ tie_word_embeddings: false });
    const dir = await tinyHfDir(c, { sharded: 20000, dtype: "F32" });
    const m = openModelSource(dir);
    expect(m.weightTypes).toEqual({ F32: tensorTable(c).length });
    expect(m.tokenizer.kind).toBe("none");
    fs.rmSync(dir, { recursive: true });
  });

  test("tied model with a stray lm_head.weight: dropped with a warning; unknown tensors warned", async () => {
    const c = tinyConfig();
    const dir = await tinyHfDir({ ...c, tie_word_embeddings: false }, { configOver: { tie_word_embeddings: true } });
    const m = openModelSource(dir);
    expect(m.tensors.find((t) => t.name === "output.weight")).toBeUndefined();
    expect(m.warnings.join("\n")).toMatch(/ignoring lm_head.weight/);
    fs.rmSync(dir, { recursive: true });
  });
});

describe("validation messages", () => {
  test("wrong architecture", () => {
    const dir = tmpDir();
    const p = nodePath.join(dir, "m.gguf");
    fs.writeFileSync(p, tinyGguf(tinyConfig(), { arch: "llama" }));
    expect(() => openModelSource(p)).toThrow(/general.architecture is 'llama', expected 'qwen2'/);
    fs.rmSync(dir, { recursive: true });
  });

  test("missing tensor (GGUF and HF)", async () => {
    const dir = tmpDir();
    const p = nodePath.join(dir, "m.gguf");
    fs.writeFileSync(p, tinyGguf(tinyConfig(), { drop: ["blk.1.ffn_up.weight"] }));
    expect(() => openModelSource(p)).toThrow(/missing tensor blk.1.ffn_up.weight \(HF model.layers.1.mlp.up_proj.weight\), expected shape \[64, 128\]/);
    const hf = await tinyHfDir(tinyConfig(), { drop: ["model.layers.0.self_attn.k_proj.bias", "model.norm.weight"] });
    expect(() => openModelSource(hf)).toThrow(/2 problems: missing tensor blk.0.attn_k.bias .*; missing tensor output_norm.weight/);
    // untied config in GGUF is derived from output.weight, so an untied HF model missing lm_head is an error
    const hf2 = await tinyHfDir(tinyConfig({ tie_word_embeddings: false }), { drop: ["lm_head.weight"] });
    expect(() => openModelSource(hf2)).toThrow(/missing tensor output.weight \(HF lm_head.weight\)/);
    for (const d of [dir, hf, hf2]) fs.rmSync(d, { recursive: true });
  });

  test("wrong shape names both shapes (the QKV trap)", async () => {
    const hf = await tinyHfDir(tinyConfig(), { shape: { "model.layers.1.self_attn.k_proj.weight": [64, 64] } });
    expect(() => openModelSource(hf)).toThrow(/tensor blk.1.attn_k.weight \(model.layers.1.self_attn.k_proj.weight\) has shape \[64, 64\], expected \[64, 32\] \(ggml order\)/);
    const dir = tmpDir();
    const p = nodePath.join(dir, "m.gguf");
    fs.writeFileSync(p, tinyGguf(tinyConfig(), { ne: { "blk.0.attn_q.bias": [32] } }));
    expect(() => openModelSource(p)).toThrow(/tensor blk.0.attn_q.bias has shape \[32\], expected \[64\]/);
    for (const d of [dir, hf]) fs.rmSync(d, { recursive: true });
  });

  test("trailing 1s in ggml shapes are padding: a [64, 1] norm is accepted as [64]", () => {
    const dir = tmpDir();
    const p = nodePath.join(dir, "m.gguf");
    fs.writeFileSync(p, tinyGguf(tinyConfig(), { ne: { "blk.0.attn_norm.weight": [64, 1], "blk.0.attn_q.weight": [64, 64, 1, 1] } }));
    const m = openModelSource(p);
    expect(m.tensors.find((t) => t.name === "blk.0.attn_norm.weight")!.ne).toEqual([64]);
    expect(m.tensors.find((t) => t.name === "blk.0.attn_q.weight")!.ne).toEqual([64, 64]);
    expect(m.tensors.find((t) => t.name === "blk.0.attn_q.weight")!.data.length).toBe(64 * 64 * 4);
    fs.writeFileSync(p, tinyGguf(tinyConfig(), { ne: { "blk.0.attn_norm.weight": [1, 64] } }));
    expect(() => openModelSource(p)).toThrow(/blk.0.attn_norm.weight has shape \[1, 64\], expected \[64\]/);
    fs.rmSync(dir, { recursive: true });
  });

  test("unsupported types and dtypes", async () => {
    const dir = tmpDir();
    const p = nodePath.join(dir, "m.gguf");
    fs.writeFileSync(p, tinyGguf(tinyConfig(), { type: GGML_TYPE.Q4_1 }));
    expect(() => openModelSource(p)).toThrow(/unsupported type Q4_1 in tensor token_embd.weight/);
    const hf = await tinyHfDir(tinyConfig(), { dtype: "I8" });
    expect(() => openModelSource(hf)).toThrow(/tensor model.embed_tokens.weight has dtype I8; supported: F32, F16, BF16/);
    expect(() => validateTensors(tinyConfig(), [], "x")).toThrow(/^x: 26 problems: missing tensor token_embd.weight/);
    for (const d of [dir, hf]) fs.rmSync(d, { recursive: true });
  });

  test("bad sources", async () => {
    expect(() => openModelSource("/nonexistent/x.gguf")).toThrow(/does not exist/);
    const dir = tmpDir();
    expect(() => openModelSource(dir)).toThrow(/needs config.json/);
    const p = nodePath.join(dir, "x.bin");
    fs.writeFileSync(p, "hello");
    expect(() => openModelSource(p)).toThrow(/not a GGUF file/);
    const g = nodePath.join(dir, "x.gguf");
    fs.writeFileSync(g, "");
    expect(() => openModelSource(g)).toThrow(/too short for the magic/);
    fs.writeFileSync(nodePath.join(dir, "config.json"), "{");
    expect(() => openModelSource(dir)).toThrow(/config.json: not valid JSON/);
    fs.writeFileSync(nodePath.join(dir, "config.json"), JSON.stringify({ model_type: "llama" }));
    expect(() => openModelSource(dir)).toThrow(/model_type is 'llama', expected 'qwen2'/);
    fs.rmSync(dir, { recursive: true });
  });
});
