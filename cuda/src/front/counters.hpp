// counters.hpp — profiling mode "counters" (qwen.h QW_PROFILING_COUNTERS), the host side both libraries build:
// the one table of hardware metrics we ask CUPTI's range profiler for, the per-op sums of its kernel ranges, and the
// log that numbers each op within its step (the key its op record is joined by), kept until qw_session_read_counters
// takes it as JSON. Attribution itself is structural: the session starts the profiler when an op opens and decodes
// it when the op closes, so the ranges decoded then are exactly that op's kernels (src/cuda/backend_cuda.cu).
// No CUDA here: the CUPTI calls are in src/cuda/range_profiler.cu; this file is unit-tested on the CPU
// (tests/test_counters.cpp). docs/ARCHITECTURE.md §Measurement.
//
// Aggregation over the kernels of one op (why each is summed the way it is):
//  - DRAM bytes read / written and L2 sector lookups (hits, misses) are counts: they add.
//  - The L2 hit rate is recomputed from the summed sector counts, hits / (hits + misses): a rate weighted by
//    sectors, so a kernel that touches L2 once does not count as much as one that streams the weights.
//  - SM and tensor-pipe throughput are percentages of peak over each kernel's own duration: weighted by the
//    kernel's gpu__time_duration (time-weighted mean = the share of peak the op achieved over its time).
// A metric the GPU does not offer is never collected (NaN in every kernel row); the op then reports it absent
// (null in JSON), and the readout names it in "unavailable" instead of failing the whole profile.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace qw {

enum CounterId : int32_t {
  CTR_DRAM_READ = 0,  // bytes
  CTR_DRAM_WRITE,     // bytes
  CTR_L2_HIT,         // L2 sector lookups that hit
  CTR_L2_MISS,        // L2 sector lookups that missed
  CTR_DURATION,       // ns, the kernel's duration in one pass
  CTR_SM_PCT,         // % of peak sustained, elapsed
  CTR_TENSOR_PCT,     // tensor pipe, % of peak sustained, active
  CTR_COUNT
};

struct CounterMetric {
  CounterId id;
  const char *metric;  // the CUPTI / Nsight Compute metric name
};
// The metric table, in CounterId order: the one place a metric name is spelled.
extern const CounterMetric kCounterMetrics[CTR_COUNT];

// One kernel range: kCounterMetrics' values in CounterId order, NaN where not collected.
using KernelCounters = std::array<double, CTR_COUNT>;

// The measured counters of one op of one step (what the readout carries per op).
struct OpCounters {
  int64_t step = 0;
  int32_t phase = 0, layer = -1, op = 0;
  int32_t nth = 0;          // occurrences of (layer, op) before this one in the step (residual: 0 and 1)
  std::string kernel;       // the op's variant name
  int32_t kernels = 0;      // kernel ranges attributed to it
  double dram_read = 0, dram_write = 0;  // bytes (NaN: not collected)
  double l2_hits = 0, l2_misses = 0;     // sector lookups (NaN: not collected)
  double duration_ns = 0;                // sum over its kernels (NaN: not collected)
  double sm_pct = 0, tensor_pct = 0;     // duration-weighted means (NaN: not collected or no duration)
  double l2_hit_pct() const;             // 100 * hits / (hits + misses); NaN without lookups
};

// Sums the kernel ranges of one op (see the header comment for how each metric combines). Zero kernels: every
// count 0 and the rates NaN.
OpCounters aggregate_kernels(const std::vector<KernelCounters> &kernels);

// Per-session log of counters mode: the ops of finished steps, in order, until read.
class CounterLog {
 public:
  // Which metrics of kCounterMetrics are collected, and for each one that is not, the reason ("metric X not
  // available on this GPU: ..."); set once the profiler is configured. Default: none (a backend without counters).
  void set_collected(const std::array<bool, CTR_COUNT> &collected, std::vector<std::string> why) {
    collected_ = collected;
    unavailable_ = std::move(why);
  }
  // Appends one op of step `step` (nth is computed here from the ops of the same step added before).
  void add(int64_t step, int32_t phase, int32_t layer, int32_t op, const char *kernel, OpCounters c);
  size_t size() const { return ops_.size(); }
  const std::vector<OpCounters> &ops() const { return ops_; }
  // {"collected":[metric...],"unavailable":["..."],"ops":[{step,phase,layer,op,nth,kernel,kernels,dramRead,
  //  dramWrite,l2Hits,l2Misses,l2HitPct,durationNs,smPct,tensorPct}...]}: absent values are null.
  std::string json() const;
  void take(size_t n);  // forgets the first n ops (they were read)
  void clear() { ops_.clear(); }

 private:
  std::vector<OpCounters> ops_;
  std::array<bool, CTR_COUNT> collected_{};
  std::vector<std::string> unavailable_;
  int64_t last_step_ = -1;
  int32_t last_phase_ = -1;
  std::vector<std::array<int32_t, 2>> seen_;  // (layer, op) of the current step's ops
};

}  // namespace qw
