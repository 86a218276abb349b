// Op records of tensor parallelism in the TS measurement path (ABI 8: qw_op_record.rank): a profile keeps every
// rank's records in its `rank` column, while the step summaries count rank 0's only (the ranks run the same ops in
// step). The native side is fed by a wrapped fake session whose records come twice, as ranks 0 and 1 (the CUDA
// ranks that would produce them are compile-checked only: README, "Tensor parallelism").
import { describe, expect, test } from "bun:test";
import { recordRun, type RunEvent, type RunSpec } from "../../engine/measure/record.ts";
import type { OpColumns } from "../../engine/measure/profile.ts";
import { cpuLibraryBuilt } from "../reference/fixtures.ts";
import { makeFakeOpenModel } from "../web/fake-engine.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

// Every record of `ops` twice: as rank 0 and as rank 1 (same step, op, times).
function asTwoRanks(ops: OpColumns): OpColumns {
  const keys = ["step", "phase", "layer", "op", "kernel", "t_start_ns", "t_end_ns", "flops", "bytes", "n_tokens"] as const;
  const out = Object.fromEntries(keys.map((k) => [k, [...ops[k], ...ops[k]]])) as unknown as OpColumns;
  out.rank = [...ops.step.map(() => 0), ...ops.step.map(() => 1)];
  return out;
}

describe.skipIf(!cpuLibraryBuilt())("tensor-parallel op records (rank column)", () => {
  test("profiles keep every rank's records; step summaries count rank 0's", async () => {
    const m = await makeFakeOpenModel()("default");
    const inner = m.newSession();
    const s = new Proxy(inner, {
      get(t, p, r) {
        if (p === "takeRecords") return () => { const x = t.takeRecords(); return { ...x, ops: asTwoRanks(x.ops) }; };
        const v = Reflect.get(t, p, r);
        return typeof v === "function" ? v.bind(t) : v;
      },
    });
    const spec: RunSpec = {
      id: "tp", prompts: [{ prompt: "The jury said", seed: 1 }], maxTokens: 4, sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 },
      toggles: {}, profiling: true, capture: [], repeats: 2,
    };
    const steps: Extract<RunEvent, { type: "step" }>[] = [];
    const r = await recordRun(m, s, spec, { onEvent: (e) => { if (e.type === "step") steps.push(e); } });
    const ops = r.profile.ops!;
    expect(ops.rank?.length).toBe(ops.op.length); // merged over the 2 repeats with the column kept
    expect(new Set(ops.rank)).toEqual(new Set([0, 1]));
    expect(ops.rank!.filter((k) => k === 1).length).toBe(ops.op.length / 2);
    expect(steps.length).toBeGreaterThan(1);
    for (const st of steps) { // events come from the first measured pass, whose steps keep their ids in the merge
      let rank0 = 0, all = 0;
      ops.step.forEach((s2, i) => {
        if (s2 !== st.step) return;
        const ms = (ops.t_end_ns[i] - ops.t_start_ns[i]) / 1e6;
        all += ms;
        if (ops.rank![i] === 0) rank0 += ms;
      });
      expect(rank0).toBeGreaterThan(0);
      expect(st.ms).toBeCloseTo(rank0, 9);
      expect(all).toBeCloseTo(2 * rank0, 9);
    }
  });
});
