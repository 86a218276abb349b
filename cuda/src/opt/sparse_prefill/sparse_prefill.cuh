// sparse_prefill.cuh — vertical-slash sparse prefill on the CUDA backend (toggle "sparsePrefill" = vertical-slash; the
// same three steps as the CPU reference sparse_prefill_cpu.cpp). COMPILE-CHECKED ONLY: written without a GPU; the lab
// case (cuda/dev/lab/sparse.cu) and test/gpu/sparse.test.ts validate it on the first GPU call.
//   1. estimate: one warp per (estimating query, head), the last min(64, rows) queries of the step; two passes over
//      keys 0..i (max and sum, then p = e / sum) adding p to vert[h][j] and slash[h][i - j] (atomics, fp32). With DCA
//      each key is scored with its chunk relation's query variant (dca::part).
//   2. select on the host (sparse_select.hpp, the CPU's rule): one stream synchronization per layer and step.
//   3. attend: one warp per (query row, head): the head's columns <= i, then its diagonals o <= i whose key i - o is
//      not a column (binary search), one online softmax in fp32 over bf16 K/V, z in bf16. A simple SIMT kernel: exact
//      up to fp32 summation order and the bf16 of z, not tuned (no tensor cores).
// Plain attention or DCA (q[1], q[2] the successive / inter queries, dca_span = chunk - local).
#pragma once

#include <cstdint>
#include <vector>

#include "common.cuh"
#include "sparse_budget.hpp"

namespace qwc {

struct SparseAttnArgs {
  __nv_bfloat16 *out = nullptr;                          // z: [rows, nH*d]
  const __nv_bfloat16 *q[3] = {nullptr, nullptr, nullptr};  // plain: q[0]; DCA: intra, successive, inter [rows, nH*d]
  const __nv_bfloat16 *kcache = nullptr, *vcache = nullptr;  // this layer: [slots][nKV][max_ctx][d]
  int32_t rows = 0, pos0 = 0, slot = 0;  // one sequence: rows at positions pos0 .. pos0 + rows - 1 of cache slot `slot`
  int32_t n_heads = 0, n_kv = 0, head_dim = 0, max_ctx = 0;
  int32_t dca_span = 0;  // DCA: chunk - local; 0: plain attention
};

// Device and host scratch of the three steps, grown on demand; one per session.
class SparseScratch {
 public:
  SparseScratch() = default;
  SparseScratch(const SparseScratch &) = delete;
  SparseScratch &operator=(const SparseScratch &) = delete;
  ~SparseScratch();
  float *scores(size_t n);       // vert | slash: 2 * nH * N floats
  int32_t *lists(size_t n);      // every head's columns then diagonals
  int32_t *offsets(size_t n);    // [2 nH + 1]: head h's columns at [offs[2h], offs[2h+1]), diagonals to offs[2h+2]
  std::vector<float> host_scores;
  std::vector<int32_t> host_lists, host_offsets;

 private:
  float *scores_ = nullptr;
  int32_t *lists_ = nullptr, *offsets_ = nullptr;
  size_t scores_cap_ = 0, lists_cap_ = 0, offsets_cap_ = 0;
};

// Runs steps 1-3 on `stream` (synchronizing it once, between 1 and 2). Returns the kernel name for op records.
// head_dim even and <= 128. cols / diags (optional): every head's selection, for the lab.
const char *run_sparse_prefill(const SparseAttnArgs &a, const qw::SparseBudget &b, SparseScratch &s, cudaStream_t stream,
                               std::vector<std::vector<int32_t>> *cols = nullptr,
                               std::vector<std::vector<int32_t>> *diags = nullptr);

}  // namespace qwc
