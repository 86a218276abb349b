// range_profiler.cuh — profiling mode "counters": hardware counters per kernel through CUPTI's range profiler
// (cupti_range_profiler.h + cupti_profiler_host.h: metric configuration and evaluation on the host, no nvperf
// library), with auto ranges and kernel replay, so every kernel launched between begin() and end() is one range,
// replayed by CUPTI once per counter pass. The metrics are the table qw::kCounterMetrics (front/counters.hpp);
// one the GPU does not offer is left out with the reason instead of failing the profile.
// libcupti is not linked: every symbol comes from the loader of cupti.cu (cupti_symbol, one handle for the
// activity tracer and this profiler), and the two never run at once (cupti_claim_counters).
// Host code only; compile-checked, never run on a GPU yet (test/gpu/counters.test.ts, qwlab counters).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "counters.hpp"

namespace qwc {

class RangeProfiler {
 public:
  // Claims CUPTI for counters mode and configures the range profiler on `device`'s current context. Throws
  // CudaError saying why it cannot run (no libcupti, a kernels-mode session holds the tracer, the GPU or driver
  // refuses profiling, no metric of the table available).
  explicit RangeProfiler(int device, size_t max_ranges = 512);
  ~RangeProfiler();
  RangeProfiler(const RangeProfiler &) = delete;
  RangeProfiler &operator=(const RangeProfiler &) = delete;

  // Which metrics of qw::kCounterMetrics are collected; for the others "metric X not available on this GPU: why".
  const std::array<bool, qw::CTR_COUNT> &collected() const { return collected_; }
  const std::vector<std::string> &unavailable() const { return unavailable_; }

  // Around the launches of one op: begin() resets the counter data and starts profiling; end() stops, decodes
  // and returns one row per kernel range in launch order (NaN for metrics not collected). Throws CudaError when
  // CUPTI fails or dropped ranges (more kernels than max_ranges).
  void begin();
  std::vector<qw::KernelCounters> end();

 private:
  void release() noexcept;  // stops, disables, frees the host object, gives CUPTI back
  struct Impl;
  std::unique_ptr<Impl> p_;
  std::array<bool, qw::CTR_COUNT> collected_{};
  std::vector<std::string> unavailable_;
};

}  // namespace qwc
