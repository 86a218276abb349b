// speculative.cpp — the registry entry of toggle "speculative": its values (in Speculative enumerator order), default, which
// values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
#include "speculative.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(speculative) {
  return OptDef<Speculative>("speculative", "Speculative decoding")
      .value(Speculative::Off, "off")
      .value(Speculative::Draft, "draft")
      .value(Speculative::Eagle, "eagle")
      .by_default(Speculative::Off)
      .needs_reset()
      .cpu({Speculative::Off, Speculative::Draft, Speculative::Eagle})
      .cuda({Speculative::Off, Speculative::Draft, Speculative::Eagle})
      .spec("QWEN-004")
      .describe(
          "Speculative decoding: a smaller draft model or an EAGLE draft head with tree verification. draft: a draft "
          "model of the same tokenizer proposes k tokens, the target verifies them in one pass and both KV caches are "
          "truncated to what was accepted (engine/spec/; the loop runs over the C ABI, so on every backend); the "
          "greedy output is the target's own, sampling keeps the target's distribution. eagle: an "
          "EAGLE-1 head (SafeAILab layout) drafts an EAGLE-2 dynamic tree (depth, top-k per node, node budget), the "
          "target verifies the whole tree in one pass with a tree attention mask and tree positions "
          "(qw_session_prefill_tree), and the accepted path's K/V are compacted (qw_session_kv_compact).");
}

}  // namespace qw
