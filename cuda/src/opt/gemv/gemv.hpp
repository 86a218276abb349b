// gemv.hpp — the values of toggle "gemv" (Quantized GEMV kernel) as a type; its entry: gemv.cpp.
// Enumerator i is value i of the entry (docs/ARCHITECTURE.md §Adding an optimization).
#pragma once

#include "toggles.hpp"

namespace qw {

enum class Gemv : uint8_t { Simple, Marlin };

}  // namespace qw
