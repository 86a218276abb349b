// parallel.hpp — the values of toggle "parallel" (Tensor parallelism) as a type; its entry: parallel.cpp.
// Enumerator i is value i of the entry (docs/ARCHITECTURE.md §Adding an optimization). The sharding plan that the
// value selects is tp_plan.hpp; its CPU emulation tp_cpu.hpp; the CUDA side tp_upload.cuh and cuda/src/cuda/nccl.cuh.
#pragma once

#include "toggles.hpp"

namespace qw {

enum class Parallel : uint8_t { Tp1, Tp2, Tp4, Tp8 };

// Ranks of a value: tp1 = 1, tp2 = 2, tp4 = 4, tp8 = 8.
constexpr int32_t tp_ranks(Parallel p) { return int32_t(1) << int32_t(p); }

}  // namespace qw
