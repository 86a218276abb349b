// Draft-model speculative decoding (engine/spec/, issue 13) on the CPU backend with the fixture pair:
// target models/tiny-qwen2-brown (4 layers) and draft models/tiny-qwen2-brown-draft (1 layer, same tokenizer).
//  (a) greedy: token for token the target's own greedy output, on Brown validation prompts of many lengths, for
//      k = 1, 2, 4, 8 and several max-token counts, and at the max-context boundary;
//  (b) sampling: chi-square tests of speculative rejection sampling against the target's exact distribution,
//      with negative controls that the same test rejects (a sampler that accepts every draft token, and one that
//      redraws from p instead of norm(max(0, p - q)) after a rejection);
//  (c) session truncate, the tokenizer identity check, k validation.
import { test, expect, describe, beforeAll, afterAll } from "bun:test";
import { join } from "node:path";
import { openModel, type Model } from "../../engine/index.ts";
import { acceptSampled, checkDraftK, CPU_VERIFY_CHUNK, rollbackLimit, specHost, speculativeGenerate } from "../../engine/spec/draft.ts";
import { textTokens } from "../../engine/measure/perplexity-run.ts";
import { checkDraftCompatible, draftIncompatibility } from "../../engine/spec/compat.ts";
import { dist, drawFrom, Uniforms } from "../../engine/spec/sampling.ts";
import { QwenTokenizer } from "../../engine/text/tokenizer.ts";
import { buildArms } from "../../engine/measure/sweep.ts";
import { recordRun } from "../../engine/measure/record.ts";
import { cpuLibraryBuilt, ROOT } from "../reference/fixtures.ts";
import { brownPrompts, chiSquare, critical, softmax } from "./spec-helpers.ts";
import { generousTimeout } from "../setup.ts";
import { readFileSync } from "node:fs";

generousTimeout();

const DRAFT_DIR = join(ROOT, "models/tiny-qwen2-brown-draft");

