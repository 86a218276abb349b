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
// order, i.e. the tp1 layout. Not emulated: Dual Chunk Attention (refused per step).
//
// Records (profiling modes events / kernels, as at tp1; counters is refused as at tp1): every record carries its rank
// (qw_op_record.rank), with the op ids, kernel naming and cost models of tp1 (front/cost.hpp), each rank's costs
// from its shard shapes (its qkv has its heads' rows, its lm_head its vocab rows: the ranks' matmul FLOPs sum to
// tp1's). Each rank's op sequence is tp1's with toggles norm = separate and ffn = separate (the emulation always
// runs the separate passes; the residual add must follow the all-reduce anyway, as on the CUDA ranks) plus the
// collectives: all_reduce after the embedding, after o_proj and after down (before the residual add), all_gather
// after lm_head. Work of one rank (embed rows, qkv, rope, attention, o_proj, gate_up, swiglu, down, lm_head) is
// recorded on that rank only. Work every rank does at once is run once and recorded on every rank over the SAME
// interval with one rank's cost: replicated ops (pool wake, norms, residual adds, sampling: whole on every rank,
// so their FLOPs are N times tp1's in sum) and the collectives (cost_all_reduce / cost_all_gather, the bytes a rank
// moves in a ring, the same model as the CUDA ranks' NCCL records). The ranks run one after another on this CPU,
// so while rank r computes, every other rank waits: that time is a QW_OP_GAP record of each other rank with kernel
// "cpu.gap.other_ranks" (it also holds the few microseconds of bookkeeping between the ops; an ordinary gap is
// "cpu.gap"). Every rank's records start and end at the same instants and tile the step:
// per rank, sum of ops + sum of gaps = the step's wall time. On real GPUs the ranks' ops overlap in time; here the
// sum of a rank's ops is what that rank would cost alone on this CPU.
#pragma once

#include <memory>

#include "backend.hpp"

namespace qw {
namespace cpu {

// The backend model of a tensor-parallel load (cfg.tp > 1): shards every tensor as it arrives.
std::unique_ptr<BackendModel> tp_emulation_model(const Config &cfg, int threads);

}  // namespace cpu
}  // namespace qw
