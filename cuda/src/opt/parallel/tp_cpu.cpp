// tp_cpu.cpp — the CPU emulation of tensor parallelism (see tp_cpu.hpp for what is emulated and how exactly).
#include "tp_cpu.hpp"

#include <cstring>

#include "convert.hpp"
#include "cpu.hpp"
#include "dca.hpp"
#include "dca_cpu.hpp"
#include "recorder.hpp"
#include "tp_plan.hpp"

namespace qw {
namespace cpu {

namespace {

template <class T>
T *grow(std::vector<T> &v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// The tp1-layout capture of a sharded activation: each rank's column slice put at its offset, in rank order.
struct Gather {
  std::vector<float> buf;
  int64_t cols = 0;
  bool on = false;
  void start(bool want, int64_t R, int64_t width) {
    on = want;
    cols = width;
    if (on) buf.assign(size_t(R * width), 0.0f);
  }
  void put(const float *src, int64_t R, int64_t col0, int64_t w) {
    if (!on) return;
    for (int64_t r = 0; r < R; ++r) std::memcpy(&buf[size_t(r * cols + col0)], src + r * w, size_t(w) * 4);
  }
};

// The op records of the emulated ranks over one step (tp_cpu.hpp, "Records"): one Recorder per rank, all started
// at the same instant and finished at the same instant, so each rank's records tile the same step.
class RankRecords {
 public:
  static constexpr const char *kOtherRanks = "cpu.gap.other_ranks";
  RankRecords(const Step &st, Sink &sink, int32_t rows, int32_t ranks) : st_(st) {
    const int64_t t = now_ns();
    for (int32_t r = 0; r < ranks; ++r) recs_.push_back(Recorder{st, sink, rows, r, t});
  }
  // Rank r's work on its shards: recorded on rank r only; for every other rank it is (part of) its next gap.
  template <class K, class F>
  void rank_op(int32_t r, int32_t layer, int32_t op, const K &kernel, const OpCost &cost, int32_t nt, F &&fn) {
    recs_[size_t(r)].op(layer, op, kernel, cost, nt, fn);
    if (st_.profiling)
      for (Recorder &q : recs_)
        if (q.rank != r) q.gap_kernel = kOtherRanks;
  }
  // Work every rank does at the same time: replicated (norms, residual adds, sampling, the pool's wake: every rank
  // would compute the same bits, so it runs once here) or collective (all-reduce, all-gather). One record per rank
  // over the same interval, each with one rank's cost (the same for all: replicated work is whole on every rank).
  template <class F>
  void all_op(int32_t layer, int32_t op, const char *kernel, const OpCost &cost, int32_t nt, F &&fn) {
    if (!st_.profiling) {
      fn();
      return;
    }
    const int64_t t0 = now_ns();
    fn();
    const int64_t t1 = now_ns();
    for (Recorder &q : recs_) q.timed(layer, op, kernel, cost, nt, t0, t1);
  }
  void finish() {
    const int64_t t = now_ns();
    for (Recorder &q : recs_) q.finish(t);
  }

 private:
  const Step &st_;
  std::vector<Recorder> recs_;
};

class TpSession final : public BackendSession {
 public:
  TpSession(const Config &full, const TpPlan &plan, const std::vector<std::unique_ptr<Model>> &ranks, int threads,
            int32_t max_batch, int32_t max_context)
      : c_(full), plan_(plan), ranks_(ranks), max_batch_(max_batch), max_context_(max_context),
        kv_(size_t(plan.ranks)), pool_(std::make_unique<Pool>(threads)),
        rope_(rope_table(max_context, full.head_dim, full.rope_theta)) {}

  void configure(const StepToggles &t) override {
    dca_check_config(t);
    for (int32_t r = 0; r < plan_.ranks; ++r)
      kv_[size_t(r)].configure(t.kv_cache, c_.num_layers, max_batch_, plan_.rank[size_t(r)].kv_heads, max_context_,
                               c_.head_dim);
  }
  KvInfo kv_info() const override {  // the ranks' caches together
    KvInfo k = kv_[0].info();
    for (size_t r = 1; r < kv_.size(); ++r) {
      const KvInfo o = kv_[r].info();
      k.bytes += o.bytes;
      k.bytes_per_token += o.bytes_per_token;
    }
    return k;
  }
  void reset(int32_t) override {}  // as the tp1 session: KV rows are addressed by position
  // set_profiling: the base class's (events and kernels record alike, as at tp1; counters is refused)
  void forward(const Step &st, Sink &sink, int32_t *out_tokens) override;

 private:
  float *part(int32_t r, int64_t n) { return parts_.data() + size_t(r) * size_t(n); }
  // The all-reduce of one collective: acc = sum of the ranks' partials [n], in rank order.
  const float *all_reduce(int64_t n) {
    std::vector<const float *> p;
    for (int32_t r = 0; r < plan_.ranks; ++r) p.push_back(part(r, n));
    tp_sum_in_rank_order(grow(acc_, size_t(n)), p.data(), plan_.ranks, n);
    return acc_.data();
  }

  const Config &c_;
  const TpPlan &plan_;
  const std::vector<std::unique_ptr<Model>> &ranks_;
  int32_t max_batch_, max_context_;
  std::vector<KvStore> kv_;  // one per rank: its KV heads
  std::unique_ptr<Pool> pool_;
  RopeTable rope_;
  std::vector<float> x_, h_, acc_, parts_, q_, k_, v_, z_, g_, u_, a_, fin_, lgr_, logits_;
  HostLogits kept_logits_;  // the front's view of logits_ until the next step
  std::vector<int32_t> pos_;
  SamplerScratch sampler_;
};

void TpSession::forward(const Step &st, Sink &sink, int32_t *out_tokens) {
  for (int32_t l = 0; l < c_.num_layers; ++l)
    if (st.toggles.at(l).dca == Dca::On)
      throw Error(QW_ERR_UNSUPPORTED, "dca = on (layer " + std::to_string(l) +
                                          "): the tensor-parallel emulation does not run Dual Chunk Attention; use "
                                          "parallel = tp1 for DCA");
  Pool &th = *pool_;
  const int32_t N = plan_.ranks, d = c_.head_dim;
  const int64_t R = int64_t(st.tokens.size()), H = c_.hidden_size, V = c_.vocab_size, RH = R * H;
  const TpRank &k0 = plan_.rank[0];  // every rank has the same head / KV-head / intermediate counts
  const int64_t Qr = int64_t(k0.heads) * d, KVr = int64_t(k0.kv_heads) * d, Fr = k0.ffn;
  const double act = 4.0;  // fp32 activations (the cost model's act_bytes, as tp1's)
  float *x = grow(x_, size_t(RH)), *h = grow(h_, size_t(RH));
  grow(parts_, size_t(N) * size_t(RH));
  float *q = grow(q_, size_t(R * Qr)), *k = grow(k_, size_t(R * KVr)), *v = grow(v_, size_t(R * KVr));
  float *z = grow(z_, size_t(R * Qr)), *g = grow(g_, size_t(R * Fr)), *u = grow(u_, size_t(R * Fr));
  float *a = grow(a_, size_t(R * Fr));
  int32_t *pos = grow(pos_, size_t(R));
  for (size_t s = 0; s < st.seq.size(); ++s)
    for (int32_t j = 0; j < st.n_new[s]; ++j) pos[st.row_offset[s] + j] = st.pos0[s] + j;
  RankRecords rec(st, sink, int32_t(R), N);
  const int32_t nt = int32_t(R);
  rec.all_op(-1, QW_OP_POOL_WAKE, "cpu.pool_wake", OpCost{}, 0, [&] { th.wake(); });
  auto cap = [&](Hook hk, int32_t layer, const float *p, int64_t cols) {
    if (sink.wants(hk, layer)) sink.capture(hk, layer, p, int32_t(R), int32_t(cols));
  };
  auto cap_gather = [&](Hook hk, int32_t layer, const Gather &gt) {
    if (gt.on) sink.capture(hk, layer, gt.buf.data(), int32_t(R), int32_t(gt.cols));
  };
  // One collective: the ranks' partials [R, H] summed (tp_all_reduce_cost: a ring all-reduce's bytes per rank,
  // 2 (N - 1) / N * R * H * 4, the model the CUDA ranks' NCCL records use too), then `use` of the sum.
  auto reduce = [&](int32_t l, auto &&use) {
    rec.all_op(l, QW_OP_ALL_REDUCE, "cpu.all_reduce.rank_order", tp_all_reduce_cost(R, H, N), nt,
               [&] { use(all_reduce(RH)); });
  };
  auto residual = [&](int32_t l, const float *y) {
    rec.all_op(l, QW_OP_RESIDUAL, "cpu.residual_add", cost_residual(R, H, act), nt, [&] { residual_add(x, y, RH, th); });
  };

  // Vocab-parallel embedding: the owner of a token writes its row, the others zeros; all-reduce.
  for (int32_t r = 0; r < N; ++r) {
    const TpRank &kr = plan_.rank[size_t(r)];
    const NativeTensor &E = *ranks_[size_t(r)]->embed.t;
    float *p = part(r, RH);
    rec.rank_op(r, -1, QW_OP_EMBED, "cpu.embed.vocab_part", cost_embed(R, H, E.type, E.group, act), nt, [&] {
      for (int64_t row = 0; row < R; ++row) {
        const int32_t tok = st.tokens[size_t(row)];
        if (tok >= kr.vocab0 && tok < kr.vocab0 + kr.vocab) dequant_rows(p + row * H, E, tok - kr.vocab0, 1);
        else std::memset(p + row * H, 0, size_t(H) * 4);
      }
    });
  }
  reduce(-1, [&](const float *sum) { std::memcpy(x, sum, size_t(RH) * 4); });

  Gather gq, gk, gv, gz, gpre, gpost;
  for (int32_t l = 0; l < c_.num_layers; ++l) {
    const LayerToggles &lt = st.toggles.at(l);
    const ActQuant aq = lt.act_quant;
    const Layer &l0 = ranks_[0]->layers[size_t(l)];  // norms are replicated: rank 0's copy serves all
    cap(HOOK_RESID_PRE, l, x, H);
    rec.all_op(l, QW_OP_ATTN_NORM, "cpu.rmsnorm", cost_rmsnorm(R, H, act), nt,
               [&] { rmsnorm(h, x, l0.attn_norm, R, H, c_.rms_eps, th); });
    gq.start(sink.wants(HOOK_Q, l), R, int64_t(c_.num_heads) * d);
    gk.start(sink.wants(HOOK_K, l), R, int64_t(c_.num_kv_heads) * d);
    gv.start(sink.wants(HOOK_V, l), R, int64_t(c_.num_kv_heads) * d);
    gz.start(sink.wants(HOOK_Z, l), R, int64_t(c_.num_heads) * d);
    for (int32_t r = 0; r < N; ++r) {  // attention block of rank r: column-parallel qkv, its heads, row-parallel o_proj
      const Layer &ly = ranks_[size_t(r)]->layers[size_t(l)];
      const TpRank &kr = plan_.rank[size_t(r)];
      const MatJob jobs[3] = {{ly.q, ly.bq, q, Qr, aq}, {ly.k, ly.bk, k, KVr, aq}, {ly.v, ly.bv, v, KVr, aq}};
      rec.rank_op(r, l, QW_OP_QKV, [&] { return matmul_kernel_name(*ly.q.t, R, aq); }, cost_qkv(ly, R, H, Qr, KVr, act),
                  nt, [&] { matmul(jobs, 3, h, R, H, th); });
      rec.rank_op(r, l, QW_OP_ROPE, "cpu.rope.neox", cost_rope(R, kr.heads + kr.kv_heads, d, act), nt, [&] {
        rope_apply(q, R, Qr, kr.heads, d, pos, rope_);
        rope_apply(k, R, KVr, kr.kv_heads, d, pos, rope_);
      });
      gq.put(q, R, int64_t(kr.head0) * d, Qr);
      gk.put(k, R, int64_t(kr.kv_head0) * d, KVr);
      gv.put(v, R, int64_t(kr.kv_head0) * d, KVr);
      KvStore &kv = kv_[size_t(r)];
      const AttnArgs args{&st, l, kr.heads, kr.kv_heads, d, q, k, v, z, lt.gqa, &th, lt.attention};
      rec.rank_op(r, l, QW_OP_ATTENTION, attention_kernel(kv, lt),
                  cost_attention(st.pos0, st.n_new, kr.heads, kr.kv_heads, d, kv.elem_bytes(), act), nt,
                  [&] { attention(kv, args); });
      gz.put(z, R, int64_t(kr.head0) * d, Qr);
      const MatJob job{ly.o, nullptr, part(r, RH), H, aq};
      rec.rank_op(r, l, QW_OP_O_PROJ, [&] { return matmul_kernel_name(*ly.o.t, R, aq); },
                  cost_matmul(R, H, Qr, ly.o.t->type, ly.o.t->group, false, act), nt,
                  [&] { matmul(&job, 1, z, R, Qr, th); });
    }
    cap_gather(HOOK_Q, l, gq);
    cap_gather(HOOK_K, l, gk);
    cap_gather(HOOK_V, l, gv);
    cap_gather(HOOK_Z, l, gz);
    const float *o = nullptr;
    reduce(l, [&](const float *sum) { o = sum; });  // all-reduce #1 of the layer
    cap(HOOK_ATTN_OUT, l, o, H);
    residual(l, o);
    cap(HOOK_RESID_MID, l, x, H);
    rec.all_op(l, QW_OP_FFN_NORM, "cpu.rmsnorm", cost_rmsnorm(R, H, act), nt,
               [&] { rmsnorm(h, x, l0.ffn_norm, R, H, c_.rms_eps, th); });
    gpre.start(sink.wants(HOOK_MLP_PRE, l), R, c_.intermediate_size);
    gpost.start(sink.wants(HOOK_MLP_POST, l), R, c_.intermediate_size);
    for (int32_t r = 0; r < N; ++r) {  // MLP block of rank r: column-parallel gate_up, row-parallel down
      const Layer &ly = ranks_[size_t(r)]->layers[size_t(l)];
      const TpRank &kr = plan_.rank[size_t(r)];
      const MatJob jobs[2] = {{ly.gate, nullptr, g, Fr, aq}, {ly.up, nullptr, u, Fr, aq}};
      rec.rank_op(r, l, QW_OP_GATE_UP, [&] { return matmul_kernel_name(*ly.gate.t, R, aq); },
                  cost_gate_up(ly, R, H, Fr, act), nt, [&] { matmul(jobs, 2, h, R, H, th); });
      gpre.put(g, R, kr.ffn0, Fr);
      rec.rank_op(r, l, QW_OP_SWIGLU, "cpu.swiglu", cost_swiglu(R, Fr, act), nt, [&] { swiglu(a, g, u, R * Fr, th); });
      gpost.put(a, R, kr.ffn0, Fr);
      const MatJob job{ly.down, nullptr, part(r, RH), H, aq};
      rec.rank_op(r, l, QW_OP_DOWN, [&] { return matmul_kernel_name(*ly.down.t, R, aq); },
                  cost_matmul(R, H, Fr, ly.down.t->type, ly.down.t->group, false, act), nt,
                  [&] { matmul(&job, 1, a, R, Fr, th); });
    }
    cap_gather(HOOK_MLP_PRE, l, gpre);
    cap_gather(HOOK_MLP_POST, l, gpost);
    reduce(l, [&](const float *sum) { o = sum; });  // all-reduce #2 of the layer
    residual(l, o);
    cap(HOOK_RESID_POST, l, x, H);
  }

  // Final norm (replicated), vocab-parallel lm_head, logits gathered in rank order.
  const LogitRows lr = logit_rows(st, sink);
  const int64_t NR = int64_t(lr.sel.size()), P = plan_.vocab_part;
  const int32_t nl = int32_t(NR);
  float *xs = grow(fin_, size_t(NR * H));
  for (int64_t i = 0; i < NR; ++i) std::memcpy(xs + i * H, x + lr.sel[size_t(i)] * H, size_t(H) * 4);
  rec.all_op(-1, QW_OP_FINAL_NORM, "cpu.rmsnorm", cost_rmsnorm(NR, H, act), nl,
             [&] { rmsnorm(h, xs, ranks_[0]->out_norm, NR, H, c_.rms_eps, th); });
  float *lg = grow(logits_, size_t(NR * V));
  float *slices = grow(lgr_, size_t(N) * size_t(NR * P));  // rank r's [NR, its vocab] at r * NR * P
  // The lm_head runs the last layer's activation arm (toggle actQuant), as tp1's forward does.
  const ActQuant head_aq = c_.num_layers > 0 ? st.toggles.at(c_.num_layers - 1).act_quant : ActQuant{};
  for (int32_t r = 0; r < N; ++r) {
    const TpRank &kr = plan_.rank[size_t(r)];
    const Weight &w = ranks_[size_t(r)]->output;
    const MatJob job{w, nullptr, slices + r * NR * P, kr.vocab, head_aq};
    rec.rank_op(r, -1, QW_OP_LM_HEAD, [&] { return matmul_kernel_name(*w.t, NR, head_aq); },
                cost_matmul(NR, kr.vocab, H, w.t->type, w.t->group, false, act), nl,
                [&] { matmul(&job, 1, h, NR, H, th); });
  }
  // The gather's bytes as the CUDA ranks' NCCL all-gather of the [N, NR, P] slices (padding included).
  rec.all_op(-1, QW_OP_ALL_GATHER, "cpu.all_gather.copy", tp_logits_gather_cost(NR, P, N), nl, [&] {
    for (int32_t r = 0; r < N; ++r) {
      const TpRank &kr = plan_.rank[size_t(r)];
      for (int64_t i = 0; i < NR; ++i)
        std::memcpy(lg + i * V + kr.vocab0, slices + r * NR * P + i * kr.vocab, size_t(kr.vocab) * 4);
    }
  });
  hand_out_logits(st, sink, lr, lg, int32_t(V), kept_logits_);
  rec.all_op(-1, QW_OP_SAMPLE, "cpu.sample", cost_sample(int64_t(st.seq.size()), V), int32_t(st.seq.size()),
             [&] { sample_step(st, lr, lg, int32_t(V), sampler_, out_tokens); });
  rec.finish();
}

class TpModel final : public BackendModel {
 public:
  TpModel(const Config &cfg, int threads) : full_(cfg), plan_(tp_plan(cfg, cfg.tp)), threads_(threads) {
    for (int32_t r = 0; r < plan_.ranks; ++r) {
      auto m = std::make_unique<Model>();
      m->cfg = plan_.rank_config(cfg, r);
      m->threads = threads;
      ranks_.push_back(std::move(m));
    }
  }
  // Each rank keeps only its shard; the whole tensor is dropped when the call returns.
  void add_tensor(NativeTensor &&t) override {
    for (int32_t r = 0; r < plan_.ranks; ++r)
      ranks_[size_t(r)]->tensors.push_back(std::make_unique<NativeTensor>(tp_shard(plan_, full_, t, r)));
  }
  void finalize() override {
    for (auto &m : ranks_) link_model(*m);
  }
  std::unique_ptr<BackendSession> new_session(int32_t max_batch, int32_t max_context, int32_t) override {
    return std::make_unique<TpSession>(full_, plan_, ranks_, threads_, max_batch, max_context);
  }

 private:
  Config full_;
  TpPlan plan_;
  int threads_;
  std::vector<std::unique_ptr<Model>> ranks_;
};

}  // namespace

std::unique_ptr<BackendModel> tp_emulation_model(const Config &cfg, int threads) {
  return std::make_unique<TpModel>(cfg, threads);
}

}  // namespace cpu
}  // namespace qw
