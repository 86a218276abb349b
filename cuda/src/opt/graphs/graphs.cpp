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
          "CUDA graph replay for decode steps (the CPU backend has no graphs: always off there).");
}

}  // namespace qw
