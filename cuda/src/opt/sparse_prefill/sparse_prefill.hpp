// sparse_prefill.hpp — the values of toggle "sparsePrefill" as a type; its registry entry: sparse_prefill.cpp.
// Enumerator i is value i of the entry (docs/ARCHITECTURE.md §Adding an optimization).
#pragma once

#include "toggles.hpp"

namespace qw {

enum class SparsePrefill : uint8_t { Off, VerticalSlash };

}  // namespace qw
