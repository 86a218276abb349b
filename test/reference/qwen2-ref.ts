// An independent float64 reference of the Qwen2 forward pass, written from ../shared/research/kernel-brief.md §1.2
// (HF modeling_qwen2.py). Plain TypeScript, Float64Array everywhere, no code shared with engine/ (only the
// weights come in, by HF tensor name). Slow on purpose: clarity over speed. Used only by tests.
//
//   x = embed[ids]; per layer: h = rms(x)*w; q,k,v = h W^T + b; RoPE(q,k) (NeoX pairing i <-> i+d/2);
//   o = softmax(q k^T / sqrt(d) + causal) v with query head h reading kv head floor(h / (nH/nKV));
//   x += o Wo^T; h = rms(x)*w2; x += Wdown(silu(h Wg^T) * (h Wu^T)); logits = rms(x)*wf @ Wlm^T (tied: embed).

export interface RefConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim?: number;
  rope_theta: number;
  rms_norm_eps: number;
  tie_word_embeddings: boolean;
}

/** A weight in HF layout: Linear weights are [out, in] row-major. */
export interface RefTensor {
  shape: number[];
  data: Float64Array;
}

export type RefWeights = Map<string, RefTensor>;

/** What one forward call returns for every new position. */
export interface RefOutput {
  logits: Float64Array[];          // one row (vocab) per new position
  embedding: Float64Array[];       // per position: residual stream after the embedding
  residPost: Float64Array[][];     // [layer][position]: residual stream after each layer
  finalNorm: Float64Array[];       // per position: after the final norm
}

function rmsnorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const r = 1 / Math.sqrt(ss / x.length + eps);
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = x[i] * r * w[i];
  return y;
}

/** y = W x (+ b) with W [out, in]. */
function linear(W: RefTensor, x: Float64Array, b?: RefTensor): Float64Array {
  const [out, inn] = W.shape;
  if (inn !== x.length) throw new Error(`reference linear: in ${inn} != ${x.length}`);
  const y = new Float64Array(out);
  const w = W.data;
  for (let o = 0; o < out; o++) {
    let s = 0;
    const base = o * inn;
    for (let i = 0; i < inn; i++) s += w[base + i] * x[i];
    y[o] = b ? s + b.data[o] : s;
  }
  return y;
}

/** RoPE with rotate_half pairing, in place on one head vector of length d at position pos. */
function rope(v: Float64Array, off: number, d: number, pos: number, theta: number): void {
  const half = d / 2;
  for (let i = 0; i < half; i++) {
    const invFreq = 1 / Math.pow(theta, (2 * i) / d);
    const a = pos * invFreq;
    const c = Math.cos(a), s = Math.sin(a);
    const x1 = v[off + i], x2 = v[off + i + half];
    v[off + i] = x1 * c - x2 * s;
    v[off + i + half] = x2 * c + x1 * s;
  }
}

/** One sequence's state: the KV cache (per layer, per position) in float64. */
export class RefSequence {
  readonly k: Float64Array[][]; // [layer][pos] -> nKV*d
  readonly v: Float64Array[][];
  constructor(nLayers: number) {
    this.k = Array.from({ length: nLayers }, () => []);
    this.v = Array.from({ length: nLayers }, () => []);
  }
  get length(): number {
    return this.k[0]?.length ?? 0;
  }
}

export class Qwen2Reference {
  readonly cfg: Required<RefConfig>;
  private w: RefWeights;
  constructor(cfg: RefConfig, weights: RefWeights) {
    this.cfg = { ...cfg, head_dim: cfg.head_dim ?? cfg.hidden_size / cfg.num_attention_heads };
    this.w = weights;
  }
  private t(name: string): RefTensor {
    const t = this.w.get(name);
    if (!t) throw new Error(`reference: missing tensor ${name}`);
    return t;
  }

  newSequence(): RefSequence {
    return new RefSequence(this.cfg.num_hidden_layers);
  }

