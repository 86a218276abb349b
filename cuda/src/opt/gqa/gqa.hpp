// gqa.hpp — the values of toggle "gqa" (Grouped-query attention) as a type; its entry: gqa.cpp.
// Enumerator i is value i of the entry (docs/ARCHITECTURE.md §Adding an optimization).
#pragma once

#include "toggles.hpp"

namespace qw {

enum class Gqa : uint8_t { Native, Broadcast };

}  // namespace qw
