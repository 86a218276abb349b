// Speculative decoding with an EAGLE head (engine/spec/eagle*.ts, cuda/src/opt/speculative/) on the CPU backend,
// target models/tiny-qwen2-brown:
//  (a) the loader reads a head in SafeAILab's layout (written here with random weights) and refuses mismatches;
//  (b) the native tree prefill: each node's logits are bitwise those of decode steps along its path (tree mask
//      and tree positions), fed whole or in chunks; KV compaction keeps the path and decoding continues exactly;
//  (c) greedy exactness, token for token against the target's own greedy output, with the random head (drafts
//      almost never accepted) and with an oracle head (a fake head session proposing the target's own
//      continuation, at some positions only as its second choice: long accepted paths, branches, compaction);
//      many prompts, lengths and tree shapes, and at the max-context boundary;
//  (d) sampling through the loop (seeded, reproducible); its distribution is tested in eagle-tree.test.ts;
//  (e) a target loaded with its output requantized (weightsLayers.output, an untied synthetic GGUF): the head's
//      lm_head, read from the target's file, takes the same format; greedy output is still the target's.
import { test, expect, describe, beforeAll, afterAll } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Capture, EngineSession } from "../../engine/api.ts";
import { openModel, type Model } from "../../engine/index.ts";
import { specHost } from "../../engine/spec/draft.ts";
import { eagleConfigFor, openEagleHead, writeEagleHead, type EagleTensors } from "../../engine/spec/eagle-head.ts";
import { eagleGenerate, HEAD_HIDDEN_HOOK } from "../../engine/spec/eagle.ts";
import { topKLogProbs, type TreeParams } from "../../engine/spec/eagle-tree.ts";
import { argmaxRow } from "../../engine/spec/sampling.ts";
import { cpuLibraryBuilt, tinyTestSpec } from "../reference/fixtures.ts";
import { writeSyntheticGguf } from "../../engine/synth/synthetic.ts";
import { brownPrompts, randomHead } from "./spec-helpers.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout();

/**
 * A fake head session that knows the target's greedy sequence `ref` (prompt + output): a row at head position p
 * holding the reference token ref[p + 1] proposes ref[p + 2], first (or second, behind a decoy, at positions
 * p % 3 == 1); any other row proposes decoys. It keeps only a length, as the engine does.
 */
class OracleHead {
  readonly maxBatch = 1;
  len = 0;
  private mode = 0;
  private last: { rows: number; vocab: number; data: Float32Array } = { rows: 0, vocab: 0, data: new Float32Array(0) };
  private cap: Capture = { name: HEAD_HIDDEN_HOOK, rows: 0, cols: 0, data: new Float32Array(0) };
  constructor(private ref: number[], private vocab: number, private H: number, readonly maxContext: number) {}
  reset(): void { this.len = 0; }
  setSampling(): void {}
  setCapture(): void {}
  setLogitsMode(m: number): void { this.mode = m; }
  truncate(_s: number, n: number): void { if (n > this.len) throw new Error("grow"); this.len = n; }
  seqLen(): number { return this.len; }
  prefillTree(_s: number, tokens: number[], parents: number[] | null, first: number, features: Float32Array | null): number {
    if (!features || features.length !== tokens.length * this.H) throw new Error("head rows need features");
    const base = this.len - first, V = this.vocab;
    const depth = (i: number): number => (parents![i] < 0 ? 0 : depth(parents![i]) + 1);
    const data = new Float32Array(tokens.length * V).fill(-5);
    tokens.forEach((tok, i) => {
      const p = parents ? base + depth(first + i) : this.len + i;
      const good = p + 2 < this.ref.length && this.ref[p + 1] === tok ? this.ref[p + 2] : -1;
      const decoy = ((good < 0 ? tok : good) + 17) % V;
      data[i * V + decoy] = 5;
      if (good >= 0) data[i * V + good] = p % 3 === 1 ? 4 : 6;
    });
    this.len += tokens.length;
    this.last = this.mode === 2 ? { rows: tokens.length, vocab: V, data } : { rows: 1, vocab: V, data: data.slice((tokens.length - 1) * V) };
    this.cap = { name: HEAD_HIDDEN_HOOK, rows: tokens.length, cols: this.H, data: new Float32Array(tokens.length * this.H) };
    return 0;
  }
  logits() { return this.last; }
  captures(): Capture[] { return [this.cap]; }
  kvCompact(): void { throw new Error("the head is never compacted"); }
}

