// kv_broadcast.cuh — gqa=broadcast, the naive GQA ablation arm: the repeated KV heads materialized into a scratch
// cache with nH heads, which the decode and prefill attention kernels (src/cuda/attention.cuh) then read with
// G = 1. docs/ARCHITECTURE.md §Adding an optimization.
#pragma once
#include "common.cuh"

namespace qwc {

// Copies cache positions [0, len[b]) of (src_slot[b], every kv head) into slot b of dst (a cache with nH heads),
// repeating kv head h for query heads h*G .. h*G+G-1. max_len bounds len (it sizes the grid).
void launch_kv_broadcast(__nv_bfloat16 *dst_k, __nv_bfloat16 *dst_v, const __nv_bfloat16 *src_k,
                         const __nv_bfloat16 *src_v, const int32_t *src_slot, const int32_t *len, int32_t batch,
                         int32_t n_heads, int32_t n_kv, int32_t head_dim, int32_t max_ctx, int32_t max_len,
                         cudaStream_t stream);

}  // namespace qwc
