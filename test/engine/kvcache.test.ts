// kvCache = q8 | kivi4 | kivi2 through the engine API on the CPU backend (the formats and kernels are tested in
// cuda/src/opt/kvcache/test_kvcache.cpp): the session reports the cache's bytes, switching clears the sequences, greedy
// decoding stays close to f32, prefill equals token-by-token decode (kv_format.hpp semantics), and the
// perplexity of the embedded model on Brown validation tokens stays near the f32-KV baseline.
import { describe, expect, test } from "bun:test";
import { measurePerplexity } from "../../engine/measure/perplexity.ts";
import { textTokens } from "../../engine/measure/perplexity-run.ts";
import type { EngineSession } from "../../engine/api.ts";
import { opIndex } from "../../engine/catalog.ts";
import { cpuLibraryBuilt } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

/** Runs fn with a session of the embedded model (last-position logits, context 512) and 400 Brown validation tokens. */
async function withBrown(fn: (s: EngineSession, tokens: number[]) => void): Promise<void> {
  const { openModel } = await import("../../engine/index.ts");
  const m = await openModel("default", { backend: "cpu", threads: 2 });
  try {
    const { tokens } = textTokens(m, { kind: "brown" }, 400);
    const s = m.newSession({ maxContext: 512, maxPrefill: 512 });
    s.setLogitsMode(1);
    try { fn(s, tokens); } finally { s.close(); }
  } finally { m.close(); }
}

