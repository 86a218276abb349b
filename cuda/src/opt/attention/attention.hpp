// attention.hpp — the values of toggle "attention" (Attention kernel) as a type; its entry: attention.cpp.
// Enumerator i is value i of the entry (docs/ARCHITECTURE.md §Adding an optimization).
#pragma once

#include "toggles.hpp"

namespace qw {

enum class Attention : uint8_t { FlashBf16, SageInt8, SageFp8 };

}  // namespace qw
