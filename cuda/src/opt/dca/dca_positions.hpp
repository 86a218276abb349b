// dca_positions.hpp — Dual Chunk Attention (toggle "dca", QWEN-006): the position remapping shared by the CPU and CUDA
// kernels (host and device code), so that both backends remap positions with literally the same formulas.
//
// With chunk size C and local window W, keys are grouped in chunks of s = C - W positions. A key at position j
// is roped (and stored in the KV cache) at j mod s. A query at position i (chunk ci = i / s) is roped three ways:
//   intra-chunk   (keys j with j / s == ci):      i mod s
//   successive    (keys j with j / s == ci - 1):  min(i mod s + s, C)
//   inter-chunk   (keys j with j / s <= ci - 2):  min(2s - 1, C)
// as in the fixture README (shared/fixtures/README.md) and vLLM's DualChunkRotaryEmbedding (qc_t =
// (arange(s) + s).clamp(max = C); the inter query is qc_t[s - 1] = min(2s - 1, C)). Each group of keys gets its
// own softmax partial (max, sum, weighted values); the three partials are merged exactly by log-sum-exp, which
// equals one softmax over all keys with the per-(query, key) scores above.
// Every remapped position is < s or <= C, so RoPE never sees a position past C: for C = the trained length
// the model only meets relative distances it was trained on. For a sequence of at most C tokens the relative
// distances are the true ones (intra: i - j; successive: i - j while i mod s <= W), so DCA equals plain
// attention there up to rounding (RoPE is applied at different absolute angles).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define QW_DCA_HD __host__ __device__ __forceinline__
#else
#define QW_DCA_HD inline
#endif

namespace qw {
namespace dca {

QW_DCA_HD int32_t span(int32_t chunk, int32_t local) { return chunk - local; }  // s
QW_DCA_HD int32_t key_pos(int32_t p, int32_t s) { return p % s; }
QW_DCA_HD int32_t q_intra(int32_t p, int32_t s) { return p % s; }
QW_DCA_HD int32_t q_succ(int32_t p, int32_t s, int32_t chunk) { return p % s + s < chunk ? p % s + s : chunk; }
QW_DCA_HD int32_t q_inter(int32_t s, int32_t chunk) { return 2 * s - 1 < chunk ? 2 * s - 1 : chunk; }
// Which query variant a (query i, key j <= i) pair uses: 0 intra, 1 successive, 2 inter.
QW_DCA_HD int32_t part(int32_t i, int32_t j, int32_t s) {
  const int32_t dc = i / s - j / s;
  return dc == 0 ? 0 : (dc == 1 ? 1 : 2);
}

}  // namespace dca
}  // namespace qw
