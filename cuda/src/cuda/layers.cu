// layers.cu — the blocks a forward pass is built from, shared by decode (decode.cu) and prefill (prefill.cu) in
// the spirit of llama.cpp's build_attn / build_ffn (docs/ARCHITECTURE.md §Layers). A block owns the order of its
// ops, their records and its hook points; where the phases differ (decode fuses each norm into a GEMV prologue,
// prefill runs rmsnorm + GEMM; split-KV vs flash attention) it calls the phase's half.
//
// Per layer: hook_resid_pre -> attention block [qkv (+rope) -> q/k/v hooks -> attention -> z hook -> o_proj +
// residual -> attn_out/resid_mid hooks] -> MLP block [gate_up + SwiGLU -> mlp hooks -> down + residual ->
// resid_post hook]. Op ids, kernel names and costs are those of the records (docs/ARCHITECTURE.md §Measurement).
#include <algorithm>

#include "dca.cuh"
#include "eagle_cuda.cuh"
#include "embed.cuh"
#include "fa3_prefill.cuh"
#include "gemm.cuh"
#include "kvcache.hpp"
#include "norm.hpp"
#include "registry.hpp"
#include "rope.cuh"
#include "sparse_cost.hpp"
#include "sparse_select.hpp"
#include "sample.cuh"
#include "norm.cuh"
#include "session.cuh"

