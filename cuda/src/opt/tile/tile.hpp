// tile.hpp — the values of toggle "tile" (Kernel tile sizes) as a type; its entry: tile.cpp.
// Enumerator i is value i of the entry (docs/ARCHITECTURE.md §Adding an optimization).
#pragma once

#include "toggles.hpp"

namespace qw {

enum class Tile : uint8_t { Auto, Fixed };

}  // namespace qw
