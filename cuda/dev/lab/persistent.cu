// persistent.cu — decode = persistent (src/opt/decode/, persistent.cuh): the persistent kernel on random bf16 Qwen2.5
// shapes against the graph path built from the production kernels (embed, norm+q|k|v+RoPE GEMV, split-KV attention,
// o_proj, norm+gate|up+SwiGLU, down, final norm+lm_head: the backend's decode ops) on the same weights, caches and
// tokens, and against an fp64 reference with the graph path's bf16 rounding points. Checks: logits vs the graph path
// (and the same greedy tokens), error vs fp64 no worse than twice the graph path's, bitwise repeatable launches (the
// counters are reset by the kernel), batch invariance (row 0 of a batch == the row decoded alone). Rows of a batch
// have different lengths (positions, KV lengths) as in the engine; the logits are poisoned (NaN) before every run, so
// a launch that writes nothing fails instead of passing on the previous run's values; the static shared memory of the
// compiled kernel is checked against the plan's bound (the refusal is computed from it). A case that throws is a FAIL
// row and the next case runs. Timed: µs per step and tok/s, median and min-max of 3 repetitions, next to the graph
// path (both with the device sampler).
// Variants (persistent_options: the environment decides what every row runs): QW_PERSIST_RING=1 the shared-memory
// weight ring (persistent_ring.cuh, sm_90), QW_PERSIST_PREFETCH=0 no L2 prefetch. Whatever they say, the 0.5B and
// 1.5B batch-1 cases also run the ring against the register path ("ring = register path, bits": 0 logits differ) and
// time it ("persistent step (ring)") where this GPU can run it.
#include <cstdlib>
#include "attention.cuh"
#include "embed.cuh"
#include "gemv.cuh"
#include "persistent.cuh"
#include "persistent_trace.hpp"
#include "sample.cuh"
#include "lab.cuh"

