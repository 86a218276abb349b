// forward.cpp — one Qwen2 forward step on the CPU (prefill chunk or batched decode), exactly the HF
// modeling_qwen2 order (docs/ARCHITECTURE.md §Layers) in fp32, with op records, hook captures, logits and sampling.
#include <algorithm>
#include <cstring>

#include "convert.hpp"
#include "cost.hpp"
#include "cpu.hpp"
#include "dca_cpu.hpp"
#include "eagle_cpu.hpp"
#include "ffn_cpu.hpp"
#include "gqa_cpu.hpp"
#include "norm_cpu.hpp"
#include "recorder.hpp"
#include "sampling.hpp"
#include "sage_cpu.hpp"
#include "sparse_prefill_cpu.hpp"

namespace qw {
namespace cpu {

namespace {

template <class T>
T *grow(std::vector<T> &v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

}  // namespace

// Final norm and lm_head run only for the rows someone needs: every row when all-position logits or the
// hook_logits capture are asked for, else the last row of each sequence (what sampling needs).
LogitRows logit_rows(const Step &st, const Sink &sink) {
  LogitRows lr;
  lr.all_rows = (st.phase == QW_PHASE_PREFILL && st.logits_mode == 2) || sink.wants(HOOK_LOGITS, -1);
  if (lr.all_rows) {
    for (int64_t r = 0; r < int64_t(st.tokens.size()); ++r) lr.sel.push_back(r);
  } else {
    for (size_t s = 0; s < st.seq.size(); ++s) lr.sel.push_back(st.row_offset[s] + st.n_new[s] - 1);
  }
  return lr;
}

void hand_out_logits(const Step &st, Sink &sink, const LogitRows &lr, const float *lg, int32_t V, HostLogits &kept) {
  const int32_t N = int32_t(lr.sel.size());
  const size_t nS = st.seq.size();
  if (sink.wants(HOOK_LOGITS, -1)) sink.capture(HOOK_LOGITS, -1, lg, N, V);
  const auto keep = [&](int32_t rows) {
    kept.p = lg;
    kept.n = size_t(rows) * size_t(V);
    sink.logits_deferred(kept, rows, V);
  };
  if (st.logits_mode == 2 && st.phase == QW_PHASE_PREFILL) {
    keep(N);
  } else if (st.logits_mode != 0) {
    if (lr.all_rows) {
      std::vector<float> rows(nS * size_t(V));
      for (size_t s = 0; s < nS; ++s) std::memcpy(&rows[s * size_t(V)], lg + lr.last_row(st, s) * V, size_t(V) * 4);
      sink.logits(rows.data(), int32_t(nS), V);
    } else {
      keep(int32_t(nS));
    }
  }
}

void sample_step(const Step &st, const LogitRows &lr, const float *lg, int32_t V, SamplerScratch &scratch,
                 int32_t *out_tokens) {
  for (size_t s = 0; s < st.seq.size(); ++s) {
    const SamplingParams p{st.temperature[s], st.top_k[s], st.top_p[s], st.seed[s]};
    out_tokens[s] = sample_token(lg + lr.last_row(st, s) * V, V, p, int64_t(st.pos0[s]) + st.n_new[s], scratch);
  }
}

OpCost cost_qkv(const Layer &ly, int64_t R, int64_t H, int64_t Qd, int64_t KVd, double act) {
  OpCost cq = cost_matmul(R, Qd, H, ly.q.t->type, ly.q.t->group, true, act);
  const OpCost ck = cost_matmul(R, KVd, H, ly.k.t->type, ly.k.t->group, true, act);
  const OpCost cv = cost_matmul(R, KVd, H, ly.v.t->type, ly.v.t->group, true, act);
  cq.flops += ck.flops + cv.flops;
  cq.bytes += ck.bytes + cv.bytes - 2 * act * double(R * H);
  return cq;
}

OpCost cost_gate_up(const Layer &ly, int64_t R, int64_t H, int64_t F, double act) {
  OpCost cg = cost_matmul(R, F, H, ly.gate.t->type, ly.gate.t->group, false, act);
  const OpCost cu = cost_matmul(R, F, H, ly.up.t->type, ly.up.t->group, false, act);
  cg.flops += cu.flops;
  cg.bytes += cu.bytes - act * double(R * H);
  return cg;
}

// A quantized KV cache (q8 / kivi) has its own attention over the codes, which the Sage arms do not read (they run
// over bf16 / f32 caches only); otherwise the layer's attention toggle, then gqa.
const char *attention_kernel(const KvStore &kv, const LayerToggles &lt) {
  return kv.quant ? kvq_kernel_name(kv.quant->lay.type)
         : lt.attention != Attention::FlashBf16 ? sage_kernel_name(lt.attention == Attention::SageFp8, kv.bf16)
                                                : gqa_attention_kernel_name(lt.gqa, kv.bf16);
}

Session::Session(const Model &m, int32_t max_batch, int32_t max_context, int32_t max_prefill)
    : m_(m), max_batch_(max_batch), max_context_(max_context), max_prefill_(max_prefill),
      pool_(std::make_unique<Pool>(m.threads)) {
  rope_ = rope_table(max_context, m.cfg.head_dim, m.cfg.rope_theta);
}

void Session::configure(const StepToggles &t) {
  const Config &c = m_.cfg;
  dca_check_config(t);
  kv_.configure(t.kv_cache, c.num_layers, max_batch_, c.num_kv_heads, max_context_, c.head_dim);
}

void Session::kv_compact(int32_t seq, int32_t base, const int32_t *keep, int32_t n) {
  eagle_kv_compact(kv_, seq, base, keep, n);
}

void Session::forward(const Step &st, Sink &sink, int32_t *out_tokens) {
  const Config &c = m_.cfg;
  const bool tree = st.tree_base >= 0;  // tree verification (speculative = eagle): positions and keys per row
  if (tree) eagle_check_tree_step(st, kv_, c.num_layers);
  Pool &th = *pool_;
  TileScope tile_scope(st.toggles.tile == Tile::Auto ? &tiles_ : nullptr);  // the step's matmul blocking (opt/tile/)
  const int64_t R = int64_t(st.tokens.size());
  const int64_t H = c.hidden_size, Qd = c.q_dim(), KVd = c.kv_dim(), F = c.intermediate_size, V = c.vocab_size;
  const int32_t nH = c.num_heads, nKV = c.num_kv_heads, d = c.head_dim;
  const size_t nS = st.seq.size();
  const double act = 4.0;  // fp32 activations
  // Activations of the step, [R, width] each.
  float *x = grow(x_, size_t(R * H));     // residual stream
  float *h = grow(h_, size_t(R * H));     // normed input of qkv / gate_up
  float *q = grow(q_, size_t(R * Qd));    // queries (after RoPE)
  float *k = grow(k_, size_t(R * KVd));   // keys (after RoPE)
  float *v = grow(v_, size_t(R * KVd));   // values
  float *z = grow(z_, size_t(R * Qd));    // attention output before o_proj
  float *o = grow(o_, size_t(R * H));     // o_proj / down output before the residual add
  float *g = grow(g_, size_t(R * F));     // gate (pre-SiLU)
  float *u = grow(u_, size_t(R * F));     // up
  float *a = grow(a_, size_t(R * F));     // silu(gate) * up
  int32_t *pos = grow(pos_, size_t(R));   // RoPE position of each row (its KV position unless a tree step)
  for (size_t s = 0; s < nS; ++s)
    for (int32_t j = 0; j < st.n_new[s]; ++j) pos[st.row_offset[s] + j] = tree ? st.tree_pos[size_t(j)] : st.pos0[s] + j;
  // Dual Chunk Attention: remapped positions once per step; the RoPE table must cover the largest of them.
  auto dca_on = [&](int32_t l) { return st.toggles.at(l).dca == Dca::On; };
  bool any_dca = false;
  for (int32_t l = 0; l < c.num_layers; ++l) any_dca = any_dca || dca_on(l);
  DcaRows dca_rows;
  if (any_dca) {
    dca_positions(dca_rows, pos, R, st.dca_chunk, st.dca_local);
    if (int64_t(rope_.cos.size()) <= int64_t(dca_rows.max_pos) * rope_.half)
      rope_ = rope_table(std::max(max_context_, dca_rows.max_pos + 1), c.head_dim, c.rope_theta);
    grow(q_succ_, size_t(R * Qd));
    grow(q_inter_, size_t(R * Qd));
  }
  sparse_step_begin(sparse_stats_, st, c.num_layers, nH);
  Recorder rec{st, sink, int32_t(R)};
  rec.wake(th);
  const int32_t nt = int32_t(R);
  auto cap = [&](Hook hk, int32_t layer, const float *p, int64_t cols) {
    if (sink.wants(hk, layer)) sink.capture(hk, layer, p, int32_t(R), int32_t(cols));
  };

  // embedding: exact fp32 rows of token_embd (dequantized when quantized)
  const NativeTensor &E = *m_.embed.t;
  rec.op(-1, QW_OP_EMBED, "cpu.embed", cost_embed(R, H, E.type, E.group, act), nt, [&] {
    parallel_range(th, R, 16, [&](int64_t a, int64_t b) {
      for (int64_t r = a; r < b; ++r) dequant_rows(x + r * H, E, st.tokens[size_t(r)], 1);
    });
  });
  if (c.eagle_head) {  // the EAGLE head's input rows: fc([embedding ; feature]) (the front checked features)
    rec.op(-1, QW_OP_EMBED, "cpu.eagle.fc", cost_matmul(R, H, 2 * H, m_.eagle_fc.t->type, m_.eagle_fc.t->group, true, act),
           nt, [&] { eagle_input(x, st.features, m_.eagle_fc, m_.eagle_fc_bias, R, H, eagle_cat_, th); });
  }

  for (int32_t l = 0; l < c.num_layers; ++l) {
    const Layer &ly = m_.layers[size_t(l)];
    const LayerToggles &lt = st.toggles.at(l);
    const ActQuant aq = lt.act_quant;  // the activation arm of the layer's GEMMs
    const bool own_norm_ops = norm_own_ops(lt.norm);  // toggle norm (opt/norm/norm_cpu.hpp)
    cap(HOOK_RESID_PRE, l, x, H);
    // the attention norm: its own op (norm = separate) or the q|k|v matmul's prologue; EAGLE's head layer 0 has none
    const bool attn_norm_in_qkv = !own_norm_ops && ly.attn_norm;
    if (!ly.attn_norm) {
      std::memcpy(h, x, size_t(R * H) * 4);
    } else if (own_norm_ops) {
      rec.op(l, QW_OP_ATTN_NORM, "cpu.rmsnorm", cost_rmsnorm(R, H, act), nt,
             [&] { rmsnorm(h, x, ly.attn_norm, R, H, c.rms_eps, th); });
    }
    {
      const MatJob jobs[3] = {{ly.q, ly.bq, q, Qd, aq}, {ly.k, ly.bk, k, KVd, aq}, {ly.v, ly.bv, v, KVd, aq}};
      const OpCost cq = cost_qkv(ly, R, H, Qd, KVd, act);
      if (!attn_norm_in_qkv) {
        rec.op(l, QW_OP_QKV, [&] { return matmul_kernel_name(*ly.q.t, R, aq); }, cq, nt, [&] { matmul(jobs, 3, h, R, H, th); });
      } else {
        const MatFusion pro = norm_prologue(x, ly.attn_norm, c.rms_eps);
        rec.op(l, QW_OP_QKV, [&] { return norm_prologue_kernel(jobs, 3, R); }, add_cost(cq, cost_rmsnorm(R, H, act)), nt,
               [&] { matmul_fused(jobs, 3, h, R, H, th, pro); });
      }
    }
    if (dca_on(l)) {  // hook_q captures the intra-chunk queries
      rec.op(l, QW_OP_ROPE, "cpu.rope.neox.dca", cost_rope(R, 3 * nH + nKV, d, act), nt,
             [&] { dca_rope(q, q_succ_.data(), q_inter_.data(), k, R, nH, nKV, d, dca_rows, rope_); });
    } else {
      rec.op(l, QW_OP_ROPE, "cpu.rope.neox", cost_rope(R, nH + nKV, d, act), nt, [&] {
        rope_apply(q, R, Qd, nH, d, pos, rope_);
        rope_apply(k, R, KVd, nKV, d, pos, rope_);
      });
    }
    cap(HOOK_Q, l, q, Qd);
    cap(HOOK_K, l, k, KVd);
    cap(HOOK_V, l, v, KVd);
    {
      const char *kn = attention_kernel(kv_, lt);  // the arm that runs (unless DCA or sparse prefill, below)
      const AttnArgs args{&st, l, nH, nKV, d, q, k, v, z, lt.gqa, &th, lt.attention};
      const bool dl = dca_on(l);  // DCA runs its own kernel (f32/bf16 caches only: configure refuses the others)
      // Sparse prefill (opt/sparse_prefill/) over plain or DCA attention; its record counts the keys it visited
      // (sparse_cost.hpp), known once the op has run: the recorder reads `cost` after fn.
      const bool sp = sparse_runs(st, lt, R);
      if (sp) sparse_check(st.toggles, lt);
      const SparseDca sd = dl ? SparseDca{q_succ_.data(), q_inter_.data(), st.dca_chunk, st.dca_local} : SparseDca{};
      OpCost cost = sp ? OpCost{} : cost_attention(st.pos0, st.n_new, nH, nKV, d, kv_.elem_bytes(), act);
      rec.op(l, QW_OP_ATTENTION,
             sp ? sparse_kernel_name(lt.sparse_prefill, dl, kv_.bf16)
                : dl ? (kv_.bf16 ? "cpu.attention.dca.kv_bf16" : "cpu.attention.dca.kv_f32") : kn,
             cost, nt, [&] {
               if (sp)
                 cost = cost_sparse_attention(sparse_attention(kv_, args, lt.sparse_prefill, sd, st.sparse, sparse_stats_),
                                              R, nH, nKV, d, kv_.elem_bytes(), act);
               else if (dl) dca_attention(kv_, args, q_succ_.data(), q_inter_.data(), st.dca_chunk, st.dca_local);
               else attention(kv_, args);
             });
    }
    cap(HOOK_Z, l, z, Qd);
    // o_proj, then the residual add: its own op (norm = separate) or o_proj's epilogue
    auto project_add = [&](int32_t op, const Weight &w, const float *in, int64_t cols) {
      const MatJob job{w, nullptr, o, H, aq};
      auto kn = [&] { return matmul_kernel_name(*w.t, R, aq); };
      const OpCost cm = cost_matmul(R, H, cols, w.t->type, w.t->group, false, act);
      if (own_norm_ops) {
        rec.op(l, op, kn, cm, nt, [&] { matmul(&job, 1, in, R, cols, th); });
        return;
      }
      const MatFusion epi = residual_epilogue(x, o, R, H);
      rec.op(l, op, [&] { return residual_kernel(kn()); }, add_cost(cm, cost_residual(R, H, act)), nt,
             [&] { matmul_fused(&job, 1, const_cast<float *>(in), R, cols, th, epi); });
    };
    auto residual = [&] {
      if (own_norm_ops)
        rec.op(l, QW_OP_RESIDUAL, "cpu.residual_add", cost_residual(R, H, act), nt, [&] { residual_add(x, o, R * H, th); });
    };
    project_add(QW_OP_O_PROJ, ly.o, z, Qd);
    cap(HOOK_ATTN_OUT, l, o, H);
    residual();
    cap(HOOK_RESID_MID, l, x, H);
    const Ffn ffn = lt.ffn;  // toggle ffn (opt/ffn/ffn_cpu.hpp)
    const MatJob gu_jobs[2] = {{ly.gate, nullptr, g, F, aq}, {ly.up, nullptr, u, F, aq}};
    const FfnIo fio{gu_jobs, x, ly.ffn_norm, c.rms_eps, h, a, R, H, F};
    if (ffn_norm_own_op(ffn))
      rec.op(l, QW_OP_FFN_NORM, "cpu.rmsnorm", cost_rmsnorm(R, H, act), nt,
             [&] { rmsnorm(h, x, ly.ffn_norm, R, H, c.rms_eps, th); });
    {
      OpCost cg = cost_gate_up(ly, R, H, F, act);
      if (!ffn_swiglu_own_op(ffn)) cg = add_cost(cg, cost_swiglu(R, F, act));
      if (!ffn_norm_own_op(ffn)) cg = add_cost(cg, cost_rmsnorm(R, H, act));
      rec.op(l, QW_OP_GATE_UP, [&] { return ffn_gate_up_kernel(ffn, fio); }, cg, nt, [&] { ffn_gate_up(ffn, fio, th); });
    }
    cap(HOOK_MLP_PRE, l, g, F);
    if (ffn_swiglu_own_op(ffn))
      rec.op(l, QW_OP_SWIGLU, "cpu.swiglu", cost_swiglu(R, F, act), nt, [&] { swiglu(a, g, u, R * F, th); });
    cap(HOOK_MLP_POST, l, a, F);
    project_add(QW_OP_DOWN, ly.down, a, F);
    residual();
    cap(HOOK_RESID_POST, l, x, H);
  }

  // Final norm and lm_head only for the rows someone needs (logit_rows).
  if (sink.wants(HOOK_FINAL_NORM, -1)) {
    // Every row's final-normed state (EAGLE's features), normed on its own so that the rows the lm_head reads,
    // and so the logits, stay exactly those of a step without the capture.
    float *hn = grow(fnorm_, size_t(R * H));
    if (m_.out_norm) rmsnorm(hn, x, m_.out_norm, R, H, c.rms_eps, th);
    else std::memcpy(hn, x, size_t(R * H) * 4);
    sink.capture(HOOK_FINAL_NORM, -1, hn, int32_t(R), int32_t(H));
  }
  const LogitRows lr = logit_rows(st, sink);
  const int64_t N = int64_t(lr.sel.size());
  float *xs = grow(fin_, size_t(N * H));  // selected rows of the residual stream, then normed in h
  for (int64_t i = 0; i < N; ++i) std::memcpy(xs + i * H, x + lr.sel[size_t(i)] * H, size_t(H) * 4);
  if (m_.out_norm) {
    rec.op(-1, QW_OP_FINAL_NORM, "cpu.rmsnorm", cost_rmsnorm(N, H, act), int32_t(N),
           [&] { rmsnorm(h, xs, m_.out_norm, N, H, c.rms_eps, th); });
  } else {  // EAGLE head: its layer output goes to the lm_head as it is
    std::memcpy(h, xs, size_t(N * H) * 4);
  }
  float *lg = grow(logits_, size_t(N * V));  // [N, V]
  {
    // The lm_head reads the last layer's output: it runs that layer's activation arm (toggle actQuant).
    const ActQuant head_aq = c.num_layers > 0 ? st.toggles.at(c.num_layers - 1).act_quant : ActQuant{};
    const MatJob job{m_.output, nullptr, lg, V, head_aq};
    rec.op(-1, QW_OP_LM_HEAD, [&] { return matmul_kernel_name(*m_.output.t, N, head_aq); },
           cost_matmul(N, V, H, m_.output.t->type, m_.output.t->group, false, act), int32_t(N),
           [&] { matmul(&job, 1, h, N, H, th); });
  }
  hand_out_logits(st, sink, lr, lg, int32_t(V), kept_logits_);
  rec.op(-1, QW_OP_SAMPLE, "cpu.sample", cost_sample(int64_t(nS), V), int32_t(nS),
         [&] { sample_step(st, lr, lg, int32_t(V), sampler_, out_tokens); });
  rec.finish();
}

}  // namespace cpu
}  // namespace qw
