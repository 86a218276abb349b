// engine/formats/requant.ts — the `weights` model option (QWEN-005) on the TypeScript side: its schema and the
// native config keys it becomes, the CLI form, and a bit-exact port of the native requantizers
// (cuda/src/opt/weights/requant.hpp: the formulas and why the products are exact are written there) for the
// reference tests and the per-layer quantization-error table.
//
// The format is chosen when a model loads (sessions share the weights): openModel(source, { weights,
// weightsLayers }). Sessions report it as the per-layer toggle `weights` and refuse to change it; the web
// server reloads the model instead. weightsLayers.output (opt-in) requantizes the output matrix (lm_head) too:
// it is not a layer, so the toggle does not show it, and a reload for another toggle value keeps it (withOutput).
// A tied model (its lm_head is the embedding) refuses it at load.
import { z } from "zod";
import { bf16ToF32, f32ToBf16 } from "./quant.ts";
import { toggleRegistry } from "../catalog.ts";

/** The registry toggle that reports the option (the one toggle a session cannot change: reload instead). */
export const WEIGHTS_TOGGLE = "weights";
export type WeightFormat = "as-loaded" | "bf16" | "q8" | "q4";

/** The formats, from the library's toggle registry (the one source of toggle names and values). */
export function weightFormats(): string[] {
  return toggleRegistry().find((t) => t.id === WEIGHTS_TOGGLE)?.values ?? [];
}
/** Elements per q8 / q4 group along the input dimension (ne0). */
export const REQUANT_GROUP = 128;
/** The 7 projections a layer requantizes (GGUF names: blk.N.<name>.weight); embeddings stay, and the lm_head
 *  unless weightsLayers names OUTPUT_KEY. */
export const PROJECTIONS = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"] as const;

export const WeightFormatSchema = z.string().superRefine((v, ctx) => {
  if (!weightFormats().includes(v)) ctx.addIssue({ code: "custom", message: `${JSON.stringify(v)} is not a weight format (accepted: ${weightFormats().join(", ")})` });
}).transform((v) => v as WeightFormat);
/** The weightsLayers key of the output matrix (lm_head), and that matrix's GGUF name. */
export const OUTPUT_KEY = "output";
export const OUTPUT_TENSOR = "output.weight";
const KEY_HINT = `a layer index (0, 1, 2, ...) or "${OUTPUT_KEY}" (the lm_head)`;
/** Per-layer overrides and the output's format: {"0": "bf16", "27": "bf16", "output": "q8"} (layer indices as
 *  decimal strings, as the native config key weights_layers). */
export const WeightsLayersSchema = z.record(z.string().regex(/^(0|[1-9]\d{0,5}|output)$/, KEY_HINT), WeightFormatSchema);
export const WeightsOptionSchema = z.object({ weights: WeightFormatSchema.optional(), weightsLayers: WeightsLayersSchema.optional() }).strict();
export type WeightsOption = z.infer<typeof WeightsOptionSchema>;

function issueText(i: z.core.$ZodIssue): string {
  return i.code === "invalid_key" ? `${JSON.stringify(String(i.path[i.path.length - 1]))} is not ${KEY_HINT}` : i.message;
}

/** Validates a weights option against a model's layer count; the message names what is wrong. */
export function checkWeightsOption(opt: unknown, numLayers: number): WeightsOption {
  const r = WeightsOptionSchema.safeParse(opt ?? {});
  if (!r.success) {
    const i = r.error.issues[0];
    throw new Error(`weights option ${i.path.join(".")}: ${issueText(i)}`.replace(" : ", ": "));
  }
  for (const k of Object.keys(r.data.weightsLayers ?? {}))
    if (k !== OUTPUT_KEY && Number(k) >= numLayers) throw new Error(`weights option weightsLayers: layer ${k} is not a layer of this model (0..${numLayers - 1}) nor "${OUTPUT_KEY}"`);
  return r.data;
}

/** The output matrix's format in an option (as-loaded unless weightsLayers names it). */
export function outputFormat(opt: { weightsLayers?: Record<string, string> } | undefined): WeightFormat {
  return (opt?.weightsLayers?.[OUTPUT_KEY] ?? "as-loaded") as WeightFormat;
}

/** `opt` with the output's format set to `fmt` (removed when as-loaded or undefined: the default). Why: a reload
 *  for another `weights` toggle value (the toggle has no output) keeps the output the model was loaded with. */
export function withOutput(opt: WeightsOption, fmt: string | undefined): WeightsOption {
  const layers: Record<string, WeightFormat> = { ...(opt.weightsLayers ?? {}) };
  delete layers[OUTPUT_KEY];
  if (fmt !== undefined && fmt !== "as-loaded") layers[OUTPUT_KEY] = WeightFormatSchema.parse(fmt);
  const out: WeightsOption = opt.weights !== undefined ? { weights: opt.weights } : {};
  if (Object.keys(layers).length) out.weightsLayers = layers;
  return out;
}