namespace {

using bf = __nv_bfloat16;
using namespace qw::persist;

struct LabModel {
  Dims d;
  int max_ctx = 0, ctx = 0;
  double wbytes = 0;
  struct Lay { bf *qkv, *o, *gu, *down; float *bias, *n1, *n2; };
  std::vector<Lay> lay;
  bf *emb = nullptr, *lm = nullptr, *kc = nullptr, *vc = nullptr, *kc0 = nullptr, *vc0 = nullptr;
  float *fn = nullptr, *inv = nullptr;
  size_t kv_layer = 0;  // elements of one layer's cache, [B][nKV][max_ctx][d]
};

std::vector<float> rnd_vec(size_t n, float base, float sd) {
  std::vector<float> v(n);
  for (auto &x : v) x = base + sd * rndn();
  return v;
}

// cache: positions of cache per slot (0: ctx + 8). The split counts of both paths follow it, as in a session.
LabModel make_model(const Dims &d, int ctx, int cache = 0) {
  LabModel m;
  m.d = d;
  m.ctx = ctx;
  m.max_ctx = std::max(ctx + 8, cache);
  const int64_t H = d.hidden, I = d.inter, QKV = d.q_dim() + 2 * d.kv_dim();
  const float sh = 1.f / sqrtf((float)H);
  for (int l = 0; l < d.layers; ++l) {
    LabModel::Lay w;
    w.qkv = (bf *)dalloc<uint16_t>(QKV * H); fill_dev(w.qkv, QKV * H, sh);
    w.o = (bf *)dalloc<uint16_t>(H * d.q_dim()); fill_dev(w.o, H * d.q_dim(), sh);
    w.gu = (bf *)dalloc<uint16_t>(2 * I * H); fill_dev(w.gu, 2 * I * H, sh);
    w.down = (bf *)dalloc<uint16_t>(H * I); fill_dev(w.down, H * I, 1.f / sqrtf((float)I));
    w.bias = dalloc<float>(QKV); h2d(w.bias, rnd_vec(QKV, 0.f, 0.02f));
    w.n1 = dalloc<float>(H); h2d(w.n1, rnd_vec(H, 1.f, 0.1f));
    w.n2 = dalloc<float>(H); h2d(w.n2, rnd_vec(H, 1.f, 0.1f));
    m.lay.push_back(w);
    m.wbytes += 2.0 * (QKV * H + H * d.q_dim() + 2 * I * H + H * I);
  }
  m.emb = (bf *)dalloc<uint16_t>((size_t)d.vocab * H); fill_dev(m.emb, (int64_t)d.vocab * H, 1.f);
  m.lm = (bf *)dalloc<uint16_t>((size_t)d.vocab * H); fill_dev(m.lm, (int64_t)d.vocab * H, sh);
  m.wbytes += 2.0 * d.vocab * H;
  m.fn = dalloc<float>(H); h2d(m.fn, rnd_vec(H, 1.f, 0.1f));
  std::vector<float> inv(d.head_dim / 2);
  for (int i = 0; i < d.head_dim / 2; ++i) inv[i] = 1.0f / powf(1e6f, (float)(2 * i) / (float)d.head_dim);
  m.inv = dalloc<float>(d.head_dim / 2); h2d(m.inv, inv);
  m.kv_layer = (size_t)kMaxBatch * d.n_kv * m.max_ctx * d.head_dim;  // slots for the largest batch
  const size_t kv = m.kv_layer * d.layers;
  m.kc = (bf *)dalloc<uint16_t>(kv); m.vc = (bf *)dalloc<uint16_t>(kv);
  m.kc0 = (bf *)dalloc<uint16_t>(kv); m.vc0 = (bf *)dalloc<uint16_t>(kv);
  fill_dev(m.kc0, (int64_t)kv, 1.f);
  fill_dev(m.vc0, (int64_t)kv, 1.f);
  return m;
}

void free_model(LabModel &m) {
  for (auto &w : m.lay) { cudaFree(w.qkv); cudaFree(w.o); cudaFree(w.gu); cudaFree(w.down); cudaFree(w.bias); cudaFree(w.n1); cudaFree(w.n2); }
  for (void *p : {(void *)m.emb, (void *)m.lm, (void *)m.kc, (void *)m.vc, (void *)m.kc0, (void *)m.vc0, (void *)m.fn, (void *)m.inv})
    cudaFree(p);
}

// One batch's step inputs and scratch, for both paths.
struct Run {
  int B = 1;
  int32_t *tok, *pos, *slot, *len, *out;
  float *x, *logits, *ws_graph;
  double *wb;
  int32_t *cnt_graph;
  bf *q, *z, *h;
  SampleRow *sr;
  int n_split_graph = 1;
};

// Row b attends to lens[b] keys (lens[b] <= m.ctx), its new token at position lens[b] - 1.
Run make_run(const LabModel &m, const std::vector<int32_t> &tokens, const std::vector<int32_t> &slots,
             const std::vector<int32_t> &lens) {
  const Dims &d = m.d;
  Run r;
  r.B = (int)tokens.size();
  const int B = r.B;
  r.tok = dalloc<int32_t>(B); r.pos = dalloc<int32_t>(B); r.slot = dalloc<int32_t>(B); r.len = dalloc<int32_t>(B);
  r.out = dalloc<int32_t>(B);
  h2d(r.tok, tokens); h2d(r.slot, slots);
  std::vector<int32_t> pos(lens);
  for (auto &p : pos) p -= 1;
  h2d(r.pos, pos); h2d(r.len, lens);
  r.x = dalloc<float>((size_t)B * d.hidden);
  r.logits = dalloc<float>((size_t)B * d.vocab);
  r.wb = dalloc<double>((size_t)B * d.vocab);
  r.q = (bf *)dalloc<uint16_t>((size_t)B * d.q_dim()); r.z = (bf *)dalloc<uint16_t>((size_t)B * d.q_dim());
  r.h = (bf *)dalloc<uint16_t>((size_t)B * d.inter);
  int sms = 132;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  r.n_split_graph = decode_attn_pick_split(d.n_heads, d.n_kv, m.max_ctx, sms);
  r.ws_graph = dalloc<float>(decode_attn_ws_floats(B, d.n_heads, d.head_dim, r.n_split_graph));
  r.cnt_graph = dalloc<int32_t>((size_t)B * d.n_heads);
  CHK(cudaMemset(r.cnt_graph, 0, (size_t)B * d.n_heads * 4));
  r.sr = dalloc<SampleRow>(B);
  h2d(r.sr, std::vector<SampleRow>(B, SampleRow{0.f, 0, 1.f, 0.f}));
  return r;
}

void free_run(Run &r) {
  for (void *p : {(void *)r.tok, (void *)r.pos, (void *)r.slot, (void *)r.len, (void *)r.out, (void *)r.x, (void *)r.logits,
                  (void *)r.ws_graph, (void *)r.wb, (void *)r.cnt_graph, (void *)r.q, (void *)r.z, (void *)r.h, (void *)r.sr})
    cudaFree(p);
}

WMat bfmat(const bf *p, int64_t rows, int64_t cols) {
  WMat w;
  w.data = p; w.rows = rows; w.cols = cols; w.type = WT_BF16;
  return w;
}

// The graph path's kernels (the backend's decode_body under the default arms), eagerly on stream s.
void graph_step(const LabModel &m, const Run &r, cudaStream_t s) {
  const Dims &d = m.d;
  const int64_t H = d.hidden, I = d.inter, QKV = d.q_dim() + 2 * d.kv_dim();
  launch_embed(r.x, bfmat(m.emb, d.vocab, H), r.tok, r.B, s);
  for (int l = 0; l < d.layers; ++l) {
    const LabModel::Lay &w = m.lay[l];
    GemvArgs a;
    a.batch = r.B; a.pro = GEMV_PRO_NORM; a.x = r.x; a.x_ld = H; a.norm_w = w.n1; a.eps = 1e-6f;
    a.w = bfmat(w.qkv, QKV, H); a.bias = w.bias; a.epi = GEMV_EPI_QKV_ROPE;
    a.rope.q_out = r.q; a.rope.kcache = m.kc + m.kv_layer * l; a.rope.vcache = m.vc + m.kv_layer * l;
    a.rope.pos = r.pos; a.rope.slot = r.slot; a.rope.inv_freq = m.inv; a.rope.n_heads = d.n_heads; a.rope.n_kv = d.n_kv;
    a.rope.head_dim = d.head_dim; a.rope.max_ctx = m.max_ctx;
    launch_gemv(a, s);
    DecodeAttnArgs da;
    da.out = r.z; da.q = r.q; da.kcache = m.kc + m.kv_layer * l; da.vcache = m.vc + m.kv_layer * l; da.slot = r.slot;
    da.kv_len = r.len; da.batch = r.B; da.n_heads = d.n_heads; da.n_kv = d.n_kv; da.head_dim = d.head_dim;
    da.max_ctx = m.max_ctx; da.n_split = r.n_split_graph; da.ws = r.ws_graph; da.counters = r.cnt_graph;
    launch_decode_attention(da, s);
    GemvArgs o;
    o.batch = r.B; o.act = r.z; o.act_ld = d.q_dim(); o.epi = GEMV_EPI_ADD_F32; o.out = r.x; o.out_ld = H;
    o.w = bfmat(w.o, H, d.q_dim());
    launch_gemv(o, s);
    GemvArgs g;
    g.batch = r.B; g.pro = GEMV_PRO_NORM; g.x = r.x; g.x_ld = H; g.norm_w = w.n2; g.eps = 1e-6f;
    g.epi = GEMV_EPI_SWIGLU; g.out = r.h; g.out_ld = I; g.w = bfmat(w.gu, 2 * I, H);
    launch_gemv(g, s);
    GemvArgs dn;
    dn.batch = r.B; dn.act = r.h; dn.act_ld = I; dn.epi = GEMV_EPI_ADD_F32; dn.out = r.x; dn.out_ld = H;
    dn.w = bfmat(w.down, H, I);
    launch_gemv(dn, s);
  }
  GemvArgs lh;
  lh.batch = r.B; lh.pro = GEMV_PRO_NORM; lh.x = r.x; lh.x_ld = H; lh.norm_w = m.fn; lh.eps = 1e-6f;
  lh.epi = GEMV_EPI_F32; lh.out = r.logits; lh.out_ld = d.vocab; lh.w = bfmat(m.lm, d.vocab, H);
  launch_gemv(lh, s);
}

// The persistent kernel's plan, operands and scratch for one batch.
struct Persist {
  Plan plan;
  Task *tasks = nullptr;
  int32_t *cnt = nullptr;
  float *ws = nullptr;
  PersistLayer *layers = nullptr;
  PersistArgs a;
};

Persist make_persist(const LabModel &m, const Run &r) {
  Persist p;
  Dims d = m.d;
  d.batch = r.B;
  const int blocks = persistent_blocks(d);
  d.n_split = pick_splits(d.n_kv, blocks, m.max_ctx);
  p.plan = build_plan(d, blocks);
  p.tasks = dalloc<Task>(p.plan.tasks.size()); h2d(p.tasks, p.plan.tasks);
  p.cnt = dalloc<int32_t>(p.plan.c.count());
  CHK(cudaMemset(p.cnt, 0, (size_t)p.plan.c.count() * 4));
  p.ws = dalloc<float>(persistent_ws_floats(d));
  std::vector<PersistLayer> hl(d.layers);
  for (int l = 0; l < d.layers; ++l) {
    const LabModel::Lay &w = m.lay[l];
    hl[l].qkv = w.qkv; hl[l].o = w.o; hl[l].gate_up = w.gu; hl[l].down = w.down;
    hl[l].attn_norm = w.n1; hl[l].ffn_norm = w.n2; hl[l].qkv_bias = w.bias;
    hl[l].kcache = m.kc + m.kv_layer * l; hl[l].vcache = m.vc + m.kv_layer * l;
  }
  p.layers = dalloc<PersistLayer>(hl.size()); h2d(p.layers, hl);
  PersistArgs &a = p.a;
  a.logits = r.logits; a.x = r.x; a.q = r.q; a.z = r.z; a.h = r.h; a.ws = p.ws; a.counters = p.cnt;
  a.tasks = p.tasks; a.n_tasks = (int32_t)p.plan.tasks.size(); a.c = p.plan.c; a.layers = p.layers;
  a.embed = m.emb; a.lm_head = m.lm; a.out_norm = m.fn; a.inv_freq = m.inv;
  a.tokens = r.tok; a.pos = r.pos; a.slot = r.slot; a.kv_len = r.len;
  a.d = d; a.max_ctx = m.max_ctx; a.eps = 1e-6f;
  persistent_options(a);  // QW_PERSIST_RING=1 / QW_PERSIST_PREFETCH=0: every row below runs that variant
  return p;
}

void free_persist(Persist &p) {
  cudaFree(p.tasks); cudaFree(p.cnt); cudaFree(p.ws); cudaFree(p.layers);
}

void restore_cache(const LabModel &m) {
  const size_t bytes = m.kv_layer * m.d.layers * 2;
  CHK(cudaMemcpy(m.kc, m.kc0, bytes, cudaMemcpyDeviceToDevice));
  CHK(cudaMemcpy(m.vc, m.vc0, bytes, cudaMemcpyDeviceToDevice));
}

std::vector<float> run_logits(const LabModel &m, const Run &r, const std::function<void()> &f) {
  restore_cache(m);
  CHK(cudaMemset(r.logits, 0xff, (size_t)r.B * m.d.vocab * 4));  // NaN: a launch that writes nothing fails
  f();
  CHK(cudaDeviceSynchronize());
  return d2h(r.logits, (size_t)r.B * m.d.vocab);
}

double max_rel(const std::vector<float> &a, const std::vector<double> &ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num = std::max(num, std::fabs((double)a[i] - ref[i]));
    den = std::max(den, std::fabs(ref[i]));
  }
  return den > 0 ? num / den : num;
}

