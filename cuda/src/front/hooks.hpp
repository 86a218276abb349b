// hooks.hpp — hook point names (docs/ARCHITECTURE.md §Hooks) and parsing of capture lists like
// "blocks.*.hook_resid_post".
#pragma once

#include <string>
#include <vector>

#include "backend.hpp"

namespace qw {

struct HookRef {
  Hook hook;
  int32_t layer;  // -1 for the global hooks (hook_logits, ln_final.hook_normalized)
};

std::string hook_name(Hook h, int32_t layer);
// The name of hook `h` after "blocks.{L}." (per-layer hooks), or the whole name of a global hook (h >= HOOK_LOGITS).
const char *hook_suffix(Hook h);
// Parses a comma-separated list (spaces around names ignored, "" = none), expands "*" to every layer,
// drops duplicates (keeping the first), and returns the hooks in the order given. Throws QW_ERR_NOT_FOUND
// naming the first unknown hook or out-of-range layer.
std::vector<HookRef> parse_hooks(const std::string &list, int32_t num_layers);

}  // namespace qw
