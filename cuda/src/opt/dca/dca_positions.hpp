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

// The keys of part `pt` (0 intra, 1 successive, 2 inter) of a query at position i: [lo, hi), empty where hi <= lo;
// the three partition [0, i] (test_dca.cpp). Non-decreasing in i, both ends: a query tile's widest range runs from
// its first row's lo to its last row's hi (the wgmma kernel's per-part passes, fa3_prefill.cu).
QW_DCA_HD void part_keys(int32_t pt, int32_t i, int32_t s, int32_t *lo, int32_t *hi) {
  const int32_t c = i / s;
  *lo = pt == 0 ? c * s : (pt == 1 ? (c - 1 > 0 ? (c - 1) * s : 0) : 0);
  *hi = pt == 0 ? i + 1 : (pt == 1 ? c * s : (c - 1 > 0 ? (c - 1) * s : 0));
}

// The key ranges of a tensor-core query tile (opt/dca/dca_tiles.cuh, src/cuda/attention_prefill.cu): rows at positions
// first..last (last - first < 64), tiles of `tile` keys, s >= tile. Visiting order v = 0 inter (part 2), 1 successive
// (part 1), 2 intra (part 0); a (row, key) pair counts only where part(row, key) is the range's part.
struct TileRanges {
  int32_t lo[3], tiles[3];
};
QW_DCA_HD int32_t imax(int32_t a, int32_t b) { return a > b ? a : b; }
QW_DCA_HD int32_t imin(int32_t a, int32_t b) { return a < b ? a : b; }
QW_DCA_HD TileRanges tile_ranges(int32_t s, int32_t first, int32_t last, int32_t tile) {
  const int32_t c_lo = first / s, c_hi = last / s;
  const int32_t lo[3] = {0, imax(0, (c_lo - 1) * s), c_lo * s};
  const int32_t hi[3] = {imax(0, (c_hi - 1) * s), imin(c_hi * s, last + 1), last + 1};
  TileRanges r;
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int v = 0; v < 3; ++v) {
    r.lo[v] = lo[v];
    r.tiles[v] = hi[v] > lo[v] ? (hi[v] - lo[v] + tile - 1) / tile : 0;
  }
  return r;
}
// The range (v) of loop step t.
QW_DCA_HD int32_t tile_range(const TileRanges &r, int32_t t) {
  return t < r.tiles[0] ? 0 : (t < r.tiles[0] + r.tiles[1] ? 1 : 2);
}
// Its first key (selects, not r.lo[v]: a run-time index would put the ranges in local memory on the GPU).
QW_DCA_HD int32_t tile_start(const TileRanges &r, int32_t t, int32_t tile) {
  const int32_t v = tile_range(r, t);
  const int32_t before = v == 0 ? 0 : (v == 1 ? r.tiles[0] : r.tiles[0] + r.tiles[1]);
  const int32_t lo = v == 0 ? r.lo[0] : (v == 1 ? r.lo[1] : r.lo[2]);
  return lo + (t - before) * tile;
}
// part(i, j, s) for key j of a tile starting at k0 (s >= the tile): the key's chunk is k0's or the next, so one
// division per tile instead of one per key. kc0 = k0 / s, kbound = (kc0 + 1) * s.
QW_DCA_HD int32_t tile_part(int32_t row_chunk, int32_t j, int32_t kc0, int32_t kbound) {
  return imin(row_chunk - (j < kbound ? kc0 : kc0 + 1), 2);
}

// Decode key windows (dca_kernels.cu, n_split > 1): window z of a row at position i holds keys
// [z w, min(i + 1, (z + 1) w)) with w = max(kDecodeMinWindow, ceil((i + 1) / n_split)); windows past i are empty
// (a short row leaves most of its blocks idle rather than giving each a few keys: a block reads 128 keys a step).
// From the device-side position, so a captured decode graph replays at any length.
constexpr int32_t kDecodeMinWindow = 128;
QW_DCA_HD void decode_window(int32_t i, int32_t n_split, int32_t z, int32_t *lo, int32_t *hi) {
  const int32_t w = imax(kDecodeMinWindow, (i + n_split) / n_split);
  *lo = z * w;
  *hi = imin(i + 1, *lo + w);
}

}  // namespace dca
}  // namespace qw
