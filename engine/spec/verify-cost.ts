// engine/spec/verify-cost.ts — what a verify pass of n tree tokens costs against one single-token decode step,
// on a model of real shape (issue 13 item 4: "a verify pass of 1, 4, 8, 16, 32 and 64 tree tokens ... against a
// single-token decode step"; on the GPU speculation pays because the n rows cost little more than one while
// decode is bandwidth-bound). Shared by notebooks/verify-cost.ts.
//
// One measurement, after `context` prompt tokens in the KV cache (untimed): a decode step (one token, logits mode
// 0: the engine samples) and, per n, one qw_session_prefill_tree of n nodes shaped like an EAGLE-2 tree (node i's
// parent is (i - 1) / 4: a root with 4 children, each with 4, …), with every row's logits (mode 2: greedy
// verification needs every node's argmax) and the read of every row's argmax (what the EAGLE loop reads after a
// greedy verify pass), each followed by a truncate back to `context` (untimed). Timed around the engine calls
// only; the warm-up rounds are dropped; decode and every n run interleaved per repetition so that
// load drifts hit them alike. On the CPU the eagle loop feeds the tree in chunks of CPU_VERIFY_CHUNK rows (bitwise
// exactness); this measures the single pass the engine offers.
import type { EngineSession } from "../api.ts";
import { opName } from "../catalog.ts";
import { statOf, type Stat } from "../measure/profile.ts";

export const VERIFY_SIZES = [1, 4, 8, 16, 32, 64] as const;

/** parents of an n-node tree, EAGLE-2-like fan-out 4 (node 0 is the root: the last sampled token). */
export function fanoutParents(n: number, fan = 4): number[] {
  return Array.from({ length: n }, (_, i) => (i === 0 ? -1 : Math.floor((i - 1) / fan)));
}

export interface VerifyCostRow { n: number; ms: Stat; vsDecode: number }
/** One profiled pass (profiling = kernels): the wall time of the engine calls and the kernel time per op. */
export interface PassBreakdown { label: string; wallMs: number; ops: { op: string; us: number; kernels: number; names: string[] }[] }
export interface VerifyCostResult { context: number; decode: Stat; rows: VerifyCostRow[]; breakdown?: PassBreakdown[] }

/** Runs `fn` once with profiling = kernels and sums the records' time per op (records in engine order). */
export function profilePass(s: EngineSession, label: string, fn: () => void): PassBreakdown {
  s.takeRecords();
  s.setProfiling("kernels");
  let wallMs = 0;
  try {
    const t0 = performance.now();
    fn();
    wallMs = performance.now() - t0;
  } finally {
    s.setProfiling("off");
  }
  const { ops, kernels } = s.takeRecords();
  const by = new Map<string, { us: number; kernels: number; names: string[] }>();
  for (let i = 0; i < ops.op.length; i++) {
    const name = opName(ops.op[i]);
    const e = by.get(name) ?? { us: 0, kernels: 0, names: [] };
    e.us += (ops.t_end_ns[i] - ops.t_start_ns[i]) / 1e3;
    e.kernels++;
    const k = kernels[ops.kernel[i]];  // which variant ran (e.g. the tree step's attention: split or not)
    if (k !== undefined && !e.names.includes(k)) e.names.push(k);
    by.set(name, e);
  }
  return { label, wallMs, ops: [...by].map(([op, e]) => ({ op, ...e })) };
}

/**
 * Times decode and tree verify passes on `s` (sequence 0, reset first; needs maxContext >= context + max(sizes)
 * and maxPrefill >= max(sizes)). `tokens` gives the context and the tree's tokens (ids below the vocab).
 */
export function measureVerifyCost(s: EngineSession, tokens: number[], o: { context: number; sizes: readonly number[]; reps: number; warmup: number; breakdown?: boolean; onProgress?: (m: string) => void }): VerifyCostResult {
  const maxN = Math.max(...o.sizes);
  if (tokens.length < o.context + maxN) throw new Error(`verify cost: ${tokens.length} tokens given, ${o.context + maxN} needed`);
  if (s.maxContext < o.context + maxN) throw new Error(`verify cost: the session's max context ${s.maxContext} is below context ${o.context} + ${maxN} tree tokens`);
  if (!s.prefillTree) throw new Error("verify cost: this session has no tree prefill (open the model with openModel)");
  const prefillTree = s.prefillTree.bind(s);
  // greedy verification's read: each row's argmax (the engine's, where it offers one), else the logits rows
  const readRows = s.argmax ? () => s.argmax!() : () => s.logits();

  s.reset(0);
  s.setSampling(0, { temperature: 0 });
  s.setLogitsMode(0);
  for (let i = 0; i < o.context; i += s.maxPrefill ?? o.context) s.prefill(0, tokens.slice(i, Math.min(o.context, i + (s.maxPrefill ?? o.context))));
  const tree = tokens.slice(o.context, o.context + maxN);
  const verify = (n: number) => { prefillTree(0, tree.slice(0, n), fanoutParents(n), 0, null); readRows(); };
  const decodeMs: number[] = [];
  const passMs = new Map<number, number[]>(o.sizes.map((n) => [n, []]));
  for (let r = 0; r < o.warmup + o.reps; r++) {
    const keep = r >= o.warmup;
    s.setLogitsMode(0);
    let t0 = performance.now();
    s.decode([0], [tree[0]]);
    const dt = performance.now() - t0;
    s.truncate(0, o.context);
    if (keep) decodeMs.push(dt);
    s.setLogitsMode(2);
    const round: string[] = [];
    for (const n of o.sizes) {
      t0 = performance.now();
      verify(n);
      const vt = performance.now() - t0;
      s.truncate(0, o.context);
      if (keep) passMs.get(n)!.push(vt);
      round.push(`${n}:${vt.toFixed(2)}`);
    }
    s.setLogitsMode(0);
    o.onProgress?.(`${keep ? `rep ${r - o.warmup + 1}` : `warm-up ${r + 1}`}: decode ${dt.toFixed(2)} ms, verify ms ${round.join(" ")}`);
  }
  const decode = statOf(decodeMs, "ms");
  const rows = o.sizes.map((n) => { const ms = statOf(passMs.get(n)!, "ms"); return { n, ms, vsDecode: ms.median / decode.median }; });
  if (!o.breakdown) return { context: o.context, decode, rows };
  // after the timed passes: one profiled pass each (kernels mode runs the engine as it is, graphs included)
  const breakdown = [profilePass(s, "decode", () => s.decode([0], [tree[0]]))];
  s.truncate(0, o.context);
  s.setLogitsMode(2);
  for (const n of o.sizes) {
    breakdown.push(profilePass(s, `verify ${n}`, () => verify(n)));
    s.truncate(0, o.context);
  }
  s.setLogitsMode(0);
  return { context: o.context, decode, rows, breakdown };
}
