// A constructed tensor-parallel profile for the per-rank views (Latency page, trace, roofline): N ranks, 2 layers,
// one prefill step and two decode steps, every record's time known, so the expected per-rank and communication
// numbers can be worked out by hand. Rank k's compute ops take (1 + 0.2k) × their base time (a slower rank); the
// collectives take the same time on every rank; a gap record per step is time without model work.
import { opIndex } from "../../engine/catalog.ts";
import { Profile, type OpColumns } from "../../engine/measure/profile.ts";

/** Base µs of each compute op of a layer, then the collectives after o_proj and after down (the plan's two). */
export const LAYER_OPS: [string, number][] = [["qkv", 100], ["attention", 50], ["o_proj", 80], ["all_reduce", 30], ["down", 150], ["all_reduce", 30]];
export const HEAD_OPS: [string, number][] = [["lm_head", 200], ["all_gather", 40], ["gap", 10]];
export const LAYERS = 2;
const COMM = new Set(["all_reduce", "all_gather"]);
const NO_WORK = new Set(["gap", ...COMM]);

/** µs of one op on rank k (compute ops slow down with the rank, collectives and gaps do not). */
export const usOn = (op: string, base: number, k: number) => (COMM.has(op) || op === "gap" ? base : base * (1 + 0.2 * k));

/** Expected per-step µs on rank k: everything, and the collectives. */
export function expectedStepUs(k: number): { step: number; comm: number } {
  const ops = [...Array.from({ length: LAYERS }, () => LAYER_OPS).flat(), ...HEAD_OPS];
  return {
    step: ops.reduce((a, [op, b]) => a + usOn(op, b, k), 0),
    comm: ops.filter(([op]) => COMM.has(op)).reduce((a, [, b]) => a + b, 0),
  };
}

/** FLOPs and bytes of one record of a compute op on one rank (the shard: 1/N of the tp1 work). */
export const workOf = (op: string, ranks: number) => (NO_WORK.has(op) ? { flops: 0, bytes: 0 } : { flops: 4e6 / ranks, bytes: 2e6 / ranks });

export function tpProfile(ranks = 2, opts: { rankColumn?: boolean } = {}): Profile {
  const cols = { step: [], phase: [], layer: [], op: [], kernel: [], t_start_ns: [], t_end_ns: [], flops: [], bytes: [], n_tokens: [], rank: [] } as
    Required<Omit<OpColumns, "counters" | "overlap_ns">>;
  let t = 1_000_000;
  for (let step = 0; step < 3; step++) {
    const phase = step === 0 ? 0 : 1, tokens = step === 0 ? 4 : 1;
    for (let k = 0; k < ranks; k++) {
      let tk = t; // the ranks start each step together (the CPU emulation runs them in turn; the views do not care)
      const push = (layer: number, op: string, us: number) => {
        const w = workOf(op, ranks);
        cols.step.push(step); cols.phase.push(phase); cols.layer.push(layer); cols.op.push(opIndex(op)); cols.kernel.push(0);
        cols.t_start_ns.push(tk); cols.t_end_ns.push(tk + us * 1000); cols.flops.push(w.flops * tokens); cols.bytes.push(w.bytes);
        cols.n_tokens.push(tokens); cols.rank.push(k);
        tk += us * 1000;
      };
      for (let l = 0; l < LAYERS; l++) for (const [op, b] of LAYER_OPS) push(l, op, usOn(op, b, k));
      for (const [op, b] of HEAD_OPS) push(-1, op, usOn(op, b, k));
    }
    t += 10_000_000;
  }
  const ops: OpColumns = opts.rankColumn === false ? { ...cols, rank: undefined } : cols;
  return Profile.parse({
    schema: "qwen-workbench/profile", version: 1, id: `tp${ranks}-fixture`, kind: "run",
    manifest: {
      date: "2026-12-05T00:00:00.000Z", git_commit: "unknown", engine_build: "{}",
      device: { backend: "cuda", name: "NVIDIA H200" },
      model: { id: "synthetic:tiny", hash: "x", format: "synthetic", config: {} },
      toggles: { parallel: `tp${ranks}` }, label: `tp${ranks} fixture`,
    },
    summary: {}, kernels: ["k"], ops,
  });
}
