// gqa.cpp — the registry entry of toggle "gqa": its values (in Gqa enumerator order), default, which
// values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
#include "gqa.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(gqa) {
  return OptDef<Gqa>("gqa", "Grouped-query attention")
      .value(Gqa::Native, "native")
      .value(Gqa::Broadcast, "broadcast")
      .by_default(Gqa::Native)
      .cpu({Gqa::Native, Gqa::Broadcast})
      .cuda({Gqa::Native, Gqa::Broadcast})
      .spec("QWEN-002")
      .describe(
          "Grouped-query attention. native: query head h reads kv head h / (nH / nKV) in place; broadcast: "
          "materialize the repeated KV heads first (the naive arm of the ablation, same result).");
}

}  // namespace qw