std::vector<int> argmax_rows(const std::vector<float> &v, int B, int V) {
  std::vector<int> t(B);
  for (int b = 0; b < B; ++b) t[b] = (int)(std::max_element(v.begin() + (size_t)b * V, v.begin() + (size_t)(b + 1) * V) - v.begin() - (size_t)b * V);
  return t;
}

std::vector<float> bf_host(const bf *p, size_t n) {
  const auto u = d2h(reinterpret_cast<const uint16_t *>(p), n);
  std::vector<float> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = bf2f(u[i]);
  return f;
}
double dotd(const float *w, const std::vector<float> &a) {
  double s = 0;
  for (size_t k = 0; k < a.size(); ++k) s += (double)w[k] * a[k];
  return s;
}
// The GEMV prologue's input: bf16(bf16(x * rstd) * w), rstd from an fp64 sum of squares.
std::vector<float> normed(const std::vector<double> &x, const std::vector<float> &w) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const float r = (float)(1.0 / std::sqrt(ss / x.size() + 1e-6));
  std::vector<float> a(x.size());
  for (size_t k = 0; k < x.size(); ++k) a[k] = bfr(bfr((float)x[k] * r) * w[k]);
  return a;
}

// One step of rows (tokens, slots) at positions lens - 1 in fp64 sums, rounding where the graph path stores bf16 (q, k,
// v after RoPE, z, SwiGLU's inputs and output, the normed GEMV inputs); attention in fp64 over the cache snapshot.
std::vector<double> fp64_ref(const LabModel &m, const std::vector<int32_t> &tokens, const std::vector<int32_t> &slots,
                             const std::vector<int32_t> &lens) {
  const Dims &d = m.d;
  const int64_t H = d.hidden, I = d.inter, D = d.head_dim, QD = d.q_dim(), KD = d.kv_dim(), QKV = QD + 2 * KD;
  const int G = d.group(), half = d.head_dim / 2, B = (int)tokens.size();
  const auto lm = bf_host(m.lm, (size_t)d.vocab * H), fn = d2h(m.fn, H), inv = d2h(m.inv, half);
  const auto kc = bf_host(m.kc0, m.kv_layer * d.layers), vc = bf_host(m.vc0, m.kv_layer * d.layers);
  std::vector<std::vector<double>> x(B);
  for (int b = 0; b < B; ++b) {
    const auto e = bf_host(m.emb + (size_t)tokens[b] * H, H);
    x[b].assign(e.begin(), e.end());
  }
  for (int l = 0; l < d.layers; ++l) {
    const LabModel::Lay &w = m.lay[l];
    const auto qkv = bf_host(w.qkv, QKV * H), o = bf_host(w.o, H * QD), gu = bf_host(w.gu, 2 * I * H),
               dn = bf_host(w.down, H * I);
    const auto bias = d2h(w.bias, QKV), n1 = d2h(w.n1, H), n2 = d2h(w.n2, H);
    for (int b = 0; b < B; ++b) {
      const int pos = lens[b] - 1;
      const auto a = normed(x[b], n1);
      std::vector<float> q(QD), k(KD), v(KD), z(QD), h(I);
      for (int64_t p = 0; p < QKV; p += 2) {
        const int64_t r1 = qkv_orig_row(p, d.n_heads, d.n_kv, d.head_dim), r2 = qkv_orig_row(p + 1, d.n_heads, d.n_kv, d.head_dim);
        const float v1 = (float)dotd(&qkv[p * H], a), v2 = (float)dotd(&qkv[(p + 1) * H], a);
        if (p < QD + KD) {  // the RoPE epilogue's rounding (gemv_parts.cuh epilogue_qkv_rope)
          const float x1 = bfr(v1 + bias[r1]), x2 = bfr(v2 + bias[r2]);
          const int i = (int)(r1 % D);
          const float c = bfr(cosf((float)pos * inv[i])), sn = bfr(sinf((float)pos * inv[i]));
          const float o1 = bfr(bfr(x1 * c) + bfr(-x2 * sn)), o2 = bfr(bfr(x2 * c) + bfr(x1 * sn));
          if (r1 < QD) { q[r1] = o1; q[r2] = o2; } else { k[r1 - QD] = o1; k[r2 - QD] = o2; }
        } else {
          v[r1 - QD - KD] = bfr(v1 + bias[r1]);
          v[r2 - QD - KD] = bfr(v2 + bias[r2]);
        }
      }
      for (int hq = 0; hq < d.n_heads; ++hq) {
        const int g = hq / G;
        const size_t base = m.kv_layer * l + ((size_t)slots[b] * d.n_kv + g) * m.max_ctx * D;
        std::vector<double> sc(pos + 1);
        double mx = -1e300, sum = 0;
        for (int t = 0; t <= pos; ++t) {
          double s = 0;
          for (int64_t e = 0; e < D; ++e) s += (double)q[hq * D + e] * (t == pos ? k[g * D + e] : kc[base + t * D + e]);
          sc[t] = s / std::sqrt((double)D);
          mx = std::max(mx, sc[t]);
        }
        for (auto &s : sc) sum += (s = std::exp(s - mx));
        for (int64_t e = 0; e < D; ++e) {
          double acc = 0;
          for (int t = 0; t <= pos; ++t) acc += sc[t] * (t == pos ? v[g * D + e] : vc[base + t * D + e]);
          z[hq * D + e] = bfr((float)(acc / sum));
        }
      }
      for (int64_t r = 0; r < H; ++r) x[b][r] += dotd(&o[r * QD], z);
      const auto a2 = normed(x[b], n2);
      for (int64_t j = 0; j < I; ++j) {  // epilogue_swiglu's rounding
        const float gb = bfr((float)dotd(&gu[2 * j * H], a2)), ub = bfr((float)dotd(&gu[(2 * j + 1) * H], a2));
        h[j] = bfr(bfr(gb / (1.f + expf(-gb))) * ub);
      }
      for (int64_t r = 0; r < H; ++r) x[b][r] += dotd(&dn[r * I], h);
    }
  }
  std::vector<double> logits((size_t)B * d.vocab);
  for (int b = 0; b < B; ++b) {
    const auto a = normed(x[b], fn);
    for (int vv = 0; vv < d.vocab; ++vv) logits[(size_t)b * d.vocab + vv] = dotd(&lm[(size_t)vv * H], a);
  }
  return logits;
}

}  // namespace

