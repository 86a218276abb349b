// engine/formats/convert.ts — writes a model (HF directory, GGUF file, or "default") as a GGUF of another weight type
// with its tokenizer embedded, so that e.g. the embedded bf16 checkpoint and a Q8_0 GGUF of the same weights
// can be compared on the quantization-error page or by `perplexity --reference-model`.
import { resolve } from "node:path";
import { gv, inferKV, type GgufKV } from "./gguf.ts";
import { convertToGguf, openModelSource, type ModelSource } from "./modelfile.ts";
import type { QuantScheme } from "./quant.ts";
import { QwenTokenizer } from "../text/tokenizer.ts";
import { DEFAULT_MODEL_DIR } from "../index.ts";

export const CONVERT_SCHEMES: readonly QuantScheme[] = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q4_k_m", "q6_k"];

/** tokenizer.ggml.* metadata for a source with an HF tokenizer ([] for a GGUF source: convertToGguf keeps its own). */
export function tokenizerGgufMetadata(src: ModelSource): [string, GgufKV][] {
  const meta: [string, GgufKV][] = [];
  if (src.tokenizer.kind === "hf") {
    const tok = QwenTokenizer.fromTokenizerJson(src.tokenizer.tokenizerJson, src.tokenizer.tokenizerConfig);
    const c = src.config, eos = Array.isArray(c.eos_token_id) ? c.eos_token_id[0] : c.eos_token_id;
    for (const [k, v] of Object.entries(tok.toGgufMetadata({ vocabSize: c.vocab_size, bosId: c.bos_token_id, eosId: eos }))) {
      meta.push([k, k.endsWith("_token_id") ? gv.u32(v as number) : inferKV(v, k)]);
    }
  } else if (src.tokenizer.kind === "none") {
    throw new Error(`convert: ${src.path} has no tokenizer (${src.tokenizer.reason}); the workbench could not use the GGUF`);
  }
  return meta;
}

export async function convertModel(source: string, out: string, scheme: QuantScheme,
  onProgress?: (done: number, total: number, tensor: string) => void): Promise<{ bytes: number; path: string; types: Record<string, string> }> {
  if (!CONVERT_SCHEMES.includes(scheme)) throw new Error(`convert: unknown type '${scheme}' (${CONVERT_SCHEMES.join(", ")})`);
  const src = openModelSource(source === "default" ? DEFAULT_MODEL_DIR : resolve(source));
  const path = resolve(out);
  if (path === resolve(src.path)) throw new Error("convert: the output would overwrite the source");
  const meta = tokenizerGgufMetadata(src);
  const r = await convertToGguf(src, path, { scheme, metadata: meta, onProgress });
  return { ...r, path };
}
