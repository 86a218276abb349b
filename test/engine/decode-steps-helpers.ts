// Checks of qw_session_decode_steps (ABI 11) shared by the CPU test (test/engine/decode-steps.test.ts) and its CUDA
// twin (test/gpu/decode-steps.test.ts): n steps in one call give the tokens, lengths and sampling draws of n decode
// calls fed with the previous outputs, and leave the cache they would leave; generate with stepsPerSync > 1 gives
// what stepsPerSync = 1 gives, with the cache cut back to the same length after a stop inside a call; bad input is
// refused with nothing changed.
import { expect } from "bun:test";
import type { Model } from "../../engine/index.ts";
import type { Session } from "../../engine/session.ts";
import { QwenError } from "../../engine/ffi.ts";

const PROMPTS = ["The jury said the election was", "It was a cold morning in", "He had never seen the"];

/** Prefills prompt i into sequence i (i < n) and returns the token each prefill sampled. */
function start(s: Session, n: number): number[] {
  s.reset();
  return Array.from({ length: n }, (_, i) => s.prefill(i, s.promptTokens({ prompt: PROMPTS[i] })));
}

/** nSteps decode calls, each fed with the previous outputs: the rows of tokens. */
function loop(s: Session, seqs: number[], first: number[], nSteps: number): number[][] {
  const rows: number[][] = [];
  let tok = first;
  for (let j = 0; j < nSteps; j++) rows.push((tok = s.decode(seqs, tok)));
  return rows;
}

/** decodeSteps = the loop, for batches of 1 and 3, greedy and sampled (seeded draws are per position); the step
 * after either reads the same cache, so it gives the same token. */
export function checkStepsEqualLoop(m: Model, nSteps = 24): void {
  const s = m.newSession({ maxBatch: 4, maxContext: 256 });
  try {
    for (const n of [1, 3]) {
      const seqs = Array.from({ length: n }, (_, i) => i);
      for (const temperature of [0, 0.9]) {
        for (const q of seqs) s.setSampling(q, { temperature, topK: 0, topP: 1, seed: 7 + q });
        const first = start(s, n);
        const want = loop(s, seqs, first, nSteps + 1);
        const lens = seqs.map((q) => s.seqLen(q) - 1);
        start(s, n);
        const got = s.decodeSteps(seqs, first, nSteps);
        expect(got).toEqual(want.slice(0, nSteps));
        expect(seqs.map((q) => s.seqLen(q))).toEqual(lens);
        expect(s.decode(seqs, got[nSteps - 1])).toEqual(want[nSteps]);
      }
    }
  } finally {
    s.close();
  }
}

/** generate with stepsPerSync 8 / 5 = stepsPerSync 1: the tokens, the reason, and the cache length after it, for a
 * run cut by maxTokens (not a multiple of the call size) and one stopped by a token inside a call. */
export async function checkGenerateSteps(m: Model): Promise<void> {
  const s = m.newSession({ maxBatch: 1, maxContext: 256 });
  const run = async (stepsPerSync: number, stop: number[], maxTokens: number) => {
    let done: { tokens: number[]; reason: string } | undefined;
    for await (const ev of s.generate({ prompt: PROMPTS[0], maxTokens, stop, stepsPerSync }))
      if (ev.type === "done") done = ev;
    return { tokens: done!.tokens, reason: done!.reason, len: s.seqLen(0) };
  };
  try {
    const plain = await run(1, [], 29);
    expect(plain.reason).toBe("length");
    for (const k of [5, 8]) expect(await run(k, [], 29)).toEqual(plain);
    // stop on the 11th token: inside the second call of 8 and the third of 5
    const stopTok = plain.tokens[10];
    const cut = await run(1, [stopTok], 29);
    expect(cut.reason).toBe("stop");
    for (const k of [5, 8]) expect(await run(k, [stopTok], 29)).toEqual(cut);
  } finally {
    s.close();
  }
}

/** Bad input: a clear error, the sequences as they were. */
export function checkStepsRefusals(m: Model): void {
  const s = m.newSession({ maxBatch: 2, maxContext: 64 });
  try {
    const first = start(s, 2);
    const lens = [s.seqLen(0), s.seqLen(1)];
    expect(() => s.decodeSteps([0, 1], first, 0)).toThrow(/nSteps = 0 must be an integer >= 1/);
    expect(() => s.decodeSteps([0, 0], first, 2)).toThrow(/appears twice/);
    expect(() => s.decodeSteps([0], first, 2)).toThrow(/1 seqIds but 2 tokens/);
    expect(() => s.decodeSteps([0, 1], first, 5000)).toThrow(/n_steps = 5000 must be in \[1, 4096\]/);
    let overflow: unknown;
    try { s.decodeSteps([0, 1], first, 64); } catch (e) { overflow = e; }
    expect(overflow).toBeInstanceOf(QwenError);
    expect((overflow as QwenError).message).toMatch(/more would exceed max_context = 64/);
    expect([s.seqLen(0), s.seqLen(1)]).toEqual(lens);
    // with logits mode on the engine runs the steps one by one: the logits are the last step's
    s.setLogitsMode(1);
    const got = s.decodeSteps([0, 1], first, 3);
    const l = s.logits();
    expect(l.rows).toBe(2);
    start(s, 2);
    const want = loop(s, [0, 1], first, 3);
    expect(got).toEqual(want);
    expect(Array.from(s.logits().data)).toEqual(Array.from(l.data));
    s.setLogitsMode(0);
  } finally {
    s.close();
  }
}
