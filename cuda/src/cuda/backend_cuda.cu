// backend_cuda.cu — the CUDA backend behind backend.hpp (libqwen_cuda.so).
//
// Weights live on the device in their native layouts (gemv.cuh WMat). At finalize, q/k/v of a layer are fused
// into one matrix (rows q | k | v) and gate/up into one matrix with interleaved rows (2j = gate j, 2j+1 = up j)
// when the parts share a type and group; otherwise they stay separate (a Q4_K_M file mixes types).
//
// Decode step (batch B <= 16), 6 launches per layer, captured once per batch size as a CUDA graph that reads
// tokens/positions/slots from a device parameter block (one H2D copy, one replay, one D2H copy per token):
//   gemv[rmsnorm + qkv + bias] -> rope + KV write -> split-KV attention (+combine) ->
//   gemv[o_proj + residual] -> gemv[rmsnorm + gate_up + SwiGLU] -> gemv[down + residual]
//   then gemv[final norm + lm_head] -> device sampler (greedy / temperature / top-k / top-p, sample.cuh).
// Prefill: rmsnorm -> GEMM qkv (fp32 out) -> rope+KV (bias) -> flash attention (mma) -> GEMM o_proj (+= x) ->
//   rmsnorm -> GEMM gate_up -> SwiGLU -> GEMM down (+= x); logits only for the rows asked.
// Profiling: events mode runs eagerly with a cudaEvent pair per op; kernels mode keeps the graph and attributes
// CUPTI's kernel records to ops after the step (kernel_trace.cuh). Hooks run eagerly and copy tensors to host.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "attention.cuh"
#include "backend.hpp"
#include "common.cuh"
#include "cost.hpp"
#include "gqa.hpp"
#include "graphs.hpp"
#include "kvcache.hpp"
#include "registry.hpp"
#include "cublaslt.cuh"
#include "embed.cuh"
#include "gemm.cuh"
#include "gemv.cuh"
#include "json.hpp"
#include "kernel_trace.cuh"
#include "norm.cuh"
#include "rope.cuh"
#include "sample.cuh"
#include "sampling.hpp"
#include "swiglu.cuh"

namespace qw {

const char *const kBackendName = "cuda";

namespace {

#define CK(stmt)                                                                          \
  do {                                                                                    \
    try {                                                                                 \
      QWC_CHECK(stmt);                                                                    \
    } catch (const qwc::CudaError &e__) {                                                 \
      throw Error(QW_ERR_DEVICE, e__.what());                                             \
    }                                                                                     \
  } while (0)

template <typename F>
auto dev_guard(F &&f) -> decltype(f()) {
  try {
    return f();
  } catch (const qwc::CudaError &e) {
    throw Error(QW_ERR_DEVICE, e.what());
  }
}

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

// A device allocation with ownership.
struct DBuf {
  void *p = nullptr;
  size_t bytes = 0;
  DBuf() = default;
  explicit DBuf(size_t n) : p(dmalloc(n)), bytes(n) {}
  DBuf(const DBuf &) = delete;
  DBuf &operator=(const DBuf &) = delete;
  DBuf(DBuf &&o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr; o.bytes = 0; }
  DBuf &operator=(DBuf &&o) noexcept {
    if (this != &o) { release(); p = o.p; bytes = o.bytes; o.p = nullptr; o.bytes = 0; }
    return *this;
  }
  ~DBuf() { release(); }
  void release() { if (p) cudaFree(p); p = nullptr; bytes = 0; }
  template <typename T> T *as() const { return reinterpret_cast<T *>(p); }
};

// A weight on the device.
struct DevMat {
  qwc::WMat m;
  NativeType type = NativeType::BF16;
  int32_t group = 0;
  DBuf data, scale, offset;
  bool present() const { return m.data != nullptr; }
};

// Builds a device matrix from host parts stacked by a row order: order[i] = (part, row in part).
DevMat upload_rows(const std::vector<const NativeTensor *> &parts,
                   const std::vector<std::pair<int, int64_t>> &order) {
  const NativeTensor &p0 = *parts[0];
  DevMat d;
  d.type = p0.type;
  d.group = p0.group;
  const int64_t cols = p0.cols, rows = (int64_t)order.size();
  size_t row_bytes = 0;
  switch (p0.type) {
    case NativeType::F32: row_bytes = cols * 4; break;
    case NativeType::F16: case NativeType::BF16: row_bytes = cols * 2; break;
    case NativeType::W8: row_bytes = cols; break;
    case NativeType::W4: row_bytes = cols / 2; break;
  }
  const int64_t gpr = p0.group ? cols / p0.group : 0;
  std::vector<uint8_t> h(row_bytes * rows);
  std::vector<float> hs(gpr * rows), ho(gpr * rows);
  for (int64_t r = 0; r < rows; ++r) {
    const NativeTensor &t = *parts[order[r].first];
    const int64_t src = order[r].second;
    std::memcpy(h.data() + r * row_bytes, t.data.data() + src * row_bytes, row_bytes);
    if (gpr) {
      std::memcpy(hs.data() + r * gpr, t.scale.data() + src * gpr, gpr * 4);
      std::memcpy(ho.data() + r * gpr, t.offset.data() + src * gpr, gpr * 4);
    }
  }
  d.data = DBuf(h.size());
  CK(cudaMemcpy(d.data.p, h.data(), h.size(), cudaMemcpyHostToDevice));
  if (gpr) {
    d.scale = DBuf(hs.size() * 4);
    d.offset = DBuf(ho.size() * 4);
    CK(cudaMemcpy(d.scale.p, hs.data(), hs.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d.offset.p, ho.data(), ho.size() * 4, cudaMemcpyHostToDevice));
  }
  d.m.data = d.data.p;
  d.m.scale = d.scale.as<float>();
  d.m.offset = d.offset.as<float>();
  d.m.rows = rows;
  d.m.cols = cols;
  d.m.group = p0.group;
  d.m.type = (int32_t)p0.type;
  return d;
}
DevMat upload(const NativeTensor &t) {
  std::vector<std::pair<int, int64_t>> order(t.rows);
  for (int64_t r = 0; r < t.rows; ++r) order[r] = {0, r};
  return upload_rows({&t}, order);
}
DBuf upload_vec(const NativeTensor &t) {
  DBuf b(t.data.size());
  CK(cudaMemcpy(b.p, t.data.data(), t.data.size(), cudaMemcpyHostToDevice));
  return b;
}
bool same_layout(const NativeTensor &a, const NativeTensor &b) {
  return a.type == b.type && a.group == b.group && a.cols == b.cols;
}

struct Layer {
  DBuf attn_norm, ffn_norm, qkv_bias;  // fp32
  DevMat qkv;                          // fused q|k|v (when the types agree)
  DevMat q, k, v;                      // else separate
  DevMat gate_up;                      // interleaved (when the types agree)
  DevMat gate, up;                     // else separate
  DevMat o, down;
  bool qkv_pairs = false;              // fused q|k|v rows pair-interleaved for GEMV_EPI_QKV_ROPE (gemv.cuh)
  bool fused_qkv() const { return qkv.present(); }
  bool fused_gu() const { return gate_up.present(); }
};

class CudaModel;
constexpr size_t kDParamBytes = 5 * 16 * 4 + 16 * sizeof(qwc::SampleRow);

qwc::SampleRow sample_row(const Step &st, size_t i, int64_t position) {
  qwc::SampleRow r;
  r.temperature = st.temperature[i];
  r.top_k = st.top_k[i];
  r.top_p = st.top_p[i];
  r.u = st.temperature[i] > 0.f ? sample_uniform(st.seed[i], position) : 0.f;
  return r;
}

class CudaSession final : public BackendSession {
 public:
  CudaSession(CudaModel &m, int32_t max_batch, int32_t max_context, int32_t max_prefill);
  ~CudaSession() override;
  void configure(const StepToggles &t) override;
  void forward(const Step &step, Sink &sink, int32_t *out_tokens) override;
  void reset(int32_t) override {}
  void set_profiling(int32_t mode) override { trace_.enable(mode == QW_PROFILING_KERNELS); }
  void drain_records(Sink &sink) override { dev_guard([&] { trace_.drain(sink); return 0; }); }

