// decode.hpp — the values of toggle "decode" (how a CUDA decode step is launched) as a type; its entry: decode.cpp.
// Enumerator i is value i of the entry (docs/ARCHITECTURE.md §Adding an optimization).
#pragma once

#include "toggles.hpp"

namespace qw {

enum class Decode : uint8_t { Graph, Persistent };

}  // namespace qw
