// sparse_prefill_cpu.cpp — MInference vertical-slash sparse prefill attention on the CPU (toggle "sparsePrefill").
//
// Per prefill step, per sequence of the step (rows at positions p0 .. N-1) and query head h:
//  1. Estimate (MInference's vertical_and_slash_kernel, done online): the last lq = min(64, n) queries score every
//     key j <= i, softmax per query; vertical[j] = sum of their probabilities on column j, slash[o] = sum on
//     diagonal o = i - j. With DCA each (i, j) is scored with the query variant of its chunk relation (intra,
//     successive, inter: dca::part), i.e. one softmax over DCA's explicit score table (as vLLM's dual-chunk
//     sparse path concatenates the three QK blocks before its softmax).
//  2. Select: columns [0, sink) and diagonals [0, local) always, then the `vertical` best other columns and the
//     `slash` best other diagonals (ties: lower index); MInference forces 30 sink columns and the last 100
//     diagonals inside its budgets, here they come on top of them.
//  3. Attend: query i visits the sorted union {j <= i : j a column, or i - j a diagonal}. Plain attention: each score
//     is one FMA chain over the head dimension and each output lane one FMA chain over the visited keys in
//     ascending order, after the shared softmax_scaled: the arithmetic of the blocked dense kernel
//     (attention_avx512.cpp), so a selection of every key reproduces dense attention bit for bit where that kernel
//     is the dense one (AVX-512, head_dim % 64 == 0, >= 8 rows). With DCA: dca_attend_keys, the DCA kernel's own
//     per-head arithmetic over the list (bit for bit dca_attention with every key).
// With SparseBudget::stats each (row, head) also runs over every key: recall = exp(lse_visited - lse_all) (the
// dense probability mass on the visited keys) and the output error against that dense z.
#include "sparse_prefill_cpu.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>
#include <numeric>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "attention.hpp"
#include "dca_cpu.hpp"
#include "dca_positions.hpp"
#include "half.hpp"
#include "registry.hpp"
#include "sparse_select.hpp"

