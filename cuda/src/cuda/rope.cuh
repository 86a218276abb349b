// rope.cuh — q/k RoPE (NeoX / rotate_half pairing, HF bf16 rounding order) and the KV-cache write.
// Input: the fp32 q|k|v projection; bias (optional) added here, then rounded to bf16. One launch serves
// prefill and decode.
#pragma once
#include "common.cuh"

namespace qwc {
struct RopeKvArgs {
  __nv_bfloat16 *q_out = nullptr;   // [rows, nH*d] roped q
  __nv_bfloat16 *k_out = nullptr;   // optional [rows, nKV*d] roped k (hook capture), may be null
  __nv_bfloat16 *v_out = nullptr;   // optional [rows, nKV*d] v (hook capture), may be null
  __nv_bfloat16 *kcache = nullptr;  // this layer: [slots][nKV][max_ctx][d]
  __nv_bfloat16 *vcache = nullptr;
  const float *qkv = nullptr;          // [rows, qkv_ld] fp32 projection output: q | k | v
  const float *bias = nullptr;         // [q|k|v] bias added here (null when the GEMV epilogue added it);
                                       // the biased value is rounded to bf16 once (HF Linear output dtype)
  int64_t qkv_ld = 0;
  const int32_t *row_pos = nullptr;    // [rows] position of each row
  const int32_t *row_kvpos = nullptr;  // [rows] KV cache row of each row when it differs from its RoPE position (a
                                       // tree verification step, opt/speculative/); null: row_pos
  const int32_t *row_slot = nullptr;   // [rows] cache slot of each row
  const float *inv_freq = nullptr;     // [d/2]
  int32_t rows = 0, n_heads = 0, n_kv = 0, head_dim = 0, max_ctx = 0;
  bool pair_interleaved = false;       // qkv columns of q/k in the GEMV_EPI_QKV_ROPE row order (gemv.cuh)
};
void launch_rope_kv(const RopeKvArgs &a, cudaStream_t stream);

// The per-row pieces of a RoPE + KV-write kernel, shared by rope.cu and the Dual Chunk Attention variant
// (opt/dca/dca_kernels.cu), so that both round the same way and write K/V to the same places.
//
// The two bf16-rounded inputs of rotation pair j of q|k head `head` in the projection row src: qkv + bias at the
// pair's columns (rotate_half pairing, or GEMV_EPI_QKV_ROPE's interleaved order).
__device__ __forceinline__ float2 rope_pair_in(const RopeKvArgs &a, const float *src, int head, int j) {
  const int d = a.head_dim, half = d / 2;
  const int c1 = a.pair_interleaved ? head * d + 2 * j : head * d + j;
  const int c2 = a.pair_interleaved ? head * d + 2 * j + 1 : head * d + j + half;
  return make_float2(bf16r(src[c1] + (a.bias ? a.bias[head * d + j] : 0.f)),
                     bf16r(src[c2] + (a.bias ? a.bias[head * d + j + half] : 0.f)));
}
// The pair x rotated to position p, HF order: cos/sin in fp32 then bf16, each product and the sum rounded to bf16.
__device__ __forceinline__ void rope_rotate(float2 x, float inv_freq, int p, __nv_bfloat16 *o1, __nv_bfloat16 *o2) {
  float sn, cs;
  sincosf((float)p * inv_freq, &sn, &cs);
  const float c = bf16r(cs), s = bf16r(sn);
  *o1 = __float2bfloat16(bf16r(x.x * c) + bf16r(-x.y * s));
  *o2 = __float2bfloat16(bf16r(x.y * c) + bf16r(x.x * s));
}
// Stores the rotated pair j of kv head kh of row r: into the cache row (slot, pos) when the cache is bf16 (kcache
// null: a quantized cache, opt/kvcache, takes k_out instead), and into k_out when it is given.
__device__ __forceinline__ void rope_store_k(const RopeKvArgs &a, int64_t r, int64_t slot, int pos, int kh, int j,
                                             __nv_bfloat16 o1, __nv_bfloat16 o2) {
  const int d = a.head_dim, half = d / 2, kvdim = a.n_kv * d;
  if (a.kcache) {
    __nv_bfloat16 *kc = a.kcache + ((slot * a.n_kv + kh) * a.max_ctx + pos) * d;
    kc[j] = o1;
    kc[j + half] = o2;
  }
  if (a.k_out) {
    a.k_out[r * kvdim + kh * d + j] = o1;
    a.k_out[r * kvdim + kh * d + j + half] = o2;
  }
}
// The V part of row r (bf16 of qkv + bias) into the cache row (slot, pos) when the cache is bf16, and into v_out
// when it is given; the block's threads stride over it.
__device__ __forceinline__ void rope_copy_v(const RopeKvArgs &a, int64_t r, int64_t slot, int pos, const float *src) {
  const int d = a.head_dim, qdim = a.n_heads * d, kvdim = a.n_kv * d;
  for (int i = threadIdx.x; i < kvdim; i += blockDim.x) {
    const int kh = i / d, j = i - kh * d;
    const __nv_bfloat16 v = __float2bfloat16(bf16r(src[qdim + kvdim + i] + (a.bias ? a.bias[qdim + kvdim + i] : 0.f)));
    if (a.vcache) a.vcache[((slot * a.n_kv + kh) * a.max_ctx + pos) * d + j] = v;
    if (a.v_out) a.v_out[r * kvdim + i] = v;
  }
}
}  // namespace qwc
