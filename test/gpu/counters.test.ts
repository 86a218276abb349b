// Profiling mode "counters" on the GPU (CUPTI range profiler, cuda/src/cuda/range_profiler.cu; written without a
// GPU, so this file is its first check): one decode step of the random 0.5B shape in counters mode; every op record
// carries measured counters; each matmul's measured DRAM reads are within 15 % of its modelled bytes (its weights,
// plus activations < 1 %); the step's totals are printed against weight + KV bytes (the 7B target is the
// opt-in test below: QW_COUNTERS_7B=1). A kernels-mode session elsewhere in the process makes counters refuse (the
// activity tracer and the range profiler never run at once), and the CPU backend refuses it. Skips without a GPU.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { openModel, QwenError, type Model } from "../../engine/index.ts";
import { nonModelOps, opName } from "../../engine/catalog.ts";
import type { OpColumns } from "../../engine/measure/profile.ts";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { noGpu } from "./gpu.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // model loads and CUPTI's kernel replays take seconds; no wall-clock is asserted

const MATMULS = new Set(["qkv", "o_proj", "gate_up", "down", "lm_head"]);
const PROMPT = Array.from({ length: 32 }, (_, i) => (i * 37 + 11) % 1000);

/** Records and counters of one decode step after a prefill of PROMPT, in counters mode. */
function decodeStep(m: Model): { ops: OpColumns; kvBytes: number; unavailable: string[] } {
  const s = m.newSession({ maxContext: 256 });
  try {
    s.setSampling(0, { temperature: 0 });
    const t = s.prefill(0, PROMPT);
    s.setProfiling("counters");
    s.takeRecords();
    s.decode([0], [t]);
    const r = s.takeRecords();
    expect(r.countersMeta).toBeDefined();
    for (const u of r.countersMeta!.unavailable) console.log(`[cuda counters] ${u}`);
    return { ops: r.ops, kvBytes: s.kvInfo().kvBytesPerToken * (PROMPT.length + 1), unavailable: r.countersMeta!.unavailable };
  } finally {
    s.close();
  }
}

/** Embedding bytes a decode step does not read: all rows but one of an untied table (a tied one is the lm_head, read
 * whole). bf16 rows: the 7B checkpoint (make_ref.py) and synthetic:7b:bf16 are bf16 throughout. */
function unreadEmbedBytes(m: Model): number {
  const c = m.config;
  return c.tie_word_embeddings ? 0 : (c.vocab_size - 1) * c.hidden_size * 2;
}

function report(label: string, ops: OpColumns, weightBytes: number, kvBytes: number): { read: number; modelled: number } {
  const c = ops.counters!;
  let read = 0, write = 0, modelled = 0;
  for (let i = 0; i < ops.step.length; i++) { read += c.dram_read[i] ?? 0; write += c.dram_write[i] ?? 0; modelled += ops.bytes[i]; }
  console.log(`[cuda counters] ${label} decode step: DRAM read ${(read / 1e6).toFixed(2)} MB, write ${(write / 1e6).toFixed(2)} MB; ` +
    `modelled ${(modelled / 1e6).toFixed(2)} MB; weights + KV ${((weightBytes + kvBytes) / 1e6).toFixed(2)} MB ` +
    `(read / (weights + KV) = ${(read / (weightBytes + kvBytes)).toFixed(3)})`);
  return { read, modelled };
}

