// engine/spec/draft.ts — draft-model speculative decoding over the C ABI (backend-agnostic: CPU and CUDA).
//
// Each verify step: the draft model proposes up to k tokens one by one from its own session; the target runs
// ONE pass over [last token, d1..dk] on its KV cache with every row's logits (logits mode 2), which gives its
// distribution after each prefix; the longest acceptable prefix d1..da is kept, the target adds one token of
// its own (the correction after a rejection, or the bonus after k acceptances), and both KV caches are cut back
// with qw_session_truncate to what was accepted. Greedy reads only each row's argmax, computed in the engine
// (EngineSession.argmax, no rows × vocab copy); every engine call of a step is timed under a phase
// (engine/spec/phases.ts DRAFT_PHASES): trace.phases.
//
// Greedy (temperature 0): d_i is accepted while it equals the target's argmax (lowest id on ties, as the
// engine), so the output is the target's own greedy continuation, token for token — provided the verify
// pass computes the same argmax as one-token decode steps would. On the CPU it computes bitwise the same logits
// (chunks of <= 7 rows, CPU_VERIFY_CHUNK; tested in test/engine/speculative.test.ts); on CUDA prefill and decode
// kernels differ, so a near-tie could flip (the first H100 run had one): there the verify runs as a decode step of
// k + 1 rows of the sequence instead (verifyAs = "chain", qw_session_decode_chain): the decode path itself, batch-
// invariant, so greedy equals plain decoding bit for bit, in the batched decode graph at about one decode step's cost.
//
// Sampling (temperature > 0): standard speculative rejection sampling (Leviathan et al. 2023, Chen et al. 2023).
// p = the target's sampling distribution and q = the draft's, both the engine's distribution for the SAME
// settings (temperature, top_k, top_p; engine/spec/sampling.ts). d_i ~ q_i is accepted with probability
// min(1, p_i(d_i) / q_i(d_i)); on the first rejection the token is drawn from norm(max(0, p_i - q_i)); after
// k acceptances the bonus token is drawn from p_{k+1}. Every emitted token is then distributed exactly as the
// engine's non-speculative sampler would draw it given the same prefix: the preserved distribution is the
// target's temperature/top-k/top-p distribution at every position. The draws come from one seeded stream
// (engine/spec/sampling.ts Uniforms) rather than the engine's hash(seed, position), so a seed gives a
// reproducible sequence, but not the same tokens as a non-speculative run with that seed.
import type { EngineSession, GenerateOptions } from "../api.ts";
import { checkSampling, SessionError } from "../session.ts";
import { argmaxRow, dist, drawFrom, residual, Uniforms, type SamplingSettings } from "./sampling.ts";
import type { SpecTrace } from "./stats.ts";
import { cancelledBeforeStart, SpecOutput, type SpecEvent } from "./output.ts";
import { DRAFT_PHASES, PhaseClock } from "./phases.ts";

/** A session as the loop needs it: the engine API plus the prompt tokenizer of engine/session.ts Session. */
export type SpecSession = EngineSession & { promptTokens(opts: GenerateOptions): number[] };

export interface SpecOptions extends GenerateOptions {
  /** Draft tokens per verify step (1..64). */
  k: number;
  /** Sequence slot in the draft session (default 0). */
  draftSeq?: number;
  /**
   * How the target verifies a chain: "chain" = one decode step of k + 1 rows of the sequence (qw_session_decode_chain:
   * the decode path, batch-invariant, so greedy equals plain decoding bit for bit; the CUDA default), "prefill" = a
   * prefill pass (the CPU default: its small prefills already run the decode kernels). "chain" falls back to prefill
   * where the engine refuses it (a quantized kvCache, dca, ...) or the chain has more rows than the max batch.
   */
  verifyAs?: "chain" | "prefill";
}

export type { SpecDoneEvent, SpecEvent } from "./output.ts";

/** What the loop needs of the target model: its stop ids and a streaming detokenizer (engine/index.ts Model). */
export interface SpecHost {
  readonly eosIds: readonly number[];
  decoder(): { push(id: number): string; end(): string };
  /** The target's backend: on "cpu" the verify pass runs in chunks of at most CPU_VERIFY_CHUNK rows. */
  readonly backend?: "cpu" | "cuda";
}

/**
 * The CPU backend computes prefill steps of fewer than 8 rows with the decode kernels (matmul.cpp
 * kDequantMinT, attention kBlockedMinRows), so such a verify pass gives bitwise the logits of decode steps and
 * greedy speculation is exact by construction; from 8 rows on it switches to the blocked GEMM and attention
 * (~1e-4 apart, and slower for these few rows). The verify pass is therefore fed in chunks of <= 7 rows there.
 */
