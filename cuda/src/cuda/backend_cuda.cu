// backend_cuda.cu — the CUDA backend behind backend.hpp (libqwen_cuda.so): the Backend, a session's buffers,
// forward() and op marking. The forward pass itself is built from the blocks of layers.cu (decode.cu, prefill.cu);
// the weights' device layouts are model_upload.cu's. docs/ARCHITECTURE.md §Layers.
//
// Decode step (batch B <= 16), 6 launches per layer, captured once per batch size as a CUDA graph that reads
// tokens/positions/slots from a device parameter block (one H2D copy, one replay, one D2H copy per token):
//   gemv[rmsnorm + qkv + bias] -> rope + KV write -> split-KV attention (+combine) ->
//   gemv[o_proj + residual] -> gemv[rmsnorm + gate_up + SwiGLU] -> gemv[down + residual]
//   then gemv[final norm + lm_head] -> device sampler (greedy / temperature / top-k / top-p, sample.cuh).
// Prefill: rmsnorm -> GEMM qkv (fp32 out) -> rope+KV (bias) -> flash attention (mma) -> GEMM o_proj (+= x) ->
//   rmsnorm -> GEMM gate_up -> SwiGLU -> GEMM down (+= x); logits only for the rows asked.
// Profiling (docs/ARCHITECTURE.md §Measurement): events mode runs eagerly with a cudaEvent pair per op; kernels
// mode keeps the graph and attributes CUPTI's kernel records to ops after the step (kernel_trace.cuh). Hooks
// (docs/ARCHITECTURE.md §Hooks) run eagerly and copy tensors to host.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>

#include "attention.cuh"
#include "cublaslt.cuh"
#include "dca.cuh"
#include "json.hpp"
#include "kvcache.hpp"
#include "registry.hpp"
#include "sampling.hpp"
#include "session.cuh"
#include "swiglu.cuh"
#include "tp_cuda.cuh"