// One traced step (PersistArgs::trace, %globaltimer stamps per task; persistent_trace.hpp): where the step's time goes,
// by dependency level (a layer's q|k|v, attention, o_proj, gate|up, down; the lm_head), with each op's mean wait and
// run per task. Untimed: the stamps cost a few stores a task. The rows' time column is the op's levels per step.
static void trace_rows(const char *name, const char *shape, Persist &p) {
  const size_t n = p.plan.tasks.size();
  uint64_t *tr = dalloc<uint64_t>(3 * n);
  CHK(cudaMemset(tr, 0, 3 * n * sizeof(uint64_t)));
  p.a.trace = tr;
  launch_persistent_decode(p.a, p.plan.blocks, 0);
  CHK(cudaDeviceSynchronize());
  p.a.trace = nullptr;
  const std::vector<uint64_t> t = d2h(tr, 3 * n);
  cudaFree(tr);
  const TraceSummary s = summarize_trace(p.plan, t);
  char rs[240];
  snprintf(rs, sizeof rs, "%s | timer step <= %.0f ns", shape, s.resolution_ns);
  report(std::string(name) + ": traced step (levels tile it)", rs, true, s.ok ? 0 : 1, 0.5, false, s.step_ns / 1e3, 0, "",
         0);
  if (!s.ok) return;
  for (int op = 0; op < T_N; ++op) {
    if (!s.tasks[op]) continue;
    char sh[200];
    snprintf(sh, sizeof sh, "%s | %d levels, %.1f us each; %d tasks: wait %.2f us, run %.2f us (mean)", shape, s.levels[op],
             s.level_ns[op] / 1e3 / std::max(1, s.levels[op]), s.tasks[op], s.wait_ns[op] / 1e3 / s.tasks[op],
             s.run_ns[op] / 1e3 / s.tasks[op]);
    report(std::string(name) + ": trace " + op_name(op), sh, false, 0, 0, false, s.level_ns[op] / 1e3, 0, "", 0);
  }
}

