// Session API on the CPU backend: (c) errors are clear and leave the session usable, (d) replays are
// identical, (e) a Bun.gc(true) stress of every FFI path, plus streaming generate semantics (event order,
// EOS / stop tokens, maxTokens, AbortSignal, UTF-8-safe text), op records and activation captures.
import { test, expect, describe, beforeAll, afterAll } from "bun:test";
import { openModel, openSyntheticInMemory, QwenError, SessionError, type Model } from "../../engine/index.ts";
import { opNames } from "../../engine/catalog.ts";
import type { GenerateEvent } from "../../engine/api.ts";
import { cpuLibraryBuilt, prompt, tinyTestSpec } from "../reference/fixtures.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

async function collect(gen: AsyncGenerator<GenerateEvent>): Promise<GenerateEvent[]> {
  const out: GenerateEvent[] = [];
  for await (const ev of gen) out.push(ev);
  return out;
}
function doneOf(evs: GenerateEvent[]) {
  const d = evs[evs.length - 1];
  if (d.type !== "done") throw new Error("last event is not done");
  return d;
}

describe.skipIf(!cpuLibraryBuilt())("session API (CPU)", () => {
  let m: Model;
  let syn: Model;
  beforeAll(async () => {
    m = (await openModel("default", { backend: "cpu", threads: 2 })) as Model;
    syn = await openSyntheticInMemory(tinyTestSpec(), "f32", { backend: "cpu", threads: 2 });
  });
  afterAll(() => {
    m?.close();
    syn?.close();
  });

  test("model facts: backend, device, registry, weights", () => {
    expect(m.backend).toBe("cpu");
    expect(m.device.backend).toBe("cpu");
    expect(m.weightTypes).toEqual({ BF16: 50 });
    expect(m.hash).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(JSON.parse(m.buildInfo).backend).toBe("cpu");
    const reg = m.toggleRegistry();
    expect(reg.map((t) => t.id)).toContain("gqa");
    expect(reg.map((t) => t.id)).toContain("kvCache");
    expect(m.tokenizer.eosIds).toContain(8192);
  });

  test("(c) context overflow: clear error, nothing changed, session still usable", () => {
    const s = m.newSession({ maxContext: 16 });
    s.prefill(0, prompt(10, 1));
    let err: unknown;
    try {
      s.prefill(0, prompt(7, 2));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(QwenError);
    expect((err as QwenError).code).toBe("QW_ERR_CONTEXT_OVERFLOW");
    expect((err as Error).message).toMatch(/max context 16/);
    expect(s.seqLen(0)).toBe(10);
    const t = s.prefill(0, prompt(6, 3)); // exactly fills the context
    expect(s.seqLen(0)).toBe(16);
    expect(() => s.decode([0], [t])).toThrow(/context/i);
    expect(s.seqLen(0)).toBe(16);
    s.reset(0);
    expect(s.seqLen(0)).toBe(0);
    expect(typeof s.prefill(0, prompt(4, 4))).toBe("number");
    s.close();
  });

  test("(c) generate stops with reason 'length' when the context is full", async () => {
    const s = m.newSession({ maxContext: 12 });
    const d = doneOf(await collect(s.generate({ tokens: prompt(8, 5), maxTokens: 100, stop: [] })));
    // 8 prompt tokens + 4 fed back = 12 positions: the 5th token is sampled from the last one
    expect(d.reason).toBe("length");
    expect(d.tokens.length).toBeLessThanOrEqual(5);
    await expect(collect(s.generate({ tokens: prompt(13, 5) }))).rejects.toThrow(/max context 12/);
    s.close();
  });

  test("(c) bad token ids: TS check and native check, session still usable", () => {
    const s = m.newSession({ maxContext: 64 });
    const V = m.config.vocab_size;
    for (const bad of [[-1], [V], [1.5], [Number.NaN]]) {
      expect(() => s.prefill(0, bad as number[])).toThrow(SessionError);
    }
    expect(() => s.prefill(0, [1, 2, V + 5])).toThrow(/token 8261 at index 2 is not a valid id \(0\.\.8255\)/);
    expect(() => s.prefill(0, [])).toThrow(/no tokens/);
    expect(() => s.prefill(3, [1])).toThrow(/sequence 3 is not in 0\.\.0/);
    expect(() => s.decode([0], [V])).toThrow(SessionError);
    expect(() => s.decode([0, 0], [1, 2])).toThrow(/appears twice|exceed/);
    // the native front checks too (bypass the TS checks)
    const native = (s as unknown as { native: { prefill(seq: number, t: Int32Array): number } }).native;
    let err: unknown;
    try {
      native.prefill(0, new Int32Array([5, V]));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(QwenError);
    expect((err as QwenError).code).toBe("QW_ERR_INVALID_ARGUMENT");
    expect(s.seqLen(0)).toBe(0);
    expect(typeof s.prefill(0, [5, 6, 7])).toBe("number");
    expect(s.seqLen(0)).toBe(3);
    s.close();
  });

  test("(c) bad sampling parameters: clear errors, old settings kept", async () => {
    const s = m.newSession({ maxContext: 64 });
    const bad = [
      [{ temperature: -1 }, /temperature/], [{ temperature: Number.NaN }, /temperature/], [{ temperature: 101 }, /temperature/],
      [{ topK: -2 }, /topK/], [{ topK: 1.5 }, /topK/], [{ topP: 0 }, /topP/], [{ topP: 1.01 }, /topP/],
      [{ seed: -1 }, /seed/], [{ seed: 0.5 }, /seed/],
    ] as const;
    for (const [opts, re] of bad) {
      expect(() => s.setSampling(0, opts)).toThrow(re);
      await expect(collect(s.generate({ prompt: "The", maxTokens: 2, ...opts }))).rejects.toThrow(re);
    }
    // native validation (bypassing TS)
    const native = (s as unknown as { native: { setSampling(seq: number, t: number, k: number, p: number, seed: bigint): void } }).native;
    expect(() => native.setSampling(0, Number.NaN, 0, 1, 0n)).toThrow(QwenError);
    expect(() => native.setSampling(0, 1, 0, 0, 0n)).toThrow(QwenError);
    expect(() => native.setSampling(0, 200, 0, 1, 0n)).toThrow(QwenError);
    // still usable
    const d = doneOf(await collect(s.generate({ prompt: "The jury", maxTokens: 4, stop: [] })));
    expect(d.tokens.length).toBe(4);
    // bad toggles
    expect(() => s.setToggle("nope", "x")).toThrow(/nope/);
    expect(() => s.setToggle("gqa", "sideways")).toThrow(QwenError);
    expect(() => s.setToggle("gqa", "native", 99)).toThrow(/layer 99/);
    expect(() => s.setCapture(["blocks.0.hook_nonsense"])).toThrow(/hook_nonsense/);
    expect(() => s.setLogitsMode(3 as 0)).toThrow(/mode/);
    s.close();
  });

  test("(d) greedy replays give identical tokens; seeded sampling replays too", async () => {
    const s = m.newSession({ maxContext: 128 });
    const run = async (o: object) => doneOf(await collect(s.generate({ prompt: "The Fulton County Grand Jury said", maxTokens: 24, stop: [], ...o }))).tokens;
    const g1 = await run({});
    const g2 = await run({});
    expect(g2).toEqual(g1);
    const a = await run({ temperature: 0.9, topK: 40, topP: 0.95, seed: 7 });
    const b = await run({ temperature: 0.9, topK: 40, topP: 0.95, seed: 7 });
    expect(b).toEqual(a);
    const c = await run({ temperature: 1.5, seed: 8 });
    const c2 = await run({ temperature: 1.5, seed: 9 });
    expect(c).not.toEqual(c2); // different seeds at a high temperature diverge (24 tokens)
    // a second session gives the same greedy tokens, and batch slots do not influence each other
    const s2 = m.newSession({ maxBatch: 2, maxContext: 128 });
    s2.prefill(0, prompt(30, 77)); // unrelated content in slot 0
    const d = doneOf(await collect(s2.generate({ prompt: "The Fulton County Grand Jury said", maxTokens: 24, stop: [], seq: 1 })));
    expect(d.tokens).toEqual(g1);
    s.close();
    s2.close();
  });

  test("generate: event order, timings, EOS / stop tokens, maxTokens, text", async () => {
    const s = m.newSession({ maxContext: 256 });
    const evs = await collect(s.generate({ prompt: "The Secretary of State", maxTokens: 10, stop: [] }));
    expect(evs[0].type).toBe("prefill");
    const toks = evs.filter((e) => e.type === "token");
    expect(toks.length).toBe(10);
    expect(toks[0].type === "token" && toks[0].phase).toBe("prefill");
    expect(toks[1].type === "token" && toks[1].phase).toBe("decode");
    const d = doneOf(evs);
    expect(d.reason).toBe("length");
    expect(d.tpotMs.length).toBe(9);
    expect(d.ttftMs).toBeGreaterThan(0);
    expect(d.decodeTokS).toBeGreaterThan(0);
    expect(toks.map((t) => (t.type === "token" ? t.text : "")).join("")).toBe(d.text);
    expect(d.text).toBe(m.tokenizer.decode(d.tokens));
    // a stop token: the 3rd greedy token stops the generation and is not emitted
    const stopTok = d.tokens[2];
    const d2 = doneOf(await collect(s.generate({ prompt: "The Secretary of State", maxTokens: 10, stop: [stopTok] })));
    expect(d2.reason).toBe("stop");
    expect(d2.tokens).toEqual(d.tokens.slice(0, d.tokens.indexOf(stopTok)));
    // EOS of the model stops too: chat prompt on a model whose eos is <|endoftext|>
    const d3 = doneOf(await collect(s.generate({ messages: [{ role: "user", content: "Hello" }], maxTokens: 200 })));
    expect(["stop", "length"]).toContain(d3.reason);
    if (d3.reason === "stop") expect(d3.tokens.some((t) => m.tokenizer.eosIds.includes(t))).toBe(false);
    // argument errors
    await expect(collect(s.generate({ prompt: "x", maxTokens: 0 }))).rejects.toThrow(/maxTokens/);
    await expect(collect(s.generate({ prompt: "x", tokens: [1] }))).rejects.toThrow(/exactly one/);
    await expect(collect(s.generate({ prompt: "" }))).rejects.toThrow(/empty/);
    s.close();
  });

  test("generate: UTF-8 text is never split inside a character", async () => {
    // ids of a multi-byte string: each CJK char / emoji is several byte-level tokens in the tiny BPE
    const text = "héllo → 世界 🎉 ok";
    const ids = m.tokenizer.encode(text);
    const dec = m.tokenizer.inner.decoder();
    const pieces = ids.map((id) => dec.push(id));
    expect(pieces.join("") + dec.end()).toBe(text);
    expect(pieces.every((p) => !p.includes("\uFFFD"))).toBe(true);
  });

  test("generate: AbortSignal cancels between steps", async () => {
    const s = m.newSession({ maxContext: 512 });
    const ac = new AbortController();
    const evs: GenerateEvent[] = [];
    for await (const ev of s.generate({ prompt: "The", maxTokens: 400, stop: [], signal: ac.signal })) {
      evs.push(ev);
      if (ev.type === "token" && ev.index === 4) ac.abort();
    }
    const d = doneOf(evs);
    expect(d.reason).toBe("cancelled");
    expect(d.tokens.length).toBe(5);
    // a pre-aborted signal generates nothing
    const d2 = doneOf(await collect(s.generate({ prompt: "The", signal: AbortSignal.abort() })));
    expect(d2.reason).toBe("cancelled");
    expect(d2.tokens.length).toBe(0);
    s.close();
  });

  test("op records: every op of a step, analytic flops/bytes, columnar", () => {
    const s = syn.newSession({ maxContext: 64 });
    // the unfused arms (toggles ffn, norm): every norm, SwiGLU and residual add is an op of its own
    s.setToggle("ffn", "separate");
    s.setToggle("norm", "separate");
    s.setProfiling(true);
    const t = s.prefill(0, prompt(8, 1));
    s.decode([0], [t]);
    const r = s.takeRecords();
    const n = r.ops.op.length;
    expect(n).toBeGreaterThan(20);
    for (const k of Object.keys(r.ops) as (keyof typeof r.ops)[]) if (k !== "counters") expect(r.ops[k]!.length).toBe(n);
    expect(r.ops.counters).toBeUndefined(); // measured counters only in profiling mode "counters" (CUDA)
    const names = new Set(r.ops.op.map((o) => opNames()[o]));
    for (const op of ["embed", "attn_norm", "qkv", "rope", "attention", "o_proj", "residual", "ffn_norm", "gate_up", "swiglu", "down", "lm_head", "sample"]) {
      expect(names.has(op)).toBe(true);
    }
    expect(new Set(r.ops.phase)).toEqual(new Set([0, 1]));
    expect(new Set(r.ops.rank)).toEqual(new Set([0])); // ABI 8: the tensor-parallel rank of each record (tp1: 0)
    expect(names.has("all_reduce") || names.has("all_gather")).toBe(false); // collectives only at parallel = tpN
    const L = syn.config.num_hidden_layers;
    expect(Math.max(...r.ops.layer)).toBe(L - 1);
    expect(Math.min(...r.ops.layer)).toBe(-1);
    for (let i = 0; i < n; i++) {
      expect(r.ops.t_end_ns[i]).toBeGreaterThanOrEqual(r.ops.t_start_ns[i]);
      expect(r.kernels[r.ops.kernel[i]]).toBeTruthy();
    }
    const qkv = r.ops.op.findIndex((o, i) => opNames()[o] === "qkv" && r.ops.phase[i] === 1);
    const c = syn.config;
    // decode qkv: 2 * H * (q + 2 kv) flops (+ bias), for 1 token
    const expected = 2 * c.hidden_size * (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim;
    expect(r.ops.flops[qkv]).toBeGreaterThanOrEqual(expected);
    expect(r.ops.flops[qkv]).toBeLessThan(expected * 1.1);
    expect(r.ops.bytes[qkv]).toBeGreaterThan(4 * c.hidden_size * (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim * 0.99);
    expect(s.takeRecords().ops.op.length).toBe(0); // drained
    s.setProfiling(false);
    s.decode([0], [1]);
    expect(s.takeRecords().ops.op.length).toBe(0);
    s.close();
  });

  test("(e) Bun.gc(true) stress of the FFI paths", () => {
    const s = syn.newSession({ maxBatch: 2, maxContext: 512 });
    s.setLogitsMode(1);
    s.setProfiling(true);
    s.setCapture(["blocks.1.hook_resid_post", "hook_logits"]);
    const first = s.prefill(0, prompt(5, 9));
    const firstLogits = s.logits().data.slice();
    for (let i = 0; i < 120; i++) {
      if (i % 10 === 0) Bun.gc(true);
      s.reset(0);
      const t = s.prefill(0, prompt(5, 9));
      expect(t).toBe(first);
      const l = s.logits();
      expect(l.data[17]).toBe(firstLogits[17]);
      const [a, b] = s.decode([1, 0], [3 + (i % 50), t]);
      expect(Number.isInteger(a) && Number.isInteger(b)).toBe(true);
      const caps = s.captures();
      expect(caps.length).toBe(2);
      expect(caps.every((c) => c.data.length === c.rows * c.cols && Number.isFinite(c.data[0]))).toBe(true);
      const rec = s.takeRecords();
      expect(rec.ops.op.length).toBeGreaterThan(0);
      expect(typeof s.toggles().gqa).toBe("string");
      if (s.seqLen(1) > 400) s.reset(1);
      new Float32Array(1 << 16); // garbage
    }
    Bun.gc(true);
    s.close();
    expect(() => s.prefill(0, [1])).toThrow(/destroyed/);
  });

  test("sessions close with the model; model.close is idempotent for sessions", async () => {
    const mm = await openSyntheticInMemory(tinyTestSpec(), "bf16", { backend: "cpu" });
    const s = mm.newSession();
    s.prefill(0, [1, 2, 3]);
    mm.close();
    expect(() => s.prefill(0, [1])).toThrow(/destroyed/);
    expect(() => mm.newSession()).toThrow(/destroyed/);
  });
});
