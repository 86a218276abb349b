// sparse_prefill_cpu.hpp — MInference vertical-slash sparse prefill on the CPU backend (toggle "sparsePrefill" =
// vertical-slash; budgets and stats in sparse_prefill.hpp). forward.cpp asks sparse_runs() at the attention op of
// every layer and then calls sparse_attention() instead of the dense kernels.
#pragma once

#include <cstdint>
#include <vector>

#include "cpu.hpp"
#include "sparse_cost.hpp"
#include "sparse_prefill.hpp"

namespace qw {
namespace cpu {

// Layer l of step st runs sparse prefill: a prefill step of >= kBlockedMinRows rows with the toggle on (a shorter
// step, e.g. a speculative verify pass, a tree step (EAGLE) and every decode step stay dense).
inline bool sparse_runs(const Step &st, const LayerToggles &lt, int64_t rows) {
  return st.phase == QW_PHASE_PREFILL && st.tree_base < 0 && lt.sparse_prefill != SparsePrefill::Off &&
         rows >= kBlockedMinRows;
}

// Refuses (Error QW_ERR_UNSUPPORTED, naming both toggles) what the sparse kernels cannot read: a quantized KV cache
// (q8 / kivi) or a Sage attention arm at the same layer.
void sparse_check(const StepToggles &t, const LayerToggles &lt);

// Dual Chunk Attention at the layer: its successive- / inter-chunk queries and parameters (dca_cpu.hpp); a.q then
// holds the intra-chunk queries. Null q_succ: plain attention.
struct SparseDca {
  const float *q_succ = nullptr, *q_inter = nullptr;
  int32_t chunk = 0, local = 0;
};

// Appends the step's K/V rows (kv_append), then per sequence of the step: estimates each query head's pattern
// (vertical-slash: from the last kSparseLastQ queries, their softmax over every key: vertical score = column sums,
// slash score = diagonal sums; forced sink columns and local diagonals, then the top `vertical` / `slash` others;
// block-sparse: block_sparse_cpu.cpp), and computes z visiting only those keys. Per head and layer it adds to `stats`
// (keys visited; with b.stats, recall and output error against dense, which it also computes). patterns (optional):
// the patterns of the step's last sequence, [nH]. Returns the step's work (the op record's cost, sparse_cost.hpp).
SparseWork sparse_attention(KvStore &kv, const AttnArgs &a, SparsePrefill mode, const SparseDca &dca, const SparseBudget &b,
                            SparseStats &stats, std::vector<SparsePattern> *patterns = nullptr);

// Once per forward step: a prefill step from position 0 where some layer runs sparse starts new stats (they
// describe the latest prompt's prefill, every chunk of it); counts the step.
void sparse_step_begin(SparseStats &stats, const Step &st, int32_t layers, int32_t heads);

// The op record's kernel name, e.g. "cpu.attention.sparse_vs.kv_bf16" (sparse_bs for block-sparse; ".dca" inserted
// with DCA).
const char *sparse_kernel_name(SparsePrefill mode, bool dca, bool kv_bf16);

}  // namespace cpu
}  // namespace qw
