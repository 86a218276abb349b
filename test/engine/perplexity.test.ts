// Perplexity, KL divergence against a saved reference, windowing, the reference file, non-finite logits, the
// Brown validation text, and the `perplexity` CLI command.
import { test, expect, describe, afterAll } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync, existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { EngineSession } from "../../engine/api.ts";
import { logitsError, perplexity as refPerplexity } from "../../engine/measure/metrics.ts";
import {
  coarseKl, measurePerplexity, perplexityWindows, ReferenceReader, rowLogSumExp, rowTopK,
} from "../../engine/measure/perplexity.ts";
import { runPerplexity, textTokens } from "../../engine/measure/perplexity-run.ts";
import { brownDocuments, brownText, detokenize } from "../../engine/text/brown.ts";
import { cpuLibraryBuilt, prompt, ROOT, tinyTestSpec } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const dir = mkdtempSync(join(tmpdir(), "qw-ppl-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("windows and row math", () => {
  test("score all: every token after the first exactly once, stride ctx, short last window", () => {
    const w = perplexityWindows(10, 4, "all");
    expect(w).toEqual([{ start: 0, len: 4, from: 0, to: 4 }, { start: 4, len: 4, from: 0, to: 4 }, { start: 8, len: 1, from: 0, to: 1 }]);
    const scored = w.flatMap((x) => Array.from({ length: x.to - x.from }, (_, r) => x.start + x.from + r + 1));
    expect(scored).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
  test("score half: llama-perplexity chunks, second half scored, incomplete chunk dropped", () => {
    const w = perplexityWindows(21, 8, "half");
    expect(w).toEqual([{ start: 0, len: 8, from: 4, to: 7 }, { start: 8, len: 8, from: 4, to: 7 }]);
    expect(() => perplexityWindows(10, 1, "all")).toThrow(/ctx must be an integer >= 2/);
  });
  test("top-K: descending, lowest id first on ties", () => {
    const x = Float32Array.from([1, 5, 3, 5, -2, 4, 5]);
    const ids = new Int32Array(4), vals = new Float64Array(4);
    rowTopK(x, 0, x.length, 4, ids, vals);
    expect([...ids]).toEqual([1, 3, 6, 5]);
    expect([...vals]).toEqual([5, 5, 5, 4]);
  });
  test("coarse KL: exact with K = V, a close lower bound with K < V", () => {
    const V = 200, rnd = (i: number) => Math.sin(i * 12.9898) * 43758.5453 % 1;
    const p = Float32Array.from({ length: V }, (_, i) => (i < 5 ? 8 - i : rnd(i)));
    const q = Float32Array.from(p, (v, i) => v + 0.3 * rnd(i + 1000));
    const exact = logitsError(p, q, V).kl;
    const lse = rowLogSumExp(p, 0, V), lsq = rowLogSumExp(q, 0, V);
    for (const K of [V, 32, 8]) {
      const ids = new Int32Array(K), vals = new Float64Array(K);
      rowTopK(p, 0, V, K, ids, vals);
      const lps = Float32Array.from(vals, (v) => v - lse);
      const kl = coarseKl(ids, lps, 0, K, q, 0, lsq);
      expect(kl).toBeLessThanOrEqual(exact + 1e-6);
      if (K === V) expect(kl).toBeCloseTo(exact, 6);
      else expect(exact - kl).toBeLessThan(0.5 * exact);
    }
    expect(Number.isNaN(rowLogSumExp(Float32Array.from([1, NaN]), 0, 2))).toBe(true);
    expect(Number.isNaN(rowLogSumExp(Float32Array.from([1, Infinity]), 0, 2))).toBe(true);
  });
});

/** A session whose logits are a fixed function of the last token; rows whose token is `bad` hold NaN. */
function fakeSession(V: number, bad = -1): EngineSession {
  let last: number[] = [];
  return {
    maxBatch: 1, maxContext: 4096, maxPrefill: 4096,
    setLogitsMode() {}, reset() { last = []; },
    prefill(_s: number, t: number[]) { last = t; return 0; },
    decode(_s: number[], t: number[]) { last = t; return [0]; },
    logits() {
      const data = new Float32Array(last.length * V);
      last.forEach((t, r) => { for (let i = 0; i < V; i++) data[r * V + i] = t === bad ? NaN : Math.cos(t * 0.7 + i * 1.3); });
      return { rows: last.length, vocab: V, data };
    },
  } as unknown as EngineSession;
}

describe("measurePerplexity on a fake session", () => {
  test("equals metrics.perplexity over the same rows; standard error from the NLL spread", async () => {
    const V = 16, toks = Array.from({ length: 40 }, (_, i) => (i * 7) % V);
    const r = await measurePerplexity(fakeSession(V), toks, V, { ctx: 64 });
    const s = fakeSession(V);
    s.prefill(0, toks.slice(0, 39));
    expect(r.ppl!).toBeCloseTo(refPerplexity(s.logits().data, V, toks.slice(1)), 6);
    expect(r.scored).toBe(39);
    expect(r.ppl_se!).toBeGreaterThan(0);
    expect(r.ppl_se!).toBeCloseTo(r.ppl! * r.nll_se!, 9);
  });
  test("phase decode scores the same rows with the same numbers (logits here depend on the last token only)", async () => {
    const V = 16, toks = Array.from({ length: 53 }, (_, i) => (i * 7 + (i >> 2)) % V);
    for (const [ctx, score] of [[64, "all"], [16, "all"], [16, "half"], [10, "half"]] as const) {
      const pre = await measurePerplexity(fakeSession(V, 5), toks, V, { ctx, score });
      const dec = await measurePerplexity(fakeSession(V, 5), toks, V, { ctx, score, phase: "decode" });
      expect(dec.phase).toBe("decode");
      expect(pre.phase).toBe("prefill");
      expect([dec.scored, dec.windows, dec.nonfinite_rows, dec.first_nonfinite_token]).toEqual([pre.scored, pre.windows, pre.nonfinite_rows, pre.first_nonfinite_token]);
      expect(dec.nll_mean!).toBeCloseTo(pre.nll_mean!, 12);
    }
  });
  test("non-finite logits are a finding: counted, first position reported, left out of the statistics", async () => {
    const V = 16, toks = Array.from({ length: 40 }, (_, i) => (i * 7) % V);
    const r = await measurePerplexity(fakeSession(V, 5), toks, V, { ctx: 16 });
    const badRows = toks.slice(0, 39).filter((t) => t === 5).length;
    expect(r.nonfinite_rows).toBe(badRows);
    expect(r.first_nonfinite_token).toBe(toks.indexOf(5) + 1);
    expect(Number.isFinite(r.ppl!)).toBe(true);
    expect(JSON.parse(JSON.stringify(r)).ppl).toBe(r.ppl); // JSON-safe
  });
  test("a reference that does not fit, or a damaged file, is a clear error", async () => {
    const V = 16, toks = Array.from({ length: 40 }, (_, i) => (i * 3) % V);
    const path = join(dir, "fake.qwkl");
    await measurePerplexity(fakeSession(V), toks, V, { ctx: 8, save: { path, model: { id: "f", hash: "h" }, toggles: {}, label: "base" } });
    const ref = new ReferenceReader(path);
    await expect(measurePerplexity(fakeSession(V), toks, V, { ctx: 16, reference: ref })).rejects.toThrow(/made at ctx 8, score all; this run uses ctx 16/);
    await expect(measurePerplexity(fakeSession(V), toks.slice(1), V, { ctx: 8, reference: ref })).rejects.toThrow(/different text/);
    const same = await measurePerplexity(fakeSession(V), toks, V, { ctx: 8, reference: ref });
    expect(same.kl!.mean!).toBeLessThan(1e-5); // float32 log-probs in the file: a floor of ~1e-7
    expect(same.kl!.top1_agreement).toBe(1);
    ref.close();
    writeFileSync(join(dir, "junk.qwkl"), "not a reference");
    expect(() => new ReferenceReader(join(dir, "junk.qwkl"))).toThrow(/not a qwen-workbench reference-logits file/);
    expect(() => new ReferenceReader(join(dir, "missing.qwkl"))).toThrow(/cannot be opened/);
    const bytes = readFileSync(path);
    writeFileSync(join(dir, "cut.qwkl"), bytes.subarray(0, bytes.length - 100));
    const cut = new ReferenceReader(join(dir, "cut.qwkl"));
    await expect(measurePerplexity(fakeSession(V), toks, V, { ctx: 8, reference: cut })).rejects.toThrow(/truncated/);
    cut.close();
  });
});

describe("Brown validation text", () => {
  test("25 held-out documents (every 20th of the 500), detokenized", () => {
    const docs = brownDocuments("validation");
    expect(docs.length).toBe(25);
    expect(docs[0].id).toBe("ca20");
    expect(docs[24].id).toBe("cr09");
    expect(detokenize(["``", "Only", "a", "handful", "''", ",", "the", "jury", "said", "."])).toBe('"Only a handful", the jury said.');
    expect(detokenize(["money", "matters", ";", ";"])).toBe("money matters;");
    expect(detokenize(["Westinghouse", "Electric", "Corp.", "."])).toBe("Westinghouse Electric Corp.");
    expect(detokenize(["this", "''", "?", "?"])).toBe('this"?');
    expect(brownText("\n\n\tThe/at jury/nn said/vbd ./.\nIt/pps urged/vbd ./.\n\n\n\tNext/ap one/cd ./.\n")).toBe("The jury said. It urged.\nNext one.");
  });
});

describe.skipIf(!cpuLibraryBuilt())("on the CPU engine (embedded model)", () => {
  test("windows of a real model: one window equals a single prefill; chunked logits reads give the same numbers", async () => {
    const { openModel } = await import("../../engine/index.ts");
    const m = await openModel("default", { backend: "cpu", threads: 2 });
    try {
      const toks = textTokens(m, { kind: "text", text: "The jury said it did find that the court had been fair to all of the men who were there. ".repeat(3) }).tokens;
      const s = m.newSession({ maxContext: 256 });
      const one = await measurePerplexity(s, toks, m.config.vocab_size, { ctx: 256 });
      s.reset(0); s.setLogitsMode(2); s.prefill(0, toks.slice(0, -1)); const lg = s.logits(); s.setLogitsMode(0);
      expect(one.ppl!).toBeCloseTo(refPerplexity(lg.data, lg.vocab, toks.slice(1)), 3);
      const chunked = await measurePerplexity(s, toks, m.config.vocab_size, { ctx: 256, maxLogitFloats: 8 * m.config.vocab_size });
      expect(Math.abs(chunked.ppl! - one.ppl!) / one.ppl!).toBeLessThan(1e-3);
      const win = await measurePerplexity(s, toks, m.config.vocab_size, { ctx: 16 });
      expect(win.windows).toBe(Math.ceil((toks.length - 1) / 16));
      expect(win.ppl!).toBeGreaterThan(one.ppl!); // less context per token
    } finally { m.close(); }
  });

  test("phase decode on a real model: within 1e-3 of prefill; a reference is reused only in its own phase", async () => {
    const { openModel } = await import("../../engine/index.ts");
    const m = await openModel("default", { backend: "cpu", threads: 2 });
    try {
      const toks = textTokens(m, { kind: "text", text: "The jury said it did find that the court had been fair to all of the men who were there. ".repeat(2) }).tokens;
      const s = m.newSession({ maxContext: 64 });
      const pre = await measurePerplexity(s, toks, m.config.vocab_size, { ctx: 24 });
      const dec = await measurePerplexity(s, toks, m.config.vocab_size, { ctx: 24, phase: "decode" });
      expect(dec.scored).toBe(pre.scored);
      expect(Math.abs(dec.ppl! - pre.ppl!) / pre.ppl!).toBeLessThan(1e-3); // decode GEMVs vs prefill GEMMs: fp32 sums
      const path = join(dir, "phase.qwkl");
      const arm = (label: string) => ({ model: m, session: s, toggles: { kvCache: "f32" }, label });
      const a = await runPerplexity({ candidate: arm("c"), reference: { logits: path, run: arm("r") }, tokens: toks, ctx: 24 });
      expect(a.reference_file!.reused).toBe(false);
      const b = await runPerplexity({ candidate: arm("c"), reference: { logits: path, run: arm("r") }, tokens: toks, ctx: 24, phase: "decode" });
      expect(b.reference_file!.reused).toBe(false); // made in phase prefill: measured again in phase decode
      expect(b.candidate.phase).toBe("decode");
      expect(b.candidate.kl!.mean!).toBeLessThan(1e-9); // the same arm in the same phase
      const c = await runPerplexity({ candidate: arm("c"), reference: { logits: path, run: arm("r") }, tokens: toks, ctx: 24, phase: "decode" });
      expect(c.reference_file!.reused).toBe(true);
    } finally { m.close(); }
  });

  test("reference toggle set saved once, then reused; KL small but non-zero for kvCache f32 vs bf16", async () => {
    const { openModel } = await import("../../engine/index.ts");
    const m = await openModel("default", { backend: "cpu", threads: 2 });
    try {
      const { tokens } = textTokens(m, { kind: "brown" }, 1024);
      const s = m.newSession({ maxContext: 128 });
      const path = join(dir, "kv.qwkl");
      const arm = (toggles: Record<string, string>, label: string) => ({ model: m, session: s, toggles, label });
      const a = await runPerplexity({ candidate: arm({ kvCache: "bf16" }, "bf16 kv"), reference: { logits: path, run: arm({ kvCache: "f32" }, "f32 kv") }, tokens, ctx: 128 });
      expect(a.reference_file).toEqual({ path, reused: false, kept: true });
      expect(a.reference!.ppl!).toBeGreaterThan(20);
      const k = a.candidate.kl!;
      expect(k.mean!).toBeGreaterThan(0);
      expect(k.mean!).toBeLessThan(1e-2);
      expect(k.top1_agreement!).toBeGreaterThan(0.95);
      expect(Math.abs(k.ln_ppl_ratio! - Math.log(a.candidate.ppl! / a.reference!.ppl!))).toBeLessThan(1e-6);
      const b = await runPerplexity({ candidate: arm({ kvCache: "bf16" }, "bf16 kv"), reference: { logits: path, run: arm({ kvCache: "f32" }, "f32 kv") }, tokens, ctx: 128 });
      expect(b.reference_file!.reused).toBe(true);
      expect(b.reference).toBeUndefined();
      expect(b.candidate.kl!.mean).toBeCloseTo(k.mean!, 12);
      const same = await runPerplexity({ candidate: arm({ kvCache: "f32" }, "f32"), reference: { logits: path }, tokens, ctx: 128 });
      expect(same.candidate.kl!.mean!).toBeLessThan(1e-12);
      expect(same.candidate.kl!.top1_agreement).toBe(1);
    } finally { m.close(); }
  });

  test("a saved reference records the output format (weightsLayers.output) and is reused only by a model with the same", async () => {
    // same model hash and toggles either way: without the output format in the header, the q8 reference would be
    // read back as the as-loaded one
    const { openSyntheticInMemory } = await import("../../engine/index.ts");
    const spec = tinyTestSpec({ tie_word_embeddings: false });
    const plainM = await openSyntheticInMemory(spec, "f32", { backend: "cpu", threads: 2 });
    const q8M = await openSyntheticInMemory(spec, "f32", { backend: "cpu", threads: 2, weightsLayers: { output: "q8" } });
    try {
      expect(q8M.hash).toBe(plainM.hash);
      const tokens = prompt(48, 3, 0, spec.config.vocab_size), path = join(dir, "output.qwkl");
      const arm = (m: typeof plainM, label: string) => ({ model: m, session: m.newSession({ maxContext: 32 }), toggles: { kvCache: "f32" }, label });
      const header = () => { const r = new ReferenceReader(path); try { return r.header; } finally { r.close(); } };
      const run = (ref: typeof plainM) => runPerplexity({ candidate: arm(plainM, "c"), reference: { logits: path, run: arm(ref, "r") }, tokens, ctx: 16 });
      expect((await run(q8M)).reference_file!.reused).toBe(false);
      expect(header().model.weights_output).toBe("q8");
      const b = await run(plainM);
      expect(b.reference_file!.reused).toBe(false); // another output format: measured again
      expect(b.candidate.kl!.mean!).toBeLessThan(1e-12); // against itself
      expect(header().model.weights_output).toBeUndefined();
      expect((await run(plainM)).reference_file!.reused).toBe(true);
      const c = await run(q8M);
      expect(c.reference_file!.reused).toBe(false);
      expect(c.candidate.kl!.mean!).toBeGreaterThan(0); // the q8 lm_head is visible in the KL
    } finally { plainM.close(); q8M.close(); }
  });

  test("CLI: perplexity with a reference toggle set, JSON output, then reuse; user errors", () => {
    const text = join(dir, "t.txt"), ref = join(dir, "cli.qwkl");
    writeFileSync(text, brownDocuments("validation")[0].text);
    const cli = (...args: string[]) => {
      const r = Bun.spawnSync([process.execPath, join(ROOT, "engine/cli/main.ts"), ...args], { cwd: ROOT, stdin: "ignore", env: { ...process.env, QW_DEBUG: "" } });
      return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
    };
    const args = ["perplexity", "--text", text, "--ctx", "128", "--max-tokens", "600", "--backend", "cpu", "--threads", "2",
      "--reference-toggle", "kvCache=f32", "--reference-logits", ref];
    const a = cli(...args, "--json");
    expect(a.code).toBe(0);
    const j = JSON.parse(a.out);
    expect(j.candidate.tokens).toBe(600);
    expect(j.candidate.scored).toBe(599);
    expect(j.candidate.kl.rows).toBe(599);
    expect(j.reference_file.reused).toBe(false);
    expect(existsSync(ref)).toBe(true);
    const b = cli(...args);
    expect(b.code).toBe(0);
    expect(b.out).toMatch(/perplexity \d+\.\d+ ± \d+\.\d+/);
    expect(b.out).toMatch(/reference logits: reused/);
    expect(b.out).toMatch(/top-1 agreement/);
    for (const [bad, re] of [
      [["perplexity", "--ctx", "1"], /--ctx expects an integer >= 2/],
      [["perplexity", "--score", "third"], /--score must be all or half/],
      [["perplexity", "--phase", "verify"], /--phase must be prefill or decode, got 'verify'/],
      [["perplexity", "--text", join(dir, "nope.txt")], /--text .* does not exist/],
      [["perplexity", "--brown", "--text", text], /not both/],
      [["convert", "default", "--type", "q2_k", "--out", join(dir, "x.gguf")], /--type must be one of/],
      [["convert", "default", "--type", "q8_0"], /give --out/],
      [["perplexity", "--reference-logits", join(dir, "nope.qwkl"), "--max-tokens", "64", "--ctx", "32", "--backend", "cpu"], /cannot be opened/],
    ] as [string[], RegExp][]) {
      const r = cli(...bad);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(re);
      expect(r.err).not.toMatch(/\n\s+at /);
    }
  });

  test("notebook: arms against a reference saved once and reused by the next run; --help prints usage", () => {
    const out = join(dir, "nb");
    const nb = (...args: string[]) => {
      const r = Bun.spawnSync([process.execPath, join(ROOT, "notebooks/perplexity.ts"), ...args], { cwd: ROOT, stdin: "ignore" });
      return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
    };
    const args = ["--max-tokens", "300", "--ctx", "64", "--arm", "kvCache=f32", "--backend", "cpu", "--threads", "2", "--out", out];
    const a = nb(...args);
    expect(a.code).toBe(0);
    expect(a.out).toMatch(/\| kvCache=f32 \| \d+\.\d+ ± \d+\.\d+ \|/);
    expect(existsSync(join(out, "reference.qwkl"))).toBe(true);
    expect(JSON.parse(readFileSync(join(out, "perplexity.json"), "utf8")).results[0].reference_file.reused).toBe(false);
    expect(nb(...args).code).toBe(0);
    expect(JSON.parse(readFileSync(join(out, "perplexity.json"), "utf8")).results[0].reference_file.reused).toBe(true);
    const h = nb("--help");
    expect(h.code).toBe(0);
    expect(h.out).toMatch(/^usage: npx bun notebooks\/perplexity.ts/);
    expect(nb("--ctx", "1").code).toBe(2);
  });
});
