// Sparse prefill (toggle sparsePrefill = vertical-slash | block-sparse, cuda/src/opt/sparse_prefill/) through the engine on the real
// passkey model (models/tiny-qwen2-passkey: 4 heads, 1 kv head, head_dim 64): budgets covering every key give the
// dense logits bit for bit (one prefill, chunked prefill, a prompt shorter than the 64 estimating queries, with DCA
// past the chunk); small budgets differ and the session reports density, recall and output error per layer and head;
// bad budgets and unsupported combinations are refused with messages naming them; the attention op records count the
// keys visited (full budget: the dense FLOPs plus the estimate, dense bytes). The kernel itself is tested in
// cuda/src/opt/sparse_prefill/test_sparse_prefill.cpp.
import { test, expect, describe, beforeAll, afterAll } from "bun:test";
import { openModel, type Model } from "../../engine/index.ts";
import type { SparseMode, SparseOptions } from "../../engine/api.ts";
import { opNames } from "../../engine/catalog.ts";
import { buildPasskeyPrompt, FillerStream, PASSKEY_MODEL_DIR, passkeyTable, passkeyTitle, rngFor, runPasskey } from "../../engine/measure/passkey.ts";
import { cmdPasskey } from "../../engine/cli/passkey.ts";
import { sparseInfoTable, sparseSessionOptions } from "../../engine/sparse.ts";
import { cpuLibraryBuilt } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const FULL: SparseOptions = { vertical: 1 << 20, slash: 1 << 20 };

