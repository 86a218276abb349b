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
      .cpu({Speculative::Off})
      .cuda({Speculative::Off})
      .spec("QWEN-004")
      .describe(
          "Speculative decoding: a smaller draft model or an EAGLE draft head with tree verification.");
}

}  // namespace qw
