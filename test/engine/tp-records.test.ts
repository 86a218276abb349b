// Op records of tensor parallelism in the TS measurement path, from the CPU emulation of the ranks (model option
// parallel = tp2; cuda/src/opt/parallel/tp_cpu.hpp, "Records"): every record carries its rank (qw_op_record.rank, ABI 8),
// a profile keeps every rank's records in its `rank` column, the collectives are ops of their own on every rank, and
// the step summaries and the sum check count rank 0's records only (each rank's records tile the same step).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { openModel, type EngineModel } from "../../engine/index.ts";
import { recordRun, type RunEvent, type RunSpec } from "../../engine/measure/record.ts";
import { opIndex } from "../../engine/catalog.ts";
import { cpuLibraryBuilt } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

describe.skipIf(!cpuLibraryBuilt())("tensor-parallel op records (CPU emulation, tp2)", () => {
  let m: EngineModel;
  beforeAll(async () => { m = await openModel("synthetic:tiny", { backend: "cpu", threads: 2, parallel: "tp2" }); });
  afterAll(() => m?.close());

  test("a profile has every rank's records; collectives per rank; summaries count rank 0's", async () => {
    const s = m.newSession({ maxContext: 128 });
    const spec: RunSpec = {
      id: "tp2", prompts: [{ prompt: "The jury said", seed: 1 }], maxTokens: 4, sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 },
      toggles: {}, profiling: true, capture: [], repeats: 2,
    };
    const steps: Extract<RunEvent, { type: "step" }>[] = [];
    try {
      const r = await recordRun(m, s, spec, { onEvent: (e) => { if (e.type === "step") steps.push(e); } });
      const ops = r.profile.ops!, kernels = r.profile.kernels ?? [];
      const rank = ops.rank!;
      expect(rank.length).toBe(ops.op.length); // merged over the 2 repeats with the column kept
      expect(new Set(rank)).toEqual(new Set([0, 1]));
      const L = m.config.num_hidden_layers;
      const stepIds = [...new Set(ops.step)];
      expect(stepIds.length).toBeGreaterThan(2); // prefill + decode steps of both repeats
      const AR = opIndex("all_reduce"), AG = opIndex("all_gather"), GAP = opIndex("gap"), QKV = opIndex("qkv");
      for (const st of stepIds) {
        const idx = ops.step.flatMap((v, i) => (v === st ? [i] : []));
        const of = (k: number, op: number) => idx.filter((i) => rank[i] === k && ops.op[i] === op);
        for (const k of [0, 1]) {
          expect(of(k, AR).length).toBe(1 + 2 * L); // embedding, after o_proj and after down in every layer
          expect(of(k, AG).length).toBe(1); // the logits
          // the ranks run one after the other on the CPU: the other rank's time is a named gap of this one
          expect(of(k, GAP).some((i) => kernels[ops.kernel[i]] === "cpu.gap.other_ranks")).toBe(true);
          // each rank's records tile the step: back to back, from the step's first instant to its last
          const mine = idx.filter((i) => rank[i] === k);
          for (let j = 1; j < mine.length; j++) expect(ops.t_start_ns[mine[j]]).toBe(ops.t_end_ns[mine[j - 1]]);
          const first = idx.filter((i) => rank[i] === 0)[0];
          expect(ops.t_start_ns[mine[0]]).toBe(ops.t_start_ns[first]);
        }
        // a collective is one interval for both ranks; the qkv shards are equal halves
        expect(of(0, AR).map((i) => ops.t_start_ns[i])).toEqual(of(1, AR).map((i) => ops.t_start_ns[i]));
        expect(of(0, QKV).map((i) => ops.flops[i])).toEqual(of(1, QKV).map((i) => ops.flops[i]));
        expect(of(0, QKV).every((i) => ops.flops[i] > 0)).toBe(true);
      }
      expect(steps.length).toBeGreaterThan(1);
      for (const st of steps) { // events come from the first measured pass, whose steps keep their ids in the merge
        let rank0 = 0, all = 0;
        ops.step.forEach((s2, i) => {
          if (s2 !== st.step) return;
          const ms = (ops.t_end_ns[i] - ops.t_start_ns[i]) / 1e6;
          all += ms;
          if (rank[i] === 0) rank0 += ms;
        });
        expect(rank0).toBeGreaterThan(0);
        expect(st.ms).toBeCloseTo(rank0, 9);
        expect(all).toBeCloseTo(2 * rank0, 9); // both ranks tile the same interval
        expect(st.ops.all_reduce).toBeGreaterThan(0);
      }
      // the sum check counts rank 0's records: they lie inside the engine call, so they never exceed its wall time
      // (compared per call: the default runs the 3 decode steps in one call, whose wall is split evenly over them)
      const sc = r.profile.fidelity!.sum_check;
      expect(sc.map((c) => c.phase)).toEqual(["prefill", "decode"]);
      for (const c of sc) expect(c.unrecorded_ms).toBeGreaterThanOrEqual(0);
    } finally {
      s.close();
    }
  });
});