// lens: the keys each row attends to (its length after this step's token), one row per entry. ring_ab: where this GPU
// can run the weight ring (persistent_ring_stages), its logits against the register path's, bit for bit, and (timed)
// its step, whatever QW_PERSIST_RING says for the other rows.
static void persistent_case_body(const char *name, Dims d, const std::vector<int32_t> &lens, bool fp64, bool timed,
                                 int cache, bool ring_ab) {
  const int B = (int)lens.size(), ctx = *std::max_element(lens.begin(), lens.end());
  LabModel m = make_model(d, ctx, cache);
  std::vector<int32_t> tokens(B), slots(B);
  for (int b = 0; b < B; ++b) { tokens[b] = (int32_t)(rnd64() % d.vocab); slots[b] = (b * 3 + 1) % kMaxBatch; }
  Run r = make_run(m, tokens, slots, lens);
  Persist p = make_persist(m, r);
  char shape[128];
  std::string ls;
  for (int b = 0; b < B && b < 4; ++b) ls += (b ? "/" : "") + std::to_string(lens[b]);
  snprintf(shape, sizeof shape, "H%d L%d len %s%s B%d %d blk %d spl", d.hidden, d.layers, ls.c_str(), B > 4 ? "/.." : "",
           B, p.plan.blocks, p.plan.d.n_split);
  const auto g = run_logits(m, r, [&] { graph_step(m, r, 0); });
  const auto pl = run_logits(m, r, [&] { launch_persistent_decode(p.a, p.plan.blocks, 0); });
  const auto pl2 = run_logits(m, r, [&] { launch_persistent_decode(p.a, p.plan.blocks, 0); });
  std::vector<double> gd(g.begin(), g.end());
  bool nan = false;
  for (float v : pl) nan |= !std::isfinite(v);
  report(std::string(name) + ": vs graph path", shape, true, max_rel(pl, gd), 3e-2, nan, 0, 0, "", 0);
  // a row's token may differ only where the graph path's top-2 gap is within twice the row's largest logit difference
  // (a near-tie that bf16 noise decides either way; counted apart, not a failure)
  const auto tg = argmax_rows(g, B, d.vocab), tp = argmax_rows(pl, B, d.vocab);
  int differ = 0, ties = 0;
  for (int b = 0; b < B; ++b) {
    if (tg[b] == tp[b]) continue;
    float top = -INFINITY, second = -INFINITY, diff = 0;
    for (int v = 0; v < d.vocab; ++v) {
      const float x = g[(size_t)b * d.vocab + v];
      diff = std::max(diff, std::fabs(x - pl[(size_t)b * d.vocab + v]));
      if (x > top) { second = top; top = x; } else if (x > second) second = x;
    }
    if (top - second <= 2 * diff) ++ties;
    else ++differ;
  }
  report(std::string(name) + ": greedy tokens differ (" + std::to_string(ties) + " near-ties apart)", shape, true,
         differ, 0.5, false, 0, 0, "", 0);
  report(std::string(name) + ": relaunch bitwise", shape, true, memcmp(pl.data(), pl2.data(), pl.size() * 4) != 0, 0.5,
         false, 0, 0, "", 0);
  // the ring changes where the weights come from, never the sums (persistent_ring.cuh): 0 logits differ
  PersistArgs ring_args = p.a;
  ring_args.ring_stages = ring_ab ? persistent_ring_stages(p.a.d) : 0;
  if (ring_args.ring_stages > 0) {
    PersistArgs reg_args = p.a;
    reg_args.ring_stages = 0;
    const auto lr = run_logits(m, r, [&] { launch_persistent_decode(reg_args, p.plan.blocks, 0); });
    const auto lg = run_logits(m, r, [&] { launch_persistent_decode(ring_args, p.plan.blocks, 0); });
    int64_t differ = 0;
    bool rnan = false;
    for (size_t i = 0; i < lr.size(); ++i) {
      differ += memcmp(&lr[i], &lg[i], 4) != 0;
      rnan |= !std::isfinite(lg[i]);
    }
    char rs[160];
    snprintf(rs, sizeof rs, "%s | %d stages of %lld KiB", shape, ring_args.ring_stages, (long long)(kRingStageBytes >> 10));
    report(std::string(name) + ": ring = register path, bits", rs, true, (double)differ, 0.5, rnan, 0, 0, "", 0);
  }
  if (B > 1) {  // batch invariance: row 0 decoded alone
    Run r1 = make_run(m, {tokens[0]}, {slots[0]}, {lens[0]});
    Persist p1 = make_persist(m, r1);
    const auto one = run_logits(m, r1, [&] { launch_persistent_decode(p1.a, p1.plan.blocks, 0); });
    report(std::string(name) + ": batch invariance", shape, true, memcmp(one.data(), pl.data(), one.size() * 4) != 0,
           0.5, false, 0, 0, "", 0);
    free_persist(p1);
    free_run(r1);
  }
  if (fp64) {
    const auto ref = fp64_ref(m, tokens, slots, lens);
    const double eg = max_rel(g, ref), ep = max_rel(pl, ref);
    report(std::string(name) + ": graph path vs fp64", shape, false, eg, 0, false, 0, 0, "", 0);
    report(std::string(name) + ": persistent vs fp64", shape, true, ep, std::max(2 * eg, 1e-2), nan, 0, 0, "", 0);
  }
  if (timed) {
    cudaStream_t s;
    CHK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cudaGraph_t gr;
    cudaGraphExec_t ge;
    CHK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
    graph_step(m, r, s);
    launch_sample(r.out, r.logits, r.sr, r.wb, B, d.vocab, d.vocab, s);
    CHK(cudaStreamEndCapture(s, &gr));
    CHK(cudaGraphInstantiate(&ge, gr, 0));
    const double floor_tok = g_copy_bw / m.wbytes * B;  // tok/s if every weight byte moved at copy bandwidth
    auto reps = [&](const std::function<void(int)> &f) {
      std::vector<double> us;
      for (int k = 0; k < 3; ++k) us.push_back(time_us(f, g_quick ? 10 : 50, 5));
      std::sort(us.begin(), us.end());
      return us;
    };
    const auto ug = reps([&](int) { CHK(cudaGraphLaunch(ge, 0)); });
    const auto up = reps([&](int) {
      launch_persistent_decode(p.a, p.plan.blocks, 0);
      launch_sample(r.out, r.logits, r.sr, r.wb, B, d.vocab, d.vocab, 0);
    });
    char s1[160];
    snprintf(s1, sizeof s1, "%s [%.1f-%.1f us]", shape, ug[0], ug[2]);
    report(std::string(name) + ": graph path step", s1, false, 0, 0, false, ug[1], 1e6 * B / ug[1], "tok/s", floor_tok);
    snprintf(s1, sizeof s1, "%s [%.1f-%.1f us]", shape, up[0], up[2]);
    report(std::string(name) + ": persistent step", s1, false, 0, 0, false, up[1], 1e6 * B / up[1], "tok/s", floor_tok);
    if (ring_args.ring_stages > 0) {
      const auto ur = reps([&](int) {
        launch_persistent_decode(ring_args, p.plan.blocks, 0);
        launch_sample(r.out, r.logits, r.sr, r.wb, B, d.vocab, d.vocab, 0);
      });
      snprintf(s1, sizeof s1, "%s [%.1f-%.1f us] %d stages", shape, ur[0], ur[2], ring_args.ring_stages);
      report(std::string(name) + ": persistent step (ring)", s1, false, 0, 0, false, ur[1], 1e6 * B / ur[1], "tok/s",
             floor_tok);
    }
    trace_rows(name, shape, p);
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(gr);
    cudaStreamDestroy(s);
  }
  free_persist(p);
  free_run(r);
  free_model(m);
}