/** The keys qw_model_create reads next to the HF config (absent when the option is the default). */
export function nativeWeightsConfig(opt: WeightsOption | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (opt?.weights && opt.weights !== "as-loaded") out.weights = opt.weights;
  if (opt?.weightsLayers && Object.keys(opt.weightsLayers).length) out.weights_layers = { ...opt.weightsLayers };
  return out;
}

/** The per-layer formats an option gives a model of `numLayers` layers. */
export function layerFormats(opt: WeightsOption | undefined, numLayers: number): WeightFormat[] {
  const out: WeightFormat[] = Array.from({ length: numLayers }, () => opt?.weights ?? "as-loaded");
  for (const [k, v] of Object.entries(opt?.weightsLayers ?? {})) if (k !== OUTPUT_KEY) out[Number(k)] = v;
  return out;
}

/** The format an option gives the tensor `name`: its layer's for a projection, the output's for output.weight,
 *  as-loaded for anything else (embeddings, norms, biases). */
export function tensorFormat(opt: WeightsOption | undefined, name: string, numLayers: number): WeightFormat {
  if (name === OUTPUT_TENSOR) return outputFormat(opt);
  const p = projectionOf(name);
  return p && p.layer < numLayers ? layerFormats(opt, numLayers)[p.layer] : "as-loaded";
}

/** The option as a session's toggle value reports it (one value, or one per layer) — and back. */
export function optionFromToggle(v: string | string[]): WeightsOption {
  const vals = (Array.isArray(v) ? v : [v]).map((x) => WeightFormatSchema.parse(x));
  if (vals.every((x) => x === vals[0])) return vals[0] === "as-loaded" ? {} : { weights: vals[0] };
  const count = new Map<WeightFormat, number>();
  for (const x of vals) count.set(x, (count.get(x) ?? 0) + 1);
  const base = [...count.entries()].sort((a, b) => b[1] - a[1])[0][0];
  const layers: Record<string, WeightFormat> = {};
  vals.forEach((x, i) => { if (x !== base) layers[String(i)] = x; });
  return { ...(base === "as-loaded" ? {} : { weights: base }), weightsLayers: layers };
}

/** Whether two `weights` toggle values give the same per-layer formats ("q4" == ["q4", "q4", ...]). */
export function sameWeights(a: string | string[], b: string | string[]): boolean {
  return JSON.stringify(optionFromToggle(a)) === JSON.stringify(optionFromToggle(b));
}

/** A short label: "q4", "q4 (0,27: bf16)", "as-loaded", and the output when not as loaded: "q4,output=q8",
 *  "output=q8" (the CLI form of that part, so it can be pasted into --weights). */
export function weightsLabel(opt: { weights?: string; weightsLayers?: Record<string, string> } | undefined): string {
  const base = opt?.weights ?? "as-loaded";
  const by = new Map<string, string[]>();
  for (const [k, v] of Object.entries(opt?.weightsLayers ?? {})) if (k !== OUTPUT_KEY) by.set(v, [...(by.get(v) ?? []), k]);
  const extra = [...by.entries()].map(([v, ks]) => `${ks.join(",")}: ${v}`).join("; ");
  const layers = extra ? `${base} (${extra})` : base;
  const out = outputFormat(opt);
  if (out === "as-loaded") return layers;
  return layers === "as-loaded" ? `${OUTPUT_KEY}=${out}` : `${layers},${OUTPUT_KEY}=${out}`;
}

/** CLI form: "q4", "q4,0=bf16,27=bf16", "q4,output=q8" (the base format, then layer=format overrides and the
 *  output's format). */
export function parseWeightsArg(s: string): WeightsOption {
  const parts = s.split(",").map((x) => x.trim()).filter(Boolean);
  const out: { weights?: string; weightsLayers?: Record<string, string> } = {};
  for (const p of parts) {
    const eq = p.indexOf("=");
    if (eq < 0) {
      if (out.weights !== undefined) throw new Error(`--weights ${s}: two base formats (${out.weights}, ${p}); give one, then layer=format`);
      out.weights = p;
    } else {
      out.weightsLayers ??= {};
      out.weightsLayers[p.slice(0, eq).trim()] = p.slice(eq + 1).trim();
    }
  }
  const r = WeightsOptionSchema.safeParse(out);
  if (!r.success) {
    const i = r.error.issues[0];
    // a bad value names its key; a bad key names itself (issueText)
    const at = i.path.length > 1 && i.code !== "invalid_key" ? (i.path[1] === OUTPUT_KEY ? `${OUTPUT_KEY}: ` : `layer "${String(i.path[1])}": `) : "";
    throw new Error(`--weights ${s}: ${at}${issueText(i)} (form: q4, q4,0=bf16,27=bf16 or q4,output=q8)`);
  }
  return r.data;
}

