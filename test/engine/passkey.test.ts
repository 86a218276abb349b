// The passkey harness (engine/measure/passkey.ts, engine/cli/passkey.ts) and Dual Chunk Attention through the engine
// on the real passkey model (models/tiny-qwen2-passkey, trained at 512 tokens; chunk 512 / local 64, s = 448):
// prompts have the README's shape and exact lengths; DCA equals plain attention for sequences no longer than
// the chunk and differs past it; chunked prefill and decode give the prefill's logits; per-layer DCA; the
// parameters reach the native session (defaults from the config, overrides, bad values refused); retrieval at
// 1024 tokens works with DCA. The kernel itself is checked against explicit position tables in
// cuda/src/opt/dca/test_dca.cpp.
import { test, expect, describe, beforeAll, afterAll } from "bun:test";
import { openModel, type Model } from "../../engine/index.ts";
import {
  buildPasskeyPrompt, dcaParams, FillerStream, NEEDLE, PASSKEY_MODEL_DIR, passkeyTable, QUESTION, rngFor, runPasskey, scorePasskey,
} from "../../engine/measure/passkey.ts";
import { cmdPasskey } from "../../engine/cli/passkey.ts";
import { brownDocuments } from "../../engine/text/brown.ts";
import { parsePromptSet } from "../../engine/measure/record.ts";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { QwenConfig } from "../../engine/api.ts";
import { cpuLibraryBuilt } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const base: QwenConfig = {
  vocab_size: 10, hidden_size: 8, intermediate_size: 8, num_hidden_layers: 1, num_attention_heads: 1, num_key_value_heads: 1,
  head_dim: 8, max_position_embeddings: 4096, rope_theta: 1e4, rms_norm_eps: 1e-6, tie_word_embeddings: true,
};

test("dcaParams: config block, then the trained length, then max_position_embeddings; overrides; bad values", () => {
  expect(dcaParams({ ...base, dual_chunk_attention_config: { chunk_size: 512, local_size: 64 } })).toEqual({ chunk: 512, local: 64, source: "dual_chunk_attention_config" });
  expect(dcaParams({ ...base, original_max_position_embeddings: 1024 })).toEqual({ chunk: 1024, local: 128, source: "original_max_position_embeddings" });
  expect(dcaParams(base)).toEqual({ chunk: 4096, local: 512, source: "max_position_embeddings" });
  expect(dcaParams(base, { chunk: 256 })).toEqual({ chunk: 256, local: 32, source: "option" });
  expect(dcaParams(base, { chunk: 256, local: 0 })).toEqual({ chunk: 256, local: 0, source: "option" });
  expect(() => dcaParams(base, { chunk: 256, local: 256 })).toThrow(/local window must be an integer in \[0, chunk = 256\)/);
});

test("scorePasskey: the first 5 digits generated", () => {
  expect(scorePasskey(" 12345.", "12345")).toBe(true);
  expect(scorePasskey(" 1 2 3 4 5 6", "12345")).toBe(true);
  expect(scorePasskey(" 12346.", "12345")).toBe(false);
  expect(scorePasskey(" 1234", "12345")).toBe(false);
  expect(scorePasskey(" 012345", "12345")).toBe(false);
});