test("sparseSessionOptions: names a bad budget", () => {
  expect(sparseSessionOptions({ vertical: 5, slash: 0, local: 1, sink: 0, stats: true }))
    .toEqual({ sparse_vertical: 5, sparse_slash: 0, sparse_local: 1, sparse_sink: 0, sparse_stats: true });
  expect(() => sparseSessionOptions({ local: 0 })).toThrow(/sparse.local must be an integer in \[1, 1073741824\] \(diagonal 0, each query's own key, is always visited\), got 0/);
  expect(() => sparseSessionOptions({ vertical: -1 })).toThrow(/sparse.vertical must be an integer in \[0/);
  expect(() => sparseSessionOptions({ slash: 1.5 })).toThrow(/sparse.slash must be an integer/);
});

describe.skipIf(!cpuLibraryBuilt())("sparse prefill on the passkey model (CPU)", () => {
  let m: Model;
  let filler: FillerStream;
  beforeAll(async () => {
    m = (await openModel(PASSKEY_MODEL_DIR, { backend: "cpu", threads: 2 })) as Model;
    filler = new FillerStream(m.tokenizer);
  });
  afterAll(() => m?.close());

  /** All-position logits of `tokens` prefilled in `pieces` (sizes), under the toggles and budgets given. */
  function logits(tokens: number[], o: { sparse?: SparseOptions; mode?: SparseMode; dca?: boolean; pieces?: number[]; kv?: string } = {}) {
    const s = m.newSession({ maxContext: tokens.length + 8, ...(o.sparse ? { sparse: o.sparse } : {}) });
    try {
      if (o.kv) s.setToggle("kvCache", o.kv);
      if (o.sparse) s.setToggle("sparsePrefill", o.mode ?? "vertical-slash");
      if (o.dca) s.setToggle("dca", "on");
      s.setLogitsMode(2);
      const parts: Float32Array[] = [];
      let at = 0;
      for (const n of o.pieces ?? [tokens.length]) {
        s.prefill(0, tokens.slice(at, at + n));
        parts.push(s.logits().data.slice());
        at += n;
      }
      const data = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
      parts.reduce((off, p) => (data.set(p, off), off + p.length), 0);
      return { data, info: s.sparseInfo() };
    } finally {
      s.close();
    }
  }
  const prompt = (L: number, trial = 0) => buildPasskeyPrompt(m.tokenizer, filler, L, rngFor(9, L, trial)).tokens;
  const same = (a: Float32Array, b: Float32Array) => a.length === b.length && Buffer.from(a.buffer).equals(Buffer.from(b.buffer));

  test("the registry offers vertical-slash and block-sparse on the cpu and on cuda (compile-checked only there)", () => {
    const d = m.toggleRegistry().find((t) => t.id === "sparsePrefill")!;
    expect(d.backends.cpu).toEqual(["off", "vertical-slash", "block-sparse"]);
    expect(d.backends.cuda).toEqual(["off", "vertical-slash", "block-sparse"]);
  });

  test("budgets covering every key: the dense logits bit for bit (one prefill, chunks, < 64 tokens, budget = length)", () => {
    const p = prompt(300);
    const dense = logits(p);
    expect(same(logits(p, { sparse: FULL }).data, dense.data)).toBe(true);
    expect(same(logits(p, { sparse: { vertical: 300, slash: 0, sink: 0, local: 1 } }).data, dense.data)).toBe(true);
    // chunk boundaries: each chunk estimates from its own last 64 queries and attends to every earlier key
    expect(same(logits(p, { sparse: FULL, pieces: [100, 37, 163] }).data, logits(p, { pieces: [100, 37, 163] }).data)).toBe(true);
    const short = prompt(40);
    expect(same(logits(short, { sparse: FULL }).data, logits(short).data)).toBe(true);
    // f32 KV cache too
    expect(same(logits(p, { sparse: FULL, kv: "f32" }).data, logits(p, { kv: "f32" }).data)).toBe(true);
  });

  test("with DCA past the chunk (700 tokens): full budgets equal dca alone bit for bit", () => {
    const p = prompt(700);
    expect(same(logits(p, { sparse: FULL, dca: true }).data, logits(p, { dca: true }).data)).toBe(true);
  });

  test("small budgets: different logits, density < 1, recall and error per layer and head", () => {
    const p = prompt(600);
    const dense = logits(p);
    const sp = logits(p, { sparse: { vertical: 16, slash: 16, local: 32, sink: 4, stats: true } });
    expect(same(sp.data, dense.data)).toBe(false);
    const info = sp.info;
    expect(info).toMatchObject({ vertical: 16, slash: 16, local: 32, sink: 4, lastQ: 64, stats: true, steps: 1 });
    expect(info.layers.length).toBe(4);
    for (const l of info.layers) {
      expect(l.heads.length).toBe(4);
      for (const h of l.heads) {
        expect(h.rows).toBe(600);
        expect(h.density).toBeGreaterThan(0);
        expect(h.density).toBeLessThan(0.5);  // at most 68 lines of ~300 keys on average
        expect(h.recall!).toBeGreaterThan(0);
        expect(h.recall!).toBeLessThanOrEqual(1);
        expect(h.relL2!).toBeGreaterThan(0);
        expect(h.cosine!).toBeLessThanOrEqual(1 + 1e-9);
      }
    }
    expect(sparseInfoTable(info)).toContain("| 3 |");
    // the info describes the latest prompt: a new prompt (position 0) starts over
    const again = logits(prompt(200), { sparse: { vertical: 16, slash: 16, local: 32, sink: 4 } });
    expect(again.info.steps).toBe(1);
    expect(again.info.layers[0].heads[0].rows).toBe(200);
    expect(again.info.layers[0].heads[0].recall).toBeUndefined();  // no stats asked
    // toggle off: nothing measured
    expect(logits(p).info.steps).toBe(0);
  });

  const BLOCKS_ALL: SparseOptions = { blocks: 1 << 20 };

  test("block-sparse, every key block: the dense logits bit for bit (one prefill, chunks, < 64 tokens, DCA past the chunk)", () => {
    const p = prompt(300);
    expect(same(logits(p, { sparse: BLOCKS_ALL, mode: "block-sparse" }).data, logits(p).data)).toBe(true);
    // local covering every block instead of the budget
    expect(same(logits(p, { sparse: { blocks: 0, local: 1 << 20 }, mode: "block-sparse" }).data, logits(p).data)).toBe(true);
    expect(same(logits(p, { sparse: BLOCKS_ALL, mode: "block-sparse", pieces: [100, 37, 163] }).data, logits(p, { pieces: [100, 37, 163] }).data)).toBe(true);
    const short = prompt(40);
    expect(same(logits(short, { sparse: BLOCKS_ALL, mode: "block-sparse" }).data, logits(short).data)).toBe(true);
    const long = prompt(700);
    expect(same(logits(long, { sparse: BLOCKS_ALL, mode: "block-sparse", dca: true }).data, logits(long, { dca: true }).data)).toBe(true);
  });

  test("block-sparse, small budget: different logits, density < 1, recall per head, the budget in the session info", () => {
    const p = prompt(640);
    const sp = logits(p, { sparse: { blocks: 1, local: 64, sink: 64, stats: true }, mode: "block-sparse" });
    expect(same(sp.data, logits(p).data)).toBe(false);
    expect(sp.info).toMatchObject({ blocks: 1, blockSize: 64, local: 64, sink: 64, stats: true, steps: 1 });
    for (const l of sp.info.layers)
      for (const h of l.heads) {
        expect(h.rows).toBe(640);
        expect(h.density).toBeLessThan(0.6);  // <= 3 blocks of 64 per query block of up to 10
        expect(h.recall!).toBeGreaterThan(0);
        expect(h.recall!).toBeLessThanOrEqual(1);
      }
    expect(sparseInfoTable(sp.info)).toContain("blocks 1 (of 64)");
  });

  /** The attention records (FLOPs, bytes, kernel) of one profiled prefill of `tokens`. */
  function attentionRecords(tokens: number[], mode: "off" | SparseMode, sparse?: SparseOptions) {
    const s = m.newSession({ maxContext: tokens.length + 8, ...(sparse ? { sparse } : {}) });
    try {
      s.setToggle("sparsePrefill", mode);
      s.setProfiling(true);
      s.prefill(0, tokens);
      const r = s.takeRecords();
      const idx = r.ops.op.map((o, i) => (opNames()[o] === "attention" ? i : -1)).filter((i) => i >= 0);
      return idx.map((i) => ({ flops: r.ops.flops[i], bytes: r.ops.bytes[i], kernel: r.kernels[r.ops.kernel[i]] }));
    } finally {
      s.close();
    }
  }

  test("op records count the keys visited: full budget = dense FLOPs + the estimate and dense bytes; small budgets fewer", () => {
    const p = prompt(640);
    const dense = attentionRecords(p, "off");
    expect(dense.length).toBe(4);
    const arms: [SparseMode, SparseOptions, SparseOptions, string][] = [
      ["vertical-slash", FULL, { vertical: 8, slash: 8, local: 16, sink: 4 }, "sparse_vs"],
      ["block-sparse", BLOCKS_ALL, { blocks: 1, local: 64, sink: 64 }, "sparse_bs"],
    ];
    for (const [mode, full, small, kernel] of arms) {
      const f = attentionRecords(p, mode, full), sm = attentionRecords(p, mode, small);
      for (let l = 0; l < 4; l++) {
        expect(f[l].kernel).toContain(kernel);
        expect(f[l].flops).toBeGreaterThan(dense[l].flops);          // every key, plus the pattern estimate
        expect(f[l].flops).toBeLessThan(dense[l].flops * 1.5);
        expect(f[l].bytes).toBe(dense[l].bytes);                     // every K and V row read once
        expect(sm[l].flops).toBeLessThan(dense[l].flops * 0.6);     // the keys visited, not the dense count
        expect(sm[l].bytes).toBeLessThanOrEqual(dense[l].bytes);
      }
    }
  });

  test("runPasskey with block-sparse: its mode and budget in the result and the title", async () => {
    const r = await runPasskey(m, { lengths: [1024], trials: 1, seed: 4, dca: true, sparse: "block-sparse", sparseOptions: { blocks: 4, local: 64, sink: 64 } });
    expect(r.sparse).toMatchObject({ on: true, mode: "block-sparse", blocks: 4, local: 64, sink: 64 });
    expect(r.sparse!.byLength[0].density).toBeLessThan(0.6);
    expect(passkeyTitle(r)).toContain("sparse prefill block-sparse (blocks 4, local 64, sink 64)");
  });

  test("bad budgets and unsupported combinations are refused with clear messages", () => {
    expect(() => m.newSession({ sparse: { local: 0 } })).toThrow(/sparse.local must be an integer in \[1/);
    expect(() => m.newSession({ sparse: { vertical: -3 } })).toThrow(/sparse.vertical must be an integer in \[0/);
    // the native check too (bypassing the TS one)
    const native = (m as unknown as { native: { createSession(o: object): { destroy(): void } } }).native;
    expect(() => native.createSession({ sparse_local: 0 })).toThrow(/"sparse_local" must be an integer in \[1, 1073741824\]/);
    expect(() => native.createSession({ sparse_stats: 1 })).toThrow(/"sparse_stats" must be true or false/);
    expect(() => native.createSession({ sparse_budget: 1 })).toThrow(/sparse_budget/);
    const s = m.newSession({ maxContext: 64 });
    try {
      s.setToggle("kvCache", "q8");
      s.setToggle("sparsePrefill", "vertical-slash");
      expect(() => s.prefill(0, prompt(40))).toThrow(/sparsePrefill = vertical-slash reads an f32 or bf16 KV cache; kvCache = q8/);
      s.setToggle("kvCache", "bf16");
      s.setToggle("attention", "sage-int8", 2);
      expect(() => s.prefill(0, prompt(40))).toThrow(/attention = sage-int8 at the same layer is not supported/);
      s.setToggle("attention", "flash-bf16");
      s.prefill(0, prompt(40));  // usable again
    } finally {
      s.close();
    }
  });

  test("runPasskey with sparse prefill over DCA: density and recall per length in the table", async () => {
    const r = await runPasskey(m, {
      lengths: [1024], trials: 2, seed: 4, dca: true, sparse: "vertical-slash", sparseOptions: { vertical: 64, slash: 64, local: 64, sink: 4, stats: true },
    });
    expect(r.sparse).toMatchObject({ on: true, vertical: 64, slash: 64, local: 64, sink: 4, stats: true });
    const b = r.sparse!.byLength[0];
    expect(b.density).toBeGreaterThan(0);
    expect(b.density).toBeLessThan(0.5);
    expect(b.recall!).toBeGreaterThan(0.5);
    expect(passkeyTable(r)).toContain("keys visited");
  });

  test("CLI: sparse flags are named when bad", async () => {
    const quiet = () => {};
    await expect(cmdPasskey(["--sparse", "dense"], quiet, quiet)).rejects.toThrow(/--sparse must be off, vertical-slash, block-sparse, got 'dense'/);
    await expect(cmdPasskey(["--sparse", "block-sparse", "--sparse-blocks", "1.5"], quiet, quiet)).rejects.toThrow(/--sparse-blocks expects an integer >= 0/);
    await expect(cmdPasskey(["--sparse", "vertical-slash", "--sparse-local", "0"], quiet, quiet)).rejects.toThrow(/--sparse-local expects an integer >= 1/);
    await expect(cmdPasskey(["--sparse-vertical", "x"], quiet, quiet)).rejects.toThrow(/--sparse-vertical expects an integer >= 0/);
  });
});
