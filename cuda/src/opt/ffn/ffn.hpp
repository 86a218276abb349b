// ffn.hpp — the values of toggle "ffn" (MLP kernels) as a type; its entry: ffn.cpp.
// Enumerator i is value i of the entry (docs/ARCHITECTURE.md §Adding an optimization).
#pragma once

#include "toggles.hpp"

namespace qw {

enum class Ffn : uint8_t { Separate, FusedSwiglu, FusedNormGemvSwiglu };

}  // namespace qw