namespace qw {
namespace cpu {

void sparse_check(const StepToggles &t, const LayerToggles &lt) {
  if (t.kv_cache != KvCache::Bf16 && t.kv_cache != KvCache::F32)
    throw Error(QW_ERR_UNSUPPORTED, "sparsePrefill = vertical-slash reads an f32 or bf16 KV cache; kvCache = " +
                                        value_name(t.kv_cache) +
                                        " is not supported with it: set kvCache to bf16 or f32, or sparsePrefill to off");
  if (lt.attention != Attention::FlashBf16)
    throw Error(QW_ERR_UNSUPPORTED, "sparsePrefill = vertical-slash runs its own fp32 attention; attention = " +
                                        value_name(lt.attention) +
                                        " at the same layer is not supported with it: set attention to flash-bf16 "
                                        "there, or sparsePrefill to off");
}

const char *sparse_kernel_name(bool dca, bool kv_bf16) {
  if (dca) return kv_bf16 ? "cpu.attention.sparse_vs.dca.kv_bf16" : "cpu.attention.sparse_vs.dca.kv_f32";
  return kv_bf16 ? "cpu.attention.sparse_vs.kv_bf16" : "cpu.attention.sparse_vs.kv_f32";
}

void sparse_step_begin(SparseStats &stats, const Step &st, int32_t layers, int32_t heads) {
  int64_t rows = 0;
  for (int32_t n : st.n_new) rows += n;
  bool any = false;
  for (int32_t l = 0; l < layers; ++l) any = any || sparse_runs(st, st.toggles.at(l), rows);
  if (!any) return;
  bool fresh = stats.layers != layers || stats.heads != heads;
  for (int32_t p : st.pos0) fresh = fresh || p == 0;
  if (fresh) stats.reset(layers, heads);
  ++stats.steps;
}

namespace {

// Row `off` of the K (is_k) or V cache, widened exactly to fp32.
inline void widen_row(float *dst, const KvStore &kv, int64_t off, bool is_k, int32_t d) {
  if (kv.bf16) {
    const uint16_t *src = (is_k ? kv.kb.get() : kv.vb.get()) + off;
    for (int32_t i = 0; i < d; ++i) dst[i] = bf16_to_float(src[i]);
  } else {
    std::memcpy(dst, (is_k ? kv.kf.get() : kv.vf.get()) + off, size_t(d) * sizeof(float));
  }
}

// An estimate's q . k (8 lanes, then a horizontal sum: only ranks keys, never reaches z).
inline float dot8(const float *a, const float *b, int32_t d) {
  int32_t i = 0;
  float s = 0;
#if defined(__AVX2__) && defined(__FMA__)
  __m256 acc = _mm256_setzero_ps();
  for (; i + 8 <= d; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  for (float x : lanes) s += x;
#endif
  for (; i < d; ++i) s += a[i] * b[i];
  return s;
}

// Where the step's queries are: sequence si, query variants (DCA) and the chunk span.
struct SeqCtx {
  const AttnArgs *a;
  const KvStore *kv;
  size_t si;
  int32_t n, p0, N, kv_seq;
  int64_t r0;                // row of position p0
  const float *qv[3];        // intra (or plain), successive, inter queries [R, nH * d]
  int32_t span = 0;          // DCA s = chunk - local; 0 without DCA
  const float *q(int32_t var, int64_t row, int32_t h) const {
    return qv[var] + row * int64_t(a->n_heads) * a->head_dim + int64_t(h) * a->head_dim;
  }
};

// Step 1 and 2 for head h (header comment).
void estimate(const SeqCtx &c, const SparseBudget &b, int32_t h, SparsePattern &out, std::vector<float> &sc,
              std::vector<float> &kr, std::vector<double> &vert, std::vector<double> &slash) {
  const int32_t d = c.a->head_dim, group = c.a->n_heads / c.a->n_kv_heads, N = c.N;
  const int32_t lq = std::min(kSparseLastQ, c.n), i0 = N - lq;
  const int64_t rq = c.r0 + (c.n - lq);  // row of the first estimating query
  const float scale = 1.0f / std::sqrt(float(d));
  sc.assign(size_t(lq) * size_t(N), 0.0f);
  kr.resize(size_t(d));
  const int64_t base = c.kv->offset(c.a->layer, c.kv_seq, h / group, 0);
  for (int32_t j = 0; j < N; ++j) {
    widen_row(kr.data(), *c.kv, base + int64_t(j) * d, true, d);
    for (int32_t t = std::max(0, j - i0); t < lq; ++t) {
      const int32_t i = i0 + t, var = c.span ? dca::part(i, j, c.span) : 0;
      sc[size_t(t) * size_t(N) + size_t(j)] = dot8(c.q(var, rq + t, h), kr.data(), d) * scale;
    }
  }
  vert.assign(size_t(N), 0.0);
  slash.assign(size_t(N), 0.0);
  for (int32_t t = 0; t < lq; ++t) {
    const int32_t i = i0 + t;
    const float *row = &sc[size_t(t) * size_t(N)];
    float mx = -INFINITY;
    for (int32_t j = 0; j <= i; ++j) mx = std::max(mx, row[j]);
    double sum = 0;
    for (int32_t j = 0; j <= i; ++j) sum += std::exp(double(row[j] - mx));
    for (int32_t j = 0; j <= i; ++j) {
      const double p = std::exp(double(row[j] - mx)) / sum;
      vert[size_t(j)] += p;
      slash[size_t(i - j)] += p;
    }
  }
  out.cols = sparse::top_lines(vert.data(), N, b.sink, b.vertical);
  out.diags = sparse::top_lines(slash.data(), N, b.local, b.slash);
}

// One (sequence, kv head): keys transposed Kt [d][len] and values as fp32 rows (the blocked dense kernel's layout).
struct KvF32 {
  std::vector<float> kt, vbuf;
  const float *v = nullptr;
  int64_t len = 0;
};

void build_src(const SeqCtx &c, int32_t kvh, KvF32 &o) {
  const int32_t d = c.a->head_dim;
  const KvStore &kv = *c.kv;
  const int64_t base = kv.offset(c.a->layer, c.kv_seq, kvh, 0);
  o.len = c.N;
  o.kt.resize(size_t(d) * size_t(o.len));
  std::vector<float> kr(static_cast<size_t>(d));
  for (int64_t p = 0; p < o.len; ++p) {
    widen_row(kr.data(), kv, base + p * d, true, d);
    for (int32_t e = 0; e < d; ++e) o.kt[size_t(e * o.len + p)] = kr[size_t(e)];
  }
  if (!kv.bf16) {
    o.v = &kv.vf[size_t(base)];
  } else {
    o.vbuf.resize(size_t(o.len * d));
    for (int64_t e = 0; e < o.len * d; ++e) o.vbuf[size_t(e)] = bf16_to_float(kv.vb[size_t(base + e)]);
    o.v = o.vbuf.data();
  }
}

// Step 3 without DCA (header comment): z over keys[0..n), lse (optional) = log of the softmax normalizer.
void chain_attend(const float *q, const KvF32 &src, int32_t d, const int32_t *keys, int32_t n, float scale, float *z,
                  std::vector<float> &sbuf, double *lse) {
  sbuf.resize(size_t(n) + 8);
  float *s = sbuf.data();
  const float *kt = src.kt.data();
  const int64_t len = src.len;
  int32_t k = 0;
#if defined(__AVX2__) && defined(__FMA__)
  for (; k + 8 <= n; k += 8) {
    const __m256i idx = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(keys + k));
    __m256 acc = _mm256_setzero_ps();
    for (int32_t e = 0; e < d; ++e)
      acc = _mm256_fmadd_ps(_mm256_set1_ps(q[e]), _mm256_i32gather_ps(kt + int64_t(e) * len, idx, 4), acc);
    _mm256_storeu_ps(s + k, acc);
  }
#endif
  for (; k < n; ++k) {
    float acc = 0;
    for (int32_t e = 0; e < d; ++e) acc = std::fma(q[e], kt[int64_t(e) * len + keys[k]], acc);
    s[k] = acc;
  }
  if (lse) {
    double m = -INFINITY, sum = 0;
    for (k = 0; k < n; ++k) m = std::max(m, double(s[k] * scale));
    for (k = 0; k < n; ++k) sum += std::exp(double(s[k] * scale) - m);
    *lse = m + std::log(sum);
  }
  softmax_scaled(s, n, scale);
  const float *V = src.v;
  int32_t c0 = 0;
#if defined(__AVX2__) && defined(__FMA__)
  for (; c0 + 64 <= d; c0 += 64) {
    __m256 acc[8];
    for (int i = 0; i < 8; ++i) acc[i] = _mm256_setzero_ps();
    for (k = 0; k < n; ++k) {
      const __m256 p = _mm256_set1_ps(s[k]);
      const float *row = V + int64_t(keys[k]) * d + c0;
      for (int i = 0; i < 8; ++i) acc[i] = _mm256_fmadd_ps(p, _mm256_loadu_ps(row + 8 * i), acc[i]);
    }
    for (int i = 0; i < 8; ++i) _mm256_storeu_ps(z + c0 + 8 * i, acc[i]);
  }
  for (; c0 + 8 <= d; c0 += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (k = 0; k < n; ++k)
      acc = _mm256_fmadd_ps(_mm256_set1_ps(s[k]), _mm256_loadu_ps(V + int64_t(keys[k]) * d + c0), acc);
    _mm256_storeu_ps(z + c0, acc);
  }
#endif
  for (; c0 < d; ++c0) {
    float acc = 0;
    for (k = 0; k < n; ++k) acc = std::fma(s[k], V[int64_t(keys[k]) * d + c0], acc);
    z[c0] = acc;
  }
}

// The keys query i visits: pattern columns <= i merged with i - o for diagonals o <= i, ascending, no repeats.
void visit_list(const SparsePattern &p, int32_t i, std::vector<int32_t> &keys) {
  keys.clear();
  const auto ce = std::upper_bound(p.cols.begin(), p.cols.end(), i);
  auto de = std::upper_bound(p.diags.begin(), p.diags.end(), i);  // diagonals o <= i: keys i - o >= 0
  auto c = p.cols.begin();
  while (c != ce || de != p.diags.begin()) {
    const int32_t kc = c != ce ? *c : INT32_MAX, kd = de != p.diags.begin() ? i - *(de - 1) : INT32_MAX;
    const int32_t k = std::min(kc, kd);
    keys.push_back(k);
    if (kc == k) ++c;
    if (kd == k) --de;
  }
}

// Per-thread scratch of the attention tasks.
struct Work {
  std::vector<int32_t> keys;
  std::vector<float> s, zd;
  DcaScratch dw;
  std::vector<SparseHeadStats> st;
};

}  // namespace

void sparse_attention(KvStore &kv, const AttnArgs &a, const SparseDca &dca, const SparseBudget &b, SparseStats &stats,
                      std::vector<SparsePattern> *patterns) {
  const Step &st = *a.step;
  const int32_t d = a.head_dim, nH = a.n_heads, nKV = a.n_kv_heads, group = nH / nKV;
  const float scale = 1.0f / std::sqrt(float(d));
  kv_append(kv, a);
  std::mutex mu;
  for (size_t si = 0; si < st.seq.size(); ++si) {
    SeqCtx c{&a, &kv, si, st.n_new[si], st.pos0[si], st.pos0[si] + st.n_new[si], st.seq[si], st.row_offset[si],
             {a.q, dca.q_succ, dca.q_inter}, dca.q_succ ? dca::span(dca.chunk, dca.local) : 0};
    // 1-2: one pattern per query head.
    std::vector<SparsePattern> pat(static_cast<size_t>(nH));
    std::atomic<int32_t> next_h{0};
    a.pool->run(int(std::min<int64_t>(a.pool->size(), nH)), [&] {
      std::vector<float> sc, kr;
      std::vector<double> vert, slash;
      for (int32_t h = next_h++; h < nH; h = next_h++) estimate(c, b, h, pat[size_t(h)], sc, kr, vert, slash);
    });
    // fp32 keys / values per kv head (plain attention; DCA reads the cache through dca_attend_keys).
    std::vector<KvF32> src(c.span ? 0 : size_t(nKV));
    parallel_range(*a.pool, int64_t(src.size()), 2, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) build_src(c, int32_t(k), src[size_t(k)]);
    });
    std::vector<int32_t> all(static_cast<size_t>(c.N));  // every key: the dense reference of the stats
    std::iota(all.begin(), all.end(), 0);
    // 3: one task per (query row, head), dynamic (late rows visit more keys).
    const int64_t tasks = int64_t(c.n) * nH;
    std::atomic<int64_t> next{0};
    a.pool->run(int(std::max<int64_t>(1, std::min<int64_t>(a.pool->size(), tasks))), [&] {
      Work w;
      w.st.assign(size_t(nH), SparseHeadStats{});
      w.zd.resize(size_t(d));
      auto attend = [&](int64_t row, int32_t h, int32_t i, const int32_t *keys, int32_t nk, float *z, double *lse) {
        if (c.span) {
          const float *qv[3] = {c.q(0, row, h), c.q(1, row, h), c.q(2, row, h)};
          float l = 0;
          dca_attend_keys(kv, a.layer, c.kv_seq, h / group, i, dca.chunk, dca.local, d, qv, keys, nk, z, lse ? &l : nullptr,
                          w.dw);
          if (lse) *lse = l;
        } else {
          chain_attend(c.q(0, row, h), src[size_t(h / group)], d, keys, nk, scale, z, w.s, lse);
        }
      };
      for (int64_t task = next++; task < tasks; task = next++) {
        const int32_t t = int32_t(task / nH), h = int32_t(task % nH), i = c.p0 + t;
        const int64_t row = c.r0 + t;
        visit_list(pat[size_t(h)], i, w.keys);
        const int32_t nk = int32_t(w.keys.size());
        float *z = a.z + row * int64_t(nH) * d + int64_t(h) * d;
        double lse_s = 0, lse_d = 0;
        attend(row, h, i, w.keys.data(), nk, z, b.stats ? &lse_s : nullptr);
        SparseHeadStats &hs = w.st[size_t(h)];
        hs.rows += 1;
        hs.keys += nk;
        hs.dense_keys += i + 1;
        if (!b.stats) continue;
        attend(row, h, i, all.data(), i + 1, w.zd.data(), &lse_d);
        hs.stat_rows += 1;
        hs.recall += std::min(1.0, std::exp(lse_s - lse_d));
        for (int32_t e = 0; e < d; ++e) {
          const double zs = z[e], zr = w.zd[size_t(e)];
          hs.err2 += (zs - zr) * (zs - zr);
          hs.ref2 += zr * zr;
          hs.out2 += zs * zs;
          hs.dot += zs * zr;
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      if (stats.layers <= a.layer || stats.heads != nH) return;  // stats not begun (a direct call, as in tests)
      for (int32_t h = 0; h < nH; ++h) {
        SparseHeadStats &o = stats.head[size_t(a.layer) * size_t(nH) + size_t(h)];
        const SparseHeadStats &x = w.st[size_t(h)];
        o.rows += x.rows, o.keys += x.keys, o.dense_keys += x.dense_keys, o.stat_rows += x.stat_rows;
        o.recall += x.recall, o.err2 += x.err2, o.ref2 += x.ref2, o.out2 += x.out2, o.dot += x.dot;
      }
    });
    if (patterns) *patterns = std::move(pat);
  }
}

}  // namespace cpu
}  // namespace qw
