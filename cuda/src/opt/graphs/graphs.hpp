// graphs.hpp — the values of toggle "graphs" (CUDA graphs) as a type; its entry: graphs.cpp.
// Enumerator i is value i of the entry (docs/ARCHITECTURE.md §Adding an optimization).
#pragma once

#include "toggles.hpp"

namespace qw {

enum class Graphs : uint8_t { On, Off };

}  // namespace qw