 private:
  // What begin_op/end_op do: nothing, a cudaEvent pair (events mode), or CUPTI attribution (kernels mode:
  // an external id around eager launches, a node tag while capturing the decode graph).
  enum class Marking { NONE, EVENTS, TRACE };
  struct Graph {
    cudaGraphExec_t exec = nullptr;
    std::shared_ptr<const GraphOps> ops;  // kernels mode: the ops of its kernel nodes
  };
  // --- helpers
  bool marking() const { return marking_ != Marking::NONE; }
  void begin_op();
  void end_op(int32_t layer, int32_t op, const char *kernel, OpCost c, int32_t n);
  void drop_graphs();
  std::vector<OpCost> attention_costs(const Step &st) const;
  void capture_bf16(Sink &sink, Hook h, int32_t layer, const __nv_bfloat16 *p, int32_t rows, int32_t cols);
  void capture_f32(Sink &sink, Hook h, int32_t layer, const float *p, int32_t rows, int32_t cols);
  void ensure_rows(int32_t rows);
  void ensure_logits(int32_t rows);
  void run_prefill(const Step &st, Sink &sink, int32_t *out_tokens);
  void run_decode(const Step &st, Sink &sink, int32_t *out_tokens);
  void decode_body(int32_t B, const Step *st, Sink *sink, bool eager_hooks);
  void finish_sampling(const Step &st, Sink &sink, int32_t rows, const std::vector<int32_t> &positions,
                       int32_t *out_tokens, const int32_t *dev_tokens);
  bool wants_any(const Step &st, Sink &sink) const;

  CudaModel &m_;
  int32_t max_batch_, max_ctx_, max_prefill_;
  cudaStream_t stream_ = nullptr;
  // KV cache [L][slots][nKV][max_ctx][d]
  DBuf kcache_, vcache_;
  size_t layer_kv_elems_ = 0;
  // activations (sized for rows_cap_ rows)
  int32_t rows_cap_ = 0;
  DBuf x_, xn_, qkvf_, q_, z_, kout_, vout_, gu_, h_, gate_, tmp_, capf_;
  DBuf logits_;
  int32_t logits_rows_ = 0;
  // step parameters (device) and pinned host mirror: tokens | pos | slot | kv_len | out
  DBuf params_;
  int32_t *hparams_ = nullptr;
  int32_t *p_tokens_ = nullptr, *p_pos_ = nullptr, *p_slot_ = nullptr, *p_len_ = nullptr, *p_out_ = nullptr;
  int32_t prow_cap_ = 0;
  // decode parameters (one 320-byte H2D copy per token): tokens | pos | slot | len | out, 16 each
  DBuf dparams_;
  int32_t *hdparams_ = nullptr;
  int32_t *d_tokens_ = nullptr, *d_pos_ = nullptr, *d_slot_ = nullptr, *d_len_ = nullptr, *d_out_ = nullptr;
  qwc::SampleRow *d_samp_ = nullptr;   // [16] decode sampling parameters (in dparams_)
  DBuf psamp_;                          // [16] prefill sampling parameters
  qwc::SampleRow *hpsamp_ = nullptr;    // pinned mirror
  DBuf wbuf_;                           // double [16, vocab] sampler scratch
  DBuf attn_ws_, attn_cnt_;
  int32_t n_split_ = 1;
  DBuf bcast_k_, bcast_v_;  // gqa=broadcast scratch [max_batch][nH][max_ctx][d]
  DBuf dq_;                 // dequantized weight scratch for prefill on non-bf16 weights
  size_t dq_elems_ = 0;
  std::vector<float> hbuf_;
  // graphs per batch size
  std::map<std::string, Graph> graphs_;
  // profiling
  bool prof_ = false;
  Marking marking_ = Marking::NONE;
  KernelTrace trace_;
  OpMarks marks_;
  std::shared_ptr<const GraphOps> replayed_;  // kernels mode: the graph this step replayed
  std::vector<cudaEvent_t> ev_pool_;
  size_t ev_next_ = 0;
  cudaEvent_t ev_open_ = nullptr;
  int64_t host0_ns_ = 0;
  int64_t step_index_ = 0;
  int32_t phase_ = 0;
};

class CudaModel final : public BackendModel {
 public:
  explicit CudaModel(const Config &c) : cfg(c), layers(c.num_layers) {}
  void add_tensor(NativeTensor &&t) override { host_[t.name] = std::move(t); }
  void finalize() override;
  std::unique_ptr<BackendSession> new_session(int32_t max_batch, int32_t max_context, int32_t max_prefill) override {
    return std::make_unique<CudaSession>(*this, max_batch, max_context, max_prefill);
  }

  Config cfg;
  std::vector<Layer> layers;
  DevMat embed, lm_head_own;
  const qwc::WMat *lm_head = nullptr;
  DBuf out_norm, inv_freq;
  bool all_bf16 = true;
  size_t max_matrix_elems = 0;