// ------------------------------------------------------------------------------------------------
// The requantizers (bit-exact ports of requant.cpp)
// ------------------------------------------------------------------------------------------------
const FLT_MIN = 1.1754943508222875e-38;
const f64 = new Float64Array(1), u32 = new Uint32Array(f64.buffer);

/** x rounded up to 16 significant bits (x > 0 finite; else x). */
export function roundUpSig16(x: number): number {
  if (!(x > 0) || !Number.isFinite(x)) return x;
  f64[0] = x;
  const e = ((u32[1] >>> 20) & 0x7ff) - 1022; // x = m * 2^e, m in [0.5, 1) (x is a normal double here)
  const m = x * 2 ** -e;
  return Math.ceil(m * 65536) * 2 ** (e - 16);
}

/** sign(x) * floor(|x| + 0.5), in double as the native code does. */
export function roundHalfAway(x: number): number {
  const r = Math.floor(Math.abs(x) + 0.5);
  return x < 0 ? -r : r;
}

function storedScale(s: number): number {
  if (!(s > 0)) return 0;
  const r = roundUpSig16(s);
  return r < FLT_MIN ? FLT_MIN : Math.fround(r);
}

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

/**
 * The weights a format makes of a [rows, cols] row-major fp32 matrix (cols = ne0), as the engine holds them
 * (every value exactly s * (q - z) for q8/q4). as-loaded returns the input.
 */
export function requantize(w: Float32Array, rows: number, cols: number, fmt: WeightFormat, name = "tensor"): Float32Array {
  if (w.length !== rows * cols) throw new Error(`requantize ${name}: ${w.length} values for [${rows}, ${cols}]`);
  if (fmt === "as-loaded") return w;
  const out = new Float32Array(w.length);
  if (fmt === "bf16") {
    for (let i = 0; i < w.length; i++) out[i] = bf16ToF32(f32ToBf16(w[i]));
    return out;
  }
  const G = REQUANT_GROUP;
  if (cols % G !== 0) throw new Error(`${name}: weights = ${fmt} needs ne0 (input features, ${cols}) to be a multiple of the group size ${G}; keep this layer as-loaded or bf16 (weightsLayers)`);
  for (let r = 0; r < rows; r++)
    for (let c0 = 0; c0 < cols; c0 += G) {
      const base = r * cols + c0;
      if (fmt === "q8") {
        let amax = 0;
        for (let e = 0; e < G; e++) amax = Math.max(amax, Math.abs(w[base + e]));
        const s = storedScale(amax / 127);
        for (let e = 0; e < G; e++) out[base + e] = s > 0 ? Math.fround(s * clamp(roundHalfAway(w[base + e] / s), -127, 127)) : 0;
      } else {
        let lo = 0, hi = 0;
        for (let e = 0; e < G; e++) { lo = Math.min(lo, w[base + e]); hi = Math.max(hi, w[base + e]); }
        const s = storedScale((hi - lo) / 15);
        const z = s > 0 ? clamp(roundHalfAway(-lo / s), 0, 15) : 0;
        const off = -Math.fround(s * z);
        for (let e = 0; e < G; e++) {
          const q = s > 0 ? clamp(roundHalfAway(w[base + e] / s) + z, 0, 15) : 0;
          out[base + e] = Math.fround(Math.fround(s * q) + off);
        }
      }
    }
  return out;
}

/** Layer and projection of a GGUF tensor name that the option requantizes, or undefined. */
export function projectionOf(name: string): { layer: number; proj: (typeof PROJECTIONS)[number] } | undefined {
  const m = /^blk\.(\d+)\.([a-z_]+)\.weight$/.exec(name);
  if (!m || !(PROJECTIONS as readonly string[]).includes(m[2])) return undefined;
  return { layer: Number(m[1]), proj: m[2] as (typeof PROJECTIONS)[number] };
}

/** Signal-to-quantization-noise ratio in dB and cosine similarity of an approximation b of a. */
export function sqnr(a: Float32Array, b: Float32Array): { sqnrDb: number; cos: number } {
  let sig = 0, noise = 0, dot = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    const e = a[i] - b[i];
    sig += a[i] * a[i]; noise += e * e; dot += a[i] * b[i]; bb += b[i] * b[i];
  }
  return { sqnrDb: noise === 0 ? Infinity : 10 * Math.log10(sig / noise), cos: sig * bb === 0 ? (noise === 0 ? 1 : 0) : dot / Math.sqrt(sig * bb) };
}