describe.skipIf(!cpuLibraryBuilt())("quantized KV cache on the CPU engine", () => {
  test("registry, session info, reset on switch, bad values", async () => {
    const { openModel } = await import("../../engine/index.ts");
    const m = await openModel("default", { backend: "cpu", threads: 2 });
    try {
      const def = m.toggleRegistry().find((t) => t.id === "kvCache")!;
      expect(def.backends.cpu).toEqual(["bf16", "f32", "q8", "kivi4", "kivi2"]);
      expect(def.perLayer).toBe(false); // session-wide: one cache layout for every layer
      const s = m.newSession({ maxBatch: 2, maxContext: 256 });
      const c = m.config, streams = c.num_hidden_layers * c.num_key_value_heads, d = c.head_dim;
      const bf = s.kvInfo!();
      expect(bf).toEqual({ kvCache: "bf16", kvBytesPerToken: streams * 4 * d, kvBytes: streams * 4 * d * 2 * 256, kvResidualTokens: 0, kvMaxRollback: -1 });
      s.prefill(0, [10, 11, 12]);
      s.setToggle("kvCache", "q8");
      expect(s.seqLen(0)).toBe(0); // needsReset: switching the cache clears every sequence
      const q8 = s.kvInfo!();
      expect(q8.kvCache).toBe("q8");
      expect(q8.kvBytesPerToken).toBe(streams * 2 * (d + (2 * d) / 32)); // int8 codes + an fp16 scale per 32
      expect(q8.kvBytesPerToken / bf.kvBytesPerToken).toBeLessThanOrEqual(0.532);
      s.setToggle("kvCache", "kivi2");
      const k2 = s.kvInfo!();
      expect(k2.kvBytesPerToken).toBe(streams * (2 * (d / 4) + 8 * (d / 32)));
      expect(k2.kvResidualTokens).toBe(128);
      expect(k2.kvMaxRollback).toBeGreaterThan(0);
      expect(s.toggles().kvCache).toBe("kivi2");
      // op records count the attention's K/V bytes in the cache's format (kv_cache_elem_bytes; the registry's cost
      // note of kvCache states the same numbers): one prefill of 16 tokens, layer 0
      const attnBytes = (kv: string) => {
        s.setToggle("kvCache", kv);
        s.setProfiling("kernels");
        s.takeRecords();
        s.prefill(0, Array.from({ length: 16 }, (_, i) => 10 + i));
        const { ops } = s.takeRecords();
        s.setProfiling(false);
        s.reset(0);
        const i = ops.op.findIndex((o, j) => o === opIndex("attention") && ops.layer[j] === 0);
        return ops.bytes[i];
      };
      const nH = c.num_attention_heads, nKV = c.num_key_value_heads;
      const expected = (kvElem: number) => 2 * 16 * nKV * d * kvElem * 2 + 16 * nH * d * 2 * 4; // K,V read + written; q in, z out (fp32)
      for (const [kv, elem] of [["bf16", 2], ["f32", 4], ["q8", 34 / 32], ["kivi4", 4 / 8 + 1 / 8], ["kivi2", 2 / 8 + 1 / 8]] as const) {
        expect(attnBytes(kv)).toBeCloseTo(expected(elem), 3);
      }
      s.setToggle("kvCache", "kivi2");
      expect(() => s.setToggle("kvCache", "q3")).toThrow(/not a value/);
      expect(s.toggles().kvCache).toBe("kivi2"); // a refused value keeps the old one
      s.close();
    } finally { m.close(); }
  });

  test("prefill equals token-by-token decode; last-position logits stay close to f32 KV", () => withBrown((s, tokens) => {
      const lastByPrefill = (kv: string, n: number) => {
        s.setToggle("kvCache", kv);
        s.reset(0);
        s.prefill(0, tokens.slice(0, n));
        return s.logits().data.slice();
      };
      const lastByDecode = (kv: string, n: number) => {
        s.setToggle("kvCache", kv);
        s.reset(0);
        s.prefill(0, tokens.slice(0, 1));
        for (let i = 1; i < n; i++) s.decode([0], [tokens[i]]);
        return s.logits().data.slice();
      };
      for (const kv of ["q8", "kivi4", "kivi2"]) {
        const a = lastByPrefill(kv, 300), b = lastByDecode(kv, 300);
        let diff = 0;
        for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
        expect(diff).toBeLessThan(1e-3); // same cache contents, fp32 summation order only
      }
      const f32 = lastByPrefill("f32", 300);
      const errs: Record<string, number> = {};
      for (const kv of ["bf16", "q8", "kivi4", "kivi2"]) {
        const x = lastByPrefill(kv, 300);
        let e = 0, r = 0;
        for (let i = 0; i < x.length; i++) { e = Math.max(e, Math.abs(x[i] - f32[i])); r = Math.max(r, Math.abs(f32[i])); }
        errs[kv] = e / r;
      }
      console.log(`[kvcache] last-position logits vs f32 KV (max abs / max|logit|): ${JSON.stringify(errs)}`);
      expect(errs.q8).toBeLessThan(2e-2);
      expect(errs.kivi2).toBeGreaterThan(errs.q8); // 2-bit codes are coarser than 8-bit ones
  }));

  test("truncate on kivi: exact down to the ring's limit (bitwise as a fresh run), refused below it with the limit", () => withBrown((s, tokens) => {
      for (const kv of ["kivi4", "kivi2"]) {
        s.setToggle("kvCache", kv);
        const lim = s.kvInfo!().kvMaxRollback;
        expect(lim).toBe(97);
        // 300 tokens (past the 256-slot ring): cuts to 192 or more are exact (kv_format.hpp kivi_min_truncate)
        s.reset(0);
        s.prefill(0, tokens.slice(0, 300));
        expect(() => s.truncate(0, 191)).toThrow(/kivi\d keeps full-precision rows of only the last 256 positions.*truncated exactly to 192 tokens or more, not to 191.*reset/);
        expect(s.seqLen(0)).toBe(300); // a refused cut changes nothing
        s.truncate(0, 300 - lim); // within kvMaxRollback: always allowed
        s.truncate(0, 192);
        s.decode([0], [tokens[192]]);
        const cut = s.logits().data.slice();
        s.reset(0);
        s.prefill(0, tokens.slice(0, 192));
        s.decode([0], [tokens[192]]);
        expect(s.logits().data).toEqual(cut); // the cut sequence goes on exactly as one that never held the rest
        // while a sequence stays inside the ring (194 tokens since the reset) any cut is exact
        s.decode([0], [tokens[193]]);
        s.truncate(0, 100);
        // the limit follows the longest length since the reset, not the current one: after 300 -> 200 -> 250 a
        // cut to 191 is still refused; truncate to 0 (a reset) always works
        s.reset(0);
        s.prefill(0, tokens.slice(0, 300));
        s.truncate(0, 200);
        s.prefill(0, tokens.slice(200, 250));
        expect(() => s.truncate(0, 191)).toThrow(/reached 300 tokens\) can be truncated exactly to 192/);
        s.truncate(0, 0);
        expect(s.seqLen(0)).toBe(0);
      }
  }));

  test("perplexity on Brown validation tokens: q8 within 0.5 % of f32 KV, kivi4/kivi2 reported", async () => {
    const { openModel } = await import("../../engine/index.ts");
    const m = await openModel("default", { backend: "cpu", threads: 2 });
    try {
      const { tokens } = textTokens(m, { kind: "brown" }, 2048);
      const s = m.newSession({ maxContext: 512 });
      const ppl: Record<string, number> = {};
      for (const kv of ["f32", "q8", "kivi4", "kivi2"]) {
        s.setToggle("kvCache", kv);
        ppl[kv] = (await measurePerplexity(s, tokens, m.config.vocab_size, { ctx: 512 })).ppl!;
      }
      console.log(`[kvcache] perplexity over ${tokens.length} Brown tokens, ctx 512: ${JSON.stringify(ppl)}`);
      expect(Math.abs(ppl.q8 - ppl.f32) / ppl.f32).toBeLessThan(0.005);
      expect(Math.abs(ppl.kivi4 - ppl.f32) / ppl.f32).toBeLessThan(0.05);
      expect(ppl.kivi2).toBeGreaterThan(ppl.f32 * 0.95);
      s.close();
    } finally { m.close(); }
  });
});

