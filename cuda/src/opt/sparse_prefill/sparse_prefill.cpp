// sparse_prefill.cpp — the registry entry of toggle "sparsePrefill": its values (in SparsePrefill enumerator order), default, which
// values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
#include "sparse_prefill.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(sparse_prefill) {
  return OptDef<SparsePrefill>("sparsePrefill", "Sparse prefill attention")
      .value(SparsePrefill::Off, "off")
      .value(SparsePrefill::VerticalSlash, "vertical-slash")
      .by_default(SparsePrefill::Off)
      .cpu({SparsePrefill::Off})
      .cuda({SparsePrefill::Off})
      .spec("QWEN-008")
      .describe(
          "MInference-style dynamic sparse prefill attention.");
}

}  // namespace qw
