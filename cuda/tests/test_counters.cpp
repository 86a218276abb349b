// test_counters.cpp — profiling mode "counters" on the host (src/front/counters.hpp): the metric table, the per-op
// sums (bytes add, the L2 hit rate from summed sector counts, throughput weighted by kernel time), the readout JSON
// (absent metrics as null, "nth" for repeated ops, take-on-read), and the CPU backend refusing the mode with a clear
// message and staying usable.
// The CUPTI calls themselves (src/cuda/range_profiler.cu) are compile-checked only: test/gpu/counters.test.ts.
#include <cmath>
#include <limits>
#include <string>

#include "counters.hpp"
#include "json.hpp"
#include "refmodel.hpp"

using namespace qw;

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

KernelCounters kernel(double rd, double wr, double hit, double miss, double ns, double sm, double tc) {
  return {rd, wr, hit, miss, ns, sm, tc};
}

bool near(double a, double b) { return std::fabs(a - b) <= 1e-9 * std::max(1.0, std::fabs(b)); }

void table() {
  std::string seen;
  for (int32_t i = 0; i < CTR_COUNT; ++i) {
    CHECK(kCounterMetrics[i].id == CounterId(i), "table row %d in CounterId order", i);
    const std::string m = kCounterMetrics[i].metric;
    CHECK(m.find("__") != std::string::npos && m.find('.') != std::string::npos, "metric name %s", m.c_str());
    CHECK(seen.find("|" + m + "|") == std::string::npos, "metric %s once", m.c_str());
    seen += "|" + m + "|";
  }
  CHECK(std::string(kCounterMetrics[CTR_DRAM_READ].metric) == "dram__bytes_read.sum", "DRAM read metric");
  CHECK(std::string(kCounterMetrics[CTR_DRAM_WRITE].metric) == "dram__bytes_write.sum", "DRAM write metric");
}

void aggregation() {
  // Two kernels: a GEMV streaming 1 MB (long, little reuse) and a tiny epilogue (short, all hits).
  const std::vector<KernelCounters> ks = {kernel(1e6, 1e3, 100, 900, 3000, 80, 10),
                                          kernel(2e3, 5e2, 50, 0, 1000, 20, 0)};
  const OpCounters c = aggregate_kernels(ks);
  CHECK(c.kernels == 2, "kernels %d", c.kernels);
  CHECK(near(c.dram_read, 1002000) && near(c.dram_write, 1500), "bytes add: %g %g", c.dram_read, c.dram_write);
  // sector-weighted: 150 / 1050, not the mean of 10 % and 100 %
  CHECK(near(c.l2_hit_pct(), 100.0 * 150 / 1050), "L2 hit rate from summed sectors: %g", c.l2_hit_pct());
  CHECK(near(c.duration_ns, 4000), "duration adds: %g", c.duration_ns);
  CHECK(near(c.sm_pct, (80.0 * 3000 + 20.0 * 1000) / 4000), "SM %% weighted by time: %g", c.sm_pct);
  CHECK(near(c.tensor_pct, 10.0 * 3000 / 4000), "tensor %% weighted by time: %g", c.tensor_pct);

  // A metric the GPU does not offer (NaN in every kernel row): that value is absent, the others stay.
  const std::vector<KernelCounters> partial = {kernel(10, 0, 1, 1, 5, 50, kNaN), kernel(30, 0, 3, 1, 15, 10, kNaN)};
  const OpCounters p = aggregate_kernels(partial);
  CHECK(near(p.dram_read, 40) && std::isnan(p.tensor_pct) && near(p.sm_pct, 20), "partial: %g %g %g", p.dram_read,
        p.tensor_pct, p.sm_pct);
  CHECK(near(p.l2_hit_pct(), 100.0 * 4 / 6), "partial hit rate %g", p.l2_hit_pct());

  // No kernel (an op that launched nothing): zero bytes, no rate.
  const OpCounters z = aggregate_kernels({});
  CHECK(z.kernels == 0 && z.dram_read == 0 && std::isnan(z.l2_hit_pct()) && std::isnan(z.sm_pct), "empty op");
}

