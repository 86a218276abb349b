// test/gpu/mma-w4-run.ts — the child process of weights.test.ts's W4 tensor-core case: the native library reads
// QW_GEMV_MMA_W4 once per process, so the arm runs in a process started with it (the parent sets it to 1).
// Synthetic 0.5B requantized to q4 (group 128): its gate_up (9728 rows) and lm_head have enough rows for
// gemv_mma.cu's W4 kernel, the smaller matrices keep gemv_q16. Writes OUT.json with
//   rel      worst relative logit difference CUDA vs CPU (the same requantized weights) over prefill + 6 decode steps,
//   differing logits that differ bit-wise between three sequences decoded together and each alone,
//   kernels  the distinct decode kernel names of one profiled step (the parent checks gemv_mma_w4 is among them).
// Usage: bun test/gpu/mma-w4-run.ts OUT.json
import { writeFileSync } from "node:fs";
import { openModel, type Model } from "../../engine/index.ts";
import { batchedVsAlone, launcher, rel, teacherForced } from "./gpu.ts";

const out = process.argv[2];
if (!out) throw new Error("usage: bun test/gpu/mma-w4-run.ts OUT.json");
const source = "synthetic:0.5b:bf16";

const cpu = (await openModel(source, { backend: "cpu", weights: "q4" })) as Model;
const gpu = (await openModel(source, { backend: "cuda", weights: "q4" })) as Model;
try {
  const ids = [11, 220, 3000, 17, 42, 1234, 9];
  const c = teacherForced(cpu, ids, undefined, 6);
  const g = teacherForced(gpu, ids, c.tokens, 6);
  const worst = Math.max(...c.logits.map((lc, k) => rel(g.logits[k], lc)));
  const { differing } = batchedVsAlone(gpu, [[1, 2, 3, 4, 5, 6], [7, 8, 9], [10]], 6);
  const s = gpu.newSession({ maxBatch: 1, maxContext: 64 });
  let kernels: string[] = [];
  try {
    s.prefill(0, ids);
    s.setProfiling(true);
    s.decode([0], [5]);
    const r = s.takeRecords();
    kernels = [...new Set(Array.from(r.ops.kernel, (k) => launcher(r.kernels[k])))];
  } finally {
    s.close();
  }
  writeFileSync(out, JSON.stringify({ rel: worst, differing, kernels }));
} finally {
  cpu.close();
  gpu.close();
}
