// catalog.cpp — the qw_catalog_json document (see catalog.hpp and qwen.h for its shape).
#include "catalog.hpp"

#include "backend.hpp"
#include "cost.hpp"
#include "hooks.hpp"
#include "json.hpp"
#include "registry.hpp"

namespace qw {

namespace {
// One line per qw_profiling_mode: its name and, in words, what it records and what it costs (the page shows the
// description beside a profile; qwen.h says the same at the enum).
struct ProfilingModeInfo {
  const char *name;
  const char *description;
};
const ProfilingModeInfo kProfilingModes[QW_PROFILING_COUNT] = {
    {"off", "no op records; CUDA decode replays its graph (what users get)"},
    {"events",
     "CUDA: a CUDA event pair around every op, ops launched one by one (no graph): slower than what users get; "
     "CPU: host timestamps around every op (as kernels)"},
    {"kernels",
     "CUDA: CUPTI records of every kernel and copy, the decode graph kept, gaps between kernels as rows; CPU: "
     "host timestamps around every op, gaps and the worker-pool wake-up as rows"},
    {"counters",
     "CUDA only: measured hardware counters per op through CUPTI's range profiler (DRAM bytes, L2 hit rate, SM and "
     "tensor throughput), ops launched one by one and every kernel replayed per counter pass: times are not "
     "representative; CPU: refused"},
};
}  // namespace

const char *profiling_mode_name(int32_t mode) {
  return (mode >= 0 && mode < QW_PROFILING_COUNT) ? kProfilingModes[mode].name : "";
}

std::string catalog_json() {
  JsonWriter w;
  w.begin_object();
  w.key("abi").value(int32_t(QW_ABI_VERSION));
  w.key("ops").begin_array();
  for (int32_t op = 0; op < QW_OP_COUNT; ++op) {
    w.begin_object();
    w.key("id").value(op);
    w.key("name").value(op_info(op).name);
    w.key("cost").value(op_info(op).cost);
    w.end_object();
  }
  w.end_array();
  w.key("hooks").begin_object();
  w.key("perLayer").begin_array();
  for (int32_t h = 0; h < HOOK_LOGITS; ++h) w.value(hook_suffix(Hook(h)));
  w.end_array();
  w.key("global").begin_array();
  for (int32_t h = HOOK_LOGITS; h < HOOK_COUNT; ++h) w.value(hook_suffix(Hook(h)));
  w.end_array();
  w.end_object();
  w.key("profilingModes").begin_array();
  for (int32_t m = 0; m < QW_PROFILING_COUNT; ++m) {
    w.begin_object();
    w.key("id").value(m);
    w.key("name").value(profiling_mode_name(m));
    w.key("description").value(kProfilingModes[m].description);
    w.end_object();
  }
  w.end_array();
  w.key("toggles").raw(toggle_registry_json());
  w.end_object();
  return w.str();
}

}  // namespace qw