export const CPU_VERIFY_CHUNK = 7;

/** The SpecHost of a model opened with openModel. */
export function specHost(m: { backend?: "cpu" | "cuda"; tokenizer: { eosIds: number[]; inner: { decoder(): { push(id: number): string; end(): string } } } }): SpecHost {
  return { eosIds: m.tokenizer.eosIds, decoder: () => m.tokenizer.inner.decoder(), ...(m.backend ? { backend: m.backend } : {}) };
}

export const MAX_DRAFT_K = 64;

/**
 * Toggle values that take more than the value itself: speculative = draft needs a draft model and eagle an EAGLE
 * head, which a toggle set alone cannot name. Automatic sweeps (engine/measure/sweep.ts) leave them out; a run asked
 * for them without the extra input fails (engine/measure/record.ts) instead of silently running without speculation.
 */
export const TOGGLE_VALUES_NEEDING_INPUT: Record<string, { values: string[]; needs: string }> = {
  speculative: {
    values: ["draft", "eagle"],
    needs: "a draft model (CLI --draft PATH, web: the draft model field, RunSpec.draft) or, for eagle, an EAGLE head (CLI --eagle DIR, RunSpec.eagle)",
  },
};

/** Checks k; returns it. */
export function checkDraftK(k: unknown): number {
  if (typeof k !== "number" || !Number.isInteger(k) || k < 1 || k > MAX_DRAFT_K) {
    throw new SessionError(`speculative: the draft length k must be an integer in 1..${MAX_DRAFT_K}, got ${String(k)}`);
  }
  return k;
}

const rowOf = (logits: Float32Array, vocab: number, r: number) => r * vocab;

/** Tokens a session's KV cache can be cut back by exactly (engine/api.ts KvInfo.kvMaxRollback); Infinity when any. */
export function rollbackLimit(s: EngineSession): number {
  const r = s.kvInfo?.().kvMaxRollback ?? -1;
  return r < 0 ? Infinity : r;
}

/**
 * The verify pass, timed as verify / verify_readback on `clock`: while `chain.on`, one decode step of the chain's rows
 * (decodeChain; greedy takes the tokens it returns; a refusal turns chain off and falls through), else a prefill of
 * `tokens` in chunks of at most `chunk` rows (logits mode 2 is set). Greedy reads each row's argmax from the engine
 * where it offers one (no rows × vocab copy into JS); otherwise every row's logits.
 */
function verify(target: EngineSession, seq: number, tokens: number[], chunk: number, clock: PhaseClock, greedy: boolean,
  chain: { on: boolean }): (row: number) => { data: Float32Array; off: number; vocab: number } | number {
  if (chain.on && target.decodeChain && tokens.length <= target.maxBatch) {
    let next: number[] | undefined;
    try {
      next = clock.time("verify", () => target.decodeChain!(seq, tokens));
    } catch (e) {
      if ((e as { code?: string }).code !== "QW_ERR_UNSUPPORTED") throw e;
      chain.on = false;  // the session's toggles refuse it (nothing was appended): prefill from now on
    }
    if (next) {
      const out = next;
      if (greedy) return (r) => out[r];  // the engine's greedy sample of each row: its argmax (lowest id on ties)
      const l = clock.time("verify_readback", () => target.logits());
      if (l.rows !== tokens.length) throw new Error(`speculative: the chain verify returned ${l.rows} logits rows, expected ${tokens.length}`);
      return (r) => ({ data: l.data, off: r * l.vocab, vocab: l.vocab });
    }
  }
  const argmax = greedy && target.argmax ? target.argmax.bind(target) : undefined;
  const parts: (Float32Array | Int32Array)[] = [];
  let vocab = 0;
  for (let o = 0; o < tokens.length; o += chunk) {
    const part = tokens.slice(o, Math.min(tokens.length, o + chunk));
    clock.time("verify", () => target.prefill(seq, part));
    const rows = argmax ? clock.time("verify_readback", () => argmax()) : clock.time("verify_readback", () => target.logits());
    const n = rows instanceof Int32Array ? rows.length : rows.rows;
    if (n !== part.length) throw new Error(`speculative: the verify pass returned ${n} logits rows, expected ${part.length}`);
    if (rows instanceof Int32Array) parts.push(rows);
    else { parts.push(rows.data); vocab = rows.vocab; }
  }
  return (r) => {
    const p = parts[Math.floor(r / chunk)], i = r % chunk;
    return p instanceof Int32Array ? Math.max(0, p[i]) : { data: p, off: i * vocab, vocab };
  };
}

