// tp_plan.hpp — the tensor-parallel sharding plan (toggle "parallel", QWEN-018): which slice of which tensor each
// rank holds, and the checks that a model can be split N ways. One place for both backends: the CPU emulation
// (tp_cpu.hpp) and the CUDA upload (tp_upload.cuh) shard with these functions, so they hold the same bytes.
//
// Megatron-style split of a Qwen2 layer over N ranks (rank r of N):
//   attn_q / attn_k / attn_v (+ bias)  column-parallel: output rows of query heads [r*nH/N, (r+1)*nH/N) and of
//                                      KV heads [r*nKV/N, (r+1)*nKV/N); GQA groups stay whole inside a rank
//                                      (local query head j reads local KV head j / (nH/nKV), as at tp1).
//   attn_output                        row-parallel: the input columns of the rank's query heads; its product is
//                                      a partial sum over the hidden size -> ALL-REDUCE (sum) #1 of the layer.
//   ffn_gate / ffn_up                  column-parallel: rows [r*F/N, (r+1)*F/N) of the intermediate size.
//   ffn_down                           row-parallel: the same columns -> ALL-REDUCE (sum) #2 of the layer.
//   norms                              replicated (the residual stream is replicated: every rank holds x).
//   token_embd                         vocab-parallel: rows [r*P, min(V, (r+1)*P)), P = ceil(V/N); a rank writes
//                                      the rows of the tokens it owns and zeros for the others -> ALL-REDUCE (sum)
//                                      (exactly one nonzero term per element).
//   output (lm_head; token_embd if tied) vocab-parallel like token_embd: each rank computes its vocab slice of
//                                      the logits -> ALL-GATHER into [rows, P*N] (padded: NCCL's all-gather wants
//                                      equal parts), of which the first V columns are the logits.
// What N must satisfy (tp_plan throws QW_ERR_INVALID_ARGUMENT naming the failing count and the tp values that
// work): N divides the query heads, the KV heads (no KV-head replication) and the intermediate size, and every
// rank owns at least one vocab row. A grouped weight (W8/W4) split along its input columns (attn_output,
// ffn_down) needs the split point on a group boundary: tp_shard throws QW_ERR_SHAPE naming the tensor.
//
// The all-reduce of the CPU emulation is tp_sum_in_rank_order: an fp32 sum in the fixed order
// ((p0 + p1) + p2) + ... . NCCL sums in its own (ring / tree) order, so the CUDA ranks equal the emulation
// within fp32 / bf16 reduction-order noise, not bit for bit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend.hpp"
#include "cost.hpp"
#include "parallel.hpp"

namespace qw {

// What one rank holds (global index ranges; counts are per rank).
struct TpRank {
  int32_t heads = 0, head0 = 0;        // query heads [head0, head0 + heads)
  int32_t kv_heads = 0, kv_head0 = 0;  // KV heads [kv_head0, kv_head0 + kv_heads)
  int32_t ffn = 0, ffn0 = 0;           // intermediate features [ffn0, ffn0 + ffn)
  int32_t vocab = 0, vocab0 = 0;       // vocab rows [vocab0, vocab0 + vocab)
};

struct TpPlan {
  int32_t ranks = 1;
  int32_t vocab_part = 0;  // P = ceil(V / ranks): columns per rank in the gathered logits [rows, P * ranks]
  std::vector<TpRank> rank;
  // The Config a rank's forward sees: its local head / KV-head / intermediate / vocab counts, the rest as `full`.
  Config rank_config(const Config &full, int32_t r) const;
};

// How a tensor is split, by its GGUF name.
enum class TpSplit : uint8_t {
  Replicated,  // norms
  OutRows,     // column-parallel matrix: a range of output rows
  InCols,      // row-parallel matrix: a range of input columns
  Bias,        // the bias of a column-parallel matrix: the same range of its elements
  Vocab,       // token_embd / output: a range of vocab rows
};
TpSplit tp_split_of(const std::string &name);

// The plan for `ranks` ranks (1, 2, 4 or 8), or QW_ERR_INVALID_ARGUMENT saying which count N does not divide.
TpPlan tp_plan(const Config &c, int32_t ranks);

// (parallel.cpp) The "parallel" key of a model config JSON ("tp1" | "tp2" | "tp4" | "tp8", the registry's values; absent = tp1).
// A non-string or unknown value throws QW_ERR_INVALID_ARGUMENT listing the values.
Parallel parse_parallel(const char *config_json);

// The element range [a, b) that rank r holds of tensor `name` along its split (rows for OutRows / Vocab, columns
// for InCols, elements for Bias; [0, whole) for Replicated).
struct TpRange {
  TpSplit split;
  int64_t a, b;
};
TpRange tp_range(const TpPlan &p, const Config &c, const std::string &name, int32_t r);

// Rank r's shard of `t` (same name, type and group; only its slice of rows or columns).
NativeTensor tp_shard(const TpPlan &p, const Config &c, const NativeTensor &t, int32_t r);
// The slicers behind tp_shard (also used by the tests): rows [r0, r1) / columns [c0, c1) of a native tensor, exact
// (bytes, scales and offsets copied). Columns of a W8/W4 tensor must start and end on group boundaries.
NativeTensor slice_rows(const NativeTensor &t, int64_t r0, int64_t r1);
NativeTensor slice_cols(const NativeTensor &t, int64_t c0, int64_t c1);

// The costs of a step's collectives, one rank's share in front/cost.hpp's ring model (cost_all_reduce /
// cost_all_gather), for the records of both backends (CPU emulation: tp_cpu.cpp; CUDA ranks: cuda/tp_session.cu):
// the all-reduce of [rows, hidden] fp32 partial sums, and the all-gather of the [ranks, rows, vocab_part] fp32
// logits slices (padding included: NCCL's equal parts).
OpCost tp_all_reduce_cost(int64_t rows, int64_t hidden, int32_t ranks);
OpCost tp_logits_gather_cost(int64_t rows, int64_t vocab_part, int32_t ranks);

// The emulated all-reduce: out[i] = ((parts[0][i] + parts[1][i]) + parts[2][i]) + ... in fp32, the rank order.
void tp_sum_in_rank_order(float *out, const float *const *parts, int32_t n_parts, int64_t n);

}  // namespace qw
