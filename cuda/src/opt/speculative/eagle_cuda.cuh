// eagle_cuda.cuh — the CUDA kernels of speculative = eagle that are not an existing block with a flag: the EAGLE
// head's input rows (SafeAILab cnets Model.forward: x = fc([embedding ; feature]) + bias), its norm-less layer
// input and lm_head input (bf16 rows of the fp32 residual), and the KV compaction of an accepted tree path.
// The tree mask the prefill attention reads is tree_mask.cuh. CPU reference: opt/speculative/eagle_cpu.hpp.
#pragma once

#include "common.cuh"

namespace qwc {

// cat[r] = bf16([x[r] ; features[r]]): the embedding rows first, then the feature rows (their torch.cat order);
// x, features: fp32 [rows, H]; cat: bf16 [rows, 2H] (the fc GEMM's input).
void launch_eagle_cat(__nv_bfloat16 *cat, const float *x, const float *features, int32_t rows, int32_t H,
                      cudaStream_t stream);

// x[r] += bias (fp32 [rows, H], bias [H]): the fc bias after the GEMM.
void launch_add_bias_rows(float *x, const float *bias, int32_t rows, int32_t H, cudaStream_t stream);

// out = bf16(x), n elements (the head's layer-0 input has no RMSNorm: the GEMMs read the rounded residual).
void launch_f32_to_bf16(__nv_bfloat16 *out, const float *x, int64_t n, cudaStream_t stream);

// Moves the K/V rows of cache slot `slot` at positions base + keep[i] to base + i, for every layer and kv head of a
// bf16 cache [layers][slots][nKV][max_ctx][d] (K and V separate); keep: device [n], ascending, keep[i] >= i. One
// block per (layer, kv head, K|V) walks i in order, so a row is read before anything overwrites it.
struct KvCompactArgs {
  __nv_bfloat16 *kcache = nullptr, *vcache = nullptr;
  int64_t layer_elems = 0;  // elements of one layer's cache
  const int32_t *keep = nullptr;
  int32_t n = 0, base = 0, slot = 0, layers = 0, n_kv = 0, head_dim = 0, max_ctx = 0;
};
void launch_kv_compact(const KvCompactArgs &a, cudaStream_t stream);

}  // namespace qwc
