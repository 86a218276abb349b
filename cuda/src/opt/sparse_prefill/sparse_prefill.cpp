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
      .cpu({SparsePrefill::Off, SparsePrefill::VerticalSlash})
      .cuda({SparsePrefill::Off, SparsePrefill::VerticalSlash})
      .spec("QWEN-008")
      .describe(
          "MInference-style dynamic sparse prefill attention (vertical-slash). Per prefill step and head, the last 64 "
          "queries score every key; the best vertical columns and slash diagonals (plus the first `sink` columns and "
          "the `local` nearest diagonals) are the only keys the step's queries visit. Budgets are session options "
          "(sparse_vertical, sparse_slash, sparse_local, sparse_sink; sparse_stats measures recall and output error "
          "against dense). Decode stays dense. With dca = on the pattern is estimated on DCA's scores and each visited "
          "key is scored with its DCA query. Budgets covering every key give dense attention bit for bit (CPU). The CUDA "
          "kernels (a simple SIMT estimate and attend, host-side selection) are compile-checked only: not yet run on a GPU.");
}

}  // namespace qw
