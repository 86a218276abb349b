// Speculative decoding (issue 13) on the CUDA backend. Draft model, with the fixture pair (target
// models/tiny-qwen2-brown, draft models/tiny-qwen2-brown-draft): greedy output token for token the target's own
// greedy decoding (k = 1, 2, 4, 8 on Brown validation prompts), and the end-to-end sampling chi-square of
// test/engine/speculative.test.ts. The verify runs as a decode step of k + 1 rows of the sequence (decodeChain, the
// CUDA default since 2026-12-05; its rows must be plain decode steps bit for bit), so greedy is exact by batch
// invariance; where the engine refuses the chain the verify is a prefill, whose argmax may flip at a near-tie.
// EAGLE, with the shipped head models/tiny-qwen2-brown-eagle: a tree verify pass (tree mask, tree positions) gives
// every node the logits of CUDA decode steps along its path and of the CPU backend's tree pass within bf16 noise,
// KV compaction keeps the path, the head's forward and the target's ln_final capture match the CPU's, and EAGLE
// greedy decoding is token for token CUDA's non-speculative greedy decoding. Skips without a GPU.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { openModel, type Model } from "../../engine/index.ts";
import { specHost, speculativeGenerate } from "../../engine/spec/draft.ts";
import { openEagleHead } from "../../engine/spec/eagle-head.ts";
import { eagleGenerate, HEAD_HIDDEN_HOOK, TARGET_FEATURE_HOOK } from "../../engine/spec/eagle.ts";
import type { TreeParams } from "../../engine/spec/eagle-tree.ts";
import { brownPrompts, chiSquare, critical, softmax } from "../engine/spec-helpers.ts";
import { REPO, argmax, noGpu, rel } from "./gpu.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

