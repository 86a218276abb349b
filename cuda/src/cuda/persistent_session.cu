// persistent_session.cu — a CUDA decode step under decode = persistent (decode.cpp): checks what the arm supports
// (persistent_refusal: the error names the toggle and the reason), builds and uploads the plan once per batch size
// (persistent_plan.hpp), launches the persistent kernel (persistent.cuh) and the device sampler, and reads the
// tokens / logits out as the graph path does. Compile-checked only (docs/ARCHITECTURE.md §Persistent decode).
#include <map>

#include "decode.hpp"
#include "kvcache.hpp"
#include "persistent.cuh"
#include "persistent_trace.hpp"
#include "session.cuh"

namespace qw {
namespace cuda_backend {

// What the arm keeps per session: the plan's device copy per batch size, the counters, the partials, the layers'
// operand table, and the grid.
struct PersistState {
  struct PerBatch {
    persist::Plan plan;
    DBuf tasks, counters, ws;
    DBuf trace;  // events mode: the kernel's per-task stamps (PersistArgs::trace), made on first use
    std::shared_ptr<uint64_t> trace_host;  // their pinned host copy (copied without a synchronization)
  };
  std::map<int32_t, PerBatch> by_batch;
  DBuf layers;
  const void *kcache0 = nullptr;  // the cache the layers table points into (kvCache changes reallocate it)
  int32_t blocks = 0, n_split = 1;
};

static persist::Dims persist_dims(const Config &c, int32_t B) {
  persist::Dims d;
  d.batch = B; d.hidden = c.hidden_size; d.inter = c.intermediate_size; d.n_heads = c.num_heads;
  d.n_kv = c.num_kv_heads; d.head_dim = c.head_dim; d.vocab = c.vocab_size; d.layers = c.num_layers;
  return d;
}

void CudaSession::run_decode_persistent(const Step &st, Sink &sink, int32_t *out_tokens) {
  const Config &c = m_.cfg;
  const int32_t B = (int32_t)st.seq.size();
  persist::PersistRequest r;
  r.d = persist_dims(c, B);
  r.all_bf16 = m_.all_bf16;
  r.bf16_embed = m_.embed.m.type == qwc::WT_BF16 && m_.lm_head->type == qwc::WT_BF16;
  r.has_out_norm = m_.out_norm.p != nullptr;
  r.kv_bf16 = !kvq_.active() && st.toggles.kv_cache == KvCache::Bf16;
  r.marlin = gemv_marlin(st);
  r.tree = st.tree_base >= 0;
  // events mode records the kernel's dependency levels from its stamps; kernels (CUPTI) and counters modes see one
  // kernel and are refused
  const bool levels = marking_ == Marking::EVENTS && st.profiling_mode == QW_PROFILING_EVENTS;
  r.profiling = st.profiling && !levels;
  r.smem_optin = qwc::smem_optin_bytes();  // a batch whose staging cannot fit is refused by name
  for (int32_t l = 0; l < c.num_layers; ++l) {
    const Layer &L = m_.layers[size_t(l)];
    r.fused_qkv_pairs &= L.fused_qkv() && L.qkv_pairs;
    r.fused_gate_up &= L.fused_gu();
    r.gqa_native &= !gqa_broadcast(st, l);
    r.dca_off &= !dca_on(st, l);
    r.default_fusions &= ffn_arm(&st, l) == Ffn::FusedNormGemvSwiglu && norm_arm(&st, l) == Norm::FusedResidualNorm;
    for (int32_t h = 0; h < HOOK_LOGITS; ++h) r.hooks |= sink.wants((Hook)h, l);
  }
  const std::string why = persist::persistent_refusal(r);
  if (!why.empty()) throw Error(QW_ERR_UNSUPPORTED, "decode = persistent: " + why + "; or set decode = graph");

  if (!persist_) {
    persist_ = std::make_shared<PersistState>();
    persist_->blocks = qwc::persistent_blocks(r.d);
    persist_->n_split = persist::pick_splits(c.num_kv_heads, persist_->blocks, max_ctx_);
  }
  if (persist_->kcache0 != kcache(0)) {
    PersistState &ps = *persist_;
    ps.kcache0 = kcache(0);
    std::vector<qwc::PersistLayer> h((size_t)c.num_layers);
    for (int32_t l = 0; l < c.num_layers; ++l) {
      const Layer &L = m_.layers[size_t(l)];
      qwc::PersistLayer &p = h[size_t(l)];
      p.qkv = (const bf16 *)L.qkv.m.data; p.o = (const bf16 *)L.o.m.data;
      p.gate_up = (const bf16 *)L.gate_up.m.data; p.down = (const bf16 *)L.down.m.data;
      p.attn_norm = L.attn_norm.as<float>(); p.ffn_norm = L.ffn_norm.as<float>(); p.qkv_bias = L.qkv_bias.as<float>();
      p.kcache = kcache(l); p.vcache = vcache(l);
    }
    ps.layers = DBuf(h.size() * sizeof(qwc::PersistLayer));
    CK(cudaMemcpy(ps.layers.p, h.data(), ps.layers.bytes, cudaMemcpyHostToDevice));
  }
  PersistState &ps = *persist_;
  r.d.n_split = ps.n_split;
  auto it = ps.by_batch.find(B);
  if (it == ps.by_batch.end()) {
    PersistState::PerBatch pb;
    pb.plan = persist::build_plan(r.d, ps.blocks);
    pb.tasks = DBuf(pb.plan.tasks.size() * sizeof(persist::Task));
    CK(cudaMemcpy(pb.tasks.p, pb.plan.tasks.data(), pb.tasks.bytes, cudaMemcpyHostToDevice));
    pb.counters = DBuf((size_t)pb.plan.c.count() * 4);
    CK(cudaMemset(pb.counters.p, 0, pb.counters.bytes));  // the kernel leaves them zero (its last block resets)
    pb.ws = DBuf(qwc::persistent_ws_floats(r.d) * 4);
    it = ps.by_batch.emplace(B, std::move(pb)).first;
  }
  PersistState::PerBatch &pb = it->second;
  ensure_logits(max_batch_);
  qwc::PersistArgs a;
  a.logits = logits_.as<float>();
  a.x = x_.as<float>();
  a.q = q_.as<bf16>();
  a.z = z_.as<bf16>();
  a.h = h_.as<bf16>();
  a.ws = pb.ws.as<float>();
  a.counters = pb.counters.as<int32_t>();
  a.tasks = pb.tasks.as<const persist::Task>();
  a.n_tasks = (int32_t)pb.plan.tasks.size();
  a.c = pb.plan.c;
  a.layers = ps.layers.as<const qwc::PersistLayer>();
  a.embed = (const bf16 *)m_.embed.m.data;
  a.lm_head = (const bf16 *)m_.lm_head->data;
  a.out_norm = m_.out_norm.as<float>();
  a.inv_freq = m_.inv_freq.as<float>();
  a.tokens = d_tokens_; a.pos = d_pos_; a.slot = d_slot_; a.kv_len = d_len_;
  a.d = r.d;
  a.max_ctx = max_ctx_;
  a.eps = c.rms_eps;
  qwc::persistent_options(a);  // QW_PERSIST_RING=1 (the weight ring, default off), QW_PERSIST_PREFETCH=1 (the L2 prefetch, off by default)
  cudaEvent_t launch_ev = nullptr;
  if (levels) {
    if (!pb.trace.p) pb.trace = DBuf(pb.plan.tasks.size() * 3 * sizeof(uint64_t));
    CK(cudaMemsetAsync(pb.trace.p, 0, pb.trace.bytes, stream_));  // empty attention splits stay 0
    a.trace = pb.trace.as<uint64_t>();
    begin_op();  // the launch event (ev_open_); two pool events are free after it
    launch_ev = ev_open_;
  }
  qwc::launch_persistent_decode(a, ps.blocks, stream_);
  if (levels) {
    cudaEvent_t done = ev_pool_[ev_next_++];
    CK(cudaEventRecord(done, stream_));
    if (!pb.trace_host) {
      uint64_t *h = nullptr;
      CK(cudaMallocHost(&h, pb.trace.bytes));
      pb.trace_host = std::shared_ptr<uint64_t>(h, [](uint64_t *q) { cudaFreeHost(q); });
    }
    CK(cudaMemcpyAsync(pb.trace_host.get(), pb.trace.p, pb.trace.bytes, cudaMemcpyDeviceToHost, stream_));
    // the marks need the stamps: built after forward()'s synchronization, at this kernel's place among the marks
    const size_t at = marks_.size();
    const persist::Plan *plan = &pb.plan;
    std::shared_ptr<uint64_t> host = pb.trace_host;
    after_sync_ = [this, plan, host, launch_ev, done, &st, B, at] {
      float kernel_ms = 0;
      CK(cudaEventElapsedTime(&kernel_ms, launch_ev, done));
      persistent_level_marks(*plan, host.get(), launch_ev, kernel_ms, st, B, at);
    };
  }
  {
    OpScope op(*this, -1, QW_OP_SAMPLE, B);
    qwc::launch_sample(d_out_, logits_.as<float>(), d_samp_, wbuf_.as<double>(), B, c.vocab_size, c.vocab_size, stream_);
    op.set("sample_device", cost_sample(B, c.vocab_size));
  }
  read_out(st, sink, B, d_out_, B, false, out_tokens);
}

// One mark per dependency level (persistent_trace.hpp), with the graph path's op ids and cost models for what the level
// computes. The stamps run on %globaltimer and the events on the stream: each level keeps its stamped length, placed
// after the launch record (below) from the launch event, and the last level ends at the kernel's end event. An
// unreadable trace (a stamp going backwards) gives one record of the whole kernel rather than none.
void CudaSession::persistent_level_marks(const persist::Plan &plan, const uint64_t *trace, cudaEvent_t launch,
                                         float kernel_ms, const Step &st, int32_t B, size_t at) {
  const Config &c = m_.cfg;
  const int32_t H = c.hidden_size, I = c.intermediate_size;
  const std::vector<persist::TraceLevel> lv = persist::trace_levels(plan, trace, plan.tasks.size() * 3);
  OpMarks out;
  auto mark = [&](int32_t layer, int32_t op, const char *kernel, OpCost cost, float a_ms, float b_ms) {
    OpMark m{layer, op, kernel, cost, B, launch, nullptr};
    m.rel_a_ms = a_ms;
    m.rel_b_ms = std::max(a_ms, b_ms);
    out.push_back(m);
  };
  auto flush = [&] { marks_.insert(marks_.begin() + std::ptrdiff_t(std::min(at, marks_.size())), out.begin(), out.end()); };
  if (lv.empty()) {
    mark(-1, QW_OP_FUSED, "persistent_decode_kernel (trace unreadable)", OpCost{}, 0.f, kernel_ms);
    return flush();
  }
  const std::vector<OpCost> attn = attention_costs(st);
  // o_proj and down: the projection with the residual add in its epilogue (layers.cu's records of the fused arm)
  auto with_residual = [&](const DevMat &w) { return add(cost_of(w, B, false), cost_residual(B, H, 4.0)); };
  // The stamps' span sits inside the kernel's event time; what is left (the launch and the blocks' start before the
  // first stamp, the last block's counter reset and the exit after the last) is one record of its own, first. A span
  // longer than the event time (the two clocks' resolutions) is scaled down to it.
  const double g0 = double(lv.front().start_ns), span_ms = double(lv.back().end_ns - lv.front().start_ns) / 1e6;
  const double scale = span_ms > kernel_ms && span_ms > 0 ? kernel_ms / span_ms : 1.0;
  const float lead = float(std::max(0.0, kernel_ms - span_ms * scale));
  if (lead > 0.f) mark(-1, QW_OP_GAP, "decode = persistent: launch, block start, exit", OpCost{}, 0.f, lead);
  for (size_t i = 0; i < lv.size(); ++i) {
    const persist::TraceLevel &l = lv[i];
    const float a = lead + float((double(l.start_ns) - g0) / 1e6 * scale);
    const float b = i + 1 == lv.size() ? kernel_ms : lead + float((double(l.end_ns) - g0) / 1e6 * scale);
    const Layer *L = l.layer >= 0 && l.op != persist::T_EMBED ? &m_.layers[size_t(l.layer)] : nullptr;
    switch (l.op) {
      case persist::T_EMBED:
        mark(-1, QW_OP_EMBED, "persistent:embed", cost_embed(B, H, m_.embed.type, m_.embed.group, 4.0), a, b);
        break;
      case persist::T_QKV:
        mark(l.layer, QW_OP_QKV, "persistent:attn_norm+qkv+bias+rope+kv_write",
             add(add(cost_rmsnorm(B, H, 4.0), cost_of(L->qkv, B, true)), cost_rope(B, c.num_heads + c.num_kv_heads, c.head_dim, 2.0)),
             a, b);
        break;
      case persist::T_ATTN:
        mark(l.layer, QW_OP_ATTENTION, "persistent:attention_splitkv+combine", attn[size_t(l.layer)], a, b);
        break;
      case persist::T_OPROJ:
        mark(l.layer, QW_OP_O_PROJ, "persistent:o_proj+residual", with_residual(L->o), a, b);
        break;
      case persist::T_GATEUP:
        mark(l.layer, QW_OP_GATE_UP, "persistent:ffn_norm+gate_up+swiglu",
             add(add(cost_rmsnorm(B, H, 4.0), cost_of(L->gate_up, B, false)), cost_swiglu(B, I, 2.0)), a, b);
        break;
      case persist::T_DOWN:
        mark(l.layer, QW_OP_DOWN, "persistent:down+residual", with_residual(L->down), a, b);
        break;
      case persist::T_LMHEAD:
        mark(-1, QW_OP_LM_HEAD, "persistent:final_norm+lm_head",
             add(cost_rmsnorm(B, H, 4.0),
                 cost_matmul(B, c.vocab_size, H, (NativeType)m_.lm_head->type, m_.lm_head->group, false, 2.0)),
             a, b);
        break;
      default:
        break;
    }
  }
  flush();
}

}  // namespace cuda_backend
}  // namespace qw
