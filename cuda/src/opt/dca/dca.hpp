// dca.hpp — the values of toggle "dca" (Dual Chunk Attention) as a type; its entry: dca.cpp.
// Enumerator i is value i of the entry (docs/ARCHITECTURE.md §Adding an optimization).
#pragma once

#include "toggles.hpp"

namespace qw {

enum class Dca : uint8_t { Off, On };

}  // namespace qw
