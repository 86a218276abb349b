// attention.hpp — the values of toggle "attention" (Attention kernel) as a type; its entry: attention.cpp.
// Enumerator i is value i of the entry (docs/ARCHITECTURE.md §Adding an optimization).
#pragma once

#include "toggles.hpp"

namespace qw {

enum class Attention : uint8_t { FlashBf16, SageInt8, SageFp8 };

// Before every step (front, run_step): a Sage arm reads the bf16 / f32 KV cache through its own kernel, so a layer
// where something else would run instead (a quantized kvCache's attention over the codes, or dca = on) is refused
// with an error naming the layer and both toggles, never silently replaced. Checked per step, not when a toggle is
// set, so that a run may change attention and kvCache one after the other in any order.
void attention_check_step(const StepToggles &t);

}  // namespace qw