describe.skipIf(!cpuLibraryBuilt())("speculative decoding with a draft model (CPU)", () => {
  let target: Model, draft: Model;
  beforeAll(async () => {
    target = (await openModel("default", { backend: "cpu", threads: 2 })) as Model;
    draft = (await openModel(DRAFT_DIR, { backend: "cpu", threads: 2 })) as Model;
  });
  afterAll(() => { draft?.close(); target?.close(); });

  const run = async (ts: ReturnType<Model["newSession"]>, ds: ReturnType<Model["newSession"]>, opts: Parameters<typeof speculativeGenerate>[3]) => {
    for await (const ev of speculativeGenerate(ts, ds, specHost(target), opts)) if (ev.type === "done") return ev;
    throw new Error("no done event");
  };
  const plain = async (ts: ReturnType<Model["newSession"]>, opts: { prompt?: string; tokens?: number[]; maxTokens: number }) => {
    for await (const ev of ts.generate(opts)) if (ev.type === "done") return ev;
    throw new Error("no done event");
  };

  test("the draft shares the target's tokenizer; other models are refused with a reason", () => {
    expect(draftIncompatibility(target, draft)).toBeUndefined();
    const wider = { ...draft, id: "wider", config: { ...draft.config, vocab_size: draft.config.vocab_size + 64 }, tokenizer: draft.tokenizer };
    expect(() => checkDraftCompatible(target, wider)).toThrow(/wider cannot speculate .*vocab_size 8320 differs .*8256.*share the target's tokenizer/);
    // the same vocabulary size with two token strings swapped
    const json = JSON.parse(readFileSync(join(DRAFT_DIR, "tokenizer.json"), "utf8")) as { model: { vocab: Record<string, number> } };
    const v = json.model.vocab;
    const [x, y] = Object.keys(v).filter((t) => v[t] === 300 || v[t] === 301);
    [v[x], v[y]] = [v[y], v[x]];
    const swapped = { ...draft, id: "swapped", config: draft.config, tokenizer: { ...draft.tokenizer, eosIds: draft.tokenizer.eosIds, inner: QwenTokenizer.fromJson(json) } };
    expect(draftIncompatibility(target, swapped)).toMatch(/token 300 /);
    expect(() => checkDraftK(0)).toThrow(/1\.\.64/);
    expect(() => checkDraftK(2.5)).toThrow(/integer/);
  });

  test("speculative = draft is left out of automatic sweeps, and a run asking for it without a draft model fails clearly", async () => {
    const arms = buildArms(target.toggleRegistry(), "cpu");
    expect(arms.some((a) => "speculative" in a.toggles)).toBe(false);
    expect(buildArms(target.toggleRegistry(), "cpu", { speculative: ["*"] }).map((a) => a.label)).toContain("speculative=draft");
    const s = target.newSession({ maxContext: 64 });
    const spec = { id: "x", prompts: [{ prompt: "The jury" }], maxTokens: 4, sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 }, toggles: { speculative: "draft" }, profiling: false, capture: [] };
    await expect(recordRun(target, s, spec)).rejects.toThrow(/speculative = draft needs a draft model/);
    s.close();
  });

  test("Session.truncate: shortens, refuses to grow or go negative, and the sequence continues exactly", () => {
    const s = target.newSession({ maxContext: 64 });
    const ids = target.tokenizer.encode("The jury said it did not find any evidence");
    const next = s.prefill(0, ids);
    expect(() => s.truncate(0, ids.length + 1)).toThrow(/0\.\.\d+ .*only shortens/);
    expect(() => s.truncate(0, -1)).toThrow();
    expect(() => s.truncate(1, 0)).toThrow(/sequence 1/);
    expect(s.seqLen(0)).toBe(ids.length);
    s.truncate(0, 3);
    expect(s.seqLen(0)).toBe(3);
    expect(s.prefill(0, ids.slice(3))).toBe(next);
    s.close();
  });

  test("the CPU verify pass (chunks of <= 7 rows) gives bitwise the logits of decode steps", () => {
    const s = target.newSession({ maxContext: 128 });
    const ids = target.tokenizer.encode("The jury said it did not find any evidence that the city had any of the");
    for (const T of [2, 5, CPU_VERIFY_CHUNK]) {
      const n = ids.length;
      s.reset(0);
      s.setLogitsMode(1);
      s.prefill(0, ids.slice(0, n - T));
      const dec: Float32Array[] = [];
      for (let i = n - T; i < n; i++) { s.decode([0], [ids[i]]); dec.push(s.logits().data.slice()); }
      s.truncate(0, n - T);
      s.setLogitsMode(2);
      s.prefill(0, ids.slice(n - T));
      const l = s.logits();
      for (let r = 0; r < T; r++) expect(Buffer.compare(Buffer.from(l.data.buffer, r * l.vocab * 4, l.vocab * 4), Buffer.from(dec[r].buffer))).toBe(0);
    }
    s.close();
  });

  test("greedy: identical to the target's greedy decoding, token for token (k = 1, 2, 4, 8; 24 prompts; several lengths)", async () => {
    const ts = target.newSession({ maxContext: 512 }), ds = draft.newSession({ maxContext: 512 });
    const prompts = brownPrompts(24);
    const maxes = [1, 2, 9, 40, 64];
    let compared = 0, accepted = 0, steps = 0;
    for (let i = 0; i < prompts.length; i++) {
      const maxTokens = maxes[i % maxes.length];
      const ref = await plain(ts, { prompt: prompts[i], maxTokens });
      for (const k of [1, 2, 4, 8]) {
        const got = await run(ts, ds, { prompt: prompts[i], maxTokens, k });
        expect({ i, k, tokens: got.tokens, reason: got.reason }).toEqual({ i, k, tokens: ref.tokens, reason: ref.reason });
        expect(got.text).toBe(ref.text);
        const tr = got.speculative;
        // every step emits its accepted drafts plus one target token; the last step may be cut by max tokens
        const emitted = tr.accepted.reduce((a, b) => a + b + 1, 0);
        expect(emitted).toBeGreaterThanOrEqual(got.tokens.length - 1);
        expect(tr.proposed.every((p) => p <= k)).toBe(true);
        accepted += tr.accepted.reduce((a, b) => a + b, 0);
        steps += tr.accepted.length;
        compared++;
      }
    }
    expect(compared).toBe(96);
    expect(accepted).toBeGreaterThan(steps * 0.2); // the draft really drafts (fixture: ~45 % argmax agreement)
    ts.close(); ds.close();
  });

  test("kvCache = kivi4 past its bf16 ring, k = 64: every rollback stays within kvMaxRollback and the output is the target's own", async () => {
    const prompt = textTokens(target, { kind: "brown" }, 250).tokens;
    const ts = target.newSession({ maxContext: 512 }), ds = draft.newSession({ maxContext: 512 });
    expect(rollbackLimit(ts)).toBe(Infinity); // bf16: any cut is exact
    ts.setToggle("kvCache", "kivi4");
    ds.setToggle("kvCache", "kivi4");
    expect(rollbackLimit(ts)).toBe(97);
    const ref = await plain(ts, { tokens: prompt, maxTokens: 120 });
    const got = await run(ts, ds, { tokens: prompt, maxTokens: 120, k: 64 });
    expect(got.tokens).toEqual(ref.tokens);
    // rejected drafts were rolled back past position 256 (the ring wrapped), by up to 64 tokens at a time
    const rolled = got.speculative.proposed.map((p, i) => p - got.speculative.accepted[i]);
    expect(Math.max(...rolled)).toBeGreaterThan(20);
    ts.close(); ds.close();
  });

  test("greedy at the max-context boundary and with chunked prompts: still identical", async () => {
    const prompt = brownPrompts(3)[2];
    const n = target.tokenizer.encode(prompt).length;
    for (const k of [2, 8]) {
      const ts = target.newSession({ maxContext: n + 13, maxPrefill: 16 }), ds = draft.newSession({ maxContext: n + 13, maxPrefill: 16 });
      const ref = await plain(ts, { prompt, maxTokens: 64 });
      const got = await run(ts, ds, { prompt, maxTokens: 64, k });
      expect(got.tokens).toEqual(ref.tokens);
      expect(got.reason).toBe(ref.reason);
      expect(got.speculative.proposed.every((p) => p <= Math.min(k, 15))).toBe(true);
      ts.close(); ds.close();
    }
  });

  /** Target p0 and draft q1 rows at a prompt (temperature 1), and the exact softmax of the target row. */
  const rowsAt = (ids: number[]) => {
    const ts = target.newSession({ maxContext: 256 }), ds = draft.newSession({ maxContext: 256 });
    ts.setLogitsMode(1); ds.setLogitsMode(1);
    ts.prefill(0, ids); ds.prefill(0, ids);
    const lt = ts.logits().data.slice(), ld = ds.logits().data.slice();
    ts.close(); ds.close();
    return { lt, ld };
  };
  const T1 = { temperature: 1, topK: 0, topP: 1 };

  test("sampling: the first speculative token follows the target's exact softmax (chi-square, 3 prompts x 12k draws, with negative controls)", () => {
    const N = 12_000;
    for (const [pi, prompt] of ["The jury said", "He looked at the", "In the afternoon, the"].entries()) {
      const { lt, ld } = rowsAt(target.tokenizer.encode(prompt));
      const exact = softmax(lt);
      const p = dist(lt, 0, lt.length, T1), q = dist(ld, 0, ld.length, T1);
      let maxDiff = 0;
      for (let i = 0; i < p.length; i++) maxDiff = Math.max(maxDiff, Math.abs(p[i] - exact[i]));
      expect(maxDiff).toBeLessThan(1e-12); // dist() at T = 1 is the softmax
      const expected = new Map<string, number>();
      exact.forEach((x, i) => expected.set(String(i), x));
      const sample = (variant: "spec" | "accept-all" | "redraw-p") => {
        const u = new Uniforms(1000 + pi);
        const counts = new Map<string, number>();
        for (let s = 0; s < N; s++) {
          const d = drawFrom(q, u.next());
          let x = d; // accept-all: the draft's own distribution
          if (variant === "spec") {
            const r = acceptSampled(() => p, [d], [q], () => u.next()); // the loop's code path, k = 1
            x = r.a === 1 ? d : r.next;
          } else if (variant === "redraw-p") x = u.next() <= p[d] / q[d] ? d : drawFrom(p, u.next());
          counts.set(String(x), (counts.get(String(x)) ?? 0) + 1);
        }
        return chiSquare(counts, expected, N);
      };
      const ok = sample("spec");
      if (process.env.QW_SPEC_VERBOSE) console.log(prompt, ok, critical(ok.df), sample("accept-all"), sample("redraw-p"));
      expect(ok.df).toBeGreaterThan(20);
      expect(ok.chi2).toBeLessThan(critical(ok.df));
      const bad1 = sample("accept-all"), bad2 = sample("redraw-p");
      expect(bad1.chi2).toBeGreaterThan(critical(bad1.df));
      expect(bad2.chi2).toBeGreaterThan(critical(bad2.df));
    }
  });

  test("sampling end to end: (first token, first speculative token) through speculativeGenerate follow the target (chi-square, 2k runs)", async () => {
    // maxTokens 3 with k = 1: the prefill samples t0, then one verify step emits x1 (a drafted token accepted, or
    // the residual draw), through the whole loop: draft session, verify pass, truncation, the seeded stream.
    const N = 2000, prompt = "The jury said"; // each run is a whole generation: kept small for a loaded machine
    const ids = target.tokenizer.encode(prompt);
    const { lt } = rowsAt(ids);
    const p0 = softmax(lt);
    const expected = new Map<string, number>();
    const ts = target.newSession({ maxContext: 64 }), ds = draft.newSession({ maxContext: 64 });
    ts.setLogitsMode(1);
    ts.prefill(0, ids);
    for (let t0 = 0; t0 < p0.length; t0++) {
      if (p0[t0] * N < 5) continue;
      ts.truncate(0, ids.length);
      ts.prefill(0, [t0]);
      const p1 = softmax(ts.logits().data);
      p1.forEach((x, x1) => { if (x * p0[t0] * N >= 0.5) expected.set(`${t0},${x1}`, p0[t0] * x); });
    }
    ts.setLogitsMode(0);
    const counts = new Map<string, number>();
    for (let r = 0; r < N; r++) {
      const ev = await run(ts, ds, { prompt, maxTokens: 3, k: 1, temperature: 1, seed: 7 + r });
      const key = `${ev.tokens[0]},${ev.tokens[1]}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    ts.close(); ds.close();
    const { chi2, df } = chiSquare(counts, expected, N);
    if (process.env.QW_SPEC_VERBOSE) console.log("end to end", chi2, df, critical(df));
    expect(df).toBeGreaterThan(10);
    expect(chi2).toBeLessThan(critical(df));
  });
});
