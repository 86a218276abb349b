// weights.cpp — the registry entry of toggle "weights": its values (in Weights enumerator order), default, which
// values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
#include "weights.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(weights) {
  return OptDef<Weights>("weights", "Weight format")
      .value(Weights::AsLoaded, "as-loaded")
      .value(Weights::Bf16, "bf16")
      .value(Weights::Q8, "q8")
      .value(Weights::Q4, "q4")
      .by_default(Weights::AsLoaded)
      .needs_reset()
      .cpu({Weights::AsLoaded})
      .cuda({Weights::AsLoaded})
      .spec("QWEN-005")
      .describe(
          "Weight format: as-loaded keeps each tensor's own GGUF type (exact native layout); bf16/q8/q4 "
          "re-quantize at load.");
}

}  // namespace qw
