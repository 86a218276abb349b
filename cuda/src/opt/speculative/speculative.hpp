// speculative.hpp — the values of toggle "speculative" (Speculative decoding) as a type; its entry: speculative.cpp.
// Enumerator i is value i of the entry (docs/ARCHITECTURE.md §Adding an optimization).
#pragma once

#include "toggles.hpp"

namespace qw {

enum class Speculative : uint8_t { Off, Draft, Eagle };

}  // namespace qw