describe.skipIf(noGpu())("profiling mode counters (CUDA, CUPTI)", () => {
  let m: Model;
  beforeAll(async () => { m = (await openModel("synthetic:0.5b:bf16", { backend: "cuda" })) as Model; });
  afterAll(() => m?.close());

  test("0.5B decode step: every op has counters; each matmul reads its weights within 15 %", () => {
    const { ops, kvBytes } = decodeStep(m);
    expect(ops.counters).toBeDefined();
    const c = ops.counters!;
    const skip = nonModelOps();
    const lines: string[] = [];
    let matmuls = 0;
    for (let i = 0; i < ops.step.length; i++) {
      const op = opName(ops.op[i]);
      if (skip.has(op)) continue;
      expect(c.dram_read[i]).not.toBeNull();   // every op measured
      expect(c.kernels[i]).toBeGreaterThan(0);
      if (!MATMULS.has(op)) continue;
      matmuls++;
      const ratio = c.dram_read[i]! / ops.bytes[i];
      lines.push(`L${ops.layer[i]} ${op}: measured ${(c.dram_read[i]! / 1e6).toFixed(3)} MB / modelled ${(ops.bytes[i] / 1e6).toFixed(3)} MB = ${ratio.toFixed(3)}, L2 hit ${c.l2_hits[i] !== null && c.l2_misses[i] !== null ? ((100 * c.l2_hits[i]!) / Math.max(1, c.l2_hits[i]! + c.l2_misses[i]!)).toFixed(1) : "-"} %`);
      expect(Math.abs(ratio - 1)).toBeLessThanOrEqual(0.15);
    }
    console.log(lines.slice(0, 12).join("\n"));
    console.log(`[cuda counters] ${matmuls} matmul records checked`);
    expect(matmuls).toBeGreaterThanOrEqual(24); // at least one per layer (fused arms may record some under "fused")
    report("0.5B", ops, m.weightBytes, kvBytes);
  }, 600_000);

  test("a session in kernels mode makes counters refuse, naming why; off releases CUPTI", () => {
    const a = m.newSession({ maxContext: 64 }), b = m.newSession({ maxContext: 64 });
    try {
      a.setProfiling("kernels");
      let err: unknown;
      try { b.setProfiling("counters"); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(QwenError);
      expect((err as Error).message).toMatch(/kernels.*range profiler|range profiler.*kernels/);
      a.setProfiling("off");
      b.setProfiling("counters");
      expect(b.profilingMode).toBe("counters");
    } finally {
      a.close();
      b.close();
    }
  }, 300_000);

  test("the CPU backend refuses counters (needs CUDA and CUPTI)", async () => {
    const cpu = (await openModel("default", { backend: "cpu", threads: 2 })) as Model;
    try {
      const s = cpu.newSession({ maxContext: 64 });
      expect(() => s.setProfiling("counters")).toThrow(/CUDA backend and CUPTI/);
      s.close();
    } finally {
      cpu.close();
    }
  });

  // The target reads "within 5 % of the weight bytes plus KV bytes; explain any difference". The sixth H100
  // run measured 14151.0 MB read against 15233.1 MB of weights + KV (0.929): the difference is 7B's untied embedding
  // table (152064 x 3584 bf16 = 1090.0 MB), of which a decode step reads one row. Against the bytes a step must read
  // (weights less the unread embedding rows, plus KV) it was 1.0006. The test asserts that, and prints both.
  test.skipIf(process.env.QW_COUNTERS_7B !== "1")("7B decode step: measured DRAM bytes within 5 % of the weights a step reads + KV (issue 12 target)", async () => {
    // a random-init 7B checkpoint (notebooks/peers/make_ref.py --no-ref --models 7b) when there is one: synthetic:7b
    // would first write 15 GB of GGUF in TypeScript
    const ref = join(process.env.QW_GPU_REF ?? "/tmp/qw-ref", "7b");
    const big = (await openModel(existsSync(join(ref, "config.json")) ? ref : "synthetic:7b:bf16", { backend: "cuda" })) as Model;
    try {
      const { ops, kvBytes } = decodeStep(big);
      const { read } = report("7B", ops, big.weightBytes, kvBytes);
      const unread = unreadEmbedBytes(big), stepBytes = big.weightBytes - unread + kvBytes;
      console.log(`[cuda counters] 7B: read / (weights a step reads + KV) = ${(read / stepBytes).toFixed(4)} ` +
        `(embedding rows not read: ${(unread / 1e6).toFixed(1)} MB)`);
      expect(Math.abs(read / stepBytes - 1)).toBeLessThanOrEqual(0.05);
    } finally {
      big.close();
    }
  }, 900_000);
});
