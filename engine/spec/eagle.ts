// engine/spec/eagle.ts — speculative decoding with an EAGLE head and EAGLE-2's dynamic draft tree, over the
// C ABI (the target and the head are two sessions; engine/spec/eagle-head.ts loads the head).
//
// One step, with T tokens in the target's KV cache and `tok` sampled but not yet in it:
//   catch-up: the head absorbs (token, feature) pairs of the tokens accepted last step (the prompt at first),
//     feature = the target's final-normed hidden state (capture ln_final.hook_normalized), as SafeAILab's
//     EaModel feeds it; its last row gives the level-1 proposals and the hidden state level-1 nodes carry;
//   draft: EAGLE-2's tree (eagle-tree.ts), one head tree prefill per level (qw_session_prefill_tree: every node
//     attends to the committed prefix and its own ancestors, at RoPE position T + its depth); a node's feature
//     is its parent's head output (capture blocks.0.hook_resid_post of the head);
//   verify: ONE target pass over the whole tree [tok, nodes…] with the tree mask and tree positions (on the CPU
//     fed in chunks of <= CPU_VERIFY_CHUNK rows: those run the decode kernels, so each node's logits are bitwise
//     those of a decode step after its path, and greedy is exact by construction; on CUDA one prefill pass, whose
//     argmax must agree with decode's, as for the draft model); accept the longest path whose every token is the
//     target's argmax after its parent, plus the target's own next token;
//   the head's top-k proposals and the verify argmaxes are computed in the engine (EngineSession.topK / argmax,
//     qw_session_read_topk; the argmax without the softmax pass) rather than by copying rows × vocab logits into JS
//     (sampling still reads the logits);
//   compact: the accepted path's K/V move to T, T+1, … (qw_session_kv_compact); the head is cut back to T
//     (its draft nodes are dropped; the accepted tokens are fed again with the target's features next step).
// Every engine call of a step is timed under a phase (engine/spec/phases.ts EAGLE_PHASES): trace.phases.
// Greedy (temperature 0): exact by construction (above). Sampling (temperature > 0): the tree's candidates are
// the head's top-k, deterministic point-mass proposals, so eagle-tree.ts acceptTreeSampled tries a node's
// children in order, accepting x with probability p(x) and removing x from p on a rejection, then draws from
// what is left: every emitted token is distributed as the target's temperature/top-k/top-p sampler would draw
// it (p = engine/spec/sampling.ts dist), from one seeded stream (not the engine's hash(seed, position) draws).
import type { EngineSession } from "../api.ts";
import { checkSampling, SessionError } from "../session.ts";
import { CPU_VERIFY_CHUNK, type SpecHost, type SpecSession } from "./draft.ts";
import { cancelledBeforeStart, SpecOutput, type SpecEvent } from "./output.ts";
import { acceptTreeGreedy, acceptTreeSampled, checkTreeParams, draftTree, topKLogProbs, verifyTree, type Candidate, type Proposals, type TreeParams } from "./eagle-tree.ts";
import { argmaxRow, dist, drawFrom, Uniforms, type SamplingSettings } from "./sampling.ts";
import type { SpecTrace } from "./stats.ts";
import { EAGLE_PHASES, PhaseClock } from "./phases.ts";

export const TARGET_FEATURE_HOOK = "ln_final.hook_normalized";
export const HEAD_HIDDEN_HOOK = "blocks.0.hook_resid_post";

export interface EagleOptions extends Omit<import("../api.ts").GenerateOptions, "seq"> {
  seq?: number;
  tree: TreeParams;
  /** Sequence slot in the head session (default 0). */
  headSeq?: number;
}

type TreeSession = EngineSession & Required<Pick<EngineSession, "prefillTree" | "kvCompact">>;

function treeSession(s: EngineSession, what: string): TreeSession {
  if (!s.prefillTree || !s.kvCompact) throw new SessionError(`speculative eagle: the ${what} session has no tree prefill (open it with openModel)`);
  return s as TreeSession;
}