describe.skipIf(!cpuLibraryBuilt())("speculative decoding with an EAGLE head (CPU)", () => {
  let target: Model, head: Model, dir: string;
  beforeAll(async () => {
    target = (await openModel("default", { backend: "cpu", threads: 2 })) as Model;
    dir = mkdtempSync(join(tmpdir(), "qw-eagle-"));
    await writeEagleHead(join(dir, "random"), eagleConfigFor(target.config), randomHead(target.config, 1));
    head = await openEagleHead(join(dir, "random"), target);
  });
  afterAll(() => { head?.close(); target?.close(); if (dir) rmSync(dir, { recursive: true, force: true }); });

  const plain = async (ts: EngineSession, opts: { prompt: string; maxTokens: number }) => {
    for await (const ev of ts.generate(opts)) if (ev.type === "done") return ev;
    throw new Error("no done event");
  };
  const eagle = async (ts: ReturnType<Model["newSession"]>, hs: EngineSession, opts: { prompt: string; maxTokens: number; tree: TreeParams; temperature?: number; seed?: number }) => {
    for await (const ev of eagleGenerate(ts, hs, specHost(target), opts)) if (ev.type === "done") return ev;
    throw new Error("no done event");
  };

  test("the loader reads SafeAILab's layout and refuses heads that do not fit the target, saying why", async () => {
    expect(head.config.num_hidden_layers).toBe(1);
    const bad = async (name: string, edit: (cfg: Record<string, unknown>, t: EagleTensors) => void, re: RegExp) => {
      const cfg = eagleConfigFor(target.config) as Record<string, unknown>, t = randomHead(target.config, 2);
      edit(cfg, t);
      await writeEagleHead(join(dir, name), cfg as ReturnType<typeof eagleConfigFor>, t);
      await expect(openEagleHead(join(dir, name), target)).rejects.toThrow(re);
    };
    await bad("hidden", (c) => { c.hidden_size = 128; }, /hidden_size 128 differs from the target's 256/);
    await bad("layers", (c) => { c.num_hidden_layers = 2; }, /exactly 1/);
    await bad("extra", (_c, t) => { t["layers.1.mlp.up_proj.weight"] = { shape: [2], data: new Float32Array(2) }; }, /does not have: layers\.1\.mlp\.up_proj\.weight/);
    await bad("shape", (_c, t) => { t["fc.weight"] = { shape: [256, 256], data: new Float32Array(256 * 256) }; }, /fc\.weight has shape \[256, 256\].*\[256, 512\]/);
    await bad("missing", (_c, t) => { delete t["layers.0.mlp.down_proj.weight"]; }, /down_proj\.weight is missing/);
    writeFileSync(join(dir, "hidden", "config.json"), "{ nope");
    await expect(openEagleHead(join(dir, "hidden"), target)).rejects.toThrow(/config\.json is not JSON/);
    // a head's rows need features; a target's rows take none
    const hs = head.newSession({ maxContext: 32 }), ts = target.newSession({ maxContext: 32 });
    expect(() => hs.prefill(0, [1, 2])).toThrow(/EAGLE head .*qw_session_prefill_tree/);
    expect(() => hs.prefillTree(0, [1, 2], null, 0, null)).toThrow(/features/);
    expect(() => hs.prefillTree(0, [1, 2], null, 0, new Float32Array(300))).toThrow(/tokens × hidden = 2 × 256/);
    expect(() => ts.prefillTree(0, [1, 2], null, 0, new Float32Array(512))).toThrow(/only an EAGLE head/);
    expect(() => ts.prefillTree(0, [1, 2], [0, -1], 0, null)).toThrow(/parents\[0\] = 0/);
    ts.prefill(0, [1, 2, 3]);
    expect(() => ts.kvCompact(0, 1, [1, 0])).toThrow(/ascending/);
    expect(() => ts.kvCompact(0, 1, [0, 2])).toThrow(/not below the length 3/);
    hs.close(); ts.close();
  });

  test("tree prefill: every node's logits are bitwise those of decode steps along its path; compaction keeps the path", () => {
    const s = target.newSession({ maxContext: 128 });
    const ids = target.tokenizer.encode("The jury said it did not find any evidence that the city had");
    const [a, x, b, y, c, d] = [262, 1000, 1500, 2000, 2500, 3000];
    // tree: 0:a -> {1:x, 2:b}; 2:b -> {3:y, 4:c}
    const tokens = [a, x, b, y, c], parents = [-1, 0, 0, 2, 2];
    const decodePath = (path: number[]) => {
      s.reset(0); s.setLogitsMode(0); s.prefill(0, ids); s.setLogitsMode(1);
      const rows: Float32Array[] = [];
      for (const t of path) { s.decode([0], [t]); rows.push(s.logits().data.slice()); }
      return rows;
    };
    const refA = decodePath([a, b, c, d]), refX = decodePath([a, x]), refY = decodePath([a, b, y]);
    const want = [refA[0], refX[1], refA[1], refY[2], refA[2]];
    const same = (u: Float32Array, v: Float32Array) => Buffer.compare(Buffer.from(u.buffer, u.byteOffset, u.byteLength), Buffer.from(v.buffer, v.byteOffset, v.byteLength)) === 0;
    for (const split of [5, 3, 1]) {
      s.reset(0); s.setLogitsMode(0); s.prefill(0, ids); s.setLogitsMode(2);
      const got: Float32Array[] = [];
      for (let o = 0; o < tokens.length; o += split) {
        const n = Math.min(tokens.length, o + split) - o;
        s.prefillTree(0, tokens.slice(o, o + n), parents.slice(0, o + n), o, null);
        const l = s.logits();
        for (let r = 0; r < n; r++) got.push(l.data.slice(r * l.vocab, (r + 1) * l.vocab));
      }
      for (let i = 0; i < tokens.length; i++) expect({ split, node: i, same: same(got[i], want[i]) }).toEqual({ split, node: i, same: true });
      // keep the path a, b, c: positions ids.length + {0, 2, 4} -> ids.length + {0, 1, 2}; then decode d
      s.kvCompact(0, ids.length, [0, 2, 4]);
      expect(s.seqLen(0)).toBe(ids.length + 3);
      s.setLogitsMode(1);
      s.decode([0], [d]);
      expect(same(s.logits().data, refA[3])).toBe(true);
    }
    s.close();
  });

  test("topK and argmax in the engine: the same tokens and log-probabilities as topKLogProbs on the copied logits", () => {
    const s = target.newSession({ maxContext: 64 });
    const ids = target.tokenizer.encode("The jury said it did not find any evidence");
    s.setLogitsMode(2);
    s.prefillTree(0, ids, null, 0, null);
    const l = s.logits();
    for (const k of [1, 4, 16]) {
      const t = s.topK(k);
      expect(t.rows).toBe(ids.length);
      for (let r = 0; r < t.rows; r++) {
        const ref = topKLogProbs(l.data, r * l.vocab, l.vocab, k);
        expect(Array.from(t.ids.subarray(r * k, (r + 1) * k))).toEqual(ref.tokens);
        Array.from(t.logps.subarray(r * k, (r + 1) * k)).forEach((v, j) => expect(Math.abs(v - ref.logps[j])).toBeLessThan(1e-9));
        if (k === 1) expect(t.ids[r]).toBe(argmaxRow(l.data, r * l.vocab, l.vocab));
      }
    }
    // argmax: topK(1)'s ids without the softmax pass (out_logprobs NULL)
    const am = s.argmax();
    expect(Array.from(am)).toEqual(Array.from(s.topK(1).ids));
    expect(Array.from(am)).toEqual(Array.from({ length: l.rows }, (_, r) => argmaxRow(l.data, r * l.vocab, l.vocab)));
    expect(() => s.topK(0)).toThrow(/k must be an integer >= 1/);
    expect(() => s.topK(l.vocab + 1)).toThrow(/must be in \[1, vocab/);
    s.setLogitsMode(0);
    s.close();
  });

  const TREES: TreeParams[] = [
    { depth: 1, topK: 1, budget: 1 }, { depth: 5, topK: 1, budget: 5 }, { depth: 5, topK: 4, budget: 16 },
    { depth: 3, topK: 2, budget: 6 }, { depth: 6, topK: 8, budget: 40 },
  ];

  test("greedy with a random head: identical to the target's greedy decoding (16 prompts × 5 tree shapes)", async () => {
    const ts = target.newSession({ maxContext: 512 }), hs = head.newSession({ maxContext: 512 });
    const prompts = brownPrompts(16), maxes = [1, 2, 9, 40, 64];
    let compared = 0;
    for (let i = 0; i < prompts.length; i++) {
      const maxTokens = maxes[i % maxes.length];
      const ref = await plain(ts, { prompt: prompts[i], maxTokens });
      for (const tree of TREES) {
        const got = await eagle(ts, hs, { prompt: prompts[i], maxTokens, tree });
        expect({ i, tree, tokens: got.tokens, reason: got.reason }).toEqual({ i, tree, tokens: ref.tokens, reason: ref.reason });
        expect(got.text).toBe(ref.text);
        const tr = got.speculative;
        expect(tr.nodes!.every((n) => n <= tree.budget)).toBe(true);
        expect(tr.proposed.every((p) => p <= tree.depth)).toBe(true);
        compared++;
      }
    }
    expect(compared).toBe(80);
    ts.close(); hs.close();
  });

  test("greedy with an oracle head: identical output, long accepted paths through branches, compaction across verify chunks", async () => {
    const ts = target.newSession({ maxContext: 512 });
    const prompts = brownPrompts(10);
    let steps = 0, accepted = 0, chainSteps = 0, chainAccepted = 0;
    for (let i = 0; i < prompts.length; i++) {
      const maxTokens = [9, 40, 64][i % 3];
      const ref = await plain(ts, { prompt: prompts[i], maxTokens });
      const full = [...target.tokenizer.encode(prompts[i]), ...ref.tokens];
      for (const tree of TREES) {
        const hs = new OracleHead(full, target.config.vocab_size, target.config.hidden_size, 512) as unknown as EngineSession;
        const got = await eagle(ts, hs, { prompt: prompts[i], maxTokens, tree });
        expect({ i, tree, tokens: got.tokens }).toEqual({ i, tree, tokens: ref.tokens });
        const tr = got.speculative;
        const emitted = tr.accepted.reduce((a, b) => a + b + 1, 0);
        expect(emitted).toBeGreaterThanOrEqual(got.tokens.length - 1);
        expect(tr.accepted.every((a, s) => a <= tr.proposed[s])).toBe(true);
        if (tree.topK >= 2) { steps += tr.accepted.length; accepted += tr.accepted.reduce((a, b) => a + b, 0); }
        if (tree.topK === 1 && tree.depth === 5) { chainSteps += tr.accepted.length; chainAccepted += tr.accepted.reduce((a, b) => a + b, 0); }
      }
    }
    // top-k >= 2 finds the reference token behind the decoy: paths far longer than one token per step
    expect(accepted / steps).toBeGreaterThan(1.5);
    // a chain (top-k 1) stops where the decoy ranks first (every third position)
    expect(chainAccepted / chainSteps).toBeLessThan(accepted / steps);
    ts.close();
  });

  test("greedy at the max-context boundary and with chunked prompts: still identical", async () => {
    const prompt = brownPrompts(3)[2];
    const n = target.tokenizer.encode(prompt).length;
    for (const tree of [TREES[2], TREES[4]]) {
      const ts = target.newSession({ maxContext: n + 13, maxPrefill: 16 }), hs = head.newSession({ maxContext: n + 13, maxPrefill: 16 });
      const ref = await plain(ts, { prompt, maxTokens: 64 });
      const got = await eagle(ts, hs, { prompt, maxTokens: 64, tree });
      expect(got.tokens).toEqual(ref.tokens);
      expect(got.reason).toBe(ref.reason);
      const full = [...target.tokenizer.encode(prompt), ...ref.tokens];
      const oracle = new OracleHead(full, target.config.vocab_size, target.config.hidden_size, n + 13) as unknown as EngineSession;
      const got2 = await eagle(ts, oracle, { prompt, maxTokens: 64, tree });
      expect(got2.tokens).toEqual(ref.tokens);
      ts.close(); hs.close();
    }
  });

  test("sampling through the loop: a seed reproduces its run, and the oracle head's drafts are accepted", async () => {
    const ts = target.newSession({ maxContext: 256 });
    const prompt = brownPrompts(2)[1];
    const ref = await plain(ts, { prompt, maxTokens: 40 });
    const full = [...target.tokenizer.encode(prompt), ...ref.tokens];
    const oracle = () => new OracleHead(full, target.config.vocab_size, target.config.hidden_size, 256) as unknown as EngineSession;
    const a = await eagle(ts, oracle(), { prompt, maxTokens: 40, tree: TREES[2], temperature: 0.7, seed: 11 });
    const b = await eagle(ts, oracle(), { prompt, maxTokens: 40, tree: TREES[2], temperature: 0.7, seed: 11 });
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens.length).toBe(40);
    expect(a.speculative.accepted.some((x) => x > 0)).toBe(true);
    ts.close();
  });

});

describe.skipIf(!cpuLibraryBuilt())("an EAGLE head of a target whose output is requantized", () => {
  let target: Model, head: Model, dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "qw-eagle-out-"));
    // untied (a tied model refuses the option) and on disk (the head reads the target's lm_head from its file)
    const path = join(dir, "untied.gguf");
    await writeSyntheticGguf(tinyTestSpec({ tie_word_embeddings: false }), "f32", path, { workers: 1 });
    target = (await openModel(path, { backend: "cpu", threads: 2, weightsLayers: { output: "q8" } })) as Model;
    await writeEagleHead(join(dir, "head"), eagleConfigFor(target.config), randomHead(target.config, 3));
    head = await openEagleHead(join(dir, "head"), target);
  });
  afterAll(() => { head?.close(); target?.close(); if (dir) rmSync(dir, { recursive: true, force: true }); });

  test("the head's lm_head is the target's format (w8), not the file's (f32); greedy output is the target's", async () => {
    const native = (m: Model) => new Map(m.nativeTensors().map((t) => [t.name, t]));
    expect(native(target).get("output.weight")!.native).toBe("w8");
    expect(native(head).get("output.weight")!.native).toBe("w8");
    expect(native(head).get("output.weight")!.bytes).toBe(native(target).get("output.weight")!.bytes);
    expect(head.weights).toEqual({ weightsLayers: { output: "q8" } });
    const ts = target.newSession({ maxContext: 256 }), hs = head.newSession({ maxContext: 256 });
    const tree: TreeParams = { depth: 3, topK: 2, budget: 8 };
    for (const prompt of brownPrompts(2)) {
      let ref, got;
      for await (const ev of ts.generate({ prompt, maxTokens: 12 })) if (ev.type === "done") ref = ev;
      for await (const ev of eagleGenerate(ts, hs, specHost(target), { prompt, maxTokens: 12, tree })) if (ev.type === "done") got = ev;
      expect(got!.tokens).toEqual(ref!.tokens);
    }
    ts.close(); hs.close();
  });
});
