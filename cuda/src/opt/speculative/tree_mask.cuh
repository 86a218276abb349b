// tree_mask.cuh — the tree attention mask of a verification step (speculative = eagle) as the CUDA prefill
// attention kernels read it (src/cuda/attention_prefill.cu). The host side (tree_mask_words / tree_mask_fill) builds it
// from Step::tree_keys; the kernels test one bit per (row, key) on top of their causal mask.
//
// Layout: row r of the step has `words` uint32 words; bit a (word a / 32, bit a % 32) is set when the row attends
// to KV position tree_base + a (its ancestors and itself). Keys below tree_base (the committed prefix) are always
// visible; the causal test (key <= the row's KV position) stays, so bits above the row are never needed.
#pragma once

#include <cstdint>
#include <vector>

namespace qwc {

struct TreeMask {
  const uint32_t *bits = nullptr;  // device [rows][words]; null: an ordinary causal step
  int32_t base = 0;                // KV position of tree node 0
  int32_t words = 0;
};

#ifdef __CUDACC__
// Whether query row `row` of the step may attend to KV position kp (beyond the causal test).
__device__ __forceinline__ bool tree_visible(const TreeMask &t, int row, int kp) {
  if (!t.bits || kp < t.base) return true;
  const int a = kp - t.base;
  return (t.bits[(int64_t)row * t.words + (a >> 5)] >> (a & 31)) & 1u;
}
#endif

// Words per row for a tree of `nodes` nodes (the nodes appended before the step plus its rows).
inline int32_t tree_mask_words(int32_t nodes) { return (nodes + 31) / 32; }

// Host bits of rows 0..keys.size()-1: keys[r] = node indices (relative to tree_base) row r attends to.
inline void tree_mask_fill(std::vector<uint32_t> &bits, const std::vector<std::vector<int32_t>> &keys, int32_t words) {
  bits.assign(keys.size() * size_t(words), 0u);
  for (size_t r = 0; r < keys.size(); ++r)
    for (int32_t a : keys[r]) bits[r * size_t(words) + size_t(a >> 5)] |= 1u << (a & 31);
}

}  // namespace qwc
