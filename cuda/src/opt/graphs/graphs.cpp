// graphs.cpp — the registry entry of toggle "graphs": its values (in Graphs enumerator order), default, which
// values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
#include "graphs.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(graphs) {
  return OptDef<Graphs>("graphs", "CUDA graphs")
      .value(Graphs::On, "on")
      .value(Graphs::Off, "off")
      .by_default(Graphs::On)
      .cpu({Graphs::Off})
      .cuda({Graphs::On, Graphs::Off})
      .spec("launch overhead")
      .describe(
          "CUDA decode steps. on (default): a step is one launch of a CUDA graph, captured once per batch size and "
          "per gqa/dca layer pattern; off: every kernel of the step is launched from the host. Prefill is always "
          "launched eagerly, and so is decode while profiling mode events or a hook capture is on. The CPU backend "
          "has no graphs: always off there.");
}

}  // namespace qw
