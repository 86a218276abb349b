// dca.cpp — the registry entry of toggle "dca": its values (in Dca enumerator order), default, which
// values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
#include "dca.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(dca) {
  return OptDef<Dca>("dca", "Dual Chunk Attention")
      .value(Dca::Off, "off")
      .value(Dca::On, "on")
      .by_default(Dca::Off)
      .needs_reset()
      .cpu({Dca::Off, Dca::On})
      .cuda({Dca::Off, Dca::On})
      .spec("QWEN-006")
      .describe(
          "Dual Chunk Attention for contexts past the trained length: keys roped at pos mod (chunk - local), queries "
          "three ways (intra-chunk, successive-chunk, inter-chunk), partial softmaxes merged by log-sum-exp. Its "
          "parameters chunk size and local window are session options (dca_chunk_size, dca_local_size; defaults from "
          "the model config's dual_chunk_attention_config, else chunk = the trained length, local = chunk / 8).");
}

}  // namespace qw
