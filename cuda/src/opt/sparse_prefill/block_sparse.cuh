// block_sparse.cuh — block-sparse sparse prefill on the CUDA backend (toggle "sparsePrefill" = block-sparse; the same
// three steps as the CPU reference block_sparse_cpu.cpp). The lab (cuda/dev/lab/sparse.cu, `qwlab bsparse`) and
// test/gpu/sparse.test.ts check it (ninth run, H100); the grouped scoring kernel of step 1 is compile-checked only.
//   1. estimate: mean-pooled keys per (kv head, 64-key block) and queries per (head, 64-position query block, DCA
//      variant), in fp32; pooled q . pooled k for key blocks <= the query block (DCA: the variant of dca::part at the
//      query block's first row and the key block's first key, as the CPU), by one block per (query block, kv head)
//      whose query heads share each shared-memory tile of pooled keys (one warp per (query block, head) before:
//      QW_SPARSE_SCORE_WARP=1; the same bits).
//   2. select (sparse::top_blocks, the CPU's rule) on the device: a block per (query block, head) sorts the candidates
//      in shared memory (bs_select_kernel); the lists' offsets are computed on the host from the budget alone, so the
//      step never waits for the GPU. On the host (scores copied back, one synchronization per layer and step) past
//      4096 candidate blocks, with QW_SPARSE_HOST_SELECT=1, or in the lab's Host arm. Both give the same lists.
//   3. attend: the mma.sync flash prefill kernel (src/cuda/attention_prefill.cu) walking each (query block, head)'s
//      selected key blocks (key_blocks.cuh), where it applies: plain attention and head_dim 64 or 128 (the default
//      since the ninth run, H100: 88x the SIMT kernel at 4k; every block selected, z equals the dense mma.sync
//      kernel's bit for bit). Elsewhere, or with QW_SPARSE_MMA=0 (read at each call): one warp per (query row, head)
//      over its query block's key blocks (keys <= i), 32 keys at a time, one online softmax in fp32 over bf16 K/V.
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
  // host_lists: the latest selection on the host once fetch_lists ran (or the host selected); host_offsets: always
  mutable std::vector<int32_t> host_lists;
  std::vector<int32_t> host_offsets;
  mutable bool lists_on_host = false;
  void fetch_lists(cudaStream_t stream) const;  // copies a device selection into host_lists (synchronizes `stream`)
  int32_t qb0 = 0, nqb = 0;  // the query blocks of the latest step
  size_t selected() const { return host_offsets.empty() ? 0 : size_t(host_offsets.back()); }  // blocks in the lists

 private:
  float *buf_ = nullptr;
  int32_t *lists_ = nullptr, *offsets_ = nullptr;
  size_t buf_cap_ = 0, lists_cap_ = 0, offsets_cap_ = 0;
};

// Step 3's kernel: SparseAttend (sparse_prefill.cuh); the mma kernel applies to plain attention with head_dim 64 / 128.
// Step 2's place: SparseSelect (sparse_prefill.cuh); Auto also takes the host past kSelMax candidate blocks.

// Runs steps 1-3 on `stream` (the host selection synchronizes it once, between 1 and 2; `blocks` always). Returns the kernel name of step 3 for op
// records: attn_sparse_bs_simt, attn_sparse_bs_dca_simt or attn_sparse_bs_mma.
// head_dim even and <= 128. blocks (optional): [h][qb - qb0] the selection, for the lab.
const char *run_block_sparse_prefill(const SparseAttnArgs &a, const qw::SparseBudget &b, BlockSparseScratch &s,
                                     cudaStream_t stream, std::vector<std::vector<std::vector<int32_t>>> *blocks = nullptr,
                                     SparseAttend arm = SparseAttend::Auto, SparseSelect sel = SparseSelect::Auto);
// Step 1 alone (pooling and scores; the lab's timings and its check of the grouped scores): the scores [nH][nqb][nkb]
// in the scratch. warp_scores (or QW_SPARSE_SCORE_WARP=1): one warp per (query block, head) instead of the grouped
// kernel (one block per (query block, kv head)); both give the same bits.
const float *run_block_sparse_estimate(const SparseAttnArgs &a, BlockSparseScratch &s, cudaStream_t stream,
                                       bool warp_scores = false);
// Step 3 alone over the latest selection in `s` (a run_block_sparse_prefill of the same `a` before it): the lab's
// attend-only timings. Returns the kernel name.
const char *run_block_sparse_attend(const SparseAttnArgs &a, BlockSparseScratch &s, cudaStream_t stream,
                                    SparseAttend arm = SparseAttend::Auto);

}  // namespace qwc
