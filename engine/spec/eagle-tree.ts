// engine/spec/eagle-tree.ts — EAGLE-2's dynamic draft tree (Li et al. 2024, "EAGLE-2"; SafeAILab cnets1.py
// topK_generate), the verification tree built from it, and greedy acceptance of its longest verified path.
// Pure functions: the head is behind a callback, so the shape of the tree is testable without a model.
//
// Drafting with depth D, top-k K and node budget B:
//   level 1: the K most likely next tokens of the head's last output, score = log p;
//   levels 2..D: the K level-(d-1) candidates with the highest cumulative score are expanded (fed to the head
//     together, one head step per level); each proposes its K best children with score = parent score + log p;
//   then every candidate of every level is reranked by score and the B best are kept (ties: the earlier
//     candidate). A parent's score is >= its child's (log p <= 0) and it was generated earlier, so the kept set
//     always contains the ancestors of every kept node: it is a tree.
// The verification tree: node 0 = the token the target sampled last (not yet in its KV cache), then the kept
// candidates in generation order (parents before children), each with its parent's index (0 for level 1).
import { z } from "zod";
import { drawFrom } from "./sampling.ts";

export interface TreeParams {
  /** Draft levels: the longest path of draft tokens (1..16). */
  depth: number;
  /** Children proposed per expanded node, and nodes expanded per level (1..16). */
  topK: number;
  /** Draft nodes verified per step (1..128). */
  budget: number;
}

export const TREE_LIMITS = { depth: 16, topK: 16, budget: 128 } as const;
export const TreeParamsSchema = z.object({
  depth: z.number().int().min(1).max(TREE_LIMITS.depth),
  topK: z.number().int().min(1).max(TREE_LIMITS.topK),
  budget: z.number().int().min(1).max(TREE_LIMITS.budget),
});
export const DEFAULT_TREE: TreeParams = { depth: 5, topK: 4, budget: 16 };

/** Checks tree parameters; throws an Error naming the bad field and its range. */
export function checkTreeParams(p: unknown): TreeParams {
  const r = TreeParamsSchema.safeParse(p);
  if (!r.success) {
    throw new Error(`speculative eagle: tree parameters: ${r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")} ` +
      `(depth 1..${TREE_LIMITS.depth}, topK 1..${TREE_LIMITS.topK}, budget 1..${TREE_LIMITS.budget})`);
  }
  return r.data;
}

/** A candidate of the draft tree. */
export interface Candidate {
  token: number;
  /** Index of its parent candidate, -1 for level 1. */
  parent: number;
  /** Cumulative log probability under the head. */
  score: number;
  /** 1-based level. */
  depth: number;
}

/** The head's proposals after one node: its top-k tokens and their log probabilities (descending). */
export interface Proposals { tokens: number[]; logps: number[] }

/**
 * Builds the draft tree: `root` = the head's proposals for level 1; `expand(nodes, candidates)` feeds the given
 * candidates (indices into `candidates`, one head step) and returns each one's proposals. Returns every candidate
 * and the kept ones (indices ascending).
 */
export function draftTree(p: TreeParams, root: Proposals, expand: (nodes: number[], candidates: readonly Candidate[]) => Proposals[]): { candidates: Candidate[]; kept: number[] } {
  const cands: Candidate[] = [];
  const take = (pr: Proposals, parent: number, base: number, depth: number) => {
    for (let i = 0; i < Math.min(p.topK, pr.tokens.length); i++) cands.push({ token: pr.tokens[i], parent, score: base + pr.logps[i], depth });
  };
  take(root, -1, 0, 1);
  let level = cands.map((_, i) => i);
  for (let d = 2; d <= p.depth && level.length > 0; d++) {
    const frontier = best(cands, level, p.topK);
    const props = expand(frontier, cands);
    if (props.length !== frontier.length) throw new Error(`eagle: the head returned ${props.length} proposal lists for ${frontier.length} nodes`);
    const start = cands.length;
    frontier.forEach((n, i) => take(props[i], n, cands[n].score, d));
    level = [];
    for (let i = start; i < cands.length; i++) level.push(i);
  }
  const kept = best(cands, cands.map((_, i) => i), p.budget).sort((a, b) => a - b);
  return { candidates: cands, kept };
}

/** The n candidates among `from` with the highest score (ties: the lower index), in that order. */
function best(c: Candidate[], from: number[], n: number): number[] {
  return [...from].sort((a, b) => (c[b].score - c[a].score) || (a - b)).slice(0, n);
}