  /** Appends `tokens` to `seq` (positions continue from seq.length) and returns per-position outputs. */
  forward(seq: RefSequence, tokens: number[]): RefOutput {
    const c = this.cfg;
    const H = c.hidden_size, d = c.head_dim, nH = c.num_attention_heads, nKV = c.num_key_value_heads;
    const group = nH / nKV;
    const emb = this.t("model.embed_tokens.weight");
    const out: RefOutput = { logits: [], embedding: [], residPost: Array.from({ length: c.num_hidden_layers }, () => []), finalNorm: [] };
    const p0 = seq.length;
    // Token-major is the simplest correct order for a causal model with a cache: process each new token
    // through every layer; position p attends to cache positions [0, p].
    for (let t = 0; t < tokens.length; t++) {
      const id = tokens[t];
      if (!(id >= 0 && id < c.vocab_size)) throw new Error(`reference: token ${id} out of range`);
      const pos = p0 + t;
      let x: Float64Array = emb.data.slice(id * H, (id + 1) * H);
      out.embedding.push(x.slice());
      for (let L = 0; L < c.num_hidden_layers; L++) {
        const pre = `model.layers.${L}.`;
        const h = rmsnorm(x, this.t(pre + "input_layernorm.weight").data, c.rms_norm_eps);
        const q = linear(this.t(pre + "self_attn.q_proj.weight"), h, this.t(pre + "self_attn.q_proj.bias"));
        const k = linear(this.t(pre + "self_attn.k_proj.weight"), h, this.t(pre + "self_attn.k_proj.bias"));
        const v = linear(this.t(pre + "self_attn.v_proj.weight"), h, this.t(pre + "self_attn.v_proj.bias"));
        for (let hh = 0; hh < nH; hh++) rope(q, hh * d, d, pos, c.rope_theta);
        for (let hh = 0; hh < nKV; hh++) rope(k, hh * d, d, pos, c.rope_theta);
        seq.k[L].push(k);
        seq.v[L].push(v);
        const n = seq.k[L].length; // = pos + 1
        const o = new Float64Array(nH * d);
        const scale = 1 / Math.sqrt(d);
        const s = new Float64Array(n);
        for (let hh = 0; hh < nH; hh++) {
          const kvh = Math.floor(hh / group);
          let m = -Infinity;
          for (let j = 0; j < n; j++) {
            const kj = seq.k[L][j];
            let dot = 0;
            for (let i = 0; i < d; i++) dot += q[hh * d + i] * kj[kvh * d + i];
            s[j] = dot * scale;
            if (s[j] > m) m = s[j];
          }
          let z = 0;
          for (let j = 0; j < n; j++) {
            s[j] = Math.exp(s[j] - m);
            z += s[j];
          }
          for (let j = 0; j < n; j++) {
            const p = s[j] / z;
            const vj = seq.v[L][j];
            for (let i = 0; i < d; i++) o[hh * d + i] += p * vj[kvh * d + i];
          }
        }
        const attn = linear(this.t(pre + "self_attn.o_proj.weight"), o);
        const mid = new Float64Array(H);
        for (let i = 0; i < H; i++) mid[i] = x[i] + attn[i];
        const h2 = rmsnorm(mid, this.t(pre + "post_attention_layernorm.weight").data, c.rms_norm_eps);
        const g = linear(this.t(pre + "mlp.gate_proj.weight"), h2);
        const u = linear(this.t(pre + "mlp.up_proj.weight"), h2);
        for (let i = 0; i < g.length; i++) g[i] = (g[i] / (1 + Math.exp(-g[i]))) * u[i];
        const down = linear(this.t(pre + "mlp.down_proj.weight"), g);
        x = new Float64Array(H);
        for (let i = 0; i < H; i++) x[i] = mid[i] + down[i];
        out.residPost[L].push(x.slice());
      }
      const f = rmsnorm(x, this.t("model.norm.weight").data, c.rms_norm_eps);
      out.finalNorm.push(f);
      const head = c.tie_word_embeddings ? emb : this.t("lm_head.weight");
      out.logits.push(linear(head, f));
    }
    return out;
  }
}

/** Index of the largest value (lowest index wins ties, as the engine's greedy sampler). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}
