// sparse_prefill.hpp — the values of toggle "sparsePrefill" as a type (budgets and stats: sparse_budget.hpp); its
// registry entry: sparse_prefill.cpp, the CPU kernels: sparse_prefill_cpu.cpp (+ block_sparse_cpu.cpp), the CUDA ones:
// sparse_kernels.cu (+ block_sparse_kernels.cu), the op cost of both: sparse_cost.hpp.
// Enumerator i is value i of the entry (docs/ARCHITECTURE.md §Adding an optimization).
#pragma once

#include <cstdint>

#include "sparse_budget.hpp"
#include "toggles.hpp"

namespace qw {

enum class SparsePrefill : uint8_t { Off, VerticalSlash, BlockSparse };

}  // namespace qw
