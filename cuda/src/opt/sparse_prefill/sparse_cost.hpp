// sparse_cost.hpp — what a sparse prefill step visits (keys per query row, distinct K/V rows) and the op cost of its
// attention record, from the heads' patterns: host code of both libraries (the CPU driver and the CUDA session),
// so that both backends' op records count the same work. The registry entry's cost note (sparse_prefill.cpp)
// states the model in words.
#pragma once

#include <cstdint>
#include <vector>

#include "cost.hpp"
#include "sparse_prefill.hpp"

namespace qw {

// One query head's pattern over one sequence's prefill step (rows at positions p0 .. N-1).
// vertical-slash: the columns (key positions) and diagonals (offsets i - j) it visits, ascending.
// block-sparse: for query block qb0 + b (kSparseBlock positions each), the key blocks it visits, ascending.
struct SparsePattern {
  std::vector<int32_t> cols, diags;
  int32_t qb0 = 0;
  std::vector<std::vector<int32_t>> blocks;
};

// The work of sparse attention over one step, summed over sequences and heads.
struct SparseWork {
  double visited = 0;     // keys visited, summed over query rows and query heads (each: a score and a P.V lane)
  double est_dots = 0;    // d-long dot products of the pattern estimate (vertical-slash: the last queries over every
                          // key; block-sparse: pooled queries over pooled keys)
  double est_adds = 0;    // block-sparse: element adds of mean-pooling Q and K
  double k_rows = 0;      // K rows read, summed over kv heads: every key (the estimate scores or pools all of them)
  double v_rows = 0;      // V rows read, summed over kv heads: the distinct keys some query of the group visits
};

// Adds one sequence's work: patterns of every query head (nH = pat.size(), grouped by nH / nKV per kv head) of
// rows p0 .. N-1, estimated from lq queries (vertical-slash).
void add_sparse_work(SparseWork &w, SparsePrefill mode, const std::vector<SparsePattern> &pat, int32_t nKV, int32_t p0,
                     int32_t N, int32_t lq, int32_t head_dim);

// Keys query i visits under head pattern p (vertical-slash or block-sparse), and their sum over rows p0 .. N-1.
int64_t sparse_row_keys(SparsePrefill mode, const SparsePattern &p, int32_t i);
double sparse_visited(SparsePrefill mode, const SparsePattern &p, int32_t p0, int32_t N);

// The attention record of a sparse step: flops visited*(4d+5) + the estimate; bytes the K and V rows read, the new
// K/V written, q in and z out (the dense model's terms, cost_attention, with the rows actually read).
// Both CUDA attend kernels of each pattern (mma, and SIMT for DCA or with QW_SPARSE_MMA=0) visit exactly each query
// head's own selection (the mma kernel runs one CTA per (query block, query head): no union over a KV group), so one
// model serves both; like the dense record (cost_attention), the flops count the keys <= i visited, not the masked
// entries of the 64 x 64 tiles that the mma kernel also multiplies (block-sparse: half the diagonal tile;
// vertical-slash: whatever its contiguous tiles hold beside the selected diagonals and columns, vs_tiles.hpp).
OpCost cost_sparse_attention(const SparseWork &w, int64_t rows, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                             double kv_bytes, double act_bytes);

}  // namespace qw
