// test/gpu/gpu.ts — whether the CUDA backend can run here, and why not (the GPU tests skip with that message).
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { getEngine, libPath, libraryAvailable } from "../../engine/ffi.ts";

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

/** Directory made by notebooks/peers/make_ref.py ($QW_GPU_REF, else $OUT/qw-ref, else /tmp/qw-ref). */
export function refDir(shape: string): string | undefined {
  const bases = [process.env.QW_GPU_REF, process.env.OUT ? join(process.env.OUT, "qw-ref") : undefined, "/tmp/qw-ref"];
  for (const b of bases) if (b && existsSync(join(b, shape, "reference.json"))) return join(b, shape);
  return undefined;
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