namespace qw {
namespace cuda_backend {

void CudaSession::hook_f32(const Pass &p, Hook h, int32_t l, const float *x, int32_t cols) {
  if (p.sink) capture_f32(*p.sink, h, l, x, p.rows, cols);
}
void CudaSession::hook_bf16(const Pass &p, Hook h, int32_t l, const void *x, int32_t cols) {
  // parallel = tpN: every bf16 hook (q, k, v, z, mlp pre/post) is sharded by columns: gathered first (tp_session.cu)
  if (tp_ && p.sink && p.sink->wants(h, l)) return tp_capture_sharded(p, h, l, (const bf16 *)x, cols);
  if (p.sink) capture_bf16(*p.sink, h, l, (const bf16 *)x, p.rows, cols);
}

void CudaSession::embed(const Pass &p) {
  if (tp_) return tp_embed(p);  // parallel = tpN: this rank's vocab rows, then the all-reduce (tp_session.cu)
  OpScope op(*this, -1, QW_OP_EMBED, p.rows);
  qwc::launch_embed(x_.as<float>(), m_.embed.m, p.tokens, p.rows, stream_);
  op.set("embed_gather", cost_embed(p.rows, m_.cfg.hidden_size, m_.embed.type, m_.embed.group, 4.0));
}

void CudaSession::layer(const Pass &p, int32_t l) {
  hook_f32(p, HOOK_RESID_PRE, l, x_.as<float>(), m_.cfg.hidden_size);
  attn_block(p, l);
  mlp_block(p, l);
}

void CudaSession::attn_block(const Pass &p, int32_t l) {
  const Config &c = m_.cfg;
  const int32_t H = c.hidden_size;
  const Layer &L = m_.layers[l];
  const bool dca = p.st && dca_on(*p.st, l);  // DCA reads the kv heads in place: no broadcast copy
  const bool sparse = !p.decode && p.st && sparse_on(*p.st, l, p.rows);  // reads the kv heads in place too
  const Gqa gqa = !dca && !sparse && p.st ? gqa_arm(*p.st, l) : Gqa::Native;  // toggle gqa (opt/gqa/gqa_attention.cuh)
  const bool bcast = gqa == Gqa::Broadcast;
  float *x = x_.as<float>();
  // q (roped) into q_, k/v into the cache (and kout_/vout_ when hooked)
  if (p.decode) decode_qkv(p, l);
  else prefill_qkv(p, l);
  hook_bf16(p, HOOK_Q, l, q_.p, c.q_dim());
  hook_bf16(p, HOOK_K, l, kout_.p, c.kv_dim());
  hook_bf16(p, HOOK_V, l, vout_.p, c.kv_dim());
  {
    OpScope op(*this, l, QW_OP_ATTENTION, p.rows);
    const char *kn;
    if (sparse) {
      kn = sparse_attention(p, l, dca);
    } else if (dca) {  // configure refuses dca with a quantized cache
      kn = dca_attention(p, l);
    } else if (kvq_.active()) {  // q8 / kivi (opt/kvcache): write what completes, attend reading the codes, then the ring
      if (bcast) throw Error(QW_ERR_UNSUPPORTED, "gqa = broadcast needs kvCache = bf16 on cuda");
      qwc::KvqStep ks;
      ks.k = kout_.as<bf16>();
      ks.v = vout_.as<bf16>();
      ks.row_pos = p.pos;
      ks.row_slot = p.slot;
      ks.rows = p.rows;
      ks.layer = l;
      kvq_.write(ks, stream_);
      kn = kvq_.attend(ks, q_.as<bf16>(), z_.as<bf16>(), stream_);
      kvq_.ring(ks, stream_);
    } else {
      kn = p.decode ? decode_attention(p, l, gqa) : prefill_attention(p, l, gqa);
    }
    if (op.marking())  // the cost walks every sequence (sparse: every head's pattern): only when it is recorded
      op.set(kn, sparse ? sparse_cost(p, l)
                        : cost_attention(p.st->pos0, p.st->n_new, c.num_heads, bcast ? c.num_heads : c.num_kv_heads,
                                         c.head_dim, kv_cache_elem_bytes(p.st->toggles.kv_cache, c.head_dim), 2.0));
  }
  hook_bf16(p, HOOK_Z, l, z_.p, c.q_dim());
  // o_proj + residual: accumulated into x by the projection's epilogue; or through tmp_ when hook_attn_out wants the
  // projection alone (the add inside the op), or toggle norm = separate (the add an op of its own: residual_op), or
  // at parallel = tpN (tp_: the partial sums are all-reduced between the projection and the add)
  const bool want_attn_out = p.wants(HOOK_ATTN_OUT, l), sep = norm_arm(p.st, l) == Norm::Separate || tp_;
  {
    OpScope op(*this, l, QW_OP_O_PROJ, p.rows);
    const bool via_tmp = want_attn_out || sep;
    const char *kn = linear(p, l, L.o, z_.as<bf16>(), c.q_dim(), via_tmp ? tmp_.p : (void *)x, H,
                            via_tmp ? qwc::GEMM_OUT_F32 : qwc::GEMM_OUT_ADD_F32);
    if (want_attn_out && !sep) qwc::launch_add_f32(x, tmp_.as<float>(), (int64_t)p.rows * H, stream_);
    op.set(p.decode ? (sep ? "o_proj:gemv" : "o_proj+residual:gemv") : kn,
           sep ? cost_of(L.o, p.rows, false) : add(cost_of(L.o, p.rows, false), cost_residual(p.rows, H, 4.0)));
  }
  if (tp_) tp_all_reduce(p, l, tmp_.as<float>());
  if (sep) residual_op(p, l, tmp_.as<float>());
  if (want_attn_out) hook_f32(p, HOOK_ATTN_OUT, l, tmp_.as<float>(), H);
  hook_f32(p, HOOK_RESID_MID, l, x, H);
}

void CudaSession::mlp_block(const Pass &p, int32_t l) {
  const Config &c = m_.cfg;
  const int32_t H = c.hidden_size, I = c.intermediate_size;
  const Layer &L = m_.layers[l];
  float *x = x_.as<float>();
  // h_ = SwiGLU(gate, up) of the normed x (gate_ holds the gate when hook_mlp_pre wants it)
  if (p.decode) decode_gate_up(p, l);
  else prefill_gate_up(p, l);
  hook_bf16(p, HOOK_MLP_PRE, l, gate_.p, I);
  hook_bf16(p, HOOK_MLP_POST, l, h_.p, I);
  const bool sep = norm_arm(p.st, l) == Norm::Separate || tp_;  // toggle norm, or tp_ (all-reduce first): add apart
  {
    OpScope op(*this, l, QW_OP_DOWN, p.rows);
    const char *kn = linear(p, l, L.down, h_.as<bf16>(), I, sep ? tmp_.p : (void *)x, H,
                            sep ? qwc::GEMM_OUT_F32 : qwc::GEMM_OUT_ADD_F32);
    op.set(p.decode ? (sep ? "down:gemv" : "down+residual:gemv") : kn,
           sep ? cost_of(L.down, p.rows, false) : add(cost_of(L.down, p.rows, false), cost_residual(p.rows, H, 4.0)));
  }
  if (tp_) tp_all_reduce(p, l, tmp_.as<float>());
  if (sep) residual_op(p, l, tmp_.as<float>());
  hook_f32(p, HOOK_RESID_POST, l, x, H);
}

// x_ += y (fp32 [rows, hidden]): the residual add of toggle norm = separate. The fused epilogue (GEMV_EPI_ADD_F32)
// adds the same fp32 value into x, so decode gives the same bits either way.
void CudaSession::residual_op(const Pass &p, int32_t l, const float *y) {
  const int32_t H = m_.cfg.hidden_size;
  OpScope op(*this, l, QW_OP_RESIDUAL, p.rows);
  qwc::launch_add_f32(x_.as<float>(), y, (int64_t)p.rows * H, stream_);
  op.set("residual_add", cost_residual(p.rows, H, 4.0));
}

// RoPE of q and k from the fp32 q|k|v projection (bias added here when given), k and v written to the cache.
void CudaSession::rope_kv(const Pass &p, int32_t l, const float *bias) {
  const Config &c = m_.cfg;
  OpScope op(*this, l, QW_OP_ROPE, p.rows);
  qwc::RopeKvArgs r;
  r.q_out = q_.as<bf16>();
  r.k_out = (kvq_.active() || p.wants(HOOK_K, l)) ? kout_.as<bf16>() : nullptr;
  r.v_out = (kvq_.active() || p.wants(HOOK_V, l)) ? vout_.as<bf16>() : nullptr;
  r.kcache = kcache(l);
  r.vcache = vcache(l);
  r.qkv = qkvf_.as<float>();
  r.qkv_ld = c.q_dim() + 2 * c.kv_dim();
  r.bias = bias;
  r.row_pos = p.pos;
  r.row_kvpos = p.kvpos;
  r.row_slot = p.slot;
  r.inv_freq = m_.inv_freq.as<float>();
  r.rows = p.rows; r.n_heads = c.num_heads; r.n_kv = c.num_kv_heads; r.head_dim = c.head_dim; r.max_ctx = max_ctx_;
  r.pair_interleaved = m_.layers[l].qkv_pairs;
  const bool dca = p.st && dca_on(*p.st, l);  // queries roped three ways, keys at pos mod (chunk - local)
  if (dca)
    qwc::launch_dca_rope_kv(r, dca_q2_.as<bf16>(), dca_q3_.as<bf16>(), p.st->dca_chunk, p.st->dca_local, stream_);
  else
    qwc::launch_rope_kv(r, stream_);
  op.set(dca ? (bias ? "bias+rope_kv_write:dca" : "rope_kv_write:dca") : (bias ? "bias+rope_kv_write" : "rope_kv_write"),
         cost_rope(p.rows, (dca ? 3 : 1) * c.num_heads + c.num_kv_heads, c.head_dim, 2.0));
}

// out = act @ w^T for the pass's rows (gemm_out: a qwc::GemmOut): decode's GEMV (bf16 prologue), prefill's GEMM.
// l: the layer (its actQuant arm). Returns the kernel variant.
const char *CudaSession::linear(const Pass &p, int32_t l, const DevMat &w, const bf16 *act, int64_t act_ld, void *out,
                                int64_t out_ld, int32_t gemm_out) {
  if (!p.decode) return gemm(p.rows, w, act, act_ld, out, out_ld, gemm_out);
  qwc::GemvArgs a;
  a.epi = gemm_out == qwc::GEMM_OUT_F32       ? qwc::GEMV_EPI_F32
          : gemm_out == qwc::GEMM_OUT_ADD_F32 ? qwc::GEMV_EPI_ADD_F32
                                              : qwc::GEMV_EPI_BF16;
  a.out = out;
  a.out_ld = out_ld;
  a.w = w.m;
  marlin_args(a, w);
  i8_args(a, act_i8(p.st, l));
  a.batch = p.rows;
  a.act = act;
  a.act_ld = act_ld;
  return qwc::launch_gemv(a, stream_);
}

// dca = on: a prefill step runs per sequence on the wgmma kernel (opt/attention/fa3_prefill.cuh, one launch per DCA
// part) on sm_90 unless QW_FLASH_WGMMA=0 or QW_DCA_WGMMA=0, else on the mma.sync kernel (attention_prefill.cu,
// opt/dca/dca_tiles.cuh) where it supports the shape; decode, and QW_DCA_MMA=0, the SIMT kernel of opt/dca over every
// row at once (decode: split into key windows, dca_decode_split).
const char *CudaSession::dca_attention(const Pass &p, int32_t l) {
  const Config &c = m_.cfg;
  const int32_t span = p.st->dca_chunk - p.st->dca_local;
  if (!p.decode && qwc::dca_prefill_tensor_cores_requested()) {
    const bool wgmma = span >= 1 && qwc::fa3_prefill_requested() && qwc::dca_prefill_fa3_requested() &&
                       !*qwc::fa3_prefill_unsupported_here(seq_attn_args(*p.st, l, 0));
    if (wgmma || qwc::dca_prefill_mma_supported(c.head_dim, span)) {
      const char *kn = "";
      for (size_t i = 0; i < p.st->seq.size(); ++i) {
        qwc::PrefillAttnArgs a = seq_attn_args(*p.st, l, i);
        const size_t row = (size_t)p.st->row_offset[i];  // the sequence's first row of the step
        a.dca.succ = dca_q2_.as<bf16>() + row * c.q_dim();
        a.dca.inter = dca_q3_.as<bf16>() + row * c.q_dim();
        a.dca.span = span;
        kn = wgmma ? qwc::launch_prefill_attention_dca_fa3(a, dca_lse_.as<float>() + row * c.num_heads, stream_)
                   : qwc::launch_prefill_attention_dca(a, stream_);
      }
      return kn;
    }
  }
  qwc::DcaAttnArgs a;
  a.out = z_.as<bf16>();
  a.q_intra = q_.as<bf16>();
  a.q_succ = dca_q2_.as<bf16>();
  a.q_inter = dca_q3_.as<bf16>();
  a.kcache = kcache(l);
  a.vcache = vcache(l);
  a.row_pos = p.pos;
  a.row_slot = p.slot;
  a.rows = p.rows; a.n_heads = c.num_heads; a.n_kv = c.num_kv_heads; a.head_dim = c.head_dim; a.max_ctx = max_ctx_;
  a.chunk = p.st->dca_chunk; a.local = p.st->dca_local;
  if (p.decode && dca_split_ > 1) {  // key windows per row (run_decode allocated them before any capture)
    a.n_split = dca_split_;
    a.ws = dca_ws_.as<float>();
  }
  return qwc::launch_dca_attention(a, stream_);
}

// Sparse prefill (src/opt/sparse_prefill/: vertical-slash sparse_prefill.cuh, block-sparse block_sparse.cuh), over plain
// or DCA queries. One sequence per prefill step (the front's prefill); its record counts the keys visited (sparse_cost),
// as the CPU's.
const char *CudaSession::sparse_attention(const Pass &p, int32_t l, bool dca) {
  const Config &c = m_.cfg;
  const SparsePrefill mode = p.st->toggles.layer[size_t(l)].sparse_prefill;
  if (kvq_.active())
    throw Error(QW_ERR_UNSUPPORTED, "sparsePrefill = " + value_name(mode) + " reads a bf16 KV cache; set kvCache to bf16, or sparsePrefill to off");
  if (p.st->seq.size() != 1) throw Error(QW_ERR_UNSUPPORTED, "sparsePrefill: one sequence per prefill step");
  qwc::SparseAttnArgs a;
  a.out = z_.as<bf16>();
  a.q[0] = q_.as<bf16>();
  if (dca) { a.q[1] = dca_q2_.as<bf16>(); a.q[2] = dca_q3_.as<bf16>(); a.dca_span = p.st->dca_chunk - p.st->dca_local; }
  a.kcache = kcache(l);
  a.vcache = vcache(l);
  a.rows = p.rows; a.pos0 = p.st->pos0[0]; a.slot = p.st->seq[0];
  a.n_heads = c.num_heads; a.n_kv = c.num_kv_heads; a.head_dim = c.head_dim; a.max_ctx = max_ctx_;
  const char *kn = mode == SparsePrefill::BlockSparse ? qwc::run_block_sparse_prefill(a, p.st->sparse, bsparse_, stream_)
                                                      : qwc::run_sparse_prefill(a, p.st->sparse, sparse_, stream_);
  count_sparse(p, l, mode, a);
  return kn;
}

// Keys visited at layer l per head, into sparse_stats_. Block-sparse: the same for every head (the list counts depend
// on the budget alone: sparse_select.hpp block_keys_visited). Vertical-slash: each head's selection counted on the
// device (run_sparse_count: sparse_cost.hpp's count, columns and diagonals apart, less the keys on both), fetched when
// the stats are read (sparse_stats()). The step's first sparse layer starts a new prompt's stats at position 0.
void CudaSession::count_sparse(const Pass &p, int32_t l, SparsePrefill mode, const qwc::SparseAttnArgs &a) {
  const Config &c = m_.cfg;
  const int32_t H = c.num_heads, L = c.num_layers, p0 = p.st->pos0[0], N = p0 + p.rows, B = qw::kSparseBlock;
  int32_t first = l;
  for (int32_t k = 0; k < l; ++k)
    if (sparse_on(*p.st, k, p.rows)) {
      first = k;
      break;
    }
  if (l == first) {
    if (sparse_stats_.layers != L || sparse_stats_.heads != H || p0 == 0) {
      sparse_stats_.reset(L, H);
      sparse_.reset_counts(size_t(L) * H, stream_);
    }
    ++sparse_stats_.steps;
  }
  const double dense = (double(N) * (N + 1) - double(p0) * (p0 + 1)) / 2;  // sum of i + 1 over rows p0 .. N - 1
  std::vector<double> keys(size_t(H), 0.0);
  if (mode == SparsePrefill::BlockSparse) {
    const qw::SparseBudget &b = p.st->sparse;
    const int32_t sink_b = qw::sparse::blocks_of(b.sink, B), local_b = qw::sparse::blocks_of(b.local, B);
    double k = 0;
    for (int32_t i = p0; i < N; ++i) {
      const int32_t qb = i / B;
      k += double(qw::sparse::block_keys_visited(i, qb, qw::sparse::top_blocks_count(qb, sink_b, local_b, b.blocks), B));
    }
    keys.assign(size_t(H), k);
  } else {
    if (sparse_.counts_n() != size_t(L) * H) sparse_.reset_counts(size_t(L) * H, stream_);
    qwc::run_sparse_count(a, sparse_, l, stream_);  // keys stay 0 here: sparse_stats() adds the device's
  }
  for (int32_t h = 0; h < H; ++h) {
    SparseHeadStats &s = sparse_stats_.head[size_t(l) * H + h];
    s.rows += p.rows, s.keys += keys[size_t(h)], s.dense_keys += dense;
  }
}

// The stats with vertical-slash's keys visited, which the device counted, added (synchronizes the stream).
const SparseStats *CudaSession::sparse_stats() const {
  const std::vector<double> &k = sparse_.fetch_counts(stream_);
  stats_view_ = sparse_stats_;
  for (size_t i = 0; i < stats_view_.head.size() && i < k.size(); ++i) stats_view_.head[i].keys += k[i];
  return &stats_view_;
}

// The attention record of a sparse step (opt/sparse_prefill/sparse_cost.hpp, the CPU's model), from every head's
// pattern: vertical-slash columns | diagonals, block-sparse key blocks (either fetched from the device).
OpCost CudaSession::sparse_cost(const Pass &p, int32_t l) const {
  const Config &c = m_.cfg;
  const int32_t H = c.num_heads, p0 = p.st->pos0[0];
  const SparsePrefill mode = p.st->toggles.layer[size_t(l)].sparse_prefill;
  std::vector<SparsePattern> pat(static_cast<size_t>(H));
  if (mode == SparsePrefill::BlockSparse) {
    bsparse_.fetch_lists(stream_);  // a device selection: copied back only for a recorded op
    const std::vector<int32_t> &lists = bsparse_.host_lists, &offs = bsparse_.host_offsets;
    const int32_t nqb = bsparse_.nqb;
    for (int32_t h = 0; h < H && offs.size() == size_t(H) * nqb + 1; ++h) {
      pat[size_t(h)].qb0 = bsparse_.qb0;
      for (int32_t b = 0; b < nqb; ++b)
        pat[size_t(h)].blocks.emplace_back(lists.begin() + offs[size_t(h) * nqb + b], lists.begin() + offs[size_t(h) * nqb + b + 1]);
    }
  } else {
    sparse_.fetch_lists(stream_);  // a device selection: copied back only for a recorded op
    const std::vector<int32_t> &lists = sparse_.host_lists, &offs = sparse_.host_offsets;
    for (int32_t h = 0; h < H && offs.size() == size_t(2 * H + 1); ++h) {
      pat[size_t(h)].cols.assign(lists.begin() + offs[size_t(2 * h)], lists.begin() + offs[size_t(2 * h + 1)]);
      pat[size_t(h)].diags.assign(lists.begin() + offs[size_t(2 * h + 1)], lists.begin() + offs[size_t(2 * h + 2)]);
    }
  }
  SparseWork w;
  add_sparse_work(w, mode, pat, c.num_kv_heads, p0, p0 + p.rows, std::min(kSparseLastQ, p.rows), c.head_dim);
  return cost_sparse_attention(w, p.rows, H, c.num_kv_heads, c.head_dim,
                               kv_cache_elem_bytes(p.st->toggles.kv_cache, c.head_dim), 2.0);
}

// Final norm + lm_head over `rows` of x into logits_ rows 0.., through the fused GEMV in chunks of <= 16 rows
// (rows not contiguous are gathered into tmp_ first, so that the GEMV reads them contiguously). At parallel = tpN
// (tp_) the GEMV writes this rank's vocab slice [n, P] and tp_gather_logits assembles logits_ from every rank's.
// Rows of one sequence (one_seq) may take the GEMM instead (lm_head_gemm); a batch's rows never do, so that a
// sequence's logits are the same bits alone or in a batch.
void CudaSession::lm_head(const Step *st, const std::vector<int32_t> &rows, bool one_seq) {
  const Config &c = m_.cfg;
  const int32_t H = c.hidden_size, n = (int32_t)rows.size();
  const float *x = x_.as<float>();
  OpScope op(*this, -1, QW_OP_LM_HEAD, n);
  float *g = tmp_.as<float>();
  bool contiguous = true;
  for (size_t i = 1; i < rows.size(); ++i) contiguous &= rows[i] == rows[i - 1] + 1;
  const float *src = x + (size_t)rows[0] * H;
  if (!contiguous) {
    for (size_t i = 0; i < rows.size(); ++i)
      CK(cudaMemcpyAsync(g + i * H, x + (size_t)rows[i] * H, H * 4, cudaMemcpyDeviceToDevice, stream_));
    src = g;
  }
  const bool norm = m_.out_norm.p != nullptr;  // an EAGLE head has no final norm: bf16 rows of x (eagle_cuda.cuh)
  if (one_seq && lm_head_gemm(src, n)) {
    op.set("final_norm+lm_head:gemm",
           add(cost_rmsnorm(n, H, 4.0), cost_matmul(n, c.vocab_size, H, (NativeType)m_.lm_head->type, 0, false, 2.0)));
    return;
  }
  if (!norm) qwc::launch_f32_to_bf16(xn_.as<bf16>(), src, (int64_t)n * H, stream_);
  for (int32_t r0 = 0; r0 < n; r0 += 16) {
    qwc::GemvArgs a = norm ? norm_gemv(src + (size_t)r0 * H, H, std::min(16, n - r0), m_.out_norm.as<float>(), c.rms_eps)
                           : bf16_gemv(xn_.as<bf16>() + (size_t)r0 * H, H, std::min(16, n - r0));
    a.epi = qwc::GEMV_EPI_F32;
    const int64_t ld = tp_ ? tp_->vocab_part : c.vocab_size;  // tp_: the rank's slice (its cfg.vocab_size columns)
    a.out = (tp_ ? tp_part_.as<float>() : logits_.as<float>()) + (size_t)r0 * ld;
    a.out_ld = ld;
    a.w = *m_.lm_head;
    marlin_args(a, m_.lm_head == &m_.embed.m ? m_.embed : m_.lm_head_own);
    i8_args(a, act_i8(st, m_.cfg.num_layers - 1));  // the last layer's arm (as the CPU backend)
    qwc::launch_gemv(a, stream_);
  }
  op.set("final_norm+lm_head:gemv",
         add(cost_rmsnorm(n, H, 4.0), cost_matmul(n, c.vocab_size, H, (NativeType)m_.lm_head->type, m_.lm_head->group,
                                                  false, 2.0)));
}

// QW_LMHEAD_GEMM_ROWS = N (default 8; 0: always the GEMV): a step with at least N logits rows (a verify pass,
// all-position logits) normalizes them once and runs the lm_head as one GEMM (cuBLASLt) instead of a GEMV per 16
// rows, each of which reads the whole lm_head (7B: 1.09 GB). H100, 7B, verify pass lm_head (sixth run): 8 rows 869 ->
// 391 us, 16 rows 2273 -> 395, 64 rows 9099 -> 408; 4 rows (GEMV, under the bound) 427 against 349 for one.
// Other bits than the GEMV's (summation order). bf16 lm_head with a final norm at tp1 only; false where it does not
// apply.
bool CudaSession::lm_head_gemm(const float *src, int32_t n) {
  static const int32_t min_rows = [] {
    try {
      return qwc::env_count("QW_LMHEAD_GEMM_ROWS", 8, 1L << 20, "a row count >= 0 (0 keeps the lm_head on the GEMV)");
    } catch (const qwc::CudaError &e) {
      throw Error(QW_ERR_INVALID_ARGUMENT, e.what());  // a setting, not a device fault
    }
  }();
  if (min_rows <= 0 || n < min_rows || tp_ || !m_.out_norm.p || m_.lm_head->type != qwc::WT_BF16) return false;
  const Config &c = m_.cfg;
  qwc::launch_rmsnorm(xn_.as<bf16>(), nullptr, src, m_.out_norm.as<float>(), n, c.hidden_size, c.rms_eps, stream_);
  qwc::launch_gemm(qwc::gemm_args(n, *m_.lm_head, xn_.as<bf16>(), c.hidden_size, logits_.as<float>(), c.vocab_size,
                                  qwc::GEMM_OUT_F32, (const bf16 *)m_.lm_head->data),
                   stream_);
  return true;
}

// The tokens sampled on the device (n_seq) and, when asked, the logits rows (n_logit_rows: every row of the step
// when all_rows, else the last row of each sequence) to the host; hook_logits gets every row computed.
void CudaSession::read_out(const Step &st, Sink &sink, int32_t n_seq, const int32_t *dev_tokens, int32_t n_logit_rows,
                           bool all_rows, int32_t *out_tokens) {
  const int32_t V = vocab();
  const bool need_logits = st.logits_mode != 0 || sink.wants(HOOK_LOGITS, -1);
  CK(cudaMemcpyAsync(out_tokens, dev_tokens, n_seq * 4, cudaMemcpyDeviceToHost, stream_));
  if (need_logits && !sink.wants(HOOK_LOGITS, -1) && (st.logits_mode == 2 || !all_rows)) {
    // the rows asked for are logits_[0, n_logit_rows): they stay there until the front reads them
    CK(cudaStreamSynchronize(stream_));
    dlogits_.s = this;
    dlogits_.rows = n_logit_rows;
    sink.logits_deferred(dlogits_, n_logit_rows, V);
    return;
  }
  if (need_logits) {
    hbuf_.resize((size_t)n_logit_rows * V);
    CK(cudaMemcpyAsync(hbuf_.data(), logits_.p, hbuf_.size() * 4, cudaMemcpyDeviceToHost, stream_));
  }
  CK(cudaStreamSynchronize(stream_));
  if (!need_logits) return;
  if (sink.wants(HOOK_LOGITS, -1)) sink.capture(HOOK_LOGITS, -1, hbuf_.data(), n_logit_rows, V);
  if (st.logits_mode == 0) return;
  if (st.logits_mode == 2 || !all_rows) {
    sink.logits(hbuf_.data(), n_logit_rows, V);
    return;
  }
  // rows were computed for the hook: hand over the last row of each sequence
  std::vector<float> last((size_t)n_seq * V);
  for (int32_t i = 0; i < n_seq; ++i)
    std::copy(hbuf_.begin() + (size_t)(st.row_offset[i] + st.n_new[i] - 1) * V,
              hbuf_.begin() + (size_t)(st.row_offset[i] + st.n_new[i]) * V, last.begin() + (size_t)i * V);
  sink.logits(last.data(), n_seq, V);
}

void CudaSession::DeviceLogits::fetch(float *host) {
  dev_guard([&] {
    CK(cudaMemcpyAsync(host, s->logits_.p, (size_t)rows * s->vocab() * 4, cudaMemcpyDeviceToHost, s->stream_));
    CK(cudaStreamSynchronize(s->stream_));
    return 0;
  });
}

bool CudaSession::DeviceLogits::argmax(int32_t *ids) {
  return dev_guard([&] {
    if (s->dargmax_.bytes < (size_t)rows * 4) s->dargmax_ = DBuf((size_t)rows * 4);
    qwc::launch_argmax(s->dargmax_.as<int32_t>(), s->logits_.as<float>(), rows, s->vocab(), s->vocab(), s->stream_, -1);
    CK(cudaMemcpyAsync(ids, s->dargmax_.p, (size_t)rows * 4, cudaMemcpyDeviceToHost, s->stream_));
    CK(cudaStreamSynchronize(s->stream_));
    return true;
  });
}

}  // namespace cuda_backend
}  // namespace qw