/**
 * Greedy verification: accepts d_i while it equals the target's argmax after d_1..d_{i-1} (argmaxAt(i - 1)),
 * then the target's own token. Returns the accepted count a and that token.
 */
export function acceptGreedy(argmaxAt: (row: number) => number, props: readonly number[]): { a: number; next: number } {
  let a = 0;
  while (a < props.length && argmaxAt(a) === props[a]) a++;
  return { a, next: argmaxAt(a) };
}

/**
 * Speculative rejection sampling of one verify step: pAt(i) is the target's distribution after d_1..d_i
 * (pAt(0): after the last accepted token), qs[i] the draft's distribution d_{i+1} was drawn from, u() a fresh
 * uniform in (0, 1] per call. Accepts d_{i+1} with probability min(1, p(d)/q(d)); at the first rejection draws
 * from norm(max(0, p - q)); after all acceptances draws the bonus token from pAt(k).
 */
export function acceptSampled(pAt: (row: number) => Float64Array, props: readonly number[], qs: readonly Float64Array[],
  u: () => number): { a: number; next: number } {
  for (let a = 0; a < props.length; a++) {
    const p = pAt(a), d = props[a], q = qs[a];
    if (u() <= p[d] / q[d]) continue;
    return { a, next: drawFrom(residual(p, q), u()) };
  }
  return { a: props.length, next: drawFrom(pAt(props.length), u()) };
}

/**
 * Generates from `target` with `draft` proposing (both sessions are reset on their slots and left holding the
 * generated sequence; their logits mode is left at 0). Events as Session.generate; the done event carries the
 * per-step trace. tpotMs holds, per emitted token after the first, its step's time divided by the tokens the
 * step emitted.
 */