describe.skipIf(!cpuLibraryBuilt())("bench at depth (llama-bench -d)", () => {
  test("tg after an untimed prefill of `depth` tokens, labelled @ d<depth>, with the KV type and memory", async () => {
    const { openModel } = await import("../../engine/index.ts");
    const { runBenchCase, benchTableMd } = await import("../../engine/measure/bench-core.ts");
    const m = await openModel("default", { backend: "cpu", threads: 2 });
    try {
      const s = m.newSession({ maxBatch: 2, maxContext: 300, maxPrefill: 64 }); // depth 200 needs 4 prefill chunks
      s.setToggle("kvCache", "kivi4");
      const r = runBenchCase(m, s, { nPrompt: 0, nGen: 4, batch: 2, depth: 200 }, { reps: 3, warmup: 0 });
      const row = r.rows[0];
      expect(row.test).toBe("tg4 b2 @ d200");
      const e = row.extra as Record<string, unknown>;
      expect(e.kv_cache).toBe("kivi4");
      expect(e.depth).toBe(200);
      expect(e.kv_bytes_used).toBe(Math.round(s.kvInfo!().kvBytesPerToken * 204 * 2));
      expect(s.seqLen(0)).toBe(204); // the decode ran on top of the 200 cached tokens
      expect(benchTableMd(r.rows)).toContain("| kivi4 ");
      expect(() => runBenchCase(m, s, { nPrompt: 0, nGen: 200, depth: 200 }, { reps: 3 })).toThrow(/exceed max context 300/);
      s.close();
    } finally { m.close(); }
  });

  test("the depth is filled once and each rep decodes from it again (truncate), unless the cache cannot roll back nGen", async () => {
    const { openModel } = await import("../../engine/index.ts");
    const { runBenchCase } = await import("../../engine/measure/bench-core.ts");
    const m = await openModel("default", { backend: "cpu", threads: 2 });
    try {
      const s = m.newSession({ maxBatch: 2, maxContext: 400, maxPrefill: 64 });
      let prefills = 0;
      const prefill = s.prefill.bind(s);
      s.prefill = (seq: number, toks: number[]) => { prefills++; return prefill(seq, toks); };
      const toks: number[][] = [];
      const decode = s.decode.bind(s);
      s.decode = (seqs: number[], t: number[]) => { const r = decode(seqs, t); if (s.seqLen(0) === 201) toks.push([...t]); return r; };
      s.setToggle("kvCache", "q8");  // rolls back any depth
      runBenchCase(m, s, { nPrompt: 0, nGen: 4, batch: 2, depth: 200 }, { reps: 3, warmup: 1 });
      expect(prefills).toBe(2 * 4);  // one fill: 2 sequences of 200 tokens in chunks of 64
      expect(s.seqLen(0)).toBe(204);
      expect(toks.length).toBe(4);   // every rep's first step fed the fill's tokens again
      for (const t of toks) expect(t).toEqual(toks[0]);
      // kivi2 cuts back exactly at most kvMaxRollback tokens: a longer decode refills for every rep
      s.setToggle("kvCache", "kivi2");
      const rb = s.kvInfo!().kvMaxRollback;
      expect(rb).toBeGreaterThan(0);
      prefills = 0;
      runBenchCase(m, s, { nPrompt: 0, nGen: rb + 1, batch: 1, depth: 200 }, { reps: 3, warmup: 0 });
      expect(prefills).toBe(3 * 4);
      s.close();
    } finally { m.close(); }
  });
});
