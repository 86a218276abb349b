// Weight-level quantization error of the `weights` option, per layer: the 7 projections of each layer as the
// reference arm holds them against the candidate arm's (each requantized from the same source tensors by the
// bit-exact TS port, engine/formats/requant.ts). SQNR and cosine pool the 7 matrices of a layer (sums of squares), so a
// layer is one number next to the time it saved (engine/measure/quant-error.ts puts both in the quant-error profile).
import { openModelSource } from "../formats/modelfile.ts";
import { dequantize } from "../formats/quant.ts";
import { layerFormats, projectionOf, requantize, type WeightFormat, type WeightsOption } from "../formats/requant.ts";

export interface LayerWeightError {
  layer: number;
  reference: WeightFormat;
  candidate: WeightFormat;
  sqnr_db: number;   // capped at 300 dB (identical weights)
  cosine: number;
  params: number;
}

/** Largest number of projection weights the TS pass takes on (it dequantizes and requantizes in TypeScript). */
export const WEIGHT_ERROR_MAX_PARAMS = 2e9;

/**
 * Per-layer error between two weights options on the model at `path` (a GGUF file or HF directory). Layers whose
 * formats agree are skipped. Throws when the source cannot be read or is too large for the TS pass.
 */
export function weightError(path: string, ref: WeightsOption, cand: WeightsOption, root?: string): LayerWeightError[] {
  const src = openModelSource(path, root === undefined ? {} : { root });
  const nL = src.config.num_hidden_layers;
  const rf = layerFormats(ref, nL), cf = layerFormats(cand, nL);
  const acc = Array.from({ length: nL }, () => ({ ss: 0, se: 0, dot: 0, cc: 0, n: 0 }));
  let params = 0;
  for (const t of src.tensors) {
    const p = projectionOf(t.name);
    if (p && rf[p.layer] !== cf[p.layer]) params += t.ne[0] * t.ne[1];
  }
  if (params > WEIGHT_ERROR_MAX_PARAMS) throw new Error(`weight error: ${(params / 1e9).toFixed(1)}G projection weights differ between the arms; the TypeScript pass takes at most ${WEIGHT_ERROR_MAX_PARAMS / 1e9}G`);
  for (const t of src.tensors) {
    const p = projectionOf(t.name);
    if (!p || rf[p.layer] === cf[p.layer]) continue;
    const [cols, rows] = t.ne;
    const w = dequantize(t.ggmlType, t.data);
    const a = requantize(w, rows, cols, rf[p.layer], t.name), b = requantize(w, rows, cols, cf[p.layer], t.name);
    const s = acc[p.layer];
    for (let i = 0; i < a.length; i++) {
      const e = a[i] - b[i];
      s.ss += a[i] * a[i]; s.se += e * e; s.dot += a[i] * b[i]; s.cc += b[i] * b[i];
    }
    s.n += a.length;
  }
  const out: LayerWeightError[] = [];
  acc.forEach((s, layer) => {
    if (!s.n) return;
    out.push({
      layer, reference: rf[layer], candidate: cf[layer], params: s.n,
      sqnr_db: s.se === 0 ? 300 : Math.min(300, 10 * Math.log10(s.ss / s.se)),
      cosine: s.ss * s.cc === 0 ? (s.se === 0 ? 1 : 0) : s.dot / Math.sqrt(s.ss * s.cc),
    });
  });
  return out;
}
