// kernel_trace.cu — see kernel_trace.cuh. Host code only.
#include "kernel_trace.cuh"

#include <algorithm>
#include <atomic>
#include <string>
#include <unordered_map>

#include "common.cuh"

namespace qw {
namespace {

std::atomic<uint64_t> g_session_serial{0};
std::atomic<uint64_t> g_graph_serial{0};

constexpr uint64_t kOpBits = 16;    // op index + 1 of an eager step (0: the step itself)
constexpr uint64_t kStepBits = 32;  // step serial within the session

template <typename F>
void cupti_guard(F &&f) {
  try {
    f();
  } catch (const qwc::CudaError &e) {
    throw Error(QW_ERR_DEVICE, e.what());
  }
}

}  // namespace

KernelTrace::KernelTrace() : serial_(++g_session_serial & 0xFFFF) {}

KernelTrace::~KernelTrace() {
  if (!on_) return;
  try {
    qwc::trace_forget(&KernelTrace::mine, this);
  } catch (...) {
  }
  qwc::trace_release();
}

bool KernelTrace::mine(uint64_t ext, void *self) {
  return (ext >> (kOpBits + kStepBits)) == static_cast<KernelTrace *>(self)->serial_;
}

void KernelTrace::enable(bool on) {
  if (on == on_) return;
  if (on) {
    std::string why;
    if (!qwc::trace_available(&why)) throw Error(QW_ERR_UNSUPPORTED, "profiling mode 'kernels' needs CUPTI: " + why);
    cupti_guard([] { qwc::trace_acquire(); });
  } else {
    qwc::trace_release();
  }
  on_ = on;
}

void KernelTrace::begin_step(int64_t step, int32_t phase, int64_t host_ns) {
  open_ = Step{};
  open_.ext = (serial_ << (kOpBits + kStepBits)) | ((++step_serial_ & 0xFFFFFFFFu) << kOpBits);
  open_.step = step;
  open_.phase = phase;
  open_.host0 = host_ns;
  cupti_guard([&] {
    open_.t0 = qwc::trace_now();
    qwc::trace_push(open_.ext);
  });
  step_open_ = true;
}

void KernelTrace::end_step(std::shared_ptr<const OpMarks> eager, std::shared_ptr<const GraphOps> graph,
                           std::vector<OpCost> attn_cost_by_layer, bool queued) {
  if (!step_open_) return;
  step_open_ = false;
  cupti_guard([&] {
    qwc::trace_pop();
    open_.t1 = qwc::trace_now();
  });
  open_.eager = std::move(eager);
  open_.graph = std::move(graph);
  open_.attn_cost = std::move(attn_cost_by_layer);
  open_.queued = queued;
  done_.push_back(std::move(open_));
}

void KernelTrace::begin_op(size_t index) {
  if (capturing_) return tag_op(index);
  if (!step_open_) return;
  cupti_guard([&] { qwc::trace_push(open_.ext + index + 1); });
}

void KernelTrace::end_op() {
  if (capturing_ || !step_open_) return;
  cupti_guard([] { qwc::trace_pop(); });
}

std::shared_ptr<GraphOps> KernelTrace::begin_capture() {
  capturing_ = std::make_shared<GraphOps>();
  capturing_->serial = ++g_graph_serial;
  qwc::trace_tag_begin(&capturing_->kernel_tags);
  return capturing_;
}

void KernelTrace::tag_op(size_t index) { qwc::trace_tag((capturing_->serial << kOpBits) | index); }

void KernelTrace::end_capture() {
  qwc::trace_tag_end();
  capturing_.reset();
}

void KernelTrace::drain(Sink &sink) {
  if (done_.empty()) return;
  std::vector<qwc::TracedActivity> acts;
  cupti_guard([&] { acts = qwc::trace_collect(&KernelTrace::mine, this); });
  std::unordered_map<uint64_t, std::vector<const qwc::TracedActivity *>> by_step;
  for (const auto &t : acts) by_step[t.external_id >> kOpBits].push_back(&t);
  uint64_t prev_end = 0;
  for (const Step &s : done_) prev_end = emit_step(s, by_step[s.ext >> kOpBits], prev_end, sink);
  done_.clear();
}

// Which op of the step an activity belongs to; -1 for copies and anything not attributable.
static int64_t op_index(const qwc::TracedActivity &t, const GraphOps *graph, size_t kernel_ordinal) {
  const uint64_t op = t.external_id & ((uint64_t(1) << 16) - 1);
  if (op > 0) return int64_t(op - 1);  // eager launch inside begin_op/end_op
  if (!graph || t.a.kind != qwc::TraceActivity::KERNEL) return -1;
  uint64_t tag = qwc::trace_node_tag(t.a.graph_node);
  if (tag == qwc::kNoTag || (tag >> 16) != graph->serial) {
    // linear chain: the k-th kernel of the replay is the k-th kernel node captured
    if (kernel_ordinal >= graph->kernel_tags.size()) return -1;
    tag = graph->kernel_tags[kernel_ordinal];
  }
  return int64_t(tag & 0xFFFF);
}

uint64_t KernelTrace::emit_step(const Step &s, std::vector<const qwc::TracedActivity *> &acts, uint64_t prev_end,
                                Sink &sink) const {
  std::sort(acts.begin(), acts.end(), [](const auto *a, const auto *b) {
    return a->a.start != b->a.start ? a->a.start < b->a.start : a->a.end < b->a.end;
  });
  const OpMarks *marks = s.graph ? &s.graph->marks : s.eager.get();
  std::vector<bool> costed(marks ? marks->size() : 0, false);
  auto host = [&](uint64_t t) { return s.host0 + int64_t(t) - int64_t(s.t0); };
  auto put = [&](int32_t layer, int32_t op, const std::string &kernel, OpCost cost, int32_t n, uint64_t a,
                 uint64_t b, uint64_t overlap) {
    qw_op_record r{};
    r.step = s.step;
    r.phase = s.phase;
    r.layer = layer;
    r.op = op;
    r.kernel = sink.kernel_id(kernel.c_str());
    r.t_start_ns = host(a);
    r.t_end_ns = host(b);
    r.flops = cost.flops;
    r.bytes = cost.bytes;
    r.n_tokens = n;
    r.overlap_ns = int32_t(std::min<uint64_t>(overlap, INT32_MAX));
    sink.record(r);
  };
  uint64_t cursor = s.queued ? std::max(s.t0, prev_end) : s.t0;
  size_t kernel_ordinal = 0;
  for (const qwc::TracedActivity *t : acts) {
    const bool is_kernel = t->a.kind == qwc::TraceActivity::KERNEL;
    const int64_t i = op_index(*t, s.graph.get(), is_kernel ? kernel_ordinal : SIZE_MAX);
    if (is_kernel) ++kernel_ordinal;
    const OpMark *m = (marks && i >= 0 && size_t(i) < marks->size()) ? &(*marks)[size_t(i)] : nullptr;
    const int32_t layer = m ? m->layer : -1;
    if (t->a.start > cursor) put(layer, QW_OP_GAP, "gap", OpCost{}, 0, cursor, t->a.start, 0);
    const uint64_t begin = std::min(std::max(t->a.start, cursor), t->a.end);
    const uint64_t overlap = begin - t->a.start;
    if (!m) {
      const bool copy = !is_kernel;
      put(-1, copy ? QW_OP_MEMCPY : QW_OP_FUSED, copy ? t->a.name : "unattributed · " + t->a.name, OpCost{}, 0, begin,
          t->a.end, overlap);
    } else {
      OpCost cost{};
      if (!costed[size_t(i)]) {  // an op's analytic cost goes on its first kernel's record
        costed[size_t(i)] = true;
        cost = m->cost;
        if (s.graph && m->op == QW_OP_ATTENTION && m->layer >= 0 && size_t(m->layer) < s.attn_cost.size())
          cost = s.attn_cost[size_t(m->layer)];
      }
      put(layer, m->op, std::string(m->kernel) + " · " + t->a.name, cost, m->n_tokens, begin, t->a.end, overlap);
    }
    cursor = std::max(cursor, t->a.end);
  }
  if (!s.queued && s.t1 > cursor) put(-1, QW_OP_GAP, "gap", OpCost{}, 0, cursor, s.t1, 0);
  return std::max(cursor, prev_end);
}

}  // namespace qw
