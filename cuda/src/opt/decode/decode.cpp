// decode.cpp — the registry entry of toggle "decode": its values (in Decode enumerator order), default, which values
// each backend implements, spec and description. Its scope is on its line in opt/list.hpp. The persistent arm:
// persistent_plan.hpp (the schedule, host code shared with the CPU test), persistent_kernels.cu (the kernel),
// cuda/persistent_session.cu (the session's step); what it refuses: persistent_refusal in persistent_plan.cpp.
#include "decode.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(decode) {
  return OptDef<Decode>("decode", "decode step launch")
      .value(Decode::Graph, "graph")
      .value(Decode::Persistent, "persistent")
      .by_default(Decode::Graph)
      .cpu({Decode::Graph})
      .cuda({Decode::Graph, Decode::Persistent})
      .spec("issue 12 (No Bubbles-style megakernel)")
      .describe(
          "How a decode step is launched. graph (default): one kernel per op (norm+GEMV, attention, ...), replayed as a "
          "CUDA graph (toggle graphs). persistent (CUDA only; compile-checked, not yet run on a GPU): one persistent "
          "kernel per step (plus the sampler), one block per SM, that walks a host-built task list (embed, per layer "
          "q|k|v tiles per kv-head group, split-KV attention, combine, o_proj, gate|up, down tiles, then the lm_head): "
          "a block waits on a counter in global memory for its task's inputs (attention of a kv group starts as soon "
          "as that group's q|k|v tiles are done, overlapping the other groups' tiles), and prefetches its next task's "
          "weights into L2 before it waits. bf16 weights, kvCache bf16, gqa native, dca off, no hooks or profiling, "
          "batch <= 8; anything else is refused with the reason. The CPU backend has one decode path: graph.");
}

}  // namespace qw
