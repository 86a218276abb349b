// A fake engine implementing engine/api.ts, for web tests: deterministic tokens, synthetic op records with
// FLOPs/bytes, captures, the library's toggle registry with a per-layer mask, and switchable failures and delays.
// Its catalog (catalog()) is the native library's: op, hook and profiling-mode names and the toggle registry.
import type {
  EngineModel, EngineSession, GenerateEvent, GenerateOptions, OpenModel, OpenOptions, Capture, SamplingOptions,
} from "../../engine/api.ts";
import type { OpColumns, ProfilingMode, ToggleValues } from "../../engine/measure/profile.ts";
import { effectiveDefault } from "../../engine/measure/record.ts";
import { countersMetaOf, joinCounters, parseCountersReadout } from "../../engine/measure/counters.ts";
import { catalog as libraryCatalog, opIndex, profilingModeNames, type Catalog } from "../../engine/catalog.ts";

export interface FakeOptions {
  failOpen?: boolean;
  failPrefill?: boolean;
  failDecodeAt?: number;     // throw on this decode step (0-based)
  stepDelayMs?: number;      // sleep per step (to test cancel / concurrency)
  loadDelayMs?: number;
  delayFor?: string;         // loadDelayMs applies only to sources containing this
  failOpenFor?: string;      // opening a source containing this fails
  crashWorker?: boolean;     // throw an uncaught error from a timer during generate (kills a worker's event loop)
  coldFirstRunMs?: number;   // the first generate of a session reports this much more TTFT (a cold start, no sleep)
}

const WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "runs", "far", "away", "."];
const N_LAYERS = 4, HIDDEN = 32, VOCAB = 64;

/**
 * The fake's toggles are the library's registry itself (engine/catalog.ts), so they cannot drift from the real
 * engine's (ids, values, scopes, backends, defaults); test/web/fake-engine.test.ts holds it to that. The fake
 * reacts to two of them: gqa = broadcast (slower attention) and weights = q8 (cheaper, noisier layers); the
 * values it reacts to are checked against the registry when a session is made.
 */
export function fakeRegistry(): Catalog["toggles"] {
  return libraryCatalog().toggles.map((d) => structuredClone(d));
}

/** Throws unless toggle `id` has `value` in the library's registry (a value the fake reacts to). */
function reactsTo(id: string, value: string): string {
  const d = libraryCatalog().toggles.find((t) => t.id === id);
  if (!d?.values.includes(value)) throw new Error(`fake engine: toggle ${id} = ${value} is not in the library's registry: update the fake`);
  return value;
}

