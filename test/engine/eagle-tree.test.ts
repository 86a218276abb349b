// EAGLE-2 draft tree construction (engine/spec/eagle-tree.ts): edge cases (budget 1, depth 1, top-k 1 = a chain),
// reranking by cumulative score, the verification tree's parents and depths, greedy path acceptance, top-k, and
// sampling acceptance (point-mass rejection) against the exact distributions with chi-square.
import { test, expect, describe } from "bun:test";
import {
  acceptTreeGreedy, acceptTreeSampled, checkTreeParams, draftTree, topKLogProbs, verifyTree, type Candidate, type Proposals,
} from "../../engine/spec/eagle-tree.ts";
import { drawFrom, Uniforms } from "../../engine/spec/sampling.ts";
import { chiSquare, critical } from "./spec-helpers.ts";

// A deterministic head: after candidate c (or the root), it proposes tokens 10*(c+1)+i with log p = -(i+1)*w(c).
const headOf = (w: (c: number) => number) => (nodes: number[]): Proposals[] =>
  nodes.map((c) => ({ tokens: [0, 1, 2, 3].map((i) => 10 * (c + 1) + i), logps: [0, 1, 2, 3].map((i) => -(i + 1) * w(c)) }));
const root: Proposals = { tokens: [1, 2, 3, 4], logps: [-0.1, -0.5, -1, -2] };

describe("EAGLE-2 draft tree", () => {
  test("top-k 1 is a chain of depth nodes (budget permitting)", () => {
    const calls: number[][] = [];
    const { candidates, kept } = draftTree({ depth: 4, topK: 1, budget: 16 }, root, (n) => { calls.push([...n]); return headOf(() => 0.2)(n); });
    expect(candidates.map((c) => c.depth)).toEqual([1, 2, 3, 4]);
    expect(candidates.map((c) => c.parent)).toEqual([-1, 0, 1, 2]);
    expect(kept).toEqual([0, 1, 2, 3]);
    expect(calls).toEqual([[0], [1], [2]]); // one head step per level after the first, one node each
    const vt = verifyTree(99, candidates, kept);
    expect(vt.parents).toEqual([-1, 0, 1, 2, 3]);
    expect(vt.depths).toEqual([0, 1, 2, 3, 4]);
    expect(vt.tokens[0]).toBe(99);
  });

  test("depth 1: only the root's top-k, no head step; budget cuts by score", () => {
    let called = 0;
    const { candidates, kept } = draftTree({ depth: 1, topK: 3, budget: 2 }, root, () => { called++; return []; });
    expect(called).toBe(0);
    expect(candidates.map((c) => c.token)).toEqual([1, 2, 3]);
    expect(kept).toEqual([0, 1]);
  });

  test("budget 1: the single most likely level-1 token", () => {
    const { candidates, kept } = draftTree({ depth: 5, topK: 4, budget: 1 }, root, headOf(() => 0.01));
    expect(kept).toEqual([0]);
    expect(verifyTree(7, candidates, kept)).toEqual({ tokens: [7, 1], parents: [-1, 0], depths: [0, 1] });
  });

  test("expands the top-k by cumulative score per level and reranks all levels together", () => {
    // children of candidate 0 are cheap (w = 0.05), of the others expensive (w = 3)
    const { candidates, kept } = draftTree({ depth: 3, topK: 2, budget: 5 }, root, headOf((c) => (c === 0 ? 0.05 : 3)));
    // level 1: tokens 1 (-0.1), 2 (-0.5); level 2 expands both: children of 0 at -0.15, -0.2; of 1 at -3.5, -6.5
    const byTok = new Map(candidates.map((c, i) => [c.token, { ...c, i }]));
    expect(byTok.get(10)!.score).toBeCloseTo(-0.15, 10);
    expect(byTok.get(20)!.score).toBeCloseTo(-3.5, 10);
    // level 3 expands the two best level-2 candidates (tokens 10 and 11, both children of 0)
    const l3 = candidates.filter((c) => c.depth === 3);
    expect(new Set(l3.map((c) => candidates[c.parent].token))).toEqual(new Set([10, 11]));
    // the kept five are the five best scores overall, and closed under parents
    const scores = candidates.map((c) => c.score).sort((a, b) => b - a);
    expect(kept.map((k) => candidates[k].score).sort((a, b) => b - a)).toEqual(scores.slice(0, 5));
    for (const k of kept) if (candidates[k].parent >= 0) expect(kept).toContain(candidates[k].parent);
    const vt = verifyTree(5, candidates, kept);
    for (let i = 1; i < vt.parents.length; i++) {
      expect(vt.parents[i]).toBeLessThan(i);
      expect(vt.depths[i]).toBe(vt.depths[vt.parents[i]] + 1);
    }
  });

  test("ties (log p = 0) keep the parent before the child", () => {
    const flat: Proposals = { tokens: [1, 2], logps: [0, 0] };
    const { candidates, kept } = draftTree({ depth: 3, topK: 2, budget: 3 }, flat, (n) => n.map(() => ({ tokens: [5, 6], logps: [0, 0] })));
    expect(() => verifyTree(0, candidates, kept)).not.toThrow();
    expect(kept).toEqual([0, 1, 2]);
  });

  test("greedy acceptance follows the argmax through the tree and returns the target's next token", () => {
    // tree: 0 -> {1: a, 2: b}; 1 -> {3: c}; 2 -> {4: d}
    const vt = { tokens: [9, 100, 200, 300, 400], parents: [-1, 0, 0, 1, 2], depths: [0, 1, 1, 2, 2] };
    expect(acceptTreeGreedy(vt, (n) => ({ 0: 200, 2: 400, 4: 7 } as Record<number, number>)[n] ?? -1)).toEqual({ path: [0, 2, 4], next: 7 });
    expect(acceptTreeGreedy(vt, (n) => ({ 0: 100, 1: 5 } as Record<number, number>)[n] ?? -1)).toEqual({ path: [0, 1], next: 5 });
    expect(acceptTreeGreedy(vt, () => 3)).toEqual({ path: [0], next: 3 });
  });

  test("a kept candidate without its parent is refused", () => {
    const c: Candidate[] = [{ token: 1, parent: -1, score: -1, depth: 1 }, { token: 2, parent: 0, score: -0.5, depth: 2 }];
    expect(() => verifyTree(0, c, [1])).toThrow(/without its parent/);
  });

  test("top-k log-probabilities: order, ties by id, values", () => {
    const l = new Float32Array([0, 3, 1, 3, -1]);
    const r = topKLogProbs(l, 0, 5, 3);
    expect(r.tokens).toEqual([1, 3, 2]);
    const lse = Math.log([0, 3, 1, 3, -1].reduce((a, v) => a + Math.exp(v), 0));
    expect(r.logps[0]).toBeCloseTo(3 - lse, 6);
    expect(r.logps[2]).toBeCloseTo(1 - lse, 6);
  });

  test("tree parameters are checked with ranges in the message", () => {
    expect(checkTreeParams({ depth: 3, topK: 2, budget: 8 })).toEqual({ depth: 3, topK: 2, budget: 8 });
    expect(() => checkTreeParams({ depth: 0, topK: 2, budget: 8 })).toThrow(/depth.*depth 1\.\.16/);
    expect(() => checkTreeParams({ depth: 2, topK: 2.5, budget: 8 })).toThrow(/topK/);
    expect(() => checkTreeParams({ depth: 2, topK: 2, budget: 500 })).toThrow(/budget/);
  });
});

