// test/gpu/gpu.ts — whether the CUDA backend can run here, and why not (the GPU tests skip with that message).
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { getEngine, libPath, libraryAvailable } from "../../engine/ffi.ts";
import type { Model } from "../../engine/index.ts";

export const REPO = resolve(import.meta.dir, "..", "..");

let cached: { ok: boolean; why: string } | undefined;
export function cudaStatus(): { ok: boolean; why: string } {
  if (cached) return cached;
  if (!libraryAvailable("cuda")) {
    cached = { ok: false, why: `${libPath("cuda")} is not built (make -C cuda cuda on a machine with nvcc)` };
  } else {
    try {
      getEngine("cuda");
      cached = { ok: true, why: "" };
    } catch (e) {
      cached = { ok: false, why: `the CUDA engine did not start: ${(e as Error).message}` };
    }
  }
  if (!cached.ok) console.log(`[test/gpu] SKIP: ${cached.why}`);
  return cached;
}
export const noGpu = () => !cudaStatus().ok;

/** The launcher name of an op record's kernel: in `kernels` profiling mode a record is named "launcher · CUDA kernel"
 * (cuda/src/cuda/kernel_trace.cu), in `events` mode just "launcher". */
export const launcher = (kernel: string): string => kernel.split(" · ")[0];

/** Directory made by notebooks/peers/make_ref.py ($QW_GPU_REF, else $OUT/qw-ref, else /tmp/qw-ref). */
export function refDir(shape: string): string | undefined {
  const bases = [process.env.QW_GPU_REF, process.env.OUT ? join(process.env.OUT, "qw-ref") : undefined, "/tmp/qw-ref"];
  for (const b of bases) if (b && existsSync(join(b, shape, "reference.json"))) return join(b, shape);
  return undefined;
}

type Session = ReturnType<Model["newSession"]>;
/** Greedy tokens and the logits of every decode step of each sequence, `seqs` decoded together in one session. */
export interface BatchRun { toks: number[][]; logits: Float32Array[][] }
export function greedyTogether(m: Model, seqs: number[][], maxBatch: number, steps: number, setup?: (s: Session) => void): BatchRun {
  const s = m.newSession({ maxBatch, maxContext: 512, maxPrefill: 256 });
  try {
    setup?.(s);
    s.setLogitsMode(1);
    const toks: number[][] = [], logits: Float32Array[][] = [];
    seqs.forEach((ids, i) => {
      s.setSampling(i, { temperature: 0 });
      toks.push([s.prefill(i, ids)]);
      logits.push([]);
    });
    for (let k = 1; k < steps; k++) {
      const t = s.decode(seqs.map((_, i) => i), seqs.map((_, i) => toks[i][k - 1]));
      const l = s.logits();
      if (l.rows !== seqs.length) throw new Error(`logits rows ${l.rows}, want ${seqs.length}`);
      seqs.forEach((_, i) => {
        toks[i].push(t[i]);
        logits[i].push(l.data.slice(i * l.vocab, (i + 1) * l.vocab));
      });
    }
    return { toks, logits };
  } finally {
    s.close();
  }
}
/** Logits of the prompt's last position, then of `steps` decode steps fed `forced` (else the greedy tokens), with
 * the `gemv` toggle set (and whatever `setup` sets): the CUDA-vs-CPU comparisons of weights.test.ts, act-quant.test.ts. */
export function teacherForced(m: Model, ids: number[], forced: number[] | undefined, steps: number, gemv = "simple", setup?: (s: Session) => void): { logits: Float32Array[]; tokens: number[] } {
  const s = m.newSession({ maxBatch: 1, maxContext: 512, maxPrefill: 256 });
  try {
    s.setToggle("gemv", gemv);
    setup?.(s);
    s.setSampling(0, { temperature: 0 });
    s.setLogitsMode(1);
    const logits: Float32Array[] = [], tokens: number[] = [];
    let t = s.prefill(0, ids);
    logits.push(s.logits().data.slice());
    tokens.push(t);
    for (let k = 0; k < steps; k++) {
      t = s.decode([0], [forced ? forced[k] : t])[0];
      logits.push(s.logits().data.slice());
      tokens.push(t);
    }
    return { logits, tokens };
  } finally {
    s.close();
  }
}
/** Batch invariance: `prompts` decoded together (max batch 16) and each alone (max batch 1); the logit words that differ. */
export function batchedVsAlone(m: Model, prompts: number[][], steps: number, setup?: (s: Session) => void, maxBatch = 16): { together: BatchRun; alone: BatchRun[]; differing: number } {
  const together = greedyTogether(m, prompts, maxBatch, steps, setup);
  const alone = prompts.map((ids) => greedyTogether(m, [ids], 1, steps, setup));
  let differing = 0;
  alone.forEach((a, i) =>
    a.logits[0].forEach((l, k) => {
      const u = new Uint32Array(l.buffer, l.byteOffset, l.length), v = together.logits[i][k];
      const w = new Uint32Array(v.buffer, v.byteOffset, v.length);
      for (let j = 0; j < u.length; j++) if (u[j] !== w[j]) differing++;
    }));
  return { together, alone, differing };
}

/** max |a - b| / max |b|: the logits comparisons of the GPU tests. */
export function rel(a: Float32Array, b: Float32Array): number {
  let d = 0, r = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    r = Math.max(r, Math.abs(b[i]));
  }
  return d / r;
}
export const argmax = (a: Float32Array) => a.reduce((best, x, i) => (x > a[best] ? i : best), 0);
