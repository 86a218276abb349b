// kvcache.hpp — the values of toggle "kvCache" (KV-cache type) as a type; its entry: kvcache.cpp.
// Enumerator i is value i of the entry (docs/ARCHITECTURE.md §Adding an optimization).
#pragma once

#include "toggles.hpp"

namespace qw {

enum class KvCache : uint8_t { Bf16, F32, Q8, Kivi4, Kivi2 };

}  // namespace qw