describe("EAGLE tree sampling (point-mass proposals)", () => {
  test("the first two emitted tokens follow the target's distributions exactly (chi-square, 20k runs), and a wrong sampler fails", () => {
    const V = 6;
    const norm = (w: number[]) => { const s = w.reduce((a, b) => a + b, 0); return Float64Array.from(w.map((x) => x / s)); };
    const pRoot = norm([0.05, 0.4, 0.25, 0.1, 0.15, 0.05]);
    const pAfter: Record<number, Float64Array> = { 1: norm([0.3, 0.1, 0.1, 0.3, 0.1, 0.1]), 2: norm([0.05, 0.05, 0.6, 0.1, 0.1, 0.1]) };
    // tree: root -> {1: token 1, 2: token 2, 3: token 4}; 1 -> {4: token 3}
    const vt = { tokens: [0, 1, 2, 4, 3], parents: [-1, 0, 0, 0, 1], depths: [0, 1, 1, 1, 2] };
    const pAt = (n: number) => (n === 0 ? pRoot : n === 1 ? pAfter[1] : n === 2 ? pAfter[2] : n === 4 ? norm([1, 1, 1, 1, 1, 1]) : norm([1, 2, 3, 4, 5, 6]));
    const rng = new Uniforms(7);
    const N = 20000;
    const run = (accept: typeof acceptTreeSampled) => {
      const first = new Map<string, number>(), second1 = new Map<string, number>();
      let n1 = 0;
      for (let i = 0; i < N; i++) {
        const { path, next } = accept(vt, pAt, () => rng.next());
        const emitted = [...path.slice(1).map((p) => vt.tokens[p]), next];
        first.set(String(emitted[0]), (first.get(String(emitted[0])) ?? 0) + 1);
        if (emitted[0] === 1) { n1++; second1.set(String(emitted[1]), (second1.get(String(emitted[1])) ?? 0) + 1); }
      }
      const exp = (p: Float64Array) => new Map([...p].map((x, i) => [String(i), x] as [string, number]));
      return { a: chiSquare(first, exp(pRoot), N), b: chiSquare(second1, exp(pAfter[1]), n1) };
    };
    const ok = run(acceptTreeSampled);
    expect(ok.a.chi2).toBeLessThan(critical(ok.a.df));
    expect(ok.b.chi2).toBeLessThan(critical(ok.b.df));
    expect(ok.a.df).toBe(V - 1);
    // negative control: a sampler that accepts the first child whenever p gives it any mass
    const greedyish: typeof acceptTreeSampled = (t, p, u) => {
      const path = [0];
      for (;;) {
        const cur = path[path.length - 1];
        const c = t.parents.findIndex((q, i) => i > cur && q === cur && p(cur)[t.tokens[i]] > 0);
        if (c < 0) return { path, next: drawFrom(p(cur), u()) };
        path.push(c);
      }
    };
    const bad = run(greedyish);
    expect(bad.a.chi2).toBeGreaterThan(10 * critical(bad.a.df));
  });
});
