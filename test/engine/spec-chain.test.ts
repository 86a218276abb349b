// A draft's chain verified as one decode step (qwen.h qw_session_decode_chain, ABI 10) on the CPU backend: n decode
// rows of one sequence at its next positions give, row by row, the logits and greedy tokens of n plain decode steps
// (within fp32 summation-order noise: the CPU's matmul may block a batch of rows differently from one row), the
// sequence grows by n and truncates back, and what the step cannot do is refused with the reason (a quantized
// kvCache, dca, more rows than max batch) and leaves the sequence as it was.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { openModel, type Model } from "../../engine/index.ts";
import type { Session } from "../../engine/session.ts";
import { join } from "node:path";
import { REPO_ROOT } from "../../engine/constants.ts";
import { specHost, speculativeGenerate } from "../../engine/spec/draft.ts";
import { cpuLibraryBuilt } from "../reference/fixtures.ts";
import { brownPrompts } from "./spec-helpers.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
const argmax = (a: Float32Array) => a.reduce((best, x, i) => (x > a[best] ? i : best), 0);

describe.skipIf(!cpuLibraryBuilt())("decodeChain on the CPU", () => {
  let m: Model;
  beforeAll(async () => { m = (await openModel("default", { backend: "cpu", threads: 2 })) as Model; });
  afterAll(() => m?.close());

  /** Prompt prefill, then `chain` as n plain decode steps: each step's logits and the token after it. */
  const plain = (s: Session, prompt: number[], chain: number[]) => {
    s.reset(0);
    s.setLogitsMode(1);
    s.prefill(0, prompt);
    const rows: Float32Array[] = [], next: number[] = [];
    for (const t of chain) {
      next.push(s.decode([0], [t])[0]);
      rows.push(s.logits().data.slice());
    }
    return { rows, next };
  };

  test("rows = plain decode steps (logits within 1e-4 of max |logit|, greedy tokens equal), length + n, truncate back", () => {
    const s = m.newSession({ maxBatch: 8, maxContext: 256 });
    try {
      const prompt = s.promptTokens({ prompt: "The jury said the election was" });
      // the chain: the model's own greedy continuation (what a good draft proposes), then a token it would not pick
      s.reset(0);
      const cont: number[] = [];
      let tok = s.prefill(0, prompt);
      for (let i = 0; i < 5; ++i) { cont.push(tok); tok = s.decode([0], [tok])[0]; }
      const chain = [...cont, 11];
      const ref = plain(s, prompt, chain);

      s.reset(0);
      s.setLogitsMode(1);
      s.prefill(0, prompt);
      const got = s.decodeChain(0, chain);
      expect(s.seqLen(0)).toBe(prompt.length + chain.length);
      const l = s.logits();
      expect(l.rows).toBe(chain.length);
      for (let i = 0; i < chain.length; ++i) {
        const row = l.data.subarray(i * l.vocab, (i + 1) * l.vocab);
        const scale = ref.rows[i].reduce((x, y) => Math.max(x, Math.abs(y)), 0);
        expect(maxAbsDiff(row, ref.rows[i]) / scale).toBeLessThan(1e-4);
        expect(got[i]).toBe(argmax(row));
        expect(got[i]).toBe(ref.next[i]);
      }
      // a rejected tail is rolled back as after prefill
      s.truncate(0, prompt.length + 2);
      expect(s.seqLen(0)).toBe(prompt.length + 2);
      expect(s.decode([0], [chain[2]])[0]).toBe(ref.next[2]);
    } finally {
      s.close();
    }
  });

  test("the draft loop with verifyAs = chain: the target's greedy tokens (k = 1, 3, 7; 6 prompts); with a q8 cache it falls back to prefill", async () => {
    const draftModel = (await openModel(join(REPO_ROOT, "models/tiny-qwen2-brown-draft"), { backend: "cpu", threads: 2 })) as Model;
    const last = async <T extends { type: string }>(g: AsyncGenerator<T>) => {
      let d: T | undefined;
      for await (const ev of g) if (ev.type === "done") d = ev;
      return d as Extract<T, { type: "done" }>;
    };
    try {
      for (const kv of ["bf16", "q8"]) {
        const ts = m.newSession({ maxBatch: 8, maxContext: 256 }), ds = draftModel.newSession({ maxContext: 256 });
        ts.setToggle("kvCache", kv);
        try {
          for (const prompt of brownPrompts(6)) {
            const ref = await last(ts.generate({ prompt, maxTokens: 24 }));
            for (const k of [1, 3, 7]) {
              const got = await last(speculativeGenerate(ts, ds, specHost(m), { prompt, maxTokens: 24, k, verifyAs: "chain" }));
              expect({ kv, k, tokens: got.tokens }).toEqual({ kv, k, tokens: ref.tokens });
              // one verify call per step on the chain path; under q8 the first step's refused chain call, then its
              // prefill fallback (8 rows as 7 + 1 on the CPU), and prefill from then on
              const calls = got.speculative.phases!.calls.verify;
              if (k === 7 && kv === "bf16") expect(calls.every((c) => c === 1)).toBe(true);
              if (k === 7 && kv === "q8") expect(calls[0]).toBe(3);
            }
          }
        } finally {
          ts.close(); ds.close();
        }
      }
    } finally {
      draftModel.close();
    }
  });

  test("refusals name what is wrong and leave the sequence as it was", () => {
    const s = m.newSession({ maxBatch: 4, maxContext: 128 });
    try {
      s.prefill(0, [1, 2, 3]);
      expect(() => s.decodeChain(0, [4, 5, 6, 7, 8])).toThrow(/exceed max batch 4/);
      expect(() => s.decodeChain(0, [])).toThrow(/no tokens/);
      s.setToggle("kvCache", "q8");
      s.reset(0);
      s.prefill(0, [1, 2, 3]);
      expect(() => s.decodeChain(0, [4, 5])).toThrow(/quantized kvCache/);
      expect(s.seqLen(0)).toBe(3);
    } finally {
      s.close();
    }
  });
});
