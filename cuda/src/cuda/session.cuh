// session.cuh — what the files of the CUDA backend share: device buffers, the model on the device, the session
// and its layer-building blocks (docs/ARCHITECTURE.md §Layers). Host code only; the kernels are behind the
// launchers of the other headers of src/cuda/ and src/opt/.
//
//   backend_cuda.cu   the Backend, the session's buffers, forward() and op marking (profiling modes)
//   model_upload.cu   weights to the device: fused q|k|v and gate|up layouts
//   layers.cu         the blocks decode and prefill share: layer, attention block, MLP block, embed, lm_head
//   decode.cu         decode: graph capture/replay, the GEMV halves of the blocks, split-KV attention
//   prefill.cu        prefill: rmsnorm + GEMM halves of the blocks, flash attention, logits rows
//   eagle_session.cu  speculative = eagle: tree steps, the EAGLE head's input, ln_final capture, KV compaction
//   tp_session.cu     parallel = tp2..tp8: a rank's collectives (embedding / o_proj / down all-reduce, logits gather)
//   tp_cuda.cu        parallel = tp2..tp8: the model of shards and the session driving one CudaSession per rank
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "act_quant.hpp"
#include "attention.hpp"
#include "backend.hpp"
#include "common.cuh"
#include "cost.hpp"
#include "dca.hpp"
#include "ffn.hpp"
#include "gemv.cuh"
#include "gemv.hpp"
#include "gqa.hpp"
#include "range_profiler.cuh"
#include "tile_cuda.cuh"
#include "graphs.hpp"
#include "kernel_trace.cuh"
#include "kv_quant.cuh"
#include "nccl.cuh"
#include "norm.hpp"
#include "sage.cuh"
#include "sample.cuh"
#include "block_sparse.cuh"
#include "sparse_prefill.cuh"
#include "sparse_prefill.hpp"
#include "tree_mask.cuh"

