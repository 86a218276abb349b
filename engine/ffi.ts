// engine/ffi.ts — the ONLY file that imports bun:ffi. A thin, typed wrapper over cuda/include/qwen.h (ABI: QW_ABI_VERSION).
//
// Rules this file follows (see ../shared/research/workbench-anchors.md §4.2 for the bun:ffi pitfalls):
//  - Handles (qw_engine*, qw_model*, qw_session*) are declared as u64 in the FFI signatures and kept as bigint.
//    On x86-64 and aarch64 a pointer and a uint64 travel in the same register, so no pointer ever becomes a JS
//    double (no precision loss above 2^52, no BigInt→ptr sign trouble). This is the one pointer adapter.
//  - Every buffer handed to C is a TypedArray passed directly for that one synchronous call; no ptr() is kept.
//  - Memory the engine keeps is the engine's; we copy out (logits, captures, records, JSON) into JS arrays.
//  - No JSCallback: nothing native ever calls back into JS.
//  - Every non-zero status becomes a QwenError carrying the status name and qw_last_error().
import { dlopen, FFIType } from "bun:ffi";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { REPO_ROOT } from "./constants.ts";

export const QW_ABI_VERSION = 11;

export const STATUS_NAMES = [
  "QW_OK", "QW_ERR_INVALID_ARGUMENT", "QW_ERR_OUT_OF_MEMORY", "QW_ERR_NOT_FOUND", "QW_ERR_SHAPE",
  "QW_ERR_UNSUPPORTED", "QW_ERR_STATE", "QW_ERR_CONTEXT_OVERFLOW", "QW_ERR_DEVICE", "QW_ERR_INTERNAL",
] as const;
export type StatusName = (typeof STATUS_NAMES)[number];

// GGML type ids and the repository root live in constants.ts (no bun:ffi there, so synth/ and formats/ can use them).
export { GGML, REPO_ROOT } from "./constants.ts";

/** A failed libqwen call (or a failure to load libqwen). */
export class QwenError extends Error {
  readonly status: number;
  readonly code: StatusName | "QW_ERR_LOAD";
  readonly call: string;
  readonly nativeMessage: string;
  constructor(call: string, status: number, nativeMessage: string) {
    const code = status < 0 ? "QW_ERR_LOAD" : (STATUS_NAMES[status] ?? "QW_ERR_INTERNAL");
    super(`${call}: ${nativeMessage || "failed"} [${code}]`);
    this.name = "QwenError";
    this.status = status;
    this.code = code as StatusName | "QW_ERR_LOAD";
    this.call = call;
    this.nativeMessage = nativeMessage;
  }
}

// ------------------------------------------------------------------------------------------------
// Symbols. Handles are u64 (see the header comment); strings in are NUL-terminated Uint8Arrays ("ptr").
// ------------------------------------------------------------------------------------------------
const H = FFIType.u64; // a handle
const P = FFIType.ptr; // a caller buffer for this one call
const I32 = FFIType.i32;
const I64 = FFIType.i64;
const U64 = FFIType.u64;
const F32 = FFIType.f32;

