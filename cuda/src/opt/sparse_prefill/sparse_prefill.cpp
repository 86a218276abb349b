// sparse_prefill.cpp — the registry entry of toggle "sparsePrefill": its values (in SparsePrefill enumerator order), default, which
// values each backend implements, spec, description and cost. Its scope is on its line in opt/list.hpp.
#include "sparse_prefill.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(sparse_prefill) {
  return OptDef<SparsePrefill>("sparsePrefill", "Sparse prefill attention")
      .value(SparsePrefill::Off, "off")
      .value(SparsePrefill::VerticalSlash, "vertical-slash")
      .value(SparsePrefill::BlockSparse, "block-sparse")
      .by_default(SparsePrefill::Off)
      .cpu({SparsePrefill::Off, SparsePrefill::VerticalSlash, SparsePrefill::BlockSparse})
      .cuda({SparsePrefill::Off, SparsePrefill::VerticalSlash, SparsePrefill::BlockSparse})
      .spec("QWEN-008")
      .describe(
          "MInference-style dynamic sparse prefill attention. vertical-slash: per prefill step and head, the last 64 "
          "queries score every key; the best vertical columns and slash diagonals (plus the first `sink` columns and "
          "the `local` nearest diagonals) are the only keys the step's queries visit. block-sparse: per head, mean-pooled "
          "queries of each 64-position query block score mean-pooled keys of each key block; each query block visits "
          "its `blocks` best key blocks plus the first ceil(sink / 64) and the ceil(local / 64) nearest. "
          "Budgets are session options (sparse_vertical, sparse_slash, sparse_blocks, sparse_local, sparse_sink; "
          "sparse_stats measures recall and output error against dense). Decode stays dense. With dca = on the pattern "
          "is estimated on DCA's scores and each visited key is scored with its DCA query. Budgets covering every key "
          "give dense attention bit for bit (CPU; CUDA block-sparse too). CUDA: block-sparse pools and scores on the GPU, "
          "selects on the GPU and attends with the mma.sync flash kernel over the selected key blocks (SIMT for DCA); "
          "vertical-slash keeps a SIMT estimate, a host-side selection and a SIMT attend (slow). On CUDA the session "
          "counts block-sparse's keys visited; recall and error (sparse_stats) are measured on the CPU only.")
      .cost({"attention"},
            "vertical-slash / block-sparse (prefill steps that run sparse): flops keys visited * (4d + 5) summed over "
            "query rows and heads, plus the estimate (vertical-slash: the last 64 queries' dot products with every key "
            "* (2d + 5); block-sparse: pooled-query . pooled-key dot products * (2d + 5) and the pooling adds); bytes: "
            "every K row once per kv head (the estimate reads all of them), the V rows of the distinct keys some query "
            "of the kv group visits, the new K/V written, q in and z out. With sparse_stats the dense reference also "
            "runs inside the op: its time is in the record, its work is not");
}

}  // namespace qw
