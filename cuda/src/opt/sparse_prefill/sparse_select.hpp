// sparse_select.hpp — step 2 of sparse prefill (the selection of a head's lines or blocks from its estimated
// scores), host code shared by the CPU kernels (sparse_prefill_cpu.cpp, block_sparse_cpu.cpp) and the CUDA driver
// (sparse_kernels.cu), so that both backends pick by literally the same rule.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#if defined(__CUDACC__)
#define QW_SEL_HD __host__ __device__ __forceinline__
#else
#define QW_SEL_HD inline
#endif

namespace qw {
namespace sparse {

// top_forced's split of candidates 0 .. n-1: forced [0, f) and [h, n), and k = the number of the best of [f, h) it
// picks (host and device: the CUDA selection kernel splits with it too).
QW_SEL_HD void forced_split(int32_t n, int32_t lo, int32_t hi, int32_t extra, int32_t &f, int32_t &h, int32_t &k) {
  f = lo < n ? lo : n;
  h = hi < n ? hi : n;
  h = h > f ? h : f;
  k = extra < h - f ? extra : h - f;
}

// Indices [0, min(lo, n)) and [max(hi, lo), n) (forced), and the `extra` best others by score (ties: lower
// index), ascending.
template <class T>
std::vector<int32_t> top_forced(const T *score, int32_t n, int32_t lo, int32_t hi, int32_t extra) {
  int32_t f, h, k;
  forced_split(n, lo, hi, extra, f, h, k);
  const int32_t rest = h - f;
  std::vector<int32_t> out(static_cast<size_t>(f));
  std::iota(out.begin(), out.end(), 0);
  for (int32_t j = h; j < n; ++j) out.push_back(j);
  std::vector<int32_t> idx(static_cast<size_t>(rest));
  std::iota(idx.begin(), idx.end(), f);
  if (k < rest && k > 0)
    std::nth_element(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
      return score[a] > score[b] || (score[a] == score[b] && a < b);
    });
  out.insert(out.end(), idx.begin(), idx.begin() + k);
  std::sort(out.begin(), out.end());
  return out;
}

// Vertical-slash: indices [0, min(forced, n)) and the `extra` best others of [forced, n), ascending.
template <class T>
std::vector<int32_t> top_lines(const T *score, int32_t n, int32_t forced, int32_t extra) {
  return top_forced(score, n, forced, n, extra);
}

// Block-sparse, query block qb over key blocks 0..qb: the first `sink` blocks, the `local` nearest (kb > qb -
// local) and the `extra` best others, ascending.
template <class T>
std::vector<int32_t> top_blocks(const T *score, int32_t qb, int32_t sink, int32_t local, int32_t extra) {
  return top_forced(score, qb + 1, sink, qb + 1 - local, extra);
}

// The split top_blocks makes of query block qb's candidates 0..qb: forced [0, f) and [hi, qb + 1), and the k best of
// [f, hi). Shared with the CUDA selection kernel (block_sparse_kernels.cu) so that both split alike.
QW_SEL_HD void top_blocks_split(int32_t qb, int32_t sink, int32_t local, int32_t extra, int32_t &f, int32_t &hi,
                                int32_t &k) {
  forced_split(qb + 1, sink, qb + 1 - local, extra, f, hi, k);
}

// How many blocks top_blocks selects: it depends on qb and the budget alone, never on the scores, so the CUDA
// selection lays out its lists before the scores exist.
QW_SEL_HD int32_t top_blocks_count(int32_t qb, int32_t sink, int32_t local, int32_t extra) {
  int32_t f, hi, k;
  top_blocks_split(qb, sink, local, extra, f, hi, k);
  return f + (qb + 1 - hi) + k;
}

// Keys a query at position i (in query block qb, whose list holds `count` blocks of `block` keys) visits under
// block-sparse: the own block's keys <= i (local >= 1 always selects it) and every other listed block whole (all lie
// before it). The CUDA backend's keys-visited counts come from this and the counts alone.
inline int64_t block_keys_visited(int32_t i, int32_t qb, int32_t count, int32_t block) {
  return int64_t(block) * (count - 1) + (i - int64_t(qb) * block + 1);
}

// The CUDA selection's sort key of candidate i with a finite score: ascending keys = descending scores, ties to the
// lower index (the comparator of top_forced; -0 counts as +0 there, so it does here). A strict total order, so the k
// smallest keys are exactly the k that top_forced picks.
QW_SEL_HD uint64_t select_key(float score, int32_t i) {
  if (score == 0.f) score = 0.f;
#if defined(__CUDA_ARCH__)
  uint32_t u = __float_as_uint(score);
#else
  uint32_t u;
  std::memcpy(&u, &score, sizeof u);
#endif
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // unsigned order = float order
  return (uint64_t(~u) << 32) | uint32_t(i);
}

// Vertical-slash's selection on the device (vs_select_kernel) by a radix select over the high word of select_key
// (hi(score), ascending = best first): one pass per byte, from the top, counts the candidates that match the bytes
// chosen so far into 256 bins; radix_pick finds the bin holding the need-th smallest (1-based) and how many of that
// bin are still needed. After 4 passes T = the k-th smallest high word: every candidate below T is taken, and of
// those equal to T the first `need` by index (select_key breaks ties by the lower index).
QW_SEL_HD uint32_t select_hi(float score) { return uint32_t(select_key(score, 0) >> 32); }
QW_SEL_HD void radix_pick(const uint32_t *hist, uint32_t need, uint32_t &bin, uint32_t &need_left) {
  uint32_t acc = 0;
  for (uint32_t b = 0; b < 256u; ++b) {
    if (acc + hist[b] >= need) {
      bin = b;
      need_left = need - acc;
      return;
    }
    acc += hist[b];
  }
  bin = 255u;  // unreachable while need <= the counted candidates
  need_left = 0;
}

// The device selection's algorithm run sequentially on the host (the same passes, picks and tie rule), for the CPU
// test that it selects what top_lines selects.
template <class T>
std::vector<int32_t> top_lines_radix(const T *score, int32_t n, int32_t forced, int32_t extra) {
  int32_t f, hi, k;
  forced_split(n, forced, n, extra, f, hi, k);
  const bool all = k == n - f;
  uint32_t prefix = 0, mask = 0, need = uint32_t(k);
  if (k > 0 && !all)
    for (int shift = 24; shift >= 0; shift -= 8) {
      uint32_t hist[256] = {};
      for (int32_t j = f; j < n; ++j) {
        const uint32_t u = select_hi(float(score[j]));
        if ((u & mask) == prefix) ++hist[(u >> shift) & 255u];
      }
      uint32_t bin, left;
      radix_pick(hist, need, bin, left);
      prefix |= bin << shift;
      mask |= 255u << shift;
      need = left;
    }
  std::vector<int32_t> out;
  uint32_t ties = 0;
  for (int32_t j = 0; j < n; ++j) {
    if (j < f || all) { out.push_back(j); continue; }
    if (k == 0) continue;
    const uint32_t u = select_hi(float(score[j]));
    if (u < prefix) out.push_back(j);
    else if (u == prefix && ties++ < need) out.push_back(j);
  }
  return out;
}

// Blocks covering the first `keys` positions: ceil(keys / block).
inline int32_t blocks_of(int32_t keys, int32_t block) { return (keys + block - 1) / block; }

}  // namespace sparse
}  // namespace qw
