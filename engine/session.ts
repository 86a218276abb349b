// engine/session.ts — EngineSession (engine/api.ts) over a native qw_session: typed argument checks with clear
// messages, token streaming with timings, stop tokens / EOS, max tokens, seeds, AbortSignal cancellation and
// UTF-8-safe incremental detokenization.
import { z } from "zod";
import type { Capture, EngineSession, GenerateEvent, GenerateOptions, KvInfo, SamplingOptions, SparseInfo } from "./api.ts";
import type { NativeSession } from "./ffi.ts";
import { QwenError } from "./ffi.ts";
import { catalogOf } from "./catalog.ts";
import { SparseInfoSchema } from "./sparse.ts";
import { ensureTileTable, type TileNative, type TileStatus } from "./tuning.ts";
import { TOGGLE_ID_RE, type CountersMeta, type OpColumns, type ProfilingMode, type ToggleValues } from "./measure/profile.ts";
import { countersMetaOf, joinCounters, parseCountersReadout } from "./measure/counters.ts";

/** What a session needs from its model (kept narrow so tests can build sessions over any model). */
export interface SessionHost {
  readonly vocabSize: number;
  readonly numLayers: number;
  /** Width of a feature row of qw_session_prefill_tree (an EAGLE head's input); optional for test doubles. */
  readonly hiddenSize?: number;
  readonly eosIds: number[];
  encode(text: string): number[];
  chat(messages: { role: string; content: string }[]): number[];
  /** A fresh incremental decoder: push(id) returns the text completed by that token. */
  decoder(): { push(id: number): string; end(): string };
  decode(ids: number[]): string;
  onClose(s: Session): void;
}

/** A user error in a session call (bad argument), as opposed to a native failure (QwenError). */
const KvInfoSchema = z.object({
  kvCache: z.string(), kvBytesPerToken: z.number().nonnegative(), kvBytes: z.number().nonnegative(),
  kvResidualTokens: z.number().int().nonnegative(), kvMaxRollback: z.number().int().min(-1),
});

/** The toggle and value (the library's registry names) under which a step is one persistent kernel: profiling mode
 *  true picks events there (persistent_session.cu records its levels; kernels mode is refused). */
const DECODE_TOGGLE = "decode", DECODE_PERSISTENT = "persistent";

export class SessionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SessionError";
  }
}

function isInt(x: unknown): x is number {
  return typeof x === "number" && Number.isInteger(x);
}

/** Checks sampling options; returns the normalized values. Throws SessionError naming the bad field. */
export function checkSampling(s: SamplingOptions): { temperature: number; topK: number; topP: number; seed: number } {
  const temperature = s.temperature ?? 0;
  const topK = s.topK ?? 0;
  const topP = s.topP ?? 1;
  const seed = s.seed ?? 0;
  if (typeof temperature !== "number" || !Number.isFinite(temperature) || temperature < 0 || temperature > 100) {
    throw new SessionError(`temperature must be a number in [0, 100] (0 = greedy), got ${String(temperature)}`);
  }
  if (!isInt(topK) || topK < 0) throw new SessionError(`topK must be an integer >= 0 (0 = off), got ${String(topK)}`);
  if (typeof topP !== "number" || !Number.isFinite(topP) || topP <= 0 || topP > 1) {
    throw new SessionError(`topP must be in (0, 1] (1 = off), got ${String(topP)}`);
  }
  if (!isInt(seed) || seed < 0 || !Number.isSafeInteger(seed)) throw new SessionError(`seed must be a non-negative integer, got ${String(seed)}`);
  return { temperature, topK, topP, seed };
}

export class Session implements EngineSession {
  readonly maxBatch: number;
  readonly maxContext: number;
  readonly maxPrefill: number;
  private readonly native: NativeSession;
  private readonly host: SessionHost;
  private kernels: string[] = [];
  private busy = false;

  constructor(native: NativeSession, host: SessionHost, dims: { maxBatch: number; maxContext: number; maxPrefill: number }) {
    this.native = native;
    this.host = host;
    this.maxBatch = dims.maxBatch;
    this.maxContext = dims.maxContext;
    this.maxPrefill = dims.maxPrefill;
  }

  get closed(): boolean {
    return this.native.closed;
  }