/** The verification tree: tokens and parents (node 0 = the last sampled token, parent -1). */
export interface VerifyTree { tokens: number[]; parents: number[]; depths: number[] }

export function verifyTree(rootToken: number, cands: Candidate[], kept: number[]): VerifyTree {
  const at = new Map<number, number>();
  const t: VerifyTree = { tokens: [rootToken], parents: [-1], depths: [0] };
  for (const k of kept) {
    const c = cands[k];
    const parent = c.parent < 0 ? 0 : at.get(c.parent);
    if (parent === undefined) throw new Error(`eagle: candidate ${k} is kept without its parent ${c.parent} (not a tree)`);
    at.set(k, t.tokens.length);
    t.tokens.push(c.token);
    t.parents.push(parent);
    t.depths.push(t.depths[parent] + 1);
  }
  return t;
}

/**
 * Greedy acceptance of a verified tree: from node 0, follow the child whose token is the target's argmax after
 * the current node (argmaxAt(node)); stop where no child has it. Returns the path (node indices, starting
 * with 0) and the target's own token after its last node.
 */
export function acceptTreeGreedy(t: VerifyTree, argmaxAt: (node: number) => number): { path: number[]; next: number } {
  const path = [0];
  for (;;) {
    const cur = path[path.length - 1];
    const want = argmaxAt(cur);
    let child = -1;
    for (let i = cur + 1; i < t.tokens.length; i++) if (t.parents[i] === cur && t.tokens[i] === want) { child = i; break; }
    if (child < 0) return { path, next: want };
    path.push(child);
  }
}

/** The k most likely tokens of a logits row with their log-softmax values (descending; ties: lower id). */
export function topKLogProbs(logits: Float32Array, off: number, vocab: number, k: number): Proposals {
  let m = -Infinity;
  for (let i = 0; i < vocab; i++) { const v = logits[off + i]; if (v > m) m = v; }
  let s = 0;
  for (let i = 0; i < vocab; i++) { const v = logits[off + i]; if (!Number.isNaN(v)) s += Math.exp(v - m); }
  const lse = m + Math.log(s);
  const ids: number[] = [];
  for (let i = 0; i < vocab; i++) {
    const v = logits[off + i];
    if (Number.isNaN(v)) continue;
    if (ids.length < k) { ids.push(i); ids.sort((a, b) => (logits[off + b] - logits[off + a]) || (a - b)); continue; }
    if (v > logits[off + ids[k - 1]]) { ids[k - 1] = i; ids.sort((a, b) => (logits[off + b] - logits[off + a]) || (a - b)); }
  }
  return { tokens: ids, logps: ids.map((i) => logits[off + i] - lse) };
}

/**
 * Sampling acceptance of a verified tree (temperature > 0). The tree's candidates are deterministic (the head's
 * top-k), i.e. point-mass proposals, so at a node with target distribution p the children are tried in order:
 * child x is accepted with probability p(x) (= min(1, p(x)/q(x)) with q = the point mass on x); on a rejection
 * p <- norm(p without x) (= norm(max(0, p - q))) and the next child is tried; when no child is accepted the
 * token is drawn from what is left of p. By induction every emitted token is distributed exactly as p given
 * its prefix: the target's sampling distribution is kept (the test checks it with chi-square). pAt(node) gives
 * the target's distribution after the node's path; u() a fresh uniform in (0, 1] per call.
 */
export function acceptTreeSampled(t: VerifyTree, pAt: (node: number) => Float64Array, u: () => number): { path: number[]; next: number } {
  const path = [0];
  for (;;) {
    const cur = path[path.length - 1];
    const p = Float64Array.from(pAt(cur));
    let chosen = -1;
    for (let i = cur + 1; i < t.tokens.length && chosen < 0; i++) {
      if (t.parents[i] !== cur) continue;
      let mass = 0;
      for (const x of p) mass += x;
      const x = t.tokens[i];
      if (!(mass > 0) || p[x] <= 0) continue;            // nothing of p left on x: it cannot be accepted
      if (u() * mass <= p[x]) chosen = i;                 // accept with probability p(x) / |p|
      else p[x] = 0;                                      // reject: the residual keeps the rest of p
    }
    if (chosen >= 0) { path.push(chosen); continue; }
    return { path, next: drawFrom(p, u()) };
  }
}