const SYMBOLS = {
  qw_abi_version: { args: [], returns: I32 },
  qw_last_error: { args: [], returns: FFIType.cstring },
  qw_build_info: { args: [], returns: FFIType.cstring },
  qw_toggle_registry_json: { args: [P, U64, P], returns: I32 },
  qw_catalog_json: { args: [P, U64, P], returns: I32 },
  qw_op_name: { args: [I32], returns: FFIType.cstring },
  qw_kernel_name: { args: [I32], returns: FFIType.cstring },
  qw_profiling_mode_name: { args: [I32], returns: FFIType.cstring },
  qw_clock_ns: { args: [], returns: I64 },
  qw_engine_create: { args: [P, P], returns: I32 },
  qw_engine_destroy: { args: [H], returns: I32 },
  qw_engine_info_json: { args: [H, P, U64, P], returns: I32 },
  qw_model_create: { args: [H, P, P], returns: I32 },
  qw_model_load_tensor: { args: [H, P, I32, I32, I64, I64, I64, I64, P, U64], returns: I32 },
  qw_model_finalize: { args: [H], returns: I32 },
  qw_model_info_json: { args: [H, P, U64, P], returns: I32 },
  qw_model_destroy: { args: [H], returns: I32 },
  qw_session_create: { args: [H, P, P], returns: I32 },
  qw_session_destroy: { args: [H], returns: I32 },
  qw_session_set_toggle: { args: [H, P, P, I32], returns: I32 },
  qw_session_toggles_json: { args: [H, P, U64, P], returns: I32 },
  qw_session_reset: { args: [H, I32], returns: I32 },
  qw_session_info_json: { args: [H, P, U64, P], returns: I32 },
  qw_session_tile_tune: { args: [H, P, P, U64, P], returns: I32 },
  qw_session_tile_set: { args: [H, P], returns: I32 },
  qw_session_seq_len: { args: [H, I32, P], returns: I32 },
  qw_session_truncate: { args: [H, I32, I32], returns: I32 },
  qw_session_set_sampling: { args: [H, I32, F32, I32, F32, U64], returns: I32 },
  qw_session_prefill: { args: [H, I32, P, I32, P], returns: I32 },
  qw_session_decode: { args: [H, I32, P, P, P], returns: I32 },
  qw_session_decode_chain: { args: [H, I32, I32, P, P], returns: I32 },
  qw_session_decode_steps: { args: [H, I32, P, P, I32, P], returns: I32 },
  qw_session_prefill_tree: { args: [H, I32, P, I32, P, I32, P, P], returns: I32 },
  qw_session_kv_compact: { args: [H, I32, I32, P, I32], returns: I32 },
  qw_session_set_logits_mode: { args: [H, I32], returns: I32 },
  qw_session_logits_shape: { args: [H, P, P], returns: I32 },
  qw_session_read_logits: { args: [H, P, I64], returns: I32 },
  qw_session_read_topk: { args: [H, I32, P, P, I64], returns: I32 },
  qw_session_set_profiling: { args: [H, I32], returns: I32 },
  qw_session_records_pending: { args: [H, P, P], returns: I32 },
  qw_session_read_records: { args: [H, P, I64, P], returns: I32 },
  qw_session_read_counters: { args: [H, P, U64, P], returns: I32 },
  qw_session_set_capture: { args: [H, P], returns: I32 },
  qw_session_capture_count: { args: [H, P], returns: I32 },
  qw_session_capture_info: { args: [H, I32, P, U64, P, P], returns: I32 },
  qw_session_read_capture: { args: [H, I32, P, I64], returns: I32 },
} as const;

type Lib = ReturnType<typeof dlopen<typeof SYMBOLS>>["symbols"];

const enc = new TextEncoder();
const dec = new TextDecoder();
/** A NUL-terminated UTF-8 copy of `s` (passed directly as a ptr argument for one call). */
/** A NUL-terminated copy; a string with a NUL inside is refused (C would see only its head). */
function cstr(s: string): Uint8Array {
  if (s.includes("\0")) throw new QwenError("argument", 1, `a string passed to the engine contains a NUL byte: ${JSON.stringify(s).slice(0, 80)}`);
  const b = enc.encode(s);
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}
/** Normalizes whatever bun:ffi returns for a handle / u64 into a bigint. */
function toHandle(v: number | bigint): bigint {
  return typeof v === "bigint" ? v : BigInt(v);
}

export type BackendName = "cpu" | "cuda";

/** Directory libqwen_*.so is loaded from: $QW_LIB_DIR or cuda/build/. */
export function libDir(): string {
  return process.env.QW_LIB_DIR ? resolve(process.env.QW_LIB_DIR) : join(REPO_ROOT, "cuda", "build");
}
export function libPath(backend: BackendName): string {
  return join(libDir(), `libqwen_${backend}.so`);
}

