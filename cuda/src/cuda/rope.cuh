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
  const int32_t *row_slot = nullptr;   // [rows] cache slot of each row
  const float *inv_freq = nullptr;     // [d/2]
  int32_t rows = 0, n_heads = 0, n_kv = 0, head_dim = 0, max_ctx = 0;
  bool pair_interleaved = false;       // qkv columns of q/k in the GEMV_EPI_QKV_ROPE row order (gemv.cuh)
};
void launch_rope_kv(const RopeKvArgs &a, cudaStream_t stream);
}  // namespace qwc
