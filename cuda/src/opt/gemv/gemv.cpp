// gemv.cpp — the registry entry of toggle "gemv": its values (in Gemv enumerator order), default, which
// values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
#include "gemv.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(gemv) {
  return OptDef<Gemv>("gemv", "Quantized GEMV kernel")
      .value(Gemv::Simple, "simple")
      .value(Gemv::Marlin, "marlin")
      .by_default(Gemv::Simple)
      .cpu({Gemv::Simple})
      .cuda({Gemv::Simple})
      .spec("QWEN-005")
      .describe(
          "Quantized GEMV/GEMM kernel family.");
}

}  // namespace qw