/** A loaded libqwen_{cpu,cuda}.so. */
export class NativeLibrary {
  readonly backend: BackendName;
  readonly path: string;
  readonly abi: number;
  /** @internal */ readonly sym: Lib;
  private opNames = new Map<number, string>();
  private kernelNames = new Map<number, string>();

  private constructor(backend: BackendName, path: string, sym: Lib) {
    this.backend = backend;
    this.path = path;
    this.sym = sym;
    this.abi = sym.qw_abi_version();
  }

  static open(backend: BackendName): NativeLibrary {
    const cached = libraries.get(backend);
    if (cached) return cached;
    const path = libPath(backend);
    if (!existsSync(path)) {
      const hint = backend === "cpu" ? "run `npm run build` (make -C cuda cpu)" : "build it with `make -C cuda cuda` on a machine with nvcc";
      throw new QwenError("dlopen", -1, `${path} not found: ${hint}${process.env.QW_LIB_DIR ? " (QW_LIB_DIR is set)" : ""}`);
    }
    let lib: ReturnType<typeof dlopen<typeof SYMBOLS>>;
    try {
      lib = dlopen(path, SYMBOLS);
    } catch (e) {
      throw new QwenError("dlopen", -1, `cannot load ${path}: ${(e as Error).message}`);
    }
    const nl = new NativeLibrary(backend, path, lib.symbols);
    if (nl.abi !== QW_ABI_VERSION) {
      lib.close();
      throw new QwenError("qw_abi_version", -1, `${path} has ABI ${nl.abi}, this engine/ffi.ts speaks ${QW_ABI_VERSION}: rebuild with \`npm run build\``);
    }
    libraries.set(backend, nl);
    return nl;
  }

  /** Throws a QwenError for a non-zero status. */
  check(call: string, status: number): void {
    if (status !== 0) throw new QwenError(call, status, this.sym.qw_last_error() ?? "");
  }

  /** Runs a JSON out-call with the (out, cap, out_len) size-query protocol. */
  json(call: string, f: (out: Uint8Array | null, cap: number, outLen: BigUint64Array) => number): string {
    const len = new BigUint64Array(1);
    this.check(call, f(null, 0, len));
    for (let attempt = 0; attempt < 4; attempt++) {
      const n = Number(len[0]);
      const buf = new Uint8Array(n + 1);
      this.check(call, f(buf, n + 1, len));
      if (Number(len[0]) <= n) return dec.decode(buf.subarray(0, Number(len[0])));
    }
    throw new QwenError(call, 9, "JSON output kept growing between size query and copy");
  }

  buildInfo(): string {
    return this.sym.qw_build_info() ?? "{}";
  }
  toggleRegistryJson(): string {
    return this.json("qw_toggle_registry_json", (o, c, l) => this.sym.qw_toggle_registry_json(o, c, l));
  }
  /** qw_catalog_json: ops (with cost models), hooks, profiling modes and toggles: every name, from the library. */
  catalogJson(): string {
    return this.json("qw_catalog_json", (o, c, l) => this.sym.qw_catalog_json(o, c, l));
  }
  opName(op: number): string {
    let s = this.opNames.get(op);
    if (s === undefined) {
      s = this.sym.qw_op_name(op) ?? "";
      this.opNames.set(op, s);
    }
    return s;
  }
  /** The engine's clock (ns), the time line of op records. */
  clockNs(): number {
    return Number(this.sym.qw_clock_ns());
  }
  /** Profiling modes in qw_profiling_mode order ("off", "events", "kernels"): the names come from the library. */
  profilingModes(): string[] {
    const out: string[] = [];
    for (let i = 0; ; i++) {
      const s = this.sym.qw_profiling_mode_name(i) ?? "";
      if (!s) return out;
      out.push(s);
    }
  }
  kernelName(k: number): string {
    let s = this.kernelNames.get(k);
    if (s === undefined) {
      s = this.sym.qw_kernel_name(k) ?? "";
      if (s) this.kernelNames.set(k, s);
    }
    return s;
  }

