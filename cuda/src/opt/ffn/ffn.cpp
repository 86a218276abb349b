// ffn.cpp — the registry entry of toggle "ffn": its values (in Ffn enumerator order), default, which
// values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
#include "ffn.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(ffn) {
  return OptDef<Ffn>("ffn", "MLP kernels")
      .value(Ffn::Separate, "separate")
      .value(Ffn::FusedSwiglu, "fused-swiglu")
      .value(Ffn::FusedNormGemvSwiglu, "fused-norm-gemv-swiglu")
      .by_default(Ffn::Separate)
      .cpu({Ffn::Separate})
      .cuda({Ffn::Separate})
      .spec("QWEN-003, QWEN-009")
      .describe(
          "MLP kernels: separate gate/up GEMV, SiLU*up and down; or fused variants.");
}

}  // namespace qw
