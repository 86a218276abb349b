// prefill.cu — a prefill step (T token rows of S sequences): prefill's halves of the layer blocks (layers.cu) —
// rmsnorm then a GEMM over bf16 weights (dequantized into scratch for the other types), flash attention per
// sequence — and the logits of the rows asked for (docs/ARCHITECTURE.md §Layers).
#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <string>

#include "attention.cuh"
#include "gemm.cuh"
#include "gqa_attention.cuh"
#include "marlin.cuh"
#include "norm.cuh"
#include "registry.hpp"
#include "session.cuh"
#include "swiglu.cuh"

namespace qw {
namespace cuda_backend {

void CudaSession::run_prefill(const Step &st, Sink &sink, int32_t *out_tokens) {
  const Config &c = m_.cfg;
  const int32_t T = (int32_t)st.tokens.size();
  const int32_t S = (int32_t)st.seq.size();
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
      hparams_[R + r] = st.tree_base >= 0 ? st.tree_pos[size_t(j)] : st.pos0[i] + j;  // RoPE position
      hparams_[2 * R + r] = st.seq[i];
    }
  for (int k = 0; k < 3; ++k)
    CK(cudaMemcpyAsync(params_.as<int32_t>() + k * R, hparams_ + k * R, T * 4, cudaMemcpyHostToDevice, stream_));
  Pass p;
  p.rows = T;
  p.st = &st;
  p.sink = &sink;
  p.tokens = p_tokens_;
  p.pos = p_pos_;
  p.slot = p_slot_;
  if (st.tree_base >= 0) tree_setup(st, p);  // speculative = eagle (cuda/eagle_session.cu)
  embed(p);
  if (c.eagle_head) eagle_input(p);
  for (int32_t l = 0; l < c.num_layers; ++l) layer(p, l);
  final_norm_hook(p);
  std::vector<int32_t> rows_needed;
  if (all_rows) {
    for (int32_t r = 0; r < T; ++r) rows_needed.push_back(r);
  } else {
    for (int32_t i = 0; i < S; ++i) rows_needed.push_back(st.row_offset[i] + st.n_new[i] - 1);
  }
  lm_head(&st, rows_needed, S == 1);
  if (tp_) tp_gather_logits((int32_t)rows_needed.size());  // parallel = tpN (tp_session.cu)
  {  // sampling: the last row of each sequence
    OpScope op(*this, -1, QW_OP_SAMPLE, S);
    for (int32_t i = 0; i < S; ++i) hpsamp_[i] = sample_row(st, i, st.pos0[i] + st.n_new[i]);
    CK(cudaMemcpyAsync(psamp_.p, hpsamp_, S * sizeof(qwc::SampleRow), cudaMemcpyHostToDevice, stream_));
    if (all_rows) {
      for (int32_t i = 0; i < S; ++i)
        qwc::launch_sample(p_out_ + i, logits_.as<float>() + (size_t)(st.row_offset[i] + st.n_new[i] - 1) * vocab(),
                           psamp_.as<qwc::SampleRow>() + i, wbuf_.as<double>(), 1, vocab(), vocab(), stream_);
    } else {
      qwc::launch_sample(p_out_, logits_.as<float>(), psamp_.as<qwc::SampleRow>(), wbuf_.as<double>(), S, vocab(),
                         vocab(), stream_);
    }
    op.set("sample_device", cost_sample(S, vocab()));
  }
  read_out(st, sink, S, p_out_, (int32_t)rows_needed.size(), all_rows, out_tokens);
}

// Quantized / F16 prefill weights: dequantized in L2-sized row chunks by the vectorized kernel (gemm_chunked), the
// default for either gemv value since 2026-12-06 (it was gemv = marlin's alone: fifth run, H100, 7B q4 pp512 22.6k
// against 10.9k tok/s with the generic whole-matrix dequantization); QW_DEQUANT_L2=0 keeps the generic path.
static bool dequant_l2_on() {
  return qwc::env_switch_on("QW_DEQUANT_L2", "prefill dequantizes a whole matrix with the generic kernel",
                       "in L2-sized row chunks with the vectorized kernel");
}

// out[rows, n] = a[rows, k] @ w^T through the GEMM; w as bf16: direct, or dequantized into scratch first.
const char *CudaSession::gemm(int32_t rows, const DevMat &d, const bf16 *a, int64_t lda, void *out, int64_t ldc,
                              int kind) {
  if (const char *k = gemm_marlin(rows, d, a, lda, out, ldc, kind)) return k;
  if (d.type != NativeType::BF16 && dequant_l2_on()) {
    if (const char *k = gemm_chunked(rows, d, a, lda, out, ldc, kind)) return k;
  }
  const bf16 *w = (const bf16 *)d.m.data;
  if (d.type != NativeType::BF16) {
    const size_t n = (size_t)d.m.rows * d.m.cols;
    if (n > dq_elems_) { dq_ = DBuf(n * 2); dq_elems_ = n; }
    qwc::launch_dequant_bf16(dq_.as<bf16>(), d.m, stream_);
    w = dq_.as<bf16>();
  }
  return qwc::launch_gemm(qwc::gemm_args(rows, d.m, a, lda, out, ldc, kind, w), stream_);
}

// gemv = marlin's prefill half on sm_90 (opt/gemv/marlin_gemm.cu): the packed W4 / W8 copy dequantized inside a wgmma
// GEMM, tile by tile, instead of a bf16 scratch. Null when it does not apply (gemv = simple, no packed copy, another
// device, a shape where the chunked path measured faster, QW_MARLIN_GEMM=0): gemm then runs the chunked path.
const char *CudaSession::gemm_marlin(int32_t rows, const DevMat &d, const bf16 *a, int64_t lda, void *out,
                                     int64_t ldc, int kind) {
  if (!marlin_ || !d.mm.data || !qwc::marlin_gemm_requested(d.m.rows, d.m.cols, rows)) return nullptr;
  if (qwc::marlin_gemm_unsupported(d.mm, rows, lda, a)) return nullptr;
  return qwc::launch_marlin_gemm(qwc::gemm_args(rows, d.m, a, lda, out, ldc, kind, nullptr), d.mm, stream_);
}

// Quantized prefill: the weight dequantized by the vectorized kernel (opt/gemv/dequant.cu) in chunks of rows of
// <= 24 MiB of bf16, each GEMM'd right after (the chunk is read back from L2, not DRAM) into its own output columns.
// Null when the vectorized kernel does not cover the type or shape (gemm then runs the generic path).
const char *CudaSession::gemm_chunked(int32_t rows, const DevMat &d, const bf16 *a, int64_t lda, void *out,
                                      int64_t ldc, int kind) {
  constexpr int64_t kChunkBytes = 24ll << 20;
  const qwc::WMat &m = d.m;
  if (m.cols % 8 || ((m.type == qwc::WT_W8 || m.type == qwc::WT_W4) && m.group % 8)) return nullptr;
  const int64_t chunk = std::min<int64_t>(m.rows, std::max<int64_t>(64, kChunkBytes / (m.cols * 2) / 64 * 64));
  if ((size_t)(chunk * m.cols) > dq_elems_) { dq_ = DBuf((size_t)chunk * m.cols * 2); dq_elems_ = (size_t)chunk * m.cols; }
  const size_t elem = kind == qwc::GEMM_OUT_BF16 ? 2 : 4;
  const char *kn = nullptr;
  for (int64_t r0 = 0; r0 < m.rows; r0 += chunk) {
    const qwc::WMat sub = qwc::wmat_rows(m, r0, std::min(chunk, m.rows - r0));
    if (!qwc::launch_dequant_bf16_fast(dq_.as<bf16>(), sub, stream_)) return nullptr;  // (decided on r0 = 0)
    const char *k =
        qwc::launch_gemm(qwc::gemm_args(rows, sub, a, lda, (char *)out + r0 * elem, ldc, kind, dq_.as<bf16>()), stream_);
    if (!kn) kn = std::strcmp(k, "gemm_cublaslt") == 0 ? "dequant_l2+gemm_cublaslt" : "dequant_l2+gemm_mma";
  }
  return kn;
}

// A projection of xn_ (rmsnorm output, hidden_size columns) kept fused or in parts: the parts' GEMMs write consecutive column
// blocks of out (leading dimension ldc); the op's kernel is the first GEMM's, its cost the parts' sum.
const char *CudaSession::gemm_parts(int32_t rows, std::initializer_list<const DevMat *> parts, const DBuf &out,
                                    int64_t ldc, int kind, OpCost &cost) {
  const size_t elem = kind == qwc::GEMM_OUT_BF16 ? 2 : 4;
  const char *kn = nullptr;
  int64_t col = 0;
  for (const DevMat *d : parts) {
    const char *k = gemm(rows, *d, xn_.as<bf16>(), m_.cfg.hidden_size, out.as<char>() + col * elem, ldc, kind);
    if (!kn) kn = k;
    cost = add(cost, cost_of(*d, rows, false));
    col += d->m.rows;
  }
  return kn;
}

// xn_ = rmsnorm(x) * w as its own op (decode fuses it into the next GEMV's prologue).
void CudaSession::prefill_norm(const Pass &p, int32_t l, int32_t op_id, const DBuf &w) {
  const Config &c = m_.cfg;
  OpScope op(*this, l, op_id, p.rows);
  qwc::launch_rmsnorm(xn_.as<bf16>(), nullptr, x_.as<float>(), w.as<float>(), p.rows, c.hidden_size, c.rms_eps, stream_);
  op.set("rmsnorm", cost_rmsnorm(p.rows, c.hidden_size, 4.0));
}

// rmsnorm, then the q|k|v GEMM (fp32 out), then rope_kv adding the bias.
void CudaSession::prefill_qkv(const Pass &p, int32_t l) {
  const Config &c = m_.cfg;
  const int32_t T = p.rows, QKV = c.q_dim() + 2 * c.kv_dim();
  const Layer &L = m_.layers[l];
  if (L.attn_norm.p) prefill_norm(p, l, QW_OP_ATTN_NORM, L.attn_norm);
  else attn_input_plain(p, l);  // an EAGLE head's layer 0
  {
    OpScope op(*this, l, QW_OP_QKV, T);
    OpCost cost;
    const char *kn = L.fused_qkv() ? gemm_parts(T, {&L.qkv}, qkvf_, QKV, qwc::GEMM_OUT_F32, cost)
                                   : gemm_parts(T, {&L.q, &L.k, &L.v}, qkvf_, QKV, qwc::GEMM_OUT_F32, cost);
    op.set(kn, cost);
  }
  rope_kv(p, l, L.qkv_bias.as<float>());
}

// Sequence i of a prefill step as the flash kernels see it: its rows of q_ and z_, its slot of layer l's cache.
qwc::PrefillAttnArgs CudaSession::seq_attn_args(const Step &st, int32_t l, size_t i) const {
  const Config &c = m_.cfg;
  const size_t row0 = (size_t)st.row_offset[i];
  qwc::PrefillAttnArgs a;
  a.out = z_.as<bf16>() + row0 * c.q_dim();
  a.q = q_.as<bf16>() + row0 * c.q_dim();
  a.kcache = kcache(l);
  a.vcache = vcache(l);
  a.slot = st.seq[i];
  a.pos0 = st.pos0[i];
  a.n = st.n_new[i];
  a.n_heads = c.num_heads; a.n_kv = c.num_kv_heads; a.head_dim = c.head_dim; a.max_ctx = max_ctx_;
  return a;
}

// Flash attention, one launch per sequence over its cache slot; gqa=broadcast first repeats the sequence's kv
// heads into slot 0 of the scratch cache (opt/gqa/gqa_attention.cuh).
const char *CudaSession::prefill_attention(const Pass &p, int32_t l, Gqa gqa) {
  const Config &c = m_.cfg;
  const Step &st = *p.st;
  const int32_t R = prow_cap_;
  const char *an = "attn_prefill_mma";
  const Attention arm = attention_arm(st, l);
  const bool sage = arm != Attention::FlashBf16;  // Sage reads the kv heads in place: a broadcast copy holds the same rows
  if (sage) {
    int dev = 0;
    CK(cudaGetDevice(&dev));
    const char *why = qwc::sage_unsupported(arm == Attention::SageFp8, c.head_dim, c.num_heads, c.num_kv_heads, dev);
    if (*why) throw Error(QW_ERR_UNSUPPORTED, "attention = " + value_name(arm) + " on layer " + std::to_string(l) + ": " + why);
  }
  for (size_t i = 0; i < st.seq.size(); ++i) {
    const size_t row0 = (size_t)st.row_offset[i];
    qwc::PrefillAttnArgs a = seq_attn_args(st, l, i);
    a.tree = p.tree;  // a tree step (one sequence): its rows see the prefix and their ancestors
    a.split_ws = p.tree_ws;
    a.n_split = p.tree_split;
    if (sage) {
      qwc::SagePrefillArgs sa;
      sa.p = a;
      sa.fp8 = arm == Attention::SageFp8;
      sa.ws = &sage_;
      an = dev_guard([&] { return qwc::launch_sage_prefill(sa, stream_); });
      continue;
    }
    qwc::GqaKvArgs g;
    g.kcache = kcache(l);
    g.vcache = vcache(l);
    if (gqa == Gqa::Broadcast) {  // the sequence's length on the device, for the copy
      ensure_bcast();
      hparams_[3 * R + i] = st.pos0[i] + st.n_new[i];
      CK(cudaMemcpyAsync(p_len_ + i, hparams_ + 3 * R + i, 4, cudaMemcpyHostToDevice, stream_));
      g.scratch_k = bcast_k_.as<bf16>();
      g.scratch_v = bcast_v_.as<bf16>();
    }
    g.slot = p.slot + row0;
    g.len = p_len_ + i;
    g.rows = 1; g.n_heads = c.num_heads; g.n_kv = c.num_kv_heads; g.head_dim = c.head_dim; g.max_ctx = max_ctx_;
    g.max_len = st.pos0[i] + st.n_new[i];
    const qwc::GqaKv kv = qwc::gqa_kv(gqa, g, stream_);
    a.kcache = kv.k;
    a.vcache = kv.v;
    a.n_kv = kv.n_kv;
    if (kv.scratch) a.slot = 0;
    an = qwc::launch_prefill_attention(a, stream_);
  }
  if (gqa != Gqa::Broadcast || sage) return an;
  // the kernel that ran (wgmma by default on sm_90, mma.sync elsewhere), marked as reading the broadcast copy
  if (std::strncmp(an, "attn_prefill_wgmma", 18) == 0) return "attn_prefill_wgmma+broadcast";
  if (std::strcmp(an, "attn_prefill_simt") == 0) return "attn_prefill_simt+broadcast";
  return "attn_prefill_mma+broadcast";
}

// rmsnorm, the gate|up GEMM (bf16 out), then SwiGLU as its own op.
void CudaSession::prefill_gate_up(const Pass &p, int32_t l) {
  const Config &c = m_.cfg;
  const int32_t T = p.rows, I = c.intermediate_size;
  const Layer &L = m_.layers[l];
  prefill_norm(p, l, QW_OP_FFN_NORM, L.ffn_norm);
  {
    OpScope op(*this, l, QW_OP_GATE_UP, T);
    OpCost cost;
    const char *kn = L.fused_gu() ? gemm_parts(T, {&L.gate_up}, gu_, 2 * I, qwc::GEMM_OUT_BF16, cost)
                                  : gemm_parts(T, {&L.gate, &L.up}, gu_, 2 * I, qwc::GEMM_OUT_BF16, cost);
    op.set(kn, cost);
  }
  OpScope op(*this, l, QW_OP_SWIGLU, T);
  qwc::launch_swiglu(h_.as<bf16>(), p.wants(HOOK_MLP_PRE, l) ? gate_.as<bf16>() : nullptr, gu_.as<bf16>(), T, I,
                     L.fused_gu(), stream_);
  op.set("swiglu", cost_swiglu(T, I, 2.0));
}

}  // namespace cuda_backend
}  // namespace qw