  createEngine(options: { threads?: number; device?: number } = {}): NativeEngine {
    const out = new BigUint64Array(1);
    this.check("qw_engine_create", this.sym.qw_engine_create(cstr(JSON.stringify(options)), out));
    return new NativeEngine(this, toHandle(out[0]));
  }
}
const libraries = new Map<BackendName, NativeLibrary>();

abstract class Handle {
  protected h: bigint;
  constructor(h: bigint) {
    this.h = h;
  }
  get closed(): boolean {
    return this.h === 0n;
  }
  protected live(what: string): bigint {
    if (this.h === 0n) throw new QwenError(what, 6, "the handle was already destroyed");
    return this.h;
  }
}

export class NativeEngine extends Handle {
  readonly lib: NativeLibrary;
  constructor(lib: NativeLibrary, h: bigint) {
    super(h);
    this.lib = lib;
  }
  infoJson(): string {
    const h = this.live("qw_engine_info_json");
    return this.lib.json("qw_engine_info_json", (o, c, l) => this.lib.sym.qw_engine_info_json(h, o, c, l));
  }
  createModel(config: Record<string, unknown>): NativeModel {
    const out = new BigUint64Array(1);
    this.lib.check("qw_model_create", this.lib.sym.qw_model_create(this.live("qw_model_create"), cstr(JSON.stringify(config)), out));
    return new NativeModel(this.lib, toHandle(out[0]));
  }
  destroy(): void {
    if (this.h === 0n) return;
    this.lib.check("qw_engine_destroy", this.lib.sym.qw_engine_destroy(this.h));
    this.h = 0n;
  }
}

export class NativeModel extends Handle {
  readonly lib: NativeLibrary;
  constructor(lib: NativeLibrary, h: bigint) {
    super(h);
    this.lib = lib;
  }
  /** Hands one tensor over (ne in ggml order, ne[0] contiguous). `data` is read during the call only. */
  loadTensor(name: string, ggmlType: number, ne: readonly number[], data: Uint8Array): void {
    if (ne.length < 1 || ne.length > 4) throw new QwenError("qw_model_load_tensor", 1, `${name}: n_dims ${ne.length} not in 1..4`);
    const h = this.live("qw_model_load_tensor");
    const st = this.lib.sym.qw_model_load_tensor(h, cstr(name), ggmlType, ne.length, ne[0] ?? 1, ne[1] ?? 1, ne[2] ?? 1, ne[3] ?? 1,
      data.byteLength === 0 ? null : data, BigInt(data.byteLength));
    this.lib.check("qw_model_load_tensor", st);
  }
  finalize(): void {
    this.lib.check("qw_model_finalize", this.lib.sym.qw_model_finalize(this.live("qw_model_finalize")));
  }
  infoJson(): string {
    const h = this.live("qw_model_info_json");
    return this.lib.json("qw_model_info_json", (o, c, l) => this.lib.sym.qw_model_info_json(h, o, c, l));
  }
  createSession(options: {
    max_batch?: number; max_context?: number; max_prefill?: number; dca_chunk_size?: number; dca_local_size?: number;
    sparse_vertical?: number; sparse_slash?: number; sparse_blocks?: number; sparse_local?: number; sparse_sink?: number; sparse_stats?: boolean;
  }): NativeSession {
    const out = new BigUint64Array(1);
    this.lib.check("qw_session_create", this.lib.sym.qw_session_create(this.live("qw_session_create"), cstr(JSON.stringify(options)), out));
    return new NativeSession(this.lib, toHandle(out[0]));
  }
  destroy(): void {
    if (this.h === 0n) return;
    this.lib.check("qw_model_destroy", this.lib.sym.qw_model_destroy(this.h));
    this.h = 0n;
  }
}

/** Size of qw_op_record in bytes. */
/** Op records as columns (the shape of measure/profile.ts OpColumns, declared here so that ffi.ts imports nothing
 *  of engine/ but constants.ts: the catalog, which profile.ts reads, sits on top of this file). */