describe.skipIf(noGpu())("speculative decoding with a draft model (CUDA)", () => {
  let target: Model, draft: Model;
  beforeAll(async () => {
    target = (await openModel("default", { backend: "cuda" })) as Model;
    draft = (await openModel(join(REPO, "models/tiny-qwen2-brown-draft"), { backend: "cuda" })) as Model;
  });
  afterAll(() => { draft?.close(); target?.close(); });

  const last = async <T extends { type: string }>(g: AsyncGenerator<T>) => {
    let d: T | undefined;
    for await (const ev of g) if (ev.type === "done") d = ev;
    return d as Extract<T, { type: "done" }>;
  };

  test("greedy: identical to the target's greedy decoding (k = 1, 2, 4, 8; 24 prompts)", async () => {
    // max batch 9: the chain verify of k + 1 <= 9 rows (the CUDA default) runs the decode path
    const ts = target.newSession({ maxBatch: 9, maxContext: 512 }), ds = draft.newSession({ maxContext: 512 });
    const maxes = [1, 2, 9, 40, 64];
    const prompts = brownPrompts(24);
    let ties = 0;
    for (let i = 0; i < prompts.length; i++) {
      const maxTokens = maxes[i % maxes.length];
      const ref = await last(ts.generate({ prompt: prompts[i], maxTokens }));
      for (const k of [1, 2, 4, 8]) {
        const got = await last(speculativeGenerate(ts, ds, specHost(target), { prompt: prompts[i], maxTokens, k }));
        const p = got.tokens.findIndex((t, j) => t !== ref.tokens[j]);
        if (p > 0 && nearTie(target, ts.promptTokens({ prompt: prompts[i] }), ref.tokens, got.tokens[p], p, `prompt ${i} k ${k}`)) {
          expect(got.tokens.slice(0, p)).toEqual(ref.tokens.slice(0, p));
          ties++;
          continue;
        }
        expect({ i, k, tokens: got.tokens, reason: got.reason }).toEqual({ i, k, tokens: ref.tokens, reason: ref.reason });
      }
    }
    ts.close(); ds.close();
    expect(ties).toBeLessThanOrEqual(2);  // a near-tie is rare; many would hide a verify-pass bug behind the excuse
  });

  test("decodeChain (the CUDA verify): each row's logits are a plain decode step's, bit for bit (batch invariance)", () => {
    const s = target.newSession({ maxBatch: 8, maxContext: 256 });
    try {
      const prompt = s.promptTokens({ prompt: brownPrompts(1)[0] });
      s.setLogitsMode(1);
      const chain: number[] = [];
      let tok = s.prefill(0, prompt);
      const plain: Float32Array[] = [];
      for (let i = 0; i < 6; ++i) { chain.push(tok); tok = s.decode([0], [tok])[0]; plain.push(s.logits().data.slice()); }
      chain.push(tok);
      s.decode([0], [tok]);
      plain.push(s.logits().data.slice());
      s.reset(0);
      s.prefill(0, prompt);
      const got = s.decodeChain(0, chain);
      const l = s.logits();
      expect(l.rows).toBe(chain.length);
      for (let i = 0; i < chain.length; ++i) {
        const row = l.data.subarray(i * l.vocab, (i + 1) * l.vocab);
        expect(Buffer.from(row.buffer, row.byteOffset, row.byteLength).equals(Buffer.from(plain[i].buffer))).toBe(true);
        expect(got[i]).toBe(argmax(plain[i]));
      }
    } finally {
      s.close();
    }
  });

  test("sampling end to end: (first token, first speculative token) follow the target (chi-square, 4k runs)", async () => {
    const N = 4000, prompt = "The jury said";
    const ids = target.tokenizer.encode(prompt);
    const ts = target.newSession({ maxContext: 64 }), ds = draft.newSession({ maxContext: 64 });
    ts.setLogitsMode(1);
    ts.prefill(0, ids);
    const p0 = softmax(ts.logits().data);
    const expected = new Map<string, number>();
    for (let t0 = 0; t0 < p0.length; t0++) {
      if (p0[t0] * N < 5) continue;
      ts.truncate(0, ids.length);
      ts.prefill(0, [t0]);
      softmax(ts.logits().data).forEach((x, x1) => { if (x * p0[t0] * N >= 0.5) expected.set(`${t0},${x1}`, p0[t0] * x); });
    }
    ts.setLogitsMode(0);
    const counts = new Map<string, number>();
    for (let r = 0; r < N; r++) {
      const ev = await last(speculativeGenerate(ts, ds, specHost(target), { prompt, maxTokens: 3, k: 1, temperature: 1, seed: 7 + r }));
      const key = `${ev.tokens[0]},${ev.tokens[1]}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    ts.close(); ds.close();
    const { chi2, df } = chiSquare(counts, expected, N);
    console.log(`[speculative cuda] chi2 ${chi2.toFixed(1)} on ${df} df (critical ${critical(df).toFixed(1)} at 1e-3)`);
    expect(df).toBeGreaterThan(10);
    expect(chi2).toBeLessThan(critical(df));
  });
});

describe.skipIf(noGpu())("speculative decoding with an EAGLE head (CUDA)", () => {
  let cuda: Model, cpu: Model, headCuda: Model, headCpu: Model;
  const headDir = join(REPO, "models/tiny-qwen2-brown-eagle");
  beforeAll(async () => {
    cuda = (await openModel("default", { backend: "cuda" })) as Model;
    cpu = (await openModel("default", { backend: "cpu", threads: 2 })) as Model;
    headCuda = await openEagleHead(headDir, cuda);
    headCpu = await openEagleHead(headDir, cpu);
  });
  afterAll(() => { headCuda?.close(); headCpu?.close(); cuda?.close(); cpu?.close(); });

  const ids = () => cuda.tokenizer.encode("The jury said it did not find any evidence that the city had");
  // tree: 0:a -> {1:x, 2:b}; 2:b -> {3:y, 4:c}
  const [a, x, b, y, c, d] = [262, 1000, 1500, 2000, 2500, 3000];
  const tokens = [a, x, b, y, c], parents = [-1, 0, 0, 2, 2];
  const rows = (m: Model, split: number) => {
    const s = m.newSession({ maxContext: 128 });
    s.setLogitsMode(0); s.prefill(0, ids()); s.setLogitsMode(2);
    const got: Float32Array[] = [];
    for (let o = 0; o < tokens.length; o += split) {
      const n = Math.min(tokens.length, o + split) - o;
      s.prefillTree(0, tokens.slice(o, o + n), parents.slice(0, o + n), o, null);
      const l = s.logits();
      expect(l.rows).toBe(n);
      for (let r = 0; r < n; r++) got.push(l.data.slice(r * l.vocab, (r + 1) * l.vocab));
    }
    return { s, got };
  };

  test("tree verify: every node's logits match CUDA decode along its path and the CPU's tree pass; compaction keeps the path", () => {
    const ref = cuda.newSession({ maxContext: 128 });
    const decodePath = (path: number[]) => {
      ref.reset(0); ref.setLogitsMode(0); ref.prefill(0, ids()); ref.setLogitsMode(1);
      return path.map((t) => { ref.decode([0], [t]); return ref.logits().data.slice(); });
    };
    const refA = decodePath([a, b, c, d]), refX = decodePath([a, x]), refY = decodePath([a, b, y]);
    const want = [refA[0], refX[1], refA[1], refY[2], refA[2]];
    ref.close();
    const onCpu = rows(cpu, 5);
    onCpu.s.close();
    for (const split of [5, 3, 1]) {
      const { s, got } = rows(cuda, split);
      for (let i = 0; i < tokens.length; i++) {
        const eDec = rel(got[i], want[i]), eCpu = rel(got[i], onCpu.got[i]);
        console.log(`[eagle cuda] split ${split} node ${i}: rel vs CUDA decode ${eDec.toExponential(2)}, vs CPU tree ${eCpu.toExponential(2)}`);
        expect({ split, node: i, argmax: argmax(got[i]) }).toEqual({ split, node: i, argmax: argmax(want[i]) });
        expect(eDec).toBeLessThan(3e-2);
        expect(eCpu).toBeLessThan(3e-2);
      }
      // keep the path a, b, c, then decode d: as decoding a, b, c, d would
      s.kvCompact(0, ids().length, [0, 2, 4]);
      expect(s.seqLen(0)).toBe(ids().length + 3);
      s.setLogitsMode(1);
      s.decode([0], [d]);
      const after = s.logits().data;
      expect(argmax(after)).toBe(argmax(refA[3]));
      expect(rel(after, refA[3])).toBeLessThan(3e-2);
      s.close();
    }
  });

  test("the head's forward and the target's ln_final capture match the CPU's", () => {
    const feats = (m: Model) => {
      const s = m.newSession({ maxContext: 64 });
      s.setCapture([TARGET_FEATURE_HOOK]);
      s.prefill(0, ids());
      const f = s.captures().find((z) => z.name === TARGET_FEATURE_HOOK)!;
      s.close();
      return f;
    };
    const fg = feats(cuda), fc = feats(cpu);
    expect([fg.rows, fg.cols]).toEqual([fc.rows, fc.cols]);
    expect(rel(fg.data, fc.data)).toBeLessThan(3e-2);
    const head = (m: Model) => {
      const s = m.newSession({ maxContext: 64 });
      s.setCapture([HEAD_HIDDEN_HOOK]);
      s.setLogitsMode(2);
      const t = ids();
      s.prefillTree(0, [...t.slice(1), a], null, 0, fc.data);  // the same features on both backends
      s.prefillTree(0, [x, b], [-1, -1], 0, fc.data.slice(0, 2 * fc.cols));
      const out = { logits: s.logits().data.slice(), hidden: s.captures().find((z) => z.name === HEAD_HIDDEN_HOOK)!.data.slice(), top: s.topK(4) };
      s.close();
      return out;
    };
    const hg = head(headCuda), hc = head(headCpu);
    console.log(`[eagle cuda] head logits rel ${rel(hg.logits, hc.logits).toExponential(2)}, hidden rel ${rel(hg.hidden, hc.hidden).toExponential(2)}`);
    expect(rel(hg.logits, hc.logits)).toBeLessThan(3e-2);
    expect(rel(hg.hidden, hc.hidden)).toBeLessThan(3e-2);
    expect(hg.top.ids[0]).toBe(hc.top.ids[0]);
  });

  test("EAGLE greedy: identical to CUDA's non-speculative greedy decoding (shipped head, 16 prompts × 3 trees)", async () => {
    const ts = cuda.newSession({ maxContext: 512 }), hs = headCuda.newSession({ maxContext: 512 });
    const trees: TreeParams[] = [{ depth: 5, topK: 4, budget: 16 }, { depth: 1, topK: 1, budget: 1 }, { depth: 6, topK: 8, budget: 60 }];
    const maxes = [1, 9, 40, 64];
    const prompts = brownPrompts(16);
    let steps = 0, accepted = 0;
    const ties = new Set<string>();  // (prompt, step) pairs: every tree of a prompt meets the same near-tie
    for (let i = 0; i < prompts.length; i++) {
      const maxTokens = maxes[i % maxes.length];
      const ref = await last(ts.generate({ prompt: prompts[i], maxTokens }));
      for (const tree of trees) {
        const got = await last(eagleGenerate(ts, hs, specHost(cuda), { prompt: prompts[i], maxTokens, tree }));
        // the tree verify is a prefill-path pass: its argmax may flip at a measured near-tie, as the draft test's
        // (the fourth H100 run, with the wgmma flash as the prompt's prefill: one such step)
        const p = got.tokens.findIndex((t, j) => t !== ref.tokens[j]);
        if (p > 0 && nearTie(cuda, ts.promptTokens({ prompt: prompts[i] }), ref.tokens, got.tokens[p], p, `eagle prompt ${i} tree ${tree.depth}/${tree.topK}/${tree.budget}`)) {
          expect(got.tokens.slice(0, p)).toEqual(ref.tokens.slice(0, p));
          ties.add(`${i}:${p}`);
        } else {
          expect({ i, tree, tokens: got.tokens, reason: got.reason }).toEqual({ i, tree, tokens: ref.tokens, reason: ref.reason });
        }
        const tr = got.speculative!;
        steps += tr.accepted.length;
        accepted += tr.accepted.reduce((u, v) => u + v, 0);
      }
    }
    console.log(`[eagle cuda] ${steps} verify steps, ${(1 + accepted / steps).toFixed(2)} tokens per step, ${ties.size} near-tie step(s)`);
    expect(ties.size).toBeLessThanOrEqual(2);  // rare; many would hide a tree-verify bug behind the excuse
    expect(accepted).toBeGreaterThan(0);  // the trained head's drafts are accepted on CUDA too
    ts.close(); hs.close();
  });
});

/**
 * The verify pass scores position p with a prefill (GEMM, flash attention), greedy decoding with a decode step
 * (GEMV, split-KV attention): both are bf16-noise apart, so where the target's top two are closer than that noise
 * the argmax may legitimately differ (the first H100 run: prompt 8, k 1, step 13). Replays the reference's path
 * (prompt prefill, then one decode step per token: the decode path's logits at p) and one prefill of prompt +
 * ref[0..p) (the prefill path's), and calls it a near-tie only when the two paths' logits are within bf16 noise
 * (max |diff| / max |logit| < 2e-2) and the reference's margin over the speculative token is within twice their largest
 * difference (the tile test's rule). Logged; the test then compares tokens up to p.
 */
function nearTie(m: Model, prompt: number[], ref: number[], other: number, p: number, what: string): boolean {
  const s = m.newSession({ maxContext: 512 });
  try {
    s.setLogitsMode(1);
    s.prefill(0, prompt);
    for (let j = 0; j < p; j++) s.decode([0], [ref[j]]);
    const dec = s.logits().data.slice();
    s.reset(0);
    s.prefill(0, [...prompt, ...ref.slice(0, p)]);
    const pre = s.logits().data.slice();
    let maxAbs = 0;
    for (let j = 0; j < dec.length; j++) maxAbs = Math.max(maxAbs, Math.abs(dec[j] - pre[j]));
    const gap = dec[ref[p]] - dec[other];
    const tie = rel(pre, dec) < 2e-2 && gap >= 0 && gap <= 2 * maxAbs;
    console.log(`[speculative cuda] ${what}: tokens differ at step ${p} (${ref[p]} vs ${other}): decode-path gap ${gap.toExponential(2)}, ` +
      `prefill vs decode max |diff| ${maxAbs.toExponential(2)}, rel ${rel(pre, dec).toExponential(2)}: ${tie ? "a near-tie, compared up to it" : "not a near-tie"}`);
    return tie;
  } finally {
    s.close();
  }
}

async function last<T extends { type: string }>(g: AsyncGenerator<T>) {
  let d: T | undefined;
  for await (const ev of g) if (ev.type === "done") d = ev;
  return d as Extract<T, { type: "done" }>;
}
