// weights.hpp — the values of toggle "weights" (Weight format) as a type; its entry: weights.cpp.
// Enumerator i is value i of the entry (docs/ARCHITECTURE.md §Adding an optimization).
#pragma once

#include "toggles.hpp"

namespace qw {

enum class Weights : uint8_t { AsLoaded, Bf16, Q8, Q4 };

}  // namespace qw