namespace qw {

const char *const kBackendName = "cuda";

namespace cuda_backend {

void *dmalloc(size_t bytes) {
  if (bytes == 0) bytes = 16;
  void *p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw Error(QW_ERR_OUT_OF_MEMORY, "cudaMalloc of " + std::to_string(bytes) + " bytes failed: " +
                                          cudaGetErrorString(e));
  }
  return p;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

qwc::SampleRow sample_row(const Step &st, size_t i, int64_t position) {
  qwc::SampleRow r;
  r.temperature = st.temperature[i];
  r.top_k = st.top_k[i];
  r.top_p = st.top_p[i];
  r.u = st.temperature[i] > 0.f ? sample_uniform(st.seed[i], position) : 0.f;
  return r;
}

std::unique_ptr<BackendSession> CudaModel::new_session(int32_t max_batch, int32_t max_context, int32_t max_prefill) {
  return std::make_unique<CudaSession>(*this, max_batch, max_context, max_prefill);
}

// ---------------------------------------------------------------------------------------------- session
CudaSession::CudaSession(CudaModel &m, int32_t max_batch, int32_t max_context, int32_t max_prefill, const TpLink *tp)
    : m_(m), tp_(tp), max_batch_(max_batch), max_ctx_(max_context), max_prefill_(max_prefill) {
  if (max_batch > 16) throw Error(QW_ERR_UNSUPPORTED, "cuda backend: max_batch is limited to 16 (decode GEMV)");
  const Config &c = m.cfg;
  if (c.num_heads / c.num_kv_heads > 8) throw Error(QW_ERR_UNSUPPORTED, "cuda backend: more than 8 query heads per kv head");
  if (c.head_dim != 32 && c.head_dim != 64 && c.head_dim != 128)
    throw Error(QW_ERR_UNSUPPORTED, "cuda backend: head_dim must be 32, 64 or 128");
  CK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  int dev = 0, sms = 132;
  CK(cudaGetDevice(&dev));
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  n_split_ = qwc::decode_attn_pick_split(c.num_heads, c.num_kv_heads, max_context, sms);
  sms_ = sms;
  attn_ws_ = DBuf(qwc::decode_attn_ws_floats(max_batch, c.num_heads, c.head_dim, n_split_) * 4);
  attn_cnt_ = DBuf((size_t)max_batch * c.num_heads * 4);  // [B][nH]: one per block group (attention.cuh)
  CK(cudaMemset(attn_cnt_.p, 0, attn_cnt_.bytes));
  ensure_rows(std::max(max_batch, std::min(max_prefill, 512)));
  CK(cudaMallocHost(&hdparams_, kDParamBytes));
  dparams_ = DBuf(kDParamBytes);
  CK(cudaMallocHost(&hpsamp_, 16 * sizeof(qwc::SampleRow)));
  psamp_ = DBuf(16 * sizeof(qwc::SampleRow));
  wbuf_ = DBuf((size_t)16 * vocab() * sizeof(double));
  d_tokens_ = dparams_.as<int32_t>();
  d_pos_ = d_tokens_ + 16;
  d_slot_ = d_pos_ + 16;
  d_len_ = d_slot_ + 16;
  d_out_ = d_len_ + 16;
  d_samp_ = reinterpret_cast<qwc::SampleRow *>(d_out_ + 16);
  configure(StepToggles{});
}

CudaSession::~CudaSession() {
  drop_graphs();
  for (auto e : ev_pool_) cudaEventDestroy(e);
  if (hparams_) cudaFreeHost(hparams_);
  if (hdparams_) cudaFreeHost(hdparams_);
  if (hpsamp_) cudaFreeHost(hpsamp_);
  if (hsteps_params_) cudaFreeHost(hsteps_params_);
  if (hsteps_out_) cudaFreeHost(hsteps_out_);
  if (stream_) cudaStreamDestroy(stream_);
}

void CudaSession::configure(const StepToggles &t) {
  qw::kvq::KvType kt;
  if (!qw::kvq::parse_kv_type(value_name(t.kv_cache), &kt) || kt == qw::kvq::KvType::F32)
    throw Error(QW_ERR_UNSUPPORTED, "cuda backend: kvCache '" + value_name(t.kv_cache) + "' is not implemented (bf16, q8, kivi4, kivi2)");
  for (const LayerToggles &lt : t.layer)  // the DCA kernels read the plain bf16 cache
    if (lt.dca == Dca::On && kt != qw::kvq::KvType::BF16)
      throw Error(QW_ERR_UNSUPPORTED, "dca = on reads a bf16 KV cache on CUDA; kvCache = " + value_name(t.kv_cache) +
                                          " is not supported with it: set kvCache to bf16, or dca to off");
  const Config &c = m_.cfg;
  drop_graphs();  // graphs captured the old cache's pointers and kernels
  layer_kv_elems_ = (size_t)max_batch_ * c.num_kv_heads * max_ctx_ * c.head_dim;
  if (kt != qw::kvq::KvType::BF16) {
    kcache_.release();  // the quantized planes replace the bf16 cache (the memory saved)
    vcache_.release();
    kvq_.configure(kt, c.num_layers, max_batch_, c.num_kv_heads, max_ctx_, c.head_dim, c.num_heads, sms_);
    return;
  }
  kvq_.release();
  if (!kcache_.p) {
    kcache_ = DBuf(layer_kv_elems_ * c.num_layers * 2);
    vcache_ = DBuf(layer_kv_elems_ * c.num_layers * 2);
  }
}

void CudaSession::ensure_rows(int32_t rows) {
  rows = std::max(rows, max_batch_);
  if (rows <= rows_cap_) return;
  const Config &c = m_.cfg;
  const size_t R = rows, H = c.hidden_size, I = c.intermediate_size;
  const size_t QKV = c.q_dim() + 2 * c.kv_dim();
  x_ = DBuf(R * H * 4);
  xn_ = DBuf(R * H * 2);
  qkvf_ = DBuf(R * QKV * 4);
  q_ = DBuf(R * c.q_dim() * 2);
  dca_q2_ = DBuf(R * c.q_dim() * 2);
  dca_q3_ = DBuf(R * c.q_dim() * 2);
  dca_lse_ = DBuf(R * c.num_heads * 4);
  z_ = DBuf(R * c.q_dim() * 2);
  kout_ = DBuf(R * c.kv_dim() * 2);
  vout_ = DBuf(R * c.kv_dim() * 2);
  gu_ = DBuf(R * 2 * I * 2);
  h_ = DBuf(R * I * 2);
  gate_ = DBuf(R * I * 2);
  tmp_ = DBuf(R * H * 4);  // attn_out hook, lm_head row gather
  capf_.release();          // hook staging: allocated on first use (capture_bf16)
  // params: 5 int arrays of `rows`
  if (hparams_) cudaFreeHost(hparams_);
  CK(cudaMallocHost(&hparams_, R * 5 * 4));
  params_ = DBuf(R * 5 * 4);
  prow_cap_ = rows;
  p_tokens_ = params_.as<int32_t>();
  p_pos_ = p_tokens_ + R;
  p_slot_ = p_pos_ + R;
  p_len_ = p_slot_ + R;
  p_out_ = p_len_ + R;
  rows_cap_ = rows;
  drop_graphs();  // graphs captured pointers to the old buffers
}

void CudaSession::ensure_logits(int32_t rows) {
  if (rows <= logits_rows_) return;
  if (tp_) tp_ensure_logits(rows);
  logits_ = DBuf((size_t)rows * vocab() * 4);
  logits_rows_ = rows;
  drop_graphs();
}

// Per layer, the decode attention cost of this step (a graph's captured marks hold the capture step's).
std::vector<OpCost> CudaSession::attention_costs(const Step &st) const {
  const Config &c = m_.cfg;
  std::vector<OpCost> out((size_t)c.num_layers);
  for (int32_t l = 0; l < c.num_layers; ++l) {
    const bool bcast = gqa_broadcast(st, l);
    out[(size_t)l] = cost_attention(st.pos0, st.n_new, c.num_heads, bcast ? c.num_heads : c.num_kv_heads, c.head_dim,
                                    kv_cache_elem_bytes(st.toggles.kv_cache, c.head_dim), 2.0);
  }
  return out;
}

// gqa=broadcast scratch, allocated on first use (decode: before any capture).
void CudaSession::ensure_bcast() {
  if (bcast_k_.p) return;
  const Config &c = m_.cfg;
  const size_t n = (size_t)max_batch_ * c.num_heads * max_ctx_ * c.head_dim;
  bcast_k_ = DBuf(n * 2);
  bcast_v_ = DBuf(n * 2);
}

// dca = on decode: the key windows' workspace (opt/dca/dca.cuh), allocated on first use, before any capture.
void CudaSession::ensure_dca_ws() {
  if (dca_split_) return;
  const Config &c = m_.cfg;
  dca_split_ = qwc::dca_decode_split(c.num_heads, c.num_kv_heads, max_ctx_, sms_);
  if (dca_split_ > 1) dca_ws_ = DBuf(qwc::dca_decode_ws_floats(max_batch_, c.num_heads, c.head_dim, dca_split_) * 4);
}

void CudaSession::drop_graphs() {
  for (auto &g : graphs_) cudaGraphExecDestroy(g.second.exec);
  graphs_.clear();
}

void CudaSession::begin_op() {
  if (marking_ == Marking::TRACE) return trace_.begin_op(marks_.size());
  if (marking_ != Marking::EVENTS) return;
  if (ev_next_ + 2 > ev_pool_.size()) {
    for (int i = 0; i < 64; ++i) {
      cudaEvent_t e;
      CK(cudaEventCreate(&e));
      ev_pool_.push_back(e);
    }
  }
  // counters mode: L2 flushed outside the op (a memset is no kernel range), so the op's DRAM bytes are those of a
  // decode step of a model larger than L2, where each weight arrives cold
  if (counting_ && l2_flush_.p) CK(cudaMemsetAsync(l2_flush_.p, int(ev_next_ & 0xff), l2_flush_.bytes, stream_));
  ev_open_ = ev_pool_[ev_next_++];
  CK(cudaEventRecord(ev_open_, stream_));
  if (counting_) counters_->begin();  // after the event: the op's kernels are this op's ranges
}

void CudaSession::end_op(int32_t layer, int32_t op, const char *kernel, OpCost c, int32_t n) {
  if (marking_ == Marking::TRACE) {
    trace_.end_op();
    marks_.push_back({layer, op, kernel, c, n});
    return;
  }
  if (marking_ != Marking::EVENTS) return;
  if (counting_) {
    const std::vector<KernelCounters> ranges = counters_->end();  // every range since begin_op: this op's kernels
    counter_log_.add(step_index_, phase_, layer, op, kernel, aggregate_kernels(ranges));
  }
  cudaEvent_t e = ev_pool_[ev_next_++];
  CK(cudaEventRecord(e, stream_));
  marks_.push_back({layer, op, kernel, c, n, ev_open_, e});
}

// An op whose launch threw: no record; in kernels mode its external id is popped so that CUPTI's id stack stays
// balanced for forward()'s end_step, in counters mode the range profiler is stopped (its ranges dropped). Never
// throws (it runs while the launch's exception unwinds).
void CudaSession::abandon_op() {
  try {
    if (marking_ == Marking::TRACE) trace_.end_op();
    else if (counting_) counters_->end();
  } catch (...) {
  }
}

// Twice the device's L2 (evicts what the previous op left); 0 when QW_COUNTERS_L2_FLUSH=0 (measure with the L2
// as the op found it: activations the previous op wrote are then hits, as in an unprofiled step).
size_t CudaSession::l2_flush_bytes() {
  const char *env = std::getenv("QW_COUNTERS_L2_FLUSH");
  if (env && std::string(env) == "0") return 0;
  int dev = 0, l2 = 0;
  CK(cudaGetDevice(&dev));
  CK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  return size_t(2) * size_t(l2 > 0 ? l2 : 64 << 20);
}

// Kernels (activity tracer) and counters (range profiler) never run at once, in this session or the process
// (cupti_claim_counters): the old mode's CUPTI user is released before the new one is acquired, and restored
// when the new one is refused, so a refusal leaves the session as it was.
void CudaSession::set_profiling(int32_t mode) {
  const bool was_counters = counters_ != nullptr, was_kernels = trace_.enabled();
  if (mode == QW_PROFILING_COUNTERS) {
    if (was_counters) return;
    trace_.enable(false);
    try {
      start_counters();
    } catch (const std::exception &e) {
      if (was_kernels) trace_.enable(true);
      throw Error(QW_ERR_UNSUPPORTED, e.what());
    }
    return;
  }
  counters_.reset();
  l2_flush_ = DBuf();
  try {
    trace_.enable(mode == QW_PROFILING_KERNELS);
  } catch (...) {
    if (was_counters) {
      try {
        start_counters();
      } catch (...) {  // the old mode cannot be restored: the session is left with profiling off (front: old mode)
      }
    }
    throw;
  }
}

// The range profiler on the current device, what it collects told to the counter log, and the L2 flush buffer:
// everything counters mode holds, made in one place so a restore after a refused switch is the same as a start.
void CudaSession::start_counters() {
  int dev = 0;
  CK(cudaGetDevice(&dev));
  counters_ = std::make_unique<qwc::RangeProfiler>(dev);
  counter_log_.set_collected(counters_->collected(), counters_->unavailable());
  l2_flush_ = DBuf(l2_flush_bytes());
}

void CudaSession::capture_f32(Sink &sink, Hook h, int32_t layer, const float *p, int32_t rows, int32_t cols) {
  if (!sink.wants(h, layer)) return;
  hbuf_.resize((size_t)rows * cols);
  CK(cudaMemcpyAsync(hbuf_.data(), p, hbuf_.size() * 4, cudaMemcpyDeviceToHost, stream_));
  CK(cudaStreamSynchronize(stream_));
  sink.capture(h, layer, hbuf_.data(), rows, cols);
}
void CudaSession::capture_bf16(Sink &sink, Hook h, int32_t layer, const bf16 *p, int32_t rows, int32_t cols) {
  if (!sink.wants(h, layer)) return;
  const size_t need = (size_t)rows * cols * 4;
  if (capf_.bytes < need) capf_ = DBuf(need);
  dev_guard([&] { qwc::launch_bf16_to_f32(capf_.as<float>(), p, (int64_t)rows * cols, stream_); return 0; });
  capture_f32(sink, h, layer, capf_.as<float>(), rows, cols);
}

bool CudaSession::wants_any(const Step &, Sink &sink) const {
  for (int32_t h = 0; h < HOOK_LOGITS; ++h)
    for (int32_t l = 0; l < m_.cfg.num_layers; ++l)
      if (sink.wants((Hook)h, l)) return true;
  return sink.wants(HOOK_LOGITS, -1);
}

// gemv = marlin: packs (once per model) and this session's split-K scratch, before any op or graph capture.
void CudaSession::ensure_marlin() {
  m_.ensure_marlin();
  if (m_.marlin_part_bytes > mws_part_.bytes) mws_part_ = DBuf(m_.marlin_part_bytes);
  const size_t cnt_bytes = (size_t)m_.marlin_cnt_n * 4;
  if (cnt_bytes > mws_cnt_.bytes) {
    mws_cnt_ = DBuf(cnt_bytes);
    CK(cudaMemset(mws_cnt_.p, 0, cnt_bytes));
  }
}

// gemv = marlin: bf16 weights on gemv_mma.cu's tensor cores (a.tc), W4 / W8 weights on their packed units (a.mw).
void CudaSession::marlin_args(qwc::GemvArgs &a, const DevMat &d) const {
  a.tc = marlin_;
  if (!marlin_) return;
  if (d.mm.data) a.mw = &d.mm;  // the scratch also serves bf16 matrices (gemv_mma.cu's split over blocks)
  a.mws.part = mws_part_.as<float>();
  a.mws.part_bytes = mws_part_.bytes;
  a.mws.cnt = mws_cnt_.as<int32_t>();
  a.mws.cnt_n = (int32_t)(mws_cnt_.bytes / 4);
  a.mws.xn = xn_.p;  // decode does not use xn_ otherwise (prefill's rmsnorm output): the norm prologue's rows
  a.mws.xn_elems = (int64_t)(xn_.bytes / 2);
}

// actQuant = int8: the scratch holds 16 rows of the widest GEMV input (hidden, q heads or the FFN's intermediate).
void CudaSession::ensure_i8(const Step &st) {
  if (i8q_.p) return;
  bool any = false;
  for (int32_t l = 0; l < m_.cfg.num_layers && !any; ++l) any = act_i8(&st, l);
  if (!any) return;
  const Config &c = m_.cfg;
  const int64_t kmax = std::max<int64_t>({c.hidden_size, c.q_dim(), c.intermediate_size});
  i8q_ = DBuf((size_t)qwc::i8ws_q_bytes(kmax));
  i8dx_ = DBuf((size_t)qwc::i8ws_dx_floats(kmax) * 4);
}

void CudaSession::i8_args(qwc::GemvArgs &a, bool on) const {
  a.i8 = on;
  if (!on || !i8q_.p) return;
  a.i8ws.q = i8q_.as<int8_t>();
  a.i8ws.q_bytes = (int64_t)i8q_.bytes;
  a.i8ws.dx = i8dx_.as<float>();
  a.i8ws.dx_floats = (int64_t)(i8dx_.bytes / 4);
}

// The per-step state a forward starts from (gemv = marlin's scratch, how ops are marked, no marks yet); true where
// kernels mode traces the step.
bool CudaSession::begin_forward(const Step &st) {
  marlin_ = gemv_marlin(st);
  if (marlin_) ensure_marlin();
  ensure_i8(st);
  const bool kernels = st.profiling_mode == QW_PROFILING_KERNELS && trace_.enabled();
  prof_ = st.profiling && !kernels;  // events and counters modes: eager launches, an event pair per op
  marking_ = kernels ? Marking::TRACE : prof_ ? Marking::EVENTS : Marking::NONE;
  counting_ = false;  // forward sets it after the step's opening event (that begin_op is not an op)
  marks_.clear();
  after_sync_ = nullptr;
  replayed_.reset();
  ev_next_ = 0;
  step_index_ = st.step_index;
  phase_ = st.phase;
  return kernels;
}

void CudaSession::forward(const Step &st, Sink &sink, int32_t *out_tokens) {
  // toggle tile = auto: every GEMV / GEMM launch of the step (and a graph captured in it) reads tiles_
  qwc::CudaTileScope tile_scope(st.toggles.tile == Tile::Auto ? &tiles_ : nullptr);
  dev_guard([&] {
    const bool kernels = begin_forward(st);
    host0_ns_ = now_ns();
    cudaEvent_t ev0 = nullptr;
    if (prof_) {
      begin_op();
      ev0 = ev_open_;
    }
    counting_ = st.profiling_mode == QW_PROFILING_COUNTERS && counters_ != nullptr;
    if (kernels) trace_.begin_step(st.step_index, st.phase, host0_ns_);
    try {
      if (st.phase == QW_PHASE_DECODE) run_decode(st, sink, out_tokens);
      else run_prefill(st, sink, out_tokens);
    } catch (...) {
      if (kernels) trace_.end_step(nullptr, nullptr, {});  // keeps CUPTI's id stack balanced
      counting_ = false;
      after_sync_ = nullptr;
      throw;
    }
    counting_ = false;
    if (kernels && replayed_) trace_.end_step(nullptr, replayed_, attention_costs(st));
    else if (kernels) trace_.end_step(std::make_shared<const OpMarks>(std::move(marks_)), nullptr, {});
    if (prof_) {
      CK(cudaStreamSynchronize(stream_));
      if (after_sync_) {
        const std::function<void()> f = std::move(after_sync_);
        after_sync_ = nullptr;
        f();
      }
      for (const OpMark &mk : marks_) {
        float a = 0, b = 0;
        CK(cudaEventElapsedTime(&a, ev0, mk.a));
        if (mk.rel_a_ms >= 0.f) {  // a span inside one kernel, relative to its launch event
          b = a + mk.rel_b_ms;
          a += mk.rel_a_ms;
        } else {
          CK(cudaEventElapsedTime(&b, ev0, mk.b));
        }
        qw_op_record r{};
        r.step = step_index_;
        r.phase = phase_;
        r.layer = mk.layer;
        r.op = mk.op;
        r.kernel = sink.kernel_id(mk.kernel);
        r.t_start_ns = host0_ns_ + (int64_t)(a * 1e6);
        r.t_end_ns = host0_ns_ + (int64_t)(b * 1e6);
        r.flops = mk.cost.flops;
        r.bytes = mk.cost.bytes;
        r.n_tokens = mk.n_tokens;
        sink.record(r);
      }
    }
    return 0;
  });
}

}  // namespace cuda_backend

// ---------------------------------------------------------------------------------------------- backend
namespace {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
      cudaGetLastError();
      throw Error(QW_ERR_DEVICE, std::string("no usable CUDA device: ") +
                                     (e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount returned 0"));
    }
    if (device < 0 || device >= n) throw Error(QW_ERR_INVALID_ARGUMENT, "device " + std::to_string(device) + " out of range");
    CK(cudaSetDevice(device));
    CK(cudaGetDeviceProperties(&prop_, device));
  }
  const char *name() const override { return "cuda"; }
  std::string info_json() const override {
    int drv = 0, rt = 0;
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    int clk = 0, mclk = 0;
    cudaDeviceGetAttribute(&clk, cudaDevAttrClockRate, device_);
    cudaDeviceGetAttribute(&mclk, cudaDevAttrMemoryClockRate, device_);
    JsonWriter w;
    w.begin_object();
    w.key("backend").value("cuda");
    w.key("name").value(prop_.name);
    w.key("sms").value((int32_t)prop_.multiProcessorCount);
    w.key("clock_mhz").value((double)clk / 1000.0);
    w.key("mem_clock_mhz").value((double)mclk / 1000.0);
    w.key("memory_bytes").value((double)prop_.totalGlobalMem);
    size_t free_b = 0, total_b = 0;  // in use now, device-wide (every process): what a notebook diffs around a step
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) w.key("memory_used_bytes").value((double)(total_b - free_b));
    else cudaGetLastError();
    w.key("driver").value(std::to_string(drv / 1000) + "." + std::to_string((drv % 1000) / 10));
    w.key("runtime").value(std::to_string(rt / 1000) + "." + std::to_string((rt % 1000) / 10));
    w.key("cc").value(std::to_string(prop_.major) + "." + std::to_string(prop_.minor));
    w.key("gemm").value(qwc::cublaslt_status());
    w.end_object();
    return w.str();
  }
  std::unique_ptr<BackendModel> new_model(const Config &cfg) override {
    CK(cudaSetDevice(device_));
    if (cfg.tp > 1) return cuda_backend::tp_cuda_model(cfg, device_);  // parallel = tpN (cuda/tp_cuda.cuh)
    return std::make_unique<cuda_backend::CudaModel>(cfg);
  }

 private:
  int device_;
  cudaDeviceProp prop_{};
};

}  // namespace

std::unique_ptr<Backend> create_backend(const std::string &options_json) {
  int device = 0;
  const size_t p = options_json.find("\"device\"");
  if (p != std::string::npos) {
    const size_t c = options_json.find(':', p);
    if (c != std::string::npos) device = std::atoi(options_json.c_str() + c + 1);
  }
  return std::make_unique<CudaBackend>(device);
}

}  // namespace qw
