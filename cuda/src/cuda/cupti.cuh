// cupti.cuh — kernel-level tracing through CUPTI's activity API, loaded at run time (dlopen, like cuBLASLt):
// the library links no CUPTI and runs where libcupti is absent; only the kernels and counters profiling modes need it
// (counters: range_profiler.cuh, through cupti_symbol, the same handle).
// One tracer per process (CUPTI allows one subscriber): sessions acquire it while they are in kernels mode.
//
// How a kernel finds its op (README.md, "Profiling modes and what they cost"):
//  - eager launches (prefill, decode with graphs off or hooks): an external correlation id is pushed around
//    each op's launches; CUPTI ties every kernel to the API call that launched it, and that call to the id.
//  - graph replays (decode): the step's graph launch carries the step's id. During stream capture each new
//    graph node is tagged with the op being captured (resource callback GRAPHNODE_CREATED), instantiation
//    clones carry the tag over (GRAPHNODE_CLONED), and a kernel record names its node (graphNodeId).
//    Where node ids are unavailable (another CUPTI subscriber), the k-th kernel of a replay is the k-th kernel
//    node captured: the decode graph is one linear chain.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace qwc {

struct TraceActivity {
  enum Kind : uint8_t { KERNEL = 0, MEMCPY = 1, MEMSET = 2 };
  Kind kind = KERNEL;
  uint64_t start = 0, end = 0;  // CUPTI timestamps (ns), the clock of trace_now()
  uint32_t correlation = 0;     // the launching API call
  uint64_t graph_node = 0;      // 0 unless launched from a graph
  std::string name;             // kernel: short demangled name; copies: "HtoD", "DtoH", ...
};

// Loads libcupti once (QW_CUPTI_PATH, then libcupti.so.13 / libcupti.so on the loader path, then under the
// CUDA toolkit). False with the reason when it is unusable: absent, older than the headers we were built
// with (record layouts would not match), or another tool holds CUPTI.
bool trace_available(std::string *why);

// Reference-counted: the first acquire enables the activity kinds, the last release disables them (records
// of kernels launched while enabled are still delivered). Both throw CudaError when CUPTI fails.
void trace_acquire();
void trace_release();

uint64_t trace_now();                   // CUPTI's timestamp, the time base of every TraceActivity
void trace_push(uint64_t external_id);  // external correlation id for the calling thread's launches
void trace_pop();

// Graph-node tagging while this thread captures a stream: nodes created after trace_tag(tag) carry `tag`
// (kNoTag: none). kernel_tags receives the tags of the kernel nodes in creation order (the linear-chain
// fallback). Call trace_tag_end() after instantiation, so clones are tagged too.
constexpr uint64_t kNoTag = ~uint64_t(0);
void trace_tag_begin(std::vector<uint64_t> *kernel_tags);
void trace_tag(uint64_t tag);
void trace_tag_end();
// The tag of graph node `node_id` (a TraceActivity::graph_node), or kNoTag.
uint64_t trace_node_tag(uint64_t node_id);
bool trace_node_ids_work();  // false when the resource callbacks could not be subscribed

// Flushes CUPTI's buffers and hands over every activity delivered so far whose launch carried an external
// id accepted by `mine(external_id)`, with that id. Others stay for their owner (another session).
struct TracedActivity {
  TraceActivity a;
  uint64_t external_id;
};
std::vector<TracedActivity> trace_collect(bool (*mine)(uint64_t external_id, void *ctx), void *ctx);
// Forgets every pending activity accepted by `mine` (a session going away).
void trace_forget(bool (*mine)(uint64_t external_id, void *ctx), void *ctx);

// The process's one libcupti handle, shared with the range profiler of counters mode (range_profiler.cuh):
// `name` resolved from it, or nullptr with the reason (library absent, or too old to have the symbol).
void *cupti_symbol(const char *name, std::string *why);
// The activity tracer (trace_acquire) and the range profiler must not run at once: a counters-mode session
// claims CUPTI here; false with the reason while a kernels-mode session holds the tracer (and trace_acquire
// throws while a counters claim is held).
bool cupti_claim_counters(std::string *why);
void cupti_release_counters();

}  // namespace qwc