/** The rows of the one capture named `name` of the last step. */
function captured(s: EngineSession, name: string): { rows: number; cols: number; data: Float32Array } {
  const c = s.captures().find((x) => x.name === name);
  if (!c) throw new Error(`speculative eagle: the step did not fill capture ${name} (a library older than ABI 6 on CUDA?)`);
  return c;
}

/**
 * The top-k proposals of every logits row of the last step: computed in the engine (EngineSession.topK, no
 * rows × vocab copy) where the session offers it, else from the copied logits (the same values: topKLogProbs is
 * the reference of qw_session_read_topk).
 */
function rowProposals(s: EngineSession, k: number): Proposals[] {
  if (s.topK) {
    const t = s.topK(k);
    return Array.from({ length: t.rows }, (_, r) => {
      const tokens: number[] = [], logps: number[] = [];
      for (let j = 0; j < k && t.ids[r * k + j] >= 0; j++) { tokens.push(t.ids[r * k + j]); logps.push(t.logps[r * k + j]); }
      return { tokens, logps };
    });
  }
  const l = s.logits();
  return Array.from({ length: l.rows }, (_, r) => topKLogProbs(l.data, r * l.vocab, l.vocab, k));
}

/**
 * The greedy token after every logits row of the last step (argmaxRow's: the lowest id on ties): the engine's
 * argmax (no softmax pass), else its top-1, else from the copied logits.
 */
function rowArgmax(s: EngineSession): Int32Array {
  if (s.argmax) return s.argmax().map((id) => (id < 0 ? 0 : id));
  if (s.topK) return s.topK(1).ids.map((id) => (id < 0 ? 0 : id));
  const l = s.logits();
  return Int32Array.from({ length: l.rows }, (_, r) => argmaxRow(l.data, r * l.vocab, l.vocab));
}

/**
 * Generates from `target` with the EAGLE `head` drafting (both sessions are reset on their slots; their logits
 * mode and captures are cleared at the end). Events as Session.generate; the done event's `speculative` trace
 * has k = the tree depth, proposed = the depth of each step's tree, nodes = its draft nodes, accepted = the
 * accepted path length.
 */
