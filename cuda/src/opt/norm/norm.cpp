// norm.cpp — the registry entry of toggle "norm": its values (in Norm enumerator order), default, which
// values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
#include "norm.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(norm) {
  return OptDef<Norm>("norm", "RMSNorm fusion")
      .value(Norm::Separate, "separate")
      .value(Norm::FusedResidualNorm, "fused-residual-norm")
      .by_default(Norm::Separate)
      .cpu({Norm::Separate})
      .cuda({Norm::Separate})
      .spec("QWEN-013")
      .describe(
          "RMSNorm as its own op, or fused with the preceding residual add.");
}

}  // namespace qw