describe.skipIf(!cpuLibraryBuilt())("passkey model on the CPU", () => {
  let m: Model;
  let filler: FillerStream;
  beforeAll(async () => {
    m = (await openModel(PASSKEY_MODEL_DIR, { backend: "cpu", threads: 2 })) as Model;
    filler = new FillerStream(m.tokenizer);
  });
  afterAll(() => m?.close());

  test("the config's DCA block is read; the registry has dca = on on the cpu", () => {
    expect(m.config.dual_chunk_attention_config).toEqual({ chunk_size: 512, local_size: 64 });
    expect(m.config.original_max_position_embeddings).toBe(512);
    const d = m.toggleRegistry().find((t) => t.id === "dca")!;
    expect(d.backends.cpu).toEqual(["off", "on"]);
  });

  test("FillerStream.atLeast: held-out text whole, then training documents only as far as asked; too much refused", () => {
    const t = m.tokenizer;
    const short = FillerStream.atLeast(t, 1000);
    expect(short.trainDocuments).toBe(0);
    expect(short.filler.tokens).toEqual(filler.tokens);
    expect(short.filler.wordStart).toEqual(filler.wordStart);
    const want = filler.tokens.length + 3000;
    const long = FillerStream.atLeast(t, want);
    expect(long.trainDocuments).toBeGreaterThan(0);
    expect(long.filler.tokens.length).toBeGreaterThanOrEqual(want);
    // the same stream as building it from the texts at once: one fewer training document would not have been enough
    const texts = [...brownDocuments("validation"), ...brownDocuments("train").slice(0, long.trainDocuments)].map((d) => d.text);
    const whole = new FillerStream(t, texts);
    expect(long.filler.tokens).toEqual(whole.tokens);
    expect(long.filler.wordStart).toEqual(whole.wordStart);
    const lastDoc = t.encode(texts[texts.length - 1] + "\n").length;
    expect(long.filler.tokens.length - lastDoc).toBeLessThan(want);
    expect(() => FillerStream.atLeast(t, 1e9)).toThrow(/the Brown corpus holds \d+ tokens of filler; 1000000000 were asked for/);
  });

  test("prompts: exact length, filler from held-out Brown text, the needle once, the question at the end, seeded", () => {
    const t = m.tokenizer;
    const q = t.encode(QUESTION);
    const depths: number[] = [];
    for (const length of [64, 300, 1024, 4096]) {
      for (let trial = 0; trial < 40; trial++) {
        const p = buildPasskeyPrompt(t, filler, length, rngFor(7, length, trial));
        expect(p.tokens.length).toBe(length);
        expect(p.key).toMatch(/^[1-9]\d{4}$/);
        expect(p.tokens.slice(-q.length)).toEqual(q);
        const needle = t.encode(NEEDLE(p.key));
        expect(p.tokens.slice(p.needleAt, p.needleAt + needle.length)).toEqual(needle);
        const text = t.decode(p.tokens);
        expect(text.split(`The pass key is ${p.key}.`).length).toBe(2);
        // The filler around the needle is one contiguous run of the validation stream.
        const fill = [...p.tokens.slice(0, p.needleAt), ...p.tokens.slice(p.needleAt + needle.length, length - q.length)];
        expect(fill).toEqual(filler.tokens.slice(p.fillerStart, p.fillerStart + fill.length));
        expect(filler.wordStart[p.fillerStart] || p.fillerStart === 0).toBe(true);
        if (p.needleAt < fill.length) expect(filler.wordStart[p.fillerStart + p.needleAt]).toBe(true);  // at a word start
        depths.push(p.depth);
      }
    }
    // Depths cover [0, 1]: every one of 5 buckets is hit over 160 prompts.
    for (let b = 0; b < 5; b++) expect(depths.some((d) => Math.min(4, Math.floor(d * 5)) === b)).toBe(true);
    const a = buildPasskeyPrompt(t, filler, 512, rngFor(1, 512, 3)), b = buildPasskeyPrompt(t, filler, 512, rngFor(1, 512, 3));
    expect(a).toEqual(b);
    expect(buildPasskeyPrompt(t, filler, 512, rngFor(2, 512, 3)).tokens).not.toEqual(a.tokens);
    expect(() => buildPasskeyPrompt(t, filler, 20, rngFor(0))).toThrow(/too short/);
  });

  // Last-position logits of a prompt, prefilled in `pieces` (then decoded token by token to the end). An fp32 KV
  // cache: with bf16, keys roped at other positions round differently and 4 layers amplify that to ~0.1 in the
  // logits (measured: 0.08 at 512 tokens), which would hide the exactness these tests are about.
  function lastLogits(tokens: number[], opts: { dca: "off" | "on" | "layer0"; prefill?: number; piece?: number }): Float32Array {
    const s = m.newSession({ maxContext: tokens.length + 8 });
    try {
      s.setToggle("kvCache", "f32");
      if (opts.dca === "on") s.setToggle("dca", "on");
      if (opts.dca === "layer0") s.setToggle("dca", "on", 0);
      s.setLogitsMode(1);
      const pre = opts.prefill ?? tokens.length, piece = opts.piece ?? pre;
      for (let i = 0; i < pre; i += piece) s.prefill(0, tokens.slice(i, Math.min(pre, i + piece)));
      for (let i = pre; i < tokens.length; i++) s.decode([0], [tokens[i]]);
      return s.logits().data.slice();
    } finally {
      s.close();
    }
  }
  const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((w, x, i) => Math.max(w, Math.abs(x - b[i])), 0);

  test("DCA equals plain attention up to the chunk (s = 448 and exactly 512 tokens), differs past it", () => {
    for (const length of [300, 448, 512]) {
      const p = buildPasskeyPrompt(m.tokenizer, filler, length, rngFor(5, length));
      const d = maxDiff(lastLogits(p.tokens, { dca: "on" }), lastLogits(p.tokens, { dca: "off" }));
      expect(d).toBeLessThan(1e-3);  // RoPE at other absolute angles: rounding only (logits up to ~35; measured 5e-5)
    }
    const p = buildPasskeyPrompt(m.tokenizer, filler, 900, rngFor(5, 900));
    const on = lastLogits(p.tokens, { dca: "on" }), off = lastLogits(p.tokens, { dca: "off" });
    expect(maxDiff(on, off)).toBeGreaterThan(0.5);
    // Per layer: DCA on layer 0 only is neither of the two.
    const l0 = lastLogits(p.tokens, { dca: "layer0" });
    expect(maxDiff(l0, on)).toBeGreaterThan(1e-2);
    expect(maxDiff(l0, off)).toBeGreaterThan(1e-2);
  });

  test("DCA: chunked prefill and token-by-token decode across chunk boundaries give the one-shot prefill's logits", () => {
    const p = buildPasskeyPrompt(m.tokenizer, filler, 1000, rngFor(9, 1000));
    const once = lastLogits(p.tokens, { dca: "on" });
    // pieces end at 448 (s), 896 (2s) and inside chunks; decode crosses 896.
    expect(maxDiff(lastLogits(p.tokens, { dca: "on", prefill: 880, piece: 224 }), once)).toBeLessThan(1e-3);
    expect(maxDiff(lastLogits(p.tokens, { dca: "on", prefill: 440, piece: 110 }), once)).toBeLessThan(1e-3);
  });

  test("DCA parameters reach the native session: overrides change the result, bad values are refused", () => {
    const p = buildPasskeyPrompt(m.tokenizer, filler, 900, rngFor(11, 900));
    const run = (dca?: { chunk?: number; local?: number }) => {
      const s = m.newSession({ maxContext: 904, ...(dca ? { dca } : {}) });
      try {
        s.setToggle("kvCache", "f32");
        s.setToggle("dca", "on");
        s.setLogitsMode(1);
        s.prefill(0, p.tokens);
        return s.logits().data.slice();
      } finally {
        s.close();
      }
    };
    const dflt = run();
    expect(maxDiff(run({ chunk: 512, local: 64 }), dflt)).toBe(0);
    expect(maxDiff(run({ chunk: 512, local: 32 }), dflt)).toBeGreaterThan(1e-3);
    // chunk >= the sequence: plain attention.
    expect(maxDiff(run({ chunk: 1024, local: 0 }), lastLogits(p.tokens, { dca: "off" }))).toBeLessThan(1e-3);
    expect(() => m.newSession({ dca: { chunk: 512, local: 512 } })).toThrow(/dca_local_size \(512\) must be smaller than dca_chunk_size \(512\)/);
    expect(() => m.newSession({ dca: { chunk: 0 } })).toThrow(/dca.chunk must be an integer >= 1/);
  });

  test("DCA reads f32/bf16 KV caches only: a quantized kvCache with dca = on is refused either way round", () => {
    const s = m.newSession({ maxContext: 64 });
    try {
      s.setToggle("kvCache", "q8");
      expect(() => s.setToggle("dca", "on", 1)).toThrow(/dca = on reads an f32 or bf16 KV cache; kvCache = q8/);
      s.setToggle("kvCache", "bf16");
      s.setToggle("dca", "on");
      expect(() => s.setToggle("kvCache", "kivi4")).toThrow(/kvCache = kivi4 is not supported with it/);
      s.prefill(0, [1, 2, 3]);  // the refused values left the session as it was, usable
    } finally {
      s.close();
    }
  });

  test("runPasskey: DCA retrieves the key at 1024 tokens (twice the trained length); heat map table and JSON shape", async () => {
    const seen: number[] = [];
    const r = await runPasskey(m, { lengths: [1024], trials: 3, seed: 4, dca: true, onTrial: (_t, done) => seen.push(done) });
    expect(seen).toEqual([1, 2, 3]);
    expect(r.dca).toEqual({ on: true, chunk: 512, local: 64, source: "dual_chunk_attention_config" });
    expect(r.byLength[0].n).toBe(3);
    expect(r.byLength[0].correct).toBeGreaterThanOrEqual(2);  // the reference reached 100 % at 1024 over 50 trials
    expect(r.cells.filter((c) => c.length === 1024).reduce((a, c) => a + c.n, 0)).toBe(3);
    expect(passkeyTable(r)).toContain("| 1024 |");
    expect(JSON.parse(JSON.stringify(r)).schema).toBe("qwen-workbench/passkey");
  });

  test("prompt-set generator: token prompts the web's prompt-set schema accepts, keys in the description", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qwb-pk-"));
    try {
      const file = join(dir, "pk set.json");
      await cmdPasskey(["--lengths", "128,700", "--trials", "2", "--seed", "3", "--backend", "cpu", "--prompt-set", file], () => {}, () => {});
      const set = parsePromptSet(readFileSync(file, "utf8"), "x");
      expect(set.name).toBe("pk-set");
      expect(set.prompts.map((p) => p.tokens!.length)).toEqual([128, 128, 700, 700]);
      expect(set.maxTokens).toBe(7);
      const t = m.tokenizer;
      const keys = [128, 700].flatMap((L) => [0, 1].map((i) => buildPasskeyPrompt(t, filler, L, rngFor(3, L, i)).key));
      expect(set.description).toContain(`keys in order: ${keys.join(" ")}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("CLI: bad options are named", async () => {
    const quiet = () => {};
    await expect(cmdPasskey(["--dca", "maybe"], quiet, quiet)).rejects.toThrow(/--dca must be on or off, got 'maybe'/);
    await expect(cmdPasskey(["--lengths", "8"], quiet, quiet)).rejects.toThrow(/--lengths expects an integer >= 16/);
    await expect(cmdPasskey(["--trials", "0"], quiet, quiet)).rejects.toThrow(/--trials expects an integer >= 1/);
    await expect(cmdPasskey(["--bogus"], quiet, quiet)).rejects.toThrow(/Unknown option '--bogus'/);
    await expect(cmdPasskey(["--dca", "on", "--dca-chunk", "64", "--dca-local", "64", "--lengths", "64", "--trials", "1", "--backend", "cpu"], quiet, quiet))
      .rejects.toThrow(/local window must be an integer in \[0, chunk = 64\)/);
  });
});
