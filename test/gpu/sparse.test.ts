// Sparse prefill on CUDA (src/opt/sparse_prefill/: vertical-slash sparse_kernels.cu, block-sparse
// block_sparse_kernels.cu; compile-checked only until this runs) against the CPU reference (sparse_prefill_cpu.cpp,
// block_sparse_cpu.cpp, checked in test_sparse_prefill.cpp and test/engine/sparse.test.ts), on the passkey model: full
// budgets = the dense CUDA logits (up to the sparse kernels' fp32 order), small budgets close to the CPU's sparse
// logits with the same argmax, with and without DCA; the attention records' FLOPs (keys visited) against the CPU's;
// passkey retrieval with sparse prefill over DCA at 1024 / 2048 / 4096 tokens. The attend and selection arms, a child
// process each (sparse-run.ts): block-sparse's mma attend with the device selection (the defaults), SIMT attend
// (QW_SPARSE_MMA=0), the host selection (QW_SPARSE_HOST_SELECT=1); vertical-slash's the same three (its mma attend
// and device selection compile-checked until this runs). The mma arms' logits bit for bit the dense ones with every block
// / line selected, close to the SIMT arm's with small budgets, the device selection's logits and records bit for bit
// the host's, and each layer's attention launcher the one the switch names. Skips without a GPU.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openModel, type Model } from "../../engine/index.ts";
import type { SparseMode, SparseOptions } from "../../engine/api.ts";
import { opNames } from "../../engine/catalog.ts";
import { buildPasskeyPrompt, FillerStream, PASSKEY_MODEL_DIR, rngFor, runPasskey } from "../../engine/measure/passkey.ts";
import { argmax, noGpu, REPO, rel } from "./gpu.ts";
import type { SparseRunSummary } from "./sparse-run.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

function lastLogits(m: Model, tokens: number[], o: { sparse?: SparseOptions; dca?: boolean; mode?: SparseMode }): Float32Array {
  return run(m, tokens, o).logits;
}

/** Last-position logits and the summed FLOPs of the attention records of one profiled prefill. */
function run(m: Model, tokens: number[], o: { sparse?: SparseOptions; dca?: boolean; mode?: SparseMode }) {
  const s = m.newSession({ maxContext: tokens.length + 8, ...(o.sparse ? { sparse: o.sparse } : {}) });
  try {
    if (o.dca) s.setToggle("dca", "on");
    if (o.sparse) s.setToggle("sparsePrefill", o.mode ?? "vertical-slash");
    s.setLogitsMode(1);
    s.setProfiling(true);
    s.prefill(0, tokens);
    const r = s.takeRecords();
    const flops = r.ops.op.map((op, i) => (opNames()[op] === "attention" ? r.ops.flops[i] : 0)).reduce((a, b) => a + b, 0);
    const heads = s.sparseInfo().layers.flatMap((l) => l.heads).filter((h) => h.rows > 0);
    return { logits: s.logits().data.slice(), flops, densities: heads.map((h) => h.density) };
  } finally {
    s.close();
  }
}

