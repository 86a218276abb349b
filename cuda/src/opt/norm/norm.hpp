// norm.hpp — the values of toggle "norm" (RMSNorm fusion) as a type; its entry: norm.cpp.
// Enumerator i is value i of the entry (docs/ARCHITECTURE.md §Adding an optimization).
#pragma once

#include "toggles.hpp"

namespace qw {

enum class Norm : uint8_t { Separate, FusedResidualNorm };

}  // namespace qw
