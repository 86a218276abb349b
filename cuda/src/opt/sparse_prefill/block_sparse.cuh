// block_sparse.cuh — block-sparse sparse prefill on the CUDA backend (toggle "sparsePrefill" = block-sparse; the same
// three steps as the CPU reference block_sparse_cpu.cpp). COMPILE-CHECKED ONLY: written without a GPU; the lab case
// (cuda/dev/lab/sparse.cu, `qwlab bsparse`) and test/gpu/sparse.test.ts validate it on the first GPU call.
//   1. estimate: mean-pooled keys per (kv head, 64-key block) and queries per (head, 64-position query block, DCA
//      variant), in fp32; one warp per (query block, head) scores pooled q . pooled k for key blocks <= it (DCA: the
//      variant of dca::part at the query block's first row and the key block's first key, as the CPU).
//   2. select on the host (sparse::top_blocks, the CPU's rule): one stream synchronization per layer and step.
//   3. attend: one warp per (query row, head) over its query block's key blocks (keys <= i), 32 keys at a time, one
//      online softmax in fp32 over bf16 K/V, z in bf16. A simple SIMT kernel (no tensor cores), not tuned.
// Same arguments as vertical-slash (sparse_prefill.cuh SparseAttnArgs).
#pragma once

#include <cstdint>
#include <vector>

#include "common.cuh"
#include "sparse_budget.hpp"
#include "sparse_prefill.cuh"

namespace qwc {

// Device and host scratch of the three steps, grown on demand; one per session.
class BlockSparseScratch {
 public:
  BlockSparseScratch() = default;
  BlockSparseScratch(const BlockSparseScratch &) = delete;
  BlockSparseScratch &operator=(const BlockSparseScratch &) = delete;
  ~BlockSparseScratch();
  float *buf(size_t n);      // pooled k | pooled q | scores
  int32_t *lists(size_t n);  // every (head, query block)'s key blocks, ascending
  int32_t *offsets(size_t n);  // [nH * nqb + 1]: (h, qb - qb0)'s blocks at [offs[h * nqb + b], offs[h * nqb + b + 1])
  std::vector<float> host_scores;
  std::vector<int32_t> host_lists, host_offsets;
  int32_t qb0 = 0, nqb = 0;  // the query blocks of the latest step

 private:
  float *buf_ = nullptr;
  int32_t *lists_ = nullptr, *offsets_ = nullptr;
  size_t buf_cap_ = 0, lists_cap_ = 0, offsets_cap_ = 0;
};

// Runs steps 1-3 on `stream` (synchronizing it once, between 1 and 2). Returns the kernel name for op records.
// head_dim even and <= 128. blocks (optional): [h][qb - qb0] the selection, for the lab.
const char *run_block_sparse_prefill(const SparseAttnArgs &a, const qw::SparseBudget &b, BlockSparseScratch &s,
                                     cudaStream_t stream, std::vector<std::vector<std::vector<int32_t>>> *blocks = nullptr);

}  // namespace qwc
