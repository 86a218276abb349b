// tp_cpu.hpp — the CPU emulation of tensor parallelism (toggle "parallel" = tp2 | tp4 | tp8 on libqwen_cpu): the
// sharding plan of tp_plan.hpp run with N ranks in one process. It is the reference the CUDA ranks are checked
// against (test/gpu/parallel.test.ts), and how the plan's math is tested without a GPU (test_parallel.cpp).
//
// Each rank holds only its shards (tp_shard) in its own cpu::Model (a tp1 model of the rank's head / KV-head /
// intermediate / vocab counts) and its own KV cache (its KV heads). A step runs the ranks one after the other on
// the session's worker pool, with the CPU kernels of the tp1 forward; every collective is exact and in a fixed order:
//   embedding   each rank writes its vocab rows, zeros elsewhere; all-reduce = tp_sum_in_rank_order
//   per layer   attention block per rank -> partial o_proj [R, H] -> all-reduce -> residual add;
//               MLP block per rank -> partial down [R, H] -> all-reduce -> residual add
//   lm_head     each rank's vocab slice of the logits, gathered into [rows, V] (a copy: exact)
// The residual stream, the norms and sampling are replicated work; the emulation does them once (every rank would
// compute the same bits from the same all-reduced input). With N = 1 the arithmetic is the tp1 forward's.
// Hook captures of sharded activations (q, k, v, z, mlp pre/post) are the ranks' slices concatenated in rank
// order, i.e. the tp1 layout. Not emulated: op records (profiling modes other than off are refused; records carry a
// rank since ABI 8, which the CUDA ranks fill) and Dual Chunk Attention (refused per step).
#pragma once

#include <memory>

#include "backend.hpp"

namespace qw {
namespace cpu {

// The backend model of a tensor-parallel load (cfg.tp > 1): shards every tensor as it arrives.
std::unique_ptr<BackendModel> tp_emulation_model(const Config &cfg, int threads);

}  // namespace cpu
}  // namespace qw