export async function* speculativeGenerate(target: SpecSession, draft: EngineSession, host: SpecHost, opts: SpecOptions): AsyncGenerator<SpecEvent> {
  const k = checkDraftK(opts.k);
  const seq = opts.seq ?? 0, dseq = opts.draftSeq ?? 0;
  const maxTokens = opts.maxTokens ?? 64;
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new SessionError(`generate: maxTokens must be an integer >= 1, got ${String(maxTokens)}`);
  const samp = checkSampling(opts);
  const settings: SamplingSettings = { temperature: samp.temperature, topK: samp.topK, topP: samp.topP };
  const greedy = !(samp.temperature > 0);
  for (const s of opts.stop ?? []) if (!Number.isInteger(s)) throw new SessionError(`generate: stop token ${String(s)} is not an integer`);
  const stop = new Set<number>([...host.eosIds, ...(opts.stop ?? [])]);
  const prompt = target.promptTokens(opts);
  if (prompt.length === 0) throw new SessionError("generate: the prompt is empty (it tokenized to no tokens)");
  const maxContext = Math.min(target.maxContext, draft.maxContext);
  if (prompt.length > maxContext) throw new SessionError(`generate: the prompt has ${prompt.length} tokens, more than the max context ${maxContext} (of the target and draft sessions)`);
  const chunk = host.backend === "cpu" ? CPU_VERIFY_CHUNK : Infinity;
  const verifyAs = opts.verifyAs ?? (host.backend === "cuda" ? "chain" : "prefill");
  if (verifyAs !== "chain" && verifyAs !== "prefill") throw new SessionError(`verifyAs must be "chain" or "prefill", got ${String(verifyAs)}`);
  const chain = { on: verifyAs === "chain" };
  const maxVerify = Math.min(target.maxPrefill ?? target.maxContext, draft.maxPrefill ?? draft.maxContext);
  // A KV cache with a full-precision window (kvCache = kivi*) can be cut back exactly only kvMaxRollback tokens
  // below the longest length it reached (qw_session_truncate refuses more): a step proposes at most that many
  // tokens, so its rollback (and the draft's, one shorter) always stays within it.
  const maxRollback = Math.min(rollbackLimit(target), rollbackLimit(draft));
  const rng = new Uniforms(samp.seed);
  const clock = new PhaseClock(DRAFT_PHASES);
  const time = <T>(phase: (typeof DRAFT_PHASES)[number], f: () => T): T => clock.time(phase, f);
  const trace: SpecTrace = { k, proposed: [], accepted: [], draftMs: [], verifyMs: [], phases: clock.trace };
  const signal = opts.signal;

  target.reset(seq);
  draft.reset(dseq);
  // Both samplers greedy: with temperature > 0 every draw is made here from the logits (p and q must be known).
  target.setSampling(seq, { temperature: 0 });
  draft.setSampling(dseq, { temperature: 0 });
  if (signal?.aborted) {
    yield cancelledBeforeStart(trace);
    return;
  }
  try {
    const t0 = performance.now();
    target.setLogitsMode(greedy ? 0 : 1);
    let tok = target.prefill(seq, prompt);
    if (!greedy) {
      const l = target.logits();
      tok = drawFrom(dist(l.data, rowOf(l.data, l.vocab, l.rows - 1), l.vocab, settings), rng.next());
    }
    const prefillMs = performance.now() - t0;
    yield { type: "prefill", promptTokens: prompt.length, ms: prefillMs };
    const em = new SpecOutput(host.decoder, stop, maxTokens);
    // the draft has absorbed the prompt minus `pending`; the target holds everything but `tok`
    let pending = [...prompt];
    let tLen = prompt.length;
    const emitted: number[] = [tok];
    let stepMs = prefillMs, phase: "prefill" | "decode" = "prefill";
    target.setLogitsMode(2);
    draft.setLogitsMode(greedy ? 0 : 1);
    for (;;) {
      if (!(yield* em.emit(emitted, stepMs, phase))) break;
      if (tLen + 1 > maxContext) { em.reason = "length"; break; } // the next verify would overflow
      if (signal) {
        await new Promise<void>((r) => setImmediate(r));
        if (signal.aborted) { em.reason = "cancelled"; break; }
      }
      const s0 = performance.now();
      // tokens a step may add: proposals + 1 own token, within max tokens, the context and one prefill call
      const kEff = Math.max(0, Math.min(k, maxTokens - em.out.length - 1, maxContext - tLen - 1, maxVerify - 1, maxRollback));
      // ---- draft: k proposals (and q for sampling)
      const props: number[] = [], qs: Float64Array[] = [];
      pending.push(tok);
      if (kEff > 0) {
        const first = pending;
        let d = time("draft_prefill", () => (first.length === 1 ? draft.decode([dseq], [first[0]])[0] : draft.prefill(dseq, first)));
        pending = [];
        for (let i = 0; i < kEff; i++) {
          if (i > 0) d = time("draft_decode", () => draft.decode([dseq], [props[i - 1]])[0]);
          if (!greedy) {
            const l = time("draft_readback", () => draft.logits());
            const q = dist(l.data, rowOf(l.data, l.vocab, l.rows - 1), l.vocab, settings);
            d = drawFrom(q, rng.next());
            qs.push(q);
          }
          props.push(d);
        }
      }
      const s1 = performance.now();
      // ---- verify: one target pass over [tok, d1..dk]
      const row = verify(target, seq, [tok, ...props], chunk, clock, greedy, chain);
      const logitsOf = (i: number) => {
        const r = row(i);
        if (typeof r === "number") throw new Error("speculative: sampling needs the verify logits");
        return r;
      };
      const { a, next } = greedy
        ? acceptGreedy((i) => { const r = row(i); return typeof r === "number" ? r : argmaxRow(r.data, r.off, r.vocab); }, props)
        : acceptSampled((i) => { const r = logitsOf(i); return dist(r.data, r.off, r.vocab, settings); }, props, qs, () => rng.next());
      // ---- rollback: the target keeps tok + d1..da; the draft keeps what it absorbed of that
      time("rollback", () => target.truncate(seq, tLen + 1 + a));
      if (kEff > 0) {
        const dKeep = tLen + 1 + Math.min(a, kEff - 1);
        time("rollback", () => draft.truncate(dseq, dKeep));
        if (a === kEff) pending = [props[kEff - 1]];
      }
      tLen += 1 + a;
      const s2 = performance.now();
      clock.endStep(s2 - s0);
      trace.proposed.push(kEff);
      trace.accepted.push(a);
      trace.draftMs.push(s1 - s0);
      trace.verifyMs.push(s2 - s1);
      emitted.length = 0;
      emitted.push(...props.slice(0, a), next);
      tok = next;
      stepMs = s2 - s0;
      phase = "decode";
    }
    yield em.done(trace, prefillMs, prompt.length);
  } finally {
    target.setLogitsMode(0);
    draft.setLogitsMode(0);
  }
}
