// api_records.cpp — profiling and activation capture entry points of qwen.h (docs/ARCHITECTURE.md §Measurement,
// §Hooks): the op-record buffer and the capture slots the backend fills through the Sink.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "api.hpp"

namespace {
// The index-th capture filled by the last step (qw_session_capture_count order).
const qw_session::Capture &filled_capture(qw_session *s, int32_t index) {
  if (index < 0 || size_t(index) >= s->filled.size())
    qw::fail(QW_ERR_NOT_FOUND, "capture index " + std::to_string(index) + " is out of range [0, " +
                                   std::to_string(s->filled.size()) + ")");
  return s->captures[size_t(s->filled[size_t(index)])];
}
}  // namespace

using qw::copy_out;
using qw::fail;
using qw::guard;
using qw::need;

extern "C" {

QW_API int32_t qw_session_set_profiling(qw_session *s, int32_t mode) {
  return guard([&] {
    need(s, "session");
    if (mode < 0 || mode >= QW_PROFILING_COUNT)
      fail(QW_ERR_INVALID_ARGUMENT, "profiling mode " + std::to_string(mode) +
                                        " is unknown: 0 = off, 1 = events, 2 = kernels, 3 = counters (qw_profiling_mode)");
    if (mode == s->profiling) return;
    s->bs->set_profiling(mode);
    s->profiling = mode;
  });
}

QW_API int32_t qw_session_records_pending(qw_session *s, int64_t *out_n, int64_t *out_dropped) {
  return guard([&] {
    need(s, "session");
    s->bs->drain_records(*s);
    std::lock_guard<std::mutex> lock(s->rec_mu);
    if (out_n) *out_n = int64_t(s->records.size());
    if (out_dropped) *out_dropped = s->dropped;
  });
}

QW_API int32_t qw_session_read_records(qw_session *s, qw_op_record *out, int64_t max, int64_t *out_n) {
  return guard([&] {
    need(s, "session");
    need(out_n, "out_n");
    *out_n = 0;
    if (max < 0) fail(QW_ERR_INVALID_ARGUMENT, "max must be >= 0");
    if (max > 0) need(out, "out");
    s->bs->drain_records(*s);
    std::lock_guard<std::mutex> lock(s->rec_mu);
    const int64_t n = std::min<int64_t>(max, int64_t(s->records.size()));
    for (int64_t i = 0; i < n; ++i) out[i] = s->records[size_t(i)];
    s->records.erase(s->records.begin(), s->records.begin() + ptrdiff_t(n));
    *out_n = n;
  });
}

QW_API int32_t qw_session_read_counters(qw_session *s, char *out, uint64_t cap, uint64_t *out_len) {
  return guard([&] {
    need(s, "session");
    size_t n = 0;
    const std::string doc = s->bs->counters_json(&n);
    copy_out(doc, out, cap, out_len);
    if (cap > doc.size()) s->bs->counters_take(n);  // read whole: those entries are delivered
  });
}

QW_API int32_t qw_session_set_capture(qw_session *s, const char *hooks) {
  return guard([&] {
    need(s, "session");
    std::vector<qw::HookRef> refs = qw::parse_hooks(hooks ? hooks : "", s->layers());
    const int32_t L = s->layers();
    std::vector<int32_t> slots(size_t(qw::HOOK_COUNT) * size_t(L + 1), -1);
    std::vector<qw_session::Capture> caps(refs.size());
    for (size_t i = 0; i < refs.size(); ++i) {
      slots[size_t(int64_t(refs[i].hook) * (L + 1) + refs[i].layer + 1)] = int32_t(i);
      caps[i].name = qw::hook_name(refs[i].hook, refs[i].layer);
    }
    s->hooks = std::move(refs);
    s->hook_slot = std::move(slots);
    s->captures = std::move(caps);
    s->filled.clear();
  });
}

QW_API int32_t qw_session_capture_count(qw_session *s, int32_t *out_n) {
  return guard([&] {
    need(s, "session");
    need(out_n, "out_n");
    *out_n = int32_t(s->filled.size());
  });
}

QW_API int32_t qw_session_capture_info(qw_session *s, int32_t index, char *name_out, uint64_t name_cap,
                                       int32_t *out_rows, int32_t *out_cols) {
  return guard([&] {
    need(s, "session");
    const auto &c = filled_capture(s, index);
    copy_out(c.name, name_out, name_cap, nullptr);
    if (out_rows) *out_rows = c.rows;
    if (out_cols) *out_cols = c.cols;
  });
}

QW_API int32_t qw_session_read_capture(qw_session *s, int32_t index, float *out, int64_t n_floats) {
  return guard([&] {
    need(s, "session");
    const auto &c = filled_capture(s, index);
    const int64_t want = int64_t(c.rows) * c.cols;
    if (want == 0) return;
    need(out, "out");
    if (n_floats < want)
      fail(QW_ERR_INVALID_ARGUMENT, "capture buffer holds " + std::to_string(n_floats) + " floats; " +
                                        std::to_string(want) + " needed");
    std::memcpy(out, c.data.data(), size_t(want) * sizeof(float));
  });
}

}  // extern "C"
