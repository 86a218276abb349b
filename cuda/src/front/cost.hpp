// cost.hpp — analytic FLOPs and bytes of each op from shapes and dtypes, for op records
// (docs/ARCHITECTURE.md §Measurement).
// Bytes count weights + activations read and written + KV cache read and written, each once (what an
// ideal kernel must move); FLOPs count a multiply-add as 2. Both backends use these so rooflines compare.
#pragma once

#include <cstdint>
#include <vector>

#include "backend.hpp"

namespace qw {

struct OpCost {
  double flops = 0, bytes = 0;
};
// The cost of two ops run as one (a fused kernel): the sum, an upper bound on the bytes.
inline OpCost add_cost(OpCost a, OpCost b) { return {a.flops + b.flops, a.bytes + b.bytes}; }

// y[T, rows] = x[T, cols] @ W^T (+ bias[rows] when has_bias). act_bytes: activation element size (4 on the
// CPU, 2 for bf16 activations).
OpCost cost_matmul(int64_t T, int64_t rows, int64_t cols, NativeType wt, int32_t group, bool has_bias,
                   double act_bytes);
OpCost cost_embed(int64_t T, int64_t H, NativeType wt, int32_t group, double act_bytes);
OpCost cost_rmsnorm(int64_t T, int64_t H, double act_bytes);
OpCost cost_rope(int64_t T, int64_t n_heads_total, int64_t head_dim, double act_bytes);
OpCost cost_residual(int64_t T, int64_t H, double act_bytes);
OpCost cost_swiglu(int64_t T, int64_t F, double act_bytes);
// Causal attention of a step: for each sequence, n_new queries at positions pos0..pos0+n_new-1 over the
// keys 0..pos; KV of each sequence read once per kv head, the new K/V written once.
OpCost cost_attention(const std::vector<int32_t> &pos0, const std::vector<int32_t> &n_new, int64_t n_heads,
                      int64_t n_kv_heads, int64_t head_dim, double kv_bytes, double act_bytes);
OpCost cost_sample(int64_t rows, int64_t vocab);
// Tensor parallelism over `ranks` ranks (opt/parallel/tp_plan.hpp), per rank, with nccl-tests' bus-bandwidth
// convention: an all-reduce of `message` bytes moves 2 (ranks - 1) / ranks * message and adds (ranks - 1) / ranks
// * elems (reduce-scatter share); an all-gather into `gathered` bytes moves (ranks - 1) / ranks * gathered, no flops.
OpCost cost_all_reduce(int64_t elems, double elem_bytes, int32_t ranks);
OpCost cost_all_gather(double gathered_bytes, int32_t ranks);

// One line per qw_op: its name (qw_op_name) and, in words, the model above that its records use
// (qw_catalog_json "ops"). Kept beside the formulas so the text and the arithmetic change together.
struct OpInfo {
  const char *name;
  const char *cost;
};
const OpInfo &op_info(int32_t op);  // op in [0, QW_OP_COUNT); see op_name for unchecked ids
const char *op_name(int32_t op);    // "" for an unknown id

}  // namespace qw