export interface OpColumns {
  step: number[]; phase: number[]; layer: number[]; op: number[]; kernel: number[];
  t_start_ns: number[]; t_end_ns: number[]; flops: number[]; bytes: number[]; n_tokens: number[];
  overlap_ns?: number[];
  rank?: number[];
}

export const OP_RECORD_BYTES = 72;

export class NativeSession extends Handle {
  readonly lib: NativeLibrary;
  private i32a = new Int32Array(1);
  private i32b = new Int32Array(1);
  constructor(lib: NativeLibrary, h: bigint) {
    super(h);
    this.lib = lib;
  }
  setToggle(id: string, value: string, layer = -1): void {
    this.lib.check("qw_session_set_toggle", this.lib.sym.qw_session_set_toggle(this.live("qw_session_set_toggle"), cstr(id), cstr(value), layer));
  }
  togglesJson(): string {
    const h = this.live("qw_session_toggles_json");
    return this.lib.json("qw_session_toggles_json", (o, c, l) => this.lib.sym.qw_session_toggles_json(h, o, c, l));
  }
  infoJson(): string {
    const h = this.live("qw_session_info_json");
    return this.lib.json("qw_session_info_json", (o, c, l) => this.lib.sym.qw_session_info_json(h, o, c, l));
  }
  /** Toggle tile: measures the candidates of every GEMV / GEMM shape (qwen.h qw_session_tile_tune; blocks). */
  tileTune(requestJson: string): string {
    const h = this.live("qw_session_tile_tune");
    const req = cstr(requestJson);
    // One call into a large buffer: the size-query protocol of lib.json would run the measurement twice.
    const cap = 16 << 20, buf = new Uint8Array(cap), len = new BigUint64Array(1);
    this.lib.check("qw_session_tile_tune", this.lib.sym.qw_session_tile_tune(h, req, buf, cap, len));
    if (Number(len[0]) >= cap) throw new QwenError("qw_session_tile_tune", 9, `the tuning answer (${String(len[0])} bytes) exceeds ${cap} bytes: tune fewer shapes at once ("only")`);
    return dec.decode(buf.subarray(0, Number(len[0])));
  }
  /** Toggle tile: the table tile = auto reads, {shape key: candidate name} ("{}" clears). */
  tileSet(tableJson: string): void {
    this.lib.check("qw_session_tile_set", this.lib.sym.qw_session_tile_set(this.live("qw_session_tile_set"), cstr(tableJson)));
  }
  reset(seq = -1): void {
    this.lib.check("qw_session_reset", this.lib.sym.qw_session_reset(this.live("qw_session_reset"), seq));
  }
  seqLen(seq: number): number {
    this.lib.check("qw_session_seq_len", this.lib.sym.qw_session_seq_len(this.live("qw_session_seq_len"), seq, this.i32a));
    return this.i32a[0];
  }
  /** Shortens seq to its first newLen tokens (speculative rollback). */
  truncate(seq: number, newLen: number): void {
    this.lib.check("qw_session_truncate", this.lib.sym.qw_session_truncate(this.live("qw_session_truncate"), seq, newLen));
  }
  setSampling(seq: number, temperature: number, topK: number, topP: number, seed: bigint): void {
    this.lib.check("qw_session_set_sampling",
      this.lib.sym.qw_session_set_sampling(this.live("qw_session_set_sampling"), seq, temperature, topK, topP, seed));
  }
  /** Appends tokens to seq; returns the sampled next token. */
  prefill(seq: number, tokens: Int32Array): number {
    const h = this.live("qw_session_prefill");
    this.lib.check("qw_session_prefill", this.lib.sym.qw_session_prefill(h, seq, tokens.length ? tokens : null, tokens.length, this.i32a));
    return this.i32a[0];
  }
  /**
   * Tree prefill (qwen.h qw_session_prefill_tree): appends nodes first .. first + tokens.length - 1 of a tree
   * whose parents (first + tokens.length entries, -1 = root) are given, or a causal prefill with parents null;
   * features: [tokens.length, hidden] rows for an EAGLE head model, else null. Returns the sampled next token.
   */
  prefillTree(seq: number, tokens: Int32Array, parents: Int32Array | null, first: number, features: Float32Array | null): number {
    const h = this.live("qw_session_prefill_tree");
    this.lib.check("qw_session_prefill_tree", this.lib.sym.qw_session_prefill_tree(h, seq, tokens.length ? tokens : null, tokens.length,
      parents && parents.length ? parents : null, first, features && features.length ? features : null, this.i32a));
    return this.i32a[0];
  }
  /** Moves the K/V of positions base + keep[i] to base + i; the length becomes base + keep.length. */
  kvCompact(seq: number, base: number, keep: Int32Array): void {
    const h = this.live("qw_session_kv_compact");
    this.lib.check("qw_session_kv_compact", this.lib.sym.qw_session_kv_compact(h, seq, base, keep.length ? keep : null, keep.length));
  }
  /** One batched decode step; writes each sequence's next token to `out`. */
  decode(seqIds: Int32Array, tokens: Int32Array, out: Int32Array): void {
    const h = this.live("qw_session_decode");
    const n = seqIds.length;
    if (tokens.length !== n || out.length < n) throw new QwenError("qw_session_decode", 1, `seqIds (${n}) and tokens (${tokens.length}) differ in length`);
    this.lib.check("qw_session_decode", this.lib.sym.qw_session_decode(h, n, n ? seqIds : null, n ? tokens : null, n ? out : null));
  }
  /** nSteps decode steps in one call (ABI 11): step 0 takes `tokens`, step j > 0 the tokens step j - 1 sampled;
   * out[j * n + i] is sequence i's token of step j. On CUDA the steps are queued with the tokens kept on the GPU. */
  decodeSteps(seqIds: Int32Array, tokens: Int32Array, nSteps: number, out: Int32Array): void {
    const h = this.live("qw_session_decode_steps");
    const n = seqIds.length;
    if (tokens.length !== n) throw new QwenError("qw_session_decode_steps", 1, `seqIds (${n}) and tokens (${tokens.length}) differ in length`);
    if (!Number.isInteger(nSteps) || nSteps < 1) throw new QwenError("qw_session_decode_steps", 1, `nSteps = ${nSteps} must be a positive integer`);
    if (out.length < n * nSteps) throw new QwenError("qw_session_decode_steps", 1, `out holds ${out.length} tokens; ${n * nSteps} needed`);
    this.lib.check("qw_session_decode_steps", this.lib.sym.qw_session_decode_steps(h, n, n ? seqIds : null, n ? tokens : null, nSteps, out));
  }
  /** A draft's chain of n tokens as n decode rows of one sequence (ABI 10); writes the token after each row to `out`. */
  decodeChain(seq: number, tokens: Int32Array, out: Int32Array): void {
    const h = this.live("qw_session_decode_chain");
    const n = tokens.length;
    if (out.length < n) throw new QwenError("qw_session_decode_chain", 1, `out holds ${out.length} tokens; ${n} needed`);
    this.lib.check("qw_session_decode_chain", this.lib.sym.qw_session_decode_chain(h, seq, n, n ? tokens : null, n ? out : null));
  }
  setLogitsMode(mode: number): void {
    this.lib.check("qw_session_set_logits_mode", this.lib.sym.qw_session_set_logits_mode(this.live("qw_session_set_logits_mode"), mode));
  }
  logitsShape(): { rows: number; vocab: number } {
    this.lib.check("qw_session_logits_shape", this.lib.sym.qw_session_logits_shape(this.live("qw_session_logits_shape"), this.i32a, this.i32b));
    return { rows: this.i32a[0], vocab: this.i32b[0] };
  }
  readLogits(): { rows: number; vocab: number; data: Float32Array } {
    const { rows, vocab } = this.logitsShape();
    const data = new Float32Array(rows * vocab);
    if (data.length > 0) {
      this.lib.check("qw_session_read_logits", this.lib.sym.qw_session_read_logits(this.live("qw_session_read_logits"), data, data.length));
    }
    return { rows, vocab, data };
  }
  /** The k best tokens of every logits row and their log-softmax values (qwen.h qw_session_read_topk). */
  readTopK(k: number): { rows: number; k: number; ids: Int32Array; logps: Float64Array } {
    const { rows } = this.logitsShape();
    const ids = new Int32Array(rows * k), logps = new Float64Array(rows * k);
    const h = this.live("qw_session_read_topk");
    this.lib.check("qw_session_read_topk", this.lib.sym.qw_session_read_topk(h, k, rows ? ids : null, rows ? logps : null, rows * k));
    return { rows, k, ids, logps };
  }
  /** topK(1)'s ids only: out_logprobs NULL, so the engine skips the softmax pass (qwen.h qw_session_read_topk). */
  readArgmax(): Int32Array {
    const { rows } = this.logitsShape();
    const ids = new Int32Array(rows);
    const h = this.live("qw_session_read_topk");
    this.lib.check("qw_session_read_topk", this.lib.sym.qw_session_read_topk(h, 1, rows ? ids : null, null, rows));
    return ids;
  }
  setProfiling(mode: number): void {
    this.lib.check("qw_session_set_profiling", this.lib.sym.qw_session_set_profiling(this.live("qw_session_set_profiling"), mode));
  }
  recordsPending(): { pending: number; dropped: number } {
    const a = new BigInt64Array(1);
    const b = new BigInt64Array(1);
    this.lib.check("qw_session_records_pending", this.lib.sym.qw_session_records_pending(this.live("qw_session_records_pending"), a, b));
    return { pending: Number(a[0]), dropped: Number(b[0]) };
  }
  /**
   * Drains all pending op records into columnar arrays. Kernel ids are re-indexed into `kernels`
   * (a list of names, shared across calls if the caller passes one in).
   */
  takeRecords(kernels: string[] = []): { ops: OpColumns; kernels: string[]; dropped: number } {
    const { pending, dropped } = this.recordsPending();
    const ops: OpColumns = { step: [], phase: [], layer: [], op: [], kernel: [], t_start_ns: [], t_end_ns: [], flops: [], bytes: [], n_tokens: [], overlap_ns: [], rank: [] };
    const kIndex = new Map<string, number>(kernels.map((k, i) => [k, i]));
    const chunk = Math.max(1, Math.min(pending, 65536));
    const buf = new Uint8Array(chunk * OP_RECORD_BYTES);
    const dv = new DataView(buf.buffer);
    const nOut = new BigInt64Array(1);
    let left = pending;
    while (left > 0) {
      this.lib.check("qw_session_read_records", this.lib.sym.qw_session_read_records(this.live("qw_session_read_records"), buf, chunk, nOut));
      const n = Number(nOut[0]);
      if (n <= 0) break;
      for (let i = 0; i < n; i++) {
        const o = i * OP_RECORD_BYTES;
        ops.step.push(Number(dv.getBigInt64(o, true)));
        ops.phase.push(dv.getInt32(o + 8, true));
        ops.layer.push(dv.getInt32(o + 12, true));
        ops.op.push(dv.getInt32(o + 16, true));
        const kname = this.lib.kernelName(dv.getInt32(o + 20, true)) || `kernel#${dv.getInt32(o + 20, true)}`;
        let ki = kIndex.get(kname);
        if (ki === undefined) {
          ki = kernels.length;
          kernels.push(kname);
          kIndex.set(kname, ki);
        }
        ops.kernel.push(ki);
        ops.t_start_ns.push(Number(dv.getBigInt64(o + 24, true)));
        ops.t_end_ns.push(Number(dv.getBigInt64(o + 32, true)));
        ops.flops.push(dv.getFloat64(o + 40, true));
        ops.bytes.push(dv.getFloat64(o + 48, true));
        ops.n_tokens.push(dv.getInt32(o + 56, true));
        ops.overlap_ns!.push(dv.getInt32(o + 60, true));
        ops.rank!.push(dv.getInt32(o + 64, true)); // tensor-parallel rank (ABI 8); 0 at tp1
      }
      left -= n;
    }
    return { ops, kernels, dropped };
  }
  /** Counters mode's pending per-op measurements as JSON (qwen.h qw_session_read_counters, ABI 9): the engine
   *  forgets them once the whole document was copied, so each call returns the ops since the previous one. */
  readCountersJson(): string {
    const h = this.live("qw_session_read_counters");
    return this.lib.json("qw_session_read_counters", (o, c, l) => this.lib.sym.qw_session_read_counters(h, o, c, l));
  }
  setCapture(hooks: string): void {
    this.lib.check("qw_session_set_capture", this.lib.sym.qw_session_set_capture(this.live("qw_session_set_capture"), cstr(hooks)));
  }
  captureCount(): number {
    this.lib.check("qw_session_capture_count", this.lib.sym.qw_session_capture_count(this.live("qw_session_capture_count"), this.i32a));
    return this.i32a[0];
  }
  captureInfo(index: number): { name: string; rows: number; cols: number } {
    const name = new Uint8Array(256);
    this.lib.check("qw_session_capture_info",
      this.lib.sym.qw_session_capture_info(this.live("qw_session_capture_info"), index, name, BigInt(name.length), this.i32a, this.i32b));
    const end = name.indexOf(0);
    return { name: dec.decode(name.subarray(0, end < 0 ? name.length : end)), rows: this.i32a[0], cols: this.i32b[0] };
  }
  readCapture(index: number): { name: string; rows: number; cols: number; data: Float32Array } {
    const info = this.captureInfo(index);
    const data = new Float32Array(info.rows * info.cols);
    if (data.length > 0) {
      this.lib.check("qw_session_read_capture", this.lib.sym.qw_session_read_capture(this.live("qw_session_read_capture"), index, data, data.length));
    }
    return { ...info, data };
  }
  destroy(): void {
    if (this.h === 0n) return;
    this.lib.check("qw_session_destroy", this.lib.sym.qw_session_destroy(this.h));
    this.h = 0n;
  }
}

