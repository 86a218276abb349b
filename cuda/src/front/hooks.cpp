// hooks.cpp — hook names and capture list parsing.
#include "hooks.hpp"

#include <cstdlib>

namespace qw {

namespace {
// Suffix after "blocks.{L}." of each per-layer hook, indexed by Hook.
const char *const kSuffix[HOOK_COUNT] = {"hook_resid_pre",  "attn.hook_q",    "attn.hook_k",    "attn.hook_v",
                                         "attn.hook_z",     "hook_attn_out",  "hook_resid_mid", "mlp.hook_pre",
                                         "mlp.hook_post",   "hook_resid_post", "hook_logits",
                                         "ln_final.hook_normalized"};

std::string trim(const std::string &s) {
  size_t a = s.find_first_not_of(" \t\n\r"), b = s.find_last_not_of(" \t\n\r");
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}
}  // namespace

const char *hook_suffix(Hook h) { return kSuffix[h]; }

std::string hook_name(Hook h, int32_t layer) {
  if (h >= HOOK_LOGITS) return kSuffix[h];  // global hooks: the name is the whole name
  return "blocks." + std::to_string(layer) + "." + kSuffix[h];
}

std::vector<HookRef> parse_hooks(const std::string &list, int32_t num_layers) {
  std::vector<HookRef> out;
  auto add = [&](Hook h, int32_t l) {
    for (const auto &r : out)
      if (r.hook == h && r.layer == l) return;
    out.push_back({h, l});
  };
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    const std::string name = trim(list.substr(start, comma - start));
    start = comma + 1;
    if (name.empty()) {
      if (comma == list.size()) break;
      continue;
    }
    bool global = false;
    for (int g = HOOK_LOGITS; g < HOOK_COUNT; ++g)
      if (name == kSuffix[g]) add(Hook(g), -1), global = true;
    if (global) continue;
    const std::string bad = "unknown hook \"" + name +
                            "\" (expected blocks.{L|*}.hook_resid_pre|attn.hook_q|attn.hook_k|attn.hook_v|"
                            "attn.hook_z|hook_attn_out|hook_resid_mid|mlp.hook_pre|mlp.hook_post|"
                            "hook_resid_post, or hook_logits, ln_final.hook_normalized)";
    if (name.compare(0, 7, "blocks.") != 0) throw Error(QW_ERR_NOT_FOUND, bad);
    const size_t dot = name.find('.', 7);
    if (dot == std::string::npos) throw Error(QW_ERR_NOT_FOUND, bad);
    const std::string ls = name.substr(7, dot - 7), suffix = name.substr(dot + 1);
    int h = -1;
    for (int i = 0; i < HOOK_LOGITS; ++i)
      if (suffix == kSuffix[i]) h = i;
    if (h < 0) throw Error(QW_ERR_NOT_FOUND, bad);
    if (ls == "*") {
      for (int32_t l = 0; l < num_layers; ++l) add(Hook(h), l);
      continue;
    }
    bool digits = !ls.empty() && ls.size() <= 6;
    for (char ch : ls) digits = digits && ch >= '0' && ch <= '9';
    if (!digits) throw Error(QW_ERR_NOT_FOUND, bad);
    const long l = std::strtol(ls.c_str(), nullptr, 10);
    if (l >= num_layers)
      throw Error(QW_ERR_NOT_FOUND, "hook \"" + name + "\": layer " + ls + " does not exist (the model has " +
                                        std::to_string(num_layers) + " layers)");
    add(Hook(h), int32_t(l));
  }
  return out;
}

}  // namespace qw
