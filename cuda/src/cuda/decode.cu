// decode.cu — a decode step (B <= 16 sequences, one new token each): the parameter block, the CUDA graph captured
// once per (batch, gqa, dca, ffn and norm patterns) and replayed, and decode's halves of the layer blocks (layers.cu):
// under the default arms every norm is fused into the next GEMV's prologue (toggles norm, ffn: opt/norm, opt/ffn),
// attention is split-KV over the cache toggle gqa picks (opt/gqa) (docs/ARCHITECTURE.md §Layers).
#include <cstdio>
#include <cstring>
#include <string>

#include "attention.cuh"
#include "decode.hpp"
#include "gqa_attention.cuh"
#include "norm_unfused.cuh"
#include "session.cuh"
#include "swiglu.cuh"

namespace qw {
namespace cuda_backend {

void CudaSession::decode_body(int32_t B, const Step *st, Sink *sink, bool eager) {
  const Config &c = m_.cfg;
  Pass p;
  p.decode = true;
  p.rows = B;
  p.st = st;
  p.sink = eager ? sink : nullptr;
  p.tokens = d_tokens_;
  p.pos = d_pos_;
  p.slot = d_slot_;
  embed(p);
  for (int32_t l = 0; l < c.num_layers; ++l) layer(p, l);
  std::vector<int32_t> rows((size_t)B);
  for (int32_t i = 0; i < B; ++i) rows[(size_t)i] = i;
  lm_head(st, rows, false);  // the GEMV at any batch: a sequence's logits do not depend on its batch
  if (tp_) tp_gather_logits(B);  // parallel = tpN: every rank samples the same token from the gathered logits
  OpScope op(*this, -1, QW_OP_SAMPLE, B);
  qwc::launch_sample(d_out_, logits_.as<float>(), d_samp_, wbuf_.as<double>(), B, vocab(), vocab(), stream_);
  op.set("sample_device", cost_sample(B, vocab()));
}

qwc::GemvArgs CudaSession::decode_norm(const Pass &p, int32_t l, bool fused, int32_t op_id, const DBuf &norm_w) {
  const Config &c = m_.cfg;
  const int32_t B = p.rows, H = c.hidden_size;
  qwc::GemvArgs a;
  if (fused) {
    a = norm_gemv(x_.as<float>(), H, B, norm_w.as<float>(), c.rms_eps);
  } else {
    OpScope op(*this, l, op_id, B);
    qwc::launch_rmsnorm_rows(xn_.as<bf16>(), H, x_.as<float>(), H, norm_w.as<float>(), B, H, c.rms_eps, stream_);
    op.set("rmsnorm_rows", cost_rmsnorm(B, H, 4.0));
    a = bf16_gemv(xn_.as<bf16>(), H, B);
  }
  i8_args(a, act_i8(p.st, l));  // the GEMVs this input feeds (q|k|v, gate|up) run the layer's actQuant arm
  return a;
}

// The op names below are written for the fused prologue ("attn_norm+…", "ffn_norm+…"); with the norm as its own op
// the name is the same literal past that prefix.
static const char *past_norm(const char *name, bool fused) {
  if (fused) return name;
  const char *plus = std::strchr(name, '+');
  return plus ? plus + 1 : name;
}

// rmsnorm + q|k|v (+bias) in one GEMV (toggle norm = separate: the norm is an op of its own first); with
// pair-interleaved rows (qkv_pairs) its epilogue also applies RoPE and writes K/V, else rope_kv follows.
void CudaSession::decode_qkv(const Pass &p, int32_t l) {
  const Config &c = m_.cfg;
  const int32_t B = p.rows, H = c.hidden_size, QKV = c.q_dim() + 2 * c.kv_dim();
  const Layer &L = m_.layers[l];
  // DCA takes the unfused path: fp32 q|k|v without bias, then its rope adds the bias (in the rows' own order)
  const bool dca = p.st && dca_on(*p.st, l);
  const float *bias = dca ? nullptr : L.qkv_bias.as<float>();
  const bool fn = norm_arm(p.st, l) == Norm::FusedResidualNorm;
  qwc::GemvArgs a = decode_norm(p, l, fn, QW_OP_ATTN_NORM, L.attn_norm);
  const OpCost norm_cost = fn ? cost_rmsnorm(B, H, 4.0) : OpCost{};
  if (L.qkv_pairs && !dca) {
    OpScope op(*this, l, QW_OP_QKV, B);
    a.epi = qwc::GEMV_EPI_QKV_ROPE;
    a.w = L.qkv.m;
    marlin_args(a, L.qkv);
    a.bias = L.qkv_bias.as<float>();
    a.rope.q_out = q_.as<bf16>();
    a.rope.k_out = (kvq_.active() || p.wants(HOOK_K, l)) ? kout_.as<bf16>() : nullptr;
    a.rope.v_out = (kvq_.active() || p.wants(HOOK_V, l)) ? vout_.as<bf16>() : nullptr;
    a.rope.kcache = kcache(l);
    a.rope.vcache = vcache(l);
    a.rope.pos = p.pos;
    a.rope.slot = p.slot;
    a.rope.inv_freq = m_.inv_freq.as<float>();
    a.rope.n_heads = c.num_heads; a.rope.n_kv = c.num_kv_heads; a.rope.head_dim = c.head_dim; a.rope.max_ctx = max_ctx_;
    qwc::launch_gemv(a, stream_);
    op.set(past_norm("attn_norm+qkv+bias+rope+kv_write:gemv", fn),
           add(add(norm_cost, cost_of(L.qkv, B, true)), cost_rope(B, c.num_heads + c.num_kv_heads, c.head_dim, 2.0)));
    return;
  }
  {
    OpScope op(*this, l, QW_OP_QKV, B);
    a.epi = qwc::GEMV_EPI_F32;
    a.out_ld = QKV;
    if (L.fused_qkv()) {
      a.w = L.qkv.m; a.out = qkvf_.p; a.bias = bias;
      marlin_args(a, L.qkv);
      qwc::launch_gemv(a, stream_);
    } else {
      const DevMat *parts[3] = {&L.q, &L.k, &L.v};
      int64_t off = 0;
      for (const DevMat *d : parts) {
        a.w = d->m; a.out = qkvf_.as<float>() + off; a.bias = bias ? bias + off : nullptr;
        a.mw = nullptr;
        marlin_args(a, *d);
        qwc::launch_gemv(a, stream_);
        off += d->m.rows;
      }
    }
    const bool b = bias != nullptr;
    const OpCost cc = add(norm_cost, L.fused_qkv() ? cost_of(L.qkv, B, b)
                                                   : add(add(cost_of(L.q, B, b), cost_of(L.k, B, b)), cost_of(L.v, B, b)));
    op.set(past_norm(L.fused_qkv() ? (b ? "attn_norm+qkv+bias:gemv" : "attn_norm+qkv:gemv")
                                   : (b ? "attn_norm+q,k,v+bias:gemv x3" : "attn_norm+q,k,v:gemv x3"),
                     fn),
           cc);
  }
  rope_kv(p, l, bias ? nullptr : L.qkv_bias.as<float>());  // whichever of the GEMV and the rope adds the bias
}

// Split-KV attention of every sequence over its cache slot; gqa=broadcast first repeats the kv heads into the
// scratch cache (opt/gqa/gqa_attention.cuh), whose slots are the identity 0..B-1 held in d_out_ (see run_decode).
const char *CudaSession::decode_attention(const Pass &p, int32_t l, Gqa gqa) {
  const Config &c = m_.cfg;
  qwc::DecodeAttnArgs a;
  a.out = z_.as<bf16>();
  a.q = q_.as<bf16>();
  a.kcache = kcache(l);
  a.vcache = vcache(l);
  a.slot = d_slot_;
  a.kv_len = d_len_;
  a.batch = p.rows; a.n_heads = c.num_heads; a.n_kv = c.num_kv_heads; a.head_dim = c.head_dim; a.max_ctx = max_ctx_;
  a.n_split = n_split_;
  a.ws = attn_ws_.as<float>();
  a.counters = attn_cnt_.as<int32_t>();
  qwc::GqaKvArgs g;  // broadcast: the scratch is allocated by run_decode before any capture
  g.kcache = kcache(l);
  g.vcache = vcache(l);
  g.scratch_k = bcast_k_.as<bf16>();
  g.scratch_v = bcast_v_.as<bf16>();
  g.slot = d_slot_;
  g.len = d_len_;
  g.rows = p.rows; g.n_heads = c.num_heads; g.n_kv = c.num_kv_heads; g.head_dim = c.head_dim; g.max_ctx = max_ctx_;
  g.max_len = max_ctx_;
  const qwc::GqaKv kv = qwc::gqa_kv(gqa, g, stream_);
  a.kcache = kv.k;
  a.vcache = kv.v;
  a.n_kv = kv.n_kv;  // broadcast: nH (the counters are sized for nH heads: constructor)
  if (kv.scratch) a.slot = d_out_;
  qwc::launch_decode_attention(a, stream_);
  return kv.scratch ? "attn_decode_splitkv+broadcast" : "attn_decode_splitkv";
}

// The MLP's norm, gate|up and SwiGLU under toggle ffn (opt/ffn/ffn.cpp):
//   fused-norm-gemv-swiglu  one GEMV over the interleaved gate_up rows: norm prologue, SwiGLU epilogue
//   fused-swiglu            the norm as its own op (rmsnorm_rows), then that GEMV over its output, SwiGLU epilogue
//   separate                the norm op, the GEMV writing gate|up (bf16, interleaved), then SwiGLU as its own op
// All three give the same bits (the lab's fusion section checks it). Without the interleaved matrix (gate and up of
// different types) two GEMVs write gate and up and the SwiGLU kernel follows, an op of its own only under separate.
void CudaSession::decode_gate_up(const Pass &p, int32_t l) {
  const Config &c = m_.cfg;
  const int32_t B = p.rows, H = c.hidden_size, I = c.intermediate_size;
  const Layer &L = m_.layers[l];
  const Ffn arm = ffn_arm(p.st, l);
  const bool fn = arm == Ffn::FusedNormGemvSwiglu, epi_swiglu = L.fused_gu() && arm != Ffn::Separate;
  qwc::GemvArgs a = decode_norm(p, l, fn, QW_OP_FFN_NORM, L.ffn_norm);
  const bool want_pre = p.wants(HOOK_MLP_PRE, l);
  {
    OpScope op(*this, l, QW_OP_GATE_UP, B);
    if (epi_swiglu) {
      a.epi = qwc::GEMV_EPI_SWIGLU;
      a.w = L.gate_up.m;
      marlin_args(a, L.gate_up);
      a.out = h_.p;
      a.out_ld = I;
      a.aux = want_pre ? gate_.as<bf16>() : nullptr;
      a.aux_ld = I;
      qwc::launch_gemv(a, stream_);
    } else {
      a.epi = qwc::GEMV_EPI_BF16;
      a.out_ld = 2 * I;
      if (L.fused_gu()) {  // rows interleaved: gu_[b, 2j] = gate j, gu_[b, 2j + 1] = up j
        a.w = L.gate_up.m; a.out = gu_.p;
        marlin_args(a, L.gate_up);
        qwc::launch_gemv(a, stream_);
      } else {
        a.w = L.gate.m; a.out = gu_.p;
        marlin_args(a, L.gate);
        qwc::launch_gemv(a, stream_);
        a.w = L.up.m; a.out = gu_.as<bf16>() + I;
        a.mw = nullptr;
        marlin_args(a, L.up);
        qwc::launch_gemv(a, stream_);
      }
      if (arm != Ffn::Separate)
        qwc::launch_swiglu(h_.as<bf16>(), want_pre ? gate_.as<bf16>() : nullptr, gu_.as<bf16>(), B, I, L.fused_gu(),
                           stream_);
    }
    const OpCost gemvs = L.fused_gu() ? cost_of(L.gate_up, B, false) : add(cost_of(L.gate, B, false), cost_of(L.up, B, false));
    const OpCost cc = add(fn ? cost_rmsnorm(B, H, 4.0) : OpCost{}, gemvs);
    const char *name = L.fused_gu() ? (arm == Ffn::Separate ? "gate_up:gemv" : "ffn_norm+gate_up+swiglu:gemv")
                                    : (arm == Ffn::Separate ? "gate,up:gemv x2" : "ffn_norm+gate,up:gemv x2+swiglu");
    op.set(past_norm(name, fn || arm == Ffn::Separate), arm == Ffn::Separate ? cc : add(cc, cost_swiglu(B, I, 2.0)));
  }
  if (arm == Ffn::Separate) {
    OpScope op(*this, l, QW_OP_SWIGLU, B);
    qwc::launch_swiglu(h_.as<bf16>(), want_pre ? gate_.as<bf16>() : nullptr, gu_.as<bf16>(), B, I, L.fused_gu(), stream_);
    op.set("swiglu", cost_swiglu(B, I, 2.0));
  }
}

// The parameter block of decode step `st` (layout: session.cuh, kDParamBytes): tokens, pos, slot, len, the identity
// 0..B-1 where the sampler's outputs go (d_out_: the broadcast arm's slots until the sampler overwrites them, which is
// after the last attention), then one SampleRow per sequence.
void CudaSession::decode_params(const Step &st, int32_t *h) const {
  const int32_t B = (int32_t)st.seq.size();
  for (int32_t i = 0; i < B; ++i) {
    h[i] = st.tokens[st.row_offset[i]];
    h[16 + i] = st.pos0[i];
    h[32 + i] = st.seq[i];
    h[48 + i] = st.pos0[i] + 1;
    h[64 + i] = i;
    const qwc::SampleRow sr = sample_row(st, i, st.pos0[i] + 1);
    std::memcpy(reinterpret_cast<uint8_t *>(h) + 5 * 16 * 4 + i * sizeof(sr), &sr, sizeof(sr));
  }
}

// The decode graph of `st`, captured on first use per (batch, gqa and dca masks, ffn / norm arms, kernels mode,
// gemv, tile), or nullptr where the step runs eagerly: graphs off, events or counters profiling, a hook capture.
// Allocates what the step's arms need first (the broadcast scratch, the DCA workspace), graph or not.
const CudaSession::Graph *CudaSession::decode_graph(const Step &st, Sink &sink) {
  const int32_t B = (int32_t)st.seq.size();
  const bool hooks = wants_any(st, sink);
  bool any_bcast = false, any_dca = false;
  std::string key = std::to_string(B) + ":";
  for (int32_t l = 0; l < m_.cfg.num_layers; ++l) {
    const bool b = gqa_broadcast(st, l);
    any_bcast |= b;
    key += b ? 'b' : 'n';
    if (dca_on(st, l)) { key += 'd'; any_dca = true; }  // the DCA path has other kernels (chunk/local are fixed per session)
    // ffn / norm arms other than the defaults have other kernels (opt/ffn, opt/norm)
    if (ffn_arm(&st, l) != Ffn::FusedNormGemvSwiglu) key += char('0' + int(ffn_arm(&st, l)));
    if (norm_arm(&st, l) != Norm::FusedResidualNorm) key += 's';
    if (act_i8(&st, l)) key += 'i';  // actQuant = int8: the int8 GEMVs (opt/act_quant/gemv_i8.cu)
  }
  if (any_bcast) ensure_bcast();
  if (any_dca) ensure_dca_ws();
  if (!graphs_on(st) || prof_ || hooks) return nullptr;
  const bool traced = marking_ == Marking::TRACE;
  if (traced) key += ":kernels";  // captured with node tags (the untraced graph stays as it was)
  if (marlin_) key += ":marlin";   // gemv = marlin: other kernels, other scratch
  if (st.toggles.tile == Tile::Auto) key += ":tile";  // the table's candidates (set_tile_table drops the graphs)
  auto it = graphs_.find(key);
  if (it != graphs_.end()) return &it->second;
  // If the graph with programmatic-dependent-launch edges cannot be captured or instantiated on this driver, fall
  // back to plain launches for the rest of the process.
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
  return &graphs_.emplace(key, Graph{ge, ops}).first->second;
}

void CudaSession::run_decode(const Step &st, Sink &sink, int32_t *out_tokens) {
  const int32_t B = (int32_t)st.seq.size();
  ensure_logits(max_batch_);
  decode_params(st, hdparams_);
  CK(cudaMemcpyAsync(dparams_.p, hdparams_, kDParamBytes, cudaMemcpyHostToDevice, stream_));
  if (st.toggles.decode == Decode::Persistent) return run_decode_persistent(st, sink, out_tokens);  // opt/decode
  if (const Graph *g = decode_graph(st, sink)) {
    CK(cudaGraphLaunch(g->exec, stream_));
    replayed_ = g->ops;
  } else {
    decode_body(B, &st, &sink, true);
  }
  read_out(st, sink, B, d_out_, B, false, out_tokens);
}

}  // namespace cuda_backend
}  // namespace qw
