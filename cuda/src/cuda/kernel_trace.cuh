// kernel_trace.cuh — the kernels profiling mode of a CUDA session: which op each kernel belongs to, and the
// records of a step assembled from CUPTI activities after the step (cupti.cuh), so the step itself runs as it
// does unprofiled: the decode graph is replayed, nothing is synchronized or recorded per op.
//
// Records of one step tile [entry, exit] of the step on the device time line: each kernel's record starts
// where the previous one ended (its overlap with earlier kernels, from programmatic dependent launch, is
// kept in overlap_ns), and every interval when no kernel or copy ran is a QW_OP_GAP record.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "backend.hpp"
#include "cost.hpp"
#include "cupti.cuh"

namespace qw {

// One op of a step as the session launched it. Events mode brackets it with a and b.
struct OpMark {
  int32_t layer, op;
  const char *kernel;  // variant name (static string)
  OpCost cost;
  int32_t n_tokens;
  cudaEvent_t a = nullptr, b = nullptr;
  // events mode, decode = persistent's dependency levels (one kernel, stamped inside): the op's span as ms after event
  // a (the kernel's launch), b unused; < 0: the span is a .. b
  float rel_a_ms = -1.f, rel_b_ms = -1.f;
};
using OpMarks = std::vector<OpMark>;

// What a captured graph needs for attribution: its ops, and the op of each kernel node in capture order.
struct GraphOps {
  uint64_t serial = 0;               // tag = serial << 16 | op index
  OpMarks marks;
  std::vector<uint64_t> kernel_tags; // the linear-chain fallback when graph node ids are unavailable
};

class KernelTrace {
 public:
  KernelTrace();
  ~KernelTrace();
  KernelTrace(const KernelTrace &) = delete;
  KernelTrace &operator=(const KernelTrace &) = delete;

  // Turns CUPTI tracing on or off for this session; on fails with Error(QW_ERR_UNSUPPORTED) saying why.
  void enable(bool on);
  bool enabled() const { return on_; }

  // Around one step (begin before the first launch, end after the step's last synchronization).
  void begin_step(int64_t step, int32_t phase, int64_t host_ns);
  // eager: the step's own marks; graph: the graph's ops. attn_cost_by_layer (graph replays only): the
  // attention cost of this step per layer (it depends on the KV length, which the captured marks do not know).
  // queued: the step was launched behind others without a synchronization (qw_session_decode_steps): its kernels
  // start when the previous step's end, not when the host launched it, so its leading gap is counted from the
  // previous step's last activity and it has no trailing gap (the host left before its kernels ran).
  void end_step(std::shared_ptr<const OpMarks> eager, std::shared_ptr<const GraphOps> graph,
                std::vector<OpCost> attn_cost_by_layer, bool queued = false);
  // Around the launches of op number `index` of an eager step.
  void begin_op(size_t index);
  void end_op();

  // Stream capture of a graph: nodes created between begin_capture and end_capture (call it after
  // instantiation) are tagged with the op set by tag_op.
  std::shared_ptr<GraphOps> begin_capture();
  void tag_op(size_t index);
  void end_capture();

  // Emits the records of every finished step (called by the front before it reads records).
  void drain(Sink &sink);

 private:
  struct Step {
    uint64_t ext = 0;
    int64_t step = 0;
    int32_t phase = 0;
    uint64_t t0 = 0, t1 = 0;  // CUPTI time at entry and exit
    int64_t host0 = 0;        // steady-clock ns at entry
    std::shared_ptr<const OpMarks> eager;
    std::shared_ptr<const GraphOps> graph;
    std::vector<OpCost> attn_cost;
    bool queued = false;
  };
  // Emits step s's records; prev_end: the end of the previous step's last activity (a queued step's gaps start
  // there). Returns the end of s's last activity.
  uint64_t emit_step(const Step &s, std::vector<const qwc::TracedActivity *> &acts, uint64_t prev_end, Sink &sink) const;
  static bool mine(uint64_t ext, void *self);

  bool on_ = false;
  uint64_t serial_;        // this session's ids: serial << 48 | step << 16 | (op index + 1)
  uint64_t step_serial_ = 0;
  Step open_;
  bool step_open_ = false;
  std::shared_ptr<GraphOps> capturing_;
  std::vector<Step> done_;
};

}  // namespace qw