// A case that throws (a launch refused or failed) is a FAIL row; the next case still runs (a trapped kernel leaves the
// context unusable, so the cases after it then fail too: read the first FAIL).
static void persistent_case(const char *name, Dims d, const std::vector<int32_t> &lens, bool fp64, bool timed,
                            int cache = 0, bool ring_ab = false) {
  // QW_LAB_PERSIST_ONLY="name/B": only that case (e.g. "persistent 0.5B/1" under ncu: one kernel worth profiling)
  if (const char *only = std::getenv("QW_LAB_PERSIST_ONLY")) {
    if (std::string(only) != std::string(name) + "/" + std::to_string(lens.size())) return;
  }
  try {
    persistent_case_body(name, d, lens, fp64, timed, cache, ring_ab);
  } catch (const std::exception &e) {
    printf("persistent: %s threw: %s\n", name, e.what());
    report(std::string(name) + ": threw (see the log line above)", "B" + std::to_string(lens.size()), true, 1, 0.5,
           false, 0, 0, "", 0);
    cudaGetLastError();
  }
}

static Dims qwen_dims(int H, int I, int L, int nH, int nKV, int V) {
  Dims d;
  d.hidden = H; d.inter = I; d.layers = L; d.n_heads = nH; d.n_kv = nKV; d.head_dim = H / nH; d.vocab = V;
  return d;
}