describe.skipIf(noGpu())("sparse prefill: CUDA vs CPU on tiny-qwen2-passkey", () => {
  let cpu: Model, gpu: Model;
  let filler: FillerStream;
  beforeAll(async () => {
    cpu = (await openModel(PASSKEY_MODEL_DIR, { backend: "cpu" })) as Model;
    gpu = (await openModel(PASSKEY_MODEL_DIR, { backend: "cuda" })) as Model;
    filler = new FillerStream(cpu.tokenizer);
  });
  afterAll(() => {
    cpu?.close();
    gpu?.close();
  });
  const prompt = (length: number) =>
    buildPasskeyPrompt(cpu.tokenizer, filler, length, rngFor(2, length)).tokens;

  test("full budgets: the dense CUDA logits; small budgets: close to the CPU's sparse logits, same argmax", () => {
    const full = { vertical: 1 << 20, slash: 1 << 20 };
    const small = { vertical: 32, slash: 32, local: 64, sink: 4 };
    for (const dca of [false, true]) {
      const t = prompt(dca ? 2000 : 500);
      const dense = lastLogits(gpu, t, { dca });
      expect(rel(lastLogits(gpu, t, { dca, sparse: full }), dense)).toBeLessThan(2e-2);
      const g = lastLogits(gpu, t, { dca, sparse: small }), c = lastLogits(cpu, t, { dca, sparse: small });
      const e = rel(g, c);
      console.log(`sparse ${dca ? "+dca " : ""}CUDA vs CPU: rel max |d logits| ${e.toExponential(2)}`);
      expect(e).toBeLessThan(5e-2);
      expect(argmax(g)).toBe(argmax(c));
    }
  });

  test("passkey with sparse prefill over DCA at 1024 / 2048 / 4096 (20 trials each)", async () => {
    const r = await runPasskey(gpu, {
      lengths: [1024, 2048, 4096], trials: 20, dca: true, sparse: "vertical-slash", sparseOptions: { vertical: 64, slash: 64, local: 64, sink: 4 },
    });
    for (const b of r.byLength) console.log(`cuda sparse+dca passkey ${b.length}: ${b.correct}/${b.n}`);
    for (const b of r.byLength) expect(b.accuracy).toBeGreaterThanOrEqual(0.9);
  });

  test("vertical-slash: the attention records and the session's keys visited count the selection, as the CPU's (sparse_cost.hpp)", () => {
    const t = prompt(1500), small = { vertical: 32, slash: 32, local: 64, sink: 4 };
    const dense = run(gpu, t, {}), g = run(gpu, t, { sparse: small }), c = run(cpu, t, { sparse: small });
    const mean = (x: number[]) => x.reduce((a, b) => a + b, 0) / x.length;
    console.log(`vertical-slash attention FLOPs: CUDA ${g.flops.toExponential(3)}, CPU ${c.flops.toExponential(3)}, dense ${dense.flops.toExponential(3)}; keys visited (mean over layers, heads) CUDA ${mean(g.densities).toFixed(4)}, CPU ${mean(c.densities).toFixed(4)}`);
    expect(g.flops).toBeLessThan(dense.flops);
    expect(Math.abs(g.flops - c.flops) / c.flops).toBeLessThan(0.1);  // the selections may differ slightly
    expect(g.densities.length).toBe(c.densities.length);
    expect(g.densities.length).toBeGreaterThan(0);
    expect(Math.abs(mean(g.densities) - mean(c.densities)) / mean(c.densities)).toBeLessThan(0.1);
  });

  test("block-sparse: every block = the dense CUDA logits; small budgets close to the CPU's, same argmax, same record FLOPs model", () => {
    const full = { blocks: 1 << 20 };
    const small = { blocks: 2, local: 128, sink: 64 };
    for (const dca of [false, true]) {
      const t = prompt(dca ? 2000 : 500);
      const dense = run(gpu, t, { dca });
      expect(rel(run(gpu, t, { dca, sparse: full, mode: "block-sparse" }).logits, dense.logits)).toBeLessThan(2e-2);
      const g = run(gpu, t, { dca, sparse: small, mode: "block-sparse" }), c = run(cpu, t, { dca, sparse: small, mode: "block-sparse" });
      const e = rel(g.logits, c.logits);
      console.log(`block-sparse ${dca ? "+dca " : ""}CUDA vs CPU: rel max |d logits| ${e.toExponential(2)}; attention FLOPs ${g.flops.toExponential(3)} (CPU ${c.flops.toExponential(3)}, dense ${dense.flops.toExponential(3)})`);
      expect(e).toBeLessThan(5e-2);
      expect(argmax(g.logits)).toBe(argmax(c.logits));
      // the records count the keys visited: below dense, and the CPU's model (the selections may differ slightly)
      expect(g.flops).toBeLessThan(dense.flops);
      expect(Math.abs(g.flops - c.flops) / c.flops).toBeLessThan(0.1);
      // keys visited per (layer, head) depend on the budget alone: the CUDA session's counts are the CPU kernels'
      expect(g.densities.length).toBeGreaterThan(0);
      expect(g.densities).toEqual(c.densities);
    }
  });

  test("sparse_stats is refused on CUDA with a message naming the CPU backend", () => {
    expect(() => gpu.newSession({ sparse: { stats: true } })).toThrow(/cpu backend only/);
  });

  test("passkey with block-sparse over DCA at 1024 / 2048 / 4096 (20 trials each)", async () => {
    const r = await runPasskey(gpu, {
      lengths: [1024, 2048, 4096], trials: 20, dca: true, sparse: "block-sparse", sparseOptions: { blocks: 4, local: 128, sink: 64 },
    });
    for (const b of r.byLength) console.log(`cuda block-sparse+dca passkey ${b.length}: ${b.correct}/${b.n}`);
    for (const b of r.byLength) expect(b.accuracy).toBeGreaterThanOrEqual(0.9);
  });
});

