// test/engine/logits-helpers.ts — the logits readout contract, shared by the CPU test (logits-deferred.test.ts) and
// the GPU one (test/gpu/logits.test.ts): a backend may keep a step's logits rows until they are read
// (Sink::logits_deferred); whichever way they travel, what the API returns must be what it returned when every step
// copied them out at once.
import { expect } from "bun:test";
import type { Model } from "../../engine/index.ts";
import { tensorError } from "../../engine/measure/metrics.ts";
import { argmaxRow } from "../../engine/spec/sampling.ts";

/** The host rule of qw_session_read_topk's argmax: the sampler's (argmaxRow: the largest value, ties to the lower
 *  id, NaN never wins), except -1 for a row of NaN only. */
export function hostArgmax(data: Float32Array, rows: number, vocab: number): number[] {
  return Array.from({ length: rows }, (_, r) => {
    const best = argmaxRow(data, r * vocab, vocab);
    return Number.isNaN(data[r * vocab + best]) ? -1 : best;
  });
}

export function checkDeferredLogits(m: Model): void {
  const s = m.newSession({ maxContext: 256 });
  try {
    const prompt = m.tokenizer.encode("The jury said that the city of Atlanta had");
    const V = m.config.vocab_size;
    // the eager path: with hook_logits captured, every row is copied out during the step
    s.setLogitsMode(2);
    s.setCapture(["hook_logits"]);
    s.prefill(0, prompt);
    const cap = s.captures().find((c) => c.name === "hook_logits");
    expect(cap?.rows).toBe(prompt.length);
    s.reset(0);
    s.setCapture([]);
    // the same step without the hook: rows kept by the backend; the argmax first (the device's, where offered)
    s.prefill(0, prompt);
    const ids = [...s.argmax!()];
    const late = s.logits();
    expect(late.rows).toBe(prompt.length);
    expect(late.vocab).toBe(V);
    expect(tensorError(cap!.data, late.data).rel_l1).toBeLessThanOrEqual(1e-6);
    expect(ids).toEqual(hostArgmax(late.data, late.rows, V));
    // a second read gives the same rows; the host top-1 (with log-probabilities) the same ids
    expect(s.logits().data).toEqual(late.data);
    expect([...s.topK(1).ids]).toEqual(ids);
    // the next step replaces them: a decode step in mode 2 (one row), then mode 1 (the last row per sequence)
    s.decode([0], [ids[ids.length - 1]]);
    const d = s.logits();
    expect(d.rows).toBe(1);
    expect([...s.argmax!()]).toEqual(hostArgmax(d.data, 1, V));
    s.setLogitsMode(1);
    s.decode([0], [s.argmax!()[0]]);
    expect(s.logits().rows).toBe(1);
    s.setLogitsMode(0);
    s.decode([0], [1]);
    expect(s.logits().rows).toBe(0);
  } finally {
    s.close();
  }
}
