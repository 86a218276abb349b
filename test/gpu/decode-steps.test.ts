// qw_session_decode_steps on CUDA (cuda/src/cuda/decode_steps.cu): the steps queued back to back, each step's tokens
// fed to the next on the GPU, one synchronization per call. The same cases as the CPU test (the tokens, lengths and
// sampling draws of the step-by-step loop, bit for bit: the same graph replays), plus kernels-mode profiling of a
// queued run: every step's records arrive, each step's ops once, with no gap row longer than the step.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { openModel, type Model } from "../../engine/index.ts";
import { noGpu } from "./gpu.ts";
import { generousTimeout } from "../setup.ts";
import { checkGenerateSteps, checkStepsEqualLoop, checkStepsRefusals } from "../engine/decode-steps-helpers.ts";

generousTimeout();

describe.skipIf(noGpu())("decodeSteps (CUDA)", () => {
  let m: Model;
  beforeAll(async () => { m = (await openModel("default", { backend: "cuda" })) as Model; });
  afterAll(() => m?.close());
  test("n steps in one call = n decode calls, batch 1 and 3, greedy and sampled", () => {
    checkStepsEqualLoop(m, 40);
  });
  test("generate with stepsPerSync 5 / 8 = stepsPerSync 1", async () => {
    await checkGenerateSteps(m);
  });
  test("refusals; logits mode runs step by step", () => {
    checkStepsRefusals(m);
  });
  test("kernels profiling of queued steps: records for every step, gaps within the run", () => {
    const s = m.newSession({ maxBatch: 1, maxContext: 256 });
    try {
      s.setProfiling("kernels");
      const first = s.prefill(0, s.promptTokens({ prompt: "The jury said the election was" }));
      s.takeRecords();
      const n = 16;
      const t0 = Bun.nanoseconds();
      s.decodeSteps([0], [first], n);
      const wallNs = Bun.nanoseconds() - t0;
      const { ops } = s.takeRecords();
      const steps = new Set<number>();
      for (let i = 0; i < ops.step.length; i++) steps.add(Number(ops.step[i]));
      expect(steps.size).toBe(n);
      // the records of a step span its kernels: their sum over the run stays within the call's wall time
      let sum = 0;
      for (let i = 0; i < ops.step.length; i++) sum += Number(ops.t_end_ns[i]) - Number(ops.t_start_ns[i]);
      expect(sum).toBeLessThanOrEqual(wallNs * 1.05);
      expect(sum).toBeGreaterThan(0);
    } finally {
      s.close();
    }
  });
});
