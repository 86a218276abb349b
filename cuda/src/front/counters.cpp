// counters.cpp — see counters.hpp. Host code only, no CUDA, no other front file (the kernel lab links it alone);
// the readout JSON is counters_json.cpp.
#include "counters.hpp"

#include <cmath>
#include <limits>

namespace qw {

// Names as Nsight Compute / CUPTI's host API spell them (sm_80 and sm_90). The L2 hit rate comes from the raw
// lookup counts (lts__t_sector_hit_rate.pct is their ratio, which cannot be summed over kernels). The tensor
// metric is the pipe's active cycles over all tensor instructions (HMMA from mma.sync and, on sm_90, GMMA),
// so it stays meaningful whichever MMA flavour a kernel uses.
const CounterMetric kCounterMetrics[CTR_COUNT] = {
    {CTR_DRAM_READ, "dram__bytes_read.sum"},
    {CTR_DRAM_WRITE, "dram__bytes_write.sum"},
    {CTR_L2_HIT, "lts__t_sectors_lookup_hit.sum"},
    {CTR_L2_MISS, "lts__t_sectors_lookup_miss.sum"},
    {CTR_DURATION, "gpu__time_duration.sum"},
    {CTR_SM_PCT, "sm__throughput.avg.pct_of_peak_sustained_elapsed"},
    {CTR_TENSOR_PCT, "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active"},
};

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Sum of one count over the kernels; NaN when any kernel lacks it (a metric is collected for all or none).
double sum_of(const std::vector<KernelCounters> &ks, CounterId id) {
  double s = 0;
  for (const KernelCounters &k : ks) s += k[size_t(id)];
  return s;
}

// Mean of a percentage weighted by each kernel's duration; NaN without durations or values.
double time_weighted(const std::vector<KernelCounters> &ks, CounterId id) {
  double num = 0, den = 0;
  for (const KernelCounters &k : ks) {
    const double w = k[CTR_DURATION], v = k[size_t(id)];
    if (std::isnan(w) || std::isnan(v)) return kNaN;
    num += v * w;
    den += w;
  }
  return den > 0 ? num / den : kNaN;
}

}  // namespace

double OpCounters::l2_hit_pct() const {
  const double n = l2_hits + l2_misses;
  return (std::isfinite(n) && n > 0) ? 100.0 * l2_hits / n : kNaN;
}

OpCounters aggregate_kernels(const std::vector<KernelCounters> &ks) {
  OpCounters c;
  c.kernels = int32_t(ks.size());
  c.dram_read = sum_of(ks, CTR_DRAM_READ);
  c.dram_write = sum_of(ks, CTR_DRAM_WRITE);
  c.l2_hits = sum_of(ks, CTR_L2_HIT);
  c.l2_misses = sum_of(ks, CTR_L2_MISS);
  c.duration_ns = sum_of(ks, CTR_DURATION);
  c.sm_pct = time_weighted(ks, CTR_SM_PCT);
  c.tensor_pct = time_weighted(ks, CTR_TENSOR_PCT);
  return c;
}

void CounterLog::add(int64_t step, int32_t phase, int32_t layer, int32_t op, const char *kernel, OpCounters c) {
  if (step != last_step_ || phase != last_phase_) {
    seen_.clear();
    last_step_ = step;
    last_phase_ = phase;
  }
  int32_t nth = 0;
  for (const auto &s : seen_) nth += (s[0] == layer && s[1] == op);
  seen_.push_back({layer, op});
  c.step = step;
  c.phase = phase;
  c.layer = layer;
  c.op = op;
  c.nth = nth;
  c.kernel = kernel ? kernel : "";
  ops_.push_back(std::move(c));
}

void CounterLog::take(size_t n) {
  if (n >= ops_.size()) ops_.clear();
  else ops_.erase(ops_.begin(), ops_.begin() + ptrdiff_t(n));
}

}  // namespace qw