  private checkSeq(seq: number, what: string): void {
    if (!isInt(seq) || seq < 0 || seq >= this.maxBatch) {
      throw new SessionError(`${what}: sequence ${String(seq)} is not in 0..${this.maxBatch - 1} (max batch ${this.maxBatch})`);
    }
  }
  private checkTokens(tokens: readonly number[], what: string): Int32Array {
    if (!Array.isArray(tokens) && !(tokens instanceof Int32Array)) throw new SessionError(`${what}: tokens must be an array of ids`);
    const V = this.host.vocabSize;
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (!isInt(t) || t < 0 || t >= V) throw new SessionError(`${what}: token ${String(t)} at index ${i} is not a valid id (0..${V - 1})`);
    }
    return Int32Array.from(tokens);
  }

  setToggle(id: string, value: string, layer = -1): void {
    if (typeof id !== "string" || typeof value !== "string") throw new SessionError("setToggle: id and value must be strings");
    // Checked before the FFI call: a NUL would cut the C string short ("gqa\0x" would set gqa) (D8).
    if (!TOGGLE_ID_RE.test(id)) throw new SessionError(`setToggle: ${JSON.stringify(id)} is not a toggle id (a letter, then letters, digits, _ . -)`);
    if (/[\x00-\x1f\x7f]/.test(value)) throw new SessionError(`setToggle ${id}: the value ${JSON.stringify(value)} contains a NUL or control character`);
    if (!isInt(layer) || layer < -1 || layer >= this.host.numLayers) {
      throw new SessionError(`setToggle: layer ${String(layer)} is not -1 (all) or 0..${this.host.numLayers - 1}`);
    }
    this.native.setToggle(id, value, layer);
    // tile = auto: the device's tuned table, measured here on first use (engine/tuning.ts); a bad or stale file or a
    // failed measurement leaves no table, so auto runs fixed, with the reason in tileStatus().
    if (id === "tile" && value === "auto" && !this.tile) {
      try {
        this.tile = ensureTileTable(this.native, { tune: true, log: (m) => console.warn(m) });
      } catch (e) {
        this.tile = { source: "none", entries: 0, message: `tile: the tuning failed (${(e as Error).message}): tile = auto runs fixed` };
        console.warn(this.tile.message);
      }
    }
  }
  private tile: TileStatus | null = null;
  /** The native calls of toggle tile, for engine/tuning.ts (the calibrate notebook measures through them). */
  tiles(): TileNative {
    return this.native;
  }
  /** Where tile = auto's table came from (null until tile was first set to auto in this session). */
  tileStatus(): TileStatus | null {
    return this.tile;
  }
  toggles(): ToggleValues {
    return JSON.parse(this.native.togglesJson()) as ToggleValues;
  }
  kvInfo(): KvInfo {
    return KvInfoSchema.parse(JSON.parse(this.native.infoJson()));
  }
  sparseInfo(): SparseInfo {
    return SparseInfoSchema.parse((JSON.parse(this.native.infoJson()) as { sparsePrefill?: unknown }).sparsePrefill);
  }
  private mode: ProfilingMode = "off";
  clockNs(): number { return this.native.lib.clockNs(); }
  get profilingMode(): ProfilingMode { return this.mode; }
  setProfiling(mode: ProfilingMode | boolean): void {
    const modes = catalogOf(this.native.lib).profilingModes.map((m) => m.name);
    if (mode === true) {
      // kernels keeps the engine's fast path (CUDA: the graph, CUPTI records); events where CUPTI is missing, and under
      // decode = persistent (one kernel: the library records its dependency levels in events mode and refuses kernels)
      if (this.toggles()[DECODE_TOGGLE] === DECODE_PERSISTENT && modes.includes("events")) {
        this.native.setProfiling(modes.indexOf("events"));
        this.mode = "events";
        return;
      }
      try {
        this.native.setProfiling(modes.indexOf("kernels"));
        this.mode = "kernels";
      } catch (e) {
        if (!(e instanceof QwenError) || e.code !== "QW_ERR_UNSUPPORTED") throw e;
        this.native.setProfiling(modes.indexOf("events"));
        this.mode = "events";
      }
      return;
    }
    const name = mode === false ? "off" : mode;
    const i = modes.indexOf(name);
    if (i < 0) throw new SessionError(`setProfiling: mode ${JSON.stringify(mode)} is not one of ${modes.join(", ")} (or true / false)`);
    this.native.setProfiling(i);
    this.mode = name as ProfilingMode;
  }
  setCapture(hooks: string[]): void {
    if (!Array.isArray(hooks) || hooks.some((h) => typeof h !== "string" || h.includes(","))) {
      throw new SessionError("setCapture: hooks must be an array of hook names (no commas)");
    }
    this.native.setCapture(hooks.join(","));
  }
  setLogitsMode(mode: 0 | 1 | 2): void {
    if (mode !== 0 && mode !== 1 && mode !== 2) throw new SessionError(`setLogitsMode: mode must be 0, 1 or 2, got ${String(mode)}`);
    this.native.setLogitsMode(mode);
  }
  setSampling(seq: number, s: SamplingOptions): void {
    this.checkSeq(seq, "setSampling");
    const v = checkSampling(s);
    this.native.setSampling(seq, v.temperature, v.topK, v.topP, BigInt(v.seed));
  }
  reset(seq?: number): void {
    if (seq === undefined || seq === -1) return this.native.reset(-1);
    this.checkSeq(seq, "reset");
    this.native.reset(seq);
  }
  seqLen(seq: number): number {
    this.checkSeq(seq, "seqLen");
    return this.native.seqLen(seq);
  }
  truncate(seq: number, newLen: number): void {
    this.checkSeq(seq, "truncate");
    const len = this.native.seqLen(seq);
    if (!isInt(newLen) || newLen < 0 || newLen > len) {
      throw new SessionError(`truncate: length ${String(newLen)} is not in 0..${len} (sequence ${seq} holds ${len} tokens; truncate only shortens)`);
    }
    this.native.truncate(seq, newLen);
  }
  prefill(seq: number, tokens: number[]): number {
    this.checkSeq(seq, "prefill");
    const t = this.checkTokens(tokens, "prefill");
    if (t.length === 0) throw new SessionError("prefill: no tokens");
    const len = this.native.seqLen(seq);
    if (len + t.length > this.maxContext) {
      throw new QwenError("qw_session_prefill", 7, `sequence ${seq} holds ${len} tokens; ${t.length} more would exceed the max context ${this.maxContext}`);
    }
    if (t.length <= this.maxPrefill) return this.native.prefill(seq, t);
    // Longer than one prefill chunk: feed it in chunks (the engine samples after each; the last one counts).
    let next = -1;
    for (let o = 0; o < t.length; o += this.maxPrefill) next = this.native.prefill(seq, t.subarray(o, Math.min(t.length, o + this.maxPrefill)));
    return next;
  }
  prefillTree(seq: number, tokens: number[], parents: number[] | null, first: number, features: Float32Array | null): number {
    this.checkSeq(seq, "prefillTree");
    const t = this.checkTokens(tokens, "prefillTree");
    if (t.length === 0) throw new SessionError("prefillTree: no tokens");
    if (!isInt(first) || first < 0) throw new SessionError(`prefillTree: first must be an integer >= 0, got ${String(first)}`);
    if (parents !== null && (parents.length !== first + t.length || !parents.every(isInt))) {
      throw new SessionError(`prefillTree: parents must hold first + tokens = ${first + t.length} integers, got ${parents.length}`);
    }
    if (features !== null) {
      // the engine reads tokens × hidden floats: a shorter buffer must never reach it
      const h = this.host.hiddenSize;
      if (!(features instanceof Float32Array) || (h !== undefined && features.length !== t.length * h) || features.length % t.length !== 0) {
        throw new SessionError(`prefillTree: features must be a Float32Array of tokens × hidden = ${t.length} × ${h ?? "hidden"} floats, got ${features instanceof Float32Array ? features.length : typeof features}`);
      }
    }
    return this.native.prefillTree(seq, t, parents && Int32Array.from(parents), first, features);
  }
  kvCompact(seq: number, base: number, keep: number[]): void {
    this.checkSeq(seq, "kvCompact");
    if (!isInt(base) || !Array.isArray(keep) || !keep.every(isInt)) throw new SessionError("kvCompact: base and keep must be integers");
    this.native.kvCompact(seq, base, Int32Array.from(keep));
  }
  /** The checks of a decode call (`what`): distinct valid sequences, one valid token each; the tokens as Int32Array. */
  private decodeArgs(seqIds: number[], tokens: number[], what: string): Int32Array {
    if (!Array.isArray(seqIds) || seqIds.length === 0) throw new SessionError(`${what}: seqIds must be a non-empty array`);
    if (seqIds.length !== tokens.length) throw new SessionError(`${what}: ${seqIds.length} seqIds but ${tokens.length} tokens`);
    if (seqIds.length > this.maxBatch) throw new SessionError(`${what}: ${seqIds.length} sequences exceed max batch ${this.maxBatch}`);
    const seen = new Set<number>();
    for (const s of seqIds) {
      this.checkSeq(s, what);
      if (seen.has(s)) throw new SessionError(`${what}: sequence ${s} appears twice`);
      seen.add(s);
    }
    return this.checkTokens(tokens, what);
  }
  decode(seqIds: number[], tokens: number[]): number[] {
    const t = this.decodeArgs(seqIds, tokens, "decode");
    const out = new Int32Array(seqIds.length);
    this.native.decode(Int32Array.from(seqIds), t, out);
    return Array.from(out);
  }
  decodeSteps(seqIds: number[], tokens: number[], nSteps: number): number[][] {
    const t = this.decodeArgs(seqIds, tokens, "decodeSteps");
    // the upper bound is the engine's (qw_session_decode_steps says it)
    if (!isInt(nSteps) || nSteps < 1) throw new SessionError(`decodeSteps: nSteps = ${String(nSteps)} must be an integer >= 1`);
    const n = seqIds.length;
    const out = new Int32Array(n * nSteps);
    this.native.decodeSteps(Int32Array.from(seqIds), t, nSteps, out);
    return Array.from({ length: nSteps }, (_, j) => Array.from(out.subarray(j * n, (j + 1) * n)));
  }
  decodeChain(seq: number, tokens: number[]): number[] {
    this.checkSeq(seq, "decodeChain");
    const t = this.checkTokens(tokens, "decodeChain");
    if (t.length === 0) throw new SessionError("decodeChain: no tokens");
    if (t.length > this.maxBatch) throw new SessionError(`decodeChain: ${t.length} tokens exceed max batch ${this.maxBatch} (one decode row each)`);
    const out = new Int32Array(t.length);
    this.native.decodeChain(seq, t, out);
    return Array.from(out);
  }
  logits(): { rows: number; vocab: number; data: Float32Array } {
    return this.native.readLogits();
  }
  topK(k: number): { rows: number; k: number; ids: Int32Array; logps: Float64Array } {
    if (!isInt(k) || k < 1) throw new SessionError(`topK: k must be an integer >= 1, got ${String(k)}`);
    return this.native.readTopK(k);
  }
  argmax(): Int32Array {
    return this.native.readArgmax();
  }
  captures(): Capture[] {
    const n = this.native.captureCount();
    const out: Capture[] = [];
    for (let i = 0; i < n; i++) out.push(this.native.readCapture(i));
    return out;
  }
  takeRecords(): { ops: OpColumns; kernels: string[]; dropped: number; countersMeta?: CountersMeta } {
    const r = this.native.takeRecords(this.kernels);
    if (this.mode !== "counters") return { ops: r.ops, kernels: [...this.kernels], dropped: r.dropped };
    // counters mode: the engine's per-op measurements of the same steps, joined to their records
    const readout = parseCountersReadout(this.native.readCountersJson());
    const { columns } = joinCounters(r.ops, readout);
    return { ops: { ...r.ops, counters: columns }, kernels: [...this.kernels], dropped: r.dropped, countersMeta: countersMetaOf(readout) };
  }

  /** Tokens of a generation request (prompt text, chat messages or ids). */
  promptTokens(opts: GenerateOptions): number[] {
    const given = [opts.prompt !== undefined, opts.messages !== undefined, opts.tokens !== undefined].filter(Boolean).length;
    if (given !== 1) throw new SessionError("generate: give exactly one of prompt, messages or tokens");
    if (opts.prompt !== undefined) {
      if (typeof opts.prompt !== "string") throw new SessionError("generate: prompt must be a string");
      return this.host.encode(opts.prompt);
    }
    if (opts.messages !== undefined) {
      if (!Array.isArray(opts.messages) || opts.messages.length === 0) throw new SessionError("generate: messages must be a non-empty array");
      return this.host.chat(opts.messages);
    }
    return [...(opts.tokens as number[])];
  }

  async *generate(opts: GenerateOptions): AsyncGenerator<GenerateEvent> {
    if (this.busy) throw new SessionError("generate: this session is already generating (one generation at a time per session)");
    const seq = opts.seq ?? 0;
    this.checkSeq(seq, "generate");
    const maxTokens = opts.maxTokens ?? 64;
    if (!isInt(maxTokens) || maxTokens < 1) throw new SessionError(`generate: maxTokens must be an integer >= 1, got ${String(maxTokens)}`);
    const sampling = checkSampling(opts);
    const stop = new Set<number>(this.host.eosIds);
    for (const s of opts.stop ?? []) {
      if (!isInt(s)) throw new SessionError(`generate: stop token ${String(s)} is not an integer`);
      stop.add(s);
    }
    // host spans on the engine's clock, so the trace export lines them up with the op records
    const monoNs = () => this.native.lib.clockNs();
    const tk0 = monoNs();
    const prompt = this.promptTokens(opts);
    const tokenizeNs: [number, number] = [tk0, monoNs()];
    if (prompt.length === 0) throw new SessionError("generate: the prompt is empty (it tokenized to no tokens)");
    this.checkTokens(prompt, "generate");
    if (prompt.length > this.maxContext) {
      throw new QwenError("qw_session_prefill", 7, `the prompt has ${prompt.length} tokens, more than the session's max context ${this.maxContext}`);
    }
    const signal = opts.signal;
    const stepsPerSync = opts.stepsPerSync ?? 1;
    if (!isInt(stepsPerSync) || stepsPerSync < 1) throw new SessionError(`generate: stepsPerSync must be an integer >= 1, got ${String(stepsPerSync)}`);
    // a stop inside a call is cut back by truncate, which a kivi cache allows exactly only kvMaxRollback deep
    const rollback = this.kvInfo().kvMaxRollback;
    const ahead = rollback >= 0 ? Math.min(stepsPerSync, rollback + 1) : stepsPerSync;
    this.busy = true;
    try {
      this.reset(seq);
      this.native.setSampling(seq, sampling.temperature, sampling.topK, sampling.topP, BigInt(sampling.seed));
      if (signal?.aborted) {
        yield { type: "done", reason: "cancelled", tokens: [], text: "", ttftMs: 0, tpotMs: [], prefillTokS: 0, decodeTokS: 0 };
        return;
      }
      const dec = this.host.decoder();
      const callsNs: [number, number][] = [];
      const callSteps: number[] = [1];  // the prefill, then each decode call
      const t0 = performance.now();
      let h0 = monoNs();
      let tok = this.prefill(seq, prompt);
      callsNs.push([h0, monoNs()]);
      const prefillMs = performance.now() - t0;
      yield { type: "prefill", promptTokens: prompt.length, ms: prefillMs };
      const out: number[] = [];
      const tpot: number[] = [];
      let text = "";
      let reason: "stop" | "length" | "cancelled" = "length";
      let phase: "prefill" | "decode" = "prefill";
      let stepMs = prefillMs;
      const seqArr = new Int32Array([seq]);
      const tokArr = new Int32Array(1);
      const outArr = new Int32Array(ahead);
      let queued: number[] = [];  // tokens a multi-step call returned that are not yet emitted
      for (;;) {
        if (stop.has(tok)) {
          reason = "stop";
          break;
        }
        out.push(tok);
        const piece = dec.push(tok);
        text += piece;
        yield { type: "token", index: out.length - 1, token: tok, text: piece, ms: stepMs, phase };
        if (out.length >= maxTokens) {
          reason = "length";
          break;
        }
        if (prompt.length + out.length > this.maxContext) {
          reason = "length"; // the KV cache is full: the next decode would overflow
          break;
        }
        if (signal) {
          await new Promise<void>((r) => setImmediate(r)); // let an abort (timer, request close) land
          if (signal.aborted) {
            reason = "cancelled";
            break;
          }
        }
        phase = "decode";
        if (queued.length > 0) {
          tok = queued.shift()!;
          continue;
        }
        // steps this call may run: tokens still wanted, and room in the cache (it holds the prompt and every token
        // emitted but the last, which the first step appends)
        const k = Math.min(ahead, maxTokens - out.length, this.maxContext - (prompt.length + out.length - 1));
        const s0 = performance.now();
        h0 = monoNs();
        tokArr[0] = tok;
        if (k > 1) this.native.decodeSteps(seqArr, tokArr, k, outArr);
        else this.native.decode(seqArr, tokArr, outArr);
        callsNs.push([h0, monoNs()]);
        callSteps.push(k);
        stepMs = (performance.now() - s0) / k;
        for (let j = 0; j < k; j++) tpot.push(stepMs);
        queued = Array.from(outArr.subarray(0, k));
        tok = queued.shift()!;
      }
      // the steps a multi-step call ran past a stop or a cancel: the cache keeps what a step-by-step run keeps
      // (the prompt and every emitted token, the last one included only when generation stopped on a stop token)
      if (queued.length > 0) {
        const keep = prompt.length + out.length - (reason === "stop" ? 0 : 1);
        if (this.native.seqLen(seq) > keep) this.native.truncate(seq, keep);
      }
      text += dec.end();
      const decodeMs = tpot.reduce((a, b) => a + b, 0);
      yield {
        type: "done", reason, tokens: out, text, ttftMs: prefillMs, tpotMs: tpot,
        prefillTokS: prefillMs > 0 ? (prompt.length / prefillMs) * 1000 : 0,
        decodeTokS: decodeMs > 0 ? (tpot.length / decodeMs) * 1000 : 0,
        tokenizeNs, callsNs, ...(ahead > 1 ? { callSteps } : {}),
      };
    } finally {
      this.busy = false;
    }
  }

  close(): void {
    if (this.native.closed) return;
    this.native.destroy();
    this.host.onClose(this);
  }
}