// ------------------------------------------------------------------------------------------------
// Engines: one per (backend, threads) per process, created on first use.
// ------------------------------------------------------------------------------------------------
const engines = new Map<string, NativeEngine>();

/** Whether a libqwen for `backend` exists on disk (does not load it). */
export function libraryAvailable(backend: BackendName): boolean {
  return existsSync(libPath(backend));
}

/**
 * Returns the engine for `backend` ("auto" = CUDA when libqwen_cuda.so loads and qw_engine_create succeeds,
 * else CPU). The reason CUDA was skipped under "auto" is kept in `autoFallbackReason`.
 */
export let autoFallbackReason: string | undefined;
export function getEngine(backend: "auto" | BackendName = "auto", opts: { threads?: number; device?: number } = {}): NativeEngine {
  if (backend === "auto") {
    if (libraryAvailable("cuda")) {
      try {
        return getEngine("cuda", opts);
      } catch (e) {
        autoFallbackReason = (e as Error).message;
      }
    } else {
      autoFallbackReason = `${libPath("cuda")} not built`;
    }
    return getEngine("cpu", opts);
  }
  const key = `${backend}:${backend === "cpu" ? (opts.threads ?? 0) : (opts.device ?? 0)}`;
  let e = engines.get(key);
  if (e && !e.closed) return e;
  const lib = NativeLibrary.open(backend);
  e = lib.createEngine(backend === "cpu" ? { threads: opts.threads ?? 0 } : { device: opts.device ?? 0 });
  engines.set(key, e);
  return e;
}
