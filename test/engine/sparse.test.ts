// Sparse prefill (toggle sparsePrefill = vertical-slash, cuda/src/opt/sparse_prefill/) through the engine on the real
// passkey model (models/tiny-qwen2-passkey: 4 heads, 1 kv head, head_dim 64): budgets covering every key give the
// dense logits bit for bit (one prefill, chunked prefill, a prompt shorter than the 64 estimating queries, with DCA
// past the chunk); small budgets differ and the session reports density, recall and output error per layer and head;
// bad budgets and unsupported combinations are refused with messages naming them. The kernel itself is tested in
// cuda/src/opt/sparse_prefill/test_sparse_prefill.cpp.
import { test, expect, describe, beforeAll, afterAll } from "bun:test";
import { openModel, type Model } from "../../engine/index.ts";
import type { SparseOptions } from "../../engine/api.ts";
import { buildPasskeyPrompt, FillerStream, PASSKEY_MODEL_DIR, passkeyTable, rngFor, runPasskey } from "../../engine/measure/passkey.ts";
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
  function logits(tokens: number[], o: { sparse?: SparseOptions; dca?: boolean; pieces?: number[]; kv?: string } = {}) {
    const s = m.newSession({ maxContext: tokens.length + 8, ...(o.sparse ? { sparse: o.sparse } : {}) });
    try {
      if (o.kv) s.setToggle("kvCache", o.kv);
      if (o.sparse) s.setToggle("sparsePrefill", "vertical-slash");
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

  test("the registry offers vertical-slash on the cpu and on cuda (compile-checked only there)", () => {
    const d = m.toggleRegistry().find((t) => t.id === "sparsePrefill")!;
    expect(d.backends.cpu).toEqual(["off", "vertical-slash"]);
    expect(d.backends.cuda).toEqual(["off", "vertical-slash"]);
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
      lengths: [1024], trials: 2, seed: 4, dca: true, sparse: true, sparseOptions: { vertical: 64, slash: 64, local: 64, sink: 4, stats: true },
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
    await expect(cmdPasskey(["--sparse", "dense"], quiet, quiet)).rejects.toThrow(/--sparse must be off or vertical-slash, got 'dense'/);
    await expect(cmdPasskey(["--sparse", "vertical-slash", "--sparse-local", "0"], quiet, quiet)).rejects.toThrow(/--sparse-local expects an integer >= 1/);
    await expect(cmdPasskey(["--sparse-vertical", "x"], quiet, quiet)).rejects.toThrow(/--sparse-vertical expects an integer >= 0/);
  });
});
