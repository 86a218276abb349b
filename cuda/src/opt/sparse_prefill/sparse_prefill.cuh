// sparse_prefill.cuh — vertical-slash sparse prefill on the CUDA backend (toggle "sparsePrefill" = vertical-slash; the
// same three steps as the CPU reference sparse_prefill_cpu.cpp). The SIMT estimate, host selection and SIMT attend ran
// on an H100 (2026-12-05); the tensor-core estimate and attend and the device selection are COMPILE-CHECKED ONLY (the
// lab, cuda/dev/lab/sparse.cu, and test/gpu/sparse.test.ts check them on the first GPU call).
//   1. estimate: the last min(64, rows) queries of the step score every key, their softmax's column sums are the
//      vertical scores, its diagonal sums the slash scores. Plain attention with head_dim 64 / 128 (unless
//      QW_SPARSE_MMA=0): by mma.sync, one CTA per (run of 2048 keys, head) (vs_estimate.cu; COMPILE-CHECKED ONLY).
//      Else one warp per (estimating query, head); two passes over keys 0..i (max and sum, then p = e / sum) adding p
//      to vert[h][j] and slash[h][i - j] (atomics, fp32). With DCA each key is scored with its chunk relation's query
//      variant (dca::part).
//   2. select (sparse_select.hpp top_lines, the CPU's rule) on the device: one block per (head, columns | diagonals)
//      finds the k-th best score by a radix select and writes the list in ascending order and the mma attend's
//      bitmaps (vs_select_kernel; COMPILE-CHECKED ONLY); the lists' offsets come from the budget alone, so nothing
//      waits for the GPU. On the host with QW_SPARSE_HOST_SELECT=1 or the lab's Host arm (scores copied back, one
//      synchronization per layer and step). Both give the same lists.
//   3. attend: plain attention with head_dim 64 or 128 (unless QW_SPARSE_MMA=0): the mma.sync flash prefill kernel
//      over each query block's contiguous key tiles (those its diagonals reach, masked to the selected diagonals and
//      columns) and its columns gathered 64 at a time (vs_tiles.hpp, key_lines.cuh; COMPILE-CHECKED ONLY). Else
//      (DCA, other head dims): one warp per (query row, head): the head's columns <= i, then its diagonals o <= i
//      whose key i - o is not a column (binary search), one online softmax in fp32 over bf16 K/V, z in bf16. A
//      simple SIMT kernel: exact up to fp32 summation order and the bf16 of z, not tuned.
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
  uint32_t *bits(size_t n);      // the mma attend's bitmaps: columns [nH][words] | diagonals [nH][words]
  std::vector<float> host_scores;
  // host_lists: the latest selection on the host once fetch_lists ran (or the host selected); host_offsets: always
  mutable std::vector<int32_t> host_lists;
  std::vector<int32_t> host_offsets;
  std::vector<uint32_t> host_bits;
  mutable bool lists_on_host = false;
  void fetch_lists(cudaStream_t stream) const;  // copies a device selection into host_lists (synchronizes `stream`)
  size_t selected() const { return host_offsets.empty() ? 0 : size_t(host_offsets.back()); }  // entries in the lists
  // Keys visited per (layer, head) over a prompt, counted on the device (run_sparse_count); fetched on demand.
  void reset_counts(size_t n, cudaStream_t stream);  // n = layers x heads, zeroed
  double *counts() const { return counts_; }
  size_t counts_n() const { return counts_n_; }
  const std::vector<double> &fetch_counts(cudaStream_t stream) const;  // synchronizes `stream`

 private:
  float *scores_ = nullptr;
  int32_t *lists_ = nullptr, *offsets_ = nullptr;
  uint32_t *bits_ = nullptr;
  double *counts_ = nullptr;
  size_t scores_cap_ = 0, lists_cap_ = 0, offsets_cap_ = 0, bits_cap_ = 0, counts_cap_ = 0, counts_n_ = 0;
  mutable std::vector<double> host_counts_;
};

// Step 3's kernel: Auto = mma where it applies (plain attention, vs_mma_supported) unless QW_SPARSE_MMA=0, else
// SIMT; Mma = mma where it applies (the lab's arm), else SIMT; Simt = SIMT. Shared by block-sparse (block_sparse.cuh).
enum class SparseAttend { Auto, Simt, Mma };
bool sparse_mma_wanted(SparseAttend arm);  // Mma, or Auto without QW_SPARSE_MMA=0 (read at each call); shape aside
// Step 2's place: Auto = the device unless QW_SPARSE_HOST_SELECT=1 (read at each call); Host; Device. Shared by
// block-sparse.
enum class SparseSelect { Auto, Host, Device };
bool sparse_select_on_device(SparseSelect sel);

// Runs steps 1-3 on `stream` (the host selection synchronizes it once, between 1 and 2; the device's never, unless
// cols / diags are asked for). Returns the kernel name for op records:
// attn_sparse_vs_mma, attn_sparse_vs_simt or attn_sparse_vs_dca_simt. head_dim even and <= 128. cols / diags
// (optional): every head's selection, for the lab.
const char *run_sparse_prefill(const SparseAttnArgs &a, const qw::SparseBudget &b, SparseScratch &s, cudaStream_t stream,
                               std::vector<std::vector<int32_t>> *cols = nullptr,
                               std::vector<std::vector<int32_t>> *diags = nullptr,
                               SparseAttend arm = SparseAttend::Auto, SparseSelect sel = SparseSelect::Auto);
// Step 1 alone (the lab's timings and its check of the mma estimate against the SIMT one): the scores vert [nH][N] |
// slash [nH][N] in the scratch, by the tensor-core estimate (mma: vs_estimate_mma_applies must hold) or the SIMT one.
const float *run_sparse_estimate(const SparseAttnArgs &a, SparseScratch &s, cudaStream_t stream, bool mma);
// The tensor-core estimate (vs_estimate.cu): plain attention, head_dim 64 / 128; its workspace (floats, after the
// scores) and the launch.
bool vs_estimate_mma_applies(const SparseAttnArgs &a);
size_t vs_estimate_mma_ws_floats(const SparseAttnArgs &a);
void run_vs_estimate_mma(const SparseAttnArgs &a, int lq, float *scores, float *ws, cudaStream_t stream);
// Adds the keys each head's latest selection (a run_sparse_prefill of the same `a` before it) visits over the step's
// rows to s.counts()[layer * nH + h] (sparse_cost.hpp's count, on the device: no synchronization).
void run_sparse_count(const SparseAttnArgs &a, SparseScratch &s, int32_t layer, cudaStream_t stream);
// Step 3 alone over the latest selection in `s` (a run_sparse_prefill of the same `a` before it): the lab's
// attend-only timings. Returns the kernel name.
const char *run_sparse_attend(const SparseAttnArgs &a, SparseScratch &s, cudaStream_t stream,
                              SparseAttend arm = SparseAttend::Auto);

}  // namespace qwc
