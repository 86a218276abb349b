// counters_json.cpp — CounterLog::json (counters.hpp), apart from counters.cpp so that the kernel lab can link the
// aggregation without the front's JSON writer.
#include <cmath>

#include "counters.hpp"
#include "json.hpp"

namespace qw {
namespace {
void num_or_null(JsonWriter &w, const char *key, double v) {
  w.key(key);
  if (std::isfinite(v)) w.value(v);
  else w.null();
}
}  // namespace

std::string CounterLog::json() const {
  JsonWriter w;
  w.begin_object();
  w.key("collected").begin_array();
  for (const CounterMetric &m : kCounterMetrics)
    if (collected_[size_t(m.id)]) w.value(m.metric);
  w.end_array();
  w.key("unavailable").begin_array();
  for (const std::string &s : unavailable_) w.value(s);
  w.end_array();
  w.key("ops").begin_array();
  for (const OpCounters &c : ops_) {
    w.begin_object();
    w.key("step").value(c.step);
    w.key("phase").value(c.phase);
    w.key("layer").value(c.layer);
    w.key("op").value(c.op);
    w.key("nth").value(c.nth);
    w.key("kernel").value(c.kernel);
    w.key("kernels").value(c.kernels);
    num_or_null(w, "dramRead", c.dram_read);
    num_or_null(w, "dramWrite", c.dram_write);
    num_or_null(w, "l2Hits", c.l2_hits);
    num_or_null(w, "l2Misses", c.l2_misses);
    num_or_null(w, "l2HitPct", c.l2_hit_pct());
    num_or_null(w, "durationNs", c.duration_ns);
    num_or_null(w, "smPct", c.sm_pct);
    num_or_null(w, "tensorPct", c.tensor_pct);
    w.end_object();
  }
  w.end_array();
  w.end_object();
  return w.str();
}

}  // namespace qw