namespace qw {
namespace persist {
struct Plan;  // decode = persistent's schedule (opt/decode/persistent_plan.hpp)
}
namespace cuda_backend {

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

void *dmalloc(size_t bytes);
int64_t now_ns();
inline OpCost add(OpCost a, OpCost b) { return add_cost(a, b); }

// A GEMV whose prologue is the RMSNorm of x (fp32 [batch, x_ld]) times norm_w (decode fuses every norm this way).
inline qwc::GemvArgs norm_gemv(const float *x, int64_t x_ld, int32_t batch, const float *norm_w, float eps) {
  qwc::GemvArgs a;
  a.batch = batch;
  a.pro = qwc::GEMV_PRO_NORM;
  a.x = x;
  a.x_ld = x_ld;
  a.norm_w = norm_w;
  a.eps = eps;
  return a;
}

// A GEMV over bf16 activations act [batch, act_ld] (the unfused arms: a norm kernel wrote them).
inline qwc::GemvArgs bf16_gemv(const __nv_bfloat16 *act, int64_t act_ld, int32_t batch) {
  qwc::GemvArgs a;
  a.batch = batch;
  a.pro = qwc::GEMV_PRO_BF16;
  a.act = act;
  a.act_ld = act_ld;
  return a;
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
  DBuf tl_codes, tl_dm;  // the scales in two levels (opt/gemv/two_level.hpp) where the matrix has them; else empty
  // gemv = marlin: the same weights repacked for the tensor-core kernel (opt/gemv/marlin_layout.hpp), made on
  // first use (CudaModel::ensure_marlin); mm.data stays null for matrices the kernel does not cover.
  DBuf mpack;
  qwc::MarlinMat mm;
  bool present() const { return m.data != nullptr; }
};
// The analytic cost of `rows` token rows through a weight (bf16 activations).
// With two-level scales (m.tl_codes) the decode GEMVs read 2 bytes a group and 8 per 256 columns instead of 8 a group,
// with one offset for all groups (m.off_uniform) 4 a group;
// the bytes are those (prefill's dequantization still reads the fp32 arrays: a few percent of a compute-bound GEMM).
inline OpCost cost_of(const DevMat &d, int32_t rows, bool bias) {
  OpCost c = cost_matmul(rows, d.m.rows, d.m.cols, d.type, d.group, bias, 2.0);
  if (d.m.tl_codes && d.group > 0) {
    const double groups = double(d.m.rows) * double(d.m.cols / d.group), blocks = double(d.m.rows) * double(d.m.cols / 256);
    c.bytes -= 8.0 * groups - (2.0 * groups + 8.0 * blocks);
  } else if (d.m.off_uniform && d.group > 0) {
    c.bytes -= 4.0 * double(d.m.rows) * double(d.m.cols / d.group);  // the offsets are not read
  }
  return c;
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

class CudaModel final : public BackendModel {
 public:
  explicit CudaModel(const Config &c) : cfg(c), layers(c.num_layers) {}
  void add_tensor(NativeTensor &&t) override { host_[t.name] = std::move(t); }
  void finalize() override;  // model_upload.cu
  std::unique_ptr<BackendSession> new_session(int32_t max_batch, int32_t max_context, int32_t max_prefill) override;
  // gemv = marlin: repacks every W4/W8 projection (and a W4/W8 lm_head) once, on the device (model_upload.cu), and
  // sizes the kernel's split-K scratch; later calls return at once. Sessions share the model: guarded.
  void ensure_marlin();

  Config cfg;
  std::vector<Layer> layers;
  DevMat embed, lm_head_own;
  const qwc::WMat *lm_head = nullptr;
  DBuf out_norm, inv_freq;      // out_norm: empty for an EAGLE head (its layer output feeds the lm_head as it is)
  DevMat eagle_fc;              // EAGLE head only (cfg.eagle_head): fc [H, 2H] and its bias (fp32)
  DBuf eagle_fc_bias;
  bool all_bf16 = true;
  size_t max_matrix_elems = 0;
  bool marlin_packed = false;
  size_t marlin_part_bytes = 0;  // the largest split-K partials of a packed matrix (marlin_plan)
  int32_t marlin_cnt_n = 0;      // the most row blocks of a packed matrix (64 / 128 / 256 rows)
  std::mutex marlin_mu;

 private:
  std::map<std::string, NativeTensor> host_;
  NativeTensor &need(const std::string &n) {
    auto it = host_.find(n);
    if (it == host_.end()) throw Error(QW_ERR_STATE, "cuda backend: tensor " + n + " was not loaded");
    return it->second;
  }
};

// ---- toggles: the only reads of Step::toggles in this backend, typed (docs/ARCHITECTURE.md §How a toggle flows)
inline bool gqa_broadcast(const Step &st, int32_t layer) {
  return !st.toggles.layer.empty() && st.toggles.layer[size_t(layer)].gqa == Gqa::Broadcast;
}
inline Gqa gqa_arm(const Step &st, int32_t layer) { return gqa_broadcast(st, layer) ? Gqa::Broadcast : Gqa::Native; }
inline bool graphs_on(const Step &st) { return st.toggles.graphs == Graphs::On; }
inline bool gemv_marlin(const Step &st) { return st.toggles.gemv == Gemv::Marlin; }
// actQuant = int8 at layer l (opt/act_quant/gemv_i8.cu: the decode GEMVs of W4 / W8 weights; the lm_head takes the
// last layer's value); no step reads as off.
inline bool act_i8(const Step *st, int32_t l) { return st && st->toggles.at(l).act_quant == ActQuant::Int8; }
// ffn / norm arms (opt/ffn, opt/norm); no step (never the case in a forward) reads as the defaults, the fused arms.
inline Ffn ffn_arm(const Step *st, int32_t layer) {
  return st && !st->toggles.layer.empty() ? st->toggles.layer[size_t(layer)].ffn : Ffn::FusedNormGemvSwiglu;
}
inline Norm norm_arm(const Step *st, int32_t layer) {
  return st && !st->toggles.layer.empty() ? st->toggles.layer[size_t(layer)].norm : Norm::FusedResidualNorm;
}
inline Attention attention_arm(const Step &st, int32_t layer) {
  return st.toggles.layer.empty() ? Attention::FlashBf16 : st.toggles.layer[size_t(layer)].attention;
}
inline bool dca_on(const Step &st, int32_t layer) {
  return !st.toggles.layer.empty() && st.toggles.layer[size_t(layer)].dca == Dca::On;
}
// sparse prefill runs on prefill steps of >= 8 rows (as on the CPU: sparse_prefill_cpu.hpp sparse_runs)
inline bool sparse_on(const Step &st, int32_t layer, int32_t rows) {
  return st.phase == QW_PHASE_PREFILL && st.tree_base < 0 && rows >= 8 && !st.toggles.layer.empty() &&
         st.toggles.layer[size_t(layer)].sparse_prefill != SparsePrefill::Off;
}

constexpr size_t kDParamBytes = 5 * 16 * 4 + 16 * sizeof(qwc::SampleRow);

qwc::SampleRow sample_row(const Step &st, size_t i, int64_t position);

// One forward pass over `rows` token rows, as the layer blocks see it: decode rows are sequences (one new token
// each, B <= 16, GEMV halves); prefill rows are the step's tokens (rmsnorm + GEMM halves).
struct Pass {
  bool decode = false;
  int32_t rows = 0;
  const Step *st = nullptr;
  Sink *sink = nullptr;  // hook captures; null while the decode graph is captured
  const int32_t *tokens = nullptr, *pos = nullptr, *slot = nullptr;  // device, [rows]
  // A tree verification step (speculative = eagle, cuda/eagle_session.cu): pos holds the RoPE positions,
  // kvpos the KV rows (pos0 + row), tree the attention mask; else kvpos is null (the KV row is pos).
  const int32_t *kvpos = nullptr;
  qwc::TreeMask tree;
  float *tree_ws = nullptr;  // the tree step's key-split workspace (attention_prefill.cu), tree_split > 1
  int32_t tree_split = 1;
  bool wants(Hook h, int32_t layer) const { return sink && sink->wants(h, layer); }
};

class OpScope;
struct PersistState;  // decode = persistent (cuda/persistent_session.cu)

// Tensor parallelism (model option parallel = tp2..tp8, cuda/tp_cuda.cuh): what makes a session one rank of
// a group. Null at tp1, where nothing below changes; set, the session's model holds the rank's shards (its Config
// has the rank's head / KV-head / intermediate / vocab counts) and the blocks call the collectives of tp_session.cu.
struct TpLink {
  int32_t rank = 0, ranks = 1;
  int32_t vocab0 = 0;      // the rank's embedding / lm_head rows are [vocab0, vocab0 + model cfg.vocab_size)
  int32_t vocab_part = 0;  // P = ceil(V / ranks): the stride of its logits slice and of the gathered buffer
  int32_t full_vocab = 0;  // V: the logits, the sampler and read_out see the whole vocabulary
  qwc::ncclComm_t comm = nullptr;
};

class CudaSession final : public BackendSession {
 public:
  CudaSession(CudaModel &m, int32_t max_batch, int32_t max_context, int32_t max_prefill, const TpLink *tp = nullptr);
  ~CudaSession() override;
  void configure(const StepToggles &t) override;
  KvInfo kv_info() const override {
    const Config &c = m_.cfg;
    KvInfo r;
    qw::kvq::KvLayout lay = kvq_.dev().lay;
    if (!kvq_.active()) {
      lay.type = qw::kvq::KvType::BF16;
      lay.d = c.head_dim;
    }
    r.type = qw::kvq::kv_type_name(lay.type);
    r.bytes_per_token = double(c.num_layers) * c.num_kv_heads * lay.bytes_per_token_stream();
    r.bytes = kvq_.active() ? kvq_.bytes() : uint64_t(kcache_.bytes + vcache_.bytes);
    if (qw::kvq::is_kivi(lay.type)) {
      r.residual_tokens = qw::kvq::kKiviResidual;
      r.max_rollback = qw::kvq::kKiviMaxRollback;
    }
    return r;
  }
  void forward(const Step &step, Sink &sink, int32_t *out_tokens) override;
  bool forward_steps(const Step &first, int32_t n_steps, Sink &sink, int32_t *out_tokens) override;  // decode_steps.cu
  void reset(int32_t) override {}
  bool supports_tree() const override { return true; }
  void kv_compact(int32_t seq, int32_t base, const int32_t *keep, int32_t n) override;  // cuda/eagle_session.cu
  void set_profiling(int32_t mode) override;  // backend_cuda.cu
  static size_t l2_flush_bytes();
  void start_counters();  // counters mode: profiler, counter log, L2 flush buffer (backend_cuda.cu)
  // counters mode (range_profiler.cuh): the ops measured so far, until qw_session_read_counters takes them
  std::string counters_json(size_t *n) const override {
    *n = counter_log_.size();
    return counter_log_.json();
  }
  void counters_take(size_t n) override { counter_log_.take(n); }
  void drain_records(Sink &sink) override { dev_guard([&] { trace_.drain(sink); return 0; }); }
  // Toggle tile (opt/tile/tile_cuda.cuh; compile-checked only): the table tile = auto's launches read, and the tuner
  // that measures the model's shapes for it (cuda/tile_session.cu, opt/tile/tile_tune_cuda.cuh).
  std::string tile_info_json() const override;
  const SparseStats *sparse_stats() const override;  // layers.cu
  std::string tile_tune_json(const TileTuneRequest &r) override;
  void set_tile_table(const TileTable &t) override {
    tiles_.set(t);
    drop_graphs();  // captured graphs hold the old table's kernels
  }

 private:
  friend class OpScope;
  // What an OpScope does: nothing, a cudaEvent pair (events mode), or CUPTI attribution (kernels mode: an
  // external id around eager launches, a node tag while capturing the decode graph). docs/ARCHITECTURE.md
  // §Measurement.
  enum class Marking { NONE, EVENTS, TRACE };
  qwc::CudaTileTable tiles_;  // toggle tile = auto: shape key -> GEMV / GEMM candidate
  struct Graph {
    cudaGraphExec_t exec = nullptr;
    std::shared_ptr<const GraphOps> ops;  // kernels mode: the ops of its kernel nodes
  };
  using bf16 = __nv_bfloat16;
  // --- backend_cuda.cu: buffers, marking, hooks
  bool marking() const { return marking_ != Marking::NONE; }
  void begin_op();
  void end_op(int32_t layer, int32_t op, const char *kernel, OpCost c, int32_t n);
  void abandon_op();
  void drop_graphs();
  std::vector<OpCost> attention_costs(const Step &st) const;
  void capture_bf16(Sink &sink, Hook h, int32_t layer, const bf16 *p, int32_t rows, int32_t cols);
  void capture_f32(Sink &sink, Hook h, int32_t layer, const float *p, int32_t rows, int32_t cols);
  void ensure_rows(int32_t rows);
  void ensure_logits(int32_t rows);
  void ensure_bcast();
  void ensure_dca_ws();
  bool wants_any(const Step &st, Sink &sink) const;
  bool begin_forward(const Step &st);
  // --- layers.cu: the blocks both phases build from (docs/ARCHITECTURE.md §Layers)
  void hook_f32(const Pass &p, Hook h, int32_t l, const float *x, int32_t cols);
  void hook_bf16(const Pass &p, Hook h, int32_t l, const void *x, int32_t cols);
  void embed(const Pass &p);
  void layer(const Pass &p, int32_t l);
  void attn_block(const Pass &p, int32_t l);
  void mlp_block(const Pass &p, int32_t l);
  void rope_kv(const Pass &p, int32_t l, const float *bias);
  const char *linear(const Pass &p, int32_t l, const DevMat &w, const bf16 *act, int64_t act_ld, void *out, int64_t out_ld,
                     int32_t gemm_out);
  // gemv = marlin (this step): the repacked weight of d and the scratch into a, when d has one; else nothing.
  void marlin_args(qwc::GemvArgs &a, const DevMat &d) const;
  void ensure_marlin();  // the model's packs and this session's scratch (before any graph capture)
  // actQuant = int8: the GEMV's arm (a.i8) and, under it, the pre pass's scratch (allocated by ensure_i8 in
  // begin_forward, before any graph capture: a step with any layer at int8)
  void i8_args(qwc::GemvArgs &a, bool on) const;
  void ensure_i8(const Step &st);
  // Dual Chunk Attention of layer l over the pass's rows (src/opt/dca), both phases; returns the kernel name.
  const char *dca_attention(const Pass &p, int32_t l);
  const char *sparse_attention(const Pass &p, int32_t l, bool dca);  // opt/sparse_prefill
  OpCost sparse_cost(const Pass &p, int32_t l) const;                  // its record's cost, after it ran
  void count_sparse(const Pass &p, int32_t l, SparsePrefill mode, const qwc::SparseAttnArgs &a);  // keys visited
  // null while a quantized cache (kvq_) replaces the bf16 one: rope/GEMV epilogues then only write k_out/v_out
  bf16 *kcache(int32_t l) const { return kvq_.active() ? nullptr : kcache_.as<bf16>() + layer_kv_elems_ * l; }
  bf16 *vcache(int32_t l) const { return kvq_.active() ? nullptr : vcache_.as<bf16>() + layer_kv_elems_ * l; }
  // one_seq: every row is one sequence's (a verify pass, all-position logits): the GEMM of lm_head_gemm may run
  void lm_head(const Step *st, const std::vector<int32_t> &rows, bool one_seq);  // st: the actQuant arm
  // --- tp_session.cu (tp_ set only): the vocabulary the logits have (V; the model's own at tp1), a rank's embedding
  // term, the all-reduce of `rows` x hidden fp32 partials in place (an op of its own), the logits gather
  int32_t vocab() const { return tp_ ? tp_->full_vocab : m_.cfg.vocab_size; }
  void tp_embed(const Pass &p);
  void tp_all_reduce(const Pass &p, int32_t l, float *buf);
  void tp_ensure_logits(int32_t rows);
  void tp_gather_logits(int32_t n);
  void tp_capture_sharded(const Pass &p, Hook h, int32_t l, const bf16 *x, int32_t cols);
  void read_out(const Step &st, Sink &sink, int32_t n_seq, const int32_t *dev_tokens, int32_t n_logit_rows,
                bool all_rows, int32_t *out_tokens);
  bool lm_head_gemm(const float *src, int32_t n);  // QW_LMHEAD_GEMM_ROWS (layers.cu)
  // --- decode.cu
  void run_decode(const Step &st, Sink &sink, int32_t *out_tokens);
  void decode_params(const Step &st, int32_t *h) const;
  const Graph *decode_graph(const Step &st, Sink &sink);
  void decode_body(int32_t B, const Step *st, Sink *sink, bool eager_hooks);
  void decode_qkv(const Pass &p, int32_t l);
  const char *decode_attention(const Pass &p, int32_t l, Gqa gqa);
  void run_decode_persistent(const Step &st, Sink &sink, int32_t *out_tokens);  // cuda/persistent_session.cu
  // events mode under decode = persistent: one record per dependency level of the traced kernel (persistent_trace.hpp),
  // placed from its launch event (launch), the last level ending at its end (kernel_ms after launch); inserted into
  // marks_ at `at` (the kernel's place among the step's ops). Runs after forward()'s synchronization (after_sync_).
  void persistent_level_marks(const persist::Plan &plan, const uint64_t *trace, cudaEvent_t launch, float kernel_ms,
                              const Step &st, int32_t B, size_t at);
  void decode_gate_up(const Pass &p, int32_t l);
  // The prologue of a decode GEMV over x_ normed by norm_w: fused (GEMV_PRO_NORM), or (separate) an op `op_id` of its
  // own that writes xn_ with the same bits, which the GEMV then reads (opt/norm/norm_unfused.cuh).
  qwc::GemvArgs decode_norm(const Pass &p, int32_t l, bool fused, int32_t op_id, const DBuf &norm_w);
  // x_ += out of a projection whose epilogue did not add it (toggle norm = separate): an op of its own.
  void residual_op(const Pass &p, int32_t l, const float *y);
  // --- cuda/eagle_session.cu (speculative = eagle)
  void tree_setup(const Step &st, Pass &p);     // refuses the arms a tree step cannot run; kvpos and the mask
  void eagle_input(const Pass &p);              // an EAGLE head's rows: x = fc([embedding ; feature]) + bias
  void attn_input_plain(const Pass &p, int32_t l);  // xn_ = bf16(x) (the head's layer 0 has no input norm)
  void final_norm_hook(const Pass &p);          // capture ln_final.hook_normalized (EAGLE's features)
  // --- prefill.cu
  void run_prefill(const Step &st, Sink &sink, int32_t *out_tokens);
  const char *gemm(int32_t rows, const DevMat &d, const bf16 *a, int64_t lda, void *out, int64_t ldc, int kind);
  const char *gemm_chunked(int32_t rows, const DevMat &d, const bf16 *a, int64_t lda, void *out, int64_t ldc, int kind);
  const char *gemm_marlin(int32_t rows, const DevMat &d, const bf16 *a, int64_t lda, void *out, int64_t ldc, int kind);
  const char *gemm_parts(int32_t rows, std::initializer_list<const DevMat *> parts, const DBuf &out, int64_t ldc,
                         int kind, OpCost &cost);
  void prefill_norm(const Pass &p, int32_t l, int32_t op_id, const DBuf &w);
  void prefill_qkv(const Pass &p, int32_t l);
  qwc::PrefillAttnArgs seq_attn_args(const Step &st, int32_t l, size_t i) const;  // prefill.cu
  const char *prefill_attention(const Pass &p, int32_t l, Gqa gqa);
  void prefill_gate_up(const Pass &p, int32_t l);

  CudaModel &m_;
  const TpLink *tp_ = nullptr;  // parallel = tp2..tp8: this session is rank tp_->rank (null at tp1)
  DBuf tp_part_, tp_gathered_;  // its logits slice [rows, P] and the gathered [ranks, rows, P]
  DBuf tp_hook_;                // a sharded hook's slice, gathered slices and tp1-layout copy (fp32; first use)
  int32_t tp_rows_ = 0;
  int32_t max_batch_, max_ctx_, max_prefill_;
  cudaStream_t stream_ = nullptr;
  // KV cache [L][slots][nKV][max_ctx][d]
  DBuf kcache_, vcache_;
  size_t layer_kv_elems_ = 0;
  qwc::KvqCache kvq_;  // kvCache = q8 | kivi4 | kivi2 (opt/kvcache/kv_quant.cuh)
  qwc::SageScratch sage_;  // attention = sage-int8 | sage-fp8 prefill (opt/attention/sage.cuh), sized on first use
  int32_t sms_ = 132;
  // activations (sized for rows_cap_ rows)
  int32_t rows_cap_ = 0;
  DBuf x_, xn_, qkvf_, q_, z_, kout_, vout_, gu_, h_, gate_, tmp_, capf_;
  qwc::SparseScratch sparse_;  // vertical-slash sparse prefill scratch (src/opt/sparse_prefill)
  qwc::BlockSparseScratch bsparse_;  // block-sparse's
  // keys visited per (layer, head) over the latest prompt's prefill, from the selection (block-sparse: the list counts;
  // vertical-slash: counted on the device, added in sparse_stats()); no recall or error: sparse_stats is a CPU
  // measurement
  SparseStats sparse_stats_;
  mutable SparseStats stats_view_;
  DBuf tree_buf_, tree_ws_, eagle_cat_, eagle_feat_, keep_;  // speculative = eagle: kvpos | mask words; fc input; features; keep list
  std::vector<uint32_t> tree_host_;
  DBuf dca_q2_, dca_q3_;  // Dual Chunk Attention (src/opt/dca): successive- and inter-chunk queries, as q_
  DBuf dca_lse_;           // dca = on prefill on wgmma: the rows' log-sum-exp between its parts, [rows][nH] floats
  DBuf dca_ws_;            // dca = on decode: the key windows' partials (opt/dca/dca.cuh), before any capture
  int32_t dca_split_ = 0;  // their count (dca_decode_split); 0 until ensure_dca_ws
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
  // qw_session_decode_steps (decode_steps.cu): every step's parameter block staged at once (pinned mirror), and the
  // tokens each step sampled, read back once at the end
  DBuf steps_params_, steps_out_;
  int32_t *hsteps_params_ = nullptr, *hsteps_out_ = nullptr;
  size_t steps_cap_ = 0;  // steps the buffers hold at 16 sequences each
  DBuf psamp_;                          // [16] prefill sampling parameters
  qwc::SampleRow *hpsamp_ = nullptr;    // pinned mirror
  DBuf wbuf_;                           // double [16, vocab] sampler scratch
  DBuf attn_ws_, attn_cnt_;
  int32_t n_split_ = 1;
  DBuf bcast_k_, bcast_v_;  // gqa=broadcast scratch [max_batch][nH][max_ctx][d]
  DBuf dq_;                 // dequantized weight scratch for prefill on non-bf16 weights
  size_t dq_elems_ = 0;
  bool marlin_ = false;     // gemv = marlin in the current step
  DBuf mws_part_, mws_cnt_; // its split-K partials and arrival counters (zeroed once; launches leave them zero)
  DBuf i8q_, i8dx_;         // actQuant = int8: a call's codes and per-chunk d / sums (qwc::I8Ws)
  std::vector<float> hbuf_;
  // The last step's logits rows, left in logits_ for the front to read (Sink::logits_deferred): a verify pass's rows
  // x vocab floats cost more to copy than the pass (7B, 16 rows: 9.7 MB), and greedy verification needs the argmax.
  struct DeviceLogits final : LogitsReader {
    CudaSession *s = nullptr;
    int32_t rows = 0;
    void fetch(float *host) override;
    bool argmax(int32_t *ids) override;
  } dlogits_;
  DBuf dargmax_;  // int32 [rows] of DeviceLogits::argmax
  // graphs per batch size
  std::map<std::string, Graph> graphs_;
  std::shared_ptr<PersistState> persist_;  // decode = persistent: plans, counters, scratch (made on first use)
  // profiling
  bool prof_ = false;
  // events mode: work that needs the step's results on the host (decode = persistent's stamps), run by forward() after
  // the synchronization it does anyway, before the marks become records, so the profiled step has no extra sync
  std::function<void()> after_sync_;
  Marking marking_ = Marking::NONE;
  KernelTrace trace_;
  std::unique_ptr<qwc::RangeProfiler> counters_;  // counters mode: CUPTI's range profiler, per op (eager steps)
  bool counting_ = false;                          // the current step measures counters around its ops
  DBuf l2_flush_;  // counters mode: written before each op so that its kernels start from a cold L2 (empty: off)
  qw::CounterLog counter_log_;
  OpMarks marks_;
  std::shared_ptr<const GraphOps> replayed_;  // kernels mode: the graph this step replayed
  std::vector<cudaEvent_t> ev_pool_;
  size_t ev_next_ = 0;
  cudaEvent_t ev_open_ = nullptr;
  int64_t host0_ns_ = 0;
  int64_t step_index_ = 0;
  int32_t phase_ = 0;
};

// One op record around the launches of a scope (the CUDA side of the CPU backend's Recorder): the op opens when
// the scope is entered and closes, with what set() gave it, when the scope is left. Costs are analytic
// (cost.hpp); set() is skipped where computing them is not free and marking() is off.
class OpScope {
 public:
  OpScope(CudaSession &s, int32_t layer, int32_t op, int32_t n_tokens)
      : s_(s), layer_(layer), op_(op), n_(n_tokens), unwinding_(std::uncaught_exceptions()) {
    s_.begin_op();
  }
  OpScope(const OpScope &) = delete;
  OpScope &operator=(const OpScope &) = delete;
  void set(const char *kernel, OpCost cost) { kernel_ = kernel; cost_ = cost; }
  bool marking() const { return s_.marking(); }
  // A launch that threw leaves no record (the step fails); end_op itself may throw, as it did when hand-paired.
  ~OpScope() noexcept(false) {
    if (std::uncaught_exceptions() > unwinding_) s_.abandon_op();
    else s_.end_op(layer_, op_, kernel_, cost_, n_);
  }

 private:
  CudaSession &s_;
  int32_t layer_, op_, n_;
  int unwinding_;
  const char *kernel_ = "";
  OpCost cost_{};
};

}  // namespace cuda_backend
}  // namespace qw
