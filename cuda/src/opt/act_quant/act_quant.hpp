// act_quant.hpp — the values of toggle "actQuant" as a type; its registry entry: act_quant.cpp.
// Enumerator i is value i of the entry (docs/ARCHITECTURE.md §Adding an optimization).
#pragma once

#include "toggles.hpp"

namespace qw {

enum class ActQuant : uint8_t { Off, Int8 };

}  // namespace qw