void run_persistent() {
  // the plan's q|k|v row map must be the one the model upload applies (gemv.cuh qkv_rope_orig_row)
  int64_t map_diff = 0;
  for (int dd : {64, 128})
    for (int64_t p = 0; p < (int64_t)(28 + 2 * 4) * dd; ++p)
      map_diff += qkv_orig_row(p, 28, 4, dd) != qkv_rope_orig_row(p, 28, 4, dd);
  report("persistent: q|k|v row map", "nH 28 nKV 4 d 64/128", true, (double)map_diff, 0.5, false, 0, 0, "", 0);
  // the plan's static shared-memory bound (its refusal and the CPU test's sizing table use it) covers the kernel's
  for (int dd : {64, 128}) {
    const double st = (double)persistent_static_smem(dd), bound = (double)smem_static_bound(dd);
    char sh[96];
    snprintf(sh, sizeof sh, "d %d: %.0f B static, bound %.0f, opt-in %lld", dd, st, bound, (long long)smem_optin_bytes());
    report("persistent: static smem <= plan bound", sh, true, st > bound ? 1 : 0, 0.5, false, 0, 0, "", 0);
  }
  // exactness on two layers (fp64 reference on the host), with a 32k vocabulary to keep the reference short
  persistent_case("persistent 0.5B-2L", qwen_dims(896, 4864, 2, 14, 2, 32768), {300}, true, false);
  // batch 4 needs the opt-in (38 KiB staged + 20 KiB static: the first run stopped here); rows of different lengths
  persistent_case("persistent 0.5B-2L", qwen_dims(896, 4864, 2, 14, 2, 32768), {300, 257, 33, 128}, true, false);
  // the engine test's embedded model (models/tiny-qwen2-brown shapes, random weights): 3 rows of different lengths
  persistent_case("persistent tiny-4L", qwen_dims(256, 768, 4, 4, 1, 8256), {16, 6, 19}, true, false);
  persistent_case("persistent 7B-2L", qwen_dims(3584, 18944, 2, 28, 4, 32768), {300}, !g_quick, false);
  persistent_case("persistent 1.5B-2L", qwen_dims(1536, 8960, 2, 12, 2, 32768), {300, 97}, true, false);
  // whole models, timed next to the graph path (logits, tokens, relaunch and batch invariance checked); 0.5B batch 1
  // also against fp64 over all 24 layers: whether the engine test's 5.6e-3 (persistent vs graph) is the bf16 noise of
  // a deep model (then graph vs fp64 is of the same size) or an error of the kernel (persistent vs fp64 > 2x graph's);
  // also under --quick (a few seconds of host fp64), since the validation runs use it
  persistent_case("persistent 0.5B", qwen_dims(896, 4864, 24, 14, 2, 151936), {128}, true, true, 0, true);
  // as in an engine session (a 4096-position cache: 16 splits per kv head of >= 256 keys, 1 active at 128 keys; the
  // case above has 1 split): what the empty splits cost, and the graph path with the same cache
  persistent_case("persistent 0.5B cache 4096", qwen_dims(896, 4864, 24, 14, 2, 151936), {128}, false, true, 4096);
  persistent_case("persistent 1.5B", qwen_dims(1536, 8960, 28, 12, 2, 151936), {128}, false, true, 0, true);
  if (!g_quick) persistent_case("persistent 7B", qwen_dims(3584, 18944, 28, 28, 4, 152064), {128}, false, true);
  persistent_case("persistent 0.5B", qwen_dims(896, 4864, 24, 14, 2, 151936), {128, 128, 128, 128}, false, true);
  persistent_case("persistent 0.5B", qwen_dims(896, 4864, 24, 14, 2, 151936), {128, 77, 128, 5, 64, 128, 100, 33}, false, true);
}