/** The library's id of an op this fake records (names as the catalog spells them); any other name is a bug here. */
function opId(name: string): number {
  const i = opIndex(name);
  if (i >= libraryCatalog().ops.length) throw new Error(`fake engine: "${name}" is not an op of the library's catalog`);
  return i;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class FakeSession implements EngineSession {
  readonly maxBatch = 1;
  readonly maxContext = 4096;
  private tog: Record<string, string[]> = {};
  private profiling = false;
  private hooks: string[] = [];
  private cols: OpColumns = FakeSession.empty();
  private step = 0;
  private clock = 1_000_000;
  private samp: SamplingOptions = {};
  private lastInput: number[] = [];
  private ctx = 0;
  private nDecoded = 0;
  private runs = 0;
  private logitsMode = 0;
  private readonly broadcast: string;
  private readonly q8: string;
  // A model source naming "nonfinite-L<N>" yields NaN/Inf in captures from layer N on and in some logits rows.
  private readonly nanFrom: number;
  constructor(private o: FakeOptions, source = "") {
    const nf = /nonfinite-L(\d+)/.exec(source);
    this.nanFrom = nf ? Number(nf[1]) : Infinity;
    for (const d of fakeRegistry()) this.tog[d.id] = Array(N_LAYERS).fill(effectiveDefault(d, "cpu") ?? d.default); // where a cpu session starts
    this.broadcast = reactsTo("gqa", "broadcast");
    this.q8 = reactsTo("weights", "q8");
  }
  static empty(): OpColumns {
    return { step: [], phase: [], layer: [], op: [], kernel: [], t_start_ns: [], t_end_ns: [], flops: [], bytes: [], n_tokens: [] };
  }
  setToggle(id: string, value: string, layer?: number) {
    const d = fakeRegistry().find((x) => x.id === id);
    if (!d) throw new Error(`unknown toggle ${id}`);
    if (!d.values.includes(value)) throw new Error(`bad value ${value} for ${id}`);
    if (!d.backends.cpu.includes(value)) throw new Error(`${id} = ${value} is not implemented by the cpu backend`);
    if (layer === undefined || layer < 0) this.tog[id] = Array(N_LAYERS).fill(value);
    else this.tog[id][layer] = value;
  }
  toggles(): ToggleValues {
    const out: ToggleValues = {};
    for (const [k, v] of Object.entries(this.tog)) out[k] = v.every((x) => x === v[0]) ? v[0] : [...v];
    return out;
  }
  profilingMode: ProfilingMode = "off";
  clockNs() { return Number(process.hrtime.bigint()); }
  setProfiling(mode: ProfilingMode | boolean) {
    this.profilingMode = mode === true ? "kernels" : mode === false ? "off" : mode;
    this.profiling = this.profilingMode !== "off";
  }
  setCapture(h: string[]) { this.hooks = [...h]; }
  setLogitsMode(m: number) { this.logitsMode = m; }
  setSampling(_seq: number, s: SamplingOptions) { this.samp = { ...s }; }
  reset() { this.ctx = 0; this.nDecoded = 0; }
  seqLen() { return this.ctx; }
  truncate(_seq: number, n: number) { this.ctx = Math.min(this.ctx, n); }
  private record(phase: 0 | 1, n: number) {
    const s = this.step++;
    const push = (layer: number, op: string, us: number, flops: number, bytes: number) => {
      const c = this.cols;
      c.step.push(s); c.phase.push(phase); c.layer.push(layer); c.op.push(opId(op)); c.kernel.push(layer < 0 ? 0 : 1);
      const dur = Math.round(us * 1000 * (phase === 0 ? Math.max(1, n / 4) : 1));
      c.t_start_ns.push(this.clock); this.clock += dur; c.t_end_ns.push(this.clock); this.clock += 200;
      c.flops.push(flops * n); c.bytes.push(bytes); c.n_tokens.push(n);
    };
    if (!this.profiling) return;
    push(-1, "embed", 2, 1, HIDDEN * 2 * n);
    for (let l = 0; l < N_LAYERS; l++) {
      const slow = this.tog.gqa[l] === this.broadcast ? 2.5 : 1;
      const q8 = this.tog.weights[l] === this.q8 ? 0.6 : 1;
      push(l, "attn_norm", 1, 4 * HIDDEN, HIDDEN * 4);
      push(l, "qkv", 6 * q8, 2 * HIDDEN * HIDDEN * 3, HIDDEN * HIDDEN * 6 * q8);
      push(l, "rope", 1, 6 * HIDDEN, HIDDEN * 4);
      push(l, "attention", 4 * slow, 4 * HIDDEN * 16, HIDDEN * 16 * slow);
      push(l, "o_proj", 3 * q8, 2 * HIDDEN * HIDDEN, HIDDEN * HIDDEN * 2 * q8);
      push(l, "gate_up", 9 * q8, 4 * HIDDEN * HIDDEN * 3, HIDDEN * HIDDEN * 12 * q8);
      push(l, "swiglu", 1, 5 * HIDDEN * 3, HIDDEN * 12);
      push(l, "down", 5 * q8, 2 * HIDDEN * HIDDEN * 3, HIDDEN * HIDDEN * 6 * q8);
    }
    push(-1, "final_norm", 1, 4 * HIDDEN, HIDDEN * 4);
    push(-1, "lm_head", 8, 2 * HIDDEN * VOCAB, HIDDEN * VOCAB * 2);
    push(-1, "sample", 1, VOCAB, VOCAB * 4);
  }
  private next(prev: number): number {
    const t = this.samp.temperature ?? 0;
    const salt = t > 0 ? (this.samp.seed ?? 0) * 13 + this.nDecoded : 0;
    return (prev * 31 + 7 + salt) % (VOCAB - 2) + 1;
  }
  prefill(_seq: number, tokens: number[]): number {
    if (this.o.failPrefill) throw new Error("fake engine: prefill failed (qw_prefill status -3: out of memory)");
    this.lastInput = tokens; this.ctx += tokens.length;
    this.record(0, tokens.length);
    return this.next(tokens.reduce((a, b) => a + b, 0));
  }
  decode(_seqIds: number[], tokens: number[]): number[] {
    if (this.o.failDecodeAt !== undefined && this.nDecoded >= this.o.failDecodeAt) throw new Error("fake engine: decode failed (CUDA error: illegal memory access)");
    this.nDecoded++; this.ctx++;
    this.lastInput = tokens;
    this.record(1, 1);
    return [this.next(tokens[0])];
  }
  logits() {
    if (this.logitsMode !== 2) return { rows: 1, vocab: VOCAB, data: new Float32Array(VOCAB) };
    // every position of the last prefill: a smooth function of the token, perturbed by q8 layers
    const rows = this.lastInput.length, data = new Float32Array(rows * VOCAB);
    const q8 = this.tog.weights.filter((w) => w === this.q8).length;
    for (let r = 0; r < rows; r++) {
      const t = this.lastInput[r];
      for (let i = 0; i < VOCAB; i++) data[r * VOCAB + i] = Math.sin(i * 0.37 + t * 0.9) * 3 + 0.05 * q8 * Math.cos(i * 1.7 + r);
      if (Number.isFinite(this.nanFrom) && r % 5 === 4) data[r * VOCAB] = NaN;
    }
    return { rows, vocab: VOCAB, data };
  }
  captures(): Capture[] {
    const rows = this.lastInput.length;
    return this.hooks.map((name) => {
      const logits = name === "hook_logits";
      const cols = logits ? VOCAB : HIDDEN;
      const m = /^blocks\.(\d+)\./.exec(name);
      const layer = m ? Number(m[1]) : N_LAYERS;
      const data = new Float32Array(rows * cols);
      let noise = 0;
      for (let l = 0; l <= Math.min(layer, N_LAYERS - 1); l++) if (this.tog.weights[l] === this.q8) noise += 0.01;
      for (let i = 0; i < data.length; i++) {
        const base = Math.sin(i * 0.37 + layer + (this.lastInput[i % rows] ?? 0) * 0.1) * (logits ? 4 : 1);
        data[i] = base + noise * Math.cos(i * 1.7);
        if (layer >= this.nanFrom && i % 7 === 3) data[i] = i % 2 ? Infinity : NaN;
      }
      return { name, rows, cols, data };
    });
  }
  takeRecords() {
    const ops = this.cols;
    this.cols = FakeSession.empty();
    if (this.profilingMode !== "counters") return { ops, kernels: ["cpu_misc", "cpu_gemv_bf16"], dropped: 0 };
    // A GPU backend in profiling mode counters: the engine's readout (qwen.h qw_session_read_counters) for these
    // records, joined the way the real session does (engine/session.ts). DRAM reads 1.05 x the modelled bytes.
    const readout = parseCountersReadout(JSON.stringify(fakeCountersReadout(ops)));
    return { ops: { ...ops, counters: joinCounters(ops, readout).columns }, kernels: ["cpu_misc", "cpu_gemv_bf16"], dropped: 0, countersMeta: countersMetaOf(readout) };
  }
  async *generate(opts: GenerateOptions): AsyncGenerator<GenerateEvent> {
    const tok = fakeTokenizer;
    const ids = opts.tokens ?? (opts.messages ? tok.applyChatTemplate(opts.messages) : tok.encode(opts.prompt ?? ""));
    if (!ids.length) throw new Error("empty prompt");
    this.reset(); this.setSampling(0, opts);
    if (this.o.crashWorker) {
      setTimeout(() => { throw new Error("fake engine: uncaught failure on the engine thread"); }, 0);
      await new Promise(() => {}); // never returns
    }
    const max = opts.maxTokens ?? 64;
    const t0 = performance.now();
    if (this.o.stepDelayMs) await sleep(this.o.stepDelayMs);
    let t = this.prefill(0, ids);
    const pms = performance.now() - t0 + (this.runs++ === 0 ? this.o.coldFirstRunMs ?? 0 : 0);
    yield { type: "prefill", promptTokens: ids.length, ms: pms };
    const out = [t];
    yield { type: "token", index: 0, token: t, text: tok.decode([t]), ms: pms, phase: "prefill" };
    const tpot: number[] = [];
    let reason: "stop" | "length" | "cancelled" = "length";
    while (out.length < max) {
      if (opts.signal?.aborted) { reason = "cancelled"; break; }
      const s = performance.now();
      if (this.o.stepDelayMs) await sleep(this.o.stepDelayMs);
      t = this.decode([0], [t])[0];
      const ms = Math.max(1e-3, performance.now() - s);
      tpot.push(ms); out.push(t);
      yield { type: "token", index: out.length - 1, token: t, text: tok.decode([t]), ms, phase: "decode" };
      if (t === VOCAB - 1) { reason = "stop"; break; }
    }
    const dsum = tpot.reduce((a, b) => a + b, 0);
    yield { type: "done", reason, tokens: out, text: tok.decode(out), ttftMs: pms, tpotMs: tpot,
      prefillTokS: ids.length / (Math.max(pms, 1e-3) / 1000), decodeTokS: tpot.length ? tpot.length / (dsum / 1000) : 0 };
  }
  close() {}
}

export const fakeTokenizer = {
  encode: (text: string) => [...text].map((c) => (c.charCodeAt(0) % (VOCAB - 2)) + 1),
  decode: (ids: number[]) => ids.map((i) => WORDS[i % WORDS.length]).join(" ").replace(/^/, " "),
  applyChatTemplate: (m: { role: string; content: string }[]) => fakeTokenizer.encode(m.map((x) => `${x.role}: ${x.content}`).join("\n")),
  eosIds: [VOCAB - 1],
};

export function makeFakeOpenModel(o: FakeOptions = {}): OpenModel {
  return async (source: string, opts?: OpenOptions): Promise<EngineModel> => {
    if (o.failOpen || (o.failOpenFor && source.includes(o.failOpenFor))) throw new Error(`fake engine: cannot open ${source}`);
    const delay = o.delayFor && !source.includes(o.delayFor) ? 0 : o.loadDelayMs ?? 0;
    for (let i = 1; i <= 4; i++) {
      opts?.onProgress?.({ stage: "read", done: i, total: 4, message: `tensor ${i}/4` });
      // like the real loader: the cancel flag is checked between tensors (and here between 10-ms slices)
      for (let t = 0; t < delay / 4; t += 10) {
        if (opts?.signal?.aborted) throw new Error("load cancelled");
        await sleep(10);
      }
      if (opts?.signal?.aborted) throw new Error("load cancelled");
    }
    return {
      id: source, format: source.startsWith("synthetic:") ? "synthetic" : "hf",
      config: {
        vocab_size: VOCAB, hidden_size: HIDDEN, intermediate_size: HIDDEN * 3, num_hidden_layers: N_LAYERS,
        num_attention_heads: 4, num_key_value_heads: 1, head_dim: 8, max_position_embeddings: 4096,
        rope_theta: 1e6, rms_norm_eps: 1e-6, tie_word_embeddings: true,
      },
      backend: "cpu",
      device: { backend: "cpu", name: "fake-cpu", threads: 2 },
      buildInfo: '{"fake":true}',
      weightBytes: 123456,
      weightTypes: { bf16: 30 },
      hash: "fakehash0123456789",
      tokenizer: fakeTokenizer,
      toggleRegistry: fakeRegistry,
      profilingModes: profilingModeNames,
      newSession: () => new FakeSession(o, source),
      close() {},
    };
  };
}

/** The engine's names as this fake has them: the library's catalog (ops, hooks, profiling modes, toggles). The web
 *  server reads it through the engine host (LocalHost, or the worker when this is QW_ENGINE_MODULE). */
export function catalog(): Catalog {
  return { ...libraryCatalog(), toggles: fakeRegistry() };
}

/** For the worker (QW_ENGINE_MODULE): options from QW_FAKE_OPTIONS (JSON). */
export const openModel: OpenModel = (source, opts) =>
  makeFakeOpenModel(JSON.parse(process.env.QW_FAKE_OPTIONS ?? "{}"))(source, opts);

/** What the engine's qw_session_read_counters would give for these records: one entry per op (the occurrence of
 *  (layer, op) within its step as nth), DRAM reads 1.05 x the modelled bytes, writes 1 KiB, 80 % L2 hits, the kernels
 *  taking the record's time. The tensor metric is "not available on this GPU" (null), as on a GPU that lacks it. */
export function fakeCountersReadout(ops: OpColumns) {
  const seen = new Map<string, number>();
  return {
    collected: ["dram__bytes_read.sum", "dram__bytes_write.sum", "lts__t_sectors_lookup_hit.sum", "lts__t_sectors_lookup_miss.sum", "gpu__time_duration.sum", "sm__throughput.avg.pct_of_peak_sustained_elapsed"],
    unavailable: ["metric sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active not available on this GPU (fake): test"],
    ops: ops.step.map((step, i) => {
      const k = `${ops.phase[i]}:${step}:${ops.layer[i]}:${ops.op[i]}`;
      const nth = seen.get(k) ?? 0;
      seen.set(k, nth + 1);
      return {
        step, phase: ops.phase[i], layer: ops.layer[i], op: ops.op[i], nth, kernel: "fake", kernels: 1,
        dramRead: 1.05 * ops.bytes[i], dramWrite: 1024, l2Hits: 800, l2Misses: 200, l2HitPct: 80,
        durationNs: Math.max(1, ops.t_end_ns[i] - ops.t_start_ns[i]), smPct: 30, tensorPct: null,
      };
    }),
  };
}