// One child process per (mode, arm): the native library reads the switches from its environment (sparse-run.ts).
function runArms<A extends string>(mode: string, arms: Record<A, Record<string, string>>): Record<A, SparseRunSummary> {
  const dir = mkdtempSync(join(tmpdir(), "qw-sparse-arms-"));
  try {
    const out = {} as Record<A, SparseRunSummary>;
    for (const arm of Object.keys(arms) as A[]) {
      const env: Record<string, string | undefined> = { ...process.env };
      delete env.QW_SPARSE_MMA;  // whatever the parent's environment says: mma (default) unless the arm says 0
      delete env.QW_SPARSE_HOST_SELECT;  // block-sparse selects on the device unless the arm says host
      env.QW_FLASH_WGMMA = "0";  // dense = the mma.sync kernel (the bit-for-bit reference)
      Object.assign(env, arms[arm]);
      const file = join(dir, `${arm}.json`);
      const r = Bun.spawnSync([process.execPath, join(REPO, "test", "gpu", "sparse-run.ts"), file, mode], { cwd: REPO, env, stdout: "pipe", stderr: "pipe" });
      if (r.exitCode !== 0) throw new Error(`sparse-run.ts (${mode}, ${arm}) failed: ${r.stderr.toString()}`);
      out[arm] = JSON.parse(readFileSync(file, "utf8")) as SparseRunSummary;
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const f32 = (x: number[]) => Float32Array.from(x);
function bitsDiffer(a: number[], b: number[]): { differ: number; n: number } {
  const u = new Uint32Array(f32(a).buffer), v = new Uint32Array(f32(b).buffer);
  let differ = 0;
  for (let i = 0; i < u.length; i++) differ += u[i] !== v[i] ? 1 : 0;
  return { differ, n: u.length };
}

// Both patterns' arms, a child process each: the mma attend (default), SIMT (QW_SPARSE_MMA=0; vertical-slash: its
// SIMT estimate too), the host selection (QW_SPARSE_HOST_SELECT=1).
for (const [mode, tag, unit, small] of [
  ["block-sparse", "bs", "block", "blocks 2, local 128, sink 64"],
  ["vertical-slash", "vs", "line", "vertical 32, slash 32, local 64, sink 4"],
] as const) {
  describe.skipIf(noGpu())(`${mode}: mma attend (default) vs SIMT (QW_SPARSE_MMA=0), device vs host selection`, () => {
    let arms = {} as Record<"simt" | "mma" | "host", SparseRunSummary>;
    beforeAll(() => {
      arms = runArms(mode, { simt: { QW_SPARSE_MMA: "0" }, mma: {}, host: { QW_SPARSE_HOST_SELECT: "1" } });
    });

    test(`the switch reaches every layer: attn_sparse_${tag}_mma by default, attn_sparse_${tag}_simt with 0, DCA SIMT in all`, () => {
      for (const run of ["full", "small", "chunked-full"] as const) {
        for (const k of arms.mma[run].kernels) expect(k).toEqual([`attn_sparse_${tag}_mma`]);
        for (const k of arms.host[run].kernels) expect(k).toEqual([`attn_sparse_${tag}_mma`]);
        for (const k of arms.simt[run].kernels) expect(k).toEqual([`attn_sparse_${tag}_simt`]);
      }
      for (const arm of ["simt", "mma", "host"] as const) {
        for (const k of arms[arm]["dca-small"].kernels) expect(k).toEqual([`attn_sparse_${tag}_dca_simt`]);
        for (const k of arms[arm].dense.kernels) expect(k).toEqual(["attn_prefill_mma"]);
      }
    });

    test(`every ${unit} selected: the mma arm's logits are the dense mma.sync logits bit for bit (one call and chunked)`, () => {
      for (const [sp, dn] of [["full", "dense"], ["chunked-full", "chunked-dense"]] as const) {
        const { differ, n } = bitsDiffer(arms.mma[sp].logits, arms.mma[dn].logits);
        console.log(`${mode} mma ${sp} vs ${dn}: ${differ} of ${n} logits differ`);
        expect(n).toBeGreaterThan(0);
        expect(differ).toBe(0);
      }
    });

    test(`the device selection picks the host's ${unit}s: every run's logits and FLOPs equal, bit for bit`, () => {
      for (const run of ["dense", "full", "small", "chunked-dense", "chunked-full", "dca-small"] as const) {
        const { differ, n } = bitsDiffer(arms.mma[run].logits, arms.host[run].logits);
        console.log(`${mode} ${run}: device vs host selection, ${differ} of ${n} logits differ`);
        expect(n).toBeGreaterThan(0);
        expect(differ).toBe(0);
        expect(arms.mma[run].flops).toBe(arms.host[run].flops);
      }
    });

    test("small budgets: the mma arm close to the SIMT arm, same argmax; the records count the same model of keys", () => {
      const a = f32(arms.mma.small.logits), b = f32(arms.simt.small.logits), e = rel(a, b);
      console.log(`${mode} mma vs SIMT (${small}): rel max |d logits| ${e.toExponential(2)}; attention FLOPs mma ${arms.mma.small.flops.toExponential(3)}, SIMT ${arms.simt.small.flops.toExponential(3)}, dense ${arms.mma.dense.flops.toExponential(3)}`);
      expect(e).toBeLessThan(5e-2);
      expect(argmax(a)).toBe(argmax(b));
      expect(arms.mma.small.flops).toBeLessThan(arms.mma.dense.flops);
      // layer 0's selection may differ slightly between the arms (vertical-slash: the estimates' fp32 order), later
      // layers' too (their inputs do)
      expect(Math.abs(arms.mma.small.flops - arms.simt.small.flops) / arms.simt.small.flops).toBeLessThan(0.1);
    });
  });
}
