// sparse_budget.hpp — the budgets of toggle "sparsePrefill" = vertical-slash (session options) and what a backend
// measures of it. No toggle machinery here: the CUDA kernels and the kernel lab include it alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace qw {

// The last this-many queries of a prefill step estimate each head's pattern (MInference's last_q).
constexpr int32_t kSparseLastQ = 64;
// Block-sparse: queries and keys in blocks of this many positions, aligned to position 0 (MInference's
// block_size_M = block_size_N = 64).
constexpr int32_t kSparseBlock = 64;

// Budgets of sparse prefill, fixed per session (qw_session_create options sparse_*).
// vertical-slash: per head, a query at i visits key j <= i iff j < sink, or j is one of the `vertical` best-scored
// other columns, or i - j < local, or i - j is one of the `slash` best-scored other diagonals. Defaults:
// MInference's (30 sink columns and the last 100 diagonals always kept, 1000 vertical lines, 6096 slash lines);
// here the budgets count lines beyond those.
// block-sparse: per head and query block qb (kSparseBlock positions), the key blocks kb <= qb visited are the first
// ceil(sink / 64) blocks, the ceil(local / 64) nearest ones (qb - kb < that; local >= 1 keeps the own block), and
// the `blocks` best-scored others (MInference's topk, default 100); a query at i visits the keys <= i of them.
struct SparseBudget {
  int32_t vertical = 1000, slash = 6096, local = 100, sink = 30, blocks = 100;
  bool stats = false;  // also run dense attention and measure recall / output error (a measurement mode: slower)
};

// What sparse prefill did at each (layer, query head) over the latest prompt's prefill (every prefill step since
// a step at position 0): keys visited against the dense count, and with SparseBudget::stats, the recall of dense
// attention mass (mean over query rows of the dense probability mass on the visited keys) and the output error.
struct SparseHeadStats {
  double rows = 0, keys = 0, dense_keys = 0;  // query rows, keys visited, keys dense attention visits
  double stat_rows = 0, recall = 0;           // rows measured, sum of their recall
  double err2 = 0, ref2 = 0, out2 = 0, dot = 0;  // sums of |z_s - z_d|^2, |z_d|^2, |z_s|^2, z_s . z_d
};
struct SparseStats {
  int32_t layers = 0, heads = 0;
  int64_t steps = 0;                  // prefill steps that ran sparse at some layer
  std::vector<SparseHeadStats> head;  // [layer * heads + head]
  void reset(int32_t L, int32_t H) {
    layers = L, heads = H, steps = 0;
    head.assign(std::size_t(L) * std::size_t(H), SparseHeadStats{});
  }
};

}  // namespace qw
