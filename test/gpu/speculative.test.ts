// Draft-model speculative decoding (issue 13) on the CUDA backend, with the fixture pair (target
// models/tiny-qwen2-brown, draft models/tiny-qwen2-brown-draft): greedy output token for token the target's own
// greedy decoding (k = 1, 2, 4, 8 on Brown validation prompts), and the end-to-end sampling chi-square of
// test/engine/speculative.test.ts. The verify pass is a prefill (GEMM, flash attention) compared against decode
// steps (GEMV, split-KV attention): exactness needs their argmax to agree. Skips without a GPU.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { openModel, type Model } from "../../engine/index.ts";
import { specHost, speculativeGenerate } from "../../engine/spec/draft.ts";
import { brownPrompts, chiSquare, critical, softmax } from "../engine/spec-helpers.ts";
import { REPO, noGpu } from "./gpu.ts";
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
    const ts = target.newSession({ maxContext: 512 }), ds = draft.newSession({ maxContext: 512 });
    const maxes = [1, 2, 9, 40, 64];
    const prompts = brownPrompts(24);
    for (let i = 0; i < prompts.length; i++) {
      const maxTokens = maxes[i % maxes.length];
      const ref = await last(ts.generate({ prompt: prompts[i], maxTokens }));
      for (const k of [1, 2, 4, 8]) {
        const got = await last(speculativeGenerate(ts, ds, specHost(target), { prompt: prompts[i], maxTokens, k }));
        expect({ i, k, tokens: got.tokens, reason: got.reason }).toEqual({ i, k, tokens: ref.tokens, reason: ref.reason });
      }
    }
    ts.close(); ds.close();
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