export async function* eagleGenerate(target: SpecSession, headSession: EngineSession, host: SpecHost, opts: EagleOptions): AsyncGenerator<SpecEvent> {
  const tp = checkTreeParams(opts.tree);
  const tgt = treeSession(target, "target"), head = treeSession(headSession, "EAGLE head");
  const seq = opts.seq ?? 0, hseq = opts.headSeq ?? 0;
  const maxTokens = opts.maxTokens ?? 64;
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new SessionError(`generate: maxTokens must be an integer >= 1, got ${String(maxTokens)}`);
  const samp = checkSampling(opts);
  const greedy = !(samp.temperature > 0);
  const settings: SamplingSettings = { temperature: samp.temperature, topK: samp.topK, topP: samp.topP };
  const rng = new Uniforms(samp.seed);
  for (const s of opts.stop ?? []) if (!Number.isInteger(s)) throw new SessionError(`generate: stop token ${String(s)} is not an integer`);
  const stop = new Set<number>([...host.eosIds, ...(opts.stop ?? [])]);
  const prompt = target.promptTokens(opts);
  if (prompt.length === 0) throw new SessionError("generate: the prompt is empty (it tokenized to no tokens)");
  const maxContext = Math.min(target.maxContext, head.maxContext);
  if (prompt.length > maxContext) throw new SessionError(`generate: the prompt has ${prompt.length} tokens, more than the max context ${maxContext} (of the target and head sessions)`);
  const chunk = host.backend === "cpu" ? CPU_VERIFY_CHUNK : Infinity;
  const tPre = target.maxPrefill ?? target.maxContext, hPre = head.maxPrefill ?? head.maxContext;
  const clock = new PhaseClock(EAGLE_PHASES, true);
  const trace: SpecTrace = { k: tp.depth, proposed: [], accepted: [], draftMs: [], verifyMs: [], nodes: [], phases: clock.trace };
  const time = <T>(phase: (typeof EAGLE_PHASES)[number], f: () => T): T => clock.time(phase, f);
  const signal = opts.signal;

  tgt.reset(seq);
  head.reset(hseq);
  tgt.setSampling(seq, { temperature: 0 });
  head.setSampling(hseq, { temperature: 0 });
  if (signal?.aborted) {
    yield cancelledBeforeStart(trace);
    return;
  }
  try {
    const t0 = performance.now();
    tgt.setLogitsMode(greedy ? 0 : 1);
    tgt.setCapture([TARGET_FEATURE_HOOK]);
    head.setCapture([HEAD_HIDDEN_HOOK]);
    // The prompt in the chunks Session.prefill uses, so the first token is exactly the non-speculative one.
    let H = 0, tok = -1;
    const promptFeats: Float32Array[] = [];
    for (let o = 0; o < prompt.length; o += tPre) {
      tok = tgt.prefill(seq, prompt.slice(o, Math.min(prompt.length, o + tPre)));
      const c = captured(tgt, TARGET_FEATURE_HOOK);
      H = c.cols;
      promptFeats.push(c.data);
    }
    if (!greedy) {
      const l = tgt.logits();
      tok = drawFrom(dist(l.data, (l.rows - 1) * l.vocab, l.vocab, settings), rng.next());
    }
    const prefillMs = performance.now() - t0;
    yield { type: "prefill", promptTokens: prompt.length, ms: prefillMs };
    // pairs the head still has to absorb: tokens x_{i+1} with the target's features f_i
    let catchTokens = [...prompt.slice(1), tok];
    let catchFeats = new Float32Array(prompt.length * H);
    { let off = 0; for (const f of promptFeats) { catchFeats.set(f, off); off += f.length; } }
    let T = prompt.length; // tokens in the target's KV cache
    tgt.setLogitsMode(2);  // every verify pass reads every row (its argmax, or its logits when sampling)
    const em = new SpecOutput(host.decoder, stop, maxTokens);
    const emitted: number[] = [tok];
    let stepMs = prefillMs, phase: "prefill" | "decode" = "prefill";
    for (;;) {
      if (!(yield* em.emit(emitted, stepMs, phase))) break;
      if (T + 1 > maxContext) { em.reason = "length"; break; }
      if (signal) {
        await new Promise<void>((r) => setImmediate(r));
        if (signal.aborted) { em.reason = "cancelled"; break; }
      }
      const s0 = performance.now();
      // ---- head catch-up: its last row proposes level 1
      head.setLogitsMode(1);
      for (let o = 0; o < catchTokens.length; o += hPre) {
        const n = Math.min(catchTokens.length, o + hPre) - o;
        const feats = catchFeats.slice(o * H, (o + n) * H);
        time("head_catchup", () => head.prefillTree(hseq, catchTokens.slice(o, o + n), null, 0, feats));
      }
      let rootHidden: Float32Array, rootProps: Proposals;
      {
        const hc = time("head_readback", () => captured(head, HEAD_HIDDEN_HOOK)), props = time("head_readback", () => rowProposals(head, tp.topK));
        rootHidden = hc.data.slice((hc.rows - 1) * H, hc.rows * H);
        rootProps = props[props.length - 1];
      }
      // what fits: the path emits depth + 1 tokens at most; the tree and the head's draft rows fit the context
      const depth = Math.max(0, Math.min(tp.depth, maxTokens - em.out.length - 1, maxContext - T - 1));
      const budget = Math.min(tp.budget, maxContext - T - 1);
      // ---- draft: EAGLE-2's tree, one head step per level
      const headIdx = new Map<number, number>();  // candidate -> row in the head's draft tree
      const headParents: number[] = [];
      const hidden: Float32Array[] = [];           // per head draft row: its output hidden state
      head.setLogitsMode(2);
      const expand = (nodes: number[], cands: readonly Candidate[]): Proposals[] => {
        if (T + headParents.length + nodes.length > head.maxContext) return nodes.map(() => ({ tokens: [], logps: [] }));
        const first = headParents.length;
        const feats = new Float32Array(nodes.length * H);
        nodes.forEach((n, i) => {
          const p = cands[n].parent;
          feats.set(p < 0 ? rootHidden : hidden[headIdx.get(p)!], i * H);
          headParents.push(p < 0 ? -1 : headIdx.get(p)!);
          headIdx.set(n, first + i);
        });
        const e0 = clock.sofar("head_expand");
        time("head_expand", () => head.prefillTree(hseq, nodes.map((n) => cands[n].token), headParents, first, feats));
        clock.level(clock.sofar("head_expand") - e0);
        const hc = time("head_readback", () => captured(head, HEAD_HIDDEN_HOOK)), props = time("head_readback", () => rowProposals(head, tp.topK));
        return nodes.map((_, i) => {
          hidden.push(hc.data.subarray(i * H, (i + 1) * H));
          return props[i];
        });
      };
      const tree = depth > 0 && budget > 0
        ? draftTree({ depth, topK: tp.topK, budget }, rootProps, expand)
        : { candidates: [], kept: [] };
      const vt = verifyTree(tok, tree.candidates, tree.kept);
      const s1 = performance.now();
      // ---- verify: one target pass over the tree (CPU: chunks of <= CPU_VERIFY_CHUNK rows); logits mode 2 is set
      // greedy needs each row's argmax only (computed in the engine); sampling the whole distribution
      const logitRows: Float32Array[] = [], argmaxRows: Int32Array[] = [], featRows: Float32Array[] = [];
      let vocab = 0;
      const n = vt.tokens.length, step = Math.min(chunk, tPre);
      for (let o = 0; o < n; o += step) {
        const m = Math.min(n, o + step) - o;
        time("verify", () => tgt.prefillTree(seq, vt.tokens.slice(o, o + m), vt.parents.slice(0, o + m), o, null));
        let rows: number;
        if (greedy) {
          const am = time("verify_readback", () => rowArgmax(tgt));
          rows = am.length;
          argmaxRows.push(am);
        } else {
          const l = time("verify_readback", () => tgt.logits());
          rows = l.rows;
          vocab = l.vocab;
          logitRows.push(l.data);
        }
        if (rows !== m) throw new Error(`speculative eagle: the verify pass returned ${rows} logits rows, expected ${m}`);
        featRows.push(time("verify_readback", () => captured(tgt, TARGET_FEATURE_HOOK)).data);
      }
      const at = (node: number) => { const c = Math.floor(node / step); return { c, r: node - c * step }; };
      const { path, next } = greedy
        ? acceptTreeGreedy(vt, (node) => { const { c, r } = at(node); return argmaxRows[c][r]; })
        : acceptTreeSampled(vt, (node) => { const { c, r } = at(node); return dist(logitRows[c], r * vocab, vocab, settings); }, () => rng.next());
      time("compact", () => tgt.kvCompact(seq, T, path));
      time("compact", () => head.truncate(hseq, T));
      catchTokens = [...path.slice(1).map((p) => vt.tokens[p]), next];
      catchFeats = new Float32Array(path.length * H);
      path.forEach((p, i) => { const { c, r } = at(p); catchFeats.set(featRows[c].subarray(r * H, (r + 1) * H), i * H); });
      T += path.length;
      const s2 = performance.now();
      clock.endStep(s2 - s0);
      trace.proposed.push(Math.max(0, ...vt.depths));
      trace.nodes!.push(n - 1);
      trace.accepted.push(path.length - 1);
      trace.draftMs.push(s1 - s0);
      trace.verifyMs.push(s2 - s1);
      emitted.length = 0;
      emitted.push(...catchTokens);
      tok = next;
      stepMs = s2 - s0;
      phase = "decode";
    }
    yield em.done(trace, prefillMs, prompt.length);
  } finally {
    tgt.setLogitsMode(0);
    head.setLogitsMode(0);
    tgt.setCapture([]);
    head.setCapture([]);
  }
}