 private:
  std::map<std::string, NativeTensor> host_;
  NativeTensor &need(const std::string &n) {
    auto it = host_.find(n);
    if (it == host_.end()) throw Error(QW_ERR_STATE, "cuda backend: tensor " + n + " was not loaded");
    return it->second;
  }
};

void CudaModel::finalize() {
  dev_guard([&] {
    const Config &c = cfg;
    auto note = [&](const DevMat &d) {
      if (d.type != NativeType::BF16) all_bf16 = false;
      max_matrix_elems = std::max(max_matrix_elems, (size_t)(d.m.rows * d.m.cols));
    };
    embed = upload(need("token_embd.weight"));
    out_norm = upload_vec(need("output_norm.weight"));
    if (!c.tie_embeddings || host_.count("output.weight")) {
      lm_head_own = upload(need("output.weight"));
      lm_head = &lm_head_own.m;
    } else {
      lm_head = &embed.m;
    }
    for (int32_t l = 0; l < c.num_layers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      Layer &L = layers[l];
      L.attn_norm = upload_vec(need(p + "attn_norm.weight"));
      L.ffn_norm = upload_vec(need(p + "ffn_norm.weight"));
      NativeTensor &q = need(p + "attn_q.weight"), &k = need(p + "attn_k.weight"), &v = need(p + "attn_v.weight");
      // bias q|k|v (fp32)
      {
        const NativeTensor &bq = need(p + "attn_q.bias"), &bk = need(p + "attn_k.bias"), &bv = need(p + "attn_v.bias");
        std::vector<uint8_t> b;
        b.insert(b.end(), bq.data.begin(), bq.data.end());
        b.insert(b.end(), bk.data.begin(), bk.data.end());
        b.insert(b.end(), bv.data.begin(), bv.data.end());
        L.qkv_bias = DBuf(b.size());
        CK(cudaMemcpy(L.qkv_bias.p, b.data(), b.size(), cudaMemcpyHostToDevice));
      }
      if (same_layout(q, k) && same_layout(q, v)) {
        // RoPE fused into the decode projection (QW_FUSED_ROPE=0 keeps the separate rope kernel): the q and k
        // rows of each head are pair-interleaved (an exact row permutation, see gemv.cuh)
        const char *fr = getenv("QW_FUSED_ROPE");
        L.qkv_pairs = !(fr && fr[0] == '0');
        std::vector<std::pair<int, int64_t>> order;
        const int64_t QKVR = q.rows + k.rows + v.rows;
        for (int64_t p = 0; p < QKVR; ++p) {
          const int64_t o = L.qkv_pairs ? qwc::qkv_rope_orig_row(p, c.num_heads, c.num_kv_heads, c.head_dim) : p;
          if (o < q.rows) order.push_back({0, o});
          else if (o < q.rows + k.rows) order.push_back({1, o - q.rows});
          else order.push_back({2, o - q.rows - k.rows});
        }
        L.qkv = upload_rows({&q, &k, &v}, order);
        if (L.qkv.m.rows != c.q_dim() + 2 * c.kv_dim()) throw Error(QW_ERR_SHAPE, "fused qkv has the wrong row count");
        note(L.qkv);
      } else {
        L.q = upload(q); L.k = upload(k); L.v = upload(v);
        note(L.q); note(L.k); note(L.v);
      }
      NativeTensor &g = need(p + "ffn_gate.weight"), &u = need(p + "ffn_up.weight");
      if (same_layout(g, u)) {
        std::vector<std::pair<int, int64_t>> order;
        for (int64_t r = 0; r < g.rows; ++r) { order.push_back({0, r}); order.push_back({1, r}); }
        L.gate_up = upload_rows({&g, &u}, order);
        if (L.gate_up.m.rows != 2LL * c.intermediate_size) throw Error(QW_ERR_SHAPE, "fused gate_up has the wrong row count");
        note(L.gate_up);
      } else {
        L.gate = upload(g); L.up = upload(u);
        note(L.gate); note(L.up);
      }
      L.o = upload(need(p + "attn_output.weight"));
      L.down = upload(need(p + "ffn_down.weight"));
      note(L.o); note(L.down);
      // free host copies of this layer
      for (const char *n : {"attn_norm.weight", "ffn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
                            "attn_q.bias", "attn_k.bias", "attn_v.bias", "ffn_gate.weight", "ffn_up.weight",
                            "attn_output.weight", "ffn_down.weight"})
        host_.erase(p + n);
    }
    // RoPE inverse frequencies, HF order: inv = 1 / theta ** (float(2i) / d) in fp32
    std::vector<float> inv(c.head_dim / 2);
    for (int i = 0; i < c.head_dim / 2; ++i) {
      const float e = (float)(2 * i) / (float)c.head_dim;
      inv[i] = 1.0f / powf(c.rope_theta, e);
    }
    inv_freq = DBuf(inv.size() * 4);
    CK(cudaMemcpy(inv_freq.p, inv.data(), inv.size() * 4, cudaMemcpyHostToDevice));
    host_.clear();
    return 0;
  });
}

// ---------------------------------------------------------------------------------------------- session
CudaSession::CudaSession(CudaModel &m, int32_t max_batch, int32_t max_context, int32_t max_prefill)
    : m_(m), max_batch_(max_batch), max_ctx_(max_context), max_prefill_(max_prefill) {
  if (max_batch > 16) throw Error(QW_ERR_UNSUPPORTED, "cuda backend: max_batch is limited to 16 (decode GEMV)");
  const Config &c = m.cfg;
  if (c.num_heads / c.num_kv_heads > 8) throw Error(QW_ERR_UNSUPPORTED, "cuda backend: more than 8 query heads per kv head");
  if (c.head_dim != 32 && c.head_dim != 64 && c.head_dim != 128)
    throw Error(QW_ERR_UNSUPPORTED, "cuda backend: head_dim must be 32, 64 or 128");
  CK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  int dev = 0, sms = 132;
  CK(cudaGetDevice(&dev));
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  n_split_ = qwc::decode_attn_pick_split(c.num_kv_heads, max_context, sms);
  attn_ws_ = DBuf(qwc::decode_attn_ws_floats(max_batch, c.num_heads, c.head_dim, n_split_) * 4);
  attn_cnt_ = DBuf((size_t)max_batch * c.num_heads * 4);  // nH: the broadcast arm runs with nH "kv" heads
  CK(cudaMemset(attn_cnt_.p, 0, attn_cnt_.bytes));
  ensure_rows(std::max(max_batch, std::min(max_prefill, 512)));
  CK(cudaMallocHost(&hdparams_, kDParamBytes));
  dparams_ = DBuf(kDParamBytes);
  CK(cudaMallocHost(&hpsamp_, 16 * sizeof(qwc::SampleRow)));
  psamp_ = DBuf(16 * sizeof(qwc::SampleRow));
  wbuf_ = DBuf((size_t)16 * c.vocab_size * sizeof(double));
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
  if (stream_) cudaStreamDestroy(stream_);
}

void CudaSession::configure(const StepToggles &t) {
  if (t.kv_cache != KvCache::Bf16) throw Error(QW_ERR_UNSUPPORTED, "cuda backend: kvCache '" + value_name(t.kv_cache) + "' is not implemented (bf16 only)");
  const Config &c = m_.cfg;
  layer_kv_elems_ = (size_t)max_batch_ * c.num_kv_heads * max_ctx_ * c.head_dim;
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
  logits_ = DBuf((size_t)rows * m_.cfg.vocab_size * 4);
  logits_rows_ = rows;
  drop_graphs();
}

// Per layer, the decode attention cost of this step (a graph's captured marks hold the capture step's).
std::vector<OpCost> CudaSession::attention_costs(const Step &st) const {
  const Config &c = m_.cfg;
  std::vector<OpCost> out((size_t)c.num_layers);
  for (int32_t l = 0; l < c.num_layers; ++l) {
    const bool bcast = !st.toggles.layer.empty() && st.toggles.layer[l].gqa == Gqa::Broadcast;
    out[(size_t)l] = cost_attention(st.pos0, st.n_new, c.num_heads, bcast ? c.num_heads : c.num_kv_heads, c.head_dim,
                                    2.0, 2.0);
  }
  return out;
}

void CudaSession::drop_graphs() {
  for (auto &g : graphs_) cudaGraphExecDestroy(g.second.exec);
  graphs_.clear();
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
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
  ev_open_ = ev_pool_[ev_next_++];
  CK(cudaEventRecord(ev_open_, stream_));
}

void CudaSession::end_op(int32_t layer, int32_t op, const char *kernel, OpCost c, int32_t n) {
  if (marking_ == Marking::TRACE) {
    trace_.end_op();
    marks_.push_back({layer, op, kernel, c, n});
    return;
  }
  if (marking_ != Marking::EVENTS) return;
  cudaEvent_t e = ev_pool_[ev_next_++];
  CK(cudaEventRecord(e, stream_));
  marks_.push_back({layer, op, kernel, c, n, ev_open_, e});
}

void CudaSession::capture_f32(Sink &sink, Hook h, int32_t layer, const float *p, int32_t rows, int32_t cols) {
  if (!sink.wants(h, layer)) return;
  hbuf_.resize((size_t)rows * cols);
  CK(cudaMemcpyAsync(hbuf_.data(), p, hbuf_.size() * 4, cudaMemcpyDeviceToHost, stream_));
  CK(cudaStreamSynchronize(stream_));
  sink.capture(h, layer, hbuf_.data(), rows, cols);
}
void CudaSession::capture_bf16(Sink &sink, Hook h, int32_t layer, const __nv_bfloat16 *p, int32_t rows, int32_t cols) {
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

void CudaSession::forward(const Step &st, Sink &sink, int32_t *out_tokens) {
  dev_guard([&] {
    const bool kernels = st.profiling_mode == QW_PROFILING_KERNELS && trace_.enabled();
    prof_ = st.profiling && !kernels;  // events mode: eager launches, an event pair per op
    marking_ = kernels ? Marking::TRACE : prof_ ? Marking::EVENTS : Marking::NONE;
    marks_.clear();
    replayed_.reset();
    ev_next_ = 0;
    step_index_ = st.step_index;
    phase_ = st.phase;
    host0_ns_ = now_ns();
    cudaEvent_t ev0 = nullptr;
    if (prof_) {
      begin_op();
      ev0 = ev_open_;
    }
    if (kernels) trace_.begin_step(st.step_index, st.phase, host0_ns_);
    try {
      if (st.phase == QW_PHASE_DECODE) run_decode(st, sink, out_tokens);
      else run_prefill(st, sink, out_tokens);
    } catch (...) {
      if (kernels) trace_.end_step(nullptr, nullptr, {});  // keeps CUPTI's id stack balanced
      throw;
    }
    if (kernels && replayed_) trace_.end_step(nullptr, replayed_, attention_costs(st));
    else if (kernels) trace_.end_step(std::make_shared<const OpMarks>(std::move(marks_)), nullptr, {});
    if (prof_) {
      CK(cudaStreamSynchronize(stream_));
      for (const OpMark &mk : marks_) {
        float a = 0, b = 0;
        CK(cudaEventElapsedTime(&a, ev0, mk.a));
        CK(cudaEventElapsedTime(&b, ev0, mk.b));
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

OpCost add(OpCost a, OpCost b) { return {a.flops + b.flops, a.bytes + b.bytes}; }

// ---------------------------------------------------------------------------------------------- decode
void CudaSession::decode_body(int32_t B, const Step *st, Sink *sink, bool eager) {
  const Config &c = m_.cfg;
  const int32_t H = c.hidden_size, I = c.intermediate_size, QKV = c.q_dim() + 2 * c.kv_dim();
  Sink *sk = eager ? sink : nullptr;
  auto hook_bf16 = [&](Hook h, int32_t l, const void *p, int32_t cols) {
    if (sk) capture_bf16(*sk, h, l, (const __nv_bfloat16 *)p, B, cols);
  };
  auto hook_f32 = [&](Hook h, int32_t l, const float *p, int32_t cols) {
    if (sk) capture_f32(*sk, h, l, p, B, cols);
  };
  auto cm = [&](const DevMat &d, bool bias) { return cost_matmul(B, d.m.rows, d.m.cols, d.type, d.group, bias, 2.0); };
  float *x = x_.as<float>();
  begin_op();
  qwc::launch_embed(x, m_.embed.m, d_tokens_, B, stream_);
  end_op(-1, QW_OP_EMBED, "embed_gather", cost_embed(B, H, m_.embed.type, m_.embed.group, 4.0), B);
  for (int32_t l = 0; l < c.num_layers; ++l) {
    const Layer &L = m_.layers[l];
    const bool bcast = st && !st->toggles.layer.empty() && st->toggles.layer[l].gqa == Gqa::Broadcast;
    hook_f32(HOOK_RESID_PRE, l, x, H);
    // 1. rmsnorm + qkv (+bias) -> fp32, or (qkv_pairs) rmsnorm + qkv + bias + RoPE + KV write in one GEMV
    begin_op();
    if (L.qkv_pairs) {
      qwc::GemvArgs a;
      a.epi = qwc::GEMV_EPI_QKV_ROPE;
      a.batch = B;
      a.pro = qwc::GEMV_PRO_NORM;
      a.x = x;
      a.x_ld = H;
      a.norm_w = L.attn_norm.as<float>();
      a.eps = c.rms_eps;
      a.w = L.qkv.m;
      a.bias = L.qkv_bias.as<float>();
      a.rope.q_out = q_.as<__nv_bfloat16>();
      a.rope.k_out = (sk && sk->wants(HOOK_K, l)) ? kout_.as<__nv_bfloat16>() : nullptr;
      a.rope.v_out = (sk && sk->wants(HOOK_V, l)) ? vout_.as<__nv_bfloat16>() : nullptr;
      a.rope.kcache = kcache_.as<__nv_bfloat16>() + layer_kv_elems_ * l;
      a.rope.vcache = vcache_.as<__nv_bfloat16>() + layer_kv_elems_ * l;
      a.rope.pos = d_pos_;
      a.rope.slot = d_slot_;
      a.rope.inv_freq = m_.inv_freq.as<float>();
      a.rope.n_heads = c.num_heads; a.rope.n_kv = c.num_kv_heads; a.rope.head_dim = c.head_dim; a.rope.max_ctx = max_ctx_;
      qwc::launch_gemv(a, stream_);
      
        end_op(l, QW_OP_QKV, "attn_norm+qkv+bias+rope+kv_write:gemv",
               add(add(cost_rmsnorm(B, H, 4.0), cm(L.qkv, true)), cost_rope(B, c.num_heads + c.num_kv_heads, c.head_dim, 2.0)), B);
    } else {
      {
        qwc::GemvArgs a;
        a.epi = qwc::GEMV_EPI_F32;
        a.out_ld = QKV;
        a.batch = B;
        a.pro = qwc::GEMV_PRO_NORM;
        a.x = x;
        a.x_ld = H;
        a.norm_w = L.attn_norm.as<float>();
        a.eps = c.rms_eps;
        if (L.fused_qkv()) {
          a.w = L.qkv.m; a.out = qkvf_.p; a.bias = L.qkv_bias.as<float>();
          qwc::launch_gemv(a, stream_);
        } else {
          const DevMat *parts[3] = {&L.q, &L.k, &L.v};
          int64_t off = 0;
          for (const DevMat *d : parts) {
            a.w = d->m; a.out = qkvf_.as<float>() + off; a.bias = L.qkv_bias.as<float>() + off;
            qwc::launch_gemv(a, stream_);
            off += d->m.rows;
          }
        }
      }
      {
        OpCost cc = add(cost_rmsnorm(B, H, 4.0), L.fused_qkv() ? cm(L.qkv, true) : add(add(cm(L.q, true), cm(L.k, true)), cm(L.v, true)));
        end_op(l, QW_OP_QKV, L.fused_qkv() ? "attn_norm+qkv+bias:gemv" : "attn_norm+q,k,v+bias:gemv x3", cc, B);
      }
      // 2. rope + KV write
      begin_op();
      {
        qwc::RopeKvArgs r;
        r.q_out = q_.as<__nv_bfloat16>();
        r.k_out = (sk && sk->wants(HOOK_K, l)) ? kout_.as<__nv_bfloat16>() : nullptr;
        r.v_out = (sk && sk->wants(HOOK_V, l)) ? vout_.as<__nv_bfloat16>() : nullptr;
        r.kcache = kcache_.as<__nv_bfloat16>() + layer_kv_elems_ * l;
        r.vcache = vcache_.as<__nv_bfloat16>() + layer_kv_elems_ * l;
        r.qkv = qkvf_.as<float>();
        r.qkv_ld = QKV;
        r.bias = nullptr;
        r.row_pos = d_pos_;
        r.row_slot = d_slot_;
        r.inv_freq = m_.inv_freq.as<float>();
        r.rows = B; r.n_heads = c.num_heads; r.n_kv = c.num_kv_heads; r.head_dim = c.head_dim; r.max_ctx = max_ctx_;
        qwc::launch_rope_kv(r, stream_);
      }
      end_op(l, QW_OP_ROPE, "rope_kv_write", cost_rope(B, c.num_heads + c.num_kv_heads, c.head_dim, 2.0), B);
    }
    hook_bf16(HOOK_Q, l, q_.p, c.q_dim());
    hook_bf16(HOOK_K, l, kout_.p, c.kv_dim());
    hook_bf16(HOOK_V, l, vout_.p, c.kv_dim());
    // 3. attention
    begin_op();
    {
      qwc::DecodeAttnArgs a;
      a.out = z_.as<__nv_bfloat16>();
      a.q = q_.as<__nv_bfloat16>();
      a.kcache = kcache_.as<__nv_bfloat16>() + layer_kv_elems_ * l;
      a.vcache = vcache_.as<__nv_bfloat16>() + layer_kv_elems_ * l;
      a.slot = d_slot_;
      a.kv_len = d_len_;
      a.batch = B; a.n_heads = c.num_heads; a.n_kv = c.num_kv_heads; a.head_dim = c.head_dim; a.max_ctx = max_ctx_;
      a.n_split = n_split_;
      a.ws = attn_ws_.as<float>();
      a.counters = attn_cnt_.as<int32_t>();
      if (bcast) {
        const size_t n = (size_t)max_batch_ * c.num_heads * max_ctx_ * c.head_dim;
        (void)n;  // allocated by run_decode before any capture
        qwc::launch_kv_broadcast(bcast_k_.as<__nv_bfloat16>(), bcast_v_.as<__nv_bfloat16>(), a.kcache, a.vcache, d_slot_,
                                 d_len_, B, c.num_heads, c.num_kv_heads, c.head_dim, max_ctx_, max_ctx_, stream_);
        a.kcache = bcast_k_.as<__nv_bfloat16>();
        a.vcache = bcast_v_.as<__nv_bfloat16>();
        a.slot = d_out_;  // identity 0..B-1 (see run_decode)
        a.n_kv = c.num_heads;  // counters are sized for nH heads (constructor)
      }
      qwc::launch_decode_attention(a, stream_);
    }
    if (marking()) {
      std::vector<int32_t> pos0(st->pos0), nn(st->n_new);
      end_op(l, QW_OP_ATTENTION, bcast ? "attn_decode_splitkv+broadcast" : "attn_decode_splitkv",
             cost_attention(pos0, nn, c.num_heads, bcast ? c.num_heads : c.num_kv_heads, c.head_dim, 2.0, 2.0), B);
    }
    hook_bf16(HOOK_Z, l, z_.p, c.q_dim());
    // 4. o_proj + residual
    const bool want_attn_out = sk && sk->wants(HOOK_ATTN_OUT, l);
    begin_op();
    {
      qwc::GemvArgs a;
      a.epi = want_attn_out ? qwc::GEMV_EPI_F32 : qwc::GEMV_EPI_ADD_F32;
      a.out = want_attn_out ? tmp_.p : (void *)x;
      a.out_ld = H;
      a.w = L.o.m;
      a.batch = B;
      a.act = z_.as<__nv_bfloat16>();
      a.act_ld = c.q_dim();
      qwc::launch_gemv(a, stream_);
      if (want_attn_out) qwc::launch_add_f32(x, tmp_.as<float>(), (int64_t)B * H, stream_);
    }
    end_op(l, QW_OP_O_PROJ, "o_proj+residual:gemv", add(cm(L.o, false), cost_residual(B, H, 4.0)), B);
    if (want_attn_out) hook_f32(HOOK_ATTN_OUT, l, tmp_.as<float>(), H);
    hook_f32(HOOK_RESID_MID, l, x, H);
    // 5. rmsnorm + gate_up + swiglu
    begin_op();
    {
      qwc::GemvArgs a;
      a.batch = B;
      a.pro = qwc::GEMV_PRO_NORM;
      a.x = x;
      a.x_ld = H;
      a.norm_w = L.ffn_norm.as<float>();
      a.eps = c.rms_eps;
      const bool want_pre = sk && sk->wants(HOOK_MLP_PRE, l);
      if (L.fused_gu()) {
        a.epi = qwc::GEMV_EPI_SWIGLU;
        a.w = L.gate_up.m;
        a.out = h_.p;
        a.out_ld = I;
        a.aux = want_pre ? gate_.as<__nv_bfloat16>() : nullptr;
        a.aux_ld = I;
        qwc::launch_gemv(a, stream_);
      } else {
        a.epi = qwc::GEMV_EPI_BF16;
        a.out_ld = 2 * I;
        a.w = L.gate.m; a.out = gu_.p;
        qwc::launch_gemv(a, stream_);
        a.w = L.up.m; a.out = gu_.as<__nv_bfloat16>() + I;
        qwc::launch_gemv(a, stream_);
        qwc::launch_swiglu(h_.as<__nv_bfloat16>(), want_pre ? gate_.as<__nv_bfloat16>() : nullptr,
                           gu_.as<__nv_bfloat16>(), B, I, false, stream_);
      }
    }
    {
      OpCost cc = add(cost_rmsnorm(B, H, 4.0), L.fused_gu() ? cm(L.gate_up, false) : add(cm(L.gate, false), cm(L.up, false)));
      end_op(l, QW_OP_GATE_UP, L.fused_gu() ? "ffn_norm+gate_up+swiglu:gemv" : "ffn_norm+gate,up:gemv x2+swiglu",
             add(cc, cost_swiglu(B, I, 2.0)), B);
    }
    hook_bf16(HOOK_MLP_PRE, l, gate_.p, I);
    hook_bf16(HOOK_MLP_POST, l, h_.p, I);
    // 6. down + residual
    begin_op();
    {
      qwc::GemvArgs a;
      a.epi = qwc::GEMV_EPI_ADD_F32;
      a.out = x;
      a.out_ld = H;
      a.w = L.down.m;
      a.batch = B;
      a.act = h_.as<__nv_bfloat16>();
      a.act_ld = I;
      qwc::launch_gemv(a, stream_);
    }
    end_op(l, QW_OP_DOWN, "down+residual:gemv", add(cm(L.down, false), cost_residual(B, H, 4.0)), B);
    hook_f32(HOOK_RESID_POST, l, x, H);
  }
  // final norm + lm_head + argmax
  begin_op();
  {
    qwc::GemvArgs a;
    a.epi = qwc::GEMV_EPI_F32;
    a.out = logits_.p;
    a.out_ld = c.vocab_size;
    a.w = *m_.lm_head;
    a.batch = B;
    a.pro = qwc::GEMV_PRO_NORM;
    a.x = x;
    a.x_ld = H;
    a.norm_w = m_.out_norm.as<float>();
    a.eps = c.rms_eps;
    qwc::launch_gemv(a, stream_);
  }
  {
    const NativeType lt = (NativeType)m_.lm_head->type;
    end_op(-1, QW_OP_LM_HEAD, "final_norm+lm_head:gemv",
           add(cost_rmsnorm(B, H, 4.0), cost_matmul(B, c.vocab_size, H, lt, m_.lm_head->group, false, 2.0)), B);
  }
  begin_op();
  qwc::launch_sample(d_out_, logits_.as<float>(), d_samp_, wbuf_.as<double>(), B, c.vocab_size, c.vocab_size, stream_);
  end_op(-1, QW_OP_SAMPLE, "sample_device", cost_sample(B, c.vocab_size), B);
}

void CudaSession::run_decode(const Step &st, Sink &sink, int32_t *out_tokens) {
  const int32_t B = (int32_t)st.seq.size();
  ensure_logits(max_batch_);
  // params: tokens, pos, slot, len; d_out_ holds the identity 0..B-1 before the step (broadcast slots)
  for (int32_t i = 0; i < B; ++i) {
    hdparams_[i] = st.tokens[st.row_offset[i]];
    hdparams_[16 + i] = st.pos0[i];
    hdparams_[32 + i] = st.seq[i];
    hdparams_[48 + i] = st.pos0[i] + 1;
    hdparams_[64 + i] = i;
    const qwc::SampleRow sr = sample_row(st, i, st.pos0[i] + 1);
    std::memcpy(reinterpret_cast<uint8_t *>(hdparams_) + 5 * 16 * 4 + i * sizeof(sr), &sr, sizeof(sr));
  }
  CK(cudaMemcpyAsync(dparams_.p, hdparams_, kDParamBytes, cudaMemcpyHostToDevice, stream_));
  const bool hooks = wants_any(st, sink);
  bool any_bcast = false;
  std::string key = std::to_string(B) + ":";
  for (const auto &lt : st.toggles.layer) {
    any_bcast |= lt.gqa == Gqa::Broadcast;
    key += lt.gqa == Gqa::Broadcast ? 'b' : 'n';
  }
  if (any_bcast && !bcast_k_.p) {
    const Config &c = m_.cfg;
    const size_t n = (size_t)max_batch_ * c.num_heads * max_ctx_ * c.head_dim;
    bcast_k_ = DBuf(n * 2);
    bcast_v_ = DBuf(n * 2);
  }
  // The identity slots for the broadcast arm live in d_out_ and are overwritten by argmax at the end of the
  // step, which is after the last attention: safe.
  const bool use_graph = st.toggles.graphs == Graphs::On && !prof_ && !hooks;
  const bool traced = marking_ == Marking::TRACE;
  if (traced) key += ":kernels";  // captured with node tags (the untraced graph stays as it was)
  if (use_graph) {
    auto it = graphs_.find(key);
    if (it == graphs_.end()) {
      // Capture once per (batch, gqa mask). If the graph with programmatic-dependent-launch edges cannot be
      // captured or instantiated on this driver, fall back to plain launches for the rest of the process.
      cudaGraphExec_t ge = nullptr;
      std::shared_ptr<GraphOps> ops;
      for (int attempt = 0; attempt < 2 && !ge; ++attempt) {
        cudaGraph_t g = nullptr;
        marks_.clear();
        if (traced) ops = trace_.begin_capture();
        CK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
        bool ok = true;
        std::string why;
        try {
          decode_body(B, &st, nullptr, false);
        } catch (const std::exception &e) {
          ok = false;
          why = e.what();
        }
        const cudaError_t ec = cudaStreamEndCapture(stream_, &g);
        if (ok && ec == cudaSuccess && g) {
          const cudaError_t ei = cudaGraphInstantiate(&ge, g, 0);
          if (ei != cudaSuccess) { ok = false; why = cudaGetErrorString(ei); ge = nullptr; }
        } else if (ok) {
          ok = false;
          why = cudaGetErrorString(ec);
        }
        if (traced) {
          trace_.end_capture();  // after instantiation: its node clones carry the tags
          ops->marks = std::move(marks_);
          marks_.clear();
        }
        if (g) cudaGraphDestroy(g);
        if (!ok) {
          cudaGetLastError();
          if (attempt == 0 && qwc::pdl_enabled()) {
            fprintf(stderr, "[libqwen_cuda] decode graph with PDL failed (%s); retrying without PDL\n", why.c_str());
            qwc::set_pdl(false);
          } else {
            throw Error(QW_ERR_DEVICE, "decode graph capture failed: " + why);
          }
        }
      }
      it = graphs_.emplace(key, Graph{ge, ops}).first;
    }
    CK(cudaGraphLaunch(it->second.exec, stream_));
    replayed_ = it->second.ops;
  } else {
    decode_body(B, &st, &sink, true);
  }
  std::vector<int32_t> positions(B);
  for (int32_t i = 0; i < B; ++i) positions[i] = st.pos0[i] + 1;
  finish_sampling(st, sink, B, positions, out_tokens, d_out_);
}

// Reads the tokens sampled on the device; logits readout / hook.
void CudaSession::finish_sampling(const Step &st, Sink &sink, int32_t rows, const std::vector<int32_t> &positions,
                                  int32_t *out_tokens, const int32_t *dev_tokens) {
  const int32_t V = m_.cfg.vocab_size;
  (void)positions;
  const bool need_logits = st.logits_mode != 0 || sink.wants(HOOK_LOGITS, -1);
  CK(cudaMemcpyAsync(out_tokens, dev_tokens, rows * 4, cudaMemcpyDeviceToHost, stream_));
  if (need_logits) {
    hbuf_.resize((size_t)rows * V);
    CK(cudaMemcpyAsync(hbuf_.data(), logits_.p, hbuf_.size() * 4, cudaMemcpyDeviceToHost, stream_));
  }
  CK(cudaStreamSynchronize(stream_));
  if (!need_logits) return;
  if (sink.wants(HOOK_LOGITS, -1)) sink.capture(HOOK_LOGITS, -1, hbuf_.data(), rows, V);
  if (st.logits_mode != 0) sink.logits(hbuf_.data(), rows, V);
}

// ---------------------------------------------------------------------------------------------- prefill
void CudaSession::run_prefill(const Step &st, Sink &sink, int32_t *out_tokens) {
  const Config &c = m_.cfg;
  const int32_t T = (int32_t)st.tokens.size();
  const int32_t S = (int32_t)st.seq.size();
  const int32_t H = c.hidden_size, I = c.intermediate_size, QKV = c.q_dim() + 2 * c.kv_dim();
  ensure_rows(T);
  // logits rows: every row when all-position logits (mode 2) or the hook_logits capture are asked for (the
  // ABI: hook rows = tokens of the step, as the CPU backend does), else the last row of each sequence
  const bool all_rows = st.logits_mode == 2 || sink.wants(HOOK_LOGITS, -1);
  const int32_t LR = all_rows ? T : S;
  ensure_logits(std::max(LR, max_batch_));
  const int32_t R = prow_cap_;
  for (int32_t i = 0; i < S; ++i)
    for (int32_t j = 0; j < st.n_new[i]; ++j) {
      const int32_t r = st.row_offset[i] + j;
      hparams_[r] = st.tokens[r];
      hparams_[R + r] = st.pos0[i] + j;
      hparams_[2 * R + r] = st.seq[i];
    }
  for (int k = 0; k < 3; ++k)
    CK(cudaMemcpyAsync(params_.as<int32_t>() + k * R, hparams_ + k * R, T * 4, cudaMemcpyHostToDevice, stream_));
  auto hook_bf16 = [&](Hook h, int32_t l, const void *p, int32_t cols) { capture_bf16(sink, h, l, (const __nv_bfloat16 *)p, T, cols); };
  auto hook_f32 = [&](Hook h, int32_t l, const float *p, int32_t cols) { capture_f32(sink, h, l, p, T, cols); };
  auto cm = [&](const DevMat &d) { return cost_matmul(T, d.m.rows, d.m.cols, d.type, d.group, false, 2.0); };
  // weight as bf16 for the GEMM: direct, or dequantized into scratch
  auto wbf16 = [&](const DevMat &d) -> const __nv_bfloat16 * {
    if (d.type == NativeType::BF16) return (const __nv_bfloat16 *)d.m.data;
    const size_t n = (size_t)d.m.rows * d.m.cols;
    if (n > dq_elems_) { dq_ = DBuf(n * 2); dq_elems_ = n; }
    qwc::launch_dequant_bf16(dq_.as<__nv_bfloat16>(), d.m, stream_);
    return dq_.as<__nv_bfloat16>();
  };
  auto gemm = [&](const DevMat &d, const __nv_bfloat16 *a, int64_t lda, void *out, int64_t ldc, int kind) {
    qwc::GemmArgs g;
    g.out_kind = kind;
    g.c = out;
    g.ldc = ldc;
    g.a = a;
    g.lda = lda;
    g.w = wbf16(d);
    g.m = T;
    g.n = d.m.rows;
    g.k = d.m.cols;
    return qwc::launch_gemm(g, stream_);
  };
  float *x = x_.as<float>();
  __nv_bfloat16 *xn = xn_.as<__nv_bfloat16>();
  begin_op();
  qwc::launch_embed(x, m_.embed.m, p_tokens_, T, stream_);
  end_op(-1, QW_OP_EMBED, "embed_gather", cost_embed(T, H, m_.embed.type, m_.embed.group, 4.0), T);
  for (int32_t l = 0; l < c.num_layers; ++l) {
    const Layer &L = m_.layers[l];
    const bool bcast = !st.toggles.layer.empty() && st.toggles.layer[l].gqa == Gqa::Broadcast;
    hook_f32(HOOK_RESID_PRE, l, x, H);
    begin_op();
    qwc::launch_rmsnorm(xn, nullptr, x, L.attn_norm.as<float>(), T, H, c.rms_eps, stream_);
    end_op(l, QW_OP_ATTN_NORM, "rmsnorm", cost_rmsnorm(T, H, 4.0), T);
    begin_op();
    const char *kn;
    if (L.fused_qkv()) {
      kn = gemm(L.qkv, xn, H, qkvf_.p, QKV, qwc::GEMM_OUT_F32);
    } else {
      kn = gemm(L.q, xn, H, qkvf_.p, QKV, qwc::GEMM_OUT_F32);
      gemm(L.k, xn, H, qkvf_.as<float>() + c.q_dim(), QKV, qwc::GEMM_OUT_F32);
      gemm(L.v, xn, H, qkvf_.as<float>() + c.q_dim() + c.kv_dim(), QKV, qwc::GEMM_OUT_F32);
    }
    end_op(l, QW_OP_QKV, kn,
           L.fused_qkv() ? cm(L.qkv) : add(add(cm(L.q), cm(L.k)), cm(L.v)), T);
    begin_op();
    {
      qwc::RopeKvArgs r;
      r.q_out = q_.as<__nv_bfloat16>();
      r.k_out = sink.wants(HOOK_K, l) ? kout_.as<__nv_bfloat16>() : nullptr;
      r.v_out = sink.wants(HOOK_V, l) ? vout_.as<__nv_bfloat16>() : nullptr;
      r.kcache = kcache_.as<__nv_bfloat16>() + layer_kv_elems_ * l;
      r.vcache = vcache_.as<__nv_bfloat16>() + layer_kv_elems_ * l;
      r.qkv = qkvf_.as<float>();
      r.qkv_ld = QKV;
      r.bias = L.qkv_bias.as<float>();
      r.row_pos = p_pos_;
      r.row_slot = p_slot_;
      r.inv_freq = m_.inv_freq.as<float>();
      r.rows = T; r.n_heads = c.num_heads; r.n_kv = c.num_kv_heads; r.head_dim = c.head_dim; r.max_ctx = max_ctx_;
      r.pair_interleaved = L.qkv_pairs;
      qwc::launch_rope_kv(r, stream_);
    }
    end_op(l, QW_OP_ROPE, "bias+rope_kv_write", cost_rope(T, c.num_heads + c.num_kv_heads, c.head_dim, 2.0), T);
    hook_bf16(HOOK_Q, l, q_.p, c.q_dim());
    hook_bf16(HOOK_K, l, kout_.p, c.kv_dim());
    hook_bf16(HOOK_V, l, vout_.p, c.kv_dim());
    begin_op();
    const char *an = "attn_prefill_mma";
    for (int32_t i = 0; i < S; ++i) {
      qwc::PrefillAttnArgs a;
      a.out = z_.as<__nv_bfloat16>() + (size_t)st.row_offset[i] * c.q_dim();
      a.q = q_.as<__nv_bfloat16>() + (size_t)st.row_offset[i] * c.q_dim();
      a.kcache = kcache_.as<__nv_bfloat16>() + layer_kv_elems_ * l;
      a.vcache = vcache_.as<__nv_bfloat16>() + layer_kv_elems_ * l;
      a.slot = st.seq[i];
      a.pos0 = st.pos0[i];
      a.n = st.n_new[i];
      a.n_heads = c.num_heads; a.n_kv = c.num_kv_heads; a.head_dim = c.head_dim; a.max_ctx = max_ctx_;
      if (bcast) {
        const size_t n = (size_t)max_batch_ * c.num_heads * max_ctx_ * c.head_dim;
        if (!bcast_k_.p) { bcast_k_ = DBuf(n * 2); bcast_v_ = DBuf(n * 2); }
        hparams_[3 * R + i] = st.pos0[i] + st.n_new[i];
        CK(cudaMemcpyAsync(p_len_ + i, hparams_ + 3 * R + i, 4, cudaMemcpyHostToDevice, stream_));
        qwc::launch_kv_broadcast(bcast_k_.as<__nv_bfloat16>(), bcast_v_.as<__nv_bfloat16>(), a.kcache, a.vcache,
                                 p_slot_ + st.row_offset[i], p_len_ + i, 1, c.num_heads, c.num_kv_heads, c.head_dim,
                                 max_ctx_, st.pos0[i] + st.n_new[i], stream_);
        a.kcache = bcast_k_.as<__nv_bfloat16>();
        a.vcache = bcast_v_.as<__nv_bfloat16>();
        a.slot = 0;
        a.n_kv = c.num_heads;
      }
      an = qwc::launch_prefill_attention(a, stream_);
    }
    end_op(l, QW_OP_ATTENTION, bcast ? "attn_prefill_mma+broadcast" : an,
           cost_attention(st.pos0, st.n_new, c.num_heads, bcast ? c.num_heads : c.num_kv_heads, c.head_dim, 2.0, 2.0), T);
    hook_bf16(HOOK_Z, l, z_.p, c.q_dim());
    const bool want_attn_out = sink.wants(HOOK_ATTN_OUT, l);
    begin_op();
    if (want_attn_out) {
      kn = gemm(L.o, z_.as<__nv_bfloat16>(), c.q_dim(), tmp_.p, H, qwc::GEMM_OUT_F32);
      qwc::launch_add_f32(x, tmp_.as<float>(), (int64_t)T * H, stream_);
    } else {
      kn = gemm(L.o, z_.as<__nv_bfloat16>(), c.q_dim(), x, H, qwc::GEMM_OUT_ADD_F32);
    }
    end_op(l, QW_OP_O_PROJ, kn, add(cm(L.o), cost_residual(T, H, 4.0)), T);
    if (want_attn_out) hook_f32(HOOK_ATTN_OUT, l, tmp_.as<float>(), H);
    hook_f32(HOOK_RESID_MID, l, x, H);
    begin_op();
    qwc::launch_rmsnorm(xn, nullptr, x, L.ffn_norm.as<float>(), T, H, c.rms_eps, stream_);
    end_op(l, QW_OP_FFN_NORM, "rmsnorm", cost_rmsnorm(T, H, 4.0), T);
    begin_op();
    if (L.fused_gu()) {
      kn = gemm(L.gate_up, xn, H, gu_.p, 2 * I, qwc::GEMM_OUT_BF16);
    } else {
      kn = gemm(L.gate, xn, H, gu_.p, 2 * I, qwc::GEMM_OUT_BF16);
      gemm(L.up, xn, H, gu_.as<__nv_bfloat16>() + I, 2 * I, qwc::GEMM_OUT_BF16);
    }
    end_op(l, QW_OP_GATE_UP, kn, L.fused_gu() ? cm(L.gate_up) : add(cm(L.gate), cm(L.up)), T);
    begin_op();
    qwc::launch_swiglu(h_.as<__nv_bfloat16>(), sink.wants(HOOK_MLP_PRE, l) ? gate_.as<__nv_bfloat16>() : nullptr,
                       gu_.as<__nv_bfloat16>(), T, I, L.fused_gu(), stream_);
    end_op(l, QW_OP_SWIGLU, "swiglu", cost_swiglu(T, I, 2.0), T);
    hook_bf16(HOOK_MLP_PRE, l, gate_.p, I);
    hook_bf16(HOOK_MLP_POST, l, h_.p, I);
    begin_op();
    kn = gemm(L.down, h_.as<__nv_bfloat16>(), I, x, H, qwc::GEMM_OUT_ADD_F32);
    end_op(l, QW_OP_DOWN, kn, add(cm(L.down), cost_residual(T, H, 4.0)), T);
    hook_f32(HOOK_RESID_POST, l, x, H);
  }
  // final norm + lm_head over the rows needed, in chunks of <= 16 rows through the fused GEMV
  std::vector<int32_t> rows_needed;
  std::vector<int32_t> positions;
  if (all_rows) {
    for (int32_t r = 0; r < T; ++r) rows_needed.push_back(r);
  } else {
    for (int32_t i = 0; i < S; ++i) rows_needed.push_back(st.row_offset[i] + st.n_new[i] - 1);
  }
  for (int32_t i = 0; i < S; ++i) positions.push_back(st.pos0[i] + st.n_new[i]);
  begin_op();
  {
    // gather the rows into tmp_ (fp32) so that the GEMV reads them contiguously
    float *g = tmp_.as<float>();
    bool contiguous = true;
    for (size_t i = 1; i < rows_needed.size(); ++i) contiguous &= rows_needed[i] == rows_needed[i - 1] + 1;
    const float *src = x + (size_t)rows_needed[0] * H;
    if (!contiguous) {
      for (size_t i = 0; i < rows_needed.size(); ++i)
        CK(cudaMemcpyAsync(g + i * H, x + (size_t)rows_needed[i] * H, H * 4, cudaMemcpyDeviceToDevice, stream_));
      src = g;
    }
    const int32_t n = (int32_t)rows_needed.size();
    for (int32_t r0 = 0; r0 < n; r0 += 16) {
      qwc::GemvArgs a;
      a.epi = qwc::GEMV_EPI_F32;
      a.out = logits_.as<float>() + (size_t)r0 * c.vocab_size;
      a.out_ld = c.vocab_size;
      a.w = *m_.lm_head;
      a.batch = std::min(16, n - r0);
      a.pro = qwc::GEMV_PRO_NORM;
      a.x = src + (size_t)r0 * H;
      a.x_ld = H;
      a.norm_w = m_.out_norm.as<float>();
      a.eps = c.rms_eps;
      qwc::launch_gemv(a, stream_);
    }
  }
  const int32_t n_logit_rows = (int32_t)rows_needed.size();
  end_op(-1, QW_OP_LM_HEAD, "final_norm+lm_head:gemv",
         add(cost_rmsnorm(n_logit_rows, H, 4.0),
             cost_matmul(n_logit_rows, c.vocab_size, H, (NativeType)m_.lm_head->type, m_.lm_head->group, false, 2.0)),
         n_logit_rows);
  // sampling: the last row of each sequence
  begin_op();
  for (int32_t i = 0; i < S; ++i) hpsamp_[i] = sample_row(st, i, st.pos0[i] + st.n_new[i]);
  CK(cudaMemcpyAsync(psamp_.p, hpsamp_, S * sizeof(qwc::SampleRow), cudaMemcpyHostToDevice, stream_));
  if (all_rows) {
    for (int32_t i = 0; i < S; ++i)
      qwc::launch_sample(p_out_ + i, logits_.as<float>() + (size_t)(st.row_offset[i] + st.n_new[i] - 1) * c.vocab_size,
                         psamp_.as<qwc::SampleRow>() + i, wbuf_.as<double>(), 1, c.vocab_size, c.vocab_size, stream_);
  } else {
    qwc::launch_sample(p_out_, logits_.as<float>(), psamp_.as<qwc::SampleRow>(), wbuf_.as<double>(), S, c.vocab_size,
                       c.vocab_size, stream_);
  }
  end_op(-1, QW_OP_SAMPLE, "sample_device", cost_sample(S, c.vocab_size), S);
  // tokens (sampled on the device), logits readout
  const int32_t V = c.vocab_size;
  const bool need_logits = st.logits_mode != 0 || sink.wants(HOOK_LOGITS, -1);
  CK(cudaMemcpyAsync(out_tokens, p_out_, S * 4, cudaMemcpyDeviceToHost, stream_));
  if (need_logits) {
    hbuf_.resize((size_t)n_logit_rows * V);
    CK(cudaMemcpyAsync(hbuf_.data(), logits_.p, hbuf_.size() * 4, cudaMemcpyDeviceToHost, stream_));
  }
  CK(cudaStreamSynchronize(stream_));
  if (!need_logits) return;
  if (sink.wants(HOOK_LOGITS, -1)) sink.capture(HOOK_LOGITS, -1, hbuf_.data(), n_logit_rows, V);
  if (st.logits_mode == 2) {
    sink.logits(hbuf_.data(), n_logit_rows, V);
  } else if (st.logits_mode != 0) {
    if (all_rows) {  // rows were computed for the hook: hand over the last row of each sequence
      std::vector<float> last((size_t)S * V);
      for (int32_t i = 0; i < S; ++i)
        std::copy(hbuf_.begin() + (size_t)(st.row_offset[i] + st.n_new[i] - 1) * V,
                  hbuf_.begin() + (size_t)(st.row_offset[i] + st.n_new[i]) * V, last.begin() + (size_t)i * V);
      sink.logits(last.data(), S, V);
    } else {
      sink.logits(hbuf_.data(), n_logit_rows, V);
    }
  }
}

// ---------------------------------------------------------------------------------------------- backend
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
    w.key("driver").value(std::to_string(drv / 1000) + "." + std::to_string((drv % 1000) / 10));
    w.key("runtime").value(std::to_string(rt / 1000) + "." + std::to_string((rt % 1000) / 10));
    w.key("cc").value(std::to_string(prop_.major) + "." + std::to_string(prop_.minor));
    w.key("gemm").value(qwc::cublaslt_status());
    w.end_object();
    return w.str();
  }
  std::unique_ptr<BackendModel> new_model(const Config &cfg) override {
    CK(cudaSetDevice(device_));
    return std::make_unique<CudaModel>(cfg);
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
