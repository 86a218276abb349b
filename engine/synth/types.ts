// engine/synth/types.ts — the names and shapes of synthetic models (presets, weight types, the spec, the tensor
// list entries), shared by the generator (synthetic.ts) and the worker pool (pool.ts) without either importing
// the other.
import type { QwenConfig } from "../api.ts";

export const PRESET_NAMES = ["tiny", "0.5b", "1.5b", "7b", "32b", "72b"] as const;
export type PresetName = (typeof PRESET_NAMES)[number];

/** Weight formats a synthetic model can be produced in. q4_k_m is a llama.cpp-like mix (synthetic.ts planType). */
export const SYNTH_TYPES = ["f32", "f16", "bf16", "q8_0", "q4_k_m"] as const;
export type SynthType = (typeof SYNTH_TYPES)[number];

export interface SynthSpec {
  preset: PresetName | "custom";
  config: QwenConfig;
  seed: number;
  std: number;
  biasStd: number;
  /** Which tokenizer goes with it: "tiny" (models/tiny-qwen2-brown) or "qwen" (models/qwen-tokenizer). */
  tokenizer: "tiny" | "qwen";
}

export type TensorKind = "weight" | "norm" | "bias" | "embed";
export interface SynthTensor {
  name: string;        // GGUF name
  hfName: string;      // HF name
  ne: number[];        // ggml order (ne[0] contiguous = input features)
  kind: TensorKind;
  layer: number;       // -1 outside the layers
}
