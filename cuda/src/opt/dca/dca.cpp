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
      .cpu({Dca::Off})
      .cuda({Dca::Off})
      .spec("QWEN-006")
      .describe(
          "Dual Chunk Attention for contexts past the trained length.");
}

}  // namespace qw