void log_json() {
  CounterLog log;
  std::array<bool, CTR_COUNT> on{};
  on.fill(true);
  on[CTR_TENSOR_PCT] = false;
  log.set_collected(on, {"metric sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active not available on "
                         "this GPU: test"});
  const OpCounters a = aggregate_kernels({kernel(100, 10, 3, 1, 50, 40, kNaN)});
  log.add(7, QW_PHASE_DECODE, 0, QW_OP_RESIDUAL, "residual_add", a);
  log.add(7, QW_PHASE_DECODE, 0, QW_OP_DOWN, "gemv", a);
  log.add(7, QW_PHASE_DECODE, 0, QW_OP_RESIDUAL, "residual_add", a);
  log.add(8, QW_PHASE_DECODE, 0, QW_OP_RESIDUAL, "residual_add", a);
  CHECK(log.size() == 4, "four ops");
  const Json j = parse_json_object(log.json().c_str(), "counters");
  const Json *ops = j.get("ops");
  CHECK(ops && ops->arr.size() == 4, "ops array");
  if (ops && ops->arr.size() == 4) {
    CHECK(ops->arr[0].get("nth")->num == 0 && ops->arr[2].get("nth")->num == 1, "second residual is nth 1");
    CHECK(ops->arr[3].get("nth")->num == 0, "nth restarts with the step");
    CHECK(ops->arr[0].get("tensorPct")->kind == Json::Null, "absent metric is null");
    CHECK(near(ops->arr[0].get("l2HitPct")->num, 75), "l2HitPct in JSON");
    CHECK(near(ops->arr[0].get("dramRead")->num, 100) && ops->arr[1].get("kernel")->str == "gemv", "values");
  }
  const Json *col = j.get("collected");
  CHECK(col && col->arr.size() == size_t(CTR_COUNT - 1), "collected lists the available metrics");
  const Json *un = j.get("unavailable");
  CHECK(un && un->arr.size() == 1 && un->arr[0].str.find("not available on this GPU") != std::string::npos,
        "unavailable names the metric");
  log.take(3);
  CHECK(log.size() == 1 && log.ops()[0].step == 8, "take forgets the read ops");
}

// The CPU backend refuses counters mode, keeps its old mode, and the readout is an empty document.
void cpu_refuses() {
  RefConfig cfg;
  const RefModel ref(cfg, 5, [](const std::string &, int64_t) { return QW_GGML_F32; });
  Run r(ref);
  CHECK_OK(qw_session_set_profiling(r.s, QW_PROFILING_EVENTS));
  CHECK_ST(qw_session_set_profiling(r.s, QW_PROFILING_COUNTERS), QW_ERR_UNSUPPORTED);
  const std::string why = qw_last_error();
  CHECK(why.find("counters") != std::string::npos && why.find("CUDA") != std::string::npos &&
            why.find("CUPTI") != std::string::npos,
        "message names the mode, CUDA and CUPTI: %s", why.c_str());
  CHECK(std::string(qw_profiling_mode_name(QW_PROFILING_COUNTERS)) == "counters", "mode name");
  // still usable, still in events mode: a prefill gives records
  const int32_t toks[3] = {1, 2, 3};
  int32_t next = 0;
  CHECK_OK(qw_session_prefill(r.s, 0, toks, 3, &next));
  int64_t n = 0, dropped = 0;
  CHECK_OK(qw_session_records_pending(r.s, &n, &dropped));
  CHECK(n > 0, "events mode kept: %lld records", (long long)n);
  uint64_t len = 0;
  CHECK_OK(qw_session_read_counters(r.s, nullptr, 0, &len));
  std::string buf(size_t(len) + 1, '\0');
  CHECK_OK(qw_session_read_counters(r.s, buf.data(), buf.size(), &len));
  const Json j = parse_json_object(buf.c_str(), "counters");
  CHECK(j.get("ops") && j.get("ops")->arr.empty() && j.get("collected")->arr.empty(), "no counters on the CPU: %s",
        buf.c_str());
  CHECK_ST(qw_session_read_counters(nullptr, nullptr, 0, &len), QW_ERR_INVALID_ARGUMENT);
}
}  // namespace

int main() {
  table();
  aggregation();
  log_json();
  cpu_refuses();
  return finish("test_counters");
}
